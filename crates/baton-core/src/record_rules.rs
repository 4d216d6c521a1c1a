//! The rules of versioned records, as pure functions.
//!
//! A store runs one write in one transaction:
//!
//! 1. it loads the collection's settings and the key's [`RecordHead`]
//!    (locking the row), and checks the lock where the lock policy asks
//!    for one;
//! 2. it calls [`plan`], which either refuses, or returns the write to
//!    apply ([`Plan::Apply`]), or says the write is stale and the policy
//!    needs the history since the caller's version to decide
//!    ([`Plan::Stale`]);
//! 3. for a stale write it loads those versions and calls [`resolve`],
//!    which merges (`merge` policy, PATCH, changes apart), or refuses with
//!    what changed since, and who changed it;
//! 4. it saves the new head and appends the new version — or, when a rule
//!    refused, writes nothing.
//!
//! The order of the checks follows RFC 9110 §13.2: a record that does not
//! exist answers "not found" before any precondition is looked at; a
//! missing precondition is refused (428) before a present one is
//! evaluated (412).

use serde_json::{Value, json};

use crate::merge::{self, Change};
use crate::{
    ChangeSince, CollectionConfig, Conflict, ConflictPolicy, Error, FieldConflict, Lock, LockId,
    LockMode, LockPolicy, LockRequired, MergeConflicts, MergedFrom, Precondition, Record,
    RecordHead, RecordVersion, RecordWrite, ResourceStatus, Result, StaleWrite, Timestamp, Version,
    WriteKind, WriteOp, check_data, lock_rules,
};

/// Whether an access needs a lock under `policy`: writes under `write`
/// and `read_write`, reads under `read_write`.
pub fn lock_needed(policy: LockPolicy, write: bool) -> bool {
    match policy {
        LockPolicy::None => false,
        LockPolicy::Write => write,
        LockPolicy::ReadWrite => true,
    }
}

/// Checks the lock an access to `resource` names, where the policy needs
/// one ([`lock_needed`]): `named` is the lock as the lock manager has it
/// (`None` when there is no such lock), `status` the resource's state,
/// both read in the access's transaction at `now`. The lock must exist,
/// carry the newest fencing token granted on the resource (an older one
/// means the lock expired or was forced and the resource granted again),
/// be live, be the caller's, cover the resource, and be exclusive.
pub fn check_lock(
    resource: &str,
    caller: &str,
    id: Option<LockId>,
    named: Option<&Lock>,
    status: &ResourceStatus,
    now: Timestamp,
) -> Result<()> {
    let refuse = |reason: String| {
        Err(Error::LockRequired(Box::new(LockRequired {
            resource: resource.to_owned(),
            lock: id,
            reason,
            holders: status
                .holders
                .iter()
                .map(|h| Conflict {
                    resource: status.resource.clone(),
                    holder: h.holder.clone(),
                    mode: h.mode,
                    expires_at: h.expires_at,
                    waiting: false,
                    lock: Some(h.lock),
                })
                .collect(),
            presented: named.map(|l| l.token),
            current: status.token,
        })))
    };
    let Some(id) = id else {
        return refuse(
            "this collection's lock policy requires an exclusive lock on the record: acquire one (POST /v1/locks) and name it in the Baton-Lock header"
                .to_owned(),
        );
    };
    let Some(lock) = named else {
        return refuse(format!("lock {id} does not exist (or was forgotten)"));
    };
    if lock.token < status.token {
        return refuse(format!(
            "lock {id} has fencing token {}, older than the newest granted on the resource ({}):              the lock ended and the resource was locked again since",
            lock.token, status.token
        ));
    }
    match lock_rules::check_holder(lock, caller, now) {
        Err(Error::LockEnded { end, .. }) => {
            return refuse(format!("lock {id} has ended: {}", end.describe()));
        }
        Err(Error::NotLockHolder { holder, .. }) => {
            return refuse(format!("lock {id} is held by {holder}, not by you"));
        }
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if !lock.resources.iter().any(|r| r.as_str() == resource) {
        return refuse(format!("lock {id} does not cover {resource}"));
    }
    if lock.mode != LockMode::Exclusive {
        return refuse(format!(
            "lock {id} is shared; this access needs an exclusive lock"
        ));
    }
    Ok(())
}

/// A write ready to be saved: the key's new head and the version to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The record as of the new version (for a delete, the tombstone:
    /// data `null`).
    pub record: Record,
    /// Whether the new version is a delete.
    pub deleted: bool,
    /// The history entry, with the new version's data (`None` for a
    /// tombstone).
    pub version: RecordVersion,
}

