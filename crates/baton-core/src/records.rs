//! Versioned records (Fowler's Optimistic Offline Lock): JSON records in
//! collections, each with a version that increases on every write; the
//! history of every version; the settings of a collection; the writes the
//! store carries out, and what a refused write is told.
//!
//! ```text
//!            create (If-None-Match: *)            replace (PUT) / patch (PATCH) / merge
//!  (none) ───────────────────────────► v1 ──► v2 ──► … ──► vn ──delete──► vn+1 (tombstone)
//!                                                                 │
//!                     create again (the version keeps counting) ◄─┘
//! ```
//!
//! A write states the version it was based on. What happens when that is
//! not the current version is the collection's [`ConflictPolicy`]; whether
//! a lock must be held is its [`LockPolicy`]. The rules are in
//! [`crate::record_rules`], the JSON comparisons in [`crate::merge`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::merge::{Change, present};
use crate::{CollectionName, Conflict, Error, FencingToken, LockId, RecordKey, Result};

/// Identifier of a conflict object (a refused write, kept).
pub type ConflictId = i64;

/// The version of a record: 1 when created, +1 on every write (a delete
/// too). Never reused for a key, even after a delete and re-create, so an
/// `ETag` from before the delete never matches again.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64)]
pub struct Version(pub i64);

impl Version {
    /// The version after this one.
    pub fn next(self) -> Self {
        Version(self.0 + 1)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Limits on records, shared by every interface.
pub mod record_limits {
    /// Largest record data, bytes of JSON (a merge patch too).
    pub const MAX_DATA_BYTES: usize = 64 * 1024;
    /// Deepest nesting of objects and arrays in record data.
    pub const MAX_DEPTH: usize = 32;
    /// Most entity tags in one `If-Match`.
    pub const MAX_TAGS: usize = 32;
    /// Largest page of a record listing or a history.
    pub const MAX_PAGE: u32 = 1000;
    /// How long a refused write is kept as a conflict object, seconds
    /// (7 days).
    pub const CONFLICT_RETENTION_SECONDS: i64 = 7 * 86_400;
}

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $s:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),*
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name used in the API and database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s),*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        Error::invalid($field, format!("{s:?}: one of {}", all.join(", ")))
                    })
            }
        }
    };
}

str_enum!(
    /// What a collection does with a write based on a version that is no
    /// longer the current one.
    ConflictPolicy, "conflict_policy" {
        /// Refuse it (412), nothing written; the answer shows the current
        /// record and what changed since the caller's version. The default.
        #[default]
        Reject = "reject",
        /// Merge a stale partial update (PATCH) three-way with what
        /// changed meanwhile when the changes touch different fields;
        /// refuse it with the conflicting fields (409) when they do not.
        /// A stale full replace is refused as under `reject`.
        Merge = "merge",
        /// Refuse nothing: the write wins (recorded as `forced`), and every
        /// version stays in the history.
        LastWriteWins = "last_write_wins",
    }
);

str_enum!(
    /// Whether writing (and reading) a record requires holding a lock of the
    /// lock manager on the resource `{collection}/{key}`.
    LockPolicy, "lock_policy" {
        /// No lock needed. The default.
        #[default]
        None = "none",
        /// Writing requires a live exclusive lock held by the writer.
        Write = "write",
        /// Reading requires it too (Fowler's exclusive read lock).
        ReadWrite = "read_write",
    }
);

str_enum!(
    /// The kind of write that made a version.
    WriteKind, "kind" {
        /// The first version (or the first after a delete).
        #[default]
        Create = "create",
        /// A full replace based on the current version.
        Replace = "replace",
        /// A partial update (JSON Merge Patch) based on the current
        /// version.
        Patch = "patch",
        /// A stale partial update merged three-way with the versions made
        /// since its base.
        Merge = "merge",
        /// A delete based on the current version: the version is a
        /// tombstone.
        Delete = "delete",
        /// A write that overrode the current version without being based on
        /// it (`last_write_wins`, or `If-Match: *`); a forced delete is a
        /// tombstone too.
        Forced = "forced",
    }
);

/// Settings of one collection. Created with defaults on first use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CollectionConfig {
    /// What a stale write meets.
    pub conflict_policy: ConflictPolicy,
    /// Whether a lock is needed to write (and read).
    pub lock_policy: LockPolicy,
}

/// A record as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Record {
    /// Its collection.
    #[schema(value_type = String)]
    pub collection: CollectionName,
    /// Its key in the collection.
    #[schema(value_type = String)]
    pub key: RecordKey,
    /// The current version (the `ETag`, quoted).
    pub version: Version,
    /// The data: a JSON object.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Who created it (this incarnation, after a delete).
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Who made the current version.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// The latest state of a key as a store keeps it: the record, or its
/// tombstone after a delete (`deleted`, with the version, who and when of
/// the delete, and `data` null).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordHead {
    /// The record as of its latest version.
    pub record: Record,
    /// Whether the latest version is a delete.
    pub deleted: bool,
}

