//! The engine's lock-manager operations: roles, waiting, wake-ups,
//! metrics. What each operation means is the store's and
//! `baton_core::lock_rules`'.
//!
//! Waiting: an acquire with a wait queues a ticket in the store (its place
//! in the FIFO queue of each of its resources), then sleeps until one of
//! its resources may have become free (see `lock_waiters`), until the
//! earliest conflicting lock would expire, or until the wait runs out —
//! whichever comes first — and tries again with its ticket. When the
//! wait runs out, or the caller goes away (the future is dropped), the
//! ticket is withdrawn, so nobody waits behind a request that is gone.

use std::time::Duration as StdDuration;

use baton_core::{
    Acquisition, Action, Error, Lock, LockEnd, LockEvent, LockFilter, LockId, LockRequest,
    LockSweepReport, Principal, Queueing, ResourceName, ResourceStatus, Result, TicketId,
    lock_limits, lock_rules, lock_ttl, validate_reason, validate_session,
};
use chrono::Duration;
use metrics::{counter, histogram};

use super::Engine;

/// How much longer than its waiter a ticket lives in the store, so that
/// the waiter's last attempt still holds its place; a ticket whose waiter
/// died is ignored after it.
const TICKET_GRACE: StdDuration = StdDuration::from_secs(2);

/// Withdraws a ticket when the request holding it ends without a grant,
/// even if its future is dropped mid-wait.
struct TicketGuard {
    engine: Engine,
    ticket: Option<TicketId>,
}

impl TicketGuard {
    async fn withdraw(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.engine.withdraw(t).await;
        }
    }
}

impl Drop for TicketGuard {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let engine = self.engine.clone();
            rt.spawn(async move { engine.withdraw(t).await });
        }
    }
}

fn to_std(d: Duration) -> StdDuration {
    d.to_std().unwrap_or(StdDuration::ZERO)
}

/// Counts how a lock ended, with its hold time.
fn count_end(lock: &Lock) {
    if let Some(LockEnd { cause, at, .. }) = &lock.ended {
        counter!("baton_lock_releases_total", "cause" => cause.as_str()).increment(1);
        let held = (*at - lock.acquired_at).num_milliseconds().max(0) as f64 / 1000.0;
        histogram!("baton_lock_hold_seconds").record(held);
    }
}

