//! The record rules over a store in memory that does what every store
//! does (plan, load the history if asked, resolve, save): every kind of
//! write under every policy, and every refusal.

use chrono::{DateTime, Duration};
use serde_json::{Value, json};

use super::*;
use crate::{CollectionName, LockPolicy, RecordKey};

fn t0() -> Timestamp {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// One key of one collection, as a store keeps it.
#[derive(Default)]
struct Mem {
    head: Option<RecordHead>,
    versions: Vec<RecordVersion>,
    config: CollectionConfig,
    clock: i64,
}

impl Mem {
    fn with(policy: ConflictPolicy) -> Self {
        Mem {
            config: CollectionConfig {
                conflict_policy: policy,
                lock_policy: LockPolicy::None,
            },
            ..Mem::default()
        }
    }

    fn write(&mut self, who: &str, op: WriteOp, pre: Precondition) -> Result<crate::Written> {
        self.clock += 60;
        let now = t0() + Duration::seconds(self.clock);
        let mut w = RecordWrite::new(
            CollectionName::new("clients").unwrap(),
            RecordKey::new("bob").unwrap(),
            op,
            pre,
            None,
        )?;
        w.actor = who.into();
        let applied = match plan(self.head.as_ref(), &self.config, &w, now)? {
            Plan::Apply(a) => *a,
            Plan::Stale { base } => {
                let since: Vec<RecordVersion> = self
                    .versions
                    .iter()
                    .filter(|v| base.is_some_and(|b| v.version >= b))
                    .map(|v| RecordVersion {
                        data: if Some(v.version) == base {
                            v.data.clone()
                        } else {
                            None
                        },
                        ..v.clone()
                    })
                    .collect();
                let head = self.head.as_ref().expect("a stale write has a head");
                resolve(head, &self.config, &w, base, &since, now)?
            }
        };
        assert_eq!(applied.record.version, applied.version.version);
        assert_eq!(
            applied.version.version,
            self.head
                .as_ref()
                .map_or(Version(1), |h| h.record.version.next()),
            "versions count up by one"
        );
        self.head = Some(RecordHead {
            record: applied.record.clone(),
            deleted: applied.deleted,
        });
        self.versions.push(applied.version.clone());
        Ok(applied.written())
    }

    fn data(&self) -> &Value {
        &self.head.as_ref().unwrap().record.data
    }

    fn kinds(&self) -> Vec<(i64, WriteKind, Option<i64>)> {
        self.versions
            .iter()
            .map(|v| (v.version.0, v.kind, v.base_version.map(|b| b.0)))
            .collect()
    }
}

fn put(v: Value) -> WriteOp {
    WriteOp::Put(v)
}

fn patch(v: Value) -> WriteOp {
    WriteOp::Patch(v)
}

fn at(v: i64) -> Precondition {
    Precondition::Matches(vec![Version(v)])
}

fn bob() -> Value {
    json!({"name": "Bob", "address": "1 Old St", "phone": null})
}

#[test]
fn create_replace_patch_delete_and_create_again() {
    let mut m = Mem::with(ConflictPolicy::Reject);
    let w = m.write("app", put(bob()), Precondition::Absent).unwrap();
    assert_eq!((w.record.version, w.kind), (Version(1), WriteKind::Create));
    assert_eq!(m.versions[0].changes.len(), 3, "create lists every member");
    m.write("fred", put(json!({"name": "Bob"})), at(1)).unwrap();
    let w = m
        .write("joe", patch(json!({"phone": "555"})), at(2))
        .unwrap();
    assert_eq!(w.record.data, json!({"name": "Bob", "phone": "555"}));
    assert_eq!(w.record.created_by, "app");
    assert_eq!(w.record.updated_by, "joe");
    m.write("fred", WriteOp::Delete, at(3)).unwrap();
    assert!(m.head.as_ref().unwrap().deleted);
    // Gone: 404 whatever the precondition, including a stale one.
    for pre in [at(3), at(4), Precondition::Exists] {
        let e = m.write("joe", patch(json!({"a": 1})), pre).unwrap_err();
        assert!(
            matches!(e, Error::NotFound { ref id, .. } if id.contains("deleted in version 4 by fred")),
            "{e}"
        );
    }
    let w = m
        .write("joe", put(json!({"name": "Bob 2"})), Precondition::Absent)
        .unwrap();
    assert_eq!(w.record.version, Version(5), "the version keeps counting");
    assert_eq!(w.record.created_by, "joe");
    use WriteKind::*;
    assert_eq!(
        m.kinds(),
        vec![
            (1, Create, None),
            (2, Replace, Some(1)),
            (3, Patch, Some(2)),
            (4, Delete, Some(3)),
            (5, Create, None)
        ]
    );
    assert_eq!(
        m.versions[3].changes,
        vec![
            Change {
                path: "/name".into(),
                old: Some(json!("Bob")),
                new: None
            },
            Change {
                path: "/phone".into(),
                old: Some(json!("555")),
                new: None
            },
        ]
    );
}

#[test]
fn a_missing_record_is_not_found_before_any_precondition() {
    for policy in ConflictPolicy::ALL {
        let mut m = Mem::with(*policy);
        for (op, pre) in [
            (put(json!({})), at(1)),
            (put(json!({})), Precondition::Exists),
            (patch(json!({})), at(1)),
            (patch(json!({})), Precondition::None),
            (WriteOp::Delete, at(1)),
            (WriteOp::Delete, Precondition::None),
        ] {
            let e = m.write("joe", op, pre).unwrap_err();
            assert!(
                matches!(e, Error::NotFound { what: "record", .. }),
                "{policy}: {e}"
            );
        }
        assert!(m.versions.is_empty());
    }
}

#[test]
fn a_precondition_is_required_except_under_last_write_wins() {
    for policy in [ConflictPolicy::Reject, ConflictPolicy::Merge] {
        let mut m = Mem::with(policy);
        let e = m.write("app", put(bob()), Precondition::None).unwrap_err();
        assert!(matches!(e, Error::PreconditionRequired(_)), "{e}");
        m.write("app", put(bob()), Precondition::Absent).unwrap();
        for op in [put(bob()), patch(json!({})), WriteOp::Delete] {
            let e = m.write("app", op, Precondition::None).unwrap_err();
            assert!(matches!(e, Error::PreconditionRequired(_)), "{e}");
        }
        assert_eq!(m.versions.len(), 1);
    }
    let mut m = Mem::with(ConflictPolicy::LastWriteWins);
    let w = m.write("app", put(bob()), Precondition::None).unwrap();
    assert_eq!(w.kind, WriteKind::Create);
    let w = m
        .write("app", patch(json!({"phone": "1"})), Precondition::None)
        .unwrap();
    assert_eq!(w.kind, WriteKind::Forced);
}

#[test]
fn create_on_an_existing_key_is_refused_with_the_record() {
    let mut m = Mem::with(ConflictPolicy::LastWriteWins);
    m.write("app", put(bob()), Precondition::Absent).unwrap();
    let e = m
        .write("joe", put(json!({})), Precondition::Absent)
        .unwrap_err();
    let Error::PreconditionFailed(s) = e else {
        panic!("{e}")
    };
    assert!(s.presented.is_empty());
    assert_eq!(s.current.version, Version(1));
    assert!(s.to_owned().describe().contains("already exists"));
}

/// Joe and Fred under `reject`: Joe's stale save is refused and told
/// exactly what Fred changed.
#[test]
fn reject_refuses_a_stale_write_with_what_changed_since() {
    let mut m = Mem::with(ConflictPolicy::Reject);
    m.write("app", put(bob()), Precondition::Absent).unwrap();
    m.write("fred", patch(json!({"address": "2 New Ave"})), at(1))
        .unwrap();
    m.write("carol", patch(json!({"name": "Robert"})), at(2))
        .unwrap();
    let joe = json!({"name": "Bob", "address": "1 Old St", "phone": "555"});
    let e = m.write("joe", put(joe), at(1)).unwrap_err();
    let Error::PreconditionFailed(s) = e else {
        panic!("{e}")
    };
    assert_eq!(s.presented, vec![Version(1)]);
    assert_eq!(s.current.version, Version(3));
    let changed: Vec<(&str, &Value, &str, i64)> = s
        .changed
        .iter()
        .map(|c| {
            (
                c.path.as_str(),
                c.new.as_ref().unwrap(),
                c.by.as_str(),
                c.version.0,
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            ("/address", &json!("2 New Ave"), "fred", 2),
            ("/name", &json!("Robert"), "carol", 3)
        ]
    );
    assert_eq!(s.changed[0].old, Some(json!("1 Old St")));
    assert_eq!(m.versions.len(), 3, "nothing written");
    // A stale PATCH is refused the same way.
    let e = m
        .write("joe", patch(json!({"phone": "555"})), at(1))
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed(_)));
    // Joe re-applies on the current version.
    m.write("joe", patch(json!({"phone": "555"})), at(3))
        .unwrap();
    assert_eq!(
        m.data(),
        &json!({"name": "Robert", "address": "2 New Ave", "phone": "555"})
    );
}

