//! Bench-only bulk loading: fills a queue with many ready and finished
//! items straight in the database, one `INSERT … SELECT` per table, so
//! that `baton bench queue --ready 1000000 --done 5000000` can measure
//! claims against a large queue without enqueueing six million items over
//! HTTP first.
//!
//! Never used by the server. The rows are those the server itself writes
//! (see `sqlite/queue.rs`, `postgres/queue.rs`): a ready item as
//! `enqueue` inserts it, with its `enqueued` event; a finished item as a
//! completion leaves it in `done_items` (state `done`, outcome `accepted`,
//! one attempt, token 1, lease cleared), counted in the queue's done
//! count. Finished items get no history events (a claim never reads
//! them). Ids continue the live table's sequence, so the server's next
//! item gets a fresh id. SQLite and PostgreSQL only.

use baton_core::{Error, QueueConfig, Result, StoreError};
use chrono::Utc;
use serde_json::json;

/// How many items to load.
#[derive(Debug, Clone, Copy)]
pub struct Prefill {
    /// Ready items (live table, claimable now, priority 0).
    pub ready: u64,
    /// Finished items (`done_items`).
    pub done: u64,
}

fn fatal(e: impl std::fmt::Display) -> Error {
    StoreError::fatal(format!("bench prefill: {e}")).into()
}

/// Applies the migrations of the database at `url`, then loads `what`
/// into `queue` (which must have no live items yet). For a bench's own
/// temporary database, before its server starts.
pub async fn prefill_queue(url: &str, queue: &str, what: Prefill) -> Result<()> {
    baton_core::QueueName::new(queue)?;
    // Migrations, then let go of the store: the load uses its own
    // connection, and the server opens the database afterwards.
    drop(crate::open(url).await?);
    let now = Utc::now();
    let at = now.timestamp_millis();
    let config = serde_json::to_string(&QueueConfig::default()).map_err(fatal)?;
    let detail = json!({"kind": "task", "priority": 0, "available_at": now}).to_string();
    let params = Params {
        queue: queue.to_owned(),
        at,
        config,
        detail,
        what,
    };
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.to_owned();
        return tokio::task::spawn_blocking(move || sqlite(&path, &params))
            .await
            .map_err(fatal)?;
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return postgres(url, &params).await;
    }
    Err(Error::invalid(
        "db",
        "the bench prefill supports SQLite and PostgreSQL",
    ))
}

struct Params {
    queue: String,
    at: i64,
    config: String,
    detail: String,
    what: Prefill,
}

fn count(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(fatal)
}

fn sqlite(path: &str, p: &Params) -> Result<()> {
    let mut c = rusqlite::Connection::open(path).map_err(fatal)?;
    c.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(fatal)?;
    // A large page cache: the indexes are built in memory, then written.
    c.pragma_update(None, "cache_size", -512_000i64)
        .map_err(fatal)?;
    let tx = c.transaction().map_err(fatal)?;
    let live: i64 = tx
        .query_row(
            "SELECT count(*) FROM items WHERE queue = ?1",
            [&p.queue],
            |r| r.get(0),
        )
        .map_err(fatal)?;
    if live > 0 {
        return Err(Error::invalid(
            "queue",
            "the bench prefill needs an empty queue",
        ));
    }
    tx.execute(
        "INSERT INTO queues (name, config, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        rusqlite::params![p.queue, p.config, p.at],
    )
    .map_err(fatal)?;
    // The first free id: after every id the live table ever handed out
    // (AUTOINCREMENT remembers them in sqlite_sequence) and every done one.
    let start: i64 = tx
        .query_row(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'items'), 0), \
             COALESCE((SELECT max(id) FROM done_items), 0)) + 1",
            [],
            |r| r.get(0),
        )
        .map_err(fatal)?;
    let (done, ready) = (count(p.what.done)?, count(p.what.ready)?);
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2) \
         INSERT INTO done_items (id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, released_by, \
         released_until, created_at, updated_at, outcome, note, completed_by, completed_at) \
         SELECT ?1 + i, ?3, 'task', '{\"n\":' || i || '}', 0, 'done', ?4, NULL, 1, 1, NULL, \
         NULL, NULL, NULL, NULL, ?4, ?4, 'accepted', NULL, 'bench-prefill', ?4 \
         FROM n WHERE ?2 > 0",
        rusqlite::params![start, done, p.queue, p.at],
    )
    .map_err(fatal)?;
    tx.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2) \
         INSERT INTO items (id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, created_at, updated_at) \
         SELECT ?1 + i, ?3, 'task', '{\"n\":' || (?5 + i) || '}', 0, 'ready', ?4, NULL, 0, 0, ?4, ?4 \
         FROM n WHERE ?2 > 0",
        rusqlite::params![start + done, ready, p.queue, p.at, done],
    )
    .map_err(fatal)?;
    tx.execute(
        "INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         SELECT id, ?3, 'enqueued', 'bench-prefill', NULL, queue, ?4 FROM items \
         WHERE queue = ?1 AND id >= ?2 ORDER BY id",
        rusqlite::params![p.queue, start + done, p.at, p.detail],
    )
    .map_err(fatal)?;
    tx.execute(
        "UPDATE queues SET done_count = done_count + ?2 WHERE name = ?1",
        rusqlite::params![p.queue, done],
    )
    .map_err(fatal)?;
    // The live table's next id comes after the done ones too, also when
    // no ready item was loaded.
    let last = start + done + ready - 1;
    if tx
        .execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'items'",
            [last],
        )
        .map_err(fatal)?
        == 0
    {
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('items', ?1)",
            [last],
        )
        .map_err(fatal)?;
    }
    // No ANALYZE: the server never runs it, so the planner sees what it
    // sees in production.
    tx.commit().map_err(fatal)?;
    // Copy the load from the write-ahead log into the database now, not
    // during the measurement (the server's first checkpoint would).
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(fatal)?;
    Ok(())
}