impl Engine {
    /// Acquires a lock for `who` (the request's holder is set to
    /// `who.name`), all of its resources or none. Fails fast with
    /// [`Error::Locked`] (each conflict named) unless `wait` > 0: then it
    /// queues fairly behind conflicting requests and waits up to `wait`.
    /// Returns the lock and whether this call created it (`false`: a
    /// retried request with the same idempotency key).
    pub async fn acquire_lock(
        &self,
        who: &Principal,
        mut req: LockRequest,
        wait: StdDuration,
    ) -> Result<(Lock, bool)> {
        who.require(Action::Lock)?;
        if wait > StdDuration::from_secs(lock_limits::MAX_WAIT_SECONDS.into()) {
            return Err(Error::invalid(
                "wait_seconds",
                format!("at most {}", lock_limits::MAX_WAIT_SECONDS),
            ));
        }
        req.holder = who.name.clone();
        let deadline = tokio::time::Instant::now() + wait;
        // Whether an attempt was blocked before the grant.
        let mut waited = false;
        let mut guard = TicketGuard {
            engine: self.clone(),
            ticket: None,
        };
        loop {
            // Register before trying, so that news arriving between the
            // attempt and the wait wakes us.
            let waiter =
                (!wait.is_zero()).then(|| self.inner.lock_waiters.register(&req.resources));
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let queueing = Queueing {
                ticket: guard.ticket,
                wait: (!remaining.is_zero())
                    .then(|| Duration::from_std(remaining + TICKET_GRACE).ok())
                    .flatten(),
            };
            let attempt = self
                .inner
                .store
                .acquire_lock(req.clone(), queueing, self.now())
                .await;
            let attempt = self.count_stale_lock(attempt)?;
            match attempt {
                Acquisition::Granted { lock, created } => {
                    // The store dropped the ticket with the grant.
                    guard.ticket = None;
                    if created {
                        counter!("baton_lock_grants_total", "mode" => lock.mode.as_str())
                            .increment(1);
                        self.emit_lock_granted(&lock);
                    }
                    if waited {
                        counter!("baton_lock_waits_total", "outcome" => "granted").increment(1);
                    }
                    return Ok((lock, created));
                }
                Acquisition::Blocked {
                    conflicts,
                    ticket,
                    now,
                } => {
                    guard.ticket = ticket;
                    waited = true;
                    let Some(waiter) = waiter.filter(|_| !remaining.is_zero()) else {
                        guard.withdraw().await;
                        counter!("baton_lock_conflicts_total").increment(1);
                        if !wait.is_zero() {
                            counter!("baton_lock_waits_total", "outcome" => "timed_out")
                                .increment(1);
                        }
                        return Err(lock_rules::locked(conflicts, now));
                    };
                    // Look again when woken, when the earliest conflict
                    // would expire (nobody announces an expiry before
                    // the sweeper records it), or when the wait is over.
                    let soonest = conflicts
                        .iter()
                        .map(|c| to_std(c.expires_at - now))
                        .min()
                        .unwrap_or(remaining);
                    let until = deadline
                        .min(tokio::time::Instant::now() + soonest + StdDuration::from_millis(5));
                    tokio::select! {
                        _ = waiter.woken() => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }

    /// Takes a queued request out of the queue and wakes whoever waits for
    /// its resources (they may now be first).
    async fn withdraw(&self, ticket: TicketId) {
        match self
            .inner
            .store
            .withdraw_lock_ticket(ticket, self.now())
            .await
        {
            Ok(Some(resources)) => self.wake_resources(&resources),
            Ok(None) => {}
            Err(e) => {
                // It is dropped once its wait runs out.
                tracing::warn!(error = %e, ticket, "could not withdraw a lock request");
            }
        }
    }

    fn wake_resources(&self, resources: &[ResourceName]) {
        for r in resources {
            self.inner.lock_waiters.wake(r);
        }
    }

    fn count_stale_lock<T>(&self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(Error::LockEnded { .. })) {
            counter!("baton_lock_stale_refusals_total").increment(1);
        }
        r
    }

    /// The holder keeps its lock alive for `ttl_seconds` more (the lock's
    /// current TTL when `None`), never past its `max_hold_seconds`.
    pub async fn heartbeat_lock(
        &self,
        who: &Principal,
        id: LockId,
        ttl_seconds: Option<u32>,
    ) -> Result<Lock> {
        who.require(Action::Lock)?;
        let ttl = match ttl_seconds {
            Some(t) => {
                lock_ttl(t)?;
                t
            }
            None => self.inner.store.lock(id, self.now()).await?.ttl_seconds,
        };
        let r = self
            .inner
            .store
            .heartbeat_lock(id, &who.name, ttl, self.now())
            .await;
        self.count_stale_lock(r)
    }

    /// The holder releases its lock.
    pub async fn release_lock(&self, who: &Principal, id: LockId) -> Result<Lock> {
        who.require(Action::Lock)?;
        let r = self
            .inner
            .store
            .release_lock(id, &who.name, self.now())
            .await;
        let lock = self.count_stale_lock(r)?;
        count_end(&lock);
        self.emit_lock_released(&lock, "released");
        self.wake_resources(&lock.resources);
        Ok(lock)
    }

    /// Supervisor: ends someone's lock for `reason` (required), recorded in
    /// the resources' history; the resources get a new fencing token.
    pub async fn force_release_lock(
        &self,
        who: &Principal,
        id: LockId,
        reason: Option<&str>,
    ) -> Result<Lock> {
        who.require(Action::Supervise)?;
        let reason = validate_reason(reason)?;
        let lock = self
            .inner
            .store
            .force_release_lock(id, &who.name, &reason, self.now())
            .await?;
        count_end(&lock);
        self.emit_lock_released(&lock, "forced");
        self.wake_resources(&lock.resources);
        Ok(lock)
    }

    /// Releases every live lock of the caller with the session label
    /// `session` (logout); returns them.
    pub async fn release_session(&self, who: &Principal, session: &str) -> Result<Vec<Lock>> {
        who.require(Action::Lock)?;
        validate_session(session)?;
        let locks = self
            .inner
            .store
            .release_session_locks(&who.name, session, self.now())
            .await?;
        for l in &locks {
            count_end(l);
            self.emit_lock_released(l, "session");
            self.wake_resources(&l.resources);
        }
        Ok(locks)
    }

    /// Makes the caller's shared lock exclusive (new fencing token) when
    /// it is the only holder of its resources; [`Error::Locked`] naming the
    /// other holders otherwise.
    pub async fn upgrade_lock(&self, who: &Principal, id: LockId) -> Result<Lock> {
        who.require(Action::Lock)?;
        let r = self
            .inner
            .store
            .upgrade_lock(id, &who.name, self.now())
            .await;
        if matches!(r, Err(Error::Locked { .. })) {
            counter!("baton_lock_conflicts_total").increment(1);
        }
        self.count_stale_lock(r)
    }

    /// Makes the caller's exclusive lock shared (same token).
    pub async fn downgrade_lock(&self, who: &Principal, id: LockId) -> Result<Lock> {
        who.require(Action::Lock)?;
        let r = self
            .inner
            .store
            .downgrade_lock(id, &who.name, self.now())
            .await;
        let lock = self.count_stale_lock(r)?;
        self.wake_resources(&lock.resources);
        Ok(lock)
    }

    /// One lock, live or ended (within the retention period).
    pub async fn lock(&self, who: &Principal, id: LockId) -> Result<Lock> {
        who.require(Action::Read)?;
        self.inner.store.lock(id, self.now()).await
    }

    /// A page of live locks by resource, holder, session.
    pub async fn list_locks(&self, who: &Principal, filter: &LockFilter) -> Result<Vec<Lock>> {
        who.require(Action::Read)?;
        if !(1..=lock_limits::MAX_PAGE).contains(&filter.limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be 1..={}", lock_limits::MAX_PAGE),
            ));
        }
        self.inner.store.list_locks(filter, self.now()).await
    }

    /// The lock state of up to 500 resources.
    pub async fn lock_status(
        &self,
        who: &Principal,
        resources: &[ResourceName],
    ) -> Result<Vec<ResourceStatus>> {
        who.require(Action::Read)?;
        if resources.len() > lock_limits::MAX_STATUS_RESOURCES {
            return Err(Error::invalid(
                "resources",
                format!(
                    "at most {} resources per request, got {}",
                    lock_limits::MAX_STATUS_RESOURCES,
                    resources.len()
                ),
            ));
        }
        self.inner.store.lock_status(resources, self.now()).await
    }

    /// Supervisor: the latest `limit` events of a resource, oldest first.
    pub async fn resource_history(
        &self,
        who: &Principal,
        resource: &ResourceName,
        limit: u32,
    ) -> Result<Vec<LockEvent>> {
        who.require(Action::Supervise)?;
        if !(1..=lock_limits::MAX_HISTORY).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be 1..={}", lock_limits::MAX_HISTORY),
            ));
        }
        self.inner.store.resource_history(resource, limit).await
    }

    /// Lock requests waiting in this process right now.
    pub fn waiting_lock_requests(&self) -> usize {
        self.inner.lock_waiters.count()
    }

    /// One lock sweep: records expired locks (waking whoever waits for
    /// their resources), drops abandoned queued requests, forgets locks
    /// ended longer ago than the retention and old idempotency keys.
    pub async fn sweep_locks(&self) -> Result<LockSweepReport> {
        let report = self
            .inner
            .store
            .sweep_locks(
                self.now(),
                self.inner.settings.lock_retention,
                self.inner.settings.idempotency_retention,
            )
            .await?;
        for l in &report.expired {
            count_end(l);
            self.emit_lock_released(l, "expired");
            self.wake_resources(&l.resources);
        }
        Ok(report)
    }

    /// For stores that cannot push news: wakes waiting lock requests whose
    /// resources changed (see `Store::lock_versions`).
    pub(super) async fn poll_for_free_resources(&self) {
        let resources = self.inner.lock_waiters.resources();
        if resources.is_empty() {
            self.inner.lock_waiters.observe_versions(&[], &[]);
            return;
        }
        match self.inner.store.lock_versions(&resources).await {
            Ok(versions) => self
                .inner
                .lock_waiters
                .observe_versions(&resources, &versions),
            Err(e) => tracing::warn!(error = %e, "polling lock versions failed; will retry"),
        }
    }
}