impl Applied {
    /// The answer to the writer.
    pub fn written(&self) -> crate::Written {
        crate::Written {
            record: self.record.clone(),
            kind: self.version.kind,
            merged_from: self.version.merged_from,
            changed: self
                .version
                .changes
                .iter()
                .map(|c| c.path.clone())
                .collect(),
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Save this.
    Apply(Box<Applied>),
    /// The write is based on an older version and the policy needs the
    /// history to decide: load the versions from `base` on (the first one,
    /// `base` itself, with its data; the later ones without) and call
    /// [`resolve`]. `base` is `None` when the caller's version never
    /// existed: then load nothing.
    Stale {
        /// The caller's version: the newest of those it presented that is
        /// older than the current one.
        base: Option<Version>,
    },
}

/// Decides a write against the key's latest state and the collection's
/// settings (see the [module documentation](self) for the order).
pub fn plan(
    head: Option<&RecordHead>,
    config: &CollectionConfig,
    w: &RecordWrite,
    now: Timestamp,
) -> Result<Plan> {
    let policy = config.conflict_policy;
    let next = head.map_or(Version(1), |h| h.record.version.next());
    let Some(current) = head.and_then(RecordHead::live) else {
        // Nothing to replace: only a create can succeed (404 otherwise,
        // whatever the preconditions say).
        return match (&w.op, &w.precondition) {
            (WriteOp::Put(data), Precondition::Absent) => Ok(apply(create(w, data, next, now))),
            (WriteOp::Put(data), Precondition::None) => {
                if policy == ConflictPolicy::LastWriteWins {
                    Ok(apply(create(w, data, next, now)))
                } else {
                    Err(precondition_required(w, policy))
                }
            }
            _ => Err(not_found(w, head)),
        };
    };
    match &w.precondition {
        Precondition::Absent => Err(Error::PreconditionFailed(Box::new(StaleWrite {
            presented: Vec::new(),
            current: current.clone(),
            changed: Vec::new(),
            conflict: None,
        }))),
        Precondition::None if policy != ConflictPolicy::LastWriteWins => {
            Err(precondition_required(w, policy))
        }
        Precondition::None | Precondition::Exists => {
            Ok(apply(update(current, w, None, true, now)?))
        }
        Precondition::Matches(versions) if versions.contains(&current.version) => Ok(apply(
            update(current, w, Some(current.version), false, now)?,
        )),
        Precondition::Matches(versions) => {
            let base = versions
                .iter()
                .copied()
                .filter(|v| *v < current.version)
                .max();
            if policy == ConflictPolicy::LastWriteWins {
                let stated = base.or_else(|| versions.iter().copied().max());
                Ok(apply(update(current, w, stated, true, now)?))
            } else {
                Ok(Plan::Stale { base })
            }
        }
    }
}

/// Decides a stale write (after [`Plan::Stale`]) with `since`: the
/// versions from the caller's base on, oldest first, the base itself with
/// its data. Under `merge`, a PATCH based on one version is merged
/// three-way with the current data when no member was changed differently
/// on both sides; otherwise the write is refused with what changed since
/// the caller's version (412) or with the conflicting members (409).
pub fn resolve(
    head: &RecordHead,
    config: &CollectionConfig,
    w: &RecordWrite,
    base: Option<Version>,
    since: &[RecordVersion],
    now: Timestamp,
) -> Result<Applied> {
    let Some(current) = head.live() else {
        return Err(not_found(w, Some(head)));
    };
    let presented = match &w.precondition {
        Precondition::Matches(vs) => vs.clone(),
        _ => Vec::new(),
    };
    let base_entry = base.and_then(|b| since.iter().find(|v| v.version == b));
    let base_data = base_entry.and_then(|v| v.data.as_ref());
    let later: Vec<&RecordVersion> = since
        .iter()
        .filter(|v| base.is_some_and(|b| v.version > b))
        .collect();
    if let (ConflictPolicy::Merge, WriteOp::Patch(patch), Some(b), Some(base_data), [_]) = (
        config.conflict_policy,
        &w.op,
        base,
        base_data,
        presented.as_slice(),
    ) && !later.iter().any(|v| v.deleted)
    {
        let mut mine = base_data.clone();
        merge::merge_patch(&mut mine, patch);
        let m = merge::merge3(base_data, &mine, &current.data);
        let merged = merge::diff(Some(&current.data), Some(&m.merged));
        if !m.conflicts.is_empty() {
            let conflicts = m
                .conflicts
                .into_iter()
                .map(|c| {
                    let (by, at, version) = last_touch(&c.path, &later, current);
                    FieldConflict {
                        path: c.path,
                        base: c.base,
                        yours: c.mine,
                        theirs: c.theirs,
                        by,
                        at,
                        version,
                    }
                })
                .collect();
            return Err(Error::MergeConflict(Box::new(MergeConflicts {
                base: b,
                current: current.clone(),
                conflicts,
                merged,
                conflict: None,
            })));
        }
        check_data("data", &m.merged)?;
        let mut applied = updated(current, w, m.merged, WriteKind::Merge, Some(b), merged, now);
        applied.version.merged_from = Some(MergedFrom {
            base: b,
            current: current.version,
        });
        return Ok(applied);
    }
    let changed = match base_data {
        Some(data) => merge::diff(Some(data), Some(&current.data))
            .into_iter()
            .map(|c| {
                let (by, at, version) = last_touch(&c.path, &later, current);
                ChangeSince {
                    path: c.path,
                    old: c.old,
                    new: c.new,
                    by,
                    at,
                    version,
                }
            })
            .collect(),
        None => Vec::new(),
    };
    Err(Error::PreconditionFailed(Box::new(StaleWrite {
        presented,
        current: current.clone(),
        changed,
        conflict: None,
    })))
}

/// Who last changed the member at `path` (or a member containing or
/// inside it) among `later`, when and in which version; the current
/// version's author if none did (which a consistent history never needs).
fn last_touch(
    path: &str,
    later: &[&RecordVersion],
    current: &Record,
) -> (String, Timestamp, Version) {
    later
        .iter()
        .rev()
        .find(|v| {
            v.changes
                .iter()
                .any(|c| merge::contains(&c.path, path) || merge::contains(path, &c.path))
        })
        .map_or(
            (
                current.updated_by.clone(),
                current.updated_at,
                current.version,
            ),
            |v| (v.by.clone(), v.at, v.version),
        )
}

fn apply(a: Applied) -> Plan {
    Plan::Apply(Box::new(a))
}

fn precondition_required(w: &RecordWrite, policy: ConflictPolicy) -> Error {
    Error::PreconditionRequired(format!(
        "collection {} has conflict_policy {policy}: a write must say which version it is based on \
         (If-Match: \"<version>\" from your last read), or create with If-None-Match: *",
        w.collection
    ))
}

fn not_found(w: &RecordWrite, head: Option<&RecordHead>) -> Error {
    let mut id = format!("{}/{}", w.collection, w.key);
    if let Some(h) = head.filter(|h| h.deleted) {
        id.push_str(&format!(
            " (deleted in version {} by {} at {})",
            h.record.version,
            h.record.updated_by,
            h.record.updated_at.to_rfc3339()
        ));
    }
    Error::NotFound { what: "record", id }
}

/// The first version of a record (or the first after a delete).
fn create(w: &RecordWrite, data: &Value, version: Version, now: Timestamp) -> Applied {
    let record = Record {
        collection: w.collection.clone(),
        key: w.key.clone(),
        version,
        data: data.clone(),
        created_by: w.actor.clone(),
        created_at: now,
        updated_by: w.actor.clone(),
        updated_at: now,
    };
    Applied {
        version: RecordVersion {
            version,
            kind: WriteKind::Create,
            by: w.actor.clone(),
            at: now,
            base_version: None,
            merged_from: None,
            deleted: false,
            changes: merge::diff(Some(&json!({})), Some(data)),
            data: Some(data.clone()),
        },
        record,
        deleted: false,
    }
}

/// A replace, patch or delete of the live record `current`, based on
/// `base`; `forced` when not based on the current version.
fn update(
    current: &Record,
    w: &RecordWrite,
    base: Option<Version>,
    forced: bool,
    now: Timestamp,
) -> Result<Applied> {
    let kind = |normal| if forced { WriteKind::Forced } else { normal };
    let (data, kind) = match &w.op {
        WriteOp::Put(data) => (data.clone(), kind(WriteKind::Replace)),
        WriteOp::Patch(patch) => {
            let mut data = current.data.clone();
            merge::merge_patch(&mut data, patch);
            check_data("data", &data)?;
            (data, kind(WriteKind::Patch))
        }
        WriteOp::Delete => {
            let changes = merge::diff(Some(&current.data), Some(&json!({})));
            let mut a = updated(
                current,
                w,
                Value::Null,
                kind(WriteKind::Delete),
                base,
                changes,
                now,
            );
            a.deleted = true;
            a.version.deleted = true;
            a.version.data = None;
            return Ok(a);
        }
    };
    let changes = merge::diff(Some(&current.data), Some(&data));
    Ok(updated(current, w, data, kind, base, changes, now))
}

fn updated(
    current: &Record,
    w: &RecordWrite,
    data: Value,
    kind: WriteKind,
    base: Option<Version>,
    changes: Vec<Change>,
    now: Timestamp,
) -> Applied {
    let version = current.version.next();
    let record = Record {
        version,
        data: data.clone(),
        updated_by: w.actor.clone(),
        updated_at: now,
        ..current.clone()
    };
    Applied {
        version: RecordVersion {
            version,
            kind,
            by: w.actor.clone(),
            at: now,
            base_version: base,
            merged_from: None,
            deleted: false,
            changes,
            data: Some(data),
        },
        record,
        deleted: false,
    }
}

#[cfg(test)]
mod tests;
