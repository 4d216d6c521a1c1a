//! Embedded SQLite store: one file, WAL mode, durable commits.
//!
//! Concurrency model: SQLite allows one writer at a time, so instead of
//! many connections fighting over the write lock, one dedicated thread owns
//! the only write connection and executes every write. It takes all the
//! writes that are waiting, runs each inside its own `SAVEPOINT` (a refused
//! operation rolls back to it and changes nothing), and commits them
//! together in one transaction — one fsync for many requests (group
//! commit). Each caller is answered only after that commit. Reads go to a
//! small pool of reader threads with their own connections, which WAL lets
//! run beside the writer.
//!
//! Because every write is serialised through the one writer, "no two
//! claimers get the same item" holds by construction here; the conformance
//! suite still races many claimers against it.

mod actor;
mod audit;
mod identity;
mod locks;
mod queue;
mod records;
mod rows;

use std::path::Path;

use async_trait::async_trait;
use baton_core::audit::{AuditEntry, AuditFilter};
use baton_core::{
    Acquisition, ClaimRequest, Claimed, CollectionConfig, CollectionName, CompleteRequest,
    ConfigChange, ConflictId, ConflictObject, FencingToken, HistoryFilter, Item, ItemEvent,
    ItemFilter, ItemId, Lock, LockEvent, LockFilter, LockId, LockRequest, LockSweepReport, NewItem,
    Principal, QueueConfig, QueueName, QueueStats, Queueing, Record, RecordFilter, RecordHead,
    RecordKey, RecordVersion, RecordWrite, ResourceName, ResourceStatus, Result, Role, Session,
    Store, StoreError, SweepReport, TicketId, Timestamp, TokenInfo, Version, Written,
};
use chrono::Duration;
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use actor::{Readers, Writer};

/// Schema migrations, applied in order; the database's `user_version`
/// records how many ran. Never edit one that has shipped: add another.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/sqlite/0001_queues.sql")),
    M::up(include_str!("../../migrations/sqlite/0002_locks.sql")),
    M::up(include_str!("../../migrations/sqlite/0003_records.sql")),
    M::up(include_str!("../../migrations/sqlite/0004_identity.sql")),
    M::up(include_str!("../../migrations/sqlite/0005_audit.sql")),
    M::up(include_str!(
        "../../migrations/sqlite/0006_audit_upkeep.sql"
    )),
];

/// Number of reader connections.
const READERS: usize = 4;

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
}

