//! The merge, diff and merge patch: worked examples, the RFC 7396 test
//! vectors, and property tests of the three-way merge against an
//! independent statement of when two edits conflict.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn change(path: &str, old: Option<Value>, new: Option<Value>) -> Change {
    Change {
        path: path.into(),
        old,
        new,
    }
}

#[test]
fn diff_descends_objects_and_names_paths_as_pointers() {
    let old = json!({"name": "Bob", "address": {"city": "Lyon", "zip": "69001"}, "tags": [1, 2], "a/b": 1});
    let new = json!({"name": "Bob", "address": {"city": "Paris", "zip": "69001"}, "tags": [1], "phone": "06", "a/b": null});
    assert_eq!(
        diff(Some(&old), Some(&new)),
        vec![
            change("/a~1b", Some(json!(1)), Some(Value::Null)),
            change("/address/city", Some(json!("Lyon")), Some(json!("Paris"))),
            change("/phone", None, Some(json!("06"))),
            change("/tags", Some(json!([1, 2])), Some(json!([1]))),
        ]
    );
    assert!(diff(Some(&old), Some(&old)).is_empty());
    assert_eq!(
        diff(None, Some(&json!({"a": 1}))),
        vec![change("", None, Some(json!({"a": 1})))]
    );
}

#[test]
fn change_serializes_absent_and_null_differently() {
    let c = change("/a", None, Some(Value::Null));
    let j = serde_json::to_value(&c).unwrap();
    assert_eq!(j, json!({"path": "/a", "new": null}));
    let back: Change = serde_json::from_value(j).unwrap();
    assert_eq!(back, c);
}

#[test]
fn contains_respects_segment_boundaries() {
    assert!(contains("", "/a"));
    assert!(contains("/a", "/a"));
    assert!(contains("/a", "/a/b"));
    assert!(!contains("/a", "/ab"));
    assert!(!contains("/a/b", "/a"));
}

/// RFC 7396, Appendix A.
#[test]
fn merge_patch_follows_rfc_7396() {
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (
            json!({"a":"b","b":"c"}),
            json!({"a":null}),
            json!({"b":"c"}),
        ),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
        (
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        ),
        (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a":"b"}), json!(["c"]), json!(["c"])),
        (json!({"a":"foo"}), json!(null), json!(null)),
        (json!({"a":"foo"}), json!("bar"), json!("bar")),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
        (
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        ),
    ];
    for (doc, patch, expected) in cases {
        let mut d = doc.clone();
        merge_patch(&mut d, &patch);
        assert_eq!(d, expected, "{doc} + {patch}");
    }
}

/// Joe and Fred: disjoint fields merge.
#[test]
fn disjoint_changes_merge() {
    let base = json!({"name": "Bob", "address": "1 Old St", "phone": null});
    let fred = json!({"name": "Bob", "address": "2 New Ave", "phone": null});
    let joe = json!({"name": "Bob", "address": "1 Old St", "phone": "555-0101"});
    let m = merge3(&base, &joe, &fred);
    assert!(m.conflicts.is_empty());
    assert_eq!(
        m.merged,
        json!({"name": "Bob", "address": "2 New Ave", "phone": "555-0101"})
    );
}

/// The two raises: the same field, different results.
#[test]
fn overlapping_changes_conflict_and_identical_ones_do_not() {
    let base = json!({"salary": 10000, "grade": 3});
    let local = json!({"salary": 12000, "grade": 4});
    let corporate = json!({"salary": 10500, "grade": 4});
    let m = merge3(&base, &corporate, &local);
    assert_eq!(
        m.conflicts,
        vec![PathConflict {
            path: "/salary".into(),
            base: Some(json!(10000)),
            mine: Some(json!(10500)),
            theirs: Some(json!(12000)),
        }]
    );
    // grade: the same change on both sides.
    assert_eq!(m.merged, json!({"salary": 12000, "grade": 4}));
}

#[test]
fn removing_an_object_the_other_side_changed_inside_conflicts() {
    let base = json!({"address": {"city": "Lyon", "zip": "1"}});
    let mine = json!({});
    let theirs = json!({"address": {"city": "Paris", "zip": "1"}});
    let m = merge3(&base, &mine, &theirs);
    assert_eq!(m.conflicts.len(), 1);
    assert_eq!(m.conflicts[0].path, "/address");
    // Nested members changed apart merge.
    let mine = json!({"address": {"city": "Lyon", "zip": "2"}});
    let m = merge3(&base, &mine, &theirs);
    assert!(m.conflicts.is_empty());
    assert_eq!(m.merged, json!({"address": {"city": "Paris", "zip": "2"}}));
}

#[test]
fn arrays_are_whole_values() {
    let base = json!({"tags": [1, 2]});
    let m = merge3(
        &base,
        &json!({"tags": [1, 2, 3]}),
        &json!({"tags": [0, 1, 2]}),
    );
    assert_eq!(m.conflicts.len(), 1);
    assert_eq!(m.conflicts[0].path, "/tags");
}

#[test]
fn depth_counts_nesting() {
    assert_eq!(depth(&json!(1)), 0);
    assert_eq!(depth(&json!({})), 1);
    assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
}

