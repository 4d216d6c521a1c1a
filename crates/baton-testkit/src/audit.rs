//! The audit trail over the three histories (item events, lock events,
//! record versions): order, filters, keyset pages, roles and limits; and
//! queue throughput per time bucket.

use std::time::Duration as StdDuration;

use baton_core::{
    AuditArea, AuditCursor, AuditEntry, AuditFilter, CollectionName, Error, LockMode, Precondition,
    Principal, RecordKey, RecordWrite, ThroughputBucket, Version, WriteOp,
};
use serde_json::json;

use crate::TestStore;
use crate::harness::{Harness, q, secs, t0};

/// Writes a record as `who`: a create (`None`) or a replacement of
/// version `v`.
async fn write(h: &Harness, who: &Principal, collection: &str, key: &str, v: Option<i64>) {
    let pre = match v {
        None => Precondition::Absent,
        Some(v) => Precondition::Matches(vec![Version(v)]),
    };
    let w = RecordWrite::new(
        CollectionName::new(collection).unwrap(),
        RecordKey::new(key).unwrap(),
        WriteOp::Put(json!({"by": who.name, "v": v})),
        pre,
        None,
    )
    .unwrap();
    h.engine
        .write_record(who, w)
        .await
        .unwrap_or_else(|e| panic!("writing {collection}/{key}: {e}"));
}

fn all() -> AuditFilter {
    AuditFilter {
        limit: 500,
        ..Default::default()
    }
}

/// What most assertions compare: area, action, actor, subject.
fn shapes(entries: &[AuditEntry]) -> Vec<(AuditArea, String, Option<String>, String)> {
    entries
        .iter()
        .map(|e| (e.area, e.action.clone(), e.actor.clone(), e.subject.clone()))
        .collect()
}

fn shape(
    area: AuditArea,
    action: &str,
    actor: Option<&str>,
    subject: &str,
) -> (AuditArea, String, Option<String>, String) {
    (
        area,
        action.to_owned(),
        actor.map(str::to_owned),
        subject.to_owned(),
    )
}

/// Some work in every area, one second apart: an item enqueued, claimed
/// and completed; a lock granted and released; a record created and
/// replaced; a lock that expires (no actor). Returns the item id.
async fn scene(h: &Harness) -> i64 {
    let item = h.enqueue("desk", "call", 0).await;
    h.advance(secs(1));
    let claimed = h.claim_some(&h.alice, "desk").await;
    h.advance(secs(1));
    h.accept(&h.alice, &claimed).await;
    h.advance(secs(1));
    let lock = h.lock(&h.bob, &["doc/1"], LockMode::Exclusive).await;
    h.advance(secs(1));
    h.engine.release_lock(&h.bob, lock.id).await.unwrap();
    h.advance(secs(1));
    write(h, &h.bob, "clients", "bob", None).await;
    h.advance(secs(1));
    write(h, &h.alice, "clients", "bob", Some(1)).await;
    h.advance(secs(1));
    h.lock(&h.carol, &["doc/2"], LockMode::Shared).await;
    h.advance(secs(61));
    h.engine.sweep_locks().await.unwrap();
    item.id
}

/// Every history is in the trail, newest first, with who did what to
/// what and the details of each area.
pub async fn audit_trail_shows_every_history_newest_first(db: TestStore) {
    let h = Harness::new(db).await;
    let id = scene(&h).await;
    let item = id.to_string();
    let trail = h.engine.audit(&h.supervisor, &all()).await.unwrap();
    use AuditArea::*;
    assert_eq!(
        shapes(&trail),
        vec![
            shape(Lock, "expired", None, "doc/2"),
            shape(Lock, "granted", Some("carol"), "doc/2"),
            shape(Record, "replace", Some("alice"), "clients/bob"),
            shape(Record, "create", Some("bob"), "clients/bob"),
            shape(Lock, "released", Some("bob"), "doc/1"),
            shape(Lock, "granted", Some("bob"), "doc/1"),
            shape(Item, "completed", Some("alice"), &item),
            shape(Item, "claimed", Some("alice"), &item),
            shape(Item, "enqueued", Some("app"), &item),
        ]
    );
    let times: Vec<_> = trail.iter().map(|e| e.at).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(trail.last().unwrap().at, t0());
    assert_eq!(trail[6].detail["queue"], "desk");
    assert_eq!(trail[6].detail["token"], 1);
    assert_eq!(trail[5].detail["holder"], "bob");
    assert_eq!(trail[5].detail["mode"], "exclusive");
    assert!(trail[5].detail["lock"].is_i64());
    assert_eq!(trail[2].detail["version"], 2);
    assert_eq!(trail[2].detail["base_version"], 1);
    assert!(trail[2].detail["changes"].is_array());
    for e in &trail {
        assert_eq!(e.cursor.at, e.at);
        assert_eq!(e.cursor.area, e.area);
        let text = e.cursor.to_string();
        assert_eq!(text.parse::<AuditCursor>().unwrap(), e.cursor, "{text}");
    }
}

