//! Versioned record routes: collections' settings; reading a record with
//! its `ETag` (304 when unchanged); writing it with `If-Match` (replace,
//! patch, delete) or `If-None-Match: *` (create); listing; history and
//! old versions; and the conflict objects that keep refused writes.
//!
//! Handlers translate headers into the core's [`Precondition`] (see
//! [`crate::conditional`]) and call one engine operation; the store
//! decides the write atomically by the collection's policy. A record that
//! does not exist is 404 before any precondition is evaluated (RFC 9110
//! §13.2.1), a write without a version under `reject`/`merge` is 428, a
//! stale one 412 (or, for a PATCH under `merge` whose changes overlap
//! others', 409), each with the current record and the details as
//! problem members, and nothing written.

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton::{
    CollectionConfig, CollectionName, ConflictId, ConflictObject, ConflictPolicy, Error,
    HistoryFilter, LockId, LockPolicy, Record, RecordFilter, RecordKey, RecordVersion, RecordWrite,
    StaleWrite, Version, WriteKind, WriteOp, Written,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::conditional::{self, Tags, etag_value};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, MergePatch, Path, Query};

/// The record routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_collection, put_collection))
        .routes(routes!(list_records))
        .routes(routes!(get_record, put_record, patch_record, delete_record))
        .routes(routes!(record_history))
        .routes(routes!(record_version))
        .routes(routes!(get_conflict))
}

/// The header naming the lock a write (or a read) is made under.
pub const LOCK_HEADER: &str = "baton-lock";

fn collection(raw: String) -> Result<CollectionName, ApiError> {
    Ok(CollectionName::new(raw)?)
}

fn names(raw: (String, String)) -> Result<(CollectionName, RecordKey), ApiError> {
    Ok((CollectionName::new(raw.0)?, RecordKey::new(raw.1)?))
}

/// The `Baton-Lock` header: the id of a lock of the lock manager.
fn lock_header(headers: &HeaderMap) -> Result<Option<LockId>, ApiError> {
    headers
        .get(LOCK_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<LockId>().ok())
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    ApiError::malformed("Baton-Lock must be the id of a lock you hold, e.g. 17")
                        .with_field("Baton-Lock")
                })
        })
        .transpose()
}

/// Where the next page starts: the key of a full page's last entry;
/// `None` when the page is not full (the last one).
fn next_after<T, K>(page: &[T], limit: u32, key: impl Fn(&T) -> K) -> Option<K> {
    if u32::try_from(page.len()).is_ok_and(|n| n == limit) {
        page.last().map(key)
    } else {
        None
    }
}

/// A record with its `ETag`.
fn record_answer(status: StatusCode, body: impl Serialize, version: Version) -> Response {
    let mut response = (status, JsonBody(body)).into_response();
    match etag_value(version) {
        Ok(v) => {
            response.headers_mut().insert(header::ETAG, v);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// A collection's settings (the defaults for one not used yet).
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}",
    tag = "records",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 200, description = "The collection's settings", body = CollectionConfig))
)]
async fn get_collection(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
) -> Result<JsonBody<CollectionConfig>, ApiError> {
    let c = collection(raw)?;
    Ok(JsonBody(state.engine.collection_config(&who, &c).await?))
}

/// Body of `PUT /v1/collections/{collection}`: the settings to change;
/// a field left out keeps its current value.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionChange {
    /// `reject` (a stale write is refused), `merge` (a stale PATCH is
    /// merged when its changes are apart from others') or
    /// `last_write_wins` (nothing refused, every version kept).
    pub conflict_policy: Option<ConflictPolicy>,
    /// `none`, `write` (writes need an exclusive lock on
    /// `{collection}/{key}`) or `read_write` (reads need it too).
    pub lock_policy: Option<LockPolicy>,
}

