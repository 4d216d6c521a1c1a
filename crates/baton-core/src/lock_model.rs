//! The lock manager in memory: every lock operation of the
//! [`Store`](crate::Store) trait over plain collections, built only from
//! [`lock_rules`](crate::lock_rules).
//!
//! It is the executable specification of the stores' lock operations: the
//! exhaustive exploration in this module's tests checks it against the
//! invariants (mutual exclusion, fencing tokens, FIFO fairness, progress),
//! and the conformance suite drives every store and this model through the
//! same random operations and requires the same answers. Deliberately
//! naive: linear scans over everything.
//!
//! Numbering: locks, tickets and fencing tokens are numbered 1, 2, 3, ...
//! in the order they are created, as a fresh store numbers them when
//! operations run one after another.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;

use crate::lock_rules::{self, Hold, Queued};
use crate::{
    Acquisition, Error, FencingToken, Lock, LockEvent, LockFilter, LockId, LockMode, LockRequest,
    LockSweepReport, Queueing, ResourceHolder, ResourceName, ResourceStatus, Result, TicketId,
    Timestamp,
};

/// A queued request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// Who waits.
    pub holder: String,
    /// In which mode.
    pub mode: LockMode,
    /// For which resources (sorted).
    pub resources: Vec<ResourceName>,
    /// When the wait runs out.
    pub expires_at: Timestamp,
}

/// The whole state of a lock manager.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LockTable {
    /// Every lock, live or ended (until forgotten).
    pub locks: BTreeMap<LockId, Lock>,
    /// Queued requests by ticket.
    pub tickets: BTreeMap<TicketId, Ticket>,
    /// Each resource's current fencing token.
    pub tokens: BTreeMap<ResourceName, FencingToken>,
    /// (holder, idempotency key) → (lock, when the key was first used).
    pub keys: BTreeMap<(String, String), (LockId, Timestamp)>,
    /// Every event, in the order recorded.
    pub history: Vec<LockEvent>,
    last_lock: LockId,
    last_ticket: TicketId,
    last_token: i64,
}

