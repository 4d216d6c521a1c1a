//! Versioned records in PostgreSQL's dialect. Each function runs inside a
//! transaction opened by the caller; the decisions are
//! [`baton_core::record_rules`]', this module only loads, locks and saves.
//!
//! Concurrency: a write locks the key's row (`FOR UPDATE`) before the
//! rules look at it, so two writers based on the same version are
//! serialised and the second sees the first's version — which is what
//! makes a stale write stale, on any number of servers. The first write
//! of a key has no row to lock: two concurrent creates both insert, and
//! the loser's unique violation rolls it back to run again, when it finds
//! the winner's row.

use baton_core::clock::to_millis;
use baton_core::record_rules::{self, Plan};
use baton_core::{
    CollectionConfig, CollectionName, ConfigChange, ConflictId, ConflictObject, Error,
    HistoryFilter, Record, RecordFilter, RecordHead, RecordKey, RecordVersion, RecordWrite,
    ResourceName, Result, StoreError, Timestamp, Version, Written,
};
use sqlx::PgConnection;

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
    c: &mut PgConnection,
    collection: &CollectionName,
) -> Result<CollectionConfig> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT config FROM collections WHERE name = $1")
            .bind(collection.as_str())
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
    stored.map_or(Ok(CollectionConfig::default()), |j| parse_config(&j))
}

/// Creates the collection with default settings unless it exists.
async fn ensure_collection(
    c: &mut PgConnection,
    collection: &CollectionName,
    now: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO collections (name, config, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
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
    c: &mut PgConnection,
    collection: &CollectionName,
    change: &ConfigChange<CollectionConfig>,
    now: Timestamp,
) -> Result<CollectionConfig> {
    ensure_collection(c, collection, now).await?;
    let json: String =
        sqlx::query_scalar("SELECT config FROM collections WHERE name = $1 FOR UPDATE")
            .bind(collection.as_str())
            .fetch_one(&mut *c)
            .await
            .map_err(db)?;
    let new = change(parse_config(&json)?)?;
    sqlx::query("UPDATE collections SET config = $2 WHERE name = $1")
        .bind(collection.as_str())
        .bind(to_json(&new)?)
        .execute(&mut *c)
        .await
        .map_err(db)?;
    Ok(new)
}

/// The key's latest state, locked until the transaction ends when `lock`.
pub(super) async fn head(
    c: &mut PgConnection,
    collection: &CollectionName,
    key: &RecordKey,
    lock: bool,
) -> Result<Option<RecordHead>> {
    let query = if lock {
        concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE collection = $1 AND record_key = $2 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            record_cols!(),
            " FROM records WHERE collection = $1 AND record_key = $2"
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
async fn check_lock(c: &mut PgConnection, w: &RecordWrite, t: Now) -> Result<()> {
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
    c: &mut PgConnection,
    w: &RecordWrite,
    now: Timestamp,
    lock_time: Now,
) -> Result<Written> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT config FROM collections WHERE name = $1")
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
                    ", CASE WHEN version = $3 THEN data END FROM record_versions \
                         WHERE collection = $1 AND record_key = $2 AND version >= $3 \
                         ORDER BY version"
                ))
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
    // makes this insert fail on the primary key once the other commits,
    // and the transaction runs again and finds that version above.
    let save = if head.is_some() {
        "UPDATE records SET version = $3, deleted = $4, data = $5, created_by = $6, \
         created_at = $7, updated_by = $8, updated_at = $9 \
         WHERE collection = $1 AND record_key = $2"
    } else {
        "INSERT INTO records (collection, record_key, version, deleted, data, created_by, \
         created_at, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    };
    sqlx::query(save)
        .bind(r.collection.as_str())
        .bind(r.key.as_str())
        .bind(r.version.0)
        .bind(applied.deleted)
        .bind(to_json(&r.data)?)
        .bind(&r.created_by)
        .bind(ms(r.created_at))
        .bind(&r.updated_by)
        .bind(ms(r.updated_at))
        .execute(&mut *c)
        .await
        .map_err(db)?;
    let v = &applied.version;
    sqlx::query(
        "INSERT INTO record_versions (collection, record_key, version, kind, actor, at, \
         base_version, merged_base, merged_current, deleted, changes, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
    c: &mut PgConnection,
    collection: &CollectionName,
    filter: &RecordFilter,
) -> Result<Vec<Record>> {
    sqlx::query(concat!(
        "SELECT ",
        record_cols!(),
        " FROM records WHERE collection = $1 AND record_key > $2 AND NOT deleted \
         ORDER BY record_key LIMIT $3"
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
    c: &mut PgConnection,
    collection: &CollectionName,
    key: &RecordKey,
    filter: &HistoryFilter,
) -> Result<Vec<RecordVersion>> {
    let versions = sqlx::query(concat!(
        "SELECT ",
        version_cols!(),
        ", NULL::text FROM record_versions WHERE collection = $1 AND record_key = $2 \
         AND version > $3 ORDER BY version LIMIT $4"
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
    c: &mut PgConnection,
    collection: &CollectionName,
    key: &RecordKey,
    v: Version,
) -> Result<RecordVersion> {
    sqlx::query(concat!(
        "SELECT ",
        version_cols!(),
        ", data FROM record_versions WHERE collection = $1 AND record_key = $2 AND version = $3"
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
    c: &mut PgConnection,
    conflict: &ConflictObject,
) -> Result<ConflictId> {
    sqlx::query_scalar(
        "INSERT INTO record_conflicts (author, expires_at, detail) VALUES ($1, $2, $3) \
         RETURNING id",
    )
    .bind(&conflict.author)
    .bind(ms(conflict.expires_at))
    .bind(to_json(conflict)?)
    .fetch_one(&mut *c)
    .await
    .map_err(db)
}

pub(super) async fn conflict(
    c: &mut PgConnection,
    id: ConflictId,
) -> Result<Option<ConflictObject>> {
    let detail: Option<String> =
        sqlx::query_scalar("SELECT detail FROM record_conflicts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await
            .map_err(db)?;
    detail.map(|d| sql::conflict_object(id, &d)).transpose()
}

pub(super) async fn forget_conflicts(c: &mut PgConnection, now: Timestamp) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM record_conflicts WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(&mut *c)
            .await
            .map_err(db)?
            .rows_affected(),
    )
}
