//! Versioned records in SQLite's dialect. A write runs inside the writer's
//! savepoint, so nothing interleaves with it: the rules of
//! [`baton_core::record_rules`] decide on the head as loaded, and a
//! refusal rolls the savepoint back.

use baton_core::clock::from_millis;
use baton_core::record_rules::{self, Plan};
use baton_core::{
    CollectionConfig, CollectionName, ConfigChange, ConflictId, ConflictObject, Error,
    HistoryFilter, MergedFrom, Record, RecordFilter, RecordHead, RecordKey, RecordVersion,
    RecordWrite, ResourceName, Result, StoreError, Timestamp, Version, Written,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::queue::Db;
use super::rows::ms;

/// The columns of `records`, in the order [`head`] reads.
const HEAD_COLS: &str = "collection, record_key, version, deleted, data, created_by, created_at, updated_by, updated_at";

/// The columns of `record_versions` but `data`, in the order [`version`]
/// reads (it reads `data` as the next column when there is one).
const VERSION_COLS: &str = "version, kind, actor, at, base_version, merged_base, merged_current, \
                            deleted, changes";

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    StoreError::fatal(format!("corrupt {what} in the database: {e}")).into()
}

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn to_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::fatal(e.to_string()).into())
}

/// A row of `records` as selected with [`HEAD_COLS`], undecoded (rusqlite
/// row closures cannot return Baton's errors).
type HeadRow = (String, String, i64, bool, String, String, i64, String, i64);

fn head_row(r: &Row) -> rusqlite::Result<HeadRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn head(row: HeadRow) -> Result<RecordHead> {
    let (collection, key, version, deleted, data, created_by, created_at, updated_by, updated_at) =
        row;
    Ok(RecordHead {
        record: Record {
            collection: CollectionName::new(collection)?,
            key: RecordKey::new(key)?,
            version: Version(version),
            data: json("record data", &data)?,
            created_by,
            created_at: from_millis(created_at),
            updated_by,
            updated_at: from_millis(updated_at),
        },
        deleted,
    })
}

/// A row of `record_versions` as selected with [`VERSION_COLS`] and then
/// the data (or `NULL`).
type VersionRow = (
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    bool,
    String,
    Option<String>,
);

fn version_row(r: &Row) -> rusqlite::Result<VersionRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn version(row: VersionRow) -> Result<RecordVersion> {
    let (v, kind, by, at, base, merged_base, merged_current, deleted, changes, data) = row;
    Ok(RecordVersion {
        version: Version(v),
        kind: kind.parse()?,
        by,
        at: from_millis(at),
        base_version: base.map(Version),
        merged_from: match (merged_base, merged_current) {
            (Some(b), Some(c)) => Some(MergedFrom {
                base: Version(b),
                current: Version(c),
            }),
            _ => None,
        },
        deleted,
        changes: json("record changes", &changes)?,
        data: data.map(|d| json("record data", &d)).transpose()?,
    })
}

/// The collection's settings, or the defaults for one never used.
pub(super) fn config(c: &Connection, collection: &CollectionName) -> Result<CollectionConfig> {
    let stored: Option<String> = c
        .prepare_cached("SELECT config FROM collections WHERE name = ?1")
        .db()?
        .query_row([collection.as_str()], |r| r.get(0))
        .optional()
        .db()?;
    stored.map_or(Ok(CollectionConfig::default()), |j| {
        json("collection settings", &j)
    })
}

fn set_config(
    c: &Connection,
    collection: &CollectionName,
    config: &CollectionConfig,
    now: Timestamp,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO collections (name, config, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET config = excluded.config",
    )
    .db()?
    .execute(params![collection.as_str(), to_json(config)?, ms(now)])
    .db()?;
    Ok(())
}

/// Applies `change` to the settings (inside the writer's savepoint) and
/// saves the result.
pub(super) fn update_config(
    c: &Connection,
    collection: &CollectionName,
    change: &ConfigChange<CollectionConfig>,
    now: Timestamp,
) -> Result<CollectionConfig> {
    let new = change(config(c, collection)?)?;
    set_config(c, collection, &new, now)?;
    Ok(new)
}

