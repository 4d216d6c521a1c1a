//! Lock-manager operations in SQLite's dialect. Each function runs inside
//! the writer's savepoint (or on a reader) and is atomic with it; the
//! decisions are [`baton_core::lock_rules`]', this module only loads and
//! saves. Writes are serialised by the one writer thread, so no row is
//! locked explicitly here; the server databases lock the resources' rows
//! where this module merely reads them.

use std::collections::BTreeSet;

use baton_core::clock::from_millis;
use baton_core::lock_rules::{self, Hold, Queued};
use baton_core::{
    Acquisition, EndCause, Error, FencingToken, Lock, LockEnd, LockEvent, LockFilter, LockId,
    LockRequest, LockSweepReport, Queueing, ResourceName, ResourceStatus, Result, StoreError,
    TicketId, Timestamp,
};
use chrono::Duration;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::queue::Db;
use super::rows::ms;

/// The columns of `locks`, in the order [`lock_row`] reads.
const LOCK_COLS: &str = "id, token, resources, mode, holder, session, ttl_seconds, acquired_at, \
    expires_at, max_hold_until, ended_at, end_cause, ended_by, end_reason";

/// The same, qualified by the alias `l`.
const L_LOCK_COLS: &str = "l.id, l.token, l.resources, l.mode, l.holder, l.session, \
    l.ttl_seconds, l.acquired_at, l.expires_at, l.max_hold_until, l.ended_at, l.end_cause, \
    l.ended_by, l.end_reason";

/// The columns of `lock_events`, in the order [`event_row`] reads.
const EVENT_COLS: &str = "resource, lock_id, at, kind, actor, holder, mode, token, detail";

fn bad(col: usize, what: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("{what}").into(),
    )
}

fn lock_row(row: &Row) -> rusqlite::Result<Lock> {
    let resources: Vec<ResourceName> =
        serde_json::from_str(&row.get::<_, String>(2)?).map_err(|e| bad(2, e))?;
    let ended = match (
        row.get::<_, Option<i64>>(10)?,
        row.get::<_, Option<String>>(11)?,
    ) {
        (Some(at), Some(cause)) => Some(LockEnd {
            cause: cause.parse::<EndCause>().map_err(|e| bad(11, e))?,
            at: from_millis(at),
            by: row.get(12)?,
            reason: row.get(13)?,
        }),
        _ => None,
    };
    Ok(Lock {
        id: row.get(0)?,
        token: FencingToken(row.get(1)?),
        resources,
        mode: row.get::<_, String>(3)?.parse().map_err(|e| bad(3, e))?,
        holder: row.get(4)?,
        session: row.get(5)?,
        ttl_seconds: row.get(6)?,
        acquired_at: from_millis(row.get(7)?),
        expires_at: from_millis(row.get(8)?),
        max_hold_until: row.get::<_, Option<i64>>(9)?.map(from_millis),
        ended,
    })
}

fn event_row(row: &Row) -> rusqlite::Result<LockEvent> {
    Ok(LockEvent {
        resource: ResourceName::new(row.get::<_, String>(0)?).map_err(|e| bad(0, e))?,
        lock: row.get(1)?,
        at: from_millis(row.get(2)?),
        kind: row.get::<_, String>(3)?.parse().map_err(|e| bad(3, e))?,
        actor: row.get(4)?,
        holder: row.get(5)?,
        mode: row.get::<_, String>(6)?.parse().map_err(|e| bad(6, e))?,
        token: FencingToken(row.get(7)?),
        detail: serde_json::from_str(&row.get::<_, String>(8)?).map_err(|e| bad(8, e))?,
    })
}

fn load(c: &Connection, id: LockId) -> Result<Lock> {
    c.prepare_cached(&format!("SELECT {LOCK_COLS} FROM locks WHERE id = ?1"))
        .db()?
        .query_row([id], lock_row)
        .optional()
        .db()?
        .ok_or_else(|| Error::not_found("lock", id))
}

