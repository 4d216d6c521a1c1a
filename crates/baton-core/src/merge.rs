//! JSON documents compared and combined field by field: the difference of
//! two documents as a list of [`Change`]s, JSON Merge Patch (RFC 7396),
//! and the three-way merge of two concurrent edits of one base.
//!
//! Paths are JSON Pointers (RFC 6901): `/address/city`; `""` is the whole
//! document. Objects are compared and merged member by member, at any
//! depth; everything else — arrays, strings, numbers, `true`/`false`,
//! `null` — is one value, changed as a whole. A member that is absent is
//! not the same as a member that is `null`: both are represented
//! ([`Option<Value>`]), so a removal is never confused with a change to
//! `null`.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// One difference between two versions of a document: what was at `path`
/// before and what is there after. `old` is left out when the member was
/// added, `new` when it was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// JSON Pointer of the member, e.g. `/address/city`.
    pub path: String,
    /// The value before; absent when the member was added.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub old: Option<Value>,
    /// The value after; absent when the member was removed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub new: Option<Value>,
}

/// Reads a member that may be `null` as `Some(Value::Null)`: `None` is
/// kept for a member that is absent (serde's default for `Option` would
/// read `null` as `None` too).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Where two edits of the same base disagree: both changed the member at
/// `path`, to different values (or one removed an object the other
/// changed inside).
#[derive(Debug, Clone, PartialEq)]
pub struct PathConflict {
    /// JSON Pointer of the member.
    pub path: String,
    /// The value in the base; `None` when absent.
    pub base: Option<Value>,
    /// The value in the first edit ("yours").
    pub mine: Option<Value>,
    /// The value in the second edit ("theirs").
    pub theirs: Option<Value>,
}

/// The outcome of [`merge3`]: the merged document, and the paths where
/// the two edits conflict. Where they conflict, `merged` holds *theirs*:
/// with conflicts, `merged` is only good for telling which of *my* changes
/// would have merged cleanly (`diff(theirs, merged)`), never for writing.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge3 {
    /// Base with both edits applied (theirs where they conflict).
    pub merged: Value,
    /// Every conflicting path, in document order.
    pub conflicts: Vec<PathConflict>,
}

/// Escapes one member name for a JSON Pointer (`~` → `~0`, `/` → `~1`).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", escape(key))
}

/// Whether the member at pointer `outer` contains (or is) the member at
/// pointer `inner`.
pub fn contains(outer: &str, inner: &str) -> bool {
    inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

/// The value at a JSON Pointer, or `None` when there is none.
pub fn get<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    doc.pointer(pointer)
}

/// Every difference from `old` to `new`, in document order (members
/// sorted by name). `None` stands for "no document".
pub fn diff(old: Option<&Value>, new: Option<&Value>) -> Vec<Change> {
    let mut out = Vec::new();
    diff_at("", old, new, &mut out);
    out
}

fn keys<'a>(maps: &[Option<&'a Map<String, Value>>]) -> BTreeSet<&'a String> {
    maps.iter().flatten().flat_map(|m| m.keys()).collect()
}

fn diff_at(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    if old == new {
        return;
    }
    if let (Some(Value::Object(a)), Some(Value::Object(b))) = (old, new) {
        for k in keys(&[Some(a), Some(b)]) {
            diff_at(&child(path, k), a.get(k), b.get(k), out);
        }
        return;
    }
    out.push(Change {
        path: path.to_owned(),
        old: old.cloned(),
        new: new.cloned(),
    });
}

/// Applies a JSON Merge Patch (RFC 7396) to `doc`: members of the patch
/// replace those of the document, `null` removes, objects apply
/// recursively.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Merges two edits, `mine` and `theirs`, of the same `base`, member by
/// member at any depth:
///
/// - where one side left a member as it was in the base, the other side's
///   value wins (a change, or a removal);
/// - where both made the same change, it is taken once (not a conflict);
/// - where both changed an object that each still has, its members are
///   merged the same way;
/// - anything else where both changed the member differently is a
///   conflict at that path.
///
/// The merge is symmetric: swapping `mine` and `theirs` gives the same
/// document when there are no conflicts, and the same conflicting paths
/// (with the two values swapped) when there are.
pub fn merge3(base: &Value, mine: &Value, theirs: &Value) -> Merge3 {
    let mut conflicts = Vec::new();
    let merged =
        merge_at("", Some(base), Some(mine), Some(theirs), &mut conflicts).unwrap_or(Value::Null);
    Merge3 { merged, conflicts }
}

fn merge_at(
    path: &str,
    base: Option<&Value>,
    mine: Option<&Value>,
    theirs: Option<&Value>,
    conflicts: &mut Vec<PathConflict>,
) -> Option<Value> {
    if mine == base || mine == theirs {
        return theirs.cloned();
    }
    if theirs == base {
        return mine.cloned();
    }
    if let (Some(Value::Object(b)), Some(Value::Object(m)), Some(Value::Object(t))) =
        (base, mine, theirs)
    {
        let mut out = Map::new();
        for k in keys(&[Some(b), Some(m), Some(t)]) {
            if let Some(v) = merge_at(&child(path, k), b.get(k), m.get(k), t.get(k), conflicts) {
                out.insert(k.clone(), v);
            }
        }
        return Some(Value::Object(out));
    }
    conflicts.push(PathConflict {
        path: path.to_owned(),
        base: base.cloned(),
        mine: mine.cloned(),
        theirs: theirs.cloned(),
    });
    theirs.cloned()
}

/// How deeply arrays and objects nest in `v` (a scalar is 0).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
