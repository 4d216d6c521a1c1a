//! The storage contract.
//!
//! One method per domain operation (never "run this query"), each one
//! atomic: it either does all of its work in one transaction or none of it.
//! Mutating methods load the item inside the transaction, apply the rule
//! from [`crate::rules`], and persist the item together with the returned
//! event. Every method takes `now` from the engine's clock, so tests control
//! time and a backend never reads a clock of its own.
//!
//! Lock operations are specified by [`crate::lock_model::LockTable`] and
//! [`crate::lock_rules`]. A store that several servers share
//! (PostgreSQL, MySQL) may be told to take lock times from the database's
//! clock instead of `now` (read inside the transaction, after the
//! resources' rows are locked), so that every server agrees on when a
//! lock expires; the times it returns are then the database's. Either
//! way a lock operation's time is never earlier than the latest time an
//! earlier operation on one of its resources used, so times on a resource
//! only move forward in commit order.
//!
//! Behaviour is specified by the conformance suite in `baton-testkit`,
//! which every backend runs.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;

use crate::audit::{AuditEntry, AuditFilter};
use crate::{
    Acquisition, ClaimRequest, Claimed, CollectionConfig, CollectionName, CompleteRequest,
    ConflictId, ConflictObject, FencingToken, HistoryFilter, Item, ItemEvent, ItemFilter, ItemId,
    Lock, LockEvent, LockFilter, LockId, LockRequest, LockSweepReport, NewItem, Principal,
    QueueConfig, QueueName, QueueStats, Queueing, Record, RecordFilter, RecordHead, RecordKey,
    RecordVersion, RecordWrite, ResourceName, ResourceStatus, Result, Role, Session, SweepReport,
    TicketId, Timestamp, TokenInfo, Version, Written,
};

/// How news of available work (and of resources that may have become
/// free) reaches waiting claimers (and lock requests) in *other*
/// processes sharing the same database. Waiters in the same process are
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
    /// waiting claimers, and the versions of resources that have waiting
    /// lock requests ([`Store::lock_versions`]), at this interval
    /// (MySQL/MariaDB), so a waiter in one process learns of news from
    /// another within one interval.
    Poll(StdDuration),
}

/// Called by a listening store with a resource that may have become free
/// for requests waiting on it (a lock on it was released, forced or
/// downgraded, or a request queued for it withdrew), or `None` when news
/// may have been missed and every waiting request should look again.
pub type LockCallback = Arc<dyn Fn(Option<&ResourceName>) + Send + Sync>;

/// Called by a listening store with the queue in which work may have
/// become claimable, or `None` when news may have been missed (the
/// connection was lost) and every waiting claimer should look again.
pub type WorkCallback = Arc<dyn Fn(Option<&QueueName>) + Send + Sync>;

