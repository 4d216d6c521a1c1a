//! MySQL 8 / MariaDB 10.6+ store, for several Baton servers sharing one
//! database.
//!
//! Every session runs at READ COMMITTED (no gap locks, so fewer deadlocks
//! between claimers) and every operation is one transaction with explicit
//! row locks (see [`queue`]). Deadlocks, lock wait timeouts and duplicate
//! keys from concurrent inserts roll the transaction back and run it
//! again, a bounded number of times. MySQL cannot push notifications, so
//! claimers waiting in other processes learn of new work by the engine's
//! polling ([`Wakeups::Poll`]).

mod locks;
mod queue;
mod records;

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use baton_core::audit::{AuditEntry, AuditFilter, newest_first};
use baton_core::clock::to_millis;
use baton_core::{
    Acquisition, ClaimRequest, Claimed, CollectionConfig, CollectionName, CompleteRequest,
    ConfigChange, ConflictId, ConflictObject, Error, FencingToken, HistoryFilter, Item, ItemEvent,
    ItemFilter, ItemId, Lock, LockEvent, LockFilter, LockId, LockRequest, LockSweepReport, NewItem,
    Principal, QueueConfig, QueueName, QueueStats, Queueing, Record, RecordFilter, RecordHead,
    RecordKey, RecordVersion, RecordWrite, ResourceName, ResourceStatus, Result, Role, Session,
    Store, StoreError, SweepReport, TicketId, Timestamp, TokenInfo, Version, Wakeups, Written,
    rules,
};
use chrono::Duration;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor};

use sqlx::AssertSqlSafe;

use crate::sql::{self, StoreSettings, in_tx};

/// Schema migrations, embedded at build time and applied in order.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// How often waiting claimers re-check for work enqueued by other
/// processes.
pub const POLL_INTERVAL: StdDuration = StdDuration::from_millis(250);

/// Error numbers of a transaction that lost a race and may simply run
/// again: deadlock, lock wait timeout, duplicate key, record changed.
fn is_conflict(e: &dyn sqlx::error::DatabaseError) -> bool {
    e.try_downcast_ref::<MySqlDatabaseError>()
        .is_some_and(|m| matches!(m.number(), 1213 | 1205 | 1062 | 1020))
}

fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.try_downcast_ref::<MySqlDatabaseError>().is_some_and(|m| m.number() == 1062))
}

/// Converts a driver error (see [`sql::store_err`]).
pub(crate) fn db(e: sqlx::Error) -> Error {
    sql::store_err("mysql", e, is_conflict)
}

/// The MySQL/MariaDB implementation of [`Store`].
pub struct MySqlStore {
    pool: MySqlPool,
    /// Lock times from the database's clock (see
    /// [`StoreSettings::database_clock`]).
    database_clock: bool,
}

impl MySqlStore {
    /// Connects to `url` (`mysql://user:password@host:port/database`, or
    /// `mariadb://`; TLS via `ssl-mode` and `ssl-ca` parameters), applies
    /// pending migrations, and refuses a database whose schema is newer
    /// than this build knows.
    pub async fn open(url: &str, settings: &StoreSettings) -> Result<Self> {
        let url_mysql = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        let options: MySqlConnectOptions = url_mysql.parse().map_err(|e| {
            Error::invalid("db", format!("invalid MySQL URL {}: {e}", sql::redact(url)))
        })?;
        let timeout = settings.statement_timeout;
        // No ping before every use (sqlx already pings on release, which
        // closes connections that died); see `sql::in_tx!`.
        let pool = MySqlPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |c, _| {
                Box::pin(async move {
                    let version: String = sqlx::query_scalar("SELECT VERSION()")
                        .fetch_one(&mut *c)
                        .await?;
                    // MariaDB limits every statement; MySQL only SELECTs.
                    let limit = if version.contains("MariaDB") {
                        format!("max_statement_time = {}", timeout.as_secs_f64())
                    } else {
                        format!("max_execution_time = {}", timeout.as_millis())
                    };
                    let lock_wait = timeout.as_secs().clamp(1, 30);
                    c.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    c.execute(sqlx::AssertSqlSafe(format!(
                        "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', \
                         SESSION innodb_lock_wait_timeout = {lock_wait}, SESSION {limit}"
                    )))
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::retryable(format!(
                    "cannot connect to MySQL at {}: {e}",
                    sql::redact(url)
                ))
            })?;
        // sqlx takes a named lock while migrating, so servers starting
        // together migrate once; it refuses a database on which migrations
        // it does not know were applied.
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::fatal(format!("migrating MySQL: {e}")))?;
        Ok(Self {
            pool,
            database_clock: settings.database_clock,
        })
    }

