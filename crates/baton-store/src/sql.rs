//! What the server-database stores (PostgreSQL, MySQL/MariaDB) share: the
//! column lists, the mapping of rows to domain values (generic over the
//! sqlx driver), connection settings, and the transaction retry loop.
//!
//! Their SQL stays in their own modules: the dialects differ exactly where
//! concurrency is decided (row locking, upserts, notifications).

use std::time::Duration as StdDuration;

use baton_core::audit::AuditEntry;
use baton_core::clock::from_millis;
use baton_core::identity::token_id;
use baton_core::lock_rules::{Hold, Queued};
use baton_core::{
    CollectionName, Completion, EndCause, Error, EventKind, FencingToken, Item, ItemEvent,
    ItemState, Kind, Lease, Lock, LockEnd, LockEvent, LockEventKind, LockMode, MergedFrom,
    Principal, QueueName, Record, RecordHead, RecordKey, RecordVersion, ResourceHolder,
    ResourceName, ResourceStatus, Result, Role, Session, StoreError, TokenInfo, Version,
};
use sqlx::{ColumnIndex, Decode, Row, Type};

/// The columns of `items` and `done_items`, in the order [`item`] reads;
/// a macro so that queries stay `&'static str` (`concat!`), which sqlx
/// requires of SQL text.
macro_rules! item_cols {
    () => {
        "id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, released_by, \
         released_until, created_at, updated_at, outcome, note, completed_by, completed_at"
    };
}
pub(crate) use item_cols;

/// The columns of `item_events`, in the order [`event`] reads.
macro_rules! event_cols {
    () => {
        "item_id, at, kind, actor, token, queue, detail"
    };
}
pub(crate) use event_cols;

/// The columns of `locks`, in the order [`lock`] reads.
macro_rules! lock_cols {
    () => {
        "id, token, resources, mode, holder, session, ttl_seconds, acquired_at, expires_at, \
         max_hold_until, ended_at, end_cause, ended_by, end_reason"
    };
}
pub(crate) use lock_cols;

/// The same, qualified by the alias `l`.
macro_rules! l_lock_cols {
    () => {
        "l.id, l.token, l.resources, l.mode, l.holder, l.session, l.ttl_seconds, l.acquired_at, \
         l.expires_at, l.max_hold_until, l.ended_at, l.end_cause, l.ended_by, l.end_reason"
    };
}
pub(crate) use l_lock_cols;

/// The columns of `lock_events`, in the order [`lock_event`] reads.
macro_rules! lock_event_cols {
    () => {
        "resource, lock_id, at, kind, actor, holder, mode, token, detail"
    };
}
pub(crate) use lock_event_cols;

/// The columns of `records`, in the order [`record_head`] reads.
macro_rules! record_cols {
    () => {
        "collection, record_key, version, deleted, data, created_by, created_at, updated_by, updated_at"
    };
}
pub(crate) use record_cols;

/// The columns of `record_versions` but `data`, in the order
/// [`record_version`] reads; a query selects the data (or `NULL`) next.
macro_rules! version_cols {
    () => {
        "version, kind, actor, at, base_version, merged_base, merged_current, deleted, changes"
    };
}
pub(crate) use version_cols;

/// How many times a transaction that lost a race (serialization failure,
/// deadlock, lock timeout, a unique key taken by a concurrent insert) is
/// run again before the caller gets a retryable error (HTTP 503).
pub(crate) const MAX_TX_ATTEMPTS: u32 = 20;

/// Settings of a server database's connection pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Most connections the pool opens to the database.
    pub max_connections: u32,
    /// Longest a request waits for a free connection (or for the database
    /// to come back) before it is answered 503 with `Retry-After`.
    pub acquire_timeout: StdDuration,
    /// Longest one statement may run before the database cancels it.
    pub statement_timeout: StdDuration,
    /// Lock times (grants, expiries, heartbeats, every "now" of a lock
    /// operation) come from the database's clock, read inside each
    /// transaction after the resources' rows are locked, so that all the
    /// servers sharing the database agree on when a lock expires (default).
    /// `false` takes them from the engine's clock instead, as SQLite always
    /// does: for tests that move time by hand.
    pub database_clock: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: StdDuration::from_secs(5),
            statement_timeout: StdDuration::from_secs(30),
            database_clock: true,
        }
    }
}

