//! The audit trail's queries, for every backend: one query per history
//! (`item_events`, `lock_events`, `record_versions`), each newest first,
//! after the filter's cursor, at most `limit` rows; the caller merges
//! them with [`baton_core::audit::newest_first`]. And the rows' mapping
//! to [`AuditEntry`], from plain column values.
//!
//! Each query can use an index: by time (`*_at`), by item
//! (`item_events_item`), by resource (`lock_events_resource`), by record
//! (the primary key of `record_versions`), by actor for record versions
//! (`record_versions_actor`); see `0005_audit.sql` and `0006_audit_upkeep.sql`.
//! A subject that is a queue name, or an actor, scans `item_events` and
//! `lock_events` by time, keeping the matching rows: no index on the hot
//! tables for them, as every claim, complete and lock operation would
//! pay for its upkeep.

use baton_core::audit::{AuditArea, AuditCursor, AuditEntry, AuditFilter, SameInstant};
use baton_core::clock::{from_millis, to_millis};
use baton_core::{Result, StoreError};
use serde_json::{Value, json};

/// A parameter of a query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// Placeholder style and small dialect differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// A query's text and its parameters, in order.
#[derive(Debug)]
pub(crate) struct Query {
    pub(crate) sql: String,
    pub(crate) args: Vec<Arg>,
}

struct Builder {
    dialect: Dialect,
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Builder {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            conds: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Adds a parameter; returns its placeholder.
    fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        match self.dialect {
            Dialect::Postgres => format!("${}", self.args.len()),
            _ => "?".to_owned(),
        }
    }

    fn text(&mut self, s: &str) -> String {
        self.arg(Arg::Text(s.to_owned()))
    }

    fn int(&mut self, i: i64) -> String {
        self.arg(Arg::Int(i))
    }

    /// The conditions every history shares: actor and time range.
    fn common(&mut self, f: &AuditFilter) {
        if let Some(actor) = &f.actor {
            let p = self.text(actor);
            self.conds.push(format!("actor = {p}"));
        }
        if let Some(since) = f.since {
            let p = self.int(to_millis(since));
            self.conds.push(format!("at >= {p}"));
        }
        if let Some(until) = f.until {
            let p = self.int(to_millis(until));
            self.conds.push(format!("at < {p}"));
        }
    }

    /// The cursor condition of items and locks (ordered by `at, id`).
    fn cursor_by_id(&mut self, area: AuditArea, c: &AuditCursor) {
        let at = to_millis(c.at);
        let cond = match c.at_same_instant(area) {
            SameInstant::All => format!("at <= {}", self.int(at)),
            SameInstant::None => format!("at < {}", self.int(at)),
            // A range on `at` the index serves in order, and a filter on
            // the rows of the cursor's instant (an OR of ranges would make
            // the database merge two index scans and sort).
            SameInstant::Below => {
                let (a1, a2, s) = (self.int(at), self.int(at), self.int(c.seq));
                format!("at <= {a1} AND (at < {a2} OR id < {s})")
            }
        };
        self.conds.push(cond);
    }

    fn finish(self, select: &str, order: &str, limit: u32) -> Query {
        let mut sql = select.to_owned();
        if !self.conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.conds.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
        Query {
            sql,
            args: self.args,
        }
    }
}

/// The query of `item_events`, selecting `id, item_id, at, kind, actor,
/// token, queue, detail` ([`item_entry`] reads them).
pub(crate) fn item_query(dialect: Dialect, f: &AuditFilter) -> Query {
    let mut b = Builder::new(dialect);
    b.common(f);
    if let Some(subject) = &f.subject {
        let q = b.text(subject);
        match f.item_subject() {
            Some(id) => {
                let i = b.int(id);
                b.conds.push(format!("(queue = {q} OR item_id = {i})"));
            }
            None => b.conds.push(format!("queue = {q}")),
        }
    }
    if let Some(c) = &f.before {
        b.cursor_by_id(AuditArea::Item, c);
    }
    b.finish(
        "SELECT id, item_id, at, kind, actor, token, queue, detail FROM item_events",
        "at DESC, id DESC",
        f.limit,
    )
}

/// The query of `lock_events`, selecting `id, resource, lock_id, at,
/// kind, actor, holder, mode, token, detail` ([`lock_entry`] reads them).
pub(crate) fn lock_query(dialect: Dialect, f: &AuditFilter) -> Query {
    let mut b = Builder::new(dialect);
    b.common(f);
    if let Some(subject) = &f.subject {
        let r = b.text(subject);
        b.conds.push(match dialect {
            Dialect::MySql => format!("resource_hash = UNHEX(SHA2({r}, 256))"),
            _ => format!("resource = {r}"),
        });
    }
    if let Some(c) = &f.before {
        b.cursor_by_id(AuditArea::Lock, c);
    }
    b.finish(
        "SELECT id, resource, lock_id, at, kind, actor, holder, mode, token, detail FROM lock_events",
        "at DESC, id DESC",
        f.limit,
    )
}

