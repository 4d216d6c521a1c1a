//! Work-queue operations in PostgreSQL's dialect. Each function runs inside
//! a transaction opened by the caller; the decisions are
//! [`baton_core::rules`]', this module only loads, locks and saves.
//!
//! Concurrency (READ COMMITTED, row locks):
//! - every row that is about to change is locked first (`FOR UPDATE`), so
//!   the rule runs on the row's latest committed version and no other
//!   transaction can change it until this one commits;
//! - claims and sweeps lock with `SKIP LOCKED`: a row another claimer or
//!   sweeper holds is simply not theirs to take, so many claimers in many
//!   processes never wait on each other nor take the same item;
//! - claims of one holder are serialised by a transaction-scoped advisory
//!   lock, which makes `max_leases_per_holder` and idempotency keys exact
//!   across processes (a batch takes all its holders' locks at once, in
//!   the order of the lock keys);
//! - claims and completions arriving together are served in batches, one
//!   transaction each ([`claim_batch`], [`complete_batch`]; see `batch.rs`):
//!   the same steps and rules as one request alone, each step one query
//!   for the whole batch (`= ANY($1)`, `unnest`), the rules applied in
//!   Rust request by request in order;
//! - a unique key taken by a concurrent insert (dedupe key, idempotency
//!   key) rolls the transaction back and runs it again, when it sees the
//!   winner's row.

use std::collections::{HashMap, HashSet};

use baton_core::clock::to_millis;
use baton_core::{
    ClaimRequest, Claimed, CompleteRequest, Error, FencingToken, Item, ItemEvent, ItemFilter,
    ItemId, ItemState, NewItem, QueueConfig, QueueName, QueueStats, Result, StoreError,
    SweepReport, Timestamp, rules,
};
use chrono::Duration;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::db;
use crate::sql::{self, add_count, event_cols, item_cols};
use crate::stats;

/// The channel on which committed work is announced to other processes.
pub(super) const CHANNEL: &str = "baton_work";

/// How many rows the completions of one queue are counted in.
const DONE_SHARDS: i16 = 8;

fn ms(t: Timestamp) -> i64 {
    to_millis(t)
}

fn items(rows: Vec<PgRow>) -> Result<Vec<Item>> {
    rows.iter().map(sql::item).collect()
}

/// Announces, at commit, that work may be claimable in `queue`.
async fn notify(c: &mut PgConnection, queue: &QueueName) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(queue.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(())
}

