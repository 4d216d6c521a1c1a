//! Versioned records in MySQL's dialect (MySQL 8, MariaDB 10.6+). Each
//! function runs inside a transaction opened by the caller at READ
//! COMMITTED; the decisions are [`baton_core::record_rules`]', this module
//! only loads, locks and saves.
//!
//! Concurrency, as on PostgreSQL (see `postgres::records`): a write locks
//! the key's row by primary key (`FOR UPDATE`) before the rules look at
//! it; two concurrent first writes of a key both insert, and the loser's
//! duplicate key (or deadlock) rolls it back to run again.

use baton_core::clock::to_millis;
use baton_core::record_rules::{self, Plan};
use baton_core::{
    CollectionConfig, CollectionName, ConfigChange, ConflictId, ConflictObject, Error,
    HistoryFilter, Record, RecordFilter, RecordHead, RecordKey, RecordVersion, RecordWrite,
    ResourceName, Result, StoreError, Timestamp, Version, Written,
};
use sqlx::MySqlConnection;

use super::db;
use super::locks::{self, Now};
use crate::sql::{self, record_cols, to_json, version_cols};

fn ms(t: Timestamp) -> i64 {
    to_millis(t)
}

fn parse_config(json: &str) -> Result<CollectionConfig> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::fatal(format!("corrupt collection settings: {e}")).into())
}

/// The collection's settings, or the defaults for one never used.
pub(super) async fn config(
    c: &mut MySqlConnection,
    collection: &CollectionName,
) -> Result<CollectionConfig> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT config FROM collections WHERE name = ?")
            .bind(collection.as_str())
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
    stored.map_or(Ok(CollectionConfig::default()), |j| parse_config(&j))
}

/// Creates the collection with default settings unless it exists.
async fn ensure_collection(
    c: &mut MySqlConnection,
    collection: &CollectionName,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO collections (name, config, created_at) VALUES (?, ?, ?) \
         ON DUPLICATE KEY UPDATE name = name",
    )
    .bind(collection.as_str())
    .bind(to_json(&CollectionConfig::default())?)
    .bind(ms(now))
    .execute(&mut *c)
    .await
    .map_err(db)?;
    Ok(())
}

/// Applies `change` with the collection's row locked (created first if
/// new), so concurrent changes never lose one another.
pub(super) async fn update_config(
    c: &mut MySqlConnection,
    collection: &CollectionName,
    change: &ConfigChange<CollectionConfig>,
    now: Timestamp,
) -> Result<CollectionConfig> {
    ensure_collection(c, collection, now).await?;
    let json: String =
        sqlx::query_scalar("SELECT config FROM collections WHERE name = ? FOR UPDATE")
            .bind(collection.as_str())
            .fetch_one(&mut *c)
            .await
            .map_err(db)?;
    let new = change(parse_config(&json)?)?;
    sqlx::query("UPDATE collections SET config = ? WHERE name = ?")
        .bind(to_json(&new)?)
        .bind(collection.as_str())
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(new)
}

/// The key's latest state, locked until the transaction ends when `lock`.
pub(super) async fn head(
    c: &mut MySqlConnection,
    collection: &CollectionName,
    key: &RecordKey,
    lock: bool,
) -> Result<Option<RecordHead>> {
    let query = if lock {
        concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE collection = ? AND record_key = ? FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE collection = ? AND record_key = ?"
        )
    };
    sqlx::query(query)
        .bind(collection.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *c)
        .await
        .map_err(db)?
        .as_ref()
        .map(sql::record_head)
        .transpose()
}

