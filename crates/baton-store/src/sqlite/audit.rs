//! The audit trail and completion counts in SQLite (queries in
//! [`crate::audit`]).

use baton_core::audit::{AuditEntry, AuditFilter, newest_first};
use baton_core::clock::to_millis;
use baton_core::{QueueName, Result, Timestamp};
use rusqlite::Connection;
use rusqlite::types::Value;

use super::queue::Db;
use crate::audit::{self, Arg, Dialect, Query};

fn args(q: &Query) -> Vec<Value> {
    q.args
        .iter()
        .map(|a| match a {
            Arg::Int(i) => Value::Integer(*i),
            Arg::Text(s) => Value::Text(s.clone()),
        })
        .collect()
}

fn rows<T>(
    c: &Connection,
    q: &Query,
    map: impl Fn(&rusqlite::Row) -> rusqlite::Result<Result<T>>,
) -> Result<Vec<T>> {
    let mut stmt = c.prepare_cached(&q.sql).db()?;
    let mut out = Vec::new();
    let mut rows = stmt.query(rusqlite::params_from_iter(args(q))).db()?;
    while let Some(r) = rows.next().db()? {
        out.push(map(r).db()??);
    }
    Ok(out)
}

pub(super) fn audit(c: &Connection, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    // One read transaction: the three histories as of one moment.
    c.execute_batch("BEGIN").db()?;
    let r = audit_in_tx(c, f);
    let _ = c.execute_batch("COMMIT");
    r
}

fn audit_in_tx(c: &Connection, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let items = rows(c, &audit::item_query(Dialect::Sqlite, f), |r| {
        Ok(audit::item_entry(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            &r.get::<_, String>(7)?,
        ))
    })?;
    let locks = rows(c, &audit::lock_query(Dialect::Sqlite, f), |r| {
        Ok(audit::lock_entry(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            &r.get::<_, String>(9)?,
        ))
    })?;
    let records = rows(c, &audit::record_query(Dialect::Sqlite, f), |r| {
        Ok(audit::record_entry(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            (r.get(7)?, r.get(8)?),
            r.get(9)?,
            &r.get::<_, String>(10)?,
        ))
    })?;
    Ok(newest_first(vec![items, locks, records], f.limit))
}

pub(super) fn completion_counts(
    c: &Connection,
    queue: &QueueName,
    since: Timestamp,
    until: Timestamp,
    bucket_ms: i64,
) -> Result<Vec<(i64, u64)>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT (completed_at - ?2) / ?4, count(*) FROM done_items \
             WHERE queue = ?1 AND completed_at >= ?2 AND completed_at < ?3 GROUP BY 1",
        )
        .db()?;
    let mut rows = stmt
        .query(rusqlite::params![
            queue.as_str(),
            to_millis(since),
            to_millis(until),
            bucket_ms
        ])
        .db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push((r.get(0).db()?, r.get::<_, i64>(1).db()?.max(0) as u64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::audit::AuditFilter;

    /// The plan SQLite chooses for a query, one line per step.
    fn plan(c: &Connection, q: &Query) -> String {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql)).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args(q)), |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
    }

    /// Every audit query, filtered by time, actor or subject or not at
    /// all, reads an index in the trail's order: no full scan, no sort.
    #[tokio::test]
    async fn audit_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(
            super::super::SqliteStore::open(path.to_str().unwrap())
                .await
                .unwrap(),
        );
        let c = Connection::open(&path).unwrap();
        let t = baton_core::clock::from_millis(1_700_000_000_000);
        let filters = [
            AuditFilter {
                limit: 10,
                ..Default::default()
            },
            AuditFilter {
                actor: Some("alice".into()),
                limit: 10,
                ..Default::default()
            },
            AuditFilter {
                since: Some(t),
                limit: 10,
                before: Some("1700000000001.lock.5".parse().unwrap()),
                ..Default::default()
            },
        ];
        for f in &filters {
            for (q, index) in [
                (audit::item_query(Dialect::Sqlite, f), "item_events_"),
                (audit::lock_query(Dialect::Sqlite, f), "lock_events_"),
                (audit::record_query(Dialect::Sqlite, f), "record_versions_"),
            ] {
                let p = plan(&c, &q);
                assert!(
                    p.contains(&format!("USING INDEX {index}")),
                    "{f:?}\n{}\n{p}",
                    q.sql
                );
                assert!(!p.contains("TEMP B-TREE"), "sorts: {f:?}\n{}\n{p}", q.sql);
            }
        }
        let subject = AuditFilter {
            subject: Some("clients/bob".into()),
            limit: 10,
            ..Default::default()
        };
        let p = plan(&c, &audit::lock_query(Dialect::Sqlite, &subject));
        assert!(p.contains("lock_events_resource"), "{p}");
        let p = plan(&c, &audit::record_query(Dialect::Sqlite, &subject));
        assert!(
            p.contains("USING INDEX") || p.contains("PRIMARY KEY"),
            "{p}"
        );
        let q = QueueName::new("desk").unwrap();
        let mut stmt = c
            .prepare(
                "EXPLAIN QUERY PLAN SELECT (completed_at - ?2) / ?4, count(*) FROM done_items \
                 WHERE queue = ?1 AND completed_at >= ?2 AND completed_at < ?3 GROUP BY 1",
            )
            .unwrap();
        let p: Vec<String> = stmt
            .query_map(rusqlite::params![q.as_str(), 0, 1, 1], |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(p.join("\n").contains("done_items_completed"), "{p:?}");
    }
}