impl RecordHead {
    /// The record, unless deleted.
    pub fn live(&self) -> Option<&Record> {
        (!self.deleted).then_some(&self.record)
    }
}

/// The versions a merge combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MergedFrom {
    /// The version the writer's change was based on.
    pub base: Version,
    /// The version it was merged with (the current one at the time).
    pub current: Version,
}

/// One version in a record's history. The history is append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordVersion {
    /// The version.
    pub version: Version,
    /// What kind of write made it.
    pub kind: WriteKind,
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The version the writer said it was based on (`If-Match`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_version: Option<Version>,
    /// For a merge: the versions it combined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<MergedFrom>,
    /// Whether this version is a delete (a tombstone).
    pub deleted: bool,
    /// What changed from the previous version, member by member.
    pub changes: Vec<Change>,
    /// The data of this version; left out of history listings (read one
    /// version to get it) and of tombstones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// What a write asserts about the version it replaces (HTTP
/// preconditions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: allowed only under `last_write_wins`.
    None,
    /// `If-Match: *`: the record exists, whatever its version.
    Exists,
    /// `If-Match: "3"` (or a list): the current version is one of these.
    Matches(Vec<Version>),
    /// `If-None-Match: *`: the record does not exist (create only).
    Absent,
}

/// What a write does.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replace the data (or create the record) with this object.
    Put(Value),
    /// Apply this JSON Merge Patch (RFC 7396) to the data.
    Patch(Value),
    /// Delete the record (a tombstone version).
    Delete,
}

impl WriteOp {
    /// `put`, `patch` or `delete`.
    pub fn method(&self) -> WriteMethod {
        match self {
            WriteOp::Put(_) => WriteMethod::Put,
            WriteOp::Patch(_) => WriteMethod::Patch,
            WriteOp::Delete => WriteMethod::Delete,
        }
    }

    /// The body sent with the write, if any.
    pub fn body(&self) -> Option<&Value> {
        match self {
            WriteOp::Put(v) | WriteOp::Patch(v) => Some(v),
            WriteOp::Delete => None,
        }
    }
}

str_enum!(
    /// The HTTP method of a write, lower case.
    WriteMethod, "method" {
        /// Full replace or create.
        #[default]
        Put = "put",
        /// Partial update.
        Patch = "patch",
        /// Delete.
        Delete = "delete",
    }
);

/// Checks record data or a merge patch: a JSON object of bounded size and
/// depth.
pub fn check_data(field: &str, v: &Value) -> Result<()> {
    if !v.is_object() {
        return Err(Error::invalid(field, "must be a JSON object"));
    }
    let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > record_limits::MAX_DATA_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "{size} bytes of JSON; at most {} allowed",
                record_limits::MAX_DATA_BYTES
            ),
        ));
    }
    let depth = crate::merge::depth(v);
    if depth > record_limits::MAX_DEPTH {
        return Err(Error::invalid(
            field,
            format!(
                "nested {depth} levels deep; at most {} allowed",
                record_limits::MAX_DEPTH
            ),
        ));
    }
    Ok(())
}

/// A write, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordWrite {
    /// The collection.
    pub collection: CollectionName,
    /// The record's key.
    pub key: RecordKey,
    /// What to do.
    pub op: WriteOp,
    /// The version it is based on.
    pub precondition: Precondition,
    /// Who writes (the engine sets it to the caller).
    pub actor: String,
    /// The lock the writer holds on `{collection}/{key}`, where the
    /// collection's lock policy requires one.
    pub lock: Option<LockId>,
}

impl RecordWrite {
    /// Validates a write: data and patches are JSON objects within
    /// [`record_limits`]; `If-None-Match: *` only creates (PUT); a list of
    /// versions is 1 to 32 long.
    pub fn new(
        collection: CollectionName,
        key: RecordKey,
        op: WriteOp,
        precondition: Precondition,
        lock: Option<LockId>,
    ) -> Result<Self> {
        match &op {
            WriteOp::Put(v) => check_data("data", v)?,
            WriteOp::Patch(v) => check_data("patch", v)?,
            WriteOp::Delete => {}
        }
        match &precondition {
            Precondition::Absent if !matches!(op, WriteOp::Put(_)) => {
                return Err(Error::invalid(
                    "If-None-Match",
                    "`If-None-Match: *` creates a record, which only PUT does",
                ));
            }
            Precondition::Matches(vs) if vs.is_empty() || vs.len() > record_limits::MAX_TAGS => {
                return Err(Error::invalid(
                    "If-Match",
                    format!("1 to {} versions", record_limits::MAX_TAGS),
                ));
            }
            _ => {}
        }
        Ok(Self {
            collection,
            key,
            op,
            precondition,
            actor: String::new(),
            lock,
        })
    }

