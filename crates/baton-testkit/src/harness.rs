//! The scene every case plays in: a [`baton::Engine`] over the store under
//! test, on a [`ManualClock`] stopped at [`t0`], with one principal of each
//! role, and short helpers for the steps cases take again and again.
//!
//! Helpers that describe a step which must succeed (`enqueue`,
//! `claim_some`, `accept`, ...) panic with a message when it does not;
//! helpers named `try_*` (and [`Harness::complete`]) return the `Result`
//! so cases can assert on refusals. Every helper goes through the engine
//! as the given principal, so role checks and wake-ups happen as in
//! production; reads (`item`, `history`, ...) go to the store directly.
//!
//! The engine runs no sweeper: time moves only by [`Harness::advance`],
//! and expired leases are recovered only lazily (by a claim) or by an
//! explicit `h.engine.sweep()`, so every case states exactly when
//! recovery happens.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use baton::{Engine, EngineSettings};
use baton_core::{
    ClaimRequest, Claimed, Clock, CompleteRequest, EventKind, FencingToken, Item, ItemEvent,
    ItemFilter, ItemId, ItemState, Kind, Lock, LockEvent, LockId, LockMode, LockRequest,
    ManualClock, NewItem, Principal, QueueConfig, QueueName, ResourceName, ResourceStatus, Result,
    Role, Store, Timestamp,
};
use chrono::{DateTime, Duration};
use serde_json::json;

use crate::TestStore;

/// The lease length, in seconds, of every claim the harness makes (and of
/// the [`ClaimRequest`]s [`Harness::claim_request`] builds).
pub const LEASE_SECONDS: u32 = 60;

/// An event reduced to what most cases compare: its kind, its actor (`None`
/// for the clock) and its fencing token as a plain number.
pub type Shape = (EventKind, Option<String>, Option<i64>);

/// Builds a [`Shape`] from string and number literals.
pub fn shape(kind: EventKind, actor: Option<&str>, token: Option<i64>) -> Shape {
    (kind, actor.map(str::to_owned), token)
}

/// A queue name; panics if `name` is not a valid one (a bug in the case).
pub fn q(name: &str) -> QueueName {
    QueueName::new(name).unwrap_or_else(|e| panic!("queue name {name:?}: {e}"))
}

/// An item kind; panics if `name` is not a valid one (a bug in the case).
pub fn kind(name: &str) -> Kind {
    Kind::new(name).unwrap_or_else(|e| panic!("kind {name:?}: {e}"))
}

/// A resource name; panics if `name` is not a valid one (a bug in the
/// case).
pub fn res(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap_or_else(|e| panic!("resource name {name:?}: {e}"))
}

/// The TTL, in seconds, of every lock the harness takes (and of the
/// [`LockRequest`]s [`Harness::lock_request`] builds).
pub const LOCK_TTL: u32 = 60;

/// A duration of `n` seconds.
pub fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

/// The instant every harness clock starts at: 2025-01-06 09:00:00 UTC, a
/// Monday morning, on a whole second so that offsets read cleanly.
pub fn t0() -> Timestamp {
    DateTime::from_timestamp(1_736_154_000, 0).expect("a valid timestamp")
}

/// An item together with its whole history: what "nothing changed" means
/// when a case compares before and after a refused operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The item as stored.
    pub item: Item,
    /// Every event of the item, oldest first.
    pub history: Vec<ItemEvent>,
}

/// The lock state of some resources with their whole histories: what
/// "nothing changed" means when a case compares before and after a
/// refused lock operation.
#[derive(Debug, Clone, PartialEq)]
pub struct LockSnapshot {
    /// The resources' status.
    pub status: Vec<ResourceStatus>,
    /// Each resource's history.
    pub histories: Vec<Vec<LockEvent>>,
    /// The locks asked about, as stored.
    pub locks: Vec<Result<Lock>>,
}

/// A fresh engine over a fresh store, a manual clock, and principals of
/// every role. See the [module documentation](self).
pub struct Harness {
    /// The engine under test: the store from the [`TestStore`], the manual
    /// clock, default settings, no sweeper running.
    pub engine: Engine,
    /// `admin`, role [`Role::Admin`].
    pub admin: Principal,
    /// `supervisor`, role [`Role::Supervisor`].
    pub supervisor: Principal,
    /// `app`, role [`Role::App`]: the one that enqueues.
    pub app: Principal,
    /// `alice`, role [`Role::Operator`].
    pub alice: Principal,
    /// `bob`, role [`Role::Operator`].
    pub bob: Principal,
    /// `carol`, role [`Role::Operator`].
    pub carol: Principal,
    clock: Arc<ManualClock>,
    // Last: dropped after the engine, so the store closes before its guard
    // removes the database.
    _db: TestStore,
}