async fn postgres(url: &str, p: &Params) -> Result<()> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.map_err(fatal)?;
    let (done, ready) = (count(p.what.done)?, count(p.what.ready)?);
    let mut tx = c.begin().await.map_err(fatal)?;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE queue = $1")
        .bind(&p.queue)
        .fetch_one(&mut *tx)
        .await
        .map_err(fatal)?;
    if live > 0 {
        return Err(Error::invalid(
            "queue",
            "the bench prefill needs an empty queue",
        ));
    }
    sqlx::query(
        "INSERT INTO queues (name, config, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(&p.queue)
    .bind(&p.config)
    .bind(p.at)
    .execute(&mut *tx)
    .await
    .map_err(fatal)?;
    // Reserve the ids from the live table's sequence, as many inserts
    // would have.
    let start: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('items', 'id'))")
        .fetch_one(&mut *tx)
        .await
        .map_err(fatal)?;
    sqlx::query("SELECT setval(pg_get_serial_sequence('items', 'id'), $1)")
        .bind(start + done + ready)
        .execute(&mut *tx)
        .await
        .map_err(fatal)?;
    sqlx::query(
        "INSERT INTO done_items (id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, released_by, \
         released_until, created_at, updated_at, outcome, note, completed_by, completed_at) \
         SELECT $1 + i, $3, 'task', '{\"n\":' || i || '}', 0, 'done', $4, NULL, 1, 1, NULL, \
         NULL, NULL, NULL, NULL, $4, $4, 'accepted', NULL, 'bench-prefill', $4 \
         FROM generate_series(0, $2 - 1) AS i",
    )
    .bind(start)
    .bind(done)
    .bind(&p.queue)
    .bind(p.at)
    .execute(&mut *tx)
    .await
    .map_err(fatal)?;
    sqlx::query(
        "INSERT INTO items (id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, created_at, updated_at) \
         SELECT $1 + i, $3, 'task', '{\"n\":' || ($5 + i) || '}', 0, 'ready', $4, NULL, 0, 0, $4, $4 \
         FROM generate_series(0, $2 - 1) AS i",
    )
    .bind(start + done)
    .bind(ready)
    .bind(&p.queue)
    .bind(p.at)
    .bind(done)
    .execute(&mut *tx)
    .await
    .map_err(fatal)?;
    sqlx::query(
        "INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         SELECT id, $3, 'enqueued', 'bench-prefill', NULL, queue, $4 FROM items \
         WHERE queue = $1 AND id >= $2 ORDER BY id",
    )
    .bind(&p.queue)
    .bind(start + done)
    .bind(p.at)
    .bind(&p.detail)
    .execute(&mut *tx)
    .await
    .map_err(fatal)?;
    sqlx::query(
        "INSERT INTO queue_done_counts (queue, shard, n) VALUES ($1, 0, $2) \
         ON CONFLICT (queue, shard) DO UPDATE SET n = queue_done_counts.n + excluded.n",
    )
    .bind(&p.queue)
    .bind(done)
    .execute(&mut *tx)
    .await
    .map_err(fatal)?;
    tx.commit().await.map_err(fatal)?;
    // What autovacuum would soon do: the planner sees the new sizes.
    sqlx::query("VACUUM ANALYZE items, done_items, item_events")
        .execute(&mut c)
        .await
        .map_err(fatal)?;
    Ok(())
}