    /// The lock resource this write needs, `{collection}/{key}`.
    pub fn resource(&self) -> String {
        format!("{}/{}", self.collection, self.key)
    }
}

/// The answer to a successful write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Written {
    /// The record as written (for a delete: the tombstone's version, who
    /// and when; data null).
    #[serde(flatten)]
    pub record: Record,
    /// What kind of write it was.
    pub kind: WriteKind,
    /// When the write was merged: from which versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<MergedFrom>,
    /// JSON Pointers of the members this write changed (what live
    /// `record.changed` events carry); not part of the HTTP answer.
    #[serde(skip)]
    pub changed: Vec<String>,
}

/// A change made since the caller's version, and who made it last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeSince {
    /// JSON Pointer of the member.
    pub path: String,
    /// Its value in the caller's version; absent when it did not exist.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub old: Option<Value>,
    /// Its value now; absent when removed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub new: Option<Value>,
    /// Who changed it last.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// In which version.
    pub version: Version,
}

/// A member both the caller and someone else changed, differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldConflict {
    /// JSON Pointer of the member.
    pub path: String,
    /// Its value in the caller's base version; absent when it did not
    /// exist.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub base: Option<Value>,
    /// The caller's value; absent when the caller removed it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub yours: Option<Value>,
    /// The value now; absent when removed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub theirs: Option<Value>,
    /// Who made theirs.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// In which version.
    pub version: Version,
}

/// Why a write based on a version was refused (412): the record changed
/// since that version (or, for a create, the record exists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaleWrite {
    /// The versions the caller said it was based on; empty for a create
    /// (`If-None-Match: *`).
    pub presented: Vec<Version>,
    /// The record as it is now: data, version, who and when.
    pub current: Record,
    /// What changed since the caller's version (empty for a create, or
    /// when the caller's version never existed).
    pub changed: Vec<ChangeSince>,
    /// The refused write, kept (set by the engine).
    pub conflict: Option<ConflictId>,
}

impl StaleWrite {
    /// A sentence for messages.
    pub fn describe(&self) -> String {
        let r = &self.current;
        let what = if self.presented.is_empty() {
            format!("record {}/{} already exists", r.collection, r.key)
        } else {
            let presented: Vec<String> = self.presented.iter().map(|v| v.to_string()).collect();
            format!(
                "record {}/{} is at version {}, not {}",
                r.collection,
                r.key,
                r.version,
                presented.join(" or ")
            )
        };
        let mut s = format!(
            "{what}: last changed by {} at {}",
            r.updated_by,
            r.updated_at.to_rfc3339()
        );
        if !self.changed.is_empty() {
            let fields: Vec<String> = self
                .changed
                .iter()
                .map(|c| format!("{} (by {})", c.path, c.by))
                .collect();
            s.push_str(&format!("; changed since: {}", fields.join(", ")));
        }
        s
    }
}

/// Why a stale partial update could not be merged (409): the caller and
/// others changed the same members differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeConflicts {
    /// The caller's base version.
    pub base: Version,
    /// The record as it is now.
    pub current: Record,
    /// Each member changed differently on both sides.
    pub conflicts: Vec<FieldConflict>,
    /// The caller's changes that did merge cleanly (from the current
    /// value to the caller's).
    pub merged: Vec<Change>,
    /// The refused write, kept (set by the engine).
    pub conflict: Option<ConflictId>,
}

impl MergeConflicts {
    /// A sentence for messages.
    pub fn describe(&self) -> String {
        let fields: Vec<String> = self
            .conflicts
            .iter()
            .map(|c| format!("{} (changed by {} in version {})", c.path, c.by, c.version))
            .collect();
        format!(
            "your change of record {}/{} from version {} conflicts with version {}: {}",
            self.current.collection,
            self.current.key,
            self.base,
            self.current.version,
            fields.join(", ")
        )
    }
}

/// Why an access to a record was refused under its collection's lock
/// policy (423): no lock named, or the lock named is not a live exclusive
/// lock of the caller covering the record, or its fencing token is older
/// than the newest granted on the record's resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRequired {
    /// The resource, `{collection}/{key}`.
    pub resource: String,
    /// The lock the caller named, if any.
    pub lock: Option<LockId>,
    /// What is wrong, for people.
    pub reason: String,
    /// Who holds the resource now (live locks), if anyone.
    pub holders: Vec<Conflict>,
    /// The named lock's fencing token.
    pub presented: Option<FencingToken>,
    /// The newest fencing token granted on the resource.
    pub current: FencingToken,
}

