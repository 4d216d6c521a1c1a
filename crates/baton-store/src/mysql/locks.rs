//! Lock-manager operations in MySQL's dialect (MySQL 8, MariaDB 10.6+).
//! Each function runs inside a transaction opened by the caller at READ
//! COMMITTED; the decisions are [`baton_core::lock_rules`]', this module
//! only locks, loads and saves.
//!
//! Concurrency, as on PostgreSQL (see `postgres::locks`), with MySQL's
//! means:
//! - every operation first locks the `lock_resources` rows of its
//!   resources one by one, in byte order of their names, with an
//!   `INSERT … ON DUPLICATE KEY UPDATE` that creates a missing row and
//!   takes an exclusive lock on an existing one; a lock's own row is
//!   locked after its resources' rows;
//! - with the database clock, "now" (`UTC_TIMESTAMP(6)`) is read after
//!   those row locks are held;
//! - fencing tokens come from the one row of `lock_counter`, locked last
//!   and held to commit (MySQL has no sequences): grants are serialised
//!   on it for the short rest of their transactions;
//! - MySQL cannot push notifications: what may unblock waiting requests
//!   bumps the resources' `version`, which the engine polls.
//!
//! Resources are addressed by `UNHEX(SHA2(name, 256))`; lists of them by
//! an `IN` list of as many such expressions as there are names.

use std::collections::{BTreeMap, BTreeSet};

use baton_core::clock::{from_millis, to_millis};
use baton_core::lock_rules::{self, Hold, Queued};
use baton_core::{
    Acquisition, Error, FencingToken, Lock, LockEvent, LockFilter, LockId, LockRequest,
    LockSweepReport, Queueing, ResourceName, ResourceStatus, Result, StoreError, TicketId,
    Timestamp,
};
use chrono::Duration;
use sqlx::mysql::MySqlArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, MySql, MySqlConnection};

use super::db;
use crate::sql::{self, l_lock_cols, lock_cols, lock_event_cols};

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

/// `UNHEX(SHA2(?, 256)), …`, `n` times.
fn hashes(n: usize) -> String {
    vec!["UNHEX(SHA2(?, 256))"; n.max(1)].join(", ")
}

/// Binds the names of `resources` in order (a lone NULL for none, which
/// matches nothing).
fn bind_names<'q>(
    mut q: Query<'q, MySql, MySqlArguments>,
    resources: &'q [ResourceName],
) -> Query<'q, MySql, MySqlArguments> {
    if resources.is_empty() {
        return q.bind(None::<&str>);
    }
    for r in resources {
        q = q.bind(r.as_str());
    }
    q
}

async fn now(c: &mut MySqlConnection, t: Now) -> Result<Timestamp> {
    match t {
        Now::Given(t) => Ok(t),
        Now::Database => {
            let ms: i64 = sqlx::query_scalar(
                "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000 AS SIGNED)",
            )
            .fetch_one(&mut *c)
            .await
            .map_err(db)?;
            Ok(from_millis(ms))
        }
    }
}

/// Locks the rows of `resources` (sorted), creating missing ones, and
/// returns the time of the operation: `t`'s now (read after the row locks
/// are held), but never earlier than the latest time an earlier operation
/// on any of the resources used.
pub(super) async fn begin(
    c: &mut MySqlConnection,
    resources: &[ResourceName],
    t: Now,
) -> Result<Timestamp> {
    lock_resources(c, resources).await?;
    let row = bind_names(
        sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST(MAX(at) AS SIGNED) FROM lock_resources WHERE resource_hash IN ({})",
            hashes(resources.len())
        ))),
        resources,
    )
    .fetch_one(&mut *c)
    .await
    .map_err(db)?;
    let latest: Option<i64> = sql::col(&row, 0)?;
    let now = now(c, t).await?;
    Ok(now.max(from_millis(latest.unwrap_or(0))))
}

