//! The engine: Baton's operations as async methods, each checking the
//! caller's role, reading the clock once, calling the store, and waking
//! waiting claimers when work became available.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use baton_core::{
    Action, ClaimRequest, Claimed, Clock, CompleteRequest, Error, FencingToken, Item, ItemEvent,
    ItemFilter, ItemId, ItemState, NewItem, Principal, QueueConfig, QueueName, QueueStats,
    ResourceName, Result, Role, Store, SweepReport, SystemClock, Timestamp, Wakeups,
    delay_duration, lease_duration, limits,
};
use chrono::Duration;
use metrics::counter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod audit;
mod identity;
mod live;
mod records;

use crate::auth_cache::AuthCache;
use crate::events::{Bus, BusLimits, EventKind};
use crate::identity::{generate_token, hash_token};
use crate::lease_watch::LeaseWatch;
use crate::lock_waiters::LockWaiters;
use crate::waiters::Waiters;

mod locks;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How often the sweeper expires leases and promotes scheduled items.
    pub sweep_interval: StdDuration,
    /// How long a claim's or an acquisition's idempotency key is
    /// remembered.
    pub idempotency_retention: Duration,
    /// How long a refused record write is kept for its author.
    pub conflict_retention: Duration,
    /// How long an ended lock is kept, so its holder can learn how and why
    /// it ended (`GET /v1/locks/{id}`).
    pub lock_retention: Duration,
    /// How long a web session lasts after login.
    pub session_ttl: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            sweep_interval: StdDuration::from_millis(500),
            idempotency_retention: Duration::hours(24),
            conflict_retention: Duration::seconds(
                baton_core::record_limits::CONFLICT_RETENTION_SECONDS,
            ),
            lock_retention: Duration::days(7),
            session_ttl: Duration::hours(12),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    waiters: Waiters,
    lock_waiters: LockWaiters,
    settings: EngineSettings,
    auth_cache: AuthCache,
    session_cache: AuthCache<baton_core::Session>,
    /// Password hashes computed at once: one per core, so a burst of
    /// logins costs bounded memory and leaves cores for everything else.
    hashing: tokio::sync::Semaphore,
    bus: Bus,
    leases: LeaseWatch,
    /// This server's id among those sharing the database, for relayed
    /// events.
    origin: String,
}