/// A driver error that says the transaction lost a race with another one
/// and should simply run again; carried inside [`Error::Store`] with this
/// message prefix so the retry loop can tell it from other failures.
pub(crate) const CONFLICT: &str = "transaction conflict: ";

/// Whether `e` is a lost race that [`run_again`] retries.
pub(crate) fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Store(s) if s.message.starts_with(CONFLICT))
}

/// Converts a driver error. `conflict` tells whether the database error
/// means "lost a race, run again"; connection-level failures (the
/// database is down or restarting, the pool timed out) are retryable by
/// the client, everything else is a bug or corruption.
pub(crate) fn store_err(
    backend: &str,
    e: sqlx::Error,
    conflict: impl Fn(&dyn sqlx::error::DatabaseError) -> bool,
) -> Error {
    match &e {
        sqlx::Error::Database(db) => {
            if conflict(db.as_ref()) {
                return StoreError::retryable(format!("{CONFLICT}{backend}: {e}")).into();
            }
            StoreError::fatal(format!("{backend}: {e}")).into()
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            StoreError::retryable(format!("{backend} unavailable: {e}")).into()
        }
        _ => StoreError::fatal(format!("{backend}: {e}")).into(),
    }
}

/// Backs off a little before attempt `attempt` of a transaction that lost
/// a race, with jitter so that the racers do not collide again.
pub(crate) async fn backoff(attempt: u32) {
    use rand::Rng;
    let cap = 1u64 << attempt.min(6);
    let ms = rand::rng().random_range(0..=cap);
    tokio::time::sleep(StdDuration::from_millis(ms)).await;
}

