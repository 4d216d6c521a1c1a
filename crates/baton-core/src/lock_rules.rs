//! The lock rules, as pure functions over [`Lock`]s and views of what holds
//! and waits for each resource.
//!
//! A store, inside one transaction, locks the rows of the resources
//! concerned (always in one global order), loads the live holds and the
//! queued requests of those resources, and asks [`admit`] whether a request
//! may be granted; then it applies [`grant`] (or [`heartbeat`],
//! [`release`], [`force`], [`expire`], [`upgrade`], [`downgrade`]) and
//! writes back the lock and the returned events — or, when the rule
//! refuses, writes nothing. The store never decides what an operation
//! means; these functions never touch I/O.
//!
//! The queueing rule, which makes waiting fair: a request is granted only
//! if, on every one of its resources, it is compatible with every live
//! lock **and** with every live request queued ahead of it. So a stream of
//! shared requests cannot overtake an exclusive one that is waiting: once
//! the exclusive request queues, later shared requests queue behind it.
//! The earliest queued request is blocked by live locks only, which end
//! (released, forced, or expired), so every queued request is eventually
//! served or gives up when its wait runs out.

use std::collections::BTreeSet;

use chrono::Duration;
use serde_json::json;

use crate::{
    Conflict, EndCause, Error, FencingToken, Lock, LockEnd, LockEvent, LockEventKind, LockId,
    LockMode, LockRequest, ResourceName, Result, TicketId, Timestamp,
};

/// A lock holding a resource, as the store loads it for [`admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The resource held.
    pub resource: ResourceName,
    /// The lock holding it.
    pub lock: LockId,
    /// The lock's holder.
    pub holder: String,
    /// The lock's mode.
    pub mode: LockMode,
    /// The lock's expiry. A hold whose lock expired is no hold at all.
    pub expires_at: Timestamp,
}

/// A request queued for a resource, as the store loads it for [`admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The resource waited for.
    pub resource: ResourceName,
    /// The request's ticket (its place in the queue).
    pub ticket: TicketId,
    /// Who waits.
    pub holder: String,
    /// In which mode.
    pub mode: LockMode,
    /// When its wait runs out. A request whose wait ran out is not in
    /// the queue any more (its waiter is gone).
    pub expires_at: Timestamp,
}

/// The answer of [`admit`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    /// What stands in the way, per resource (holds first, then queued
    /// requests); empty when the request may be granted. A lock that ran
    /// out is no conflict, whether or not its expiry was recorded yet: the
    /// sweeper records it. (A late heartbeat of it cannot revive it: the
    /// grant that stepped over it moved its resource's time past its
    /// expiry, and every operation on a lock runs at the latest time of
    /// its resources.)
    pub conflicts: Vec<Conflict>,
}

impl Admission {
    /// Whether nothing stands in the way.
    pub fn granted(&self) -> bool {
        self.conflicts.is_empty()
    }
}

/// Decides whether a request for `resources` in `mode` may be granted at
/// `now`, given the holds of those resources and the requests queued
/// *ahead* of it (for a request that has not queued yet: every queued
/// request). Holds of lock `own` (an upgrade's own lock) are not
/// conflicts. Holds and requests of other resources are ignored; inputs
/// may come in any order.
pub fn admit(
    resources: &[ResourceName],
    mode: LockMode,
    holds: &[Hold],
    ahead: &[Queued],
    own: Option<LockId>,
    now: Timestamp,
) -> Admission {
    let wanted: BTreeSet<&ResourceName> = resources.iter().collect();
    let mut holds: Vec<&Hold> = holds
        .iter()
        .filter(|h| wanted.contains(&h.resource) && Some(h.lock) != own)
        .collect();
    holds.sort_by(|a, b| (&a.resource, a.lock).cmp(&(&b.resource, b.lock)));
    holds.dedup_by(|a, b| a.resource == b.resource && a.lock == b.lock);
    let mut ahead: Vec<&Queued> = ahead
        .iter()
        .filter(|q| wanted.contains(&q.resource) && q.expires_at > now)
        .collect();
    ahead.sort_by(|a, b| (&a.resource, a.ticket).cmp(&(&b.resource, b.ticket)));
    ahead.dedup_by(|a, b| a.resource == b.resource && a.ticket == b.ticket);
    let mut out = Admission::default();
    for resource in wanted {
        for h in holds.iter().filter(|h| h.resource == *resource) {
            if h.expires_at > now && !mode.compatible(h.mode) {
                out.conflicts.push(Conflict {
                    resource: resource.clone(),
                    holder: h.holder.clone(),
                    mode: h.mode,
                    expires_at: h.expires_at,
                    waiting: false,
                    lock: Some(h.lock),
                });
            }
        }
        for q in ahead.iter().filter(|q| q.resource == *resource) {
            if !mode.compatible(q.mode) {
                out.conflicts.push(Conflict {
                    resource: resource.clone(),
                    holder: q.holder.clone(),
                    mode: q.mode,
                    expires_at: q.expires_at,
                    waiting: true,
                    lock: None,
                });
            }
        }
    }
    out
}

