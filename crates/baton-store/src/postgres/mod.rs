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

mod batch;
mod locks;
mod queue;
mod records;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_core::audit::{AuditEntry, AuditFilter, newest_first};
use baton_core::clock::to_millis;
use baton_core::{
    Acquisition, ClaimRequest, Claimed, CollectionConfig, CollectionName, CompleteRequest,
    ConfigChange, ConflictId, ConflictObject, Error, EventCallback, FencingToken, HistoryFilter,
    Item, ItemEvent, ItemFilter, ItemId, Lock, LockCallback, LockEvent, LockFilter, LockId,
    LockRequest, LockSweepReport, NewItem, Principal, QueueConfig, QueueName, QueueStats, Queueing,
    Record, RecordFilter, RecordHead, RecordKey, RecordVersion, RecordWrite, ResourceName,
    ResourceStatus, Result, Role, Session, Store, StoreError, SweepReport, TicketId, Timestamp,
    TokenInfo, Version, Wakeups, WorkCallback, Written, rules,
};
use chrono::Duration;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

use sqlx::AssertSqlSafe;

use crate::sql::{self, StoreSettings, in_tx};
use batch::Batcher;

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
    event_listener: Mutex<Option<JoinHandle<()>>>,
    /// Lock times from the database's clock (see
    /// [`StoreSettings::database_clock`]).
    database_clock: bool,
    /// Concurrent claims, served in batches.
    claims: Arc<Batcher<queue::ClaimJob, Option<Claimed>>>,
    /// Concurrent completions (without escalation), served in batches.
    completions: Arc<Batcher<queue::CompleteJob, Item>>,
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
        // A quarter of the pool each for batches of claims and of
        // completions (measured: 4 of 16 beat 1, 2 and 16), half for the rest.
        let in_flight = (settings.max_connections / 4).max(1) as usize;
        let claims = {
            let pool = pool.clone();
            Batcher::new(in_flight, move |jobs| claim_batches(pool.clone(), jobs))
        };
        let completions = {
            let pool = pool.clone();
            Batcher::new(in_flight, move |jobs: Vec<queue::CompleteJob>| {
                let pool = pool.clone();
                async move {
                    match in_tx!(pool, db, |c| queue::complete_batch(c, &jobs).await) {
                        Ok(answers) => answers,
                        Err(e) => batch::every(jobs.len(), e),
                    }
                }
            })
        };
        Ok(Self {
            pool,
            listener: Mutex::new(None),
            lock_listener: Mutex::new(None),
            event_listener: Mutex::new(None),
            database_clock: settings.database_clock,
            claims,
            completions,
        })
    }

    /// Whether a principal with this id exists.
    async fn principal_by_id(&self, id: i64) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM principals WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(db)?
            .is_some())
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

/// Serves a batch of claims: one transaction per queue and `kinds` (run
/// concurrently), answers in the jobs' order.
async fn claim_batches(pool: PgPool, jobs: Vec<queue::ClaimJob>) -> Vec<Result<Option<Claimed>>> {
    let n = jobs.len();
    // Groups in order of first appearance, each with its jobs' positions.
    let mut groups: Vec<(Vec<usize>, Vec<queue::ClaimJob>)> = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let (req, _) = &job;
        match groups
            .iter_mut()
            .find(|(_, g)| g[0].0.queue == req.queue && g[0].0.kinds == req.kinds)
        {
            Some((at, g)) => {
                at.push(i);
                g.push(job);
            }
            None => groups.push((vec![i], vec![job])),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (at, group) in groups {
        let pool = pool.clone();
        tasks.spawn(async move {
            let answers = match in_tx!(pool, db, |c| queue::claim_batch(c, &group).await) {
                Ok(answers) => answers,
                Err(e) => batch::every(group.len(), e),
            };
            (at, answers)
        });
    }
    let mut out: Vec<Option<Result<Option<Claimed>>>> = (0..n).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((at, answers)) => {
                for (i, a) in at.into_iter().zip(answers) {
                    out[i] = Some(a);
                }
            }
            Err(e) => tracing::error!(error = %e, "a claim batch failed"),
        }
    }
    out.into_iter()
        .map(|a| a.unwrap_or_else(|| Err(StoreError::fatal("a claim batch failed").into())))
        .collect()
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for listener in [&self.listener, &self.lock_listener, &self.event_listener] {
            if let Some(task) = listener.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
    }
}