/// Runs `$body` (an expression using the connection `$c`, evaluating to a
/// `Result`) in a transaction of `$pool`, committing on `Ok`, and running
/// it again when it (or its commit) lost a race with another transaction.
macro_rules! in_tx {
    ($pool:expr, $err:path, |$c:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            // The pool does not test a connection before handing it out
            // (that would cost a round trip per operation); one that died
            // while idle fails here, before anything was sent, so it is
            // always safe to try again on a fresh one.
            let mut tx = match $pool.begin().await {
                Ok(tx) => tx,
                Err(e)
                    if attempt < 3
                        && matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) =>
                {
                    continue;
                }
                Err(e) => break Err($err(e)),
            };
            let result = {
                let $c = &mut *tx;
                $body
            };
            let result = match result {
                Ok(v) => tx.commit().await.map(|()| v).map_err($err),
                Err(e) => {
                    // Rolling back explicitly returns the connection clean;
                    // a failure here is the connection's, not the result's.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err(e)
                    if $crate::sql::is_conflict(&e) && attempt < $crate::sql::MAX_TX_ATTEMPTS =>
                {
                    $crate::sql::backoff(attempt).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use in_tx;

/// The `Store` impl of a server database: the methods that read the same
/// on PostgreSQL and MySQL (each calls its backend's `queue`, `locks` and
/// `records` modules, `db` and `in_tx!`, resolved where the macro is
/// used), followed by the backend's own methods. One macro for the whole
/// impl because `#[async_trait]` must see every method.
macro_rules! server_store {
    ($store:ty, { $($own:tt)* }) => {
        #[async_trait]
        impl Store for $store {
            $($own)*
    async fn enqueue(&self, new: NewItem, actor: &str, now: Timestamp) -> Result<(Item, bool)> {
                in_tx!(self.pool, db, |c| queue::enqueue(c, &new, actor, now).await)
            }
            async fn heartbeat(
                &self,
                id: ItemId,
                caller: &str,
                token: FencingToken,
                lease: Duration,
                now: Timestamp,
            ) -> Result<Item> {
                self.mutate(id, now, |item, _| {
                    rules::heartbeat(item, caller, token, lease, now)
                })
                .await
            }
            async fn release(
                &self,
                id: ItemId,
                caller: &str,
                token: FencingToken,
                delay: Duration,
                now: Timestamp,
            ) -> Result<Item> {
                self.mutate(id, now, |item, cfg| {
                    rules::release(item, caller, token, delay, cfg, now)
                })
                .await
            }
            async fn revoke(&self, id: ItemId, actor: &str, now: Timestamp) -> Result<Item> {
                self.mutate(id, now, |item, _| rules::revoke(item, actor, now))
                    .await
            }
            async fn requeue(&self, id: ItemId, actor: &str, now: Timestamp) -> Result<Item> {
                self.mutate(id, now, |item, _| rules::requeue(item, actor, now))
                    .await
            }
            async fn item(&self, id: ItemId) -> Result<Item> {
                queue::load_any(&mut *self.conn().await?, id)
                    .await?
                    .ok_or_else(|| Error::not_found("item", id))
            }
            async fn item_history(&self, id: ItemId) -> Result<Vec<ItemEvent>> {
                queue::history(&mut *self.conn().await?, id).await
            }
            async fn list_items(&self, queue: &QueueName, filter: &ItemFilter) -> Result<Vec<Item>> {
                queue::list(&mut *self.conn().await?, queue, filter).await
            }
            async fn queue_config(&self, queue: &QueueName) -> Result<QueueConfig> {
                queue::config(&mut *self.conn().await?, queue).await
            }
            async fn update_queue_config(
                &self,
                queue: &QueueName,
                change: ConfigChange,
            ) -> Result<QueueConfig> {
                let now = chrono::Utc::now();
                in_tx!(self.pool, db, |c| queue::update_config(
                    c, queue, &change, now
                )
                .await)
            }
            async fn sweep(&self, now: Timestamp, key_retention: Duration) -> Result<SweepReport> {
                in_tx!(self.pool, db, |c| queue::sweep(c, now, key_retention).await)
            }
            async fn acquire_lock(
                &self,
                req: LockRequest,
                queueing: Queueing,
                now: Timestamp,
            ) -> Result<Acquisition> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::acquire(c, &req, queueing, t)
                    .await)
            }
            async fn withdraw_lock_ticket(
                &self,
                ticket: TicketId,
                _now: Timestamp,
            ) -> Result<Option<Vec<ResourceName>>> {
                in_tx!(self.pool, db, |c| locks::withdraw(c, ticket).await)
            }
            async fn heartbeat_lock(
                &self,
                id: LockId,
                caller: &str,
                ttl_seconds: u32,
                now: Timestamp,
            ) -> Result<Lock> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::heartbeat(
                    c,
                    id,
                    caller,
                    ttl_seconds,
                    t
                )
                .await)
            }
            async fn release_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::release(c, id, caller, t).await)
            }
            async fn force_release_lock(
                &self,
                id: LockId,
                actor: &str,
                reason: &str,
                now: Timestamp,
            ) -> Result<Lock> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::force(c, id, actor, reason, t)
                    .await)
            }
            async fn release_session_locks(
                &self,
                holder: &str,
                session: &str,
                now: Timestamp,
            ) -> Result<Vec<Lock>> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::release_session(
                    c, holder, session, t
                )
                .await)
            }
            async fn upgrade_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::upgrade(c, id, caller, t).await)
            }
            async fn downgrade_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::downgrade(c, id, caller, t).await)
            }
            async fn lock(&self, id: LockId, now: Timestamp) -> Result<Lock> {
                locks::get(&mut *self.conn().await?, id, self.now(now)).await
            }
            async fn list_locks(&self, filter: &LockFilter, now: Timestamp) -> Result<Vec<Lock>> {
                locks::list(&mut *self.conn().await?, filter, self.now(now)).await
            }
            async fn resource_history(
                &self,
                resource: &ResourceName,
                limit: u32,
            ) -> Result<Vec<LockEvent>> {
                locks::history(&mut *self.conn().await?, resource, limit).await
            }
            async fn sweep_locks(
                &self,
                now: Timestamp,
                retention: Duration,
                key_retention: Duration,
            ) -> Result<LockSweepReport> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| locks::sweep(
                    c,
                    t,
                    retention,
                    key_retention
                )
                .await)
            }
            async fn lock_versions(&self, resources: &[ResourceName]) -> Result<Vec<i64>> {
                locks::versions(&mut *self.conn().await?, resources).await
            }
            async fn collection_config(&self, collection: &CollectionName) -> Result<CollectionConfig> {
                records::config(&mut *self.conn().await?, collection).await
            }
            async fn update_collection_config(
                &self,
                collection: &CollectionName,
                change: ConfigChange<CollectionConfig>,
                now: Timestamp,
            ) -> Result<CollectionConfig> {
                in_tx!(self.pool, db, |c| records::update_config(
                    c, collection, &change, now
                )
                .await)
            }
            async fn record_head(
                &self,
                collection: &CollectionName,
                key: &RecordKey,
            ) -> Result<Option<RecordHead>> {
                records::head(&mut *self.conn().await?, collection, key, false).await
            }
            async fn write_record(&self, write: RecordWrite, now: Timestamp) -> Result<Written> {
                let t = self.now(now);
                in_tx!(self.pool, db, |c| records::write(c, &write, now, t).await)
            }
            async fn list_records(
                &self,
                collection: &CollectionName,
                filter: &RecordFilter,
            ) -> Result<Vec<Record>> {
                records::list(&mut *self.conn().await?, collection, filter).await
            }
            async fn record_history(
                &self,
                collection: &CollectionName,
                key: &RecordKey,
                filter: &HistoryFilter,
            ) -> Result<Vec<RecordVersion>> {
                records::history(&mut *self.conn().await?, collection, key, filter).await
            }
            async fn record_version(
                &self,
                collection: &CollectionName,
                key: &RecordKey,
                version: Version,
            ) -> Result<RecordVersion> {
                records::version(&mut *self.conn().await?, collection, key, version).await
            }
            async fn save_conflict(&self, conflict: &ConflictObject) -> Result<ConflictId> {
                records::save_conflict(&mut *self.conn().await?, conflict).await
            }
            async fn conflict(&self, id: ConflictId) -> Result<Option<ConflictObject>> {
                records::conflict(&mut *self.conn().await?, id).await
            }
            async fn forget_conflicts(&self, now: Timestamp) -> Result<u64> {
                records::forget_conflicts(&mut *self.conn().await?, now).await
            }
            async fn principals(&self) -> Result<Vec<Principal>> {
                sqlx::query("SELECT id, name, role FROM principals ORDER BY name")
                    .fetch_all(&mut *self.conn().await?)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(sql::principal)
                    .collect()
            }
        }
    };
}
pub(crate) use server_store;

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    StoreError::fatal(format!("corrupt {what} in the database: {e}")).into()
}