/// Checks the lock the write names against the lock manager's tables
/// (see [`record_rules::check_lock`]), with the resource's row locked as
/// every lock operation on it does first, so that no grant, release or
/// expiry of the resource commits between the check and the write; the
/// time is the lock manager's (the database's clock when it is told to).
async fn check_lock(c: &mut MySqlConnection, w: &RecordWrite, t: Now) -> Result<()> {
    let resource = ResourceName::new(w.resource())?;
    let resources = std::slice::from_ref(&resource);
    let now = locks::begin(c, resources, t).await?;
    let named = match w.lock {
        Some(id) => match locks::get(c, id, Now::Given(now)).await {
            Ok(lock) => Some(lock),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let status = locks::status(c, resources, Now::Given(now))
        .await?
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
pub(super) async fn write(
    c: &mut MySqlConnection,
    w: &RecordWrite,
    now: Timestamp,
    lock_time: Now,
) -> Result<Written> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT config FROM collections WHERE name = ?")
            .bind(w.collection.as_str())
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
    let config = match stored {
        Some(j) => parse_config(&j)?,
        None => {
            ensure_collection(c, &w.collection, now).await?;
            CollectionConfig::default()
        }
    };
    if record_rules::lock_needed(config.lock_policy, true) {
        check_lock(c, w, lock_time).await?;
    }
    let head = head(c, &w.collection, &w.key, true).await?;
    let applied = match record_rules::plan(head.as_ref(), &config, w, now)? {
        Plan::Apply(a) => *a,
        Plan::Stale { base } => {
            let since = match base {
                Some(b) => sqlx::query(concat!(
                    "SELECT ",
                    version_cols!(),
                    ", CASE WHEN version = ? THEN data END FROM record_versions \
                         WHERE collection = ? AND record_key = ? AND version >= ? \
                         ORDER BY version"
                ))
                .bind(b.0)
                .bind(w.collection.as_str())
                .bind(w.key.as_str())
                .bind(b.0)
                .fetch_all(&mut *c)
                .await
                .map_err(db)?
                .iter()
                .map(sql::record_version)
                .collect::<Result<Vec<_>>>()?,
                None => Vec::new(),
            };
            let head = head
                .as_ref()
                .ok_or_else(|| StoreError::fatal("a stale write without a head"))?;
            record_rules::resolve(head, &config, w, base, &since, now)?
        }
    };
    let r = &applied.record;
    // The first write of a key inserts its row; a concurrent first write
    // makes this insert fail on the primary key (or deadlock) once the
    // other commits, and the transaction runs again and finds that version
    // above.
    let data = to_json(&r.data)?;
    let save = if head.is_some() {
        sqlx::query(
            "UPDATE records SET version = ?, deleted = ?, data = ?, created_by = ?, \
             created_at = ?, updated_by = ?, updated_at = ? \
             WHERE collection = ? AND record_key = ?",
        )
        .bind(r.version.0)
        .bind(applied.deleted)
        .bind(&data)
        .bind(&r.created_by)
        .bind(ms(r.created_at))
        .bind(&r.updated_by)
        .bind(ms(r.updated_at))
        .bind(r.collection.as_str())
        .bind(r.key.as_str())
    } else {
        sqlx::query(
            "INSERT INTO records (collection, record_key, version, deleted, data, created_by, \
             created_at, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.collection.as_str())
        .bind(r.key.as_str())
        .bind(r.version.0)
        .bind(applied.deleted)
        .bind(&data)
        .bind(&r.created_by)
        .bind(ms(r.created_at))
        .bind(&r.updated_by)
        .bind(ms(r.updated_at))
    };
    save.execute(&mut *c).await.map_err(db)?;
    let v = &applied.version;
    sqlx::query(
        "INSERT INTO record_versions (collection, record_key, version, kind, actor, at, \
         base_version, merged_base, merged_current, deleted, changes, data) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.collection.as_str())
    .bind(r.key.as_str())
    .bind(v.version.0)
    .bind(v.kind.as_str())
    .bind(&v.by)
    .bind(ms(v.at))
    .bind(v.base_version.map(|b| b.0))
    .bind(v.merged_from.map(|m| m.base.0))
    .bind(v.merged_from.map(|m| m.current.0))
    .bind(v.deleted)
    .bind(to_json(&v.changes)?)
    .bind(v.data.as_ref().map(to_json).transpose()?)
    .execute(&mut *c)
    .await
    .map_err(db)?;
    Ok(applied.written())
}

/// A page of live records by key.
pub(super) async fn list(
    c: &mut MySqlConnection,
    collection: &CollectionName,
    filter: &RecordFilter,
) -> Result<Vec<Record>> {
    sqlx::query(concat!(
        "SELECT ",
        record_cols!(),
        " FROM records WHERE collection = ? AND record_key > ? AND NOT deleted \
         ORDER BY record_key LIMIT ?"
    ))
    .bind(collection.as_str())
    .bind(filter.after.as_ref().map_or("", |k| k.as_str()))
    .bind(i64::from(filter.limit))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(|row| sql::record_head(row).map(|h| h.record))
    .collect()
}

/// A page of a key's history, without data.
pub(super) async fn history(
    c: &mut MySqlConnection,
    collection: &CollectionName,
    key: &RecordKey,
    filter: &HistoryFilter,
) -> Result<Vec<RecordVersion>> {
    let versions = sqlx::query(concat!(
        "SELECT ",
        version_cols!(),
        ", CAST(NULL AS CHAR) FROM record_versions WHERE collection = ? AND record_key = ? \
         AND version > ? ORDER BY version LIMIT ?"
    ))
    .bind(collection.as_str())
    .bind(key.as_str())
    .bind(filter.after.map_or(0, |v| v.0))
    .bind(i64::from(filter.limit))
    .fetch_all(&mut *c)
    .await
    .map_err(db)?
    .iter()
    .map(sql::record_version)
    .collect::<Result<Vec<_>>>()?;
    // A key's head and its versions are written together, so an empty
    // page of a key with no head means the key was never written.
    if versions.is_empty() && head(c, collection, key, false).await?.is_none() {
        return Err(Error::not_found("record", format!("{collection}/{key}")));
    }
    Ok(versions)
}

/// One version with its data.
pub(super) async fn version(
    c: &mut MySqlConnection,
    collection: &CollectionName,
    key: &RecordKey,
    v: Version,
) -> Result<RecordVersion> {
    sqlx::query(concat!(
        "SELECT ",
        version_cols!(),
        ", data FROM record_versions WHERE collection = ? AND record_key = ? AND version = ?"
    ))
    .bind(collection.as_str())
    .bind(key.as_str())
    .bind(v.0)
    .fetch_optional(&mut *c)
    .await
    .map_err(db)?
    .as_ref()
    .map(sql::record_version)
    .transpose()?
    .ok_or_else(|| Error::not_found("version", format!("{v} of record {collection}/{key}")))
}

pub(super) async fn save_conflict(
    c: &mut MySqlConnection,
    conflict: &ConflictObject,
) -> Result<ConflictId> {
    let done =
        sqlx::query("INSERT INTO record_conflicts (author, expires_at, detail) VALUES (?, ?, ?)")
            .bind(&conflict.author)
            .bind(ms(conflict.expires_at))
            .bind(to_json(conflict)?)
            .execute(&mut *c)
            .await
            .map_err(db)?;
    i64::try_from(done.last_insert_id())
        .map_err(|e| StoreError::fatal(format!("conflict id out of range: {e}")).into())
}

pub(super) async fn conflict(
    c: &mut MySqlConnection,
    id: ConflictId,
) -> Result<Option<ConflictObject>> {
    let detail: Option<String> =
        sqlx::query_scalar("SELECT detail FROM record_conflicts WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
    detail.map(|d| sql::conflict_object(id, &d)).transpose()
}

pub(super) async fn forget_conflicts(c: &mut MySqlConnection, now: Timestamp) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM record_conflicts WHERE expires_at <= ?")
            .bind(ms(now))
            .execute(&mut *c)
            .await
            .map_err(db)?
            .rows_affected(),
    )
}