/// Filters by actor, subject (queue, item id, resource, collection/key,
/// collection) and time, alone and together.
pub async fn audit_filters_by_actor_subject_and_time(db: TestStore) {
    let h = Harness::new(db).await;
    let id = scene(&h).await;
    let other = h.enqueue("other", "call", 0).await;
    let find = |f: AuditFilter| {
        let engine = h.engine.clone();
        let sup = h.supervisor.clone();
        async move { shapes(&engine.audit(&sup, &f).await.unwrap()) }
    };
    let by = |actor: &str| AuditFilter {
        actor: Some(actor.into()),
        ..all()
    };
    let about = |subject: &str| AuditFilter {
        subject: Some(subject.into()),
        ..all()
    };
    use AuditArea::*;
    let item = id.to_string();
    assert_eq!(
        find(by("alice")).await,
        vec![
            shape(Record, "replace", Some("alice"), "clients/bob"),
            shape(Item, "completed", Some("alice"), &item),
            shape(Item, "claimed", Some("alice"), &item),
        ]
    );
    assert_eq!(
        find(by("nobody")).await,
        vec![],
        "unknown actors match nothing"
    );
    let desk = vec![
        shape(Item, "completed", Some("alice"), &item),
        shape(Item, "claimed", Some("alice"), &item),
        shape(Item, "enqueued", Some("app"), &item),
    ];
    assert_eq!(find(about("desk")).await, desk, "a queue");
    assert_eq!(find(about(&item)).await, desk, "an item id");
    assert_eq!(
        find(about(&other.id.to_string())).await,
        vec![shape(Item, "enqueued", Some("app"), &other.id.to_string())]
    );
    assert_eq!(
        find(about("doc/1")).await,
        vec![
            shape(Lock, "released", Some("bob"), "doc/1"),
            shape(Lock, "granted", Some("bob"), "doc/1"),
        ],
        "a resource"
    );
    let bob = vec![
        shape(Record, "replace", Some("alice"), "clients/bob"),
        shape(Record, "create", Some("bob"), "clients/bob"),
    ];
    assert_eq!(find(about("clients/bob")).await, bob, "a record");
    assert_eq!(find(about("clients")).await, bob, "a collection");
    assert_eq!(find(about("clients/nobody")).await, vec![]);
    // Time: [since, until).
    let window = AuditFilter {
        since: Some(t0() + secs(1)),
        until: Some(t0() + secs(4)),
        ..all()
    };
    assert_eq!(
        find(window.clone()).await,
        vec![
            shape(Lock, "granted", Some("bob"), "doc/1"),
            shape(Item, "completed", Some("alice"), &item),
            shape(Item, "claimed", Some("alice"), &item),
        ]
    );
    assert_eq!(
        find(AuditFilter {
            actor: Some("alice".into()),
            subject: Some("desk".into()),
            ..window
        })
        .await,
        vec![
            shape(Item, "completed", Some("alice"), &item),
            shape(Item, "claimed", Some("alice"), &item),
        ]
    );
}

/// Pages continue exactly after the last entry of the page before, even
/// among many entries of one instant in every area and while new entries
/// arrive: together they are the whole trail, once each, in order.
pub async fn audit_pages_never_skip_or_repeat(db: TestStore) {
    let h = Harness::new(db).await;
    // Everything at two instants, so that the order within an instant
    // decides the pages.
    for round in 0..2 {
        for _ in 0..5 {
            h.enqueue("desk", "call", 0).await;
        }
        for r in 0..3 {
            h.lock(&h.alice, &[&format!("r{round}-{r}")], LockMode::Shared)
                .await;
        }
        for (c, k) in [("ab", "z"), ("ab-c", "x"), ("ab", "y"), ("b", "a")] {
            write(&h, &h.bob, c, &format!("{k}{round}"), None).await;
        }
        h.advance(secs(1));
    }
    assert_eq!(
        h.engine.audit(&h.supervisor, &all()).await.unwrap().len(),
        24
    );
    for limit in [1, 2, 3, 7, 24, 25] {
        let whole = h.engine.audit(&h.supervisor, &all()).await.unwrap();
        let mut pages: Vec<AuditEntry> = Vec::new();
        let mut before: Option<AuditCursor> = None;
        loop {
            let f = AuditFilter {
                limit,
                before: before.clone(),
                ..all()
            };
            let page = h.engine.audit(&h.supervisor, &f).await.unwrap();
            assert!(page.len() <= limit as usize);
            if limit == 3 && pages.is_empty() {
                // New entries arriving meanwhile are newer: not in later
                // pages.
                h.enqueue("desk", "call", 0).await;
            }
            let Some(last) = page.last() else { break };
            before = Some(last.cursor.to_string().parse().unwrap());
            pages.extend(page);
        }
        assert_eq!(pages, whole, "pages of {limit}");
    }
}