/// Reads column `i` of a row, mapping a decoding failure to a fatal error.
pub(crate) fn col<'r, R, T>(row: &'r R, i: usize) -> Result<T>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(i).map_err(|e| bad("column", e))
}

/// Reads an item from a row selected with [`item_cols!`].
pub(crate) fn item<R>(row: &R) -> Result<Item>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: ItemState = col::<_, String>(row, 5)?.parse()?;
    let holder: Option<String> = col(row, 10)?;
    let token = FencingToken(col(row, 9)?);
    let time = |i: usize| col::<_, i64>(row, i).map(from_millis);
    let opt_time = |i: usize| Ok::<_, Error>(col::<_, Option<i64>>(row, i)?.map(from_millis));
    let lease = match (holder, opt_time(11)?, opt_time(12)?) {
        (Some(holder), Some(claimed_at), Some(expires_at)) if state == ItemState::Leased => {
            Some(Lease {
                token,
                holder,
                claimed_at,
                expires_at,
            })
        }
        _ => None,
    };
    let completion = match (
        col::<_, Option<String>>(row, 17)?,
        col::<_, Option<String>>(row, 19)?,
        opt_time(20)?,
    ) {
        (Some(outcome), Some(by), Some(at)) => Some(Completion {
            outcome,
            note: col(row, 18)?,
            by,
            at,
        }),
        _ => None,
    };
    Ok(Item {
        id: col(row, 0)?,
        queue: QueueName::new(col::<_, String>(row, 1)?)?,
        kind: Kind::new(col::<_, String>(row, 2)?)?,
        payload: serde_json::from_str(&col::<_, String>(row, 3)?).map_err(|e| bad("payload", e))?,
        priority: i32::try_from(col::<_, i64>(row, 4)?).map_err(|e| bad("priority", e))?,
        state,
        available_at: time(6)?,
        dedupe_key: col(row, 7)?,
        attempts: u32::try_from(col::<_, i64>(row, 8)?).map_err(|e| bad("attempts", e))?,
        token,
        lease,
        released_by: col(row, 13)?,
        released_until: opt_time(14)?,
        completion,
        created_at: time(15)?,
        updated_at: time(16)?,
    })
}

