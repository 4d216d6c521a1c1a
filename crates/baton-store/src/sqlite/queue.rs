//! Work-queue operations in SQLite's dialect. Each function runs inside the
//! writer's savepoint (or on a reader) and is atomic with it; the decisions
//! are [`baton_core::rules`]', this module only loads and saves.

use baton_core::{
    ClaimRequest, Claimed, Error, FencingToken, Item, ItemEvent, ItemFilter, ItemId, ItemState,
    NewItem, QueueConfig, QueueName, QueueStats, Result, StoreError, SweepReport, Timestamp, rules,
};
use chrono::Duration;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::rows::{self, EVENT_COLS, ITEM_COLS, ms, store_err};
use crate::stats;

/// `?`-friendly conversion of rusqlite results.
pub(super) trait Db<T> {
    fn db(self) -> Result<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T> {
        self.map_err(|e| Error::Store(store_err(e)))
    }
}

fn ensure_queue(c: &Connection, queue: &QueueName, now: Timestamp) -> Result<()> {
    let config = serde_json::to_string(&QueueConfig::default())
        .map_err(|e| StoreError::fatal(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO queues (name, config, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )
    .db()?
    .execute(params![queue.as_str(), config, ms(now)])
    .db()?;
    Ok(())
}

/// The queue's settings, or the defaults for an unknown queue.
pub(super) fn config(c: &Connection, queue: &QueueName) -> Result<QueueConfig> {
    let json: Option<String> = c
        .prepare_cached("SELECT config FROM queues WHERE name = ?1")
        .db()?
        .query_row([queue.as_str()], |r| r.get(0))
        .optional()
        .db()?;
    match json {
        None => Ok(QueueConfig::default()),
        Some(j) => serde_json::from_str(&j).map_err(|e| {
            StoreError::fatal(format!("queue {queue} has a corrupt config: {e}")).into()
        }),
    }
}

/// Applies `change` to the queue's settings (inside the writer's
/// savepoint, so no other write interleaves) and saves the result.
pub(super) fn update_config(
    c: &Connection,
    queue: &QueueName,
    change: &baton_core::ConfigChange,
) -> Result<QueueConfig> {
    let new = change(config(c, queue)?)?;
    set_config(c, queue, &new)?;
    Ok(new)
}

fn set_config(c: &Connection, queue: &QueueName, config: &QueueConfig) -> Result<()> {
    let json = serde_json::to_string(config).map_err(|e| StoreError::fatal(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO queues (name, config, created_at) VALUES (?1, ?2, strftime('%s','now') * 1000) \
         ON CONFLICT (name) DO UPDATE SET config = excluded.config",
    )
    .db()?
    .execute(params![queue.as_str(), json])
    .db()?;
    Ok(())
}

fn insert_event(c: &Connection, ev: &ItemEvent) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO item_events (item_id, at, kind, actor, token, queue, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![
        ev.item_id,
        ms(ev.at),
        ev.kind.as_str(),
        ev.actor,
        ev.token.map(|t| t.0),
        ev.queue.as_str(),
        ev.detail.to_string(),
    ])
    .db()?;
    Ok(())
}

fn load_live(c: &Connection, id: ItemId) -> Result<Option<Item>> {
    c.prepare_cached(&format!("SELECT {ITEM_COLS} FROM items WHERE id = ?1"))
        .db()?
        .query_row([id], rows::item)
        .optional()
        .db()
}

/// An item from the live or the done table.
pub(super) fn load_any(c: &Connection, id: ItemId) -> Result<Option<Item>> {
    if let Some(item) = load_live(c, id)? {
        return Ok(Some(item));
    }
    c.prepare_cached(&format!("SELECT {ITEM_COLS} FROM done_items WHERE id = ?1"))
        .db()?
        .query_row([id], rows::item)
        .optional()
        .db()
}

/// Writes back the mutable columns of a live item.
fn save(c: &Connection, item: &Item) -> Result<()> {
    let lease = item.lease.as_ref();
    c.prepare_cached(
        "UPDATE items SET queue = ?2, state = ?3, available_at = ?4, dedupe_key = ?5, \
         attempts = ?6, token = ?7, holder = ?8, claimed_at = ?9, lease_expires_at = ?10, \
         released_by = ?11, released_until = ?12, updated_at = ?13 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        item.id,
        item.queue.as_str(),
        item.state.as_str(),
        ms(item.available_at),
        item.dedupe_key,
        item.attempts,
        item.token.0,
        lease.map(|l| l.holder.as_str()),
        lease.map(|l| ms(l.claimed_at)),
        lease.map(|l| ms(l.expires_at)),
        item.released_by,
        item.released_until.map(ms),
        ms(item.updated_at),
    ])
    .db()?;
    Ok(())
}

/// Moves a completed item out of the live table.
fn archive(c: &Connection, item: &Item) -> Result<()> {
    let done = item
        .completion
        .as_ref()
        .ok_or_else(|| StoreError::fatal("archiving an item without completion"))?;
    let lease = item.lease.as_ref();
    // One statement copies the row with its new values (the payload is
    // copied by SQLite, not re-serialised), one deletes it.
    c.prepare_cached(
        "INSERT INTO done_items (id, queue, kind, payload, priority, state, available_at, \
         dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, released_by, \
         released_until, created_at, updated_at, outcome, note, completed_by, completed_at) \
         SELECT id, ?2, kind, payload, priority, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
         created_at, ?13, ?14, ?15, ?16, ?17 FROM items WHERE id = ?1",
    )
    .db()?
    .execute(params![
        item.id,
        item.queue.as_str(),
        item.state.as_str(),
        ms(item.available_at),
        item.dedupe_key,
        item.attempts,
        item.token.0,
        lease.map(|l| l.holder.as_str()),
        lease.map(|l| ms(l.claimed_at)),
        lease.map(|l| ms(l.expires_at)),
        item.released_by,
        item.released_until.map(ms),
        ms(item.updated_at),
        done.outcome,
        done.note,
        done.by,
        ms(done.at),
    ])
    .db()?;
    c.prepare_cached("DELETE FROM items WHERE id = ?1")
        .db()?
        .execute([item.id])
        .db()?;
    c.prepare_cached("UPDATE queues SET done_count = done_count + 1 WHERE name = ?1")
        .db()?
        .execute([item.queue.as_str()])
        .db()?;
    Ok(())
}

pub(super) fn enqueue(
    c: &Connection,
    new: &NewItem,
    actor: &str,
    now: Timestamp,
) -> Result<(Item, bool)> {
    ensure_queue(c, &new.queue, now)?;
    if let Some(key) = &new.dedupe_key {
        let existing = c
            .prepare_cached(&format!(
                "SELECT {ITEM_COLS} FROM items WHERE queue = ?1 AND dedupe_key = ?2"
            ))
            .db()?
            .query_row([new.queue.as_str(), key.as_str()], rows::item)
            .optional()
            .db()?;
        if let Some(item) = existing {
            return Ok((item, false));
        }
    }
    let (mut item, mut ev) = rules::enqueue(new, actor, now);
    item.id = c
        .prepare_cached(
            "INSERT INTO items (queue, kind, payload, priority, state, available_at, dedupe_key, \
             attempts, token, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8, ?8) RETURNING id",
        )
        .db()?
        .query_row(
            params![
                item.queue.as_str(),
                item.kind.as_str(),
                item.payload.to_string(),
                item.priority,
                item.state.as_str(),
                ms(item.available_at),
                item.dedupe_key,
                ms(now),
            ],
            |r| r.get(0),
        )
        .db()?;
    ev.item_id = item.id;
    insert_event(c, &ev)?;
    Ok((item, true))
}

/// Loads a live item, applies `rule` with the queue's settings, and saves
/// the item with the rule's event — or changes nothing if the rule refuses.
pub(super) fn mutate(
    c: &Connection,
    id: ItemId,
    now: Timestamp,
    rule: impl FnOnce(&mut Item, &QueueConfig) -> Result<ItemEvent>,
) -> Result<Item> {
    let mut item = match load_live(c, id)? {
        Some(item) => item,
        // A done item: let the rule refuse it (stale token, wrong state).
        None => match load_any(c, id)? {
            Some(item) => item,
            None => return Err(Error::not_found("item", id)),
        },
    };
    let cfg = config(c, &item.queue)?;
    let from = item.queue.clone();
    let ev = rule(&mut item, &cfg)?;
    if item.state == ItemState::Done {
        archive(c, &item)?;
    } else {
        if item.queue != from {
            // Escalated: the target queue must exist, and the dedupe key
            // stays only if the target has no unfinished item with it.
            ensure_queue(c, &item.queue, now)?;
            if let Some(key) = &item.dedupe_key {
                let taken: bool = c
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM items WHERE queue = ?1 AND dedupe_key = ?2)",
                    )
                    .db()?
                    .query_row([item.queue.as_str(), key.as_str()], |r| r.get(0))
                    .db()?;
                if taken {
                    item.dedupe_key = None;
                }
            }
        }
        save(c, &item)?;
    }
    insert_event(c, &ev)?;
    Ok(item)
}