    /// The number of schema migrations this build knows.
    pub fn schema_version() -> usize {
        MIGRATOR.iter().count()
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::MySql>> {
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

/// Reads one audit entry from a row of its history's query.
type AuditRow = fn(&sqlx::mysql::MySqlRow) -> Result<AuditEntry>;

/// Binds a query's parameters in order.
fn bind_args<'q>(
    mut q: sqlx::query::Query<'q, sqlx::MySql, <sqlx::MySql as sqlx::Database>::Arguments>,
    args: Vec<crate::audit::Arg>,
) -> sqlx::query::Query<'q, sqlx::MySql, <sqlx::MySql as sqlx::Database>::Arguments> {
    for a in args {
        q = match a {
            crate::audit::Arg::Int(i) => q.bind(i),
            crate::audit::Arg::Text(s) => q.bind(s),
        };
    }
    q
}

crate::sql::server_store!(MySqlStore, {
    fn backend(&self) -> &'static str {
        "mysql"
    }
    fn wakeups(&self) -> Wakeups {
        Wakeups::Poll(POLL_INTERVAL)
    }
    async fn claim(&self, req: ClaimRequest, now: Timestamp) -> Result<Option<Claimed>> {
        in_tx!(self.pool, db, |c| queue::claim(c, &req, now).await)
    }
    async fn complete(
        &self,
        id: ItemId,
        caller: &str,
        req: CompleteRequest,
        now: Timestamp,
    ) -> Result<Item> {
        self.mutate(id, now, |item, cfg| {
            rules::complete(item, caller, &req, cfg, now)
        })
        .await
    }
    async fn queue_stats(&self, now: Timestamp) -> Result<Vec<QueueStats>> {
        let mut conn = self.conn().await?;
        // Applies to the next transaction of this session only.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        let mut tx = conn
            .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(db)?;
        let stats = queue::stats(&mut tx, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(stats)
    }
    async fn lock_status(
        &self,
        resources: &[ResourceName],
        now: Timestamp,
    ) -> Result<Vec<ResourceStatus>> {
        let mut conn = self.conn().await?;
        // Applies to the next transaction of this session only.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        let mut tx = conn
            .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(db)?;
        let status = locks::status(&mut tx, resources, self.now(now)).await?;
        tx.commit().await.map_err(db)?;
        Ok(status)
    }
    async fn create_principal(&self, name: &str, role: Role, now: Timestamp) -> Result<Principal> {
        let done = sqlx::query("INSERT INTO principals (name, role, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(role.as_str())
            .bind(to_millis(now))
            .execute(&mut *self.conn().await?)
            .await
            .map_err(|e| {
                if is_duplicate(&e) {
                    Error::AlreadyExists(format!("a principal named {name} already exists"))
                } else {
                    db(e)
                }
            })?;
        Ok(Principal {
            id: i64::try_from(done.last_insert_id())
                .map_err(|e| StoreError::fatal(format!("principal id out of range: {e}")))?,
            name: name.to_owned(),
            role,
        })
    }
    async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        sqlx::query("SELECT id, name, role FROM principals WHERE name = ?")
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
             SELECT ?, id, ? FROM principals WHERE id = ?",
        )
        .bind(token_hash)
        .bind(to_millis(now))
        .bind(principal_id)
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
             WHERE t.hash = ?",
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
            "SELECT hash, created_at FROM tokens WHERE principal_id = ? ORDER BY created_at, hash",
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
                sqlx::query_scalar("SELECT hash FROM tokens WHERE principal_id = ? FOR UPDATE")
                    .bind(principal_id)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(db)?;
            let hashes = sql::matching_tokens(hashes, id)?;
            for h in &hashes {
                sqlx::query("DELETE FROM tokens WHERE hash = ?")
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
        let done = sqlx::query("UPDATE principals SET password_hash = ? WHERE name = ?")
            .bind(hash)
            .bind(name)
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
        sqlx::query("SELECT id, name, role, password_hash FROM principals WHERE name = ?")
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
             SELECT ?, ?, id, ?, ? FROM principals WHERE id = ?",
        )
        .bind(secret_hash)
        .bind(&session.id)
        .bind(to_millis(session.created_at))
        .bind(to_millis(session.expires_at))
        .bind(session.principal.id)
        .execute(&mut *self.conn().await?)
        .await
        .map_err(|e| {
            if is_duplicate(&e) {
                Error::AlreadyExists(format!("session {} exists", session.id))
            } else {
                db(e)
            }
        })?;
        if added.rows_affected() == 0 {
            return Err(Error::not_found("principal", session.principal.id));
        }
        Ok(())
    }
    async fn session_by_hash(&self, secret_hash: &[u8]) -> Result<Option<Session>> {
        sqlx::query(concat!(
            "SELECT ",
            sql::session_cols!(),
            " FROM sessions s JOIN principals p ON p.id = s.principal_id WHERE s.hash = ?"
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
                 WHERE s.hash = ? FOR UPDATE"
            ))
            .bind(secret_hash)
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?
            .as_ref()
            .map(sql::session)
            .transpose()?;
            if found.is_some() {
                sqlx::query("DELETE FROM sessions WHERE hash = ?")
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
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(to_millis(now))
            .execute(&mut *self.conn().await?)
            .await
            .map_err(db)?
            .rows_affected())
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        use crate::audit::{Dialect, item_query, lock_query, record_query};
        let mut c = self.conn().await?;
        let mut pages = Vec::with_capacity(3);
        for (q, read) in [
            (
                item_query(Dialect::MySql, filter),
                sql::audit_item as AuditRow,
            ),
            (
                lock_query(Dialect::MySql, filter),
                sql::audit_lock as AuditRow,
            ),
            (
                record_query(Dialect::MySql, filter),
                sql::audit_record as AuditRow,
            ),
        ] {
            let rows = bind_args(sqlx::query(AssertSqlSafe(q.sql)), q.args)
                .fetch_all(&mut *c)
                .await
                .map_err(db)?;
            pages.push(rows.iter().map(read).collect::<Result<Vec<_>>>()?);
        }
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
            "SELECT CAST((completed_at - ?) DIV ? AS SIGNED), CAST(COUNT(*) AS SIGNED) FROM done_items \
             WHERE queue = ? AND completed_at >= ? AND completed_at < ? GROUP BY 1",
        )
        .bind(to_millis(since))
        .bind(bucket_ms)
        .bind(queue.as_str())
        .bind(to_millis(since))
        .bind(to_millis(until))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(b, n)| (b, n.max(0) as u64))
            .collect())
    }
});