/// Records that an operation on `resources` (whose rows are locked)
/// happened at `now`.
async fn touch(c: &mut MySqlConnection, resources: &[ResourceName], now: Timestamp) -> Result<()> {
    for r in resources {
        sqlx::query(
            "UPDATE lock_resources SET at = GREATEST(at, ?) WHERE resource_hash = UNHEX(SHA2(?, 256))",
        )
        .bind(ms(now))
        .bind(r.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Locks the rows of `resources` (sorted), creating missing ones, one by
/// one in byte order.
async fn lock_resources(c: &mut MySqlConnection, resources: &[ResourceName]) -> Result<()> {
    debug_assert!(resources.windows(2).all(|w| w[0] < w[1]));
    for r in resources {
        sqlx::query(
            "INSERT INTO lock_resources (resource_hash, resource) VALUES (UNHEX(SHA2(?, 256)), ?) \
             ON DUPLICATE KEY UPDATE version = version",
        )
        .bind(r.as_str())
        .bind(r.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Marks that `resources` may have become free (the engine polls the
/// versions).
async fn announce(c: &mut MySqlConnection, resources: &[ResourceName]) -> Result<()> {
    for r in resources {
        sqlx::query(
            "UPDATE lock_resources SET version = version + 1 WHERE resource_hash = UNHEX(SHA2(?, 256))",
        )
        .bind(r.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(())
}

async fn set_tokens(
    c: &mut MySqlConnection,
    resources: &[ResourceName],
    token: FencingToken,
) -> Result<()> {
    for r in resources {
        sqlx::query(
            "UPDATE lock_resources SET token = ? WHERE resource_hash = UNHEX(SHA2(?, 256))",
        )
        .bind(token.0)
        .bind(r.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(())
}

async fn next_token(c: &mut MySqlConnection) -> Result<FencingToken> {
    sqlx::query("UPDATE lock_counter SET value = LAST_INSERT_ID(value + 1) WHERE id = 1")
        .execute(&mut *c)
        .await
        .map_err(db)?;
    sqlx::query_scalar("SELECT CAST(LAST_INSERT_ID() AS SIGNED)")
        .fetch_one(&mut *c)
        .await
        .map_err(db)
        .map(FencingToken)
}

fn parse_resources(id: LockId, json: &str) -> Result<Vec<ResourceName>> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::fatal(format!("corrupt lock {id}: {e}")).into())
}

async fn resources_of(c: &mut MySqlConnection, id: LockId) -> Result<Vec<ResourceName>> {
    let json: Option<String> = sqlx::query_scalar("SELECT resources FROM locks WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?;
    parse_resources(id, &json.ok_or_else(|| Error::not_found("lock", id))?)
}

async fn fetch_lock(c: &mut MySqlConnection, id: LockId, for_update: bool) -> Result<Lock> {
    let sql = if for_update {
        concat!(
            "SELECT ",
            lock_cols!(),
            " FROM locks WHERE id = ? FOR UPDATE"
        )
    } else {
        concat!("SELECT ", lock_cols!(), " FROM locks WHERE id = ?")
    };
    sqlx::query(sql)
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?
        .as_ref()
        .map(sql::lock)
        .transpose()?
        .ok_or_else(|| Error::not_found("lock", id))
}

async fn save(c: &mut MySqlConnection, lock: &Lock) -> Result<()> {
    let end = lock.ended.as_ref();
    sqlx::query(
        "UPDATE locks SET token = ?, mode = ?, ttl_seconds = ?, expires_at = ?, \
         ended_at = ?, end_cause = ?, ended_by = ?, end_reason = ? WHERE id = ?",
    )
    .bind(lock.token.0)
    .bind(lock.mode.as_str())
    .bind(i64::from(lock.ttl_seconds))
    .bind(ms(lock.expires_at))
    .bind(end.map(|e| ms(e.at)))
    .bind(end.map(|e| e.cause.as_str()))
    .bind(end.and_then(|e| e.by.as_deref()))
    .bind(end.and_then(|e| e.reason.as_deref()))
    .bind(lock.id)
    .execute(&mut *c)
    .await
    .map_err(db)?;
    if lock.ended.is_some() {
        sqlx::query("DELETE FROM lock_holds WHERE lock_id = ?")
            .bind(lock.id)
            .execute(&mut *c)
            .await
            .map_err(db)?;
    }
    Ok(())
}

async fn insert_events(c: &mut MySqlConnection, events: &[LockEvent]) -> Result<()> {
    for e in events {
        sqlx::query(concat!(
            "INSERT INTO lock_events (resource_hash, ",
            lock_event_cols!(),
            ") VALUES (UNHEX(SHA2(?, 256)), ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(e.resource.as_str())
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

async fn holds(c: &mut MySqlConnection, resources: &[ResourceName]) -> Result<Vec<Hold>> {
    let sql = format!(
        "SELECT h.resource, l.id, l.holder, l.mode, l.expires_at FROM lock_holds h \
         JOIN locks l ON l.id = h.lock_id WHERE h.resource_hash IN ({}) AND l.ended_at IS NULL",
        hashes(resources.len())
    );
    bind_names(sqlx::query(AssertSqlSafe(sql)), resources)
        .fetch_all(&mut *c)
        .await
        .map_err(db)?
        .iter()
        .map(sql::hold)
        .collect()
}

async fn queued(
    c: &mut MySqlConnection,
    resources: &[ResourceName],
    before: Option<TicketId>,
    now: Timestamp,
) -> Result<Vec<Queued>> {
    let sql = format!(
        "SELECT tr.resource, t.id, t.holder, t.mode, t.expires_at FROM lock_ticket_resources tr \
         JOIN lock_tickets t ON t.id = tr.ticket_id \
         WHERE tr.resource_hash IN ({}) AND t.id < ? AND t.expires_at > ?",
        hashes(resources.len())
    );
    bind_names(sqlx::query(AssertSqlSafe(sql)), resources)
        .bind(before.unwrap_or(i64::MAX))
        .bind(ms(now))
        .fetch_all(&mut *c)
        .await
        .map_err(db)?
        .iter()
        .map(sql::queued)
        .collect()
}

async fn expire_locks(
    c: &mut MySqlConnection,
    ids: &BTreeSet<LockId>,
    now: Timestamp,
) -> Result<Vec<Lock>> {
    let mut out = Vec::new();
    for id in ids {
        let mut lock = fetch_lock(c, *id, true).await?;
        if let Some(events) = lock_rules::expire(&mut lock, now) {
            save(c, &lock).await?;
            insert_events(c, &events).await?;
            out.push(lock);
        }
    }
    Ok(out)
}

async fn ticket_resources(c: &mut MySqlConnection, ticket: TicketId) -> Result<Vec<ResourceName>> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT resource FROM lock_ticket_resources WHERE ticket_id = ?")
            .bind(ticket)
            .fetch_all(&mut *c)
            .await
            .map_err(db)?;
    let mut resources = names
        .into_iter()
        .map(ResourceName::new)
        .collect::<Result<Vec<_>>>()?;
    resources.sort();
    Ok(resources)
}

async fn delete_ticket(c: &mut MySqlConnection, ticket: TicketId) -> Result<bool> {
    sqlx::query("DELETE FROM lock_ticket_resources WHERE ticket_id = ?")
        .bind(ticket)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    let deleted = sqlx::query("DELETE FROM lock_tickets WHERE id = ?")
        .bind(ticket)
        .execute(&mut *c)
        .await
        .map_err(db)?
        .rows_affected();
    Ok(deleted > 0)
}

fn last_id(done: sqlx::mysql::MySqlQueryResult, what: &str) -> Result<i64> {
    i64::try_from(done.last_insert_id())
        .map_err(|e| StoreError::fatal(format!("{what} id out of range: {e}")).into())
}

pub(super) async fn acquire(
    c: &mut MySqlConnection,
    req: &LockRequest,
    q: Queueing,
    t: Now,
) -> Result<Acquisition> {
    let now = begin(c, &req.resources, t).await?;
    // 1. A retried request: the lock the key got.
    if let Some(key) = &req.idempotency_key {
        let prior: Option<LockId> = sqlx::query_scalar(
            "SELECT lock_id FROM lock_keys WHERE holder = ? AND key_hash = UNHEX(SHA2(?, 256))",
        )
        .bind(&req.holder)
        .bind(key)
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?;
        if let Some(id) = prior {
            let lock = lock_rules::settle(fetch_lock(c, id, false).await?, now);
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
            sqlx::query_scalar("SELECT id FROM lock_tickets WHERE id = ? AND expires_at > ?")
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
    let holds = holds(c, &req.resources).await?;
    let ahead = queued(c, &req.resources, own, now).await?;
    let admission = lock_rules::admit(&req.resources, req.mode, &holds, &ahead, None, now);
    if !admission.granted() {
        let ticket = match (own, q.wait) {
            (Some(t), _) => Some(t),
            (None, Some(wait)) => {
                let done = sqlx::query(
                    "INSERT INTO lock_tickets (holder, mode, expires_at) VALUES (?, ?, ?)",
                )
                .bind(&req.holder)
                .bind(req.mode.as_str())
                .bind(ms(now + wait))
                .execute(&mut *c)
                .await
                .map_err(db)?;
                let id = last_id(done, "ticket")?;
                for r in &req.resources {
                    sqlx::query(
                        "INSERT INTO lock_ticket_resources (resource_hash, ticket_id, resource) \
                         VALUES (UNHEX(SHA2(?, 256)), ?, ?)",
                    )
                    .bind(r.as_str())
                    .bind(id)
                    .bind(r.as_str())
                    .execute(&mut *c)
                    .await
                    .map_err(db)?;
                }
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
    let done = sqlx::query(
        "INSERT INTO locks (token, resources, mode, holder, session, ttl_seconds, acquired_at, \
         expires_at, max_hold_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .execute(&mut *c)
    .await
    .map_err(db)?;
    lock.id = last_id(done, "lock")?;
    for e in &mut events {
        e.lock = lock.id;
    }
    for r in &lock.resources {
        sqlx::query(
            "INSERT INTO lock_holds (resource_hash, lock_id, resource) VALUES (UNHEX(SHA2(?, 256)), ?, ?)",
        )
        .bind(r.as_str())
        .bind(lock.id)
        .bind(r.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    set_tokens(c, &lock.resources, token).await?;
    touch(c, &lock.resources, now).await?;
    insert_events(c, &events).await?;
    if let Some(key) = &req.idempotency_key {
        // A concurrent request with the same key makes this insert fail
        // (duplicate key); the transaction then runs again and finds
        // that lock above.
        sqlx::query(
            "INSERT INTO lock_keys (holder, key_hash, lock_id, created_at) \
             VALUES (?, UNHEX(SHA2(?, 256)), ?, ?)",
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
    c: &mut MySqlConnection,
    ticket: TicketId,
) -> Result<Option<Vec<ResourceName>>> {
    let resources = ticket_resources(c, ticket).await?;
    lock_resources(c, &resources).await?;
    if !delete_ticket(c, ticket).await? {
        return Ok(None);
    }
    announce(c, &resources).await?;
    Ok(Some(resources))
}

async fn mutate(
    c: &mut MySqlConnection,
    id: LockId,
    t: Now,
    frees: bool,
    rule: impl FnOnce(&mut Lock, Timestamp) -> Result<Vec<LockEvent>>,
) -> Result<Lock> {
    let resources = resources_of(c, id).await?;
    let now = begin(c, &resources, t).await?;
    let mut lock = fetch_lock(c, id, true).await?;
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
    c: &mut MySqlConnection,
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
    c: &mut MySqlConnection,
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
    c: &mut MySqlConnection,
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
    c: &mut MySqlConnection,
    id: LockId,
    actor: &str,
    reason: &str,
    t: Now,
) -> Result<Lock> {
    let resources = resources_of(c, id).await?;
    let now = begin(c, &resources, t).await?;
    let mut lock = fetch_lock(c, id, true).await?;
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
    c: &mut MySqlConnection,
    holder: &str,
    session: &str,
    t: Now,
) -> Result<Vec<Lock>> {
    let found: Vec<(LockId, String)> = sqlx::query_as(
        "SELECT id, resources FROM locks WHERE holder = ? AND session = ? AND ended_at IS NULL \
         ORDER BY id",
    )
    .bind(holder)
    .bind(session)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut all = BTreeSet::new();
    for (id, json) in &found {
        all.extend(parse_resources(*id, json)?);
    }
    let all: Vec<ResourceName> = all.into_iter().collect();
    let now = begin(c, &all, t).await?;
    let mut out = Vec::new();
    for (id, _) in found {
        let mut lock = fetch_lock(c, id, true).await?;
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
    c: &mut MySqlConnection,
    id: LockId,
    caller: &str,
    t: Now,
) -> Result<Lock> {
    let resources = resources_of(c, id).await?;
    let now = begin(c, &resources, t).await?;
    let mut lock = fetch_lock(c, id, true).await?;
    let holds = holds(c, &lock.resources).await?;
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

pub(super) async fn get(c: &mut MySqlConnection, id: LockId, t: Now) -> Result<Lock> {
    let now = now(c, t).await?;
    Ok(lock_rules::settle(fetch_lock(c, id, false).await?, now))
}

pub(super) async fn list(c: &mut MySqlConnection, f: &LockFilter, t: Now) -> Result<Vec<Lock>> {
    let now = now(c, t).await?;
    let resource = f.resource.as_ref().map(|r| r.as_str());
    sqlx::query(concat!(
        "SELECT ",
        l_lock_cols!(),
        " FROM locks l WHERE l.ended_at IS NULL AND l.expires_at > ? AND l.id > ? \
         AND (? IS NULL OR l.holder = ?) AND (? IS NULL OR l.session = ?) \
         AND (? IS NULL OR EXISTS (SELECT 1 FROM lock_holds h WHERE h.lock_id = l.id \
              AND h.resource_hash = UNHEX(SHA2(?, 256)))) \
         ORDER BY l.id LIMIT ?"
    ))
    .bind(ms(now))
    .bind(f.after.unwrap_or(0))
    .bind(f.holder.as_deref())
    .bind(f.holder.as_deref())
    .bind(f.session.as_deref())
    .bind(f.session.as_deref())
    .bind(resource)
    .bind(resource)
    .bind(i64::from(f.limit))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::lock)
    .collect()
}

/// The status of each distinct resource, read in one snapshot (the
/// caller's transaction is REPEATABLE READ with a consistent snapshot).
pub(super) async fn status(
    c: &mut MySqlConnection,
    resources: &[ResourceName],
    t: Now,
) -> Result<Vec<ResourceStatus>> {
    let now = now(c, t).await?;
    let mut distinct: Vec<ResourceName> = resources.to_vec();
    distinct.sort();
    distinct.dedup();
    let list = hashes(distinct.len());
    let rows = bind_names(
        sqlx::query(AssertSqlSafe(format!(
            concat!(
                "SELECT ",
                l_lock_cols!(),
                ", h.resource FROM lock_holds h JOIN locks l ON l.id = h.lock_id \
                 WHERE h.resource_hash IN ({}) AND l.ended_at IS NULL AND l.expires_at > ? ORDER BY l.id"
            ),
            list
        ))),
        &distinct,
    )
    .bind(ms(now))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut locks: BTreeMap<String, Vec<Lock>> = BTreeMap::new();
    for row in &rows {
        let resource: String = sql::col(row, 14)?;
        locks.entry(resource).or_default().push(sql::lock(row)?);
    }
    let waiting: BTreeMap<String, i64> = bind_names(
        sqlx::query(AssertSqlSafe(format!(
            "SELECT tr.resource, COUNT(*) FROM lock_ticket_resources tr \
             JOIN lock_tickets t ON t.id = tr.ticket_id \
             WHERE tr.resource_hash IN ({list}) AND t.expires_at > ? GROUP BY tr.resource"
        ))),
        &distinct,
    )
    .bind(ms(now))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(|row| Ok((sql::col::<_, String>(row, 0)?, sql::col::<_, i64>(row, 1)?)))
    .collect::<Result<_>>()?;
    let tokens: BTreeMap<String, i64> = bind_names(
        sqlx::query(AssertSqlSafe(format!(
            "SELECT resource, token FROM lock_resources WHERE resource_hash IN ({list})"
        ))),
        &distinct,
    )
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(|row| Ok((sql::col::<_, String>(row, 0)?, sql::col::<_, i64>(row, 1)?)))
    .collect::<Result<_>>()?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(distinct.len());
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
    c: &mut MySqlConnection,
    resource: &ResourceName,
    limit: u32,
) -> Result<Vec<LockEvent>> {
    sqlx::query(concat!(
        "SELECT ",
        lock_event_cols!(),
        " FROM (SELECT ",
        lock_event_cols!(),
        ", id, CASE WHEN kind IN ('released', 'expired', 'forced') THEN 0 ELSE 1 END AS kind_rank \
         FROM lock_events WHERE resource_hash = UNHEX(SHA2(?, 256)) \
         ORDER BY at DESC, kind_rank DESC, id DESC LIMIT ?) AS e ORDER BY at, kind_rank, id"
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
    c: &mut MySqlConnection,
    t: Now,
    retention: Duration,
    key_retention: Duration,
) -> Result<LockSweepReport> {
    let now = now(c, t).await?;
    let due: Vec<(LockId, String)> = sqlx::query_as(
        "SELECT id, resources FROM locks WHERE ended_at IS NULL AND expires_at <= ? \
         ORDER BY id LIMIT ?",
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
            all.extend(parse_resources(*id, json)?);
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
        announce(c, &freed).await?;
    }
    let abandoned: Vec<TicketId> =
        sqlx::query_scalar("SELECT id FROM lock_tickets WHERE expires_at <= ?")
            .bind(ms(now))
            .fetch_all(&mut *c)
            .await
            .map_err(db)?;
    for t in &abandoned {
        if delete_ticket(c, *t).await? {
            report.abandoned_tickets += 1;
        }
    }
    let cutoff = ms(now - retention);
    sqlx::query(
        "DELETE FROM lock_keys WHERE created_at < ? OR lock_id IN \
         (SELECT id FROM locks WHERE ended_at < ?)",
    )
    .bind(ms(now - key_retention))
    .bind(cutoff)
    .execute(&mut *c)
    .await
    .map_err(db)?;
    report.forgotten = sqlx::query("DELETE FROM locks WHERE ended_at < ?")
        .bind(cutoff)
        .execute(&mut *c)
        .await
        .map_err(db)?
        .rows_affected();
    Ok(report)
}

pub(super) async fn versions(
    c: &mut MySqlConnection,
    resources: &[ResourceName],
) -> Result<Vec<i64>> {
    let found: BTreeMap<String, i64> = bind_names(
        sqlx::query(AssertSqlSafe(format!(
            "SELECT resource, version FROM lock_resources WHERE resource_hash IN ({})",
            hashes(resources.len())
        ))),
        resources,
    )
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(|row| Ok((sql::col::<_, String>(row, 0)?, sql::col::<_, i64>(row, 1)?)))
    .collect::<Result<_>>()?;
    Ok(resources
        .iter()
        .map(|r| found.get(r.as_str()).copied().unwrap_or(0))
        .collect())
}