// ---- properties ----

fn key() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(String::from)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(1)),
        Just(Value::Null),
        Just(json!("x")),
        Just(json!([1, 2])),
        Just(json!(true)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 3, |inner| {
        prop::collection::btree_map(key(), inner, 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Sets (`Some`) or removes (`None`) the member at `path` (member names),
/// turning whatever stands in the way into objects.
fn edit(doc: &mut Value, path: &[String], to: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for k in parents {
        let map = match at {
            Value::Object(m) => m,
            other => {
                *other = json!({});
                other.as_object_mut().unwrap()
            }
        };
        at = map.entry(k.clone()).or_insert_with(|| json!({}));
    }
    if !at.is_object() {
        *at = json!({});
    }
    let map = at.as_object_mut().unwrap();
    match to {
        Some(v) => {
            map.insert(last.clone(), v);
        }
        None => {
            map.remove(last);
        }
    }
}

fn edits() -> impl Strategy<Value = Vec<(Vec<String>, Option<Value>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(key(), 1..=3),
            prop::option::weighted(0.8, value()),
        ),
        0..4,
    )
}

fn edited(base: &Value, edits: Vec<(Vec<String>, Option<Value>)>) -> Value {
    let mut doc = base.clone();
    for (path, to) in edits {
        edit(&mut doc, &path, to);
    }
    doc
}

/// When two edits conflict, stated independently of the merge: some
/// change of one side and some change of the other are at the same
/// member or one inside the other, and the two sides disagree on the
/// outer of the two members.
fn conflict_expected(base: &Value, mine: &Value, theirs: &Value) -> bool {
    let dm = diff(Some(base), Some(mine));
    let dt = diff(Some(base), Some(theirs));
    dm.iter().any(|p| {
        dt.iter().any(|q| {
            let outer = if contains(&p.path, &q.path) {
                &p.path
            } else if contains(&q.path, &p.path) {
                &q.path
            } else {
                return false;
            };
            get(mine, outer) != get(theirs, outer)
        })
    })
}

fn as_set(changes: Vec<Change>) -> BTreeSet<String> {
    changes
        .into_iter()
        .map(|c| serde_json::to_string(&c).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The merge is applied (no conflicts) exactly when no change of one
    /// side overlaps a different change of the other; then it keeps every
    /// change of both sides and nothing else; it reports the same paths
    /// whichever side is "mine"; and what it reports is what is there.
    #[test]
    fn three_way_merge(base in object(), em in edits(), et in edits()) {
        let mine = edited(&base, em);
        let theirs = edited(&base, et);
        let m = merge3(&base, &mine, &theirs);

        prop_assert_eq!(!m.conflicts.is_empty(), conflict_expected(&base, &mine, &theirs));

        for c in &m.conflicts {
            prop_assert_eq!(c.base.as_ref(), get(&base, &c.path));
            prop_assert_eq!(c.mine.as_ref(), get(&mine, &c.path));
            prop_assert_eq!(c.theirs.as_ref(), get(&theirs, &c.path));
            prop_assert!(c.mine != c.theirs, "identical changes are not a conflict");
        }

        let swapped = merge3(&base, &theirs, &mine);
        let paths = |m: &Merge3| m.conflicts.iter().map(|c| c.path.clone()).collect::<Vec<_>>();
        prop_assert_eq!(paths(&m), paths(&swapped));
        for (a, b) in m.conflicts.iter().zip(&swapped.conflicts) {
            prop_assert_eq!((&a.mine, &a.theirs), (&b.theirs, &b.mine));
        }

        if m.conflicts.is_empty() {
            prop_assert_eq!(&m.merged, &swapped.merged);
            let dm = diff(Some(&base), Some(&mine));
            let dt = diff(Some(&base), Some(&theirs));
            for c in dm.iter().chain(&dt) {
                prop_assert_eq!(get(&m.merged, &c.path), c.new.as_ref(), "change {:?} dropped", c);
            }
            let mut both = as_set(dm);
            both.extend(as_set(dt));
            prop_assert_eq!(as_set(diff(Some(&base), Some(&m.merged))), both);
        }
    }

    /// Merging an edit with the unchanged base, or with itself, gives the
    /// edit.
    #[test]
    fn merging_with_no_change_or_the_same_change(base in object(), e in edits()) {
        let mine = edited(&base, e);
        let m = merge3(&base, &mine, &base);
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(&m.merged, &mine);
        let m = merge3(&base, &mine, &mine);
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(&m.merged, &mine);
    }

    /// A merge patch computed from a diff reproduces the target (for
    /// documents without nulls, which a merge patch cannot set).
    #[test]
    fn diff_and_merge_patch_agree(a in object(), e in edits()) {
        let b = edited(&a, e);
        prop_assume!(!format!("{a}{b}").contains("null"));
        let mut patch = json!({});
        for c in diff(Some(&a), Some(&b)) {
            let segments: Vec<String> = c.path.split('/').skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
            edit(&mut patch, &segments, Some(c.new.unwrap_or(Value::Null)));
        }
        let mut patched = a.clone();
        merge_patch(&mut patched, &patch);
        prop_assert_eq!(patched, b);
    }
}