/// Joe and Fred under `merge`: Joe's stale PATCH keeps Fred's address.
#[test]
fn merge_applies_disjoint_changes_and_says_from_which_versions() {
    let mut m = Mem::with(ConflictPolicy::Merge);
    m.write("app", put(bob()), Precondition::Absent).unwrap();
    m.write("fred", patch(json!({"address": "2 New Ave"})), at(1))
        .unwrap();
    // Joe's form sends every field; only the phone differs from his base.
    let joe = json!({"name": "Bob", "address": "1 Old St", "phone": "555"});
    let w = m.write("joe", patch(joe), at(1)).unwrap();
    assert_eq!(w.kind, WriteKind::Merge);
    assert_eq!(
        w.merged_from,
        Some(MergedFrom {
            base: Version(1),
            current: Version(2)
        })
    );
    assert_eq!(
        m.data(),
        &json!({"name": "Bob", "address": "2 New Ave", "phone": "555"})
    );
    let v3 = &m.versions[2];
    assert_eq!(v3.base_version, Some(Version(1)));
    assert_eq!(
        v3.changes,
        vec![Change {
            path: "/phone".into(),
            old: Some(Value::Null),
            new: Some(json!("555"))
        }]
    );
    // A stale PUT is not merged.
    let e = m.write("joe", put(bob()), at(2)).unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e}");
}