async fn ensure_queue(c: &mut PgConnection, queue: &QueueName, now: Timestamp) -> Result<()> {
    let config = serde_json::to_string(&QueueConfig::default())
        .map_err(|e| StoreError::fatal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO queues (name, config, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(queue.as_str())
    .bind(config)
    .bind(ms(now))
    .execute(&mut *c)
    .await
    .map_err(db)?;
    Ok(())
}

/// The queue's settings, or the defaults for an unknown queue.
pub(super) async fn config(c: &mut PgConnection, queue: &QueueName) -> Result<QueueConfig> {
    let json: Option<String> = sqlx::query_scalar("SELECT config FROM queues WHERE name = $1")
        .bind(queue.as_str())
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?;
    parse_config(queue, json)
}

/// A queue's settings from its stored JSON (the defaults when the queue
/// has no row).
fn parse_config(queue: &QueueName, json: Option<String>) -> Result<QueueConfig> {
    match json {
        None => Ok(QueueConfig::default()),
        Some(j) => serde_json::from_str(&j).map_err(|e| {
            StoreError::fatal(format!("queue {queue} has a corrupt config: {e}")).into()
        }),
    }
}

/// Applies `change` to the queue's settings with the queue's row locked
/// (created first if new), so concurrent changes never lose one another.
pub(super) async fn update_config(
    c: &mut PgConnection,
    queue: &QueueName,
    change: &baton_core::ConfigChange,
    now: Timestamp,
) -> Result<QueueConfig> {
    ensure_queue(c, queue, now).await?;
    let json: String = sqlx::query_scalar("SELECT config FROM queues WHERE name = $1 FOR UPDATE")
        .bind(queue.as_str())
        .fetch_one(&mut *c)
        .await
        .map_err(db)?;
    let current: QueueConfig = serde_json::from_str(&json)
        .map_err(|e| StoreError::fatal(format!("queue {queue} has a corrupt config: {e}")))?;
    let new = change(current)?;
    set_config(c, queue, &new, now).await?;
    Ok(new)
}

async fn set_config(
    c: &mut PgConnection,
    queue: &QueueName,
    config: &QueueConfig,
    now: Timestamp,
) -> Result<()> {
    let json = serde_json::to_string(config).map_err(|e| StoreError::fatal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO queues (name, config, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET config = excluded.config",
    )
    .bind(queue.as_str())
    .bind(json)
    .bind(ms(now))
    .execute(&mut *c)
    .await
    .map_err(db)?;
    Ok(())
}

/// A live item, locked until the transaction ends, with its queue's
/// settings (read in the same round trip).
async fn lock_live(c: &mut PgConnection, id: ItemId) -> Result<Option<(Item, QueueConfig)>> {
    let Some(row) = sqlx::query(concat!(
        "SELECT ",
        item_cols!(),
        ", (SELECT config FROM queues WHERE name = items.queue) AS queue_config \
         FROM items WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .map_err(db)?
    else {
        return Ok(None);
    };
    let item = sql::item(&row)?;
    let json: Option<String> = sqlx::Row::try_get(&row, "queue_config").map_err(db)?;
    let cfg = parse_config(&item.queue, json)?;
    Ok(Some((item, cfg)))
}

/// An item from the live or the done table.
pub(super) async fn load_any(c: &mut PgConnection, id: ItemId) -> Result<Option<Item>> {
    sqlx::query(concat!(
        "SELECT ",
        item_cols!(),
        " FROM items WHERE id = $1 UNION ALL SELECT ",
        item_cols!(),
        " FROM done_items WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await
    .map_err(db)?
    .as_ref()
    .map(sql::item)
    .transpose()
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds a live item's id and mutable columns as `$1` ..= `$17` (the
/// order of the `UPDATE` in [`save_with_event`]).
fn bind_item<'q>(q: PgQuery<'q>, item: &'q Item) -> PgQuery<'q> {
    let lease = item.lease.as_ref();
    let done = item.completion.as_ref();
    q.bind(item.id)
        .bind(item.queue.as_str())
        .bind(item.state.as_str())
        .bind(ms(item.available_at))
        .bind(item.dedupe_key.as_deref())
        .bind(i64::from(item.attempts))
        .bind(item.token.0)
        .bind(lease.map(|l| l.holder.as_str()))
        .bind(lease.map(|l| ms(l.claimed_at)))
        .bind(lease.map(|l| ms(l.expires_at)))
        .bind(item.released_by.as_deref())
        .bind(item.released_until.map(ms))
        .bind(ms(item.updated_at))
        .bind(done.map(|d| d.outcome.as_str()))
        .bind(done.and_then(|d| d.note.as_deref()))
        .bind(done.map(|d| d.by.as_str()))
        .bind(done.map(|d| ms(d.at)))
}

/// Binds an event's columns as the next 7 parameters (the order of
/// `item_events (item_id, at, kind, actor, token, queue, detail)`).
fn bind_event<'q>(q: PgQuery<'q>, ev: &'q ItemEvent) -> PgQuery<'q> {
    q.bind(ev.item_id)
        .bind(ms(ev.at))
        .bind(ev.kind.as_str())
        .bind(ev.actor.as_deref())
        .bind(ev.token.map(|t| t.0))
        .bind(ev.queue.as_str())
        .bind(ev.detail.to_string())
}

/// Writes back a live item and records its event, in one statement (one
/// round trip).
async fn save_with_event(c: &mut PgConnection, item: &Item, ev: &ItemEvent) -> Result<()> {
    let q = sqlx::query(
        "WITH saved AS (UPDATE items SET queue = $2, state = $3, available_at = $4, \
         dedupe_key = $5, attempts = $6, token = $7, holder = $8, claimed_at = $9, \
         lease_expires_at = $10, released_by = $11, released_until = $12, updated_at = $13, \
         outcome = $14, note = $15, completed_by = $16, completed_at = $17 WHERE id = $1) \
         INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         VALUES ($18, $19, $20, $21, $22, $23, $24)",
    );
    bind_event(bind_item(q, item), ev)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(())
}

/// Moves a completed item out of the live table with its new values,
/// counts it and records its event, in one statement (one round trip):
/// the row is deleted and inserted into `done_items` with the columns the
/// rule changed, the others (kind, payload, priority, created_at) copied
/// by the database.
async fn archive_with_event(c: &mut PgConnection, item: &Item, ev: &ItemEvent) -> Result<()> {
    let shard: i16 = rand::random_range(0..DONE_SHARDS);
    let q = sqlx::query(
        "WITH moved AS (DELETE FROM items WHERE id = $1 RETURNING id, kind, payload, priority, created_at), \
         archived AS (INSERT INTO done_items (id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, released_by, \
         released_until, created_at, updated_at, outcome, note, completed_by, completed_at) \
         SELECT id, $2, kind, payload, priority, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         created_at, $13, $14, $15, $16, $17 FROM moved RETURNING id), \
         counted AS (INSERT INTO queue_done_counts (queue, shard, n) \
         SELECT $2, $18, count(*) FROM archived HAVING count(*) > 0 \
         ON CONFLICT (queue, shard) DO UPDATE SET n = queue_done_counts.n + excluded.n) \
         INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         VALUES ($19, $20, $21, $22, $23, $24, $25)",
    );
    bind_event(bind_item(q, item).bind(shard), ev)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn enqueue(
    c: &mut PgConnection,
    new: &NewItem,
    actor: &str,
    now: Timestamp,
) -> Result<(Item, bool)> {
    ensure_queue(c, &new.queue, now).await?;
    if let Some(key) = &new.dedupe_key {
        let existing = sqlx::query(concat!(
            "SELECT ",
            item_cols!(),
            " FROM items WHERE queue = $1 AND dedupe_key = $2"
        ))
        .bind(new.queue.as_str())
        .bind(key)
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?;
        if let Some(row) = existing {
            return Ok((sql::item(&row)?, false));
        }
    }
    // A concurrent enqueue with the same dedupe key makes this insert fail
    // on the unique index once the other commits; the transaction then
    // runs again and finds that item above.
    let (mut item, mut ev) = rules::enqueue(new, actor, now);
    // The item and its event in one statement (one round trip).
    item.id = sqlx::query_scalar(
        "WITH inserted AS (INSERT INTO items (queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $8) RETURNING id), \
         logged AS (INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         SELECT id, $9, $10, $11, NULL, $1, $12 FROM inserted) \
         SELECT id FROM inserted",
    )
    .bind(item.queue.as_str())
    .bind(item.kind.as_str())
    .bind(item.payload.to_string())
    .bind(i64::from(item.priority))
    .bind(item.state.as_str())
    .bind(ms(item.available_at))
    .bind(item.dedupe_key.as_deref())
    .bind(ms(now))
    .bind(ms(ev.at))
    .bind(ev.kind.as_str())
    .bind(ev.actor.as_deref())
    .bind(ev.detail.to_string())
    .fetch_one(&mut *c)
    .await
    .map_err(db)?;
    ev.item_id = item.id;
    debug_assert_eq!((ev.token, &ev.queue), (None, &item.queue));
    if item.state == ItemState::Ready {
        notify(c, &item.queue).await?;
    }
    Ok((item, true))
}

/// Locks a live item, applies `rule` with the queue's settings, and saves
/// the item with the rule's event — or changes nothing if the rule refuses.
pub(super) async fn mutate(
    c: &mut PgConnection,
    id: ItemId,
    now: Timestamp,
    rule: impl FnOnce(&mut Item, &QueueConfig) -> Result<ItemEvent>,
) -> Result<Item> {
    let (mut item, cfg) = match lock_live(c, id).await? {
        Some(live) => live,
        // A done item: let the rule refuse it (stale token, wrong state).
        None => match load_any(c, id).await? {
            Some(item) => {
                let cfg = config(c, &item.queue).await?;
                (item, cfg)
            }
            None => return Err(Error::not_found("item", id)),
        },
    };
    let from = item.queue.clone();
    let ev = rule(&mut item, &cfg)?;
    if item.state == ItemState::Done {
        archive_with_event(c, &item, &ev).await?;
    } else {
        if item.queue != from {
            // Escalated: the target queue must exist, and the dedupe key
            // stays only if the target has no unfinished item with it.
            ensure_queue(c, &item.queue, now).await?;
            if let Some(key) = &item.dedupe_key {
                let taken: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM items WHERE queue = $1 AND dedupe_key = $2)",
                )
                .bind(item.queue.as_str())
                .bind(key)
                .fetch_one(&mut *c)
                .await
                .map_err(db)?;
                if taken {
                    item.dedupe_key = None;
                }
            }
        }
        save_with_event(c, &item, &ev).await?;
        if item.state == ItemState::Ready {
            notify(c, &item.queue).await?;
        }
    }
    Ok(item)
}

/// Makes due scheduled items of `queue` ready (all queues when `None`),
/// skipping rows another transaction holds. Returns how many per queue.
async fn promote_due(
    c: &mut PgConnection,
    queue: Option<&QueueName>,
    now: Timestamp,
) -> Result<Vec<(QueueName, u64)>> {
    let queues: Vec<String> = sqlx::query_scalar(
        "UPDATE items SET state = 'ready' WHERE id IN (\
            SELECT id FROM items WHERE state = 'scheduled' AND available_at <= $1 \
            AND ($2::text IS NULL OR queue = $2) FOR UPDATE SKIP LOCKED) \
         RETURNING queue",
    )
    .bind(ms(now))
    .bind(queue.map(|q| q.as_str()))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut counts = Vec::new();
    for q in queues {
        add_count(&mut counts, &QueueName::new(q)?, 1);
    }
    Ok(counts)
}

/// Expires overdue leases of `queue` (all queues when `None`) through
/// [`rules::expire`], skipping rows another transaction holds. Returns
/// (queue, whether it became ready rather than parked) per item.
async fn expire_due(
    c: &mut PgConnection,
    queue: Option<&QueueName>,
    now: Timestamp,
) -> Result<Vec<(QueueName, bool)>> {
    let due = items(
        sqlx::query(concat!("SELECT ", item_cols!(), " FROM items WHERE state = 'leased' AND lease_expires_at <= $1 AND ($2::text IS NULL OR queue = $2) ORDER BY queue, id FOR UPDATE SKIP LOCKED"))
        .bind(ms(now))
        .bind(queue.map(|q| q.as_str()))
        .fetch_all(&mut *c)
        .await
        .map_err(db)?,
    )?;
    let mut out = Vec::with_capacity(due.len());
    let mut cfg: Option<(QueueName, QueueConfig)> = None;
    for mut item in due {
        let qc = match &cfg {
            Some((q, qc)) if *q == item.queue => qc.clone(),
            _ => {
                let qc = config(c, &item.queue).await?;
                cfg = Some((item.queue.clone(), qc.clone()));
                qc
            }
        };
        if let Some(ev) = rules::expire(&mut item, &qc, now) {
            save_with_event(c, &item, &ev).await?;
            out.push((item.queue.clone(), item.state == ItemState::Ready));
        }
    }
    Ok(out)
}

pub(super) async fn sweep(
    c: &mut PgConnection,
    now: Timestamp,
    key_retention: Duration,
) -> Result<SweepReport> {
    let mut report = SweepReport {
        became_ready: promote_due(c, None, now).await?,
        ..SweepReport::default()
    };
    for (q, ready) in expire_due(c, None, now).await? {
        report.expired += 1;
        if ready {
            add_count(&mut report.became_ready, &q, 1);
        } else {
            report.parked += 1;
        }
    }
    for (q, _) in &report.became_ready {
        notify(c, q).await?;
    }
    sqlx::query("DELETE FROM claim_keys WHERE created_at < $1")
        .bind(ms(now - key_retention))
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(report)
}

pub(super) async fn history(c: &mut PgConnection, id: ItemId) -> Result<Vec<ItemEvent>> {
    let events = sqlx::query(concat!(
        "SELECT ",
        event_cols!(),
        " FROM item_events WHERE item_id = $1 ORDER BY id"
    ))
    .bind(id)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::event)
    .collect::<Result<Vec<_>>>()?;
    if events.is_empty() {
        return Err(Error::not_found("item", id));
    }
    Ok(events)
}

pub(super) async fn list(
    c: &mut PgConnection,
    queue: &QueueName,
    f: &ItemFilter,
) -> Result<Vec<Item>> {
    macro_rules! cond {
        () => {
            "queue = $1 AND id > $2 AND ($3::text IS NULL OR state = $3) \
             AND ($4::text IS NULL OR holder = $4 OR completed_by = $4)"
        };
    }
    let sql = match f.state {
        Some(ItemState::Done) => concat!(
            "SELECT ",
            item_cols!(),
            " FROM done_items WHERE ",
            cond!(),
            " ORDER BY id LIMIT $5"
        ),
        Some(_) => concat!(
            "SELECT ",
            item_cols!(),
            " FROM items WHERE ",
            cond!(),
            " ORDER BY id LIMIT $5"
        ),
        None => concat!(
            "SELECT * FROM (SELECT ",
            item_cols!(),
            " FROM items WHERE ",
            cond!(),
            " UNION ALL SELECT ",
            item_cols!(),
            " FROM done_items WHERE ",
            cond!(),
            ") AS page ORDER BY id LIMIT $5"
        ),
    };
    items(
        sqlx::query(sql)
            .bind(queue.as_str())
            .bind(f.after.unwrap_or(0))
            .bind(f.state.map(|s| s.as_str()))
            .bind(f.holder.as_deref())
            .bind(i64::from(f.limit))
            .fetch_all(&mut *c)
            .await
            .map_err(db)?,
    )
}

/// Counts per queue, read in one snapshot (the caller's transaction is
/// REPEATABLE READ) so that they agree with each other.
pub(super) async fn stats(c: &mut PgConnection, now: Timestamp) -> Result<Vec<QueueStats>> {
    let queues: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT q.name, q.config, \
         COALESCE((SELECT sum(n) FROM queue_done_counts d WHERE d.queue = q.name), 0)::BIGINT \
         FROM queues q ORDER BY q.name",
    )
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut out = Vec::with_capacity(queues.len());
    for (name, config, done) in queues {
        out.push(stats::queue_row(name, &config, done)?);
    }
    let groups: Vec<stats::StateGroup> = sqlx::query_as(
        "SELECT queue, state, count(*), min(created_at), \
         count(*) FILTER (WHERE (state = 'leased' AND lease_expires_at <= $1) \
             OR (state = 'scheduled' AND available_at <= $1)), \
         min(created_at) FILTER (WHERE (state = 'leased' AND lease_expires_at <= $1) \
             OR (state = 'scheduled' AND available_at <= $1)) \
         FROM items GROUP BY queue, state",
    )
    .bind(ms(now))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    for g in groups {
        stats::add_group(&mut out, g, now)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Batches (group commit; see `batch.rs`): many claims or completions in one
// transaction, with the same rules and the same answers as one at a time.

/// The mutable columns of many items (and the events they come with) as
/// parallel arrays, for one `unnest` statement.
#[derive(Default)]
struct ItemArrays {
    id: Vec<i64>,
    queue: Vec<String>,
    state: Vec<&'static str>,
    available_at: Vec<i64>,
    dedupe_key: Vec<Option<String>>,
    attempts: Vec<i64>,
    token: Vec<i64>,
    holder: Vec<Option<String>>,
    claimed_at: Vec<Option<i64>>,
    lease_expires_at: Vec<Option<i64>>,
    released_by: Vec<Option<String>>,
    released_until: Vec<Option<i64>>,
    updated_at: Vec<i64>,
    outcome: Vec<Option<String>>,
    note: Vec<Option<String>>,
    completed_by: Vec<Option<String>>,
    completed_at: Vec<Option<i64>>,
}

impl ItemArrays {
    fn push(&mut self, item: &Item) {
        let lease = item.lease.as_ref();
        let done = item.completion.as_ref();
        self.id.push(item.id);
        self.queue.push(item.queue.as_str().to_owned());
        self.state.push(item.state.as_str());
        self.available_at.push(ms(item.available_at));
        self.dedupe_key.push(item.dedupe_key.clone());
        self.attempts.push(i64::from(item.attempts));
        self.token.push(item.token.0);
        self.holder.push(lease.map(|l| l.holder.clone()));
        self.claimed_at.push(lease.map(|l| ms(l.claimed_at)));
        self.lease_expires_at.push(lease.map(|l| ms(l.expires_at)));
        self.released_by.push(item.released_by.clone());
        self.released_until.push(item.released_until.map(ms));
        self.updated_at.push(ms(item.updated_at));
        self.outcome.push(done.map(|d| d.outcome.clone()));
        self.note.push(done.and_then(|d| d.note.clone()));
        self.completed_by.push(done.map(|d| d.by.clone()));
        self.completed_at.push(done.map(|d| ms(d.at)));
    }

    /// Binds the arrays as the next 17 parameters (the order of
    /// [`items_unnest!`]).
    fn bind<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(&self.id)
            .bind(&self.queue)
            .bind(&self.state)
            .bind(&self.available_at)
            .bind(&self.dedupe_key)
            .bind(&self.attempts)
            .bind(&self.token)
            .bind(&self.holder)
            .bind(&self.claimed_at)
            .bind(&self.lease_expires_at)
            .bind(&self.released_by)
            .bind(&self.released_until)
            .bind(&self.updated_at)
            .bind(&self.outcome)
            .bind(&self.note)
            .bind(&self.completed_by)
            .bind(&self.completed_at)
    }
}

/// The rows [`ItemArrays::bind`] binds as `$1` ..= `$17`, named `u`.
macro_rules! items_unnest {
    () => {
        "u AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], \
         $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[], \
         $11::text[], $12::bigint[], $13::bigint[], $14::text[], $15::text[], $16::text[], \
         $17::bigint[]) AS u(id, queue, state, available_at, dedupe_key, attempts, token, \
         holder, claimed_at, lease_expires_at, released_by, released_until, updated_at, \
         outcome, note, completed_by, completed_at))"
    };
}

/// Events as parallel arrays.
#[derive(Default)]
struct EventArrays {
    item_id: Vec<i64>,
    at: Vec<i64>,
    kind: Vec<&'static str>,
    actor: Vec<Option<String>>,
    token: Vec<Option<i64>>,
    queue: Vec<String>,
    detail: Vec<String>,
}

impl EventArrays {
    fn push(&mut self, ev: &ItemEvent) {
        self.item_id.push(ev.item_id);
        self.at.push(ms(ev.at));
        self.kind.push(ev.kind.as_str());
        self.actor.push(ev.actor.clone());
        self.token.push(ev.token.map(|t| t.0));
        self.queue.push(ev.queue.as_str().to_owned());
        self.detail.push(ev.detail.to_string());
    }

    /// Binds the arrays as `$18` ..= `$24` (see [`events_insert!`]).
    fn bind<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(&self.item_id)
            .bind(&self.at)
            .bind(&self.kind)
            .bind(&self.actor)
            .bind(&self.token)
            .bind(&self.queue)
            .bind(&self.detail)
    }
}

/// Inserts the events [`EventArrays::bind`] binds as `$18` ..= `$24`, in
/// their order.
macro_rules! events_insert {
    () => {
        "INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         SELECT a, b, c, d, f, g, h FROM unnest($18::bigint[], $19::bigint[], $20::text[], \
         $21::text[], $22::bigint[], $23::text[], $24::text[]) WITH ORDINALITY AS e(a, b, c, d, f, g, h, n) \
         ORDER BY n"
    };
}

/// Items of the live or the done table, by id.
async fn load_many(c: &mut PgConnection, ids: &[i64]) -> Result<HashMap<ItemId, Item>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        item_cols!(),
        " FROM items WHERE id = ANY($1) UNION ALL SELECT ",
        item_cols!(),
        " FROM done_items WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in &rows {
        let item = sql::item(row)?;
        out.insert(item.id, item);
    }
    Ok(out)
}

/// One claim of a batch: the request and the engine's time it was made at.
pub(super) type ClaimJob = (ClaimRequest, Timestamp);

/// Serves claims of one queue with the same `kinds` in one transaction,
/// with the answers the steps of `Store::claim` would give them one after
/// the other, in order. The batch acts at the latest of their times (each
/// request was made no later, and is served after it).
///
/// Those steps, each once for the whole batch: every holder's
/// advisory lock (in the order of the lock keys, so batches never wait on
/// each other crosswise); the idempotency keys and the held leases of all
/// holders, one query each; lazy recovery; up to as many claimable items
/// as the batch can take, in claim order, with one `FOR UPDATE SKIP
/// LOCKED` query. [`rules::claimable`] and [`rules::claim`] then hand them
/// out request by request, and one statement writes every claimed item,
/// its event and the remembered keys. The outer error fails the whole
/// batch (and rolls it back); the inner ones are the requests' own.
pub(super) async fn claim_batch(
    c: &mut PgConnection,
    jobs: &[ClaimJob],
) -> Result<Vec<Result<Option<Claimed>>>> {
    let Some((first, _)) = jobs.first() else {
        return Ok(Vec::new());
    };
    let queue = &first.queue;
    debug_assert!(
        jobs.iter()
            .all(|(r, _)| r.queue == *queue && r.kinds == first.kinds)
    );
    let now = jobs.iter().map(|(_, t)| *t).max().unwrap_or(jobs[0].1);
    let mut holders: Vec<&str> = jobs.iter().map(|(r, _)| r.holder.as_str()).collect();
    holders.sort_unstable();
    holders.dedup();
    // 0. The holders' locks, in one order; then the queue's settings and
    // whether lazy recovery has anything to do (read in the same round
    // trip: neither is guarded by the holders' locks).
    let (_, json, recover): (i64, Option<String>, bool) = sqlx::query_as(
        "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(k) FROM \
            (SELECT DISTINCT hashtextextended('baton.claim:' || h, 0) AS k \
             FROM unnest($1::text[]) AS h ORDER BY k) AS ordered) \
         SELECT n.c, (SELECT config FROM queues WHERE name = $2), \
         EXISTS (SELECT 1 FROM items WHERE queue = $2 AND state = 'scheduled' \
                 AND available_at <= $3) \
         OR EXISTS (SELECT 1 FROM items WHERE queue = $2 AND state = 'leased' \
                 AND lease_expires_at <= $3) \
         FROM (SELECT count(*) AS c FROM locked) AS n",
    )
    .bind(&holders)
    .bind(queue.as_str())
    .bind(ms(now))
    .fetch_one(&mut *c)
    .await
    .map_err(db)?;
    let cfg = parse_config(queue, json)?;
    // 1. Keys claimed with before.
    let (key_holders, keys): (Vec<&str>, Vec<&str>) = jobs
        .iter()
        .filter_map(|(r, _)| Some((r.holder.as_str(), r.idempotency_key.as_deref()?)))
        .unzip();
    let mut prior: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let mut prior_items = HashMap::new();
    if !keys.is_empty() {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT k.holder, k.key, k.item_id, k.token FROM claim_keys k \
             JOIN unnest($1::text[], $2::text[]) AS u(holder, key) \
             ON k.holder = u.holder AND k.key = u.key",
        )
        .bind(&key_holders)
        .bind(&keys)
        .fetch_all(&mut *c)
        .await
        .map_err(db)?;
        for (h, k, id, token) in rows {
            prior.insert((h, k), (id, token));
        }
        if !prior.is_empty() {
            let ids: Vec<i64> = prior.values().map(|(id, _)| *id).collect();
            prior_items = load_many(c, &ids).await?;
        }
    }
    // 2. The live leases each holder already has in this queue, oldest first.
    let mut held: HashMap<String, Vec<Item>> = HashMap::new();
    for item in items(
        sqlx::query(concat!("SELECT ", item_cols!(), " FROM items WHERE queue = $1 AND state = 'leased' AND holder = ANY($2) AND lease_expires_at > $3 ORDER BY claimed_at, id"))
        .bind(queue.as_str())
        .bind(&holders)
        .bind(ms(now))
        .fetch_all(&mut *c)
        .await
        .map_err(db)?,
    )? {
        if let Some(l) = &item.lease {
            held.entry(l.holder.clone()).or_default().push(item);
        }
    }
    // How many items the batch may take at most: per holder, its requests
    // not answered by a key (a key sent twice counting once), up to what
    // it may still hold.
    let max = cfg.max_leases_per_holder as usize;
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    let mut new_keys: HashSet<(&str, &str)> = HashSet::new();
    for (r, _) in jobs {
        let counts = match &r.idempotency_key {
            Some(k) => {
                !prior.contains_key(&(r.holder.clone(), k.clone()))
                    && new_keys.insert((r.holder.as_str(), k.as_str()))
            }
            None => true,
        };
        if counts {
            *wanted.entry(r.holder.as_str()).or_default() += 1;
        }
    }
    let limit: usize = wanted
        .iter()
        .map(|(h, n)| (*n).min(max.saturating_sub(held.get(*h).map_or(0, Vec::len))))
        .sum();
    // 3. Lazy recovery, once, if any request gets this far (one answered
    // by its key or its held leases changes nothing else) and there is
    // something to recover.
    if limit > 0 && recover {
        let promoted = promote_due(c, Some(queue), now).await?;
        let expired = expire_due(c, Some(queue), now).await?;
        if !promoted.is_empty() || expired.iter().any(|(_, ready)| *ready) {
            notify(c, queue).await?;
        }
    }
    // 4. Candidates: claimable by at least one holder of the batch.
    let kinds: Vec<&str> = first.kinds.iter().map(|k| k.as_str()).collect();
    let candidates = if limit == 0 {
        Vec::new()
    } else {
        items(sqlx::query(concat!("SELECT ", item_cols!(), " FROM items WHERE queue = $1 AND state = 'ready' AND available_at <= $2 AND (released_by IS NULL OR released_until <= $2 OR released_by <> ANY($3)) AND (cardinality($4::text[]) = 0 OR kind = ANY($4)) ORDER BY priority DESC, id LIMIT $5 FOR UPDATE SKIP LOCKED"))
        .bind(queue.as_str())
        .bind(ms(now))
        .bind(&holders)
        .bind(&kinds)
        .bind(limit as i64)
        .fetch_all(&mut *c)
        .await
        .map_err(db)?)?
    };
    // More may be claimable than were fetched (when some were skipped as
    // cooling down for the holder that was to take them).
    let exhausted = candidates.len() < limit;
    let candidate_ids: Vec<i64> = candidates.iter().map(|i| i.id).collect();
    let mut taken = vec![false; candidates.len()];
    // 5. The rules, request by request, in order.
    let mut answers = Vec::with_capacity(jobs.len());
    let mut given: HashMap<(String, String), Claimed> = HashMap::new();
    let mut saved = ItemArrays::default();
    let mut events = EventArrays::default();
    let (mut key_h, mut key_k, mut key_id, mut key_t) = (vec![], vec![], vec![], vec![]);
    let mut extra_ids: Vec<i64> = Vec::new();
    for (req, _) in jobs {
        let key = req
            .idempotency_key
            .as_ref()
            .map(|k| (req.holder.clone(), k.clone()));
        // A retried claim: the same answer as the first time.
        if let Some(k) = &key {
            if let Some(claimed) = given.get(k) {
                answers.push(Ok(Some(claimed.clone())));
                continue;
            }
            if let Some((id, token)) = prior.get(k) {
                answers.push(
                    prior_items
                        .get(id)
                        .ok_or_else(|| Error::not_found("item", id))
                        .and_then(|item| {
                            let lease =
                                rules::check_lease(item, &req.holder, FencingToken(*token), now)?
                                    .clone();
                            Ok(Some(Claimed {
                                item: item.clone(),
                                lease,
                            }))
                        }),
                );
                continue;
            }
        }
        let mine = held.entry(req.holder.clone()).or_default();
        let claimed = if mine.len() >= max
            && let Some(item) = mine.first()
            && let Some(lease) = item.lease.clone()
        {
            Claimed {
                item: item.clone(),
                lease,
            }
        } else {
            let pick = (0..candidates.len())
                .find(|&i| !taken[i] && rules::claimable(&candidates[i], req, now));
            let mut item = match pick {
                Some(i) => {
                    taken[i] = true;
                    candidates[i].clone()
                }
                None if exhausted => {
                    answers.push(Ok(None));
                    continue;
                }
                // Every fetched candidate is cooling down for this holder
                // or taken: look further, as `claim` would.
                None => {
                    let mut skip = candidate_ids.clone();
                    skip.extend_from_slice(&extra_ids);
                    let next = sqlx::query(concat!("SELECT ", item_cols!(), " FROM items WHERE queue = $1 AND state = 'ready' AND available_at <= $2 AND (released_by IS NULL OR released_by <> $3 OR released_until <= $2) AND (cardinality($4::text[]) = 0 OR kind = ANY($4)) AND id <> ALL($5) ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"))
                    .bind(queue.as_str())
                    .bind(ms(now))
                    .bind(&req.holder)
                    .bind(&kinds)
                    .bind(&skip)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(db)?;
                    match next {
                        Some(row) => {
                            let item = sql::item(&row)?;
                            extra_ids.push(item.id);
                            item
                        }
                        None => {
                            answers.push(Ok(None));
                            continue;
                        }
                    }
                }
            };
            debug_assert!(rules::claimable(&item, req, now));
            let ev = match rules::claim(&mut item, req, now) {
                Ok(ev) => ev,
                Err(e) => {
                    answers.push(Err(e));
                    continue;
                }
            };
            let Some(lease) = item.lease.clone() else {
                return Err(StoreError::fatal("claimed item without lease").into());
            };
            saved.push(&item);
            events.push(&ev);
            mine.push(item.clone());
            Claimed { item, lease }
        };
        if let Some(k) = key {
            key_h.push(req.holder.clone());
            key_k.push(k.1.clone());
            key_id.push(claimed.item.id);
            key_t.push(claimed.item.token.0);
            given.insert(k, claimed.clone());
        }
        answers.push(Ok(Some(claimed)));
    }
    // 6. Every claimed item, its event and the keys, in one statement.
    if !saved.id.is_empty() || !key_h.is_empty() {
        let q = sqlx::query(concat!(
            "WITH ",
            items_unnest!(),
            ", saved AS (UPDATE items i SET queue = u.queue, state = u.state, \
             available_at = u.available_at, dedupe_key = u.dedupe_key, attempts = u.attempts, \
             token = u.token, holder = u.holder, claimed_at = u.claimed_at, \
             lease_expires_at = u.lease_expires_at, released_by = u.released_by, \
             released_until = u.released_until, updated_at = u.updated_at, outcome = u.outcome, \
             note = u.note, completed_by = u.completed_by, completed_at = u.completed_at \
             FROM u WHERE i.id = u.id), \
             keys AS (INSERT INTO claim_keys (holder, key, item_id, token, created_at) \
             SELECT h, k, i, t, $29 FROM unnest($25::text[], $26::text[], $27::bigint[], \
             $28::bigint[]) AS kk(h, k, i, t)) ",
            events_insert!()
        ));
        events
            .bind(saved.bind(q))
            .bind(&key_h)
            .bind(&key_k)
            .bind(&key_id)
            .bind(&key_t)
            .bind(ms(now))
            .execute(&mut *c)
            .await
            .map_err(db)?;
    }
    Ok(answers)
}

/// One completion of a batch.
pub(super) struct CompleteJob {
    /// The item.
    pub id: ItemId,
    /// Who completes it.
    pub caller: String,
    /// The request (never an escalation: those go one at a time).
    pub req: CompleteRequest,
    /// The engine's time it was made at.
    pub now: Timestamp,
}

/// Serves completions (without escalation) in one transaction, with the
/// answers [`mutate`] with [`rules::complete`] would give them one after
/// the other, in order: the live items are locked with one query (in id
/// order), the rule runs per request on the item as the requests before
/// left it (a refused one gets its error and changes nothing), and one
/// statement archives every completed item with its event. Items that
/// are not live (done, unknown) go through [`mutate`] itself.
pub(super) async fn complete_batch(
    c: &mut PgConnection,
    jobs: &[CompleteJob],
) -> Result<Vec<Result<Item>>> {
    let mut ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(concat!(
        "SELECT ",
        item_cols!(),
        ", (SELECT config FROM queues WHERE name = items.queue) AS queue_config \
         FROM items WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(&ids)
    .fetch_all(&mut *c)
    .await
    .map_err(db)?;
    // Each live item as the requests so far left it, its settings, and
    // the events they added.
    let mut live: HashMap<ItemId, (Item, QueueConfig, Vec<ItemEvent>)> = HashMap::new();
    for row in &rows {
        let item = sql::item(row)?;
        let json: Option<String> = sqlx::Row::try_get(row, "queue_config").map_err(db)?;
        let cfg = parse_config(&item.queue, json)?;
        live.insert(item.id, (item, cfg, Vec::new()));
    }
    let mut answers = Vec::with_capacity(jobs.len());
    for j in jobs {
        let rule = |item: &mut Item, cfg: &QueueConfig| {
            rules::complete(item, &j.caller, &j.req, cfg, j.now)
        };
        let Some((item, cfg, evs)) = live.get_mut(&j.id) else {
            match mutate(c, j.id, j.now, rule).await {
                // The database's failure is the batch's.
                Err(e @ Error::Store(_)) => return Err(e),
                r => answers.push(r),
            }
            continue;
        };
        let mut next = item.clone();
        match rule(&mut next, cfg) {
            Ok(ev) => {
                *item = next.clone();
                evs.push(ev);
                answers.push(Ok(next));
            }
            Err(e) => answers.push(Err(e)),
        }
    }
    let mut archived = ItemArrays::default();
    let mut events = EventArrays::default();
    for id in ids {
        let Some((item, _, evs)) = live.get(&id) else {
            continue;
        };
        if evs.is_empty() {
            continue;
        }
        if item.state == ItemState::Done {
            archived.push(item);
            for ev in evs {
                events.push(ev);
            }
        } else {
            // Not without escalation, which is not batched; kept general.
            for ev in evs {
                save_with_event(c, item, ev).await?;
            }
            if item.state == ItemState::Ready {
                notify(c, &item.queue).await?;
            }
        }
    }
    if !archived.id.is_empty() {
        let shard: i16 = rand::random_range(0..DONE_SHARDS);
        let q = sqlx::query(concat!(
            "WITH ",
            items_unnest!(),
            ", moved AS (DELETE FROM items i USING u WHERE i.id = u.id \
             RETURNING i.id, i.kind, i.payload, i.priority, i.created_at), \
             archived AS (INSERT INTO done_items (id, queue, kind, payload, priority, state, \
             available_at, dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, \
             released_by, released_until, created_at, updated_at, outcome, note, completed_by, \
             completed_at) \
             SELECT m.id, u.queue, m.kind, m.payload, m.priority, u.state, u.available_at, \
             u.dedupe_key, u.attempts, u.token, u.holder, u.claimed_at, u.lease_expires_at, \
             u.released_by, u.released_until, m.created_at, u.updated_at, u.outcome, u.note, \
             u.completed_by, u.completed_at FROM moved m JOIN u ON u.id = m.id RETURNING queue), \
             counted AS (INSERT INTO queue_done_counts (queue, shard, n) \
             SELECT queue, $25, count(*) FROM archived GROUP BY queue ORDER BY queue \
             ON CONFLICT (queue, shard) DO UPDATE SET n = queue_done_counts.n + excluded.n) ",
            events_insert!()
        ));
        events
            .bind(archived.bind(q))
            .bind(shard)
            .execute(&mut *c)
            .await
            .map_err(db)?;
    }
    Ok(answers)
}