/// Writes back what the rules change of a lock.
fn save(c: &Connection, lock: &Lock) -> Result<()> {
    let end = lock.ended.as_ref();
    c.prepare_cached(
        "UPDATE locks SET token = ?2, mode = ?3, ttl_seconds = ?4, expires_at = ?5, \
         ended_at = ?6, end_cause = ?7, ended_by = ?8, end_reason = ?9 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        lock.id,
        lock.token.0,
        lock.mode.as_str(),
        lock.ttl_seconds,
        ms(lock.expires_at),
        end.map(|e| ms(e.at)),
        end.map(|e| e.cause.as_str()),
        end.and_then(|e| e.by.as_deref()),
        end.and_then(|e| e.reason.as_deref()),
    ])
    .db()?;
    if lock.ended.is_some() {
        c.prepare_cached("DELETE FROM lock_holds WHERE lock_id = ?1")
            .db()?
            .execute([lock.id])
            .db()?;
    }
    Ok(())
}

fn insert_events(c: &Connection, events: &[LockEvent]) -> Result<()> {
    let mut stmt = c
        .prepare_cached(&format!(
            "INSERT INTO lock_events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))
        .db()?;
    for e in events {
        stmt.execute(params![
            e.resource.as_str(),
            e.lock,
            ms(e.at),
            e.kind.as_str(),
            e.actor,
            e.holder,
            e.mode.as_str(),
            e.token.0,
            e.detail.to_string(),
        ])
        .db()?;
    }
    Ok(())
}

/// The time of an operation on `resources`: `now`, but never earlier than
/// the latest time an earlier operation on any of them used, so that
/// times on a resource only move forward in commit order (the engine reads
/// its clock before the writer runs the operation).
fn op_time(c: &Connection, resources: &[ResourceName], now: Timestamp) -> Result<Timestamp> {
    let mut stmt = c
        .prepare_cached("SELECT at FROM lock_resources WHERE resource = ?1")
        .db()?;
    let mut latest = ms(now);
    for r in resources {
        if let Some(at) = stmt
            .query_row([r.as_str()], |row| row.get::<_, i64>(0))
            .optional()
            .db()?
        {
            latest = latest.max(at);
        }
    }
    Ok(from_millis(latest))
}

/// Records that an operation on `resources` happened at `now`, creating
/// their rows if new.
fn touch(c: &Connection, resources: &[ResourceName], now: Timestamp) -> Result<()> {
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO lock_resources (resource, at) VALUES (?1, ?2) \
             ON CONFLICT (resource) DO UPDATE SET at = max(at, excluded.at)",
        )
        .db()?;
    for r in resources {
        stmt.execute(params![r.as_str(), ms(now)]).db()?;
    }
    Ok(())
}

fn set_tokens(c: &Connection, resources: &[ResourceName], token: FencingToken) -> Result<()> {
    let mut stmt = c
        .prepare_cached("UPDATE lock_resources SET token = ?2 WHERE resource = ?1")
        .db()?;
    for r in resources {
        stmt.execute(params![r.as_str(), token.0]).db()?;
    }
    Ok(())
}

/// Marks a change that may unblock waiting requests (see
/// `Store::lock_versions`).
fn bump_versions(c: &Connection, resources: &[ResourceName]) -> Result<()> {
    let mut stmt = c
        .prepare_cached("UPDATE lock_resources SET version = version + 1 WHERE resource = ?1")
        .db()?;
    for r in resources {
        stmt.execute([r.as_str()]).db()?;
    }
    Ok(())
}

fn next_token(c: &Connection) -> Result<FencingToken> {
    c.prepare_cached("UPDATE lock_counter SET value = value + 1 WHERE id = 1 RETURNING value")
        .db()?
        .query_row([], |r| r.get(0))
        .db()
        .map(FencingToken)
}

/// The unended locks holding any of `resources`.
fn holds(c: &Connection, resources: &[ResourceName]) -> Result<Vec<Hold>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT h.resource, l.id, l.holder, l.mode, l.expires_at FROM lock_holds h \
             JOIN locks l ON l.id = h.lock_id WHERE h.resource = ?1 AND l.ended_at IS NULL",
        )
        .db()?;
    let mut out = Vec::new();
    for r in resources {
        let rows = stmt
            .query_map([r.as_str()], |row| {
                Ok(Hold {
                    resource: ResourceName::new(row.get::<_, String>(0)?).map_err(|e| bad(0, e))?,
                    lock: row.get(1)?,
                    holder: row.get(2)?,
                    mode: row.get::<_, String>(3)?.parse().map_err(|e| bad(3, e))?,
                    expires_at: from_millis(row.get(4)?),
                })
            })
            .db()?;
        for h in rows {
            out.push(h.db()?);
        }
    }
    Ok(out)
}

