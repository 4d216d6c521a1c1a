//! The storage contract.
//!
//! One method per domain operation (never "run this query"), each one
//! atomic: it either does all of its work in one transaction or none of it.
//! Mutating methods load the item inside the transaction, apply the rule
//! from [`crate::rules`], and persist the item together with the returned
//! event. Every method takes `now` from the engine's clock, so tests control
//! time and a backend never reads a clock of its own.
//!
//! Behaviour is specified by the conformance suite in `baton-testkit`,
//! which every backend runs.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;

use crate::{
    ClaimRequest, Claimed, CollectionConfig, CollectionName, CompleteRequest, ConflictId,
    ConflictObject, FencingToken, HistoryFilter, Item, ItemEvent, ItemFilter, ItemId, NewItem,
    Principal, QueueConfig, QueueName, QueueStats, Record, RecordFilter, RecordHead, RecordKey,
    RecordVersion, RecordWrite, Result, Role, SweepReport, Timestamp, Version, Written,
};

/// How news of available work reaches waiting claimers in *other*
/// processes sharing the same database. Claimers in the same process are
/// always woken directly by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeups {
    /// The database is used by one process only (embedded SQLite): the
    /// engine's own wake-ups are all there is.
    Local,
    /// The store pushes news through [`Store::listen`] (PostgreSQL
    /// `LISTEN`/`NOTIFY`).
    Notify,
    /// The database cannot push: the engine re-checks queues that have
    /// waiting claimers at this interval (MySQL/MariaDB), so a claimer
    /// waiting in one process learns of work enqueued through another
    /// within one interval.
    Poll(StdDuration),
}

/// Called by a listening store with the queue in which work may have
/// become claimable, or `None` when news may have been missed (the
/// connection was lost) and every waiting claimer should look again.
pub type WorkCallback = Arc<dyn Fn(Option<&QueueName>) + Send + Sync>;

/// A change of a queue's (or a collection's) settings, applied to the
/// current ones inside the store's transaction (and possibly again, when
/// the transaction is retried after losing a race). Refusing leaves the
/// settings unchanged.
pub type ConfigChange<T = QueueConfig> = Arc<dyn Fn(T) -> Result<T> + Send + Sync>;