/// The two raises under `merge`: a conflict naming the field, both values
/// and who made theirs; the clean change is listed apart.
#[test]
fn merge_refuses_overlapping_changes_with_the_conflicts() {
    let mut m = Mem::with(ConflictPolicy::Merge);
    m.write("app", put(json!({"salary": 10000})), Precondition::Absent)
        .unwrap();
    m.write("local-hr", patch(json!({"salary": 12000})), at(1))
        .unwrap();
    let e = m
        .write(
            "corporate-hr",
            patch(json!({"salary": 10500, "note": "company bonus"})),
            at(1),
        )
        .unwrap_err();
    let Error::MergeConflict(c) = e else {
        panic!("{e}")
    };
    assert_eq!(c.base, Version(1));
    assert_eq!(c.current.version, Version(2));
    assert_eq!(c.conflicts.len(), 1);
    let f = &c.conflicts[0];
    assert_eq!(
        (
            f.path.as_str(),
            &f.base,
            &f.yours,
            &f.theirs,
            f.by.as_str(),
            f.version
        ),
        (
            "/salary",
            &Some(json!(10000)),
            &Some(json!(10500)),
            &Some(json!(12000)),
            "local-hr",
            Version(2)
        )
    );
    assert_eq!(f.at, m.versions[1].at);
    assert_eq!(
        c.merged,
        vec![Change {
            path: "/note".into(),
            old: None,
            new: Some(json!("company bonus"))
        }]
    );
    assert_eq!(m.versions.len(), 2, "nothing written");
    // The same change on both sides is not a conflict.
    let w = m
        .write("corporate-hr", patch(json!({"salary": 12000})), at(1))
        .unwrap();
    assert_eq!(w.kind, WriteKind::Merge);
    assert_eq!(m.data(), &json!({"salary": 12000}));
}