/// The live requests queued for any of `resources` ahead of `before`
/// (all of them when `None`).
fn queued(
    c: &Connection,
    resources: &[ResourceName],
    before: Option<TicketId>,
    now: Timestamp,
) -> Result<Vec<Queued>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT tr.resource, t.id, t.holder, t.mode, t.expires_at FROM lock_ticket_resources tr \
             JOIN lock_tickets t ON t.id = tr.ticket_id \
             WHERE tr.resource = ?1 AND t.id < ?2 AND t.expires_at > ?3",
        )
        .db()?;
    let mut out = Vec::new();
    for r in resources {
        let rows = stmt
            .query_map(
                params![r.as_str(), before.unwrap_or(i64::MAX), ms(now)],
                |row| {
                    Ok(Queued {
                        resource: ResourceName::new(row.get::<_, String>(0)?)
                            .map_err(|e| bad(0, e))?,
                        ticket: row.get(1)?,
                        holder: row.get(2)?,
                        mode: row.get::<_, String>(3)?.parse().map_err(|e| bad(3, e))?,
                        expires_at: from_millis(row.get(4)?),
                    })
                },
            )
            .db()?;
        for q in rows {
            out.push(q.db()?);
        }
    }
    Ok(out)
}

/// Records the expiry of each of `ids` that ran out (and is not recorded
/// yet), freeing its resources.
fn expire_locks(c: &Connection, ids: &BTreeSet<LockId>, now: Timestamp) -> Result<Vec<Lock>> {
    let mut out = Vec::new();
    for id in ids {
        let mut lock = load(c, *id)?;
        if let Some(events) = lock_rules::expire(&mut lock, now) {
            touch(c, &lock.resources, now)?;
            save(c, &lock)?;
            insert_events(c, &events)?;
            bump_versions(c, &lock.resources)?;
            out.push(lock);
        }
    }
    Ok(out)
}