/// Called by a listening store with a live event another process
/// published (the payload as published, see [`Store::publish_events`]),
/// or `None` when events may have been missed (the connection was lost).
pub type EventCallback = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// Largest payload of one event relayed between servers, in bytes
/// (PostgreSQL's `NOTIFY` allows 8000).
pub const MAX_EVENT_PAYLOAD: usize = 7900;

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

    /// For [`Wakeups::Notify`] stores: publishes live events, each a
    /// payload of at most [`MAX_EVENT_PAYLOAD`] bytes, in order, to every
    /// process listening with [`Store::listen_events`] (the publisher
    /// included: payloads say who sent them). Other stores ignore it: their
    /// events stay in the process that made them.
    async fn publish_events(&self, payloads: &[String]) -> Result<()> {
        let _ = payloads;
        Ok(())
    }

    /// For [`Wakeups::Notify`] stores: starts delivering the payloads
    /// published by [`Store::publish_events`] in any process to
    /// `on_event`, in the order they were published, until the store is
    /// dropped. Other stores ignore it.
    async fn listen_events(&self, on_event: EventCallback) -> Result<()> {
        let _ = on_event;
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

    // ---- locks ----

    /// For [`Wakeups::Notify`] stores: starts delivering news of resources
    /// that may have become free (see [`LockCallback`]) committed by any
    /// process, until the store is dropped. Other stores ignore it.
    async fn listen_locks(&self, on_free: LockCallback) -> Result<()> {
        let _ = on_free;
        Ok(())
    }

    /// One attempt to acquire a lock, atomically, all resources or none
    /// (see [`crate::lock_model::LockTable::acquire`]):
    /// - with an idempotency key this holder used before: that lock as it
    ///   is now (`created == false`), or `LockEnded` if it has ended;
    /// - granted when [`crate::lock_rules::admit`] admits it against the
    ///   live locks of its resources and the live requests queued ahead
    ///   of `queueing.ticket` (all of them, without a live ticket): the
    ///   ticket is dropped, the lock gets the next fencing token, which
    ///   becomes its resources' token (locks that ran out are no
    ///   conflict; the sweeper records their expiry);
    /// - otherwise `Blocked` with the conflicts, keeping the live ticket,
    ///   or queueing a new one for `queueing.wait` when asked to; a
    ///   blocked attempt changes nothing else.
    async fn acquire_lock(
        &self,
        req: LockRequest,
        queueing: Queueing,
        now: Timestamp,
    ) -> Result<Acquisition>;

    /// Takes a queued request out of the queue: the resources it waited
    /// for, or `None` if it was gone already.
    async fn withdraw_lock_ticket(
        &self,
        ticket: TicketId,
        now: Timestamp,
    ) -> Result<Option<Vec<ResourceName>>>;

    /// The holder keeps its lock alive for `ttl_seconds` more (never past
    /// its `max_hold_until`). `LockEnded` when it ended, `NotLockHolder`,
    /// `NotFound`.
    async fn heartbeat_lock(
        &self,
        id: LockId,
        caller: &str,
        ttl_seconds: u32,
        now: Timestamp,
    ) -> Result<Lock>;

    /// The holder releases its lock.
    async fn release_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock>;

    /// Supervisor: ends someone's lock for `reason`, giving its resources
    /// a fresh fencing token.
    async fn force_release_lock(
        &self,
        id: LockId,
        actor: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Lock>;

    /// Releases every live lock of `holder` with the session label
    /// `session`; returns them, by id.
    async fn release_session_locks(
        &self,
        holder: &str,
        session: &str,
        now: Timestamp,
    ) -> Result<Vec<Lock>>;

    /// Makes the caller's shared lock exclusive, with a new fencing token,
    /// when no other live lock holds its resources (`Locked` otherwise).
    async fn upgrade_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock>;

    /// Makes the caller's exclusive lock shared.
    async fn downgrade_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock>;

    /// One lock, live or ended (within the retention period), as callers
    /// see it at `now` (a lock that ran out shows as expired).
    async fn lock(&self, id: LockId, now: Timestamp) -> Result<Lock>;

    /// A page of the live locks matching `filter`, by id.
    async fn list_locks(&self, filter: &LockFilter, now: Timestamp) -> Result<Vec<Lock>>;

    /// The lock state of each distinct resource, in the order asked.
    async fn lock_status(
        &self,
        resources: &[ResourceName],
        now: Timestamp,
    ) -> Result<Vec<ResourceStatus>>;

    /// The latest `limit` events of a resource, oldest first (by time,
    /// then by the order recorded). Empty for a resource never locked.
    async fn resource_history(&self, resource: &ResourceName, limit: u32)
    -> Result<Vec<LockEvent>>;

    /// Lock maintenance at `now`: records locks that ran out as expired
    /// (ending them and freeing their resources), drops queued requests
    /// whose wait ran out, forgets locks ended more than `retention` ago
    /// and idempotency keys older than `key_retention`. Idempotent.
    async fn sweep_locks(
        &self,
        now: Timestamp,
        retention: Duration,
        key_retention: Duration,
    ) -> Result<LockSweepReport>;

    /// A number per resource that changes whenever something that may
    /// unblock a waiting request happens to it (a lock on it released,
    /// forced, downgraded or recorded as expired; a queued request
    /// withdrawn). For [`Wakeups::Poll`] stores: the engine polls it for
    /// resources with waiting requests. 0 for a resource never locked.
    async fn lock_versions(&self, resources: &[ResourceName]) -> Result<Vec<i64>>;

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

    /// A principal's tokens (never the tokens, only their ids), oldest
    /// first (ties by id). Empty for an unknown principal.
    async fn tokens(&self, principal_id: i64) -> Result<Vec<TokenInfo>>;

    /// Deletes the principal's tokens whose [`crate::identity::token_id`]
    /// is `id`, atomically; returns their hashes (so caches can forget
    /// them). `NotFound` when the principal has no such token (another
    /// principal's token with that id is left alone).
    async fn revoke_token(&self, principal_id: i64, id: &str) -> Result<Vec<Vec<u8>>>;

    // ---- passwords and web sessions ----

    /// Sets a principal's password hash (a PHC string), or removes it
    /// with `None`. `NotFound` for an unknown name.
    async fn set_password_hash(&self, name: &str, hash: Option<&str>) -> Result<()>;

    /// A principal with its password hash (`None`: it has no password);
    /// `None` for an unknown name.
    async fn principal_with_password(
        &self,
        name: &str,
    ) -> Result<Option<(Principal, Option<String>)>>;

    /// Stores a new session under the SHA-256 of its secret (the
    /// principal is taken by id). `NotFound` for an unknown principal;
    /// `AlreadyExists` when the hash or the public id is taken.
    async fn create_session(&self, session: &Session, secret_hash: &[u8]) -> Result<()>;

    /// The session stored under a secret's hash, expired or not, with its
    /// principal as it is now; `None` when there is none.
    async fn session_by_hash(&self, secret_hash: &[u8]) -> Result<Option<Session>>;

    /// Deletes the session stored under a secret's hash; returns it, or
    /// `None` when there was none. Idempotent.
    async fn delete_session(&self, secret_hash: &[u8]) -> Result<Option<Session>>;

    /// Deletes the sessions whose `expires_at` is not after `now`;
    /// returns how many. Idempotent.
    async fn sweep_sessions(&self, now: Timestamp) -> Result<u64>;

    // ---- audit trail and throughput ----

    /// A page of the audit trail (see [`crate::audit`]): the entries
    /// matching `filter`, newest first, strictly after `filter.before`,
    /// at most `filter.limit` (assumed valid).
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// How many items of `queue` were completed at or after `since` and
    /// before `until`, per bucket of `bucket_ms` milliseconds counted from
    /// `since`: `(bucket index, count)` for the buckets that have any.
    async fn completion_counts(
        &self,
        queue: &QueueName,
        since: Timestamp,
        until: Timestamp,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>>;
}
