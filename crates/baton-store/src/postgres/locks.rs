//! Lock-manager operations in PostgreSQL's dialect. Each function runs
//! inside a transaction opened by the caller (READ COMMITTED); the
//! decisions are [`baton_core::lock_rules`]', this module only locks,
//! loads and saves.
//!
//! Concurrency:
//! - every operation first locks the `lock_resources` rows of the
//!   resources it concerns (creating missing ones), in byte order of
//!   their names, and only then reads holds, queued requests and locks:
//!   two operations on a common resource run one after the other, and two
//!   operations never wait for each other's resources crosswise. A lock's
//!   own row is locked after its resources' rows, never before;
//! - with the database clock, "now" is read after those row locks are
//!   held, so the operations on a resource see non-decreasing times;
//! - fencing tokens come from the sequence `lock_tokens`, taken after the
//!   resources' rows are locked: whoever locks a resource later takes a
//!   larger value, so each resource's tokens strictly increase;
//! - a grant that steps over an expired lock records its expiry in the
//!   same transaction (re-reading the lock's row under its row lock), so
//!   a late heartbeat of that lock finds it ended;
//! - what may unblock waiting requests (a release, a forced release, a
//!   downgrade, a withdrawal, an expiry recorded by the sweeper) is
//!   announced with `NOTIFY baton_locks, '<resource>'`, delivered to
//!   other processes at commit.

use std::collections::{BTreeMap, BTreeSet};

use baton_core::clock::{from_millis, to_millis};
use baton_core::lock_rules;
use baton_core::{
    Acquisition, Error, FencingToken, Lock, LockEvent, LockFilter, LockId, LockRequest,
    LockSweepReport, Queueing, ResourceName, ResourceStatus, Result, TicketId, Timestamp,
};
use chrono::Duration;
use sqlx::PgConnection;

use super::db;
use crate::sql::{self, l_lock_cols, lock_cols, lock_event_cols};

/// The channel on which resources that may have become free are
/// announced.
pub(super) const CHANNEL: &str = "baton_locks";

/// Most expired locks one sweep records (the rest wait for the next).
const SWEEP_BATCH: i64 = 1000;

/// Where an operation's "now" comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Now {
    /// The database's clock, read inside the transaction.
    Database,
    /// The engine's clock, as passed in.
    Given(Timestamp),
}

fn ms(t: Timestamp) -> i64 {
    to_millis(t)
}

fn names(resources: &[ResourceName]) -> Vec<&str> {
    resources.iter().map(|r| r.as_str()).collect()
}