/// Makes due scheduled items of `queue` ready (all queues when `None`);
/// the SQL form of [`rules::promote`]. Returns how many per queue.
fn promote_due(
    c: &Connection,
    queue: Option<&QueueName>,
    now: Timestamp,
) -> Result<Vec<(QueueName, u64)>> {
    let mut counts = Vec::new();
    // A claim's lazy recovery mostly finds nothing due: ask one index
    // first, as an UPDATE with no row to change still opens a write
    // cursor on the table and every one of its indexes.
    if let Some(q) = queue {
        let due: bool = c
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM items WHERE queue = ?1 AND state = 'scheduled' \
                 AND available_at <= ?2)",
            )
            .db()?
            .query_row(params![q.as_str(), ms(now)], |r| r.get(0))
            .db()?;
        if !due {
            return Ok(counts);
        }
    }
    let sql = match queue {
        Some(_) => {
            "UPDATE items SET state = 'ready' WHERE queue = ?2 AND state = 'scheduled' \
             AND available_at <= ?1 RETURNING queue"
        }
        None => {
            "UPDATE items SET state = 'ready' WHERE state = 'scheduled' AND available_at <= ?1 RETURNING queue"
        }
    };
    let mut stmt = c.prepare_cached(sql).db()?;
    let mut rows = match queue {
        Some(q) => stmt.query(params![ms(now), q.as_str()]),
        None => stmt.query(params![ms(now)]),
    }
    .db()?;
    while let Some(row) = rows.next().db()? {
        let q: String = row.get(0).db()?;
        let q = QueueName::new(q)?;
        match counts.iter_mut().find(|(name, _)| *name == q) {
            Some((_, n)) => *n += 1,
            None => counts.push((q, 1)),
        }
    }
    Ok(counts)
}