/// Admin: change a collection's settings. The body names only the fields
/// to change. Answers the settings now in force.
#[utoipa::path(
    put,
    path = "/v1/collections/{collection}",
    tag = "records",
    params(("collection" = String, Path, description = "Collection name")),
    request_body = CollectionChange,
    responses(
        (status = 200, description = "The settings now in force", body = CollectionConfig),
        (status = 403, description = "Only admins change collection settings (`forbidden`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn put_collection(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
    Json(change): Json<CollectionChange>,
) -> Result<JsonBody<CollectionConfig>, ApiError> {
    let c = collection(raw)?;
    let config = state
        .engine
        .update_collection_config(&who, &c, move |current| CollectionConfig {
            conflict_policy: change.conflict_policy.unwrap_or(current.conflict_policy),
            lock_policy: change.lock_policy.unwrap_or(current.lock_policy),
        })
        .await?;
    Ok(JsonBody(config))
}

/// Page of `GET /v1/collections/{collection}/records`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Page size, 1 ..= 1000 (default 100).
    pub limit: Option<u32>,
    /// Only records whose key comes after this one (byte order): the
    /// previous page's `next_after`.
    pub after: Option<String>,
}

/// A page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    /// The records, by key.
    pub records: Vec<Record>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<String>,
}

/// A page of a collection's records (not deleted), by key. Under
/// `lock_policy: read_write` the data is left out (`null`): reading it
/// needs the record's lock.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/records",
    tag = "records",
    params(("collection" = String, Path, description = "Collection name"), RecordsQuery),
    responses(
        (status = 200, description = "A page of records", body = RecordPage),
        (status = 422, description = "Invalid `limit` or `after` (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_records(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<String>,
    Query(query): Query<RecordsQuery>,
) -> Result<JsonBody<RecordPage>, ApiError> {
    let c = collection(raw)?;
    let filter = RecordFilter {
        limit: query.limit.unwrap_or(100),
        after: match query.after.filter(|a| !a.is_empty()) {
            Some(a) => Some(RecordKey::new(a).map_err(crate::error::in_field("after"))?),
            None => None,
        },
    };
    let records = state.engine.list_records(&who, &c, &filter).await?;
    let next_after = next_after(&records, filter.limit, |r| r.key.to_string());
    Ok(JsonBody(RecordPage {
        records,
        next_after,
    }))
}

/// Read a record. Its version is the `ETag`; with `If-None-Match`
/// naming it (or `*`), 304 Not Modified.
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/records/{key}",
    tag = "records",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("key" = String, Path, description = "Record key (1–128 of `A-Za-z0-9._-:@`)"),
        ("If-None-Match" = Option<String>, Header, description = "`\"<version>\"` (list, weak comparison) or `*`: 304 when it matches"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` (list, strong comparison) or `*`: 412 unless it matches"),
        ("Baton-Lock" = Option<i64>, Header, description = "Under `lock_policy: read_write`: your exclusive lock on `{collection}/{key}`"),
    ),
    responses(
        (status = 200, description = "The record", body = Record,
            headers(("ETag" = String, description = "The version, quoted: `\"3\"`"))),
        (status = 304, description = "Not modified since the version in `If-None-Match`",
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 404, description = "No such record, or deleted (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` does not match (`precondition-failed`, with `record`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`read_write` lock policy and no live exclusive lock of yours named (`lock-required`, with the current holders)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_record(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (c, k) = names(raw)?;
    let if_match = conditional::if_match(&headers)?;
    let if_none_match = conditional::parse(&headers, &header::IF_NONE_MATCH)?;
    let lock = lock_header(&headers)?;
    let record = state.engine.record(&who, &c, &k, lock).await?;
    if let Some(Tags::List(tags)) = &if_match
        && !tags.iter().any(|(v, _)| *v == record.version)
    {
        return Err(Error::PreconditionFailed(Box::new(StaleWrite {
            presented: tags.iter().map(|(v, _)| *v).collect(),
            current: record,
            changed: Vec::new(),
            conflict: None,
        }))
        .into());
    }
    if if_none_match.is_some_and(|t| t.matches_weakly(record.version)) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response
            .headers_mut()
            .insert(header::ETAG, etag_value(record.version)?);
        return Ok(response);
    }
    let version = record.version;
    Ok(record_answer(StatusCode::OK, record, version))
}