/// The time of this operation; with the database clock, read now (after
/// the caller locked what it needs).
async fn now(c: &mut PgConnection, t: Now) -> Result<Timestamp> {
    match t {
        Now::Given(t) => Ok(t),
        Now::Database => {
            let ms: i64 = sqlx::query_scalar(
                "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            )
            .fetch_one(&mut *c)
            .await
            .map_err(db)?;
            Ok(from_millis(ms))
        }
    }
}

/// Locks the rows of `resources`, creating missing ones, in byte order,
/// and returns the time of the operation: `t`'s now (read after the row
/// locks are held), but never earlier than the latest time an earlier
/// operation on any of the resources used.
pub(super) async fn begin(
    c: &mut PgConnection,
    resources: &[ResourceName],
    t: Now,
) -> Result<Timestamp> {
    let latest = lock_resources(c, resources).await?;
    let now = now(c, t).await?;
    Ok(now.max(from_millis(latest)))
}

/// Records that an operation on `resources` (whose rows are locked)
/// happened at `now`.
async fn touch(c: &mut PgConnection, resources: &[ResourceName], now: Timestamp) -> Result<()> {
    sqlx::query("UPDATE lock_resources SET at = GREATEST(at, $2) WHERE resource = ANY($1)")
        .bind(names(resources))
        .bind(ms(now))
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(())
}

/// Locks the rows of `resources`, creating missing ones, in byte order;
/// returns the latest time an operation on them used.
async fn lock_resources(c: &mut PgConnection, resources: &[ResourceName]) -> Result<i64> {
    let names = names(resources);
    sqlx::query(
        "INSERT INTO lock_resources (resource) SELECT r FROM unnest($1::text[]) AS r \
         ORDER BY r COLLATE \"C\" ON CONFLICT DO NOTHING",
    )
    .bind(&names)
    .execute(&mut *c)
    .await
    .map_err(db)?;
    let at: Vec<i64> = sqlx::query_scalar(
        "SELECT at FROM lock_resources WHERE resource = ANY($1) \
         ORDER BY resource COLLATE \"C\" FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    Ok(at.into_iter().max().unwrap_or(0))
}

/// Announces at commit that `resources` may have become free, and bumps
/// their versions (see `Store::lock_versions`).
async fn announce(c: &mut PgConnection, resources: &[ResourceName]) -> Result<()> {
    let names = names(resources);
    sqlx::query("UPDATE lock_resources SET version = version + 1 WHERE resource = ANY($1)")
        .bind(&names)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    sqlx::query("SELECT pg_notify($1, r) FROM unnest($2::text[]) AS r")
        .bind(CHANNEL)
        .bind(&names)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(())
}

async fn set_tokens(
    c: &mut PgConnection,
    resources: &[ResourceName],
    token: FencingToken,
) -> Result<()> {
    sqlx::query("UPDATE lock_resources SET token = $2 WHERE resource = ANY($1)")
        .bind(names(resources))
        .bind(token.0)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(())
}

async fn next_token(c: &mut PgConnection) -> Result<FencingToken> {
    sqlx::query_scalar("SELECT nextval('lock_tokens')")
        .fetch_one(&mut *c)
        .await
        .map_err(db)
        .map(FencingToken)
}

/// The resources of a lock, read without locking anything.
async fn resources_of(c: &mut PgConnection, id: LockId) -> Result<Vec<ResourceName>> {
    let json: Option<String> = sqlx::query_scalar("SELECT resources FROM locks WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?;
    let json = json.ok_or_else(|| Error::not_found("lock", id))?;
    serde_json::from_str(&json)
        .map_err(|e| baton_core::StoreError::fatal(format!("corrupt lock {id}: {e}")).into())
}

/// A lock, row-locked until the transaction ends.
async fn lock_row(c: &mut PgConnection, id: LockId) -> Result<Lock> {
    sqlx::query(concat!(
        "SELECT ",
        lock_cols!(),
        " FROM locks WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .map_err(db)?
    .as_ref()
    .map(sql::lock)
    .transpose()?
    .ok_or_else(|| Error::not_found("lock", id))
}

async fn load(c: &mut PgConnection, id: LockId) -> Result<Lock> {
    sqlx::query(concat!(
        "SELECT ",
        lock_cols!(),
        " FROM locks WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .map_err(db)?
    .as_ref()
    .map(sql::lock)
    .transpose()?
    .ok_or_else(|| Error::not_found("lock", id))
}

async fn save(c: &mut PgConnection, lock: &Lock) -> Result<()> {
    let end = lock.ended.as_ref();
    sqlx::query(
        "UPDATE locks SET token = $2, mode = $3, ttl_seconds = $4, expires_at = $5, \
         ended_at = $6, end_cause = $7, ended_by = $8, end_reason = $9 WHERE id = $1",
    )
    .bind(lock.id)
    .bind(lock.token.0)
    .bind(lock.mode.as_str())
    .bind(i64::from(lock.ttl_seconds))
    .bind(ms(lock.expires_at))
    .bind(end.map(|e| ms(e.at)))
    .bind(end.map(|e| e.cause.as_str()))
    .bind(end.and_then(|e| e.by.as_deref()))
    .bind(end.and_then(|e| e.reason.as_deref()))
    .execute(&mut *c)
    .await
    .map_err(db)?;
    if lock.ended.is_some() {
        sqlx::query("DELETE FROM lock_holds WHERE lock_id = $1")
            .bind(lock.id)
            .execute(&mut *c)
            .await
            .map_err(db)?;
    }
    Ok(())
}

async fn insert_events(c: &mut PgConnection, events: &[LockEvent]) -> Result<()> {
    for e in events {
        sqlx::query(concat!(
            "INSERT INTO lock_events (",
            lock_event_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(e.resource.as_str())
        .bind(e.lock)
        .bind(ms(e.at))
        .bind(e.kind.as_str())
        .bind(e.actor.as_deref())
        .bind(&e.holder)
        .bind(e.mode.as_str())
        .bind(e.token.0)
        .bind(e.detail.to_string())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Records the expiry of each of `ids` that ran out by `now` and is not
/// recorded yet (re-read under its row lock).
async fn expire_locks(
    c: &mut PgConnection,
    ids: &BTreeSet<LockId>,
    now: Timestamp,
) -> Result<Vec<Lock>> {
    let mut out = Vec::new();
    for id in ids {
        let mut lock = lock_row(c, *id).await?;
        if let Some(events) = lock_rules::expire(&mut lock, now) {
            save(c, &lock).await?;
            insert_events(c, &events).await?;
            out.push(lock);
        }
    }
    Ok(out)
}

async fn delete_ticket(
    c: &mut PgConnection,
    ticket: TicketId,
) -> Result<Option<Vec<ResourceName>>> {
    let resources: Vec<String> = sqlx::query_scalar(
        "DELETE FROM lock_ticket_resources WHERE ticket_id = $1 RETURNING resource",
    )
    .bind(ticket)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let deleted = sqlx::query("DELETE FROM lock_tickets WHERE id = $1")
        .bind(ticket)
        .execute(&mut *c)
        .await
        .map_err(db)?
        .rows_affected();
    if deleted == 0 {
        return Ok(None);
    }
    let mut resources = resources
        .into_iter()
        .map(ResourceName::new)
        .collect::<Result<Vec<_>>>()?;
    resources.sort();
    Ok(Some(resources))
}

pub(super) async fn acquire(
    c: &mut PgConnection,
    req: &LockRequest,
    q: Queueing,
    t: Now,
) -> Result<Acquisition> {
    let now = begin(c, &req.resources, t).await?;
    // 1. A retried request: the lock the key got.
    if let Some(key) = &req.idempotency_key {
        let prior: Option<LockId> =
            sqlx::query_scalar("SELECT lock_id FROM lock_keys WHERE holder = $1 AND key = $2")
                .bind(&req.holder)
                .bind(key)
                .fetch_optional(&mut *c)
                .await
                .map_err(db)?;
        if let Some(id) = prior {
            let lock = lock_rules::settle(load(c, id).await?, now);
            if let Some(end) = lock.ended {
                return Err(Error::LockEnded {
                    lock: id,
                    end: Box::new(end),
                });
            }
            return Ok(Acquisition::Granted {
                lock,
                created: false,
            });
        }
    }
    // 2. Admission against the live locks and the requests queued ahead.
    let own: Option<TicketId> = match q.ticket {
        None => None,
        Some(t) => {
            sqlx::query_scalar("SELECT id FROM lock_tickets WHERE id = $1 AND expires_at > $2")
                .bind(t)
                .bind(ms(now))
                .fetch_optional(&mut *c)
                .await
                .map_err(db)?
        }
    };
    // A ticket whose wait ran out is no place in the queue any more.
    if let Some(t) = q.ticket
        && own.is_none()
    {
        delete_ticket(c, t).await?;
    }
    let names = names(&req.resources);
    let holds = sqlx::query(
        "SELECT h.resource, l.id, l.holder, l.mode, l.expires_at FROM lock_holds h \
         JOIN locks l ON l.id = h.lock_id WHERE h.resource = ANY($1) AND l.ended_at IS NULL",
    )
    .bind(&names)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::hold)
    .collect::<Result<Vec<_>>>()?;
    let ahead = sqlx::query(
        "SELECT tr.resource, t.id, t.holder, t.mode, t.expires_at FROM lock_ticket_resources tr \
         JOIN lock_tickets t ON t.id = tr.ticket_id \
         WHERE tr.resource = ANY($1) AND t.id < $2 AND t.expires_at > $3",
    )
    .bind(&names)
    .bind(own.unwrap_or(i64::MAX))
    .bind(ms(now))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::queued)
    .collect::<Result<Vec<_>>>()?;
    let admission = lock_rules::admit(&req.resources, req.mode, &holds, &ahead, None, now);
    if !admission.granted() {
        let ticket = match (own, q.wait) {
            (Some(t), _) => Some(t),
            (None, Some(wait)) => {
                let id: TicketId = sqlx::query_scalar(
                    "INSERT INTO lock_tickets (holder, mode, expires_at) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(&req.holder)
                .bind(req.mode.as_str())
                .bind(ms(now + wait))
                .fetch_one(&mut *c)
                .await
                .map_err(db)?;
                sqlx::query(
                    "INSERT INTO lock_ticket_resources (resource, ticket_id) \
                     SELECT unnest($1::text[]), $2",
                )
                .bind(&names)
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(db)?;
                touch(c, &req.resources, now).await?;
                Some(id)
            }
            (None, None) => None,
        };
        return Ok(Acquisition::Blocked {
            conflicts: admission.conflicts,
            ticket,
            now,
        });
    }
    // 3. Grant: take the next token.
    if let Some(t) = own {
        delete_ticket(c, t).await?;
    }
    let token = next_token(c).await?;
    let (mut lock, mut events) = lock_rules::grant(req, 0, token, now);
    lock.id = sqlx::query_scalar(
        "INSERT INTO locks (token, resources, mode, holder, session, ttl_seconds, acquired_at, \
         expires_at, max_hold_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(lock.token.0)
    .bind(sql::resources_json(&lock.resources)?)
    .bind(lock.mode.as_str())
    .bind(&lock.holder)
    .bind(lock.session.as_deref())
    .bind(i64::from(lock.ttl_seconds))
    .bind(ms(lock.acquired_at))
    .bind(ms(lock.expires_at))
    .bind(lock.max_hold_until.map(ms))
    .fetch_one(&mut *c)
    .await
    .map_err(db)?;
    for e in &mut events {
        e.lock = lock.id;
    }
    sqlx::query("INSERT INTO lock_holds (resource, lock_id) SELECT unnest($1::text[]), $2")
        .bind(&names)
        .bind(lock.id)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    set_tokens(c, &lock.resources, token).await?;
    touch(c, &lock.resources, now).await?;
    insert_events(c, &events).await?;
    if let Some(key) = &req.idempotency_key {
        // A concurrent request with the same key makes this insert fail
        // once the other commits; the transaction then runs again and
        // finds that lock above.
        sqlx::query(
            "INSERT INTO lock_keys (holder, key, lock_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&req.holder)
        .bind(key)
        .bind(lock.id)
        .bind(ms(now))
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(Acquisition::Granted {
        lock,
        created: true,
    })
}

pub(super) async fn withdraw(
    c: &mut PgConnection,
    ticket: TicketId,
) -> Result<Option<Vec<ResourceName>>> {
    let resources: Vec<String> =
        sqlx::query_scalar("SELECT resource FROM lock_ticket_resources WHERE ticket_id = $1")
            .bind(ticket)
            .fetch_all(&mut *c)
            .await
            .map_err(db)?;
    let mut resources = resources
        .into_iter()
        .map(ResourceName::new)
        .collect::<Result<Vec<_>>>()?;
    resources.sort();
    lock_resources(c, &resources).await?;
    let removed = delete_ticket(c, ticket).await?;
    if let Some(rs) = &removed {
        announce(c, rs).await?;
    }
    Ok(removed)
}

/// Locks a lock's resources and then the lock, applies `rule` at the
/// operation's time, and saves the lock with the rule's events — or
/// changes nothing if the rule refuses. `frees`: the change may unblock
/// waiting requests.
async fn mutate(
    c: &mut PgConnection,
    id: LockId,
    t: Now,
    frees: bool,
    rule: impl FnOnce(&mut Lock, Timestamp) -> Result<Vec<LockEvent>>,
) -> Result<Lock> {
    let resources = resources_of(c, id).await?;
    let now = begin(c, &resources, t).await?;
    let mut lock = lock_row(c, id).await?;
    let events = rule(&mut lock, now)?;
    if !events.is_empty() {
        touch(c, &lock.resources, now).await?;
        save(c, &lock).await?;
        insert_events(c, &events).await?;
        if frees {
            announce(c, &lock.resources).await?;
        }
    }
    Ok(lock)
}

pub(super) async fn heartbeat(
    c: &mut PgConnection,
    id: LockId,
    caller: &str,
    ttl_seconds: u32,
    t: Now,
) -> Result<Lock> {
    mutate(c, id, t, false, |l, now| {
        lock_rules::heartbeat(l, caller, ttl_seconds, now)
    })
    .await
}

pub(super) async fn release(
    c: &mut PgConnection,
    id: LockId,
    caller: &str,
    t: Now,
) -> Result<Lock> {
    mutate(c, id, t, true, |l, now| {
        lock_rules::release(l, caller, false, now)
    })
    .await
}

pub(super) async fn downgrade(
    c: &mut PgConnection,
    id: LockId,
    caller: &str,
    t: Now,
) -> Result<Lock> {
    mutate(c, id, t, true, |l, now| {
        Ok(lock_rules::downgrade(l, caller, now)?.unwrap_or_default())
    })
    .await
}

pub(super) async fn force(
    c: &mut PgConnection,
    id: LockId,
    actor: &str,
    reason: &str,
    t: Now,
) -> Result<Lock> {
    let resources = resources_of(c, id).await?;
    let now = begin(c, &resources, t).await?;
    let mut lock = lock_row(c, id).await?;
    // Refuse before taking a token, so a refusal changes nothing.
    if let Some(end) = lock_rules::settle(lock.clone(), now).ended {
        return Err(Error::LockEnded {
            lock: id,
            end: Box::new(end),
        });
    }
    let bump = next_token(c).await?;
    let events = lock_rules::force(&mut lock, actor, reason, bump, now)?;
    touch(c, &lock.resources, now).await?;
    save(c, &lock).await?;
    insert_events(c, &events).await?;
    set_tokens(c, &lock.resources, bump).await?;
    announce(c, &lock.resources).await?;
    Ok(lock)
}

pub(super) async fn release_session(
    c: &mut PgConnection,
    holder: &str,
    session: &str,
    t: Now,
) -> Result<Vec<Lock>> {
    let found: Vec<(LockId, String)> = sqlx::query_as(
        "SELECT id, resources FROM locks WHERE holder = $1 AND session = $2 AND ended_at IS NULL \
         ORDER BY id",
    )
    .bind(holder)
    .bind(session)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut all = BTreeSet::new();
    for (id, json) in &found {
        let rs: Vec<ResourceName> = serde_json::from_str(json)
            .map_err(|e| baton_core::StoreError::fatal(format!("corrupt lock {id}: {e}")))?;
        all.extend(rs);
    }
    let all: Vec<ResourceName> = all.into_iter().collect();
    let now = begin(c, &all, t).await?;
    let mut out = Vec::new();
    for (id, _) in found {
        let mut lock = lock_row(c, id).await?;
        if !lock.is_live(now) {
            continue;
        }
        let events = lock_rules::release(&mut lock, holder, true, now)?;
        touch(c, &lock.resources, now).await?;
        save(c, &lock).await?;
        insert_events(c, &events).await?;
        announce(c, &lock.resources).await?;
        out.push(lock);
    }
    Ok(out)
}

pub(super) async fn upgrade(
    c: &mut PgConnection,
    id: LockId,
    caller: &str,
    t: Now,
) -> Result<Lock> {
    let resources = resources_of(c, id).await?;
    let now = begin(c, &resources, t).await?;
    let mut lock = lock_row(c, id).await?;
    let holds = sqlx::query(
        "SELECT h.resource, l.id, l.holder, l.mode, l.expires_at FROM lock_holds h \
         JOIN locks l ON l.id = h.lock_id WHERE h.resource = ANY($1) AND l.ended_at IS NULL",
    )
    .bind(names(&lock.resources))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::hold)
    .collect::<Result<Vec<_>>>()?;
    if !lock_rules::plan_upgrade(&lock, caller, &holds, now)? {
        return Ok(lock);
    }
    let token = next_token(c).await?;
    let events = lock_rules::upgrade(&mut lock, token, now);
    touch(c, &lock.resources, now).await?;
    save(c, &lock).await?;
    insert_events(c, &events).await?;
    set_tokens(c, &lock.resources, token).await?;
    Ok(lock)
}

pub(super) async fn get(c: &mut PgConnection, id: LockId, t: Now) -> Result<Lock> {
    let now = now(c, t).await?;
    Ok(lock_rules::settle(load(c, id).await?, now))
}

pub(super) async fn list(c: &mut PgConnection, f: &LockFilter, t: Now) -> Result<Vec<Lock>> {
    let now = now(c, t).await?;
    sqlx::query(concat!(
        "SELECT ",
        l_lock_cols!(),
        " FROM locks l WHERE l.ended_at IS NULL AND l.expires_at > $1 AND l.id > $2 \
         AND ($3::text IS NULL OR l.holder = $3) AND ($4::text IS NULL OR l.session = $4) \
         AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM lock_holds h WHERE h.lock_id = l.id AND h.resource = $5)) \
         ORDER BY l.id LIMIT $6"
    ))
    .bind(ms(now))
    .bind(f.after.unwrap_or(0))
    .bind(f.holder.as_deref())
    .bind(f.session.as_deref())
    .bind(f.resource.as_ref().map(|r| r.as_str()))
    .bind(i64::from(f.limit))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::lock)
    .collect()
}

/// The status of each distinct resource, read in one snapshot (the
/// caller's transaction is REPEATABLE READ).
pub(super) async fn status(
    c: &mut PgConnection,
    resources: &[ResourceName],
    t: Now,
) -> Result<Vec<ResourceStatus>> {
    let now = now(c, t).await?;
    let names = names(resources);
    let rows = sqlx::query(concat!(
        "SELECT ",
        l_lock_cols!(),
        ", h.resource FROM lock_holds h JOIN locks l ON l.id = h.lock_id \
         WHERE h.resource = ANY($1) AND l.ended_at IS NULL AND l.expires_at > $2 ORDER BY l.id"
    ))
    .bind(&names)
    .bind(ms(now))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut locks: BTreeMap<String, Vec<Lock>> = BTreeMap::new();
    for row in &rows {
        let resource: String = sql::col(row, 14)?;
        locks.entry(resource).or_default().push(sql::lock(row)?);
    }
    let waiting: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT tr.resource, count(*) FROM lock_ticket_resources tr \
         JOIN lock_tickets t ON t.id = tr.ticket_id \
         WHERE tr.resource = ANY($1) AND t.expires_at > $2 GROUP BY tr.resource",
    )
    .bind(&names)
    .bind(ms(now))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .into_iter()
    .collect();
    let tokens: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT resource, token FROM lock_resources WHERE resource = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .into_iter()
    .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        if !seen.insert(r) {
            continue;
        }
        out.push(sql::resource_status(
            r,
            locks.remove(r.as_str()).unwrap_or_default(),
            waiting.get(r.as_str()).copied().unwrap_or(0),
            tokens.get(r.as_str()).copied(),
        ));
    }
    Ok(out)
}

pub(super) async fn history(
    c: &mut PgConnection,
    resource: &ResourceName,
    limit: u32,
) -> Result<Vec<LockEvent>> {
    sqlx::query(concat!(
        "SELECT ",
        lock_event_cols!(),
        " FROM (SELECT ",
        lock_event_cols!(),
        ", id, CASE WHEN kind IN ('released', 'expired', 'forced') THEN 0 ELSE 1 END AS kind_rank \
         FROM lock_events WHERE resource = $1 ORDER BY at DESC, kind_rank DESC, id DESC LIMIT $2) AS e \
         ORDER BY at, kind_rank, id"
    ))
    .bind(resource.as_str())
    .bind(i64::from(limit))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::lock_event)
    .collect()
}

pub(super) async fn sweep(
    c: &mut PgConnection,
    t: Now,
    retention: Duration,
    key_retention: Duration,
) -> Result<LockSweepReport> {
    let now = now(c, t).await?;
    let due: Vec<(LockId, String)> = sqlx::query_as(
        "SELECT id, resources FROM locks WHERE ended_at IS NULL AND expires_at <= $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(ms(now))
    .bind(SWEEP_BATCH)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut report = LockSweepReport::default();
    if !due.is_empty() {
        let mut all = BTreeSet::new();
        for (id, json) in &due {
            let rs: Vec<ResourceName> = serde_json::from_str(json)
                .map_err(|e| baton_core::StoreError::fatal(format!("corrupt lock {id}: {e}")))?;
            all.extend(rs);
        }
        let all: Vec<ResourceName> = all.into_iter().collect();
        lock_resources(c, &all).await?;
        touch(c, &all, now).await?;
        let ids: BTreeSet<LockId> = due.iter().map(|(id, _)| *id).collect();
        report.expired = expire_locks(c, &ids, now).await?;
        let mut freed = BTreeSet::new();
        for l in &report.expired {
            freed.extend(l.resources.iter().cloned());
        }
        let freed: Vec<ResourceName> = freed.into_iter().collect();
        if !freed.is_empty() {
            announce(c, &freed).await?;
        }
    }
    sqlx::query(
        "DELETE FROM lock_ticket_resources WHERE ticket_id IN \
         (SELECT id FROM lock_tickets WHERE expires_at <= $1)",
    )
    .bind(ms(now))
    .execute(&mut *c)
    .await
    .map_err(db)?;
    report.abandoned_tickets = sqlx::query("DELETE FROM lock_tickets WHERE expires_at <= $1")
        .bind(ms(now))
        .execute(&mut *c)
        .await
        .map_err(db)?
        .rows_affected();
    let cutoff = ms(now - retention);
    sqlx::query(
        "DELETE FROM lock_keys WHERE created_at < $1 OR lock_id IN \
         (SELECT id FROM locks WHERE ended_at < $2)",
    )
    .bind(ms(now - key_retention))
    .bind(cutoff)
    .execute(&mut *c)
    .await
    .map_err(db)?;
    report.forgotten = sqlx::query("DELETE FROM locks WHERE ended_at < $1")
        .bind(cutoff)
        .execute(&mut *c)
        .await
        .map_err(db)?
        .rows_affected();
    Ok(report)
}

pub(super) async fn versions(c: &mut PgConnection, resources: &[ResourceName]) -> Result<Vec<i64>> {
    let found: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT resource, version FROM lock_resources WHERE resource = ANY($1)",
    )
    .bind(names(resources))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .into_iter()
    .collect();
    Ok(resources
        .iter()
        .map(|r| found.get(r.as_str()).copied().unwrap_or(0))
        .collect())
}
