//! Versioned records: every kind of write under every conflict policy,
//! every refusal (and that it changed nothing), history, listing, the
//! conflict objects, collection settings — and real concurrency: racing
//! read-modify-write increments lose no update, racing creates make one
//! record, racing disjoint patches under `merge` all survive.

use std::sync::Arc;

use baton::{Engine, EngineSettings};
use baton_core::{
    Change, CollectionConfig, CollectionName, ConflictPolicy, Error, HistoryFilter, Lock, LockMode,
    LockPolicy, LockRequest, Precondition, Principal, Record, RecordFilter, RecordKey,
    RecordVersion, RecordWrite, Refusal, ResourceName, Result, Role, SystemClock, Version,
    WriteKind, WriteOp, Written, record_limits,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::TestStore;
use crate::harness::{Harness, secs};

/// A collection name; panics if invalid (a bug in the case).
pub fn coll(name: &str) -> CollectionName {
    CollectionName::new(name).unwrap_or_else(|e| panic!("collection {name:?}: {e}"))
}

/// A record key; panics if invalid (a bug in the case).
pub fn key(name: &str) -> RecordKey {
    RecordKey::new(name).unwrap_or_else(|e| panic!("key {name:?}: {e}"))
}

/// `If-Match: "v"`.
pub fn at(v: i64) -> Precondition {
    Precondition::Matches(vec![Version(v)])
}

/// Writes `op` on `clients/bob`-like addresses as `who`: the engine's
/// answer.
async fn write(
    engine: &Engine,
    who: &Principal,
    collection: &str,
    k: &str,
    op: WriteOp,
    pre: Precondition,
) -> Result<Written> {
    let w = RecordWrite::new(coll(collection), key(k), op, pre, None)?;
    engine.write_record(who, w).await
}

async fn set_policy(h: &Harness, collection: &str, policy: ConflictPolicy) {
    h.engine
        .update_collection_config(&h.admin, &coll(collection), move |c| CollectionConfig {
            conflict_policy: policy,
            ..c
        })
        .await
        .unwrap_or_else(|e| panic!("setting {policy} on {collection}: {e}"));
}

async fn record(h: &Harness, collection: &str, k: &str) -> Result<Record> {
    h.engine
        .record(&h.app, &coll(collection), &key(k), None)
        .await
}

async fn history(h: &Harness, collection: &str, k: &str) -> Vec<RecordVersion> {
    h.engine
        .record_history(
            &h.app,
            &coll(collection),
            &key(k),
            &HistoryFilter {
                limit: 1000,
                after: None,
            },
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("history of {collection}/{k}: {e}"))
}

/// (version, kind, by, base version) of every version.
async fn shapes(
    h: &Harness,
    collection: &str,
    k: &str,
) -> Vec<(i64, WriteKind, String, Option<i64>)> {
    history(h, collection, k)
        .await
        .into_iter()
        .map(|v| (v.version.0, v.kind, v.by, v.base_version.map(|b| b.0)))
        .collect()
}

/// The record and its whole history: what "nothing changed" compares.
async fn snapshot(h: &Harness, collection: &str, k: &str) -> (Option<Record>, Vec<RecordVersion>) {
    (
        record(h, collection, k).await.ok(),
        history(h, collection, k).await,
    )
}

fn put(v: Value) -> WriteOp {
    WriteOp::Put(v)
}

fn patch(v: Value) -> WriteOp {
    WriteOp::Patch(v)
}

fn bob_record() -> Value {
    json!({"name": "Bob", "address": "1 Old St", "phone": null})
}

/// Create, read, replace, patch, delete: versions count up, who and when
/// are kept, every version is in the history with its change, and any
/// version reads back.
pub async fn record_lifecycle_is_versioned_and_recorded(db: TestStore) {
    let h = Harness::new(db).await;
    let w = write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    assert_eq!((w.record.version, w.kind), (Version(1), WriteKind::Create));
    assert_eq!(w.record.created_at, h.now());
    let r = record(&h, "clients", "bob").await.unwrap();
    assert_eq!(r, w.record);
    h.advance(secs(60));
    let w = write(
        &h.engine,
        &h.bob,
        "clients",
        "bob",
        put(json!({"name": "Bob", "address": "2 New Ave"})),
        at(1),
    )
    .await
    .unwrap();
    assert_eq!((w.record.version, w.kind), (Version(2), WriteKind::Replace));
    h.advance(secs(60));
    let w = write(
        &h.engine,
        &h.alice,
        "clients",
        "bob",
        patch(json!({"phone": "555-0101"})),
        at(2),
    )
    .await
    .unwrap();
    assert_eq!(
        w.record.data,
        json!({"name": "Bob", "address": "2 New Ave", "phone": "555-0101"})
    );
    assert_eq!(
        (w.record.created_by.as_str(), w.record.updated_by.as_str()),
        ("app", "alice")
    );
    assert_eq!(w.record.updated_at, h.now());
    assert_eq!(record(&h, "clients", "bob").await.unwrap(), w.record);
    h.advance(secs(60));
    let w = write(&h.engine, &h.bob, "clients", "bob", WriteOp::Delete, at(3))
        .await
        .unwrap();
    assert_eq!((w.record.version, w.kind), (Version(4), WriteKind::Delete));
    let e = record(&h, "clients", "bob").await.unwrap_err();
    assert!(
        matches!(e, Error::NotFound { ref id, .. } if id.contains("deleted in version 4 by bob")),
        "{e}"
    );
    use WriteKind::*;
    assert_eq!(
        shapes(&h, "clients", "bob").await,
        vec![
            (1, Create, "app".into(), None),
            (2, Replace, "bob".into(), Some(1)),
            (3, Patch, "alice".into(), Some(2)),
            (4, Delete, "bob".into(), Some(3)),
        ]
    );
    let hist = history(&h, "clients", "bob").await;
    assert!(
        hist.iter().all(|v| v.data.is_none()),
        "history leaves data out"
    );
    assert_eq!(hist[0].at, crate::harness::t0());
    assert_eq!(
        hist[1].changes,
        vec![
            Change {
                path: "/address".into(),
                old: Some(json!("1 Old St")),
                new: Some(json!("2 New Ave"))
            },
            Change {
                path: "/phone".into(),
                old: Some(Value::Null),
                new: None
            },
        ]
    );
    assert_eq!(
        hist[2].changes,
        vec![Change {
            path: "/phone".into(),
            old: None,
            new: Some(json!("555-0101"))
        }]
    );
    assert!(hist[3].deleted);
    for (v, data) in [
        (1, Some(bob_record())),
        (2, Some(json!({"name": "Bob", "address": "2 New Ave"}))),
        (4, None),
    ] {
        let version = h
            .engine
            .record_version(&h.app, &coll("clients"), &key("bob"), Version(v), None)
            .await
            .unwrap();
        assert_eq!(version.data, data, "version {v}");
        assert_eq!(version.version, Version(v));
    }
    let e = h
        .engine
        .record_version(&h.app, &coll("clients"), &key("bob"), Version(5), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

/// After a delete the key can be created again; its versions keep
/// counting, so a tag from before the delete never matches again.
pub async fn record_created_again_after_delete_keeps_counting(db: TestStore) {
    let h = Harness::new(db).await;
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    write(&h.engine, &h.app, "clients", "bob", WriteOp::Delete, at(1))
        .await
        .unwrap();
    let w = write(
        &h.engine,
        &h.alice,
        "clients",
        "bob",
        put(json!({"name": "Bob II"})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    assert_eq!((w.record.version, w.kind), (Version(3), WriteKind::Create));
    assert_eq!(w.record.created_by, "alice");
    let e = write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        patch(json!({"a": 1})),
        at(1),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e}");
    assert_eq!(history(&h, "clients", "bob").await.len(), 3);
}

/// A record that does not exist (never written, or deleted) answers "not
/// found" whatever the preconditions say, and nothing is written.
pub async fn record_missing_is_not_found_before_any_precondition(db: TestStore) {
    let h = Harness::new(db).await;
    for (op, pre) in [
        (put(json!({})), at(1)),
        (patch(json!({"a": 1})), at(1)),
        (patch(json!({"a": 1})), Precondition::Exists),
        (WriteOp::Delete, at(7)),
    ] {
        let e = write(&h.engine, &h.app, "clients", "nobody", op, pre)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { what: "record", .. }), "{e}");
    }
    let e = h
        .engine
        .record_history(
            &h.app,
            &coll("clients"),
            &key("nobody"),
            &HistoryFilter {
                limit: 10,
                after: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    write(&h.engine, &h.app, "clients", "bob", WriteOp::Delete, at(1))
        .await
        .unwrap();
    let before = history(&h, "clients", "bob").await;
    let e = write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        patch(json!({"a": 1})),
        at(1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::NotFound { .. }),
        "a stale tag on a deleted record: {e}"
    );
    assert_eq!(history(&h, "clients", "bob").await, before);
}

/// Under `reject` and `merge` a write must name its version (428);
/// under `last_write_wins` it need not.
pub async fn record_write_without_precondition_is_refused_unless_last_write_wins(db: TestStore) {
    let h = Harness::new(db).await;
    set_policy(&h, "merged", ConflictPolicy::Merge).await;
    set_policy(&h, "lww", ConflictPolicy::LastWriteWins).await;
    for c in ["clients", "merged"] {
        let e = write(
            &h.engine,
            &h.app,
            c,
            "bob",
            put(bob_record()),
            Precondition::None,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::PreconditionRequired(_)), "{c}: {e}");
        write(
            &h.engine,
            &h.app,
            c,
            "bob",
            put(bob_record()),
            Precondition::Absent,
        )
        .await
        .unwrap();
        for op in [put(json!({})), patch(json!({"a": 1})), WriteOp::Delete] {
            let e = write(&h.engine, &h.app, c, "bob", op, Precondition::None)
                .await
                .unwrap_err();
            assert!(matches!(e, Error::PreconditionRequired(_)), "{c}: {e}");
        }
        assert_eq!(history(&h, c, "bob").await.len(), 1, "{c}: nothing written");
    }
    let w = write(
        &h.engine,
        &h.app,
        "lww",
        "bob",
        put(bob_record()),
        Precondition::None,
    )
    .await
    .unwrap();
    assert_eq!(w.kind, WriteKind::Create);
    let w = write(
        &h.engine,
        &h.app,
        "lww",
        "bob",
        patch(json!({"phone": "1"})),
        Precondition::None,
    )
    .await
    .unwrap();
    assert_eq!((w.kind, w.record.version), (WriteKind::Forced, Version(2)));
}

/// Joe and Fred under `reject`: Joe's stale save is refused (nothing
/// written), told what Fred changed, and kept as a conflict object only
/// Joe can read.
pub async fn stale_write_is_refused_with_what_changed_and_kept(db: TestStore) {
    let h = Harness::new(db).await;
    let (joe, fred) = (&h.alice, &h.bob);
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    h.advance(secs(30));
    let fred_at = h.now();
    write(
        &h.engine,
        fred,
        "clients",
        "bob",
        patch(json!({"address": "2 New Ave"})),
        at(1),
    )
    .await
    .unwrap();
    let before = snapshot(&h, "clients", "bob").await;
    h.advance(secs(30));
    let form = json!({"name": "Bob", "address": "1 Old St", "phone": "555-0101"});
    let e = write(&h.engine, joe, "clients", "bob", put(form.clone()), at(1))
        .await
        .unwrap_err();
    let Error::PreconditionFailed(stale) = e else {
        panic!("expected 412, got {e}")
    };
    assert_eq!(stale.presented, vec![Version(1)]);
    assert_eq!(Some(&stale.current), before.0.as_ref());
    assert_eq!(stale.changed.len(), 1);
    let c = &stale.changed[0];
    assert_eq!(
        (
            c.path.as_str(),
            &c.old,
            &c.new,
            c.by.as_str(),
            c.at,
            c.version
        ),
        (
            "/address",
            &Some(json!("1 Old St")),
            &Some(json!("2 New Ave")),
            "bob",
            fred_at,
            Version(2)
        )
    );
    assert_eq!(
        snapshot(&h, "clients", "bob").await,
        before,
        "a refusal changes nothing"
    );
    let id = stale.conflict.expect("the refused write is kept");
    let kept = h.engine.conflict(joe, id).await.unwrap();
    assert_eq!(kept.id, id);
    assert_eq!(
        (kept.author.as_str(), kept.refusal),
        ("alice", Refusal::PreconditionFailed)
    );
    assert_eq!(kept.body, Some(form));
    assert_eq!(
        (kept.base_versions.clone(), kept.current_version),
        (vec![Version(1)], Version(2))
    );
    assert_eq!(kept.changed, stale.changed);
    assert_eq!(kept.at, h.now());
    let e = h.engine.conflict(fred, id).await.unwrap_err();
    assert!(
        matches!(e, Error::NotFound { .. }),
        "only its author reads it: {e}"
    );
    assert_eq!(h.engine.conflict(&h.admin, id).await.unwrap(), kept);
    // Joe applies his change to the current version.
    let w = write(
        &h.engine,
        joe,
        "clients",
        "bob",
        patch(json!({"phone": "555-0101"})),
        at(2),
    )
    .await
    .unwrap();
    assert_eq!(
        w.record.data,
        json!({"name": "Bob", "address": "2 New Ave", "phone": "555-0101"})
    );
}

/// Creating a key that exists is refused with the record.
pub async fn create_of_an_existing_record_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    let e = write(
        &h.engine,
        &h.alice,
        "clients",
        "bob",
        put(json!({"x": 1})),
        Precondition::Absent,
    )
    .await
    .unwrap_err();
    let Error::PreconditionFailed(stale) = e else {
        panic!("expected 412, got {e}")
    };
    assert!(stale.presented.is_empty());
    assert_eq!(stale.current.data, bob_record());
    assert!(stale.conflict.is_some());
    assert_eq!(history(&h, "clients", "bob").await.len(), 1);
}

/// Joe and Fred under `merge`: Joe's stale PATCH merges with Fred's
/// change of another field; the answer and the history say from which
/// versions.
pub async fn stale_patch_of_other_fields_is_merged(db: TestStore) {
    let h = Harness::new(db).await;
    set_policy(&h, "clients", ConflictPolicy::Merge).await;
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    write(
        &h.engine,
        &h.bob,
        "clients",
        "bob",
        patch(json!({"address": "2 New Ave"})),
        at(1),
    )
    .await
    .unwrap();
    let w = write(
        &h.engine,
        &h.alice,
        "clients",
        "bob",
        patch(json!({"phone": "555-0101"})),
        at(1),
    )
    .await
    .unwrap();
    assert_eq!(w.kind, WriteKind::Merge);
    let from = w.merged_from.expect("merged_from");
    assert_eq!((from.base, from.current), (Version(1), Version(2)));
    assert_eq!(
        w.record.data,
        json!({"name": "Bob", "address": "2 New Ave", "phone": "555-0101"})
    );
    let v3 = history(&h, "clients", "bob").await.pop().unwrap();
    assert_eq!(
        (v3.kind, v3.base_version, v3.merged_from),
        (WriteKind::Merge, Some(Version(1)), Some(from))
    );
    assert_eq!(
        v3.changes,
        vec![Change {
            path: "/phone".into(),
            old: Some(Value::Null),
            new: Some(json!("555-0101"))
        }]
    );
}

/// The two raises under `merge`: 409 with each conflicting field (base,
/// yours, theirs, by whom, when) and the clean changes apart; nothing
/// written; the refused patch kept.
pub async fn stale_patch_of_the_same_field_conflicts(db: TestStore) {
    let h = Harness::new(db).await;
    set_policy(&h, "salaries", ConflictPolicy::Merge).await;
    write(
        &h.engine,
        &h.app,
        "salaries",
        "e42",
        put(json!({"salary": 10000})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    h.advance(secs(5));
    write(
        &h.engine,
        &h.bob,
        "salaries",
        "e42",
        patch(json!({"salary": 12000})),
        at(1),
    )
    .await
    .unwrap();
    let before = snapshot(&h, "salaries", "e42").await;
    let mine = json!({"salary": 10500, "note": "company bonus"});
    let e = write(
        &h.engine,
        &h.alice,
        "salaries",
        "e42",
        patch(mine.clone()),
        at(1),
    )
    .await
    .unwrap_err();
    let Error::MergeConflict(m) = e else {
        panic!("expected 409, got {e}")
    };
    assert_eq!((m.base, m.current.version), (Version(1), Version(2)));
    assert_eq!(m.conflicts.len(), 1);
    let c = &m.conflicts[0];
    assert_eq!(
        (
            c.path.as_str(),
            &c.base,
            &c.yours,
            &c.theirs,
            c.by.as_str(),
            c.at,
            c.version
        ),
        (
            "/salary",
            &Some(json!(10000)),
            &Some(json!(10500)),
            &Some(json!(12000)),
            "bob",
            crate::harness::t0() + secs(5),
            Version(2)
        )
    );
    assert_eq!(
        m.merged,
        vec![Change {
            path: "/note".into(),
            old: None,
            new: Some(json!("company bonus"))
        }]
    );
    assert_eq!(snapshot(&h, "salaries", "e42").await, before);
    let kept = h
        .engine
        .conflict(&h.alice, m.conflict.expect("kept"))
        .await
        .unwrap();
    assert_eq!(
        (kept.refusal, kept.body.clone()),
        (Refusal::MergeConflict, Some(mine))
    );
    assert_eq!(
        (kept.conflicts.clone(), kept.merged.clone()),
        (m.conflicts.clone(), m.merged.clone())
    );
    // The same change on both sides is not a conflict.
    let w = write(
        &h.engine,
        &h.alice,
        "salaries",
        "e42",
        patch(json!({"salary": 12000})),
        at(1),
    )
    .await
    .unwrap();
    assert_eq!(w.kind, WriteKind::Merge);
}

/// The two raises under `last_write_wins`: nothing refused, the stale
/// write recorded as forced, the overwritten raise still in the history.
pub async fn last_write_wins_keeps_every_version(db: TestStore) {
    let h = Harness::new(db).await;
    set_policy(&h, "salaries", ConflictPolicy::LastWriteWins).await;
    write(
        &h.engine,
        &h.app,
        "salaries",
        "e42",
        put(json!({"salary": 10000})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    write(
        &h.engine,
        &h.bob,
        "salaries",
        "e42",
        put(json!({"salary": 12000})),
        at(1),
    )
    .await
    .unwrap();
    let w = write(
        &h.engine,
        &h.alice,
        "salaries",
        "e42",
        put(json!({"salary": 10500})),
        at(1),
    )
    .await
    .unwrap();
    assert_eq!((w.kind, w.record.version), (WriteKind::Forced, Version(3)));
    use WriteKind::*;
    assert_eq!(
        shapes(&h, "salaries", "e42").await,
        vec![
            (1, Create, "app".into(), None),
            (2, Replace, "bob".into(), Some(1)),
            (3, Forced, "alice".into(), Some(1))
        ]
    );
    let v2 = h
        .engine
        .record_version(&h.app, &coll("salaries"), &key("e42"), Version(2), None)
        .await
        .unwrap();
    assert_eq!(v2.data, Some(json!({"salary": 12000})));
}

/// `If-Match` with several versions matches any of them; `If-Match: *`
/// matches any existing version and is recorded as forced.
pub async fn if_match_lists_and_any(db: TestStore) {
    let h = Harness::new(db).await;
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    let many = Precondition::Matches(vec![Version(9), Version(1)]);
    let w = write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        patch(json!({"a": 1})),
        many,
    )
    .await
    .unwrap();
    assert_eq!((w.kind, w.record.version), (WriteKind::Patch, Version(2)));
    let w = write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        patch(json!({"a": 2})),
        Precondition::Exists,
    )
    .await
    .unwrap();
    assert_eq!((w.kind, w.record.version), (WriteKind::Forced, Version(3)));
    let e = write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        patch(json!({"a": 3})),
        Precondition::Matches(vec![Version(1), Version(2)]),
    )
    .await
    .unwrap_err();
    let Error::PreconditionFailed(s) = e else {
        panic!("{e}")
    };
    assert_eq!(
        s.changed
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        vec!["/a"]
    );
}

/// Live records are listed by key in byte order, in pages; deleted ones
/// are left out; collections are apart.
pub async fn records_are_listed_by_key_in_pages(db: TestStore) {
    let h = Harness::new(db).await;
    for k in ["b", "a", "B", "a.1", "c", "gone"] {
        write(
            &h.engine,
            &h.app,
            "clients",
            k,
            put(json!({"k": k})),
            Precondition::Absent,
        )
        .await
        .unwrap();
    }
    write(
        &h.engine,
        &h.app,
        "others",
        "a",
        put(json!({})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    write(&h.engine, &h.app, "clients", "gone", WriteOp::Delete, at(1))
        .await
        .unwrap();
    let page = |after: Option<&str>, limit| {
        let filter = RecordFilter {
            limit,
            after: after.map(key),
        };
        let engine = h.engine.clone();
        let who = h.app.clone();
        async move {
            engine
                .list_records(&who, &coll("clients"), &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.key.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, 100).await, vec!["B", "a", "a.1", "b", "c"]);
    assert_eq!(page(None, 2).await, vec!["B", "a"]);
    assert_eq!(page(Some("a"), 2).await, vec!["a.1", "b"]);
    assert_eq!(page(Some("b"), 2).await, vec!["c"]);
    let e = h
        .engine
        .list_records(
            &h.app,
            &coll("clients"),
            &RecordFilter {
                limit: 0,
                after: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref field, .. } if field == "limit"),
        "{e}"
    );
}

/// A history reads in pages by version.
pub async fn record_history_pages_by_version(db: TestStore) {
    let h = Harness::new(db).await;
    write(
        &h.engine,
        &h.app,
        "counters",
        "c",
        put(json!({"n": 0})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    for v in 1..5 {
        write(
            &h.engine,
            &h.app,
            "counters",
            "c",
            put(json!({"n": v})),
            at(v),
        )
        .await
        .unwrap();
    }
    let page = h
        .engine
        .record_history(
            &h.app,
            &coll("counters"),
            &key("c"),
            &HistoryFilter {
                limit: 2,
                after: Some(Version(2)),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|v| v.version.0).collect::<Vec<_>>(),
        vec![3, 4]
    );
    let page = h
        .engine
        .record_history(
            &h.app,
            &coll("counters"),
            &key("c"),
            &HistoryFilter {
                limit: 2,
                after: Some(Version(5)),
            },
            None,
        )
        .await
        .unwrap();
    assert!(page.is_empty());
}

/// A collection's settings: defaults before first use, changed only by an
/// admin, in force for the next write.
pub async fn collection_settings_are_admin_only(db: TestStore) {
    let h = Harness::new(db).await;
    let c = coll("clients");
    assert_eq!(
        h.engine.collection_config(&h.alice, &c).await.unwrap(),
        CollectionConfig::default()
    );
    for who in [&h.supervisor, &h.alice, &h.app] {
        let e = h
            .engine
            .update_collection_config(who, &c, |c| c)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{}: {e}", who.name);
    }
    set_policy(&h, "clients", ConflictPolicy::LastWriteWins).await;
    let now = h.engine.collection_config(&h.alice, &c).await.unwrap();
    assert_eq!(now.conflict_policy, ConflictPolicy::LastWriteWins);
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::None,
    )
    .await
    .unwrap();
    // A first write creates the collection with the defaults.
    write(
        &h.engine,
        &h.app,
        "fresh",
        "x",
        put(json!({})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    assert_eq!(
        h.engine
            .collection_config(&h.app, &coll("fresh"))
            .await
            .unwrap(),
        CollectionConfig::default()
    );
}

/// Conflict objects are forgotten after the retention period.
pub async fn conflict_objects_are_forgotten_after_retention(db: TestStore) {
    let h = Harness::new(db).await;
    write(
        &h.engine,
        &h.app,
        "clients",
        "bob",
        put(bob_record()),
        Precondition::Absent,
    )
    .await
    .unwrap();
    let e = write(
        &h.engine,
        &h.alice,
        "clients",
        "bob",
        put(json!({})),
        Precondition::Absent,
    )
    .await
    .unwrap_err();
    let Error::PreconditionFailed(s) = e else {
        panic!("{e}")
    };
    let id = s.conflict.unwrap();
    h.advance(secs(record_limits::CONFLICT_RETENTION_SECONDS - 1));
    h.engine.sweep().await.unwrap();
    assert!(h.engine.conflict(&h.alice, id).await.is_ok());
    h.advance(secs(1));
    assert!(
        h.engine.conflict(&h.alice, id).await.is_err(),
        "expired, even before a sweep"
    );
    h.engine.sweep().await.unwrap();
    assert_eq!(h.store().conflict(id).await.unwrap(), None);
    assert_eq!(
        h.store().forget_conflicts(h.now()).await.unwrap(),
        0,
        "idempotent"
    );
}

/// Data over the limits is refused, including by a patch that would grow
/// it past them; nothing is written.
pub async fn record_limits_are_enforced(db: TestStore) {
    let h = Harness::new(db).await;
    let half = "x".repeat(record_limits::MAX_DATA_BYTES / 2 + 1);
    let e = write(
        &h.engine,
        &h.app,
        "docs",
        "d",
        put(json!({"a": half, "b": half})),
        Precondition::Absent,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref field, .. } if field == "data"),
        "{e}"
    );
    write(
        &h.engine,
        &h.app,
        "docs",
        "d",
        put(json!({"a": half})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    let e = write(
        &h.engine,
        &h.app,
        "docs",
        "d",
        patch(json!({"b": half})),
        at(1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref field, .. } if field == "data"),
        "{e}"
    );
    assert_eq!(history(&h, "docs", "d").await.len(), 1);
    let e = write(
        &h.engine,
        &h.app,
        "docs",
        "e",
        put(json!([1])),
        Precondition::Absent,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
}

/// An engine on the system clock with `n` writers.
async fn writers(db: &TestStore, n: usize) -> (Engine, Vec<Principal>) {
    let engine = Engine::new(db.store(), Arc::new(SystemClock), EngineSettings::default());
    let mut all = Vec::new();
    for i in 0..n {
        let (p, _) = engine
            .bootstrap_principal(&format!("writer-{i}"), Role::App)
            .await
            .unwrap();
        all.push(p);
    }
    (engine, all)
}

/// The lost-update race: writers read-modify-write one counter with its
/// version, retrying when refused as stale. The final value is the number
/// of successful writes, and every version was based on the one it
/// replaced.
pub async fn concurrent_increments_never_lose_an_update(db: TestStore) {
    const WRITERS: usize = 8;
    const EACH: i64 = 25;
    let (engine, ws) = writers(&db, WRITERS).await;
    let reader = ws[0].clone();
    write(
        &engine,
        &reader,
        "counters",
        "hits",
        put(json!({"n": 0})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    let mut tasks = JoinSet::new();
    for w in ws {
        let engine = engine.clone();
        tasks.spawn(async move {
            let mut refused = 0u32;
            for _ in 0..EACH {
                loop {
                    let r = engine
                        .record(&w, &coll("counters"), &key("hits"), None)
                        .await
                        .unwrap();
                    let n = r.data["n"].as_i64().unwrap();
                    match write(
                        &engine,
                        &w,
                        "counters",
                        "hits",
                        put(json!({"n": n + 1})),
                        at(r.version.0),
                    )
                    .await
                    {
                        Ok(_) => break,
                        Err(Error::PreconditionFailed(_)) => refused += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            refused
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let total = WRITERS as i64 * EACH;
    let r = engine
        .record(&reader, &coll("counters"), &key("hits"), None)
        .await
        .unwrap();
    assert_eq!(r.data["n"], json!(total));
    assert_eq!(r.version, Version(total + 1));
    let hist = engine
        .record_history(
            &reader,
            &coll("counters"),
            &key("hits"),
            &HistoryFilter {
                limit: 1000,
                after: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(hist.len() as i64, total + 1);
    for v in &hist[1..] {
        assert_eq!(v.kind, WriteKind::Replace);
        assert_eq!(
            v.base_version,
            Some(Version(v.version.0 - 1)),
            "version {} not based on its predecessor",
            v.version
        );
    }
}

/// Racing creates of one key: exactly one succeeds, the others are told
/// the record exists.
pub async fn concurrent_creates_make_one_record(db: TestStore) {
    const WRITERS: usize = 8;
    let (engine, ws) = writers(&db, WRITERS).await;
    let mut tasks = JoinSet::new();
    for (i, w) in ws.into_iter().enumerate() {
        let engine = engine.clone();
        tasks.spawn(async move {
            write(
                &engine,
                &w,
                "clients",
                "new",
                put(json!({"by": i})),
                Precondition::Absent,
            )
            .await
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(t) = tasks.join_next().await {
        match t.unwrap() {
            Ok(w) => {
                assert_eq!(w.record.version, Version(1));
                created += 1;
            }
            Err(Error::PreconditionFailed(s)) => {
                assert!(s.presented.is_empty());
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((created, refused), (1, WRITERS - 1));
}

/// Under `merge`, writers all based on version 1 patch different fields
/// at once: every patch lands (merged when stale) and no field is lost.
pub async fn concurrent_disjoint_patches_all_merge(db: TestStore) {
    const WRITERS: usize = 8;
    let (engine, ws) = writers(&db, WRITERS).await;
    let (admin, _) = engine
        .bootstrap_principal("admin", Role::Admin)
        .await
        .unwrap();
    engine
        .update_collection_config(&admin, &coll("forms"), |c| CollectionConfig {
            conflict_policy: ConflictPolicy::Merge,
            ..c
        })
        .await
        .unwrap();
    write(
        &engine,
        &ws[0],
        "forms",
        "f",
        put(json!({"title": "form"})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    let mut tasks = JoinSet::new();
    for (i, w) in ws.into_iter().enumerate() {
        let engine = engine.clone();
        tasks.spawn(async move {
            write(
                &engine,
                &w,
                "forms",
                "f",
                patch(json!({ format!("field{i}"): i })),
                at(1),
            )
            .await
        });
    }
    while let Some(t) = tasks.join_next().await {
        let w = t.unwrap().unwrap();
        assert!(matches!(w.kind, WriteKind::Patch | WriteKind::Merge));
    }
    let r = engine
        .record(&admin, &coll("forms"), &key("f"), None)
        .await
        .unwrap();
    let mut expected = json!({"title": "form"});
    for i in 0..WRITERS {
        expected[format!("field{i}")] = json!(i);
    }
    assert_eq!(r.data, expected);
    assert_eq!(r.version, Version(WRITERS as i64 + 1));
}

/// Acquires a lock on `resources` for `who` (no wait); panics if refused.
async fn lock(h: &Harness, who: &Principal, resources: &[&str], mode: LockMode, ttl: u32) -> Lock {
    let req = LockRequest::new(
        resources
            .iter()
            .map(|r| ResourceName::new(*r).unwrap())
            .collect(),
        mode,
        String::new(),
        None,
        ttl,
        None,
        None,
    )
    .unwrap();
    h.engine
        .acquire_lock(who, req, std::time::Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{} locking {resources:?}: {e}", who.name))
        .0
}

async fn set_lock_policy(h: &Harness, collection: &str, policy: LockPolicy) {
    h.engine
        .update_collection_config(&h.admin, &coll(collection), move |c| CollectionConfig {
            lock_policy: policy,
            ..c
        })
        .await
        .unwrap();
}

fn locked(e: Error) -> Box<baton_core::LockRequired> {
    match e {
        Error::LockRequired(l) => l,
        other => panic!("expected lock-required, got {other}"),
    }
}

/// Under `lock_policy: write`, a write must name a live exclusive lock of
/// the writer covering `{collection}/{key}`; anything else is refused
/// with the current holders and writes nothing. A lock that expired, the
/// resource since granted to someone else, is refused for its older
/// fencing token.
pub async fn lock_policy_write_needs_the_writers_live_lock(db: TestStore) {
    let h = Harness::new(db).await;
    set_lock_policy(&h, "clients", LockPolicy::Write).await;
    let w = |who: &Principal, op, pre, lock: Option<i64>| {
        let engine = h.engine.clone();
        let who = who.clone();
        async move {
            let w = RecordWrite::new(coll("clients"), key("bob"), op, pre, lock)?;
            engine.write_record(&who, w).await
        }
    };
    let l = locked(
        w(&h.alice, put(bob_record()), Precondition::Absent, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (l.resource.as_str(), l.lock, l.holders.len()),
        ("clients/bob", None, 0)
    );
    let alice = lock(&h, &h.alice, &["clients/bob"], LockMode::Exclusive, 60).await;
    w(
        &h.alice,
        put(bob_record()),
        Precondition::Absent,
        Some(alice.id),
    )
    .await
    .unwrap();
    // Someone else, with or without naming alice's lock.
    for named in [None, Some(alice.id)] {
        let l = locked(
            w(&h.bob, patch(json!({"a": 1})), at(1), named)
                .await
                .unwrap_err(),
        );
        assert_eq!(l.holders.len(), 1);
        assert_eq!(
            (l.holders[0].holder.as_str(), l.holders[0].lock),
            ("alice", Some(alice.id))
        );
    }
    // A lock that does not exist, or does not cover the record.
    let l = locked(
        w(&h.alice, patch(json!({"a": 1})), at(1), Some(9999))
            .await
            .unwrap_err(),
    );
    assert!(l.reason.contains("does not exist"), "{}", l.reason);
    let other = lock(&h, &h.alice, &["clients/other"], LockMode::Exclusive, 60).await;
    let l = locked(
        w(&h.alice, patch(json!({"a": 1})), at(1), Some(other.id))
            .await
            .unwrap_err(),
    );
    assert!(l.reason.contains("does not cover"), "{}", l.reason);
    w(&h.alice, patch(json!({"a": 1})), at(1), Some(alice.id))
        .await
        .unwrap();
    // The lock runs out; bob gets the record; alice's late write with her
    // old lock is refused for its fencing token.
    h.advance(secs(61));
    let bobs = lock(&h, &h.bob, &["clients/bob"], LockMode::Exclusive, 60).await;
    assert!(bobs.token > alice.token);
    let l = locked(
        w(&h.alice, patch(json!({"a": 2})), at(2), Some(alice.id))
            .await
            .unwrap_err(),
    );
    assert_eq!((l.presented, l.current), (Some(alice.token), bobs.token));
    assert!(l.reason.contains("older"), "{}", l.reason);
    assert_eq!(l.holders[0].holder, "bob");
    w(&h.bob, patch(json!({"a": 3})), at(2), Some(bobs.id))
        .await
        .unwrap();
    // A shared lock is not enough to write.
    h.engine.release_lock(&h.bob, bobs.id).await.unwrap();
    let shared = lock(&h, &h.bob, &["clients/bob"], LockMode::Shared, 60).await;
    let l = locked(
        w(&h.bob, patch(json!({"a": 4})), at(3), Some(shared.id))
            .await
            .unwrap_err(),
    );
    assert!(l.reason.contains("shared"), "{}", l.reason);
    assert_eq!(
        history(&h, "clients", "bob").await.len(),
        3,
        "refusals wrote nothing"
    );
    // Reads need no lock under `write`.
    assert_eq!(
        record(&h, "clients", "bob").await.unwrap().data["a"],
        json!(3)
    );
}

/// Under `lock_policy: read_write`, reading a record (its data, history
/// or a version) needs the reader's exclusive lock too; a listing leaves
/// the data out.
pub async fn lock_policy_read_write_needs_the_lock_to_read(db: TestStore) {
    let h = Harness::new(db).await;
    write(
        &h.engine,
        &h.app,
        "files",
        "f1",
        put(json!({"secret": 1})),
        Precondition::Absent,
    )
    .await
    .unwrap();
    set_lock_policy(&h, "files", LockPolicy::ReadWrite).await;
    let (c, k) = (coll("files"), key("f1"));
    let l = locked(h.engine.record(&h.alice, &c, &k, None).await.unwrap_err());
    assert_eq!(l.resource, "files/f1");
    let filter = HistoryFilter {
        limit: 10,
        after: None,
    };
    locked(
        h.engine
            .record_history(&h.alice, &c, &k, &filter, None)
            .await
            .unwrap_err(),
    );
    locked(
        h.engine
            .record_version(&h.alice, &c, &k, Version(1), None)
            .await
            .unwrap_err(),
    );
    let mine = lock(&h, &h.alice, &["files/f1"], LockMode::Exclusive, 60).await;
    let r = h
        .engine
        .record(&h.alice, &c, &k, Some(mine.id))
        .await
        .unwrap();
    assert_eq!(r.data, json!({"secret": 1}));
    assert_eq!(
        h.engine
            .record_history(&h.alice, &c, &k, &filter, Some(mine.id))
            .await
            .unwrap()
            .len(),
        1
    );
    let v = h
        .engine
        .record_version(&h.alice, &c, &k, Version(1), Some(mine.id))
        .await
        .unwrap();
    assert_eq!(v.data, Some(json!({"secret": 1})));
    // Bob is refused even naming alice's lock, and told she has it.
    let l = locked(
        h.engine
            .record(&h.bob, &c, &k, Some(mine.id))
            .await
            .unwrap_err(),
    );
    assert_eq!(l.holders[0].holder, "alice");
    let page = h
        .engine
        .list_records(
            &h.bob,
            &c,
            &RecordFilter {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((page.len(), &page[0].data), (1, &Value::Null));
    // Writing needs the lock as well.
    locked(
        write(
            &h.engine,
            &h.alice,
            "files",
            "f1",
            patch(json!({"secret": 2})),
            at(1),
        )
        .await
        .unwrap_err(),
    );
    let w = RecordWrite::new(
        c.clone(),
        k.clone(),
        patch(json!({"secret": 2})),
        at(1),
        Some(mine.id),
    )
    .unwrap();
    h.engine.write_record(&h.alice, w).await.unwrap();
}