/// The key's latest state.
pub(super) fn load_head(
    c: &Connection,
    collection: &CollectionName,
    key: &RecordKey,
) -> Result<Option<RecordHead>> {
    c.prepare_cached(&format!(
        "SELECT {HEAD_COLS} FROM records WHERE collection = ?1 AND record_key = ?2"
    ))
    .db()?
    .query_row([collection.as_str(), key.as_str()], head_row)
    .optional()
    .db()?
    .map(head)
    .transpose()
}

/// The versions from `base` on, oldest first; only `base` with its data.
fn versions_since(c: &Connection, w: &RecordWrite, base: Version) -> Result<Vec<RecordVersion>> {
    let rows = c
        .prepare_cached(&format!(
            "SELECT {VERSION_COLS}, CASE WHEN version = ?3 THEN data END FROM record_versions \
             WHERE collection = ?1 AND record_key = ?2 AND version >= ?3 ORDER BY version"
        ))
        .db()?
        .query_map(
            params![w.collection.as_str(), w.key.as_str(), base.0],
            version_row,
        )
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    rows.into_iter().map(version).collect()
}

/// Checks the lock the write names against the lock manager's tables
/// (see [`record_rules::check_lock`]); the writer's savepoint keeps them
/// still meanwhile.
fn check_lock(c: &Connection, w: &RecordWrite, now: Timestamp) -> Result<()> {
    let resource = ResourceName::new(w.resource())?;
    let named = match w.lock {
        Some(id) => match super::locks::get(c, id, now) {
            Ok(lock) => Some(lock),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let status = super::locks::status_in_tx(c, std::slice::from_ref(&resource), now)?
        .pop()
        .ok_or_else(|| StoreError::fatal("no status for the record's resource"))?;
    record_rules::check_lock(
        resource.as_str(),
        &w.actor,
        w.lock,
        named.as_ref(),
        &status,
        now,
    )
}

/// One write (see [`baton_core::Store::write_record`]).
pub(super) fn write(c: &Connection, w: &RecordWrite, now: Timestamp) -> Result<Written> {
    let stored = c
        .prepare_cached("SELECT config FROM collections WHERE name = ?1")
        .db()?
        .query_row([w.collection.as_str()], |r| r.get::<_, String>(0))
        .optional()
        .db()?;
    let config = match stored {
        Some(j) => json("collection settings", &j)?,
        None => {
            let config = CollectionConfig::default();
            set_config(c, &w.collection, &config, now)?;
            config
        }
    };
    if record_rules::lock_needed(config.lock_policy, true) {
        check_lock(c, w, now)?;
    }
    let head = load_head(c, &w.collection, &w.key)?;
    let applied = match record_rules::plan(head.as_ref(), &config, w, now)? {
        Plan::Apply(a) => *a,
        Plan::Stale { base } => {
            let since = match base {
                Some(b) => versions_since(c, w, b)?,
                None => Vec::new(),
            };
            let head = head
                .as_ref()
                .ok_or_else(|| StoreError::fatal("a stale write without a head"))?;
            record_rules::resolve(head, &config, w, base, &since, now)?
        }
    };
    let r = &applied.record;
    c.prepare_cached(
        "INSERT INTO records (collection, record_key, version, deleted, data, created_by, created_at, \
         updated_by, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (collection, record_key) DO UPDATE SET version = excluded.version, \
         deleted = excluded.deleted, data = excluded.data, created_by = excluded.created_by, \
         created_at = excluded.created_at, updated_by = excluded.updated_by, \
         updated_at = excluded.updated_at",
    )
    .db()?
    .execute(params![
        r.collection.as_str(),
        r.key.as_str(),
        r.version.0,
        applied.deleted,
        to_json(&r.data)?,
        r.created_by,
        ms(r.created_at),
        r.updated_by,
        ms(r.updated_at),
    ])
    .db()?;
    let v = &applied.version;
    c.prepare_cached(
        "INSERT INTO record_versions (collection, record_key, version, kind, actor, at, base_version, \
         merged_base, merged_current, deleted, changes, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .db()?
    .execute(params![
        r.collection.as_str(),
        r.key.as_str(),
        v.version.0,
        v.kind.as_str(),
        v.by,
        ms(v.at),
        v.base_version.map(|b| b.0),
        v.merged_from.map(|m| m.base.0),
        v.merged_from.map(|m| m.current.0),
        v.deleted,
        to_json(&v.changes)?,
        v.data.as_ref().map(to_json).transpose()?,
    ])
    .db()?;
    Ok(applied.written())
}

/// A page of live records by key.
pub(super) fn list(
    c: &Connection,
    collection: &CollectionName,
    filter: &RecordFilter,
) -> Result<Vec<Record>> {
    let rows = c
        .prepare_cached(&format!(
            "SELECT {HEAD_COLS} FROM records WHERE collection = ?1 AND record_key > ?2 AND deleted = 0 \
             ORDER BY record_key LIMIT ?3"
        ))
        .db()?
        .query_map(
            params![
                collection.as_str(),
                filter.after.as_ref().map_or("", |k| k.as_str()),
                filter.limit
            ],
            head_row,
        )
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    rows.into_iter()
        .map(|r| head(r).map(|h| h.record))
        .collect()
}

fn not_found(collection: &CollectionName, key: &RecordKey) -> Error {
    Error::not_found("record", format!("{collection}/{key}"))
}

/// A page of a key's history, without data.
pub(super) fn history(
    c: &Connection,
    collection: &CollectionName,
    key: &RecordKey,
    filter: &HistoryFilter,
) -> Result<Vec<RecordVersion>> {
    let rows = c
        .prepare_cached(&format!(
            "SELECT {VERSION_COLS}, NULL FROM record_versions WHERE collection = ?1 \
             AND record_key = ?2 AND version > ?3 ORDER BY version LIMIT ?4"
        ))
        .db()?
        .query_map(
            params![
                collection.as_str(),
                key.as_str(),
                filter.after.map_or(0, |v| v.0),
                filter.limit
            ],
            version_row,
        )
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    // A key's head and its versions are written together, so an empty
    // page of a key with no head means the key was never written.
    if rows.is_empty() && load_head(c, collection, key)?.is_none() {
        return Err(not_found(collection, key));
    }
    rows.into_iter().map(version).collect()
}

/// One version with its data.
pub(super) fn version_of(
    c: &Connection,
    collection: &CollectionName,
    key: &RecordKey,
    v: Version,
) -> Result<RecordVersion> {
    c.prepare_cached(&format!(
        "SELECT {VERSION_COLS}, data FROM record_versions \
         WHERE collection = ?1 AND record_key = ?2 AND version = ?3"
    ))
    .db()?
    .query_row(params![collection.as_str(), key.as_str(), v.0], version_row)
    .optional()
    .db()?
    .map(version)
    .transpose()?
    .ok_or_else(|| Error::not_found("version", format!("{v} of record {collection}/{key}")))
}

pub(super) fn save_conflict(c: &Connection, conflict: &ConflictObject) -> Result<ConflictId> {
    c.prepare_cached(
        "INSERT INTO record_conflicts (author, expires_at, detail) VALUES (?1, ?2, ?3) \
         RETURNING id",
    )
    .db()?
    .query_row(
        params![conflict.author, ms(conflict.expires_at), to_json(conflict)?],
        |r| r.get(0),
    )
    .db()
}

pub(super) fn conflict(c: &Connection, id: ConflictId) -> Result<Option<ConflictObject>> {
    let detail: Option<String> = c
        .prepare_cached("SELECT detail FROM record_conflicts WHERE id = ?1")
        .db()?
        .query_row([id], |r| r.get(0))
        .optional()
        .db()?;
    detail
        .map(|d| {
            let mut o: ConflictObject = json("conflict object", &d)?;
            o.id = id;
            Ok(o)
        })
        .transpose()
}

pub(super) fn forget_conflicts(c: &Connection, now: Timestamp) -> Result<u64> {
    let n = c
        .prepare_cached("DELETE FROM record_conflicts WHERE expires_at <= ?1")
        .db()?
        .execute([ms(now)])
        .db()?;
    Ok(n as u64)
}