/// Seconds until the earliest conflict may be gone (a lock's expiry, a
/// queued request's end of wait), at least 1: the `Retry-After` of a
/// refusal.
pub fn retry_after(conflicts: &[Conflict], now: Timestamp) -> u32 {
    let soonest = conflicts
        .iter()
        .map(|c| c.expires_at)
        .min()
        .map_or(Duration::seconds(1), |t| t - now);
    let ms = soonest.num_milliseconds().max(1);
    u32::try_from((ms + 999) / 1000).unwrap_or(u32::MAX).max(1)
}

/// The refusal of a blocked request.
pub fn locked(conflicts: Vec<Conflict>, now: Timestamp) -> Error {
    let retry_after = retry_after(&conflicts, now);
    Error::Locked {
        conflicts,
        retry_after,
    }
}

fn events(
    lock: &Lock,
    kind: LockEventKind,
    actor: Option<&str>,
    at: Timestamp,
    detail: serde_json::Value,
) -> Vec<LockEvent> {
    lock.resources
        .iter()
        .map(|r| LockEvent {
            resource: r.clone(),
            lock: lock.id,
            at,
            kind,
            actor: actor.map(str::to_owned),
            holder: lock.holder.clone(),
            mode: lock.mode,
            token: lock.token,
            detail: detail.clone(),
        })
        .collect()
}

fn expiry(now: Timestamp, ttl_seconds: u32, max_hold_until: Option<Timestamp>) -> Timestamp {
    let idle = now + Duration::seconds(ttl_seconds.into());
    max_hold_until.map_or(idle, |limit| idle.min(limit))
}

/// The lock a store inserts for an admitted request, with id `id` and the
/// fencing token `token` (the next value of the global counter, taken
/// after the request's resources were locked), and its `granted` events.
pub fn grant(
    req: &LockRequest,
    id: LockId,
    token: FencingToken,
    now: Timestamp,
) -> (Lock, Vec<LockEvent>) {
    let max_hold_until = req
        .max_hold_seconds
        .map(|s| now + Duration::seconds(s.into()));
    let lock = Lock {
        id,
        token,
        resources: req.resources.clone(),
        mode: req.mode,
        holder: req.holder.clone(),
        session: req.session.clone(),
        ttl_seconds: req.ttl_seconds,
        acquired_at: now,
        expires_at: expiry(now, req.ttl_seconds, max_hold_until),
        max_hold_until,
        ended: None,
    };
    let detail = json!({
        "expires_at": lock.expires_at,
        "session": lock.session,
        "max_hold_until": lock.max_hold_until,
    });
    let evs = events(
        &lock,
        LockEventKind::Granted,
        Some(&req.holder),
        now,
        detail,
    );
    (lock, evs)
}

/// How an expired lock ended: at its expiry, by the clock, naming the
/// limit it reached.
fn expiry_end(lock: &Lock) -> LockEnd {
    let reason = if lock.max_hold_until == Some(lock.expires_at) {
        "max_hold_seconds reached"
    } else {
        "ttl_seconds ran out without a heartbeat"
    };
    LockEnd {
        cause: EndCause::Expired,
        at: lock.expires_at,
        by: None,
        reason: Some(reason.to_owned()),
    }
}

/// The lock as callers see it at `now`: a lock that ran out is expired at
/// once, whether or not the sweeper has recorded it yet.
pub fn settle(mut lock: Lock, now: Timestamp) -> Lock {
    if lock.ended.is_none() && lock.expires_at <= now {
        lock.ended = Some(expiry_end(&lock));
    }
    lock
}

/// Checks that `caller` may act with `lock` at `now`: the lock has not
/// ended (nor expired) — [`Error::LockEnded`] says how it did — and the
/// caller holds it ([`Error::NotLockHolder`]). An ended lock is reported
/// before the holder is looked at, so the evicted holder learns why.
pub fn check_holder(lock: &Lock, caller: &str, now: Timestamp) -> Result<()> {
    if let Some(end) = settle(lock.clone(), now).ended {
        return Err(Error::LockEnded {
            lock: lock.id,
            end: Box::new(end),
        });
    }
    if lock.holder != caller {
        return Err(Error::NotLockHolder {
            lock: lock.id,
            holder: lock.holder.clone(),
        });
    }
    Ok(())
}