/// The channel of live events relayed between servers.
const EVENTS_CHANNEL: &str = "baton_events";

async fn event_listen_loop(mut listener: PgListener, on_event: EventCallback) {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => on_event(Some(n.payload())),
            Ok(None) => {
                tracing::warn!("lost the PostgreSQL event connection; reconnecting");
                on_event(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL event notifications unavailable; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                on_event(None);
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

/// Reads one audit entry from a row of its history's query.
type AuditRow = fn(&sqlx::postgres::PgRow) -> Result<AuditEntry>;

/// Binds a query's parameters in order.
fn bind_args<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments>,
    args: Vec<crate::audit::Arg>,
) -> sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments> {
    for a in args {
        q = match a {
            crate::audit::Arg::Int(i) => q.bind(i),
            crate::audit::Arg::Text(s) => q.bind(s),
        };
    }
    q
}

crate::sql::server_store!(PgStore, {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    async fn claim(&self, req: ClaimRequest, now: Timestamp) -> Result<Option<Claimed>> {
        self.claims.submit((req, now)).await
    }
    async fn complete(
        &self,
        id: ItemId,
        caller: &str,
        req: CompleteRequest,
        now: Timestamp,
    ) -> Result<Item> {
        if req.escalate_to.is_some() {
            // Rare, and more than an archive: one at a time.
            return self
                .mutate(id, now, |item, cfg| {
                    rules::complete(item, caller, &req, cfg, now)
                })
                .await;
        }
        self.completions
            .submit(queue::CompleteJob {
                id,
                caller: caller.to_owned(),
                req,
                now,
            })
            .await
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
    async fn publish_events(&self, payloads: &[String]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        // One statement, one implicit transaction: delivered together, in
        // array order, after every notification committed before.
        sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(EVENTS_CHANNEL)
            .bind(payloads)
            .execute(&mut *self.conn().await?)
            .await
            .map_err(db)?;
        Ok(())
    }
    async fn listen_events(&self, on_event: EventCallback) -> Result<()> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(EVENTS_CHANNEL).await.map_err(db)?;
        let task = tokio::spawn(event_listen_loop(listener, on_event));
        if let Some(old) = self
            .event_listener
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

    async fn tokens(&self, principal_id: i64) -> Result<Vec<TokenInfo>> {
        sqlx::query(
            "SELECT hash, created_at FROM tokens WHERE principal_id = $1 ORDER BY created_at, hash",
        )
        .bind(principal_id)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(db)?
        .iter()
        .map(sql::token_info)
        .collect()
    }
    async fn revoke_token(&self, principal_id: i64, id: &str) -> Result<Vec<Vec<u8>>> {
        in_tx!(self.pool, db, |c| async {
            let hashes: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM tokens WHERE principal_id = $1 FOR UPDATE")
                    .bind(principal_id)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(db)?;
            let hashes = sql::matching_tokens(hashes, id)?;
            for h in &hashes {
                sqlx::query("DELETE FROM tokens WHERE hash = $1")
                    .bind(h)
                    .execute(&mut *c)
                    .await
                    .map_err(db)?;
            }
            Ok::<_, Error>(hashes)
        }
        .await)
    }
    async fn set_password_hash(&self, name: &str, hash: Option<&str>) -> Result<()> {
        let done = sqlx::query("UPDATE principals SET password_hash = $2 WHERE name = $1")
            .bind(name)
            .bind(hash)
            .execute(&mut *self.conn().await?)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("principal", name));
        }
        Ok(())
    }
    async fn principal_with_password(
        &self,
        name: &str,
    ) -> Result<Option<(Principal, Option<String>)>> {
        sqlx::query("SELECT id, name, role, password_hash FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.conn().await?)
            .await
            .map_err(db)?
            .as_ref()
            .map(|r| Ok((sql::principal(r)?, sql::col(r, 3)?)))
            .transpose()
    }
    async fn create_session(&self, session: &Session, secret_hash: &[u8]) -> Result<()> {
        let added = sqlx::query(
            "INSERT INTO sessions (hash, id, principal_id, created_at, expires_at) \
             SELECT $1, $2, id, $4, $5 FROM principals WHERE id = $3 \
             ON CONFLICT DO NOTHING",
        )
        .bind(secret_hash)
        .bind(&session.id)
        .bind(session.principal.id)
        .bind(to_millis(session.created_at))
        .bind(to_millis(session.expires_at))
        .execute(&mut *self.conn().await?)
        .await
        .map_err(db)?;
        if added.rows_affected() == 0 {
            return Err(match self.principal_by_id(session.principal.id).await? {
                true => Error::AlreadyExists(format!("session {} exists", session.id)),
                false => Error::not_found("principal", session.principal.id),
            });
        }
        Ok(())
    }
    async fn session_by_hash(&self, secret_hash: &[u8]) -> Result<Option<Session>> {
        sqlx::query(concat!(
            "SELECT ",
            sql::session_cols!(),
            " FROM sessions s JOIN principals p ON p.id = s.principal_id WHERE s.hash = $1"
        ))
        .bind(secret_hash)
        .fetch_optional(&mut *self.conn().await?)
        .await
        .map_err(db)?
        .as_ref()
        .map(sql::session)
        .transpose()
    }
    async fn delete_session(&self, secret_hash: &[u8]) -> Result<Option<Session>> {
        in_tx!(self.pool, db, |c| async {
            let found = sqlx::query(concat!(
                "SELECT ",
                sql::session_cols!(),
                " FROM sessions s JOIN principals p ON p.id = s.principal_id \
                 WHERE s.hash = $1 FOR UPDATE OF s"
            ))
            .bind(secret_hash)
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?
            .as_ref()
            .map(sql::session)
            .transpose()?;
            if found.is_some() {
                sqlx::query("DELETE FROM sessions WHERE hash = $1")
                    .bind(secret_hash)
                    .execute(&mut *c)
                    .await
                    .map_err(db)?;
            }
            Ok::<_, Error>(found)
        }
        .await)
    }
    async fn sweep_sessions(&self, now: Timestamp) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(to_millis(now))
            .execute(&mut *self.conn().await?)
            .await
            .map_err(db)?
            .rows_affected())
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        use crate::audit::{Dialect, item_query, lock_query, record_query};
        // One snapshot: the three histories as of one moment.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db)?;
        let mut pages = Vec::with_capacity(3);
        for (q, read) in [
            (
                item_query(Dialect::Postgres, filter),
                sql::audit_item as AuditRow,
            ),
            (
                lock_query(Dialect::Postgres, filter),
                sql::audit_lock as AuditRow,
            ),
            (
                record_query(Dialect::Postgres, filter),
                sql::audit_record as AuditRow,
            ),
        ] {
            let rows = bind_args(sqlx::query(AssertSqlSafe(q.sql)), q.args)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            pages.push(rows.iter().map(read).collect::<Result<Vec<_>>>()?);
        }
        tx.commit().await.map_err(db)?;
        Ok(newest_first(pages, filter.limit))
    }
    async fn completion_counts(
        &self,
        queue: &QueueName,
        since: Timestamp,
        until: Timestamp,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT (completed_at - $2) / $4, count(*) FROM done_items \
             WHERE queue = $1 AND completed_at >= $2 AND completed_at < $3 GROUP BY 1",
        )
        .bind(queue.as_str())
        .bind(to_millis(since))
        .bind(to_millis(until))
        .bind(bucket_ms)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(b, n)| (b, n.max(0) as u64))
            .collect())
    }
});