/// Writes `op` with the request's preconditions, answering the record
/// with its new `ETag` (201 and `Location` when created).
async fn write(
    state: &AppState,
    who: &baton::Principal,
    raw: (String, String),
    headers: &HeaderMap,
    op: WriteOp,
) -> Result<Response, ApiError> {
    let (c, k) = names(raw)?;
    let precondition = conditional::write_precondition(headers)?;
    let lock = lock_header(headers)?;
    let w = RecordWrite::new(c, k, op, precondition, lock)?;
    let written: Written = state.engine.write_record(who, w).await?;
    let version = written.record.version;
    // A delete (forced or not) leaves a tombstone, whose data is null.
    if written.record.data.is_null() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if written.kind == WriteKind::Create {
        let location = HeaderValue::try_from(format!(
            "/v1/collections/{}/records/{}",
            written.record.collection, written.record.key
        ))
        .map_err(ApiError::internal)?;
        let mut response = record_answer(StatusCode::CREATED, written, version);
        response.headers_mut().insert(header::LOCATION, location);
        return Ok(response);
    }
    Ok(record_answer(StatusCode::OK, written, version))
}

/// Create or replace a record with the JSON object in the body.
///
/// - `If-None-Match: *`: create; 412 if the record exists.
/// - `If-Match: "<version>"` (from the `ETag` of your last read): replace;
///   412 if the record changed since, with the current record and what
///   changed (`changed`: path, old, new, by, at, version). The refused
///   body is kept at `conflict_url`.
/// - `If-Match: *`: replace whatever the version (recorded as `forced`).
/// - Neither: 428 under `reject` and `merge`; under `last_write_wins`,
///   creates or overwrites (recorded as `forced`).
#[utoipa::path(
    put,
    path = "/v1/collections/{collection}/records/{key}",
    tag = "records",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("key" = String, Path, description = "Record key"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` (or a list) to replace that version; `*` for any"),
        ("If-None-Match" = Option<String>, Header, description = "`*` to create"),
        ("Baton-Lock" = Option<i64>, Header, description = "The lock held on `{collection}/{key}`, where the lock policy requires one"),
    ),
    request_body(content = Object, description = "The record's data: a JSON object up to 64 KiB"),
    responses(
        (status = 200, description = "Replaced", body = Written, headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 201, description = "Created", body = Written, headers(("ETag" = String, description = "\"1\" (or the next version after a delete)"), ("Location" = String, description = "The record's URL"))),
        (status = 400, description = "Malformed or weak entity tag (`malformed-request`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`If-Match` on a record that does not exist (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale version, or create on an existing record (`precondition-failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "The lock policy needs your live exclusive lock named in `Baton-Lock` (`lock-required`, with the current holders; also for a lock whose fencing token is older than the resource's newest)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "No precondition under `reject`/`merge` (`precondition-required`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn put_record(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<(String, String)>,
    headers: HeaderMap,
    Json(data): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    write(&state, &who, raw, &headers, WriteOp::Put(data)).await
}

/// Change some fields with a JSON Merge Patch (RFC 7396, `Content-Type:
/// application/merge-patch+json`) based on the version in `If-Match`.
///
/// Stale under `reject`: 412 as for PUT. Stale under `merge`: merged
/// three-way with the changes made since your version when they touch
/// other fields (200 with `merged_from`); 409 with `conflicts` (path,
/// base, yours, theirs, by, at) and the cleanly merged changes apart
/// (`merged`) when they touch the same ones. Under `last_write_wins`:
/// applied to the current version.
#[utoipa::path(
    patch,
    path = "/v1/collections/{collection}/records/{key}",
    tag = "records",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("key" = String, Path, description = "Record key"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` your change is based on (required under `reject`/`merge`)"),
        ("Baton-Lock" = Option<i64>, Header, description = "The lock held on `{collection}/{key}`, where the lock policy requires one"),
    ),
    request_body(content = Object, content_type = "application/merge-patch+json", description = "A JSON Merge Patch: members replace, `null` removes, objects apply recursively"),
    responses(
        (status = 200, description = "Patched, or merged (`kind: merge`, `merged_from`)", body = Written, headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Malformed or weak entity tag (`malformed-request`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Overlapping changes under `merge` (`merge-conflict`, with `conflicts`, `merged`, `record`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale version (`precondition-failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "The lock policy needs your live exclusive lock named in `Baton-Lock` (`lock-required`)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "No `If-Match` under `reject`/`merge` (`precondition-required`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_record(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<(String, String)>,
    headers: HeaderMap,
    MergePatch(patch): MergePatch,
) -> Result<Response, ApiError> {
    write(&state, &who, raw, &headers, WriteOp::Patch(patch)).await
}

/// Delete a record based on the version in `If-Match`. The delete is a
/// version in the history (a tombstone); the key can be created again.
#[utoipa::path(
    delete,
    path = "/v1/collections/{collection}/records/{key}",
    tag = "records",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("key" = String, Path, description = "Record key"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` to delete (required under `reject`/`merge`)"),
        ("Baton-Lock" = Option<i64>, Header, description = "The lock held on `{collection}/{key}`, where the lock policy requires one"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such record (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale version (`precondition-failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "The lock policy needs your live exclusive lock named in `Baton-Lock` (`lock-required`)", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "No `If-Match` under `reject`/`merge` (`precondition-required`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_record(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    write(&state, &who, raw, &headers, WriteOp::Delete).await
}

/// Page of a history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size, 1 ..= 1000 (default 100).
    pub limit: Option<u32>,
    /// Only versions after this one: the previous page's `next_after`.
    pub after: Option<i64>,
}

/// A page of a record's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// The versions, oldest first, each with kind, who, when, the version
    /// it was based on and its changes (path, old, new); without data.
    pub versions: Vec<RecordVersion>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<Version>,
}

/// Every version of a record, oldest first (a page at a time).
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/records/{key}/history",
    tag = "records",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("key" = String, Path, description = "Record key"),
        HistoryQuery,
        ("Baton-Lock" = Option<i64>, Header, description = "Under `lock_policy: read_write`: your exclusive lock on `{collection}/{key}`"),
    ),
    responses(
        (status = 200, description = "A page of versions", body = HistoryPage),
        (status = 404, description = "Never written (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `limit` (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn record_history(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<JsonBody<HistoryPage>, ApiError> {
    let (c, k) = names(raw)?;
    let lock = lock_header(&headers)?;
    let filter = HistoryFilter {
        limit: query.limit.unwrap_or(100),
        after: query.after.map(Version),
    };
    let versions = state
        .engine
        .record_history(&who, &c, &k, &filter, lock)
        .await?;
    let next_after = next_after(&versions, filter.limit, |v| v.version);
    Ok(JsonBody(HistoryPage {
        versions,
        next_after,
    }))
}

/// One version of a record, with its data (none for a delete).
#[utoipa::path(
    get,
    path = "/v1/collections/{collection}/records/{key}/versions/{version}",
    tag = "records",
    params(
        ("collection" = String, Path, description = "Collection name"),
        ("key" = String, Path, description = "Record key"),
        ("version" = i64, Path, description = "Version"),
        ("Baton-Lock" = Option<i64>, Header, description = "Under `lock_policy: read_write`: your exclusive lock on `{collection}/{key}`"),
    ),
    responses(
        (status = 200, description = "The version", body = RecordVersion,
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 404, description = "No such version (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn record_version(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(raw): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (c, k) = names((raw.0, raw.1))?;
    let lock = lock_header(&headers)?;
    let v = state
        .engine
        .record_version(&who, &c, &k, Version(raw.2), lock)
        .await?;
    let version = v.version;
    Ok(record_answer(StatusCode::OK, v, version))
}

/// A refused write, kept for its author: what was sent (`body`), how
/// (`method`, `base_versions`), why it was refused (`refusal`, with
/// `changed` or `conflicts` and `merged`), against which version — so a
/// page can rebuild the form. Forgotten after 7 days.
#[utoipa::path(
    get,
    path = "/v1/conflicts/{id}",
    tag = "records",
    params(("id" = i64, Path, description = "The `conflict_id` of a 412 or 409")),
    responses(
        (status = 200, description = "The refused write", body = ConflictObject),
        (status = 404, description = "No such conflict object for you, or forgotten (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_conflict(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ConflictId>,
) -> Result<JsonBody<ConflictObject>, ApiError> {
    Ok(JsonBody(state.engine.conflict(&who, id).await?))
}