/// Keeps the caller's lock alive: expires `ttl_seconds` from now, but
/// never after `max_hold_until`.
pub fn heartbeat(
    lock: &mut Lock,
    caller: &str,
    ttl_seconds: u32,
    now: Timestamp,
) -> Result<Vec<LockEvent>> {
    check_holder(lock, caller, now)?;
    lock.ttl_seconds = ttl_seconds;
    lock.expires_at = expiry(now, ttl_seconds, lock.max_hold_until);
    let detail = json!({ "expires_at": lock.expires_at, "ttl_seconds": ttl_seconds });
    Ok(events(
        lock,
        LockEventKind::Extended,
        Some(caller),
        now,
        detail,
    ))
}

/// The holder releases its lock.
pub fn release(
    lock: &mut Lock,
    caller: &str,
    session_logout: bool,
    now: Timestamp,
) -> Result<Vec<LockEvent>> {
    check_holder(lock, caller, now)?;
    lock.ended = Some(LockEnd {
        cause: EndCause::Released,
        at: now,
        by: Some(caller.to_owned()),
        reason: session_logout.then(|| "session ended".to_owned()),
    });
    let detail = json!({ "session_logout": session_logout });
    Ok(events(
        lock,
        LockEventKind::Released,
        Some(caller),
        now,
        detail,
    ))
}

/// A supervisor ends someone's lock, for `reason`. The lock's resources
/// get the fencing token `resource_token` (a fresh value of the global
/// counter, so larger than the evicted holder's): a downstream system
/// that has seen it refuses the evicted holder's next write.
pub fn force(
    lock: &mut Lock,
    actor: &str,
    reason: &str,
    resource_token: FencingToken,
    now: Timestamp,
) -> Result<Vec<LockEvent>> {
    if let Some(end) = settle(lock.clone(), now).ended {
        return Err(Error::LockEnded {
            lock: lock.id,
            end: Box::new(end),
        });
    }
    debug_assert!(resource_token > lock.token);
    lock.ended = Some(LockEnd {
        cause: EndCause::Forced,
        at: now,
        by: Some(actor.to_owned()),
        reason: Some(reason.to_owned()),
    });
    let detail = json!({ "reason": reason, "resource_token": resource_token });
    Ok(events(
        lock,
        LockEventKind::Forced,
        Some(actor),
        now,
        detail,
    ))
}

/// Records that a lock ran out: ended at its expiry, by the clock. `None`
/// when it is live or already ended.
pub fn expire(lock: &mut Lock, now: Timestamp) -> Option<Vec<LockEvent>> {
    if lock.ended.is_some() || lock.expires_at > now {
        return None;
    }
    let end = expiry_end(lock);
    let detail = json!({ "reason": end.reason });
    let at = end.at;
    lock.ended = Some(end);
    Some(events(lock, LockEventKind::Expired, None, at, detail))
}

/// Decides whether the caller's shared `lock` may become exclusive at
/// `now`: only when no other live lock holds any of its resources
/// (requests queued for them do not stand in the way: the caller already
/// holds the resources). `Ok(false)`: it is exclusive already, nothing to
/// do; `Ok(true)`: go ahead with [`upgrade`].
pub fn plan_upgrade(lock: &Lock, caller: &str, holds: &[Hold], now: Timestamp) -> Result<bool> {
    check_holder(lock, caller, now)?;
    if lock.mode == LockMode::Exclusive {
        return Ok(false);
    }
    let admission = admit(
        &lock.resources,
        LockMode::Exclusive,
        holds,
        &[],
        Some(lock.id),
        now,
    );
    if admission.granted() {
        Ok(true)
    } else {
        Err(locked(admission.conflicts, now))
    }
}

/// Makes a shared lock exclusive with a new fencing token (the next value
/// of the global counter), after [`plan_upgrade`] allowed it.
pub fn upgrade(lock: &mut Lock, token: FencingToken, now: Timestamp) -> Vec<LockEvent> {
    debug_assert!(token > lock.token);
    let from = lock.token;
    lock.mode = LockMode::Exclusive;
    lock.token = token;
    let holder = lock.holder.clone();
    events(
        lock,
        LockEventKind::Upgraded,
        Some(&holder),
        now,
        json!({ "from_token": from }),
    )
}

/// Makes the caller's exclusive lock shared (same token): others may now
/// read. `Ok(None)` when it is shared already.
pub fn downgrade(lock: &mut Lock, caller: &str, now: Timestamp) -> Result<Option<Vec<LockEvent>>> {
    check_holder(lock, caller, now)?;
    if lock.mode == LockMode::Shared {
        return Ok(None);
    }
    lock.mode = LockMode::Shared;
    Ok(Some(events(
        lock,
        LockEventKind::Downgraded,
        Some(caller),
        now,
        json!({}),
    )))
}

#[cfg(test)]
mod tests;