fn configure(conn: &Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL: a commit is on disk before anyone is told it happened, so an
    // acknowledged write survives kill -9 and power loss alike. Group
    // commit pays for the fsync.
    conn.pragma_update(None, "synchronous", "FULL")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, switches it
    /// to WAL and applies pending migrations. Refuses a database whose
    /// schema is newer than this build knows.
    pub async fn open(path: &str) -> Result<Self> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(Path::new(&path)))
            .await
            .map_err(|e| StoreError::fatal(format!("open task failed: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<Self> {
        if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") {
            return Err(baton_core::Error::invalid(
                "db",
                "SQLite needs a file path (an in-memory database would not be shared between connections)",
            ));
        }
        let mut conn = Connection::open(path).map_err(|e| {
            StoreError::fatal(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(rows::store_err)?;
        configure(&conn, false).map_err(rows::store_err)?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|e| StoreError::fatal(format!("migrating {}: {e}", path.display())))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path).map_err(rows::store_err)?;
            configure(&r, true).map_err(rows::store_err)?;
            readers.push(r);
        }
        Ok(Self {
            writer: Writer::spawn(conn),
            readers: Readers::spawn(readers),
        })
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> usize {
        MIGRATIONS.len()
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn enqueue(&self, new: NewItem, actor: &str, now: Timestamp) -> Result<(Item, bool)> {
        let actor = actor.to_owned();
        self.writer
            .write(move |c| queue::enqueue(c, &new, &actor, now))
            .await
    }

    async fn claim(&self, req: ClaimRequest, now: Timestamp) -> Result<Option<Claimed>> {
        self.writer.write(move |c| queue::claim(c, &req, now)).await
    }

    async fn heartbeat(
        &self,
        id: ItemId,
        caller: &str,
        token: FencingToken,
        lease: Duration,
        now: Timestamp,
    ) -> Result<Item> {
        let caller = caller.to_owned();
        self.writer
            .write(move |c| {
                queue::mutate(c, id, now, |item, _| {
                    baton_core::rules::heartbeat(item, &caller, token, lease, now)
                })
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
        let caller = caller.to_owned();
        self.writer
            .write(move |c| {
                queue::mutate(c, id, now, |item, cfg| {
                    baton_core::rules::release(item, &caller, token, delay, cfg, now)
                })
            })
            .await
    }

    async fn complete(
        &self,
        id: ItemId,
        caller: &str,
        req: CompleteRequest,
        now: Timestamp,
    ) -> Result<Item> {
        let caller = caller.to_owned();
        self.writer
            .write(move |c| {
                queue::mutate(c, id, now, |item, cfg| {
                    baton_core::rules::complete(item, &caller, &req, cfg, now)
                })
            })
            .await
    }

    async fn revoke(&self, id: ItemId, actor: &str, now: Timestamp) -> Result<Item> {
        let actor = actor.to_owned();
        self.writer
            .write(move |c| {
                queue::mutate(c, id, now, |item, _| {
                    baton_core::rules::revoke(item, &actor, now)
                })
            })
            .await
    }

    async fn requeue(&self, id: ItemId, actor: &str, now: Timestamp) -> Result<Item> {
        let actor = actor.to_owned();
        self.writer
            .write(move |c| {
                queue::mutate(c, id, now, |item, _| {
                    baton_core::rules::requeue(item, &actor, now)
                })
            })
            .await
    }

    async fn item(&self, id: ItemId) -> Result<Item> {
        self.readers
            .read(move |c| {
                queue::load_any(c, id)?.ok_or_else(|| baton_core::Error::not_found("item", id))
            })
            .await
    }

    async fn item_history(&self, id: ItemId) -> Result<Vec<ItemEvent>> {
        self.readers.read(move |c| queue::history(c, id)).await
    }

    async fn list_items(&self, queue: &QueueName, filter: &ItemFilter) -> Result<Vec<Item>> {
        let (queue, filter) = (queue.clone(), filter.clone());
        self.readers
            .read(move |c| queue::list(c, &queue, &filter))
            .await
    }

    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<QueueStats>> {
        self.readers.read(move |c| queue::stats(c, now)).await
    }

    async fn queue_config(&self, queue: &QueueName) -> Result<QueueConfig> {
        let queue = queue.clone();
        self.readers.read(move |c| queue::config(c, &queue)).await
    }

    async fn update_queue_config(
        &self,
        queue: &QueueName,
        change: ConfigChange,
    ) -> Result<QueueConfig> {
        let queue = queue.clone();
        self.writer
            .write(move |c| queue::update_config(c, &queue, &change))
            .await
    }

    async fn sweep(&self, now: Timestamp, key_retention: Duration) -> Result<SweepReport> {
        self.writer
            .write(move |c| queue::sweep(c, now, key_retention))
            .await
    }

    async fn acquire_lock(
        &self,
        req: LockRequest,
        queueing: Queueing,
        now: Timestamp,
    ) -> Result<Acquisition> {
        self.writer
            .write(move |c| locks::acquire(c, &req, queueing, now))
            .await
    }

    async fn withdraw_lock_ticket(
        &self,
        ticket: TicketId,
        _now: Timestamp,
    ) -> Result<Option<Vec<ResourceName>>> {
        self.writer.write(move |c| locks::withdraw(c, ticket)).await
    }

    async fn heartbeat_lock(
        &self,
        id: LockId,
        caller: &str,
        ttl_seconds: u32,
        now: Timestamp,
    ) -> Result<Lock> {
        let caller = caller.to_owned();
        self.writer
            .write(move |c| locks::heartbeat(c, id, &caller, ttl_seconds, now))
            .await
    }

    async fn release_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
        let caller = caller.to_owned();
        self.writer
            .write(move |c| locks::release(c, id, &caller, now))
            .await
    }

    async fn force_release_lock(
        &self,
        id: LockId,
        actor: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<Lock> {
        let (actor, reason) = (actor.to_owned(), reason.to_owned());
        self.writer
            .write(move |c| locks::force(c, id, &actor, &reason, now))
            .await
    }

    async fn release_session_locks(
        &self,
        holder: &str,
        session: &str,
        now: Timestamp,
    ) -> Result<Vec<Lock>> {
        let (holder, session) = (holder.to_owned(), session.to_owned());
        self.writer
            .write(move |c| locks::release_session(c, &holder, &session, now))
            .await
    }

    async fn upgrade_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
        let caller = caller.to_owned();
        self.writer
            .write(move |c| locks::upgrade(c, id, &caller, now))
            .await
    }

    async fn downgrade_lock(&self, id: LockId, caller: &str, now: Timestamp) -> Result<Lock> {
        let caller = caller.to_owned();
        self.writer
            .write(move |c| locks::downgrade(c, id, &caller, now))
            .await
    }

    async fn lock(&self, id: LockId, now: Timestamp) -> Result<Lock> {
        self.readers.read(move |c| locks::get(c, id, now)).await
    }

    async fn list_locks(&self, filter: &LockFilter, now: Timestamp) -> Result<Vec<Lock>> {
        let filter = filter.clone();
        self.readers
            .read(move |c| locks::list(c, &filter, now))
            .await
    }

    async fn lock_status(
        &self,
        resources: &[ResourceName],
        now: Timestamp,
    ) -> Result<Vec<ResourceStatus>> {
        let resources = resources.to_vec();
        self.readers
            .read(move |c| locks::status(c, &resources, now))
            .await
    }

    async fn resource_history(
        &self,
        resource: &ResourceName,
        limit: u32,
    ) -> Result<Vec<LockEvent>> {
        let resource = resource.clone();
        self.readers
            .read(move |c| locks::history(c, &resource, limit))
            .await
    }

    async fn sweep_locks(
        &self,
        now: Timestamp,
        retention: Duration,
        key_retention: Duration,
    ) -> Result<LockSweepReport> {
        self.writer
            .write(move |c| locks::sweep(c, now, retention, key_retention))
            .await
    }

    async fn lock_versions(&self, resources: &[ResourceName]) -> Result<Vec<i64>> {
        let resources = resources.to_vec();
        self.readers
            .read(move |c| locks::versions(c, &resources))
            .await
    }

    async fn collection_config(&self, collection: &CollectionName) -> Result<CollectionConfig> {
        let collection = collection.clone();
        self.readers
            .read(move |c| records::config(c, &collection))
            .await
    }

    async fn update_collection_config(
        &self,
        collection: &CollectionName,
        change: ConfigChange<CollectionConfig>,
        now: Timestamp,
    ) -> Result<CollectionConfig> {
        let collection = collection.clone();
        self.writer
            .write(move |c| records::update_config(c, &collection, &change, now))
            .await
    }

    async fn record_head(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
    ) -> Result<Option<RecordHead>> {
        let (collection, key) = (collection.clone(), key.clone());
        self.readers
            .read(move |c| records::load_head(c, &collection, &key))
            .await
    }

    async fn write_record(&self, write: RecordWrite, now: Timestamp) -> Result<Written> {
        self.writer
            .write(move |c| records::write(c, &write, now))
            .await
    }

    async fn list_records(
        &self,
        collection: &CollectionName,
        filter: &RecordFilter,
    ) -> Result<Vec<Record>> {
        let (collection, filter) = (collection.clone(), filter.clone());
        self.readers
            .read(move |c| records::list(c, &collection, &filter))
            .await
    }

    async fn record_history(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
        filter: &HistoryFilter,
    ) -> Result<Vec<RecordVersion>> {
        let (collection, key, filter) = (collection.clone(), key.clone(), filter.clone());
        self.readers
            .read(move |c| records::history(c, &collection, &key, &filter))
            .await
    }

    async fn record_version(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
        version: Version,
    ) -> Result<RecordVersion> {
        let (collection, key) = (collection.clone(), key.clone());
        self.readers
            .read(move |c| records::version_of(c, &collection, &key, version))
            .await
    }

    async fn save_conflict(&self, conflict: &ConflictObject) -> Result<ConflictId> {
        let conflict = conflict.clone();
        self.writer
            .write(move |c| records::save_conflict(c, &conflict))
            .await
    }

    async fn conflict(&self, id: ConflictId) -> Result<Option<ConflictObject>> {
        self.readers.read(move |c| records::conflict(c, id)).await
    }

    async fn forget_conflicts(&self, now: Timestamp) -> Result<u64> {
        self.writer
            .write(move |c| records::forget_conflicts(c, now))
            .await
    }

    async fn create_principal(&self, name: &str, role: Role, now: Timestamp) -> Result<Principal> {
        let name = name.to_owned();
        self.writer
            .write(move |c| identity::create_principal(c, &name, role, now))
            .await
    }

    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        let name = name.to_owned();
        self.readers
            .read(move |c| identity::principal(c, &name))
            .await
    }

    async fn principals(&self) -> Result<Vec<Principal>> {
        self.readers.read(identity::principals).await
    }

    async fn add_token(&self, principal_id: i64, token_hash: &[u8], now: Timestamp) -> Result<()> {
        let hash = token_hash.to_vec();
        self.writer
            .write(move |c| identity::add_token(c, principal_id, &hash, now))
            .await
    }

    async fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<Principal>> {
        let hash = token_hash.to_vec();
        self.readers
            .read(move |c| identity::principal_by_token(c, &hash))
            .await
    }

    async fn tokens(&self, principal_id: i64) -> Result<Vec<TokenInfo>> {
        self.readers
            .read(move |c| identity::tokens(c, principal_id))
            .await
    }

    async fn revoke_token(&self, principal_id: i64, id: &str) -> Result<Vec<Vec<u8>>> {
        let id = id.to_owned();
        self.writer
            .write(move |c| identity::revoke_token(c, principal_id, &id))
            .await
    }

    async fn set_password_hash(&self, name: &str, hash: Option<&str>) -> Result<()> {
        let (name, hash) = (name.to_owned(), hash.map(str::to_owned));
        self.writer
            .write(move |c| identity::set_password_hash(c, &name, hash.as_deref()))
            .await
    }

    async fn principal_with_password(
        &self,
        name: &str,
    ) -> Result<Option<(Principal, Option<String>)>> {
        let name = name.to_owned();
        self.readers
            .read(move |c| identity::principal_with_password(c, &name))
            .await
    }

    async fn create_session(&self, session: &Session, secret_hash: &[u8]) -> Result<()> {
        let (session, hash) = (session.clone(), secret_hash.to_vec());
        self.writer
            .write(move |c| identity::create_session(c, &session, &hash))
            .await
    }

    async fn session_by_hash(&self, secret_hash: &[u8]) -> Result<Option<Session>> {
        let hash = secret_hash.to_vec();
        self.readers
            .read(move |c| identity::session_by_hash(c, &hash))
            .await
    }

    async fn delete_session(&self, secret_hash: &[u8]) -> Result<Option<Session>> {
        let hash = secret_hash.to_vec();
        self.writer
            .write(move |c| identity::delete_session(c, &hash))
            .await
    }

    async fn sweep_sessions(&self, now: Timestamp) -> Result<u64> {
        self.writer
            .write(move |c| identity::sweep_sessions(c, now))
            .await
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let filter = filter.clone();
        self.readers.read(move |c| audit::audit(c, &filter)).await
    }

    async fn completion_counts(
        &self,
        queue: &QueueName,
        since: Timestamp,
        until: Timestamp,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>> {
        let queue = queue.clone();
        self.readers
            .read(move |c| audit::completion_counts(c, &queue, since, until, bucket_ms))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::{Kind, rules};
    use chrono::DateTime;
    use serde_json::json;
    use std::sync::Arc;

    fn t0() -> Timestamp {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[tokio::test]
    async fn round_trip_and_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Arc::new(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
        let q = QueueName::new("q").unwrap();
        // Many concurrent writes: batched by the writer, each answered.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let new =
                    NewItem::new(q, Kind::new("k").unwrap(), json!({"i": i}), 0, 0, None).unwrap();
                store.enqueue(new, "app", t0()).await.unwrap().0.id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        let req = ClaimRequest::new(q.clone(), vec![], "alice".into(), 60, None).unwrap();
        let claimed = store.claim(req, t0()).await.unwrap().unwrap();
        assert_eq!(claimed.item.id, ids[0]);
        let loaded = store.item(claimed.item.id).await.unwrap();
        assert_eq!(loaded, claimed.item);
        // A refused operation inside a batch changes nothing.
        let bad = CompleteRequest::new(FencingToken(9), "accepted".into(), None, None).unwrap();
        assert!(
            store
                .complete(claimed.item.id, "alice", bad, t0())
                .await
                .is_err()
        );
        assert_eq!(store.item(claimed.item.id).await.unwrap(), loaded);
        let ok = CompleteRequest::new(claimed.lease.token, "accepted".into(), None, None).unwrap();
        let done = store
            .complete(claimed.item.id, "alice", ok, t0())
            .await
            .unwrap();
        assert_eq!(store.item(done.id).await.unwrap(), done);
        let mut expect = loaded.clone();
        let cfg = QueueConfig::default();
        rules::complete(
            &mut expect,
            "alice",
            &CompleteRequest::new(claimed.lease.token, "accepted".into(), None, None).unwrap(),
            &cfg,
            t0(),
        )
        .unwrap();
        assert_eq!(done, expect);
    }

    /// The record history cannot be changed, even by hand.
    #[tokio::test]
    async fn record_history_is_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        let w = RecordWrite::new(
            CollectionName::new("c").unwrap(),
            RecordKey::new("k").unwrap(),
            baton_core::WriteOp::Put(json!({"a": 1})),
            baton_core::Precondition::Absent,
            None,
        )
        .unwrap();
        store.write_record(w, t0()).await.unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        for sql in [
            "UPDATE record_versions SET actor = 'mallory'",
            "DELETE FROM record_versions",
        ] {
            let e = conn.execute(sql, []).unwrap_err();
            assert!(e.to_string().contains("append-only"), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn refuses_a_schema_newer_than_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(path.to_str().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("migrat"), "{err}");
    }
}