/// Only supervisors and admins read the trail; limits are enforced with
/// the field named; a refused query answers nothing.
pub async fn audit_is_for_supervisors_within_limits(db: TestStore) {
    let h = Harness::new(db).await;
    h.enqueue("desk", "call", 0).await;
    for who in [&h.alice, &h.app] {
        assert_err!(h.engine.audit(who, &all()).await, Error::Forbidden(_));
    }
    assert_eq!(h.engine.audit(&h.admin, &all()).await.unwrap().len(), 1);
    for (f, field) in [
        (AuditFilter { limit: 0, ..all() }, "limit"),
        (
            AuditFilter {
                limit: 501,
                ..all()
            },
            "limit",
        ),
        (
            AuditFilter {
                subject: Some(String::new()),
                ..all()
            },
            "subject",
        ),
        (
            AuditFilter {
                since: Some(t0()),
                until: Some(t0()),
                ..all()
            },
            "until",
        ),
    ] {
        assert_err!(
            h.engine.audit(&h.supervisor, &f).await,
            Error::Invalid { field: got, .. } if got == field
        );
    }
    // A page of exactly the limit.
    for _ in 0..3 {
        h.enqueue("desk", "call", 0).await;
    }
    let f = AuditFilter { limit: 2, ..all() };
    assert_eq!(h.engine.audit(&h.supervisor, &f).await.unwrap().len(), 2);
}

/// Throughput counts the completions of one queue per bucket, every
/// bucket present (zeros included), aligned to the bucket length, the
/// last one holding now; other queues, releases and escalations do not
/// count.
pub async fn throughput_counts_completions_per_bucket(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("desk", |c| c.max_leases_per_holder = 10).await;
    for _ in 0..6 {
        h.enqueue("desk", "call", 0).await;
    }
    h.enqueue("other", "call", 0).await;
    let minute = StdDuration::from_secs(60);
    // Minute 0: two completions; minute 1: none; minute 2: one, a
    // release and an escalation; another queue's completion.
    let a = h.claim_some(&h.alice, "desk").await;
    let b = h.claim_some(&h.alice, "desk").await;
    h.advance(secs(30));
    h.accept(&h.alice, &a).await;
    h.advance(secs(29));
    h.accept(&h.alice, &b).await;
    h.advance(secs(61));
    let c = h.claim_some(&h.bob, "desk").await;
    let d = h.claim_some(&h.bob, "desk").await;
    let e = h.claim_some(&h.bob, "desk").await;
    h.accept(&h.bob, &c).await;
    h.engine
        .release(&h.bob, d.item.id, d.lease.token, 0)
        .await
        .unwrap();
    let esc =
        baton_core::CompleteRequest::new(e.lease.token, "escalated".into(), None, Some(q("other")))
            .unwrap();
    h.engine.complete(&h.bob, e.item.id, esc).await.unwrap();
    let o = h.claim_some(&h.carol, "other").await;
    h.accept(&h.carol, &o).await;
    h.advance(secs(10));

    let got = h
        .engine
        .throughput(&h.supervisor, &q("desk"), t0(), minute)
        .await
        .unwrap();
    let want = |counts: &[u64]| -> Vec<ThroughputBucket> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &completed)| ThroughputBucket {
                start: t0() + secs(60 * i as i64),
                completed,
            })
            .collect()
    };
    assert_eq!(got, want(&[2, 0, 1]));
    // Read by any role; a queue never used has zeros.
    let idle = h
        .engine
        .throughput(&h.app, &q("idle"), t0(), minute)
        .await
        .unwrap();
    assert_eq!(idle, want(&[0, 0, 0]));
    // 30 s buckets from the one holding 20 s: [0,30) is empty, [30,60)
    // has a (30 s) and b (59 s), [120,150) has c (120 s) and now (130 s).
    let fine = h
        .engine
        .throughput(
            &h.supervisor,
            &q("desk"),
            t0() + secs(20),
            StdDuration::from_secs(30),
        )
        .await
        .unwrap();
    let counts: Vec<u64> = fine.iter().map(|b| b.completed).collect();
    assert_eq!(counts, vec![0, 2, 0, 0, 1]);
    assert_eq!(fine[0].start, t0(), "aligned to the bucket");
    // Refusals.
    for (since, bucket, field) in [
        (t0(), StdDuration::ZERO, "bucket_seconds"),
        (t0(), StdDuration::from_millis(1500), "bucket_seconds"),
        (t0() + secs(3600), minute, "since"),
        (
            t0() - secs(86_400 * 30),
            StdDuration::from_secs(1),
            "bucket_seconds",
        ),
    ] {
        assert_err!(
            h.engine.throughput(&h.supervisor, &q("desk"), since, bucket).await,
            Error::Invalid { field: got, .. } if got == field
        );
    }
}
