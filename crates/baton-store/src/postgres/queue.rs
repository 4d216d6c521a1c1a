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
//!   across processes;
//! - a unique key taken by a concurrent insert (dedupe key, idempotency
//!   key) rolls the transaction back and runs it again, when it sees the
//!   winner's row.

use baton_core::clock::to_millis;
use baton_core::{
    ClaimRequest, Claimed, Error, FencingToken, Item, ItemEvent, ItemFilter, ItemId, ItemState,
    NewItem, QueueConfig, QueueName, QueueStats, Result, StoreError, SweepReport, Timestamp, rules,
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

pub(super) async fn claim(
    c: &mut PgConnection,
    req: &ClaimRequest,
    now: Timestamp,
) -> Result<Option<Claimed>> {
    // One claim of a holder at a time, in every process: the checks of
    // steps 1 and 2 then stay true until this transaction commits. The
    // queue's settings come in the same round trip (the holder's lock
    // does not guard them; a change racing this claim may or may not
    // apply to it either way).
    let json: Option<String> = sqlx::query_scalar(
        "SELECT (SELECT config FROM queues WHERE name = $2) \
         FROM pg_advisory_xact_lock(hashtextextended('baton.claim:' || $1, 0))",
    )
    .bind(&req.holder)
    .bind(req.queue.as_str())
    .fetch_one(&mut *c)
    .await
    .map_err(db)?;
    let cfg = parse_config(&req.queue, json)?;
    // 1. A retried claim: the same answer as the first time.
    if let Some(key) = &req.idempotency_key {
        let prior: Option<(i64, i64)> =
            sqlx::query_as("SELECT item_id, token FROM claim_keys WHERE holder = $1 AND key = $2")
                .bind(&req.holder)
                .bind(key)
                .fetch_optional(&mut *c)
                .await
                .map_err(db)?;
        if let Some((id, token)) = prior {
            let item = load_any(c, id)
                .await?
                .ok_or_else(|| Error::not_found("item", id))?;
            let lease = rules::check_lease(&item, &req.holder, FencingToken(token), now)?.clone();
            return Ok(Some(Claimed { item, lease }));
        }
    }
    // 2. Already holding as many live leases as allowed: return the oldest.
    let held = items(
        sqlx::query(concat!("SELECT ", item_cols!(), " FROM items WHERE queue = $1 AND state = 'leased' AND holder = $2 AND lease_expires_at > $3 ORDER BY claimed_at, id"))
        .bind(req.queue.as_str())
        .bind(&req.holder)
        .bind(ms(now))
        .fetch_all(&mut *c)
        .await
        .map_err(db)?,
    )?;
    if held.len() >= cfg.max_leases_per_holder as usize
        && let Some(item) = held.into_iter().next()
        && let Some(lease) = item.lease.clone()
    {
        remember_key(c, req, &item, now).await?;
        return Ok(Some(Claimed { item, lease }));
    }
    // 3. Lazy recovery: due scheduled items and overdue leases of this queue.
    let promoted = promote_due(c, Some(&req.queue), now).await?;
    let expired = expire_due(c, Some(&req.queue), now).await?;
    if !promoted.is_empty() || expired.iter().any(|(_, ready)| *ready) {
        // More may have become claimable than this claim takes: tell the
        // claimers waiting in other processes.
        notify(c, &req.queue).await?;
    }
    // 4. The next claimable item; rows other claimers hold are skipped.
    let kinds: Vec<&str> = req.kinds.iter().map(|k| k.as_str()).collect();
    let next = sqlx::query(concat!("SELECT ", item_cols!(), " FROM items WHERE queue = $1 AND state = 'ready' AND available_at <= $2 AND (released_by IS NULL OR released_by <> $3 OR released_until <= $2) AND (cardinality($4::text[]) = 0 OR kind = ANY($4)) ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"))
    .bind(req.queue.as_str())
    .bind(ms(now))
    .bind(&req.holder)
    .bind(&kinds)
    .fetch_optional(&mut *c)
    .await
    .map_err(db)?;
    let Some(row) = next else {
        return Ok(None);
    };
    let mut item = sql::item(&row)?;
    debug_assert!(rules::claimable(&item, req, now));
    let ev = rules::claim(&mut item, req, now)?;
    save_with_event(c, &item, &ev).await?;
    remember_key(c, req, &item, now).await?;
    let lease = item
        .lease
        .clone()
        .ok_or_else(|| StoreError::fatal("claimed item without lease"))?;
    Ok(Some(Claimed { item, lease }))
}

async fn remember_key(
    c: &mut PgConnection,
    req: &ClaimRequest,
    item: &Item,
    now: Timestamp,
) -> Result<()> {
    if let Some(key) = &req.idempotency_key {
        sqlx::query(
            "INSERT INTO claim_keys (holder, key, item_id, token, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&req.holder)
        .bind(key)
        .bind(item.id)
        .bind(item.token.0)
        .bind(ms(now))
        .execute(&mut *c)
        .await
        .map_err(db)?;
    }
    Ok(())
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