/// Expires overdue leases of `queue` (all queues when `None`) through
/// [`rules::expire`]. Returns (queue, became ready, parked) per item.
fn expire_due(
    c: &Connection,
    queue: Option<&QueueName>,
    now: Timestamp,
) -> Result<Vec<(QueueName, bool)>> {
    let due: Vec<Item> = match queue {
        Some(q) => c
            .prepare_cached(&format!(
                "SELECT {ITEM_COLS} FROM items WHERE queue = ?1 AND state = 'leased' AND lease_expires_at <= ?2"
            ))
            .db()?
            .query_map(params![q.as_str(), ms(now)], rows::item)
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()?,
        None => c
            .prepare_cached(&format!(
                "SELECT {ITEM_COLS} FROM items WHERE state = 'leased' AND lease_expires_at <= ?1"
            ))
            .db()?
            .query_map(params![ms(now)], rows::item)
            .db()?
            .collect::<rusqlite::Result<_>>()
            .db()?,
    };
    let mut out = Vec::with_capacity(due.len());
    let mut cfg: Option<(QueueName, QueueConfig)> = None;
    for mut item in due {
        if cfg.as_ref().is_none_or(|(q, _)| *q != item.queue) {
            cfg = Some((item.queue.clone(), config(c, &item.queue)?));
        }
        let Some((_, qc)) = cfg.as_ref() else {
            continue;
        };
        if let Some(ev) = rules::expire(&mut item, qc, now) {
            save(c, &item)?;
            insert_event(c, &ev)?;
            out.push((item.queue.clone(), item.state == ItemState::Ready));
        }
    }
    Ok(out)
}