impl Harness {
    /// Sets the scene on a fresh store: an engine on a [`ManualClock`] at
    /// [`t0`] and the principals `admin`, `supervisor`, `app`, `alice`,
    /// `bob` and `carol` (each with a token).
    pub async fn new(db: TestStore) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::new(db.store(), clock.clone(), EngineSettings::default());
        let principal = |name: &'static str, role: Role| {
            let engine = engine.clone();
            async move {
                engine
                    .bootstrap_principal(name, role)
                    .await
                    .unwrap_or_else(|e| panic!("creating principal {name}: {e}"))
                    .0
            }
        };
        Self {
            admin: principal("admin", Role::Admin).await,
            supervisor: principal("supervisor", Role::Supervisor).await,
            app: principal("app", Role::App).await,
            alice: principal("alice", Role::Operator).await,
            bob: principal("bob", Role::Operator).await,
            carol: principal("carol", Role::Operator).await,
            engine,
            clock,
            _db: db,
        }
    }

    /// Creates another operator named `name`.
    pub async fn operator(&self, name: &str) -> Principal {
        self.engine
            .bootstrap_principal(name, Role::Operator)
            .await
            .unwrap_or_else(|e| panic!("creating operator {name}: {e}"))
            .0
    }

    /// The store under test.
    pub fn store(&self) -> Arc<dyn Store> {
        self.engine.store().clone()
    }

    /// The engine's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    // ---- enqueueing ----

    /// Enqueues, as `app`, an item of `kind` into `queue` with `priority`,
    /// ready now, with the payload `{"kind": kind, "priority": priority}`.
    /// Panics unless a new item was created.
    pub async fn enqueue(&self, queue: &str, kind: &str, priority: i32) -> Item {
        let (item, created) = self
            .try_enqueue(queue, kind, priority, 0, None)
            .await
            .unwrap_or_else(|e| panic!("enqueueing into {queue}: {e}"));
        assert!(created, "enqueueing into {queue} created no item");
        item
    }

    /// Enqueues as `app` with a delay (seconds) and an optional dedupe key;
    /// the payload is as for [`Harness::enqueue`]. Returns the engine's
    /// answer: the item and whether it was created.
    pub async fn try_enqueue(
        &self,
        queue: &str,
        kind: &str,
        priority: i32,
        delay_seconds: u32,
        dedupe: Option<&str>,
    ) -> Result<(Item, bool)> {
        let new = NewItem::new(
            q(queue),
            self::kind(kind),
            json!({ "kind": kind, "priority": priority }),
            priority,
            delay_seconds,
            dedupe.map(str::to_owned),
        )?;
        self.engine.enqueue(&self.app, new).await
    }

    // ---- claiming ----

    /// A claim of any kind from `queue` by `who`, for [`LEASE_SECONDS`],
    /// without an idempotency key.
    pub fn claim_request(&self, who: &Principal, queue: &str) -> ClaimRequest {
        ClaimRequest::new(q(queue), vec![], who.name.clone(), LEASE_SECONDS, None)
            .expect("a valid claim request")
    }

    /// Claims `req` as `who` without waiting; the engine's answer.
    pub async fn try_claim(&self, who: &Principal, req: ClaimRequest) -> Result<Option<Claimed>> {
        self.engine.claim(who, req, StdDuration::ZERO).await
    }

    /// Claims from `queue` as `who` without waiting (see
    /// [`Harness::claim_request`]); `None` when nothing is claimable.
    /// Panics if the claim fails.
    pub async fn claim(&self, who: &Principal, queue: &str) -> Option<Claimed> {
        self.try_claim(who, self.claim_request(who, queue))
            .await
            .unwrap_or_else(|e| panic!("{} claiming from {queue}: {e}", who.name))
    }

    /// Like [`Harness::claim`], but panics when nothing is claimable.
    pub async fn claim_some(&self, who: &Principal, queue: &str) -> Claimed {
        self.claim(who, queue)
            .await
            .unwrap_or_else(|| panic!("{} found nothing to claim in {queue}", who.name))
    }

    // ---- completing ----

    /// Completes item `id` as `who` with `token` and `outcome` (no note, no
    /// escalation); the engine's answer.
    pub async fn complete(
        &self,
        who: &Principal,
        id: ItemId,
        token: FencingToken,
        outcome: &str,
    ) -> Result<Item> {
        let req = CompleteRequest::new(token, outcome.to_owned(), None, None)?;
        self.engine.complete(who, id, req).await
    }

    /// Completes a claim as `who` with the outcome `accepted`. Panics if
    /// refused.
    pub async fn accept(&self, who: &Principal, claimed: &Claimed) -> Item {
        self.complete(who, claimed.item.id, claimed.lease.token, "accepted")
            .await
            .unwrap_or_else(|e| panic!("{} accepting item {}: {e}", who.name, claimed.item.id))
    }

    // ---- settings ----

    /// Changes `queue`'s settings as the supervisor: reads the current
    /// ones, lets `change` edit them, and writes them back. Panics if
    /// refused.
    pub async fn configure(&self, queue: &str, change: impl FnOnce(&mut QueueConfig)) {
        let name = q(queue);
        let mut config = self
            .engine
            .queue_config(&self.supervisor, &name)
            .await
            .unwrap_or_else(|e| panic!("reading the settings of {queue}: {e}"));
        change(&mut config);
        self.engine
            .set_queue_config(&self.supervisor, &name, &config)
            .await
            .unwrap_or_else(|e| panic!("setting {config:?} on {queue}: {e}"));
    }

    // ---- locks ----

    /// A request by `who` for `names` in `mode`, TTL [`LOCK_TTL`], no
    /// session, no hold limit, no idempotency key.
    pub fn lock_request(&self, who: &Principal, names: &[&str], mode: LockMode) -> LockRequest {
        LockRequest::new(
            names.iter().map(|n| res(n)).collect(),
            mode,
            who.name.clone(),
            None,
            LOCK_TTL,
            None,
            None,
        )
        .expect("a valid lock request")
    }

    /// Acquires `req` as `who` without waiting; the engine's answer.
    pub async fn try_lock(&self, who: &Principal, req: LockRequest) -> Result<Lock> {
        self.engine
            .acquire_lock(who, req, StdDuration::ZERO)
            .await
            .map(|(lock, _)| lock)
    }

    /// Locks `names` in `mode` as `who` without waiting (see
    /// [`Harness::lock_request`]). Panics unless granted.
    pub async fn lock(&self, who: &Principal, names: &[&str], mode: LockMode) -> Lock {
        self.try_lock(who, self.lock_request(who, names, mode))
            .await
            .unwrap_or_else(|e| panic!("{} locking {names:?} {mode}: {e}", who.name))
    }

    /// The status of `names`, as the store answers. Panics if it cannot
    /// be read.
    pub async fn status(&self, names: &[&str]) -> Vec<ResourceStatus> {
        let resources: Vec<ResourceName> = names.iter().map(|n| res(n)).collect();
        self.store()
            .lock_status(&resources, self.now())
            .await
            .unwrap_or_else(|e| panic!("status of {names:?}: {e}"))
    }

    /// A resource's history (up to 1000 events), oldest first.
    pub async fn lock_history(&self, name: &str) -> Vec<LockEvent> {
        self.store()
            .resource_history(&res(name), 1000)
            .await
            .unwrap_or_else(|e| panic!("history of {name}: {e}"))
    }

    /// A lock as the store shows it now. Panics if it cannot be read.
    pub async fn get_lock(&self, id: LockId) -> Lock {
        self.store()
            .lock(id, self.now())
            .await
            .unwrap_or_else(|e| panic!("reading lock {id}: {e}"))
    }

    /// The status and histories of `names` and the locks `ids`, for
    /// comparing before and after.
    pub async fn lock_snapshot(&self, names: &[&str], ids: &[LockId]) -> LockSnapshot {
        let mut histories = Vec::new();
        for n in names {
            histories.push(self.lock_history(n).await);
        }
        let mut locks = Vec::new();
        for id in ids {
            locks.push(self.store().lock(*id, self.now()).await);
        }
        LockSnapshot {
            status: self.status(names).await,
            histories,
            locks,
        }
    }

    // ---- reading ----

    /// The item as stored. Panics if it cannot be read.
    pub async fn item(&self, id: ItemId) -> Item {
        self.store()
            .item(id)
            .await
            .unwrap_or_else(|e| panic!("reading item {id}: {e}"))
    }

    /// The item's history, oldest first. Panics if it cannot be read.
    pub async fn history(&self, id: ItemId) -> Vec<ItemEvent> {
        self.store()
            .item_history(id)
            .await
            .unwrap_or_else(|e| panic!("reading the history of item {id}: {e}"))
    }

    /// The item's history as [`Shape`]s.
    pub async fn event_shapes(&self, id: ItemId) -> Vec<Shape> {
        self.history(id)
            .await
            .into_iter()
            .map(|e| (e.kind, e.actor, e.token.map(|t| t.0)))
            .collect()
    }

    /// The ids of `queue`'s items in `state`, in id order, as the store
    /// lists them (at most 1000).
    pub async fn ids_in_state(&self, queue: &str, state: ItemState) -> Vec<ItemId> {
        let filter = ItemFilter {
            state: Some(state),
            limit: 1000,
            ..ItemFilter::default()
        };
        self.store()
            .list_items(&q(queue), &filter)
            .await
            .unwrap_or_else(|e| panic!("listing {state} items of {queue}: {e}"))
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    /// The item and its history, for comparing before and after.
    pub async fn snapshot(&self, id: ItemId) -> Snapshot {
        Snapshot {
            item: self.item(id).await,
            history: self.history(id).await,
        }
    }
}