/// Reads an event from a row selected with [`event_cols!`].
pub(crate) fn event<R>(row: &R) -> Result<ItemEvent>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ItemEvent {
        item_id: col(row, 0)?,
        at: from_millis(col(row, 1)?),
        kind: col::<_, String>(row, 2)?.parse::<EventKind>()?,
        actor: col(row, 3)?,
        token: col::<_, Option<i64>>(row, 4)?.map(FencingToken),
        queue: QueueName::new(col::<_, String>(row, 5)?)?,
        detail: serde_json::from_str(&col::<_, String>(row, 6)?).map_err(|e| bad("detail", e))?,
    })
}

/// Reads a lock from a row selected with [`lock_cols!`].
pub(crate) fn lock<R>(row: &R) -> Result<Lock>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let opt_time = |i: usize| Ok::<_, Error>(col::<_, Option<i64>>(row, i)?.map(from_millis));
    let resources: Vec<ResourceName> =
        serde_json::from_str(&col::<_, String>(row, 2)?).map_err(|e| bad("resources", e))?;
    let ended = match (opt_time(10)?, col::<_, Option<String>>(row, 11)?) {
        (Some(at), Some(cause)) => Some(LockEnd {
            cause: cause.parse::<EndCause>()?,
            at,
            by: col(row, 12)?,
            reason: col(row, 13)?,
        }),
        _ => None,
    };
    Ok(Lock {
        id: col(row, 0)?,
        token: FencingToken(col(row, 1)?),
        resources,
        mode: col::<_, String>(row, 3)?.parse::<LockMode>()?,
        holder: col(row, 4)?,
        session: col(row, 5)?,
        ttl_seconds: u32::try_from(col::<_, i64>(row, 6)?).map_err(|e| bad("ttl_seconds", e))?,
        acquired_at: from_millis(col(row, 7)?),
        expires_at: from_millis(col(row, 8)?),
        max_hold_until: opt_time(9)?,
        ended,
    })
}

/// Reads a lock event from a row selected with [`lock_event_cols!`].
pub(crate) fn lock_event<R>(row: &R) -> Result<LockEvent>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(LockEvent {
        resource: ResourceName::new(col::<_, String>(row, 0)?)?,
        lock: col(row, 1)?,
        at: from_millis(col(row, 2)?),
        kind: col::<_, String>(row, 3)?.parse::<LockEventKind>()?,
        actor: col(row, 4)?,
        holder: col(row, 5)?,
        mode: col::<_, String>(row, 6)?.parse::<LockMode>()?,
        token: FencingToken(col(row, 7)?),
        detail: serde_json::from_str(&col::<_, String>(row, 8)?).map_err(|e| bad("detail", e))?,
    })
}