/// Baton's engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine over `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: EngineSettings) -> Self {
        let bus = Bus::new(clock.now(), BusLimits::default());
        Self {
            inner: Arc::new(Inner {
                bus,
                leases: LeaseWatch::default(),
                origin: format!("{:016x}", rand::random::<u64>()),
                store,
                clock,
                waiters: Waiters::default(),
                lock_waiters: LockWaiters::default(),
                settings,
                auth_cache: AuthCache::default(),
                session_cache: AuthCache::default(),
                hashing: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
            }),
        }
    }

    /// Opens (and migrates) the store at `url` with default settings; see
    /// [`Engine::open_with`].
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &baton_store::StoreSettings::default()).await
    }

    /// Opens (and migrates) the store at `url` (`sqlite://path`,
    /// `postgres://...`, `mysql://...`) with connection-pool `settings`,
    /// the system clock and default engine settings.
    pub async fn open_with(url: &str, settings: &baton_store::StoreSettings) -> Result<Self> {
        let store = baton_store::open_with(url, settings).await?;
        Ok(Self::new(
            store,
            Arc::new(SystemClock),
            EngineSettings::default(),
        ))
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The engine's current time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    // ---- work queues ----

    /// Enqueues an item. Returns the item and whether it was created
    /// (`false`: an unfinished item with the same dedupe key exists).
    pub async fn enqueue(&self, who: &Principal, new: NewItem) -> Result<(Item, bool)> {
        who.require(Action::Enqueue)?;
        let (item, created) = self.inner.store.enqueue(new, &who.name, self.now()).await?;
        if created {
            counter!("baton_items_enqueued_total").increment(1);
            self.emit_item(EventKind::ItemEnqueued, &item, None);
            if item.state == ItemState::Ready {
                self.wake(&item.queue, Some(&item.kind), 1);
            }
        }
        Ok((item, created))
    }

    /// Claims the next item of `req.queue` for `who` (the request's holder
    /// is set to `who.name`). With `wait` > 0 and nothing claimable, waits
    /// up to `wait` for work to arrive (holding no connection meanwhile).
    pub async fn claim(
        &self,
        who: &Principal,
        mut req: ClaimRequest,
        wait: StdDuration,
    ) -> Result<Option<Claimed>> {
        who.require(Action::Work)?;
        if wait > StdDuration::from_secs(limits::MAX_WAIT_SECONDS.into()) {
            return Err(Error::invalid(
                "wait_seconds",
                format!("at most {}", limits::MAX_WAIT_SECONDS),
            ));
        }
        req.holder = who.name.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register before trying, so an item that arrives between the
            // try and the wait still wakes us.
            let waiter =
                (!wait.is_zero()).then(|| self.inner.waiters.register(&req.queue, &req.kinds));
            if let Some(claimed) = self.inner.store.claim(req.clone(), self.now()).await? {
                counter!("baton_claims_total").increment(1);
                self.claimed(&claimed);
                // Dropping the waiter passes on a wake-up it may have got.
                drop(waiter);
                // This claim may have recovered more work lazily (expired
                // leases, due scheduled items) that no one announced: let
                // the next waiter, if any, look.
                self.wake(&req.queue, None, 1);
                return Ok(Some(claimed));
            }
            let Some(mut waiter) = waiter else {
                return Ok(None);
            };
            if tokio::time::timeout_at(deadline, waiter.woken())
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Extends the caller's lease.
    pub async fn heartbeat(
        &self,
        who: &Principal,
        id: ItemId,
        token: FencingToken,
        lease_seconds: u32,
    ) -> Result<Item> {
        who.require(Action::Work)?;
        let lease = lease_duration(lease_seconds)?;
        let r = self
            .inner
            .store
            .heartbeat(id, &who.name, token, lease, self.now())
            .await;
        self.count_stale(&r);
        if let Ok(item) = &r
            && let Some(lease) = &item.lease
        {
            self.inner.leases.extend(item.id, lease, self.now());
        }
        r
    }

    /// Gives the item back, claimable again after `delay_seconds`.
    pub async fn release(
        &self,
        who: &Principal,
        id: ItemId,
        token: FencingToken,
        delay_seconds: u32,
    ) -> Result<Item> {
        who.require(Action::Work)?;
        let delay = delay_duration("delay_seconds", delay_seconds)?;
        let r = self
            .inner
            .store
            .release(id, &who.name, token, delay, self.now())
            .await;
        self.count_stale(&r);
        let item = r?;
        counter!("baton_releases_total").increment(1);
        self.inner.leases.forget(id, token);
        self.emit_item(EventKind::ItemReleased, &item, None);
        self.wake_if_ready(&item);
        Ok(item)
    }

    /// Completes (or escalates) the item.
    pub async fn complete(
        &self,
        who: &Principal,
        id: ItemId,
        req: CompleteRequest,
    ) -> Result<Item> {
        who.require(Action::Work)?;
        let outcome = req.outcome.clone();
        let token = req.token;
        let r = self
            .inner
            .store
            .complete(id, &who.name, req, self.now())
            .await;
        self.count_stale(&r);
        let item = r?;
        counter!("baton_completions_total", "outcome" => outcome).increment(1);
        self.inner.leases.forget(id, token);
        self.emit_item(EventKind::ItemCompleted, &item, None);
        self.wake_if_ready(&item);
        Ok(item)
    }

    /// Supervisor: takes the lease away; the item is ready again.
    pub async fn revoke(&self, who: &Principal, id: ItemId) -> Result<Item> {
        who.require(Action::Supervise)?;
        let before = self.inner.store.item(id).await.ok().and_then(|i| i.lease);
        let item = self.inner.store.revoke(id, &who.name, self.now()).await?;
        counter!("baton_revocations_total").increment(1);
        self.emit_item(EventKind::ItemRevoked, &item, None);
        if let Some(lease) = before {
            self.inner.leases.forget(id, lease.token);
            self.emit_lease_lost(&item, &lease, "revoked", Some(&who.name));
        }
        self.wake_if_ready(&item);
        Ok(item)
    }

    /// Supervisor: puts a parked item back into circulation.
    pub async fn requeue(&self, who: &Principal, id: ItemId) -> Result<Item> {
        who.require(Action::Supervise)?;
        let item = self.inner.store.requeue(id, &who.name, self.now()).await?;
        self.emit_item(EventKind::ItemRequeued, &item, None);
        self.wake_if_ready(&item);
        Ok(item)
    }

    /// One item.
    pub async fn item(&self, who: &Principal, id: ItemId) -> Result<Item> {
        who.require(Action::Read)?;
        self.inner.store.item(id).await
    }

    /// Every event of an item, oldest first.
    pub async fn item_history(&self, who: &Principal, id: ItemId) -> Result<Vec<ItemEvent>> {
        who.require(Action::Read)?;
        self.inner.store.item_history(id).await
    }

    /// A page of a queue's items.
    pub async fn list_items(
        &self,
        who: &Principal,
        queue: &QueueName,
        filter: &ItemFilter,
    ) -> Result<Vec<Item>> {
        who.require(Action::Read)?;
        if !(1..=limits::MAX_PAGE).contains(&filter.limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be 1..={}", limits::MAX_PAGE),
            ));
        }
        self.inner.store.list_items(queue, filter).await
    }

    /// Statistics of every queue.
    pub async fn queue_stats(&self, who: &Principal) -> Result<Vec<QueueStats>> {
        who.require(Action::Read)?;
        self.inner.store.queue_stats(self.now()).await
    }

    /// A queue's settings.
    pub async fn queue_config(&self, who: &Principal, queue: &QueueName) -> Result<QueueConfig> {
        who.require(Action::Read)?;
        self.inner.store.queue_config(queue).await
    }

    /// Supervisor: changes some of a queue's settings atomically — `change`
    /// is applied to the settings in force, even when other servers change
    /// them at the same moment — and returns the settings now in force.
    pub async fn update_queue_config(
        &self,
        who: &Principal,
        queue: &QueueName,
        change: impl Fn(QueueConfig) -> QueueConfig + Send + Sync + 'static,
    ) -> Result<QueueConfig> {
        who.require(Action::Supervise)?;
        self.inner
            .store
            .update_queue_config(
                queue,
                Arc::new(move |current| {
                    let new = change(current);
                    new.validate()?;
                    Ok(new)
                }),
            )
            .await
    }

    /// Supervisor: replaces a queue's settings.
    pub async fn set_queue_config(
        &self,
        who: &Principal,
        queue: &QueueName,
        config: &QueueConfig,
    ) -> Result<()> {
        who.require(Action::Supervise)?;
        config.validate()?;
        self.inner.store.set_queue_config(queue, config).await
    }

    /// Claimers waiting per queue right now.
    pub fn waiting_claimers(&self) -> Vec<(QueueName, usize)> {
        self.inner.waiters.counts()
    }

    // ---- maintenance ----

    /// One sweep: expire overdue leases, promote due scheduled items,
    /// forget old idempotency keys, expired conflict objects and expired
    /// web sessions; then wake
    /// claimers for what became claimable.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let now = self.now();
        let report = self
            .inner
            .store
            .sweep(now, self.inner.settings.idempotency_retention)
            .await?;
        self.inner.store.forget_conflicts(now).await?;
        self.inner.store.sweep_sessions(now).await?;
        counter!("baton_leases_expired_total").increment(report.expired);
        counter!("baton_items_parked_total").increment(report.parked);
        for (queue, n) in &report.became_ready {
            self.wake(queue, None, *n);
        }
        Ok(report)
    }

    /// Runs [`Engine::sweep`] and [`Engine::sweep_locks`] every
    /// `sweep_interval` until `shutdown`, runs the timer that publishes
    /// `lease.expiring` and `lease.lost` (see [`crate::events`]), and keeps waiting claimers and
    /// lock requests informed of what other processes sharing the database
    /// commit (see [`Wakeups`]): by the store's notifications where it has
    /// them, otherwise by re-checking queues that have waiting claimers and
    /// the versions of resources that have waiting requests.
    ///
    /// Several processes may sweep the same database at once: every store
    /// sweeps idempotently, skipping rows another sweeper holds.
    pub async fn spawn_sweeper(&self, shutdown: CancellationToken) -> Result<JoinHandle<()>> {
        match self.inner.store.wakeups() {
            Wakeups::Local => {}
            Wakeups::Notify => {
                let waiters = self.inner.waiters.clone();
                self.inner
                    .store
                    .listen(Arc::new(move |queue: Option<&QueueName>| match queue {
                        Some(q) => {
                            waiters.wake(q, None, 1);
                        }
                        None => waiters.wake_all(),
                    }))
                    .await?;
                let lock_waiters = self.inner.lock_waiters.clone();
                self.inner
                    .store
                    .listen_locks(Arc::new(
                        move |resource: Option<&ResourceName>| match resource {
                            Some(r) => lock_waiters.wake(r),
                            None => lock_waiters.wake_all(),
                        },
                    ))
                    .await?;
                self.relay_events(shutdown.clone()).await?;
            }
            Wakeups::Poll(every) => {
                let engine = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tick.tick() => {
                                engine.poll_for_work().await;
                                engine.poll_for_free_resources().await;
                            }
                        }
                    }
                });
            }
        }
        tokio::spawn(self.clone().watch_leases(shutdown.clone()));
        let engine = self.clone();
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(engine.inner.settings.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = engine.sweep().await {
                            tracing::warn!(error = %e, "sweep failed; will retry");
                        }
                        if let Err(e) = engine.sweep_locks().await {
                            tracing::warn!(error = %e, "lock sweep failed; will retry");
                        }
                    }
                }
            }
        }))
    }

    /// For stores that cannot push news: wakes waiting claimers of queues
    /// that have claimable work (which another process may have enqueued).
    async fn poll_for_work(&self) {
        let waiting = self.inner.waiters.counts();
        if waiting.is_empty() {
            return;
        }
        match self.inner.store.queue_stats(self.now()).await {
            Ok(stats) => {
                for (queue, n) in waiting {
                    if let Some(s) = stats.iter().find(|s| s.queue == queue)
                        && s.ready > 0
                    {
                        self.wake(&queue, None, s.ready.min(n as u64));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "polling for work failed; will retry"),
        }
    }

    // ---- identity ----

    /// The principal a bearer token belongs to. Successful lookups are
    /// remembered for a few seconds (see `auth_cache`).
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let hash = hash_token(token);
        if let Some(p) = self.inner.auth_cache.get(&hash) {
            return Ok(Some(p));
        }
        let found = self.inner.store.principal_by_token(&hash).await?;
        if let Some(p) = &found {
            self.inner.auth_cache.put(hash, p.clone());
        }
        Ok(found)
    }

    /// Creates a principal if it does not exist (its role must then match)
    /// and a new token for it. The token is returned once and never stored.
    /// Used by the CLI and at first start; the caller is trusted.
    pub async fn bootstrap_principal(&self, name: &str, role: Role) -> Result<(Principal, String)> {
        baton_core::identity::validate_principal_name(name)?;
        let now = self.now();
        let principal = match self.inner.store.principal(name).await? {
            Some(p) if p.role == role => p,
            Some(p) => {
                return Err(Error::AlreadyExists(format!(
                    "principal {name} exists with role {}",
                    p.role
                )));
            }
            None => self.inner.store.create_principal(name, role, now).await?,
        };
        let token = generate_token();
        self.inner
            .store
            .add_token(principal.id, &hash_token(&token), now)
            .await?;
        Ok((principal, token))
    }

    /// Admin: creates a principal and its first token.
    pub async fn create_principal(
        &self,
        who: &Principal,
        name: &str,
        role: Role,
    ) -> Result<(Principal, String)> {
        who.require(Action::ManagePrincipals)?;
        baton_core::identity::validate_principal_name(name)?;
        let now = self.now();
        let principal = self.inner.store.create_principal(name, role, now).await?;
        let token = generate_token();
        self.inner
            .store
            .add_token(principal.id, &hash_token(&token), now)
            .await?;
        Ok((principal, token))
    }

    /// Admin: every principal.
    pub async fn principals(&self, who: &Principal) -> Result<Vec<Principal>> {
        who.require(Action::ManagePrincipals)?;
        self.inner.store.principals().await
    }

    /// On an empty store, creates the principal `admin` with a token and
    /// returns the token; `None` when principals already exist.
    pub async fn ensure_admin(&self) -> Result<Option<String>> {
        if !self.inner.store.principals().await?.is_empty() {
            return Ok(None);
        }
        match self.bootstrap_principal("admin", Role::Admin).await {
            Ok((_, token)) => Ok(Some(token)),
            // Another server sharing the database created it just now; it
            // prints the token.
            Err(Error::AlreadyExists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- helpers ----

    fn wake(&self, queue: &QueueName, kind: Option<&baton_core::Kind>, n: u64) {
        self.inner.waiters.wake(queue, kind, n);
    }

    fn wake_if_ready(&self, item: &Item) {
        if item.state == ItemState::Ready {
            self.wake(&item.queue, Some(&item.kind), 1);
        }
    }

    fn count_stale<T>(&self, r: &Result<T>) {
        if matches!(r, Err(Error::StaleToken { .. })) {
            counter!("baton_stale_token_refusals_total").increment(1);
        }
    }
}