fn delete_ticket(c: &Connection, ticket: TicketId) -> Result<Option<Vec<ResourceName>>> {
    let resources: Vec<String> = c
        .prepare_cached("DELETE FROM lock_ticket_resources WHERE ticket_id = ?1 RETURNING resource")
        .db()?
        .query_map([ticket], |r| r.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let deleted = c
        .prepare_cached("DELETE FROM lock_tickets WHERE id = ?1")
        .db()?
        .execute([ticket])
        .db()?;
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

pub(super) fn acquire(
    c: &Connection,
    req: &LockRequest,
    q: Queueing,
    now: Timestamp,
) -> Result<Acquisition> {
    let now = op_time(c, &req.resources, now)?;
    // 1. A retried request: the lock the key got.
    if let Some(key) = &req.idempotency_key {
        let prior: Option<LockId> = c
            .prepare_cached("SELECT lock_id FROM lock_keys WHERE holder = ?1 AND key = ?2")
            .db()?
            .query_row(params![req.holder, key], |r| r.get(0))
            .optional()
            .db()?;
        if let Some(id) = prior {
            let lock = lock_rules::settle(load(c, id)?, now);
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
        Some(t) => c
            .prepare_cached("SELECT id FROM lock_tickets WHERE id = ?1 AND expires_at > ?2")
            .db()?
            .query_row(params![t, ms(now)], |r| r.get(0))
            .optional()
            .db()?,
    };
    // A ticket whose wait ran out is no place in the queue any more.
    if let Some(t) = q.ticket
        && own.is_none()
    {
        delete_ticket(c, t)?;
    }
    let holds = holds(c, &req.resources)?;
    let ahead = queued(c, &req.resources, own, now)?;
    let admission = lock_rules::admit(&req.resources, req.mode, &holds, &ahead, None, now);
    if !admission.granted() {
        let ticket = match (own, q.wait) {
            (Some(t), _) => Some(t),
            (None, Some(wait)) => Some(enqueue(c, req, now, now + wait)?),
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
        delete_ticket(c, t)?;
    }
    touch(c, &req.resources, now)?;
    let token = next_token(c)?;
    let (mut lock, mut events) = lock_rules::grant(req, 0, token, now);
    let resources_json =
        serde_json::to_string(&lock.resources).map_err(|e| StoreError::fatal(e.to_string()))?;
    lock.id = c
        .prepare_cached(
            "INSERT INTO locks (token, resources, mode, holder, session, ttl_seconds, acquired_at, \
             expires_at, max_hold_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        )
        .db()?
        .query_row(
            params![
                lock.token.0,
                resources_json,
                lock.mode.as_str(),
                lock.holder,
                lock.session,
                lock.ttl_seconds,
                ms(lock.acquired_at),
                ms(lock.expires_at),
                lock.max_hold_until.map(ms),
            ],
            |r| r.get(0),
        )
        .db()?;
    for e in &mut events {
        e.lock = lock.id;
    }
    {
        let mut stmt = c
            .prepare_cached("INSERT INTO lock_holds (resource, lock_id) VALUES (?1, ?2)")
            .db()?;
        for r in &lock.resources {
            stmt.execute(params![r.as_str(), lock.id]).db()?;
        }
    }
    set_tokens(c, &lock.resources, token)?;
    insert_events(c, &events)?;
    if let Some(key) = &req.idempotency_key {
        c.prepare_cached(
            "INSERT INTO lock_keys (holder, key, lock_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?
        .execute(params![req.holder, key, lock.id, ms(now)])
        .db()?;
    }
    Ok(Acquisition::Granted {
        lock,
        created: true,
    })
}

fn enqueue(
    c: &Connection,
    req: &LockRequest,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<TicketId> {
    // The resources' rows carry the versions a withdrawal bumps.
    touch(c, &req.resources, now)?;
    let id: TicketId = c
        .prepare_cached(
            "INSERT INTO lock_tickets (holder, mode, expires_at) VALUES (?1, ?2, ?3) RETURNING id",
        )
        .db()?
        .query_row(
            params![req.holder, req.mode.as_str(), ms(expires_at)],
            |r| r.get(0),
        )
        .db()?;
    let mut stmt = c
        .prepare_cached("INSERT INTO lock_ticket_resources (resource, ticket_id) VALUES (?1, ?2)")
        .db()?;
    for r in &req.resources {
        stmt.execute(params![r.as_str(), id]).db()?;
    }
    Ok(id)
}

pub(super) fn withdraw(c: &Connection, ticket: TicketId) -> Result<Option<Vec<ResourceName>>> {
    let resources = delete_ticket(c, ticket)?;
    if let Some(rs) = &resources {
        bump_versions(c, rs)?;
    }
    Ok(resources)
}

/// Loads a lock, applies `rule` at the operation's time, and saves the
/// lock with the rule's events — or changes nothing if the rule refuses.
/// `frees`: the change may unblock waiting requests.
fn mutate(
    c: &Connection,
    id: LockId,
    now: Timestamp,
    frees: bool,
    rule: impl FnOnce(&mut Lock, Timestamp) -> Result<Vec<LockEvent>>,
) -> Result<Lock> {
    let mut lock = load(c, id)?;
    let now = op_time(c, &lock.resources, now)?;
    let events = rule(&mut lock, now)?;
    if !events.is_empty() {
        touch(c, &lock.resources, now)?;
        save(c, &lock)?;
        insert_events(c, &events)?;
        if frees {
            bump_versions(c, &lock.resources)?;
        }
    }
    Ok(lock)
}

pub(super) fn heartbeat(
    c: &Connection,
    id: LockId,
    caller: &str,
    ttl_seconds: u32,
    now: Timestamp,
) -> Result<Lock> {
    mutate(c, id, now, false, |l, now| {
        lock_rules::heartbeat(l, caller, ttl_seconds, now)
    })
}

pub(super) fn release(c: &Connection, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
    mutate(c, id, now, true, |l, now| {
        lock_rules::release(l, caller, false, now)
    })
}

pub(super) fn force(
    c: &Connection,
    id: LockId,
    actor: &str,
    reason: &str,
    now: Timestamp,
) -> Result<Lock> {
    let lock = load(c, id)?;
    let now = op_time(c, &lock.resources, now)?;
    // Refuse before taking a token, so a refusal changes nothing.
    if let Some(end) = lock_rules::settle(lock, now).ended {
        return Err(Error::LockEnded {
            lock: id,
            end: Box::new(end),
        });
    }
    let bump = next_token(c)?;
    let lock = mutate(c, id, now, true, |l, now| {
        lock_rules::force(l, actor, reason, bump, now)
    })?;
    set_tokens(c, &lock.resources, bump)?;
    Ok(lock)
}

pub(super) fn release_session(
    c: &Connection,
    holder: &str,
    session: &str,
    now: Timestamp,
) -> Result<Vec<Lock>> {
    let ids: Vec<LockId> = c
        .prepare_cached(
            "SELECT id FROM locks WHERE holder = ?1 AND session = ?2 AND ended_at IS NULL \
             AND expires_at > ?3 ORDER BY id",
        )
        .db()?
        .query_map(params![holder, session, ms(now)], |r| r.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    ids.into_iter()
        .map(|id| {
            mutate(c, id, now, true, |l, now| {
                lock_rules::release(l, holder, true, now)
            })
        })
        .collect()
}

pub(super) fn upgrade(c: &Connection, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
    let lock = load(c, id)?;
    let now = op_time(c, &lock.resources, now)?;
    let holds = holds(c, &lock.resources)?;
    if !lock_rules::plan_upgrade(&lock, caller, &holds, now)? {
        return Ok(lock);
    }
    let token = next_token(c)?;
    let lock = mutate(c, id, now, false, |l, now| {
        Ok(lock_rules::upgrade(l, token, now))
    })?;
    set_tokens(c, &lock.resources, token)?;
    Ok(lock)
}

pub(super) fn downgrade(c: &Connection, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
    mutate(c, id, now, true, |l, now| {
        Ok(lock_rules::downgrade(l, caller, now)?.unwrap_or_default())
    })
}

pub(super) fn get(c: &Connection, id: LockId, now: Timestamp) -> Result<Lock> {
    Ok(lock_rules::settle(load(c, id)?, now))
}

pub(super) fn list(c: &Connection, f: &LockFilter, now: Timestamp) -> Result<Vec<Lock>> {
    let sql = format!(
        "SELECT {L_LOCK_COLS} FROM locks l WHERE l.ended_at IS NULL AND l.expires_at > ?1 \
         AND l.id > ?2 AND (?3 IS NULL OR l.holder = ?3) AND (?4 IS NULL OR l.session = ?4) \
         AND (?5 IS NULL OR EXISTS (SELECT 1 FROM lock_holds h WHERE h.lock_id = l.id AND h.resource = ?5)) \
         ORDER BY l.id LIMIT ?6"
    );
    c.prepare_cached(&sql)
        .db()?
        .query_map(
            params![
                ms(now),
                f.after.unwrap_or(0),
                f.holder,
                f.session,
                f.resource.as_ref().map(|r| r.as_str()),
                i64::from(f.limit),
            ],
            lock_row,
        )
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

pub(super) fn status(
    c: &Connection,
    resources: &[ResourceName],
    now: Timestamp,
) -> Result<Vec<ResourceStatus>> {
    // One read transaction, so the answers agree with each other.
    c.execute_batch("BEGIN").db()?;
    let r = status_in_tx(c, resources, now);
    let _ = c.execute_batch("COMMIT");
    r
}

pub(super) fn status_in_tx(
    c: &Connection,
    resources: &[ResourceName],
    now: Timestamp,
) -> Result<Vec<ResourceStatus>> {
    let mut holders_stmt = c
        .prepare_cached(&format!(
            "SELECT {L_LOCK_COLS} FROM lock_holds h JOIN locks l ON l.id = h.lock_id \
             WHERE h.resource = ?1 AND l.ended_at IS NULL AND l.expires_at > ?2 ORDER BY l.id"
        ))
        .db()?;
    let mut waiting_stmt = c
        .prepare_cached(
            "SELECT count(*) FROM lock_ticket_resources tr JOIN lock_tickets t ON t.id = tr.ticket_id \
             WHERE tr.resource = ?1 AND t.expires_at > ?2",
        )
        .db()?;
    let mut token_stmt = c
        .prepare_cached("SELECT token FROM lock_resources WHERE resource = ?1")
        .db()?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(resources.len());
    for r in resources {
        if !seen.insert(r) {
            continue;
        }
        let locks: Vec<Lock> = holders_stmt
            .query_map(params![r.as_str(), ms(now)], lock_row)
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()?;
        let waiting: i64 = waiting_stmt
            .query_row(params![r.as_str(), ms(now)], |row| row.get(0))
            .db()?;
        let token: Option<i64> = token_stmt
            .query_row([r.as_str()], |row| row.get(0))
            .optional()
            .db()?;
        out.push(crate::sql::resource_status(r, locks, waiting, token));
    }
    Ok(out)
}

/// Of events at the same instant, ends (released, expired, forced) come
/// first: the sweeper records an expiry after the fact.
const RANK: &str = "CASE WHEN kind IN ('released', 'expired', 'forced') THEN 0 ELSE 1 END";

pub(super) fn history(
    c: &Connection,
    resource: &ResourceName,
    limit: u32,
) -> Result<Vec<LockEvent>> {
    c.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM (SELECT {EVENT_COLS}, id FROM lock_events WHERE resource = ?1 \
         ORDER BY at DESC, {RANK} DESC, id DESC LIMIT ?2) ORDER BY at, {RANK}, id"
    ))
    .db()?
    .query_map(params![resource.as_str(), i64::from(limit)], event_row)
    .db()?
    .collect::<rusqlite::Result<_>>()
    .db()
}

pub(super) fn sweep(
    c: &Connection,
    now: Timestamp,
    retention: Duration,
    key_retention: Duration,
) -> Result<LockSweepReport> {
    let due: BTreeSet<LockId> = c
        .prepare_cached("SELECT id FROM locks WHERE ended_at IS NULL AND expires_at <= ?1")
        .db()?
        .query_map([ms(now)], |r| r.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let expired = expire_locks(c, &due, now)?;
    c.prepare_cached(
        "DELETE FROM lock_ticket_resources WHERE ticket_id IN \
         (SELECT id FROM lock_tickets WHERE expires_at <= ?1)",
    )
    .db()?
    .execute([ms(now)])
    .db()?;
    let abandoned = c
        .prepare_cached("DELETE FROM lock_tickets WHERE expires_at <= ?1")
        .db()?
        .execute([ms(now)])
        .db()?;
    let cutoff = ms(now - retention);
    c.prepare_cached(
        "DELETE FROM lock_keys WHERE created_at < ?1 OR lock_id IN \
         (SELECT id FROM locks WHERE ended_at < ?2)",
    )
    .db()?
    .execute(params![ms(now - key_retention), cutoff])
    .db()?;
    let forgotten = c
        .prepare_cached("DELETE FROM locks WHERE ended_at < ?1")
        .db()?
        .execute([cutoff])
        .db()?;
    Ok(LockSweepReport {
        expired,
        abandoned_tickets: abandoned as u64,
        forgotten: forgotten as u64,
    })
}

pub(super) fn versions(c: &Connection, resources: &[ResourceName]) -> Result<Vec<i64>> {
    let mut stmt = c
        .prepare_cached("SELECT version FROM lock_resources WHERE resource = ?1")
        .db()?;
    resources
        .iter()
        .map(|r| {
            stmt.query_row([r.as_str()], |row| row.get(0))
                .optional()
                .db()
                .map(|v| v.unwrap_or(0))
        })
        .collect()
}