/// Reads a hold from a row selected as `resource, lock id, holder, mode,
/// expires_at`.
pub(crate) fn hold<R>(row: &R) -> Result<Hold>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Hold {
        resource: ResourceName::new(col::<_, String>(row, 0)?)?,
        lock: col(row, 1)?,
        holder: col(row, 2)?,
        mode: col::<_, String>(row, 3)?.parse::<LockMode>()?,
        expires_at: from_millis(col(row, 4)?),
    })
}

/// Reads a queued request from a row selected as `resource, ticket id,
/// holder, mode, expires_at`.
pub(crate) fn queued<R>(row: &R) -> Result<Queued>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Queued {
        resource: ResourceName::new(col::<_, String>(row, 0)?)?,
        ticket: col(row, 1)?,
        holder: col(row, 2)?,
        mode: col::<_, String>(row, 3)?.parse::<LockMode>()?,
        expires_at: from_millis(col(row, 4)?),
    })
}

/// The resources of a lock as stored (a JSON array, sorted).
pub(crate) fn resources_json(resources: &[ResourceName]) -> Result<String> {
    serde_json::to_string(resources).map_err(|e| StoreError::fatal(e.to_string()).into())
}

/// Shapes the status of a resource from its live locks.
pub(crate) fn resource_status(
    resource: &ResourceName,
    locks: Vec<Lock>,
    waiting: i64,
    token: Option<i64>,
) -> ResourceStatus {
    let holders: Vec<ResourceHolder> = locks
        .into_iter()
        .map(|l| ResourceHolder {
            lock: l.id,
            holder: l.holder,
            session: l.session,
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
    ResourceStatus {
        resource: resource.clone(),
        locked: !holders.is_empty(),
        mode,
        holders,
        waiting: u32::try_from(waiting.max(0)).unwrap_or(u32::MAX),
        token: FencingToken(token.unwrap_or(0)),
    }
}

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| bad(what, e))
}

/// Serializes a value Baton stores as JSON text.
pub(crate) fn to_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::fatal(e.to_string()).into())
}

/// Reads a key's head from a row selected with [`record_cols!`].
pub(crate) fn record_head<R>(row: &R) -> Result<RecordHead>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(RecordHead {
        record: Record {
            collection: CollectionName::new(col::<_, String>(row, 0)?)?,
            key: RecordKey::new(col::<_, String>(row, 1)?)?,
            version: Version(col(row, 2)?),
            data: json("record data", &col::<_, String>(row, 4)?)?,
            created_by: col(row, 5)?,
            created_at: from_millis(col(row, 6)?),
            updated_by: col(row, 7)?,
            updated_at: from_millis(col(row, 8)?),
        },
        deleted: col(row, 3)?,
    })
}

/// Reads a version from a row selected with [`version_cols!`] and then
/// the data (or `NULL`).
pub(crate) fn record_version<R>(row: &R) -> Result<RecordVersion>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let merged = (
        col::<_, Option<i64>>(row, 5)?,
        col::<_, Option<i64>>(row, 6)?,
    );
    Ok(RecordVersion {
        version: Version(col(row, 0)?),
        kind: col::<_, String>(row, 1)?.parse()?,
        by: col(row, 2)?,
        at: from_millis(col(row, 3)?),
        base_version: col::<_, Option<i64>>(row, 4)?.map(Version),
        merged_from: match merged {
            (Some(b), Some(c)) => Some(MergedFrom {
                base: Version(b),
                current: Version(c),
            }),
            _ => None,
        },
        deleted: col(row, 7)?,
        changes: json("record changes", &col::<_, String>(row, 8)?)?,
        data: col::<_, Option<String>>(row, 9)?
            .map(|d| json("record data", &d))
            .transpose()?,
    })
}

/// Reads a kept refused write from its stored JSON.
pub(crate) fn conflict_object(id: i64, detail: &str) -> Result<baton_core::ConflictObject> {
    let mut o: baton_core::ConflictObject = json("conflict object", detail)?;
    o.id = id;
    Ok(o)
}