impl LockTable {
    /// An empty lock manager.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_token(&mut self) -> FencingToken {
        self.last_token += 1;
        FencingToken(self.last_token)
    }

    fn holds(&self) -> Vec<Hold> {
        self.locks
            .values()
            .filter(|l| l.ended.is_none())
            .flat_map(|l| {
                l.resources.iter().map(|r| Hold {
                    resource: r.clone(),
                    lock: l.id,
                    holder: l.holder.clone(),
                    mode: l.mode,
                    expires_at: l.expires_at,
                })
            })
            .collect()
    }

    fn queued(&self, before: Option<TicketId>) -> Vec<Queued> {
        self.tickets
            .iter()
            .filter(|(id, _)| before.is_none_or(|b| **id < b))
            .flat_map(|(id, t)| {
                t.resources.iter().map(|r| Queued {
                    resource: r.clone(),
                    ticket: *id,
                    holder: t.holder.clone(),
                    mode: t.mode,
                    expires_at: t.expires_at,
                })
            })
            .collect()
    }

    fn record(&mut self, events: Vec<LockEvent>) {
        self.history.extend(events);
    }

    fn expire_locks(&mut self, ids: &BTreeSet<LockId>, now: Timestamp) {
        for id in ids {
            if let Some(lock) = self.locks.get_mut(id)
                && let Some(evs) = lock_rules::expire(lock, now)
            {
                self.history.extend(evs);
            }
        }
    }

    fn get(&self, id: LockId) -> Result<Lock> {
        self.locks
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("lock", id))
    }

    /// `Store::acquire_lock`.
    pub fn acquire(
        &mut self,
        req: &LockRequest,
        q: Queueing,
        now: Timestamp,
    ) -> Result<Acquisition> {
        if let Some(key) = &req.idempotency_key
            && let Some((id, _)) = self.keys.get(&(req.holder.clone(), key.clone()))
        {
            let lock = lock_rules::settle(self.get(*id)?, now);
            if let Some(end) = lock.ended {
                return Err(Error::LockEnded {
                    lock: lock.id,
                    end: Box::new(end),
                });
            }
            return Ok(Acquisition::Granted {
                lock,
                created: false,
            });
        }
        let own = q
            .ticket
            .filter(|t| self.tickets.get(t).is_some_and(|t| t.expires_at > now));
        // A ticket whose wait ran out is no place in the queue any more.
        if let Some(t) = q.ticket
            && own.is_none()
        {
            self.tickets.remove(&t);
        }
        let admission = lock_rules::admit(
            &req.resources,
            req.mode,
            &self.holds(),
            &self.queued(own),
            None,
            now,
        );
        if !admission.granted() {
            let ticket = match (own, q.wait) {
                (Some(t), _) => Some(t),
                (None, Some(wait)) => {
                    self.last_ticket += 1;
                    self.tickets.insert(
                        self.last_ticket,
                        Ticket {
                            holder: req.holder.clone(),
                            mode: req.mode,
                            resources: req.resources.clone(),
                            expires_at: now + wait,
                        },
                    );
                    Some(self.last_ticket)
                }
                (None, None) => None,
            };
            return Ok(Acquisition::Blocked {
                conflicts: admission.conflicts,
                ticket,
                now,
            });
        }
        if let Some(t) = own {
            self.tickets.remove(&t);
        }
        let token = self.next_token();
        self.last_lock += 1;
        let (lock, events) = lock_rules::grant(req, self.last_lock, token, now);
        for r in &lock.resources {
            self.tokens.insert(r.clone(), token);
        }
        self.record(events);
        if let Some(key) = &req.idempotency_key {
            self.keys
                .insert((req.holder.clone(), key.clone()), (lock.id, now));
        }
        self.locks.insert(lock.id, lock.clone());
        Ok(Acquisition::Granted {
            lock,
            created: true,
        })
    }

    /// `Store::withdraw_lock_ticket`: the resources it waited for, or
    /// `None` if it was gone already.
    pub fn withdraw(&mut self, ticket: TicketId) -> Option<Vec<ResourceName>> {
        self.tickets.remove(&ticket).map(|t| t.resources)
    }

    fn mutate(
        &mut self,
        id: LockId,
        rule: impl FnOnce(&mut Lock) -> Result<Vec<LockEvent>>,
    ) -> Result<Lock> {
        let mut lock = self.get(id)?;
        let events = rule(&mut lock)?;
        self.record(events);
        self.locks.insert(id, lock.clone());
        Ok(lock)
    }

    /// `Store::heartbeat_lock`.
    pub fn heartbeat(
        &mut self,
        id: LockId,
        caller: &str,
        ttl_seconds: u32,
        now: Timestamp,
    ) -> Result<Lock> {
        self.mutate(id, |l| lock_rules::heartbeat(l, caller, ttl_seconds, now))
    }

    /// `Store::release_lock`.
    pub fn release(&mut self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
        self.mutate(id, |l| lock_rules::release(l, caller, false, now))
    }

    /// `Store::force_release_lock`.
    pub fn force(&mut self, id: LockId, actor: &str, reason: &str, now: Timestamp) -> Result<Lock> {
        let lock = self.get(id)?;
        // Refuse before taking a token, so a refusal changes nothing.
        if let Some(end) = lock_rules::settle(lock.clone(), now).ended {
            return Err(Error::LockEnded {
                lock: id,
                end: Box::new(end),
            });
        }
        let bump = self.next_token();
        let lock = self.mutate(id, |l| lock_rules::force(l, actor, reason, bump, now))?;
        for r in &lock.resources {
            self.tokens.insert(r.clone(), bump);
        }
        Ok(lock)
    }

    /// `Store::release_session_locks`: the caller's live locks of
    /// `session`, released, by id.
    pub fn release_session(&mut self, holder: &str, session: &str, now: Timestamp) -> Vec<Lock> {
        let ids: Vec<LockId> = self
            .locks
            .values()
            .filter(|l| {
                l.holder == holder && l.session.as_deref() == Some(session) && l.is_live(now)
            })
            .map(|l| l.id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(lock) = self.mutate(id, |l| lock_rules::release(l, holder, true, now)) {
                out.push(lock);
            }
        }
        out
    }

    /// `Store::upgrade_lock`.
    pub fn upgrade(&mut self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
        let lock = self.get(id)?;
        if !lock_rules::plan_upgrade(&lock, caller, &self.holds(), now)? {
            return Ok(lock);
        }
        let token = self.next_token();
        let lock = self.mutate(id, |l| Ok(lock_rules::upgrade(l, token, now)))?;
        for r in &lock.resources {
            self.tokens.insert(r.clone(), token);
        }
        Ok(lock)
    }

    /// `Store::downgrade_lock`.
    pub fn downgrade(&mut self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
        self.mutate(id, |l| {
            Ok(lock_rules::downgrade(l, caller, now)?.unwrap_or_default())
        })
    }

    /// `Store::lock`: the lock as callers see it at `now`.
    pub fn lock(&self, id: LockId, now: Timestamp) -> Result<Lock> {
        Ok(lock_rules::settle(self.get(id)?, now))
    }

    /// `Store::list_locks`.
    pub fn list(&self, f: &LockFilter, now: Timestamp) -> Vec<Lock> {
        self.locks
            .values()
            .filter(|l| {
                l.is_live(now)
                    && l.id > f.after.unwrap_or(0)
                    && f.resource.as_ref().is_none_or(|r| l.resources.contains(r))
                    && f.holder.as_ref().is_none_or(|h| l.holder == *h)
                    && f.session
                        .as_ref()
                        .is_none_or(|s| l.session.as_ref() == Some(s))
            })
            .take(f.limit as usize)
            .cloned()
            .collect()
    }

    /// `Store::lock_status`: one answer per distinct resource, in the
    /// order asked.
    pub fn status(&self, resources: &[ResourceName], now: Timestamp) -> Vec<ResourceStatus> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for r in resources {
            if !seen.insert(r) {
                continue;
            }
            let holders: Vec<ResourceHolder> = self
                .locks
                .values()
                .filter(|l| l.is_live(now) && l.resources.contains(r))
                .map(|l| ResourceHolder {
                    lock: l.id,
                    holder: l.holder.clone(),
                    session: l.session.clone(),
                    mode: l.mode,
                    expires_at: l.expires_at,
                })
                .collect();
            let mode = if holders.iter().any(|h| h.mode == LockMode::Exclusive) {
                Some(LockMode::Exclusive)
            } else if holders.is_empty() {
                None
            } else {
                Some(LockMode::Shared)
            };
            let waiting = self
                .tickets
                .values()
                .filter(|t| t.expires_at > now && t.resources.contains(r))
                .count();
            out.push(ResourceStatus {
                resource: r.clone(),
                locked: !holders.is_empty(),
                mode,
                holders,
                waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
                token: self.tokens.get(r).copied().unwrap_or_default(),
            });
        }
        out
    }

    /// `Store::resource_history`: the latest `limit` events of the
    /// resource, oldest first: by time, ends (released, expired, forced)
    /// before other events of the same instant, then in the order
    /// recorded. (The sweeper records an expiry after the fact, at the
    /// instant the lock ran out.)
    pub fn resource_history(&self, resource: &ResourceName, limit: u32) -> Vec<LockEvent> {
        let mut events: Vec<(usize, &LockEvent)> = self
            .history
            .iter()
            .enumerate()
            .filter(|(_, e)| e.resource == *resource)
            .collect();
        events.sort_by_key(|(i, e)| (e.at, !e.kind.is_end(), *i));
        let skip = events.len().saturating_sub(limit as usize);
        events
            .into_iter()
            .skip(skip)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// `Store::sweep_locks`: records expired locks (by id), drops queued
    /// requests whose wait ran out, forgets locks ended more than
    /// `retention` ago and idempotency keys older than `key_retention`.
    pub fn sweep(
        &mut self,
        now: Timestamp,
        retention: Duration,
        key_retention: Duration,
    ) -> LockSweepReport {
        let mut report = LockSweepReport::default();
        let due: BTreeSet<LockId> = self
            .locks
            .values()
            .filter(|l| l.ended.is_none() && l.expires_at <= now)
            .map(|l| l.id)
            .collect();
        self.expire_locks(&due, now);
        report.expired = due.iter().map(|id| self.locks[id].clone()).collect();
        let before = self.tickets.len();
        self.tickets.retain(|_, t| t.expires_at > now);
        report.abandoned_tickets = (before - self.tickets.len()) as u64;
        let forget: BTreeSet<LockId> = self
            .locks
            .values()
            .filter(|l| l.ended.as_ref().is_some_and(|e| e.at < now - retention))
            .map(|l| l.id)
            .collect();
        report.forgotten = forget.len() as u64;
        self.locks.retain(|id, _| !forget.contains(id));
        self.keys
            .retain(|_, (id, at)| !forget.contains(id) && *at >= now - key_retention);
        report
    }
}

#[cfg(test)]
mod tests;