/// The query of `record_versions`, selecting `collection, record_key,
/// version, kind, actor, at, base_version, merged_base, merged_current,
/// deleted, changes` ([`record_entry`] reads them).
pub(crate) fn record_query(dialect: Dialect, f: &AuditFilter) -> Query {
    let mut b = Builder::new(dialect);
    b.common(f);
    if let Some((collection, key)) = f.record_subject() {
        let c = b.text(collection);
        b.conds.push(format!("collection = {c}"));
        if let Some(key) = key {
            let k = b.text(key);
            b.conds.push(format!("record_key = {k}"));
        }
    }
    if let Some(cur) = &f.before {
        let at = to_millis(cur.at);
        let cond = match cur.at_same_instant(AuditArea::Record) {
            SameInstant::All => format!("at <= {}", b.int(at)),
            SameInstant::None => format!("at < {}", b.int(at)),
            SameInstant::Below => {
                let (coll, key) = cur.record();
                let (a1, a2) = (b.int(at), b.int(at));
                let (c1, c2) = (b.text(coll), b.text(coll));
                let (k1, k2) = (b.text(key), b.text(key));
                let v = b.int(cur.seq);
                format!(
                    "at <= {a1} AND (at < {a2} OR collection < {c1} OR (collection = {c2} AND \
                     (record_key < {k1} OR (record_key = {k2} AND version < {v}))))"
                )
            }
        };
        b.conds.push(cond);
    }
    b.finish(
        "SELECT collection, record_key, version, kind, actor, at, base_version, merged_base, \
         merged_current, deleted, changes FROM record_versions",
        "at DESC, collection DESC, record_key DESC, version DESC",
        f.limit,
    )
}

fn parse(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::fatal(format!("corrupt {what} in the database: {e}")).into())
}

/// An item event as an entry.
#[allow(clippy::too_many_arguments)]
pub(crate) fn item_entry(
    id: i64,
    item_id: i64,
    at: i64,
    kind: String,
    actor: Option<String>,
    token: Option<i64>,
    queue: String,
    detail: &str,
) -> Result<AuditEntry> {
    Ok(AuditEntry {
        at: from_millis(at),
        actor,
        area: AuditArea::Item,
        subject: item_id.to_string(),
        action: kind,
        detail: json!({"queue": queue, "token": token, "detail": parse("item event", detail)?}),
        cursor: AuditCursor {
            at: from_millis(at),
            area: AuditArea::Item,
            seq: id,
            key: String::new(),
        },
    })
}

/// A lock event as an entry.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lock_entry(
    id: i64,
    resource: String,
    lock: i64,
    at: i64,
    kind: String,
    actor: Option<String>,
    holder: String,
    mode: String,
    token: i64,
    detail: &str,
) -> Result<AuditEntry> {
    Ok(AuditEntry {
        at: from_millis(at),
        actor,
        area: AuditArea::Lock,
        subject: resource,
        action: kind,
        detail: json!({
            "lock": lock,
            "holder": holder,
            "mode": mode,
            "token": token,
            "detail": parse("lock event", detail)?,
        }),
        cursor: AuditCursor {
            at: from_millis(at),
            area: AuditArea::Lock,
            seq: id,
            key: String::new(),
        },
    })
}

/// A record version as an entry (without the version's data).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_entry(
    collection: String,
    key: String,
    version: i64,
    kind: String,
    actor: String,
    at: i64,
    base_version: Option<i64>,
    merged: (Option<i64>, Option<i64>),
    deleted: bool,
    changes: &str,
) -> Result<AuditEntry> {
    let merged_from = match merged {
        (Some(base), Some(current)) => json!({"base": base, "current": current}),
        _ => Value::Null,
    };
    let subject = format!("{collection}/{key}");
    Ok(AuditEntry {
        at: from_millis(at),
        actor: Some(actor),
        area: AuditArea::Record,
        action: kind,
        detail: json!({
            "version": version,
            "base_version": base_version,
            "merged_from": merged_from,
            "deleted": deleted,
            "changes": parse("record changes", changes)?,
        }),
        cursor: AuditCursor {
            at: from_millis(at),
            area: AuditArea::Record,
            seq: version,
            key: subject.clone(),
        },
        subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_dialect_and_the_cursor_shapes_the_condition() {
        let f = AuditFilter {
            actor: Some("alice".into()),
            subject: Some("42".into()),
            limit: 10,
            before: Some("1000.lock.7".parse().unwrap()),
            ..Default::default()
        };
        let q = item_query(Dialect::Postgres, &f);
        assert_eq!(
            q.sql,
            "SELECT id, item_id, at, kind, actor, token, queue, detail FROM item_events \
             WHERE actor = $1 AND (queue = $2 OR item_id = $3) AND at <= $4 \
             ORDER BY at DESC, id DESC LIMIT 10"
        );
        assert_eq!(
            q.args,
            vec![
                Arg::Text("alice".into()),
                Arg::Text("42".into()),
                Arg::Int(42),
                Arg::Int(1000)
            ]
        );
        let q = lock_query(Dialect::MySql, &f);
        assert!(
            q.sql
                .contains("resource_hash = UNHEX(SHA2(?, 256)) AND at <= ? AND (at < ? OR id < ?)"),
            "{}",
            q.sql
        );
        let q = record_query(Dialect::Sqlite, &f);
        assert!(q.sql.contains("collection = ? AND at < ?"), "{}", q.sql);
    }
}