/// A durable home for Baton's state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short backend name for logs and metrics (`sqlite`, `postgres`, ...).
    fn backend(&self) -> &'static str;

    /// How other processes learn that work became available.
    fn wakeups(&self) -> Wakeups {
        Wakeups::Local
    }

    /// For [`Wakeups::Notify`] stores: starts delivering news of work
    /// committed by any process to `on_work`, until the store is dropped.
    /// Other stores ignore it.
    async fn listen(&self, on_work: WorkCallback) -> Result<()> {
        let _ = on_work;
        Ok(())
    }

    // ---- work queues ----

    /// Inserts an item (creating its queue with default settings if new).
    /// If `new.dedupe_key` is set and an unfinished item of the same queue
    /// has it, returns that item and `false` instead.
    async fn enqueue(&self, new: NewItem, actor: &str, now: Timestamp) -> Result<(Item, bool)>;

    /// Leases the next claimable item of the queue (see
    /// [`crate::rules::claimable`]): highest priority first, then lowest id.
    /// Within the same transaction, first:
    /// - with an idempotency key already used by this holder: returns that
    ///   claim's item with its lease as it is now, if the lease is still the
    ///   one the key granted; refuses with `StaleToken` if it has ended;
    /// - when the holder already holds `max_leases_per_holder` live leases in
    ///   the queue: returns the oldest of them;
    /// - makes due scheduled items ready and expires overdue leases of the
    ///   queue (lazy recovery).
    ///
    /// `None` when nothing is claimable.
    async fn claim(&self, req: ClaimRequest, now: Timestamp) -> Result<Option<Claimed>>;

    /// Extends the caller's lease by `lease` from now.
    async fn heartbeat(
        &self,
        id: ItemId,
        caller: &str,
        token: FencingToken,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Item>;

    /// Gives the item back, claimable again after `delay`.
    async fn release(
        &self,
        id: ItemId,
        caller: &str,
        token: FencingToken,
        delay: Duration,
        now: Timestamp,
    ) -> Result<Item>;

    /// Completes the item (moving it out of the live table) or escalates it
    /// to another queue.
    async fn complete(
        &self,
        id: ItemId,
        caller: &str,
        req: CompleteRequest,
        now: Timestamp,
    ) -> Result<Item>;

    /// Supervisor: takes a lease away.
    async fn revoke(&self, id: ItemId, actor: &str, now: Timestamp) -> Result<Item>;

    /// Supervisor: puts a parked item back to ready.
    async fn requeue(&self, id: ItemId, actor: &str, now: Timestamp) -> Result<Item>;

    /// One item, live or done. `NotFound` if it never existed.
    async fn item(&self, id: ItemId) -> Result<Item>;

    /// Every event of an item, oldest first. `NotFound` if it never existed.
    async fn item_history(&self, id: ItemId) -> Result<Vec<ItemEvent>>;

    /// A page of a queue's items in id order.
    async fn list_items(&self, queue: &QueueName, filter: &ItemFilter) -> Result<Vec<Item>>;

    /// Counts per queue, for every queue that exists. What a claim would
    /// take now counts as ready even before a sweep: leases that expired
    /// and scheduled items whose time has come.
    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<QueueStats>>;

    /// A queue's settings (the defaults for a queue that does not exist).
    async fn queue_config(&self, queue: &QueueName) -> Result<QueueConfig>;

    /// Changes a queue's settings atomically (creating the queue if new):
    /// reads the current settings, applies `change`, and writes the result
    /// unless `change` refuses — with the queue's settings locked
    /// meanwhile, so concurrent changes from any number of servers never
    /// lose one another. Returns the settings now in force.
    async fn update_queue_config(
        &self,
        queue: &QueueName,
        change: ConfigChange,
    ) -> Result<QueueConfig>;

    /// Replaces a queue's settings (creating the queue if new).
    async fn set_queue_config(&self, queue: &QueueName, config: &QueueConfig) -> Result<()> {
        let config = config.clone();
        self.update_queue_config(queue, Arc::new(move |_| Ok(config.clone())))
            .await
            .map(|_| ())
    }

    /// Background maintenance at `now`: promotes due scheduled items,
    /// expires overdue leases (parking where due), and forgets idempotency
    /// keys older than `key_retention`. Idempotent: sweeping twice at the
    /// same `now` changes nothing the second time.
    async fn sweep(&self, now: Timestamp, key_retention: Duration) -> Result<SweepReport>;

    // ---- versioned records ----

    /// A collection's settings (the defaults for a collection never used).
    async fn collection_config(&self, collection: &CollectionName) -> Result<CollectionConfig>;

    /// Changes a collection's settings atomically (creating the collection
    /// at `now` if new), as [`Store::update_queue_config`] does for queues.
    async fn update_collection_config(
        &self,
        collection: &CollectionName,
        change: ConfigChange<CollectionConfig>,
        now: Timestamp,
    ) -> Result<CollectionConfig>;

    /// The latest state of a key: the record, or its tombstone after a
    /// delete; `None` for a key never written.
    async fn record_head(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
    ) -> Result<Option<RecordHead>>;

    /// One write, atomically, by the rules of [`crate::record_rules`]:
    /// with the key's row locked (and the collection created with default
    /// settings if new), [`crate::record_rules::plan`] against the head and
    /// the collection's settings; for [`crate::record_rules::Plan::Stale`],
    /// [`crate::record_rules::resolve`] with the versions from the base on
    /// (the base with its data); then the new head saved and the version
    /// appended. A refusal writes nothing.
    async fn write_record(&self, write: RecordWrite, now: Timestamp) -> Result<Written>;

    /// A page of a collection's live records (not deleted), by key in byte
    /// order.
    async fn list_records(
        &self,
        collection: &CollectionName,
        filter: &RecordFilter,
    ) -> Result<Vec<Record>>;

    /// A page of a key's history, oldest first, without the versions'
    /// data. `NotFound` for a key never written.
    async fn record_history(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
        filter: &HistoryFilter,
    ) -> Result<Vec<RecordVersion>>;

    /// One version of a key, with its data (none for a tombstone).
    /// `NotFound` if there is no such version.
    async fn record_version(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
        version: Version,
    ) -> Result<RecordVersion>;

    /// Keeps a refused write (its `id` is ignored); returns its id.
    async fn save_conflict(&self, conflict: &ConflictObject) -> Result<ConflictId>;

    /// A kept refused write, unless forgotten.
    async fn conflict(&self, id: ConflictId) -> Result<Option<ConflictObject>>;

    /// Forgets the refused writes whose `expires_at` is not after `now`;
    /// returns how many. Idempotent.
    async fn forget_conflicts(&self, now: Timestamp) -> Result<u64>;

    // ---- identity ----

    /// Creates a principal. `AlreadyExists` if the name is taken.
    async fn create_principal(&self, name: &str, role: Role, now: Timestamp) -> Result<Principal>;

    /// Looks a principal up by name.
    async fn principal(&self, name: &str) -> Result<Option<Principal>>;

    /// Every principal, by name.
    async fn principals(&self) -> Result<Vec<Principal>>;

    /// Stores a token hash for a principal. The token itself is never
    /// stored.
    async fn add_token(&self, principal_id: i64, token_hash: &[u8], now: Timestamp) -> Result<()>;

    /// The principal a token hash belongs to, if any.
    async fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<Principal>>;
}
