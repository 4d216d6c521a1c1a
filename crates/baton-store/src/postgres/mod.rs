//! PostgreSQL store, for several Baton servers sharing one database.
//!
//! Every operation is one transaction at READ COMMITTED with explicit row
//! locks (see [`queue`] for which and why). A transaction that loses a
//! race — serialization failure, deadlock, lock timeout, or a unique key
//! taken by a concurrent insert — is rolled back and run again, a bounded
//! number of times. Work that becomes claimable is announced with
//! `NOTIFY` inside the transaction, so other processes hear of it exactly
//! when it is committed; [`PgStore::listen`] turns those notifications into
//! wake-ups of waiting claimers.
//!
//! When the database is unreachable, operations fail with a retryable
//! error (HTTP 503 with `Retry-After`) after the pool's acquire timeout;
//! the pool reconnects by itself once the database is back.

mod locks;
mod queue;
mod records;

use std::sync::Mutex;

use async_trait::async_trait;
use baton_core::clock::to_millis;
use baton_core::{
    Acquisition, ClaimRequest, Claimed, CollectionConfig, CollectionName, CompleteRequest,
    ConfigChange, ConflictId, ConflictObject, Error, FencingToken, HistoryFilter, Item, ItemEvent,
    ItemFilter, ItemId, Lock, LockCallback, LockEvent, LockFilter, LockId, LockRequest,
    LockSweepReport, NewItem, Principal, QueueConfig, QueueName, QueueStats, Queueing, Record,
    RecordFilter, RecordHead, RecordKey, RecordVersion, RecordWrite, ResourceName, ResourceStatus,
    Result, Role, Store, StoreError, SweepReport, TicketId, Timestamp, Version, Wakeups,
    WorkCallback, Written, rules,
};
use chrono::Duration;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

use crate::sql::{self, StoreSettings, in_tx};

/// Schema migrations, embedded at build time and applied in order.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Error codes of a transaction that lost a race and may simply run again:
/// serialization failure, deadlock, lock not available, unique violation.
fn is_conflict(e: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(
        e.code().as_deref(),
        Some("40001" | "40P01" | "55P03" | "23505")
    )
}