pub(super) fn claim(c: &Connection, req: &ClaimRequest, now: Timestamp) -> Result<Option<Claimed>> {
    // 1. A retried claim: the same answer as the first time.
    if let Some(key) = &req.idempotency_key {
        let prior: Option<(ItemId, i64)> = c
            .prepare_cached("SELECT item_id, token FROM claim_keys WHERE holder = ?1 AND key = ?2")
            .db()?
            .query_row([req.holder.as_str(), key.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .db()?;
        if let Some((id, token)) = prior {
            let item = load_any(c, id)?.ok_or_else(|| Error::not_found("item", id))?;
            let lease = rules::check_lease(&item, &req.holder, FencingToken(token), now)?.clone();
            return Ok(Some(Claimed { item, lease }));
        }
    }
    // 2. Already holding as many live leases as allowed: return the oldest.
    // (By the holder's index: the planner would otherwise take
    // `items_leased` and read every leased item of the queue.)
    let cfg = config(c, &req.queue)?;
    let held: Vec<Item> = c
        .prepare_cached(&format!(
            "SELECT {ITEM_COLS} FROM items INDEXED BY items_holder WHERE queue = ?1 \
             AND state = 'leased' AND holder = ?2 AND lease_expires_at > ?3 ORDER BY claimed_at, id"
        ))
        .db()?
        .query_map(params![req.queue.as_str(), req.holder, ms(now)], rows::item)
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    if held.len() >= cfg.max_leases_per_holder as usize
        && let Some(item) = held.into_iter().next()
        && let Some(lease) = item.lease.clone()
    {
        remember_key(c, req, &item, now)?;
        return Ok(Some(Claimed { item, lease }));
    }
    // 3. Lazy recovery: due scheduled items and overdue leases of this queue.
    promote_due(c, Some(&req.queue), now)?;
    expire_due(c, Some(&req.queue), now)?;
    // 4. The next claimable item, by the ready index.
    let mut sql = format!(
        "SELECT {ITEM_COLS} FROM items WHERE queue = ?1 AND state = 'ready' AND available_at <= ?2 \
         AND (released_by IS NULL OR released_by <> ?3 OR released_until <= ?2)"
    );
    let mut args: Vec<SqlValue> = vec![
        req.queue.as_str().to_owned().into(),
        ms(now).into(),
        req.holder.clone().into(),
    ];
    if !req.kinds.is_empty() {
        let marks: Vec<String> = (0..req.kinds.len())
            .map(|i| format!("?{}", i + 4))
            .collect();
        sql.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
        args.extend(
            req.kinds
                .iter()
                .map(|k| SqlValue::from(k.as_str().to_owned())),
        );
    }
    sql.push_str(" ORDER BY priority DESC, id LIMIT 1");
    let next = c
        .prepare_cached(&sql)
        .db()?
        .query_row(params_from_iter(args), rows::item)
        .optional()
        .db()?;
    let Some(mut item) = next else {
        return Ok(None);
    };
    debug_assert!(rules::claimable(&item, req, now));
    let ev = rules::claim(&mut item, req, now)?;
    save(c, &item)?;
    insert_event(c, &ev)?;
    remember_key(c, req, &item, now)?;
    let lease = item
        .lease
        .clone()
        .ok_or_else(|| StoreError::fatal("claimed item without lease"))?;
    Ok(Some(Claimed { item, lease }))
}

fn remember_key(c: &Connection, req: &ClaimRequest, item: &Item, now: Timestamp) -> Result<()> {
    if let Some(key) = &req.idempotency_key {
        c.prepare_cached(
            "INSERT INTO claim_keys (holder, key, item_id, token, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .db()?
        .execute(params![req.holder, key, item.id, item.token.0, ms(now)])
        .db()?;
    }
    Ok(())
}

pub(super) fn sweep(
    c: &Connection,
    now: Timestamp,
    key_retention: Duration,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut add = |q: QueueName, n: u64| match report.became_ready.iter_mut().find(|(x, _)| *x == q)
    {
        Some((_, m)) => *m += n,
        None => report.became_ready.push((q, n)),
    };
    for (q, n) in promote_due(c, None, now)? {
        add(q, n);
    }
    let expired = expire_due(c, None, now)?;
    for (q, ready) in expired {
        if ready {
            add(q, 1);
            report.expired += 1;
        } else {
            report.expired += 1;
            report.parked += 1;
        }
    }
    c.prepare_cached("DELETE FROM claim_keys WHERE created_at < ?1")
        .db()?
        .execute([ms(now - key_retention)])
        .db()?;
    Ok(report)
}

pub(super) fn history(c: &Connection, id: ItemId) -> Result<Vec<ItemEvent>> {
    let events: Vec<ItemEvent> = c
        .prepare_cached(&format!(
            "SELECT {EVENT_COLS} FROM item_events WHERE item_id = ?1 ORDER BY id"
        ))
        .db()?
        .query_map([id], rows::event)
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    if events.is_empty() {
        return Err(Error::not_found("item", id));
    }
    Ok(events)
}

pub(super) fn list(c: &Connection, queue: &QueueName, f: &ItemFilter) -> Result<Vec<Item>> {
    let after = f.after.unwrap_or(0);
    let mut args: Vec<SqlValue> = vec![queue.as_str().to_owned().into(), after.into()];
    let mut cond = String::from("queue = ?1 AND id > ?2");
    if let Some(state) = f.state {
        args.push(state.as_str().to_owned().into());
        cond.push_str(&format!(" AND state = ?{}", args.len()));
    }
    if let Some(holder) = &f.holder {
        args.push(holder.clone().into());
        cond.push_str(&format!(
            " AND (holder = ?{n} OR completed_by = ?{n})",
            n = args.len()
        ));
    }
    args.push(i64::from(f.limit).into());
    let limit = args.len();
    let sql = match f.state {
        Some(ItemState::Done) => {
            format!("SELECT {ITEM_COLS} FROM done_items WHERE {cond} ORDER BY id LIMIT ?{limit}")
        }
        Some(_) => format!("SELECT {ITEM_COLS} FROM items WHERE {cond} ORDER BY id LIMIT ?{limit}"),
        None => format!(
            "SELECT * FROM (SELECT {ITEM_COLS} FROM items WHERE {cond} \
             UNION ALL SELECT {ITEM_COLS} FROM done_items WHERE {cond}) ORDER BY id LIMIT ?{limit}"
        ),
    };
    c.prepare_cached(&sql)
        .db()?
        .query_map(params_from_iter(args), rows::item)
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()
}

pub(super) fn stats(c: &Connection, now: Timestamp) -> Result<Vec<QueueStats>> {
    // One read transaction, so the counts agree with each other.
    c.execute_batch("BEGIN").db()?;
    let r = stats_in_tx(c, now);
    let _ = c.execute_batch("COMMIT");
    r
}

fn stats_in_tx(c: &Connection, now: Timestamp) -> Result<Vec<QueueStats>> {
    let mut out: Vec<QueueStats> = Vec::new();
    {
        let mut stmt = c
            .prepare_cached("SELECT name, config, done_count FROM queues ORDER BY name")
            .db()?;
        let mut rows = stmt.query([]).db()?;
        while let Some(r) = rows.next().db()? {
            let config: String = r.get(1).db()?;
            out.push(stats::queue_row(r.get(0).db()?, &config, r.get(2).db()?)?);
        }
    }
    let mut stmt = c
        .prepare_cached(
            "SELECT queue, state, count(*), min(created_at), \
             coalesce(sum((state = 'leased' AND lease_expires_at <= ?1) \
                 OR (state = 'scheduled' AND available_at <= ?1)), 0), \
             min(CASE WHEN (state = 'leased' AND lease_expires_at <= ?1) \
                 OR (state = 'scheduled' AND available_at <= ?1) THEN created_at END) \
             FROM items GROUP BY queue, state",
        )
        .db()?;
    let mut rows = stmt.query([ms(now)]).db()?;
    while let Some(r) = rows.next().db()? {
        let group: stats::StateGroup = (
            r.get(0).db()?,
            r.get(1).db()?,
            r.get(2).db()?,
            r.get(3).db()?,
            r.get(4).db()?,
            r.get(5).db()?,
        );
        stats::add_group(&mut out, group, now)?;
    }
    Ok(out)
}