#[test]
fn merge_needs_one_base_version_and_no_delete_since() {
    let mut m = Mem::with(ConflictPolicy::Merge);
    m.write("app", put(bob()), Precondition::Absent).unwrap();
    m.write("fred", patch(json!({"address": "x"})), at(1))
        .unwrap();
    m.write("fred", patch(json!({"address": "y"})), at(2))
        .unwrap();
    let e = m
        .write(
            "joe",
            patch(json!({"phone": "1"})),
            Precondition::Matches(vec![Version(1), Version(2)]),
        )
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e}");
    m.write("fred", WriteOp::Delete, at(3)).unwrap();
    m.write("fred", put(bob()), Precondition::Absent).unwrap();
    let e = m
        .write("joe", patch(json!({"phone": "1"})), at(3))
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed(_)), "{e}");
    // A version that never existed: stale, nothing to tell.
    let e = m
        .write("joe", patch(json!({"phone": "1"})), at(99))
        .unwrap_err();
    let Error::PreconditionFailed(s) = e else {
        panic!()
    };
    assert!(s.changed.is_empty());
}

/// The two raises under `last_write_wins`: the second wins, recorded as
/// forced; the first stays in the history.
#[test]
fn last_write_wins_forces_and_keeps_every_version() {
    let mut m = Mem::with(ConflictPolicy::LastWriteWins);
    m.write("app", put(json!({"salary": 10000})), Precondition::Absent)
        .unwrap();
    m.write("local-hr", put(json!({"salary": 12000})), at(1))
        .unwrap();
    let w = m
        .write("corporate-hr", put(json!({"salary": 10500})), at(1))
        .unwrap();
    assert_eq!(w.kind, WriteKind::Forced);
    assert_eq!(m.data(), &json!({"salary": 10500}));
    use WriteKind::*;
    assert_eq!(
        m.kinds(),
        vec![
            (1, Create, None),
            (2, Replace, Some(1)),
            (3, Forced, Some(1))
        ]
    );
    assert_eq!(m.versions[1].data, Some(json!({"salary": 12000})));
    let w = m.write("x", WriteOp::Delete, at(1)).unwrap();
    assert_eq!(w.kind, Forced);
    assert!(m.head.as_ref().unwrap().deleted);
}

#[test]
fn if_match_any_and_lists() {
    let mut m = Mem::with(ConflictPolicy::Reject);
    m.write("app", put(bob()), Precondition::Absent).unwrap();
    let w = m
        .write("joe", patch(json!({"a": 1})), Precondition::Exists)
        .unwrap();
    assert_eq!(
        w.kind,
        WriteKind::Forced,
        "If-Match: * is not based on a version"
    );
    let w = m
        .write(
            "joe",
            patch(json!({"a": 2})),
            Precondition::Matches(vec![Version(7), Version(2)]),
        )
        .unwrap();
    assert_eq!((w.kind, w.record.version), (WriteKind::Patch, Version(3)));
    assert_eq!(m.versions[2].base_version, Some(Version(2)));
}

#[test]
fn a_patch_may_not_grow_the_data_past_the_limit() {
    let mut m = Mem::with(ConflictPolicy::Reject);
    let half = "x".repeat(crate::record_limits::MAX_DATA_BYTES / 2 + 10);
    m.write("app", put(json!({"a": half})), Precondition::Absent)
        .unwrap();
    let e = m
        .write("app", patch(json!({"b": half})), at(1))
        .unwrap_err();
    assert!(
        matches!(e, Error::Invalid { ref field, .. } if field == "data"),
        "{e}"
    );
}