impl LockRequired {
    /// A sentence for messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{}: {}", self.resource, self.reason);
        for h in &self.holders {
            s.push_str(&format!(
                "; locked {} by {} (lock {}) until {}",
                h.mode,
                h.holder,
                h.lock.map_or_else(|| "?".to_owned(), |l| l.to_string()),
                h.expires_at.to_rfc3339()
            ));
        }
        s
    }
}

/// Why a write was refused, as kept in a conflict object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Stale version (412), or create on an existing key.
    PreconditionFailed,
    /// Overlapping changes (409).
    MergeConflict,
}

/// A refused write, kept so that the page or client that sent it can
/// rebuild its form: what was sent, against which version, and why it was
/// refused. Readable by its author for
/// [`record_limits::CONFLICT_RETENTION_SECONDS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConflictObject {
    /// Identifier (0 until stored).
    pub id: ConflictId,
    /// The collection.
    #[schema(value_type = String)]
    pub collection: CollectionName,
    /// The record's key.
    #[schema(value_type = String)]
    pub key: RecordKey,
    /// Who sent the write.
    pub author: String,
    /// When it was refused.
    pub at: DateTime<Utc>,
    /// When this object is forgotten.
    pub expires_at: DateTime<Utc>,
    /// How it was sent.
    pub method: WriteMethod,
    /// The versions it was based on (`If-Match`); empty for a create.
    pub base_versions: Vec<Version>,
    /// What was sent: the data (PUT) or the merge patch (PATCH); absent
    /// for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
    /// Why it was refused.
    pub refusal: Refusal,
    /// The record's version when it was refused.
    pub current_version: Version,
    /// For a stale write: what had changed since its version.
    pub changed: Vec<ChangeSince>,
    /// For a merge conflict: the conflicting members.
    pub conflicts: Vec<FieldConflict>,
    /// For a merge conflict: the changes that merged cleanly.
    pub merged: Vec<Change>,
}

/// A page of a collection's records, by key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordFilter {
    /// Page size.
    pub limit: u32,
    /// Records with a key after this one (keyset paging, byte order).
    pub after: Option<RecordKey>,
}

/// A page of a record's history, by version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryFilter {
    /// Page size.
    pub limit: u32,
    /// Versions after this one.
    pub after: Option<Version>,
}

/// Validates a page size of records or history.
pub fn check_record_page(limit: u32) -> Result<()> {
    if (1..=record_limits::MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(Error::invalid(
            "limit",
            format!("must be 1..={}", record_limits::MAX_PAGE),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> (CollectionName, RecordKey) {
        (
            CollectionName::new("clients").unwrap(),
            RecordKey::new("bob").unwrap(),
        )
    }

    #[test]
    fn policies_round_trip() {
        for p in ConflictPolicy::ALL {
            assert_eq!(p.as_str().parse::<ConflictPolicy>().unwrap(), *p);
            assert_eq!(serde_json::to_value(p).unwrap(), json!(p.as_str()));
        }
        for p in LockPolicy::ALL {
            assert_eq!(p.as_str().parse::<LockPolicy>().unwrap(), *p);
        }
        assert!("first_write_wins".parse::<ConflictPolicy>().is_err());
        let c: CollectionConfig =
            serde_json::from_value(json!({"conflict_policy": "merge"})).unwrap();
        assert_eq!(c.conflict_policy, ConflictPolicy::Merge);
        assert_eq!(c.lock_policy, LockPolicy::None);
        assert!(serde_json::from_value::<CollectionConfig>(json!({"x": 1})).is_err());
    }

    #[test]
    fn writes_are_validated() {
        let (c, k) = names();
        let w = |op, pre| RecordWrite::new(c.clone(), k.clone(), op, pre, None);
        assert!(w(WriteOp::Put(json!({"a": 1})), Precondition::Absent).is_ok());
        assert!(w(WriteOp::Put(json!([1])), Precondition::Absent).is_err());
        assert!(w(WriteOp::Patch(json!("x")), Precondition::Exists).is_err());
        assert!(w(WriteOp::Patch(json!({})), Precondition::Absent).is_err());
        assert!(w(WriteOp::Delete, Precondition::Absent).is_err());
        assert!(w(WriteOp::Delete, Precondition::Matches(vec![])).is_err());
        let big = json!({"a": "x".repeat(record_limits::MAX_DATA_BYTES)});
        let e = w(WriteOp::Put(big), Precondition::Absent).unwrap_err();
        assert!(matches!(e, Error::Invalid { ref field, .. } if field == "data"));
        let mut deep = json!(1);
        for _ in 0..=record_limits::MAX_DEPTH {
            deep = json!({ "a": deep });
        }
        assert!(w(WriteOp::Put(deep), Precondition::Absent).is_err());
        assert_eq!(
            w(WriteOp::Delete, Precondition::Exists).unwrap().resource(),
            "clients/bob"
        );
    }
}