/// Reads a principal from a row selected as `id, name, role`.
pub(crate) fn principal<R>(row: &R) -> Result<Principal>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Principal {
        id: col(row, 0)?,
        name: col(row, 1)?,
        role: col::<_, String>(row, 2)?.parse::<Role>()?,
    })
}

/// The columns of a session joined with its principal (`sessions s JOIN
/// principals p`), in the order [`session`] reads.
macro_rules! session_cols {
    () => {
        "p.id, p.name, p.role, s.id, s.created_at, s.expires_at"
    };
}
pub(crate) use session_cols;

/// Reads a session from a row selected with [`session_cols!`].
pub(crate) fn session<R>(row: &R) -> Result<Session>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Session {
        principal: principal(row)?,
        id: col(row, 3)?,
        created_at: from_millis(col(row, 4)?),
        expires_at: from_millis(col(row, 5)?),
    })
}

/// Reads a token's listing from a row selected as `hash, created_at`.
pub(crate) fn token_info<R>(row: &R) -> Result<TokenInfo>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(TokenInfo {
        id: token_id(&col::<_, Vec<u8>>(row, 0)?),
        created_at: from_millis(col(row, 1)?),
    })
}

/// The hashes among a principal's `hashes` whose token id is `id`;
/// `NotFound` when none is.
pub(crate) fn matching_tokens(hashes: Vec<Vec<u8>>, id: &str) -> Result<Vec<Vec<u8>>> {
    let found: Vec<Vec<u8>> = hashes.into_iter().filter(|h| token_id(h) == id).collect();
    if found.is_empty() {
        return Err(Error::not_found("token", id));
    }
    Ok(found)
}

/// Reads an item event of the audit trail (see [`crate::audit::item_query`]).
pub(crate) fn audit_item<R>(row: &R) -> Result<AuditEntry>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    crate::audit::item_entry(
        col(row, 0)?,
        col(row, 1)?,
        col(row, 2)?,
        col(row, 3)?,
        col(row, 4)?,
        col(row, 5)?,
        col(row, 6)?,
        &col::<_, String>(row, 7)?,
    )
}

/// Reads a lock event of the audit trail (see [`crate::audit::lock_query`]).
pub(crate) fn audit_lock<R>(row: &R) -> Result<AuditEntry>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    crate::audit::lock_entry(
        col(row, 0)?,
        col(row, 1)?,
        col(row, 2)?,
        col(row, 3)?,
        col(row, 4)?,
        col(row, 5)?,
        col(row, 6)?,
        col(row, 7)?,
        col(row, 8)?,
        &col::<_, String>(row, 9)?,
    )
}

/// Reads a record version of the audit trail (see
/// [`crate::audit::record_query`]).
pub(crate) fn audit_record<R>(row: &R) -> Result<AuditEntry>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    crate::audit::record_entry(
        col(row, 0)?,
        col(row, 1)?,
        col(row, 2)?,
        col(row, 3)?,
        col(row, 4)?,
        col(row, 5)?,
        col(row, 6)?,
        (col(row, 7)?, col(row, 8)?),
        col(row, 9)?,
        &col::<_, String>(row, 10)?,
    )
}

/// Counts what a sweep or a lazy recovery made ready, per queue.
pub(crate) fn add_count(counts: &mut Vec<(QueueName, u64)>, queue: &QueueName, n: u64) {
    match counts.iter_mut().find(|(q, _)| q == queue) {
        Some((_, m)) => *m += n,
        None => counts.push((queue.clone(), n)),
    }
}

/// A URL with its password replaced by `***`, for logs and messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://baton:s3cr@t@db.example:5432/baton?sslmode=require"),
            "postgres://baton:***@db.example:5432/baton?sslmode=require"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(redact("sqlite://baton.db"), "sqlite://baton.db");
        assert_eq!(redact("postgres://u:p@h"), "postgres://u:***@h");
    }
}