/// Converts a driver error (see [`sql::store_err`]).
pub(crate) fn db(e: sqlx::Error) -> Error {
    sql::store_err("postgres", e, is_conflict)
}

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    listener: Mutex<Option<JoinHandle<()>>>,
    lock_listener: Mutex<Option<JoinHandle<()>>>,
    /// Lock times from the database's clock (see
    /// [`StoreSettings::database_clock`]).
    database_clock: bool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`;
    /// TLS via the usual `sslmode`, `sslrootcert`, `sslcert`, `sslkey`
    /// parameters), applies pending migrations, and refuses a database
    /// whose schema is newer than this build knows.
    pub async fn open(url: &str, settings: &StoreSettings) -> Result<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e| {
            Error::invalid(
                "db",
                format!("invalid PostgreSQL URL {}: {e}", sql::redact(url)),
            )
        })?;
        let options = options.application_name("baton").options([(
            "statement_timeout",
            format!("{}ms", settings.statement_timeout.as_millis()),
        )]);
        // No ping before every use (sqlx already pings on release, which
        // closes connections that died); see `sql::in_tx!`.
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::retryable(format!(
                    "cannot connect to PostgreSQL at {}: {e}",
                    sql::redact(url)
                ))
            })?;
        // sqlx takes an advisory lock while migrating, so servers starting
        // together migrate once; it refuses a database on which migrations
        // it does not know were applied.
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::fatal(format!("migrating PostgreSQL: {e}")))?;
        Ok(Self {
            pool,
            listener: Mutex::new(None),
            lock_listener: Mutex::new(None),
            database_clock: settings.database_clock,
        })
    }

    /// The number of schema migrations this build knows.
    pub fn schema_version() -> usize {
        MIGRATOR.iter().count()
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        self.pool.acquire().await.map_err(db)
    }

    /// Where a lock operation's "now" comes from.
    fn now(&self, given: Timestamp) -> locks::Now {
        if self.database_clock {
            locks::Now::Database
        } else {
            locks::Now::Given(given)
        }
    }

    async fn mutate(
        &self,
        id: ItemId,
        now: Timestamp,
        rule: impl Fn(&mut Item, &QueueConfig) -> Result<ItemEvent> + Send + Sync,
    ) -> Result<Item> {
        in_tx!(self.pool, db, |c| queue::mutate(c, id, now, &rule).await)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for listener in [&self.listener, &self.lock_listener] {
            if let Some(task) = listener.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
    }
}

async fn lock_listen_loop(mut listener: PgListener, on_free: LockCallback) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match ResourceName::new(n.payload()) {
                Ok(r) => on_free(Some(&r)),
                Err(_) => on_free(None),
            },
            Ok(None) => {
                tracing::warn!("lost the PostgreSQL lock notification connection; reconnecting");
                on_free(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL lock notifications unavailable; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                on_free(None);
            }
        }
    }
}

async fn listen_loop(mut listener: PgListener, on_work: WorkCallback) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match QueueName::new(n.payload()) {
                Ok(q) => on_work(Some(&q)),
                Err(_) => on_work(None),
            },
            // The connection was lost (and is re-established by the next
            // call): anything announced meanwhile was missed.
            Ok(None) => {
                tracing::warn!("lost the PostgreSQL notification connection; reconnecting");
                on_work(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL notifications unavailable; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                on_work(None);
            }
        }
    }
}

crate::sql::server_store!(PgStore, {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn wakeups(&self) -> Wakeups {
        Wakeups::Notify
    }
    async fn listen(&self, on_work: WorkCallback) -> Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(queue::CHANNEL).await.map_err(db)?;
        let task = tokio::spawn(listen_loop(listener, on_work));
        if let Some(old) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
        Ok(())
    }
    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<QueueStats>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db)?;
        let stats = queue::stats(&mut tx, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(stats)
    }
    async fn listen_locks(&self, on_free: LockCallback) -> Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(locks::CHANNEL).await.map_err(db)?;
        let task = tokio::spawn(lock_listen_loop(listener, on_free));
        if let Some(old) = self
            .lock_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(task)
        {
            old.abort();
        }
        Ok(())
    }
    async fn lock_status(
        &self,
        resources: &[ResourceName],
        now: Timestamp,
    ) -> Result<Vec<ResourceStatus>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db)?;
        let status = locks::status(&mut tx, resources, self.now(now)).await?;
        tx.commit().await.map_err(db)?;
        Ok(status)
    }
    async fn create_principal(&self, name: &str, role: Role, now: Timestamp) -> Result<Principal> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO principals (name, role, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(to_millis(now))
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::AlreadyExists(format!("a principal named {name} already exists")))?;
        Ok(Principal {
            id,
            name: name.to_owned(),
            role,
        })
    }
    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        sqlx::query("SELECT id, name, role FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(db)?
            .as_ref()
            .map(sql::principal)
            .transpose()
    }
    async fn add_token(&self, principal_id: i64, token_hash: &[u8], now: Timestamp) -> Result<()> {
        let added = sqlx::query(
            "INSERT INTO tokens (hash, principal_id, created_at) \
             SELECT $1, id, $3 FROM principals WHERE id = $2",
        )
        .bind(token_hash)
        .bind(principal_id)
        .bind(to_millis(now))
        .execute(&mut *self.conn().await?)
        .await
        .map_err(db)?;
        if added.rows_affected() == 0 {
            return Err(Error::not_found("principal", principal_id));
        }
        Ok(())
    }
    async fn principal_by_token(&self, token_hash: &[u8]) -> Result<Option<Principal>> {
        sqlx::query(
            "SELECT p.id, p.name, p.role FROM tokens t JOIN principals p ON p.id = t.principal_id \
             WHERE t.hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(db)?
        .as_ref()
        .map(sql::principal)
        .transpose()
    }
});
