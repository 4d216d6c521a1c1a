//! The record editor, `/records/{collection}/{key}`: a form generated from
//! the record's JSON that carries the version it was based on.
//!
//! Saving sends the difference between that version and the form as a
//! JSON Merge Patch with `If-Match` on that version, so the engine's rules
//! decide: applied as is, merged three-way with what others saved meanwhile
//! (the page says what was merged), or refused. A refusal shows the
//! conflict page: per field base / theirs / yours, a choice where both
//! changed, and the user's other changes kept on top of the new version,
//! ready to save again.
//!
//! Where the collection requires a lock, "Edit" takes the lock (labelled
//! with the web session, so logging out releases it), the page keeps it
//! alive, and saving, cancelling or leaving releases it; everyone else sees
//! who holds it and until when.

use std::collections::BTreeSet;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use baton::{
    CollectionName, HistoryFilter, Lock, LockFilter, LockId, LockMode, LockPolicy, LockRequest,
    Precondition, Record, RecordFilter, RecordKey, RecordWrite, ResourceName, Version, WriteKind,
    WriteOp, merge,
};
use serde::Deserialize;
use serde_json::Value;

use super::form::{apply_fields, fields_html, merge_patch_between, set_nulls};
use super::session::{Posted, WebUser, redirect_with};
use super::{Layout, WebError, encode, ok_page, page, when};
use crate::AppState;

/// How long a lock taken by "Edit" lives without a keepalive.
const EDIT_LOCK_TTL: u32 = 60;
/// Versions shown in a record's history.
const HISTORY_SHOWN: i64 = 15;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/records", get(open))
        .route("/records/{collection}", get(list))
        .route("/records/{collection}/{key}", get(show).post(save))
        .route("/records/{collection}/{key}/edit", post(edit))
        .route("/records/{collection}/{key}/cancel", post(cancel))
        .route("/web/locks/{id}/release", post(release_beacon))
}

fn names(collection: &str, key: &str) -> Result<(CollectionName, RecordKey), WebError> {
    Ok((CollectionName::new(collection)?, RecordKey::new(key)?))
}

fn record_url(c: &CollectionName, k: &RecordKey) -> String {
    format!("/records/{}/{}", encode(c.as_str()), encode(k.as_str()))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OpenQuery {
    collection: String,
    key: String,
}

/// The home page's "open a record" form.
async fn open(_user: WebUser, Query(q): Query<OpenQuery>) -> Result<Response, WebError> {
    let c = CollectionName::new(q.collection.trim())?;
    let key = q.key.trim();
    Ok(if key.is_empty() {
        Redirect::to(&format!("/records/{}", encode(c.as_str()))).into_response()
    } else {
        Redirect::to(&record_url(&c, &RecordKey::new(key)?)).into_response()
    })
}

struct Row {
    key: String,
    path: String,
    version: i64,
    by: String,
    at: String,
    at_text: String,
}

#[derive(Template)]
#[template(path = "records_list.html")]
struct ListPage {
    l: Layout,
    collection: String,
    collection_path: String,
    records: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    after: Option<String>,
}

const LIST_PAGE: u32 = 100;

async fn list(
    State(state): State<AppState>,
    user: WebUser,
    Path(collection): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let c = CollectionName::new(collection)?;
    let after = q.after.map(RecordKey::new).transpose()?;
    let records = state
        .engine
        .list_records(
            &user.principal,
            &c,
            &RecordFilter {
                limit: LIST_PAGE,
                after,
            },
        )
        .await?;
    let next = (records.len() == LIST_PAGE as usize)
        .then(|| records.last().map(|r| encode(r.key.as_str())))
        .flatten();
    let rows = records
        .into_iter()
        .map(|r| Row {
            path: encode(r.key.as_str()),
            key: r.key.to_string(),
            version: r.version.0,
            by: r.updated_by,
            at: r.updated_at.to_rfc3339(),
            at_text: when(r.updated_at),
        })
        .collect();
    Ok(ok_page(
        &user,
        &ListPage {
            l: Layout::of(&user, "home"),
            collection_path: encode(c.as_str()),
            collection: c.to_string(),
            records: rows,
            next,
        },
    ))
}

/// Someone else's lock on the record.
struct Holder {
    holder: String,
    until: String,
    until_text: String,
}

/// The caller's own edit lock.
struct HeldLock {
    id: LockId,
    ttl: u32,
}

struct HistoryRow {
    version: i64,
    kind: String,
    by: String,
    at: String,
    at_text: String,
    changed: String,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    l: Layout,
    collection: String,
    collection_path: String,
    key: String,
    key_path: String,
    version: Option<i64>,
    version_number: i64,
    holder: Option<Holder>,
    lock: Option<HeldLock>,
    lock_policy: String,
    readable: bool,
    editable: bool,
    updated: Option<(String, String, String)>,
    fields_html: String,
    history: Vec<HistoryRow>,
}

fn resource(c: &CollectionName, k: &RecordKey) -> Result<ResourceName, WebError> {
    Ok(ResourceName::new(format!("{c}/{k}"))?)
}

/// The caller's live lock on the record taken in this web session.
async fn my_lock(
    state: &AppState,
    user: &WebUser,
    c: &CollectionName,
    k: &RecordKey,
) -> Result<Option<Lock>, WebError> {
    let locks = state
        .engine
        .list_locks(
            &user.principal,
            &LockFilter {
                resource: Some(resource(c, k)?),
                holder: Some(user.principal.name.clone()),
                session: Some(user.session.id.clone()),
                limit: 1,
                after: None,
            },
        )
        .await?;
    Ok(locks
        .into_iter()
        .find(|l| l.ended.is_none() && l.mode == LockMode::Exclusive))
}

async fn show(
    State(state): State<AppState>,
    user: WebUser,
    Path((collection, key)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let (c, k) = names(&collection, &key)?;
    let engine = &state.engine;
    let who = &user.principal;
    let config = engine.collection_config(who, &c).await?;
    let lock = if config.lock_policy == LockPolicy::None {
        None
    } else {
        my_lock(&state, &user, &c, &k).await?
    };
    let holder = match (&lock, config.lock_policy) {
        (None, LockPolicy::Write | LockPolicy::ReadWrite) => engine
            .lock_status(who, &[resource(&c, &k)?])
            .await?
            .into_iter()
            .flat_map(|s| s.holders)
            .next()
            .map(|h| Holder {
                holder: h.holder,
                until: h.expires_at.to_rfc3339(),
                until_text: h.expires_at.format("%H:%M UTC").to_string(),
            }),
        _ => None,
    };
    let lock_id = lock.as_ref().map(|l| l.id);
    let readable = config.lock_policy != LockPolicy::ReadWrite || lock.is_some();
    let record = if readable {
        match engine.record(who, &c, &k, lock_id).await {
            Ok(r) => Some(r),
            Err(baton::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let Some(record) = record.or_else(|| (!readable).then(|| placeholder(&c, &k))) else {
        return Err(WebError::new(
            404,
            "No such record",
            format!("{c}/{k} does not exist (or was deleted). Records are created through the API: PUT /v1/collections/{c}/records/{k} with If-None-Match: *."),
        )
        .back(format!("/records/{}", encode(c.as_str()))));
    };
    let history = if readable {
        let after = (record.version.0 - HISTORY_SHOWN - 1).max(0);
        engine
            .record_history(
                who,
                &c,
                &k,
                &HistoryFilter {
                    limit: HISTORY_SHOWN as u32 + 1,
                    after: (after > 0).then_some(Version(after)),
                },
                lock_id,
            )
            .await?
            .into_iter()
            .rev()
            .map(|v| HistoryRow {
                version: v.version.0,
                kind: v.kind.to_string(),
                by: v.by,
                at: v.at.to_rfc3339(),
                at_text: when(v.at),
                changed: v
                    .changes
                    .iter()
                    .map(|c| c.path.trim_start_matches('/').replace('/', "."))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect()
    } else {
        Vec::new()
    };
    let editable = match config.lock_policy {
        LockPolicy::None => true,
        _ => lock.is_some(),
    };
    let template = RecordPage {
        l: Layout::of(&user, "home"),
        collection_path: encode(c.as_str()),
        key_path: encode(k.as_str()),
        collection: c.to_string(),
        key: k.to_string(),
        version: readable.then_some(record.version.0),
        version_number: record.version.0,
        holder,
        lock: lock.map(|l| HeldLock {
            id: l.id,
            ttl: l.ttl_seconds,
        }),
        lock_policy: config.lock_policy.as_str().to_owned(),
        readable,
        editable,
        updated: readable.then(|| {
            (
                record.updated_by.clone(),
                record.updated_at.to_rfc3339(),
                when(record.updated_at),
            )
        }),
        fields_html: fields_html(&record.data, &BTreeSet::new()),
        history,
    };
    Ok(ok_page(&user, &template))
}

/// What the page shows of a record it may not read.
fn placeholder(c: &CollectionName, k: &RecordKey) -> Record {
    Record {
        collection: c.clone(),
        key: k.clone(),
        version: Version(0),
        data: Value::Object(Default::default()),
        created_by: String::new(),
        created_at: chrono::DateTime::UNIX_EPOCH,
        updated_by: String::new(),
        updated_at: chrono::DateTime::UNIX_EPOCH,
    }
}

struct ConflictRow {
    path: String,
    base: String,
    theirs: String,
    theirs_raw: String,
    yours: String,
    yours_raw: String,
}

#[derive(Template)]
#[template(path = "record_conflict.html")]
struct ConflictPage {
    l: Layout,
    collection: String,
    collection_path: String,
    key: String,
    key_path: String,
    base: i64,
    current: i64,
    theirs_by: String,
    theirs_at: String,
    conflicts: Vec<ConflictRow>,
    merged: String,
    lock: Option<LockId>,
    fields_html: String,
}

fn shown(v: &Option<Value>) -> String {
    match v {
        None => "(removed)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn raw(v: &Option<Value>) -> String {
    match v {
        None => "absent".to_owned(),
        Some(v) => v.to_string(),
    }
}

fn pointer_list(paths: impl IntoIterator<Item = String>) -> String {
    paths
        .into_iter()
        .map(|p| p.trim_start_matches('/').replace('/', "."))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn save(
    State(state): State<AppState>,
    Path((collection, key)): Path<(String, String)>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let (c, k) = names(&collection, &key)?;
    let Posted {
        user,
        form,
        headers,
    } = posted;
    let url = record_url(&c, &k);
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let base = field("base")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .map(Version)
        .ok_or_else(|| {
            WebError::new(400, "Unreadable form", "The form lacks its version.").back(url.clone())
        })?;
    let lock = field("lock")
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<LockId>())
        .transpose()
        .map_err(|_| {
            WebError::new(400, "Unreadable form", "The lock id is not a number.").back(url.clone())
        })?;
    let engine = &state.engine;
    let who = &user.principal;
    let base_doc = engine.record_version(who, &c, &k, base, lock).await?;
    let Some(base_data) = base_doc.data else {
        return Err(WebError::new(
            409,
            "Deleted",
            format!("Version {base} of {c}/{k} is a deletion; reload the record."),
        )
        .back(url));
    };
    let yours = match apply_fields(&base_data, &form) {
        Ok(doc) => doc,
        Err(e) => {
            return Ok(redirect_with(
                &url,
                &headers,
                "bad",
                &format!("Not saved: {e}"),
            ));
        }
    };
    if yours == base_data {
        release_after_save(&state, &user, lock).await;
        return Ok(redirect_with(
            &url,
            &headers,
            "info",
            "Nothing changed, so nothing was saved.",
        ));
    }
    let op = if set_nulls(&base_data, &yours).is_empty() {
        WriteOp::Patch(merge_patch_between(&base_data, &yours))
    } else {
        WriteOp::Put(yours.clone())
    };
    let write = RecordWrite::new(
        c.clone(),
        k.clone(),
        op,
        Precondition::Matches(vec![base]),
        lock,
    )?;
    match engine.write_record(who, write).await {
        Ok(written) => {
            release_after_save(&state, &user, lock).await;
            let v = written.record.version;
            let text = match (written.kind, written.merged_from) {
                (WriteKind::Merge, Some(m)) => {
                    let mine = pointer_list(
                        merge::diff(Some(&base_data), Some(&yours))
                            .into_iter()
                            .map(|c| c.path),
                    );
                    format!(
                        "Saved as version {v}, merged: others saved versions {} to {} meanwhile; your changes ({mine}) were applied on top of theirs.",
                        m.base.0 + 1,
                        m.current.0
                    )
                }
                (WriteKind::Forced, _) => format!(
                    "Saved as version {v}. This collection lets the last write win: changes others saved meanwhile were overwritten (they stay in the history)."
                ),
                _ => format!("Saved as version {v}."),
            };
            Ok(redirect_with(&url, &headers, "ok", &text))
        }
        Err(baton::Error::PreconditionFailed(stale)) => {
            conflict_page(&user, &c, &k, base, &base_data, &yours, stale.current, lock).await
        }
        Err(baton::Error::MergeConflict(m)) => {
            conflict_page(&user, &c, &k, base, &base_data, &yours, m.current, lock).await
        }
        Err(e @ (baton::Error::LockRequired(_) | baton::Error::LockEnded { .. })) => {
            Ok(redirect_with(
                &url,
                &headers,
                "bad",
                &format!(
                    "Not saved: you no longer hold this record's lock ({e}). Click Edit to take it again; your changes are lost unless you copy them first."
                ),
            ))
        }
        Err(e) => Err(WebError::from(e).back(url)),
    }
}

/// Releases the edit lock once the save is done (or had nothing to do).
async fn release_after_save(state: &AppState, user: &WebUser, lock: Option<LockId>) {
    if let Some(id) = lock
        && let Err(e) = state.engine.release_lock(&user.principal, id).await
    {
        tracing::debug!(error = %e, lock = id, "the edit lock had already ended");
    }
}

#[allow(clippy::too_many_arguments)]
async fn conflict_page(
    user: &WebUser,
    c: &CollectionName,
    k: &RecordKey,
    base: Version,
    base_data: &Value,
    yours: &Value,
    current: Record,
    lock: Option<LockId>,
) -> Result<Response, WebError> {
    let merged = merge::merge3(base_data, yours, &current.data);
    let skip: BTreeSet<String> = merged.conflicts.iter().map(|c| c.path.clone()).collect();
    // Your changes that merge cleanly, on top of theirs.
    let kept = merge::diff(Some(&current.data), Some(&merged.merged))
        .into_iter()
        .map(|c| c.path)
        .filter(|p| !skip.iter().any(|s| merge::contains(s, p)));
    let conflicts = merged
        .conflicts
        .iter()
        .map(|p| ConflictRow {
            path: p.path.clone(),
            base: shown(&p.base),
            theirs: shown(&p.theirs),
            theirs_raw: raw(&p.theirs),
            yours: shown(&p.mine),
            yours_raw: raw(&p.mine),
        })
        .collect();
    let template = ConflictPage {
        l: Layout::of(user, "home"),
        collection: c.to_string(),
        collection_path: encode(c.as_str()),
        key: k.to_string(),
        key_path: encode(k.as_str()),
        base: base.0,
        current: current.version.0,
        theirs_by: current.updated_by.clone(),
        theirs_at: when(current.updated_at),
        conflicts,
        merged: pointer_list(kept),
        lock,
        fields_html: fields_html(&merged.merged, &skip),
    };
    Ok(page(StatusCode::CONFLICT, &template, user.flash.is_some()))
}

async fn edit(
    State(state): State<AppState>,
    Path((collection, key)): Path<(String, String)>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let (c, k) = names(&collection, &key)?;
    let Posted { user, headers, .. } = posted;
    let url = record_url(&c, &k);
    let req = LockRequest::new(
        vec![resource(&c, &k)?],
        LockMode::Exclusive,
        user.principal.name.clone(),
        Some(user.session.id.clone()),
        EDIT_LOCK_TTL,
        None,
        None,
    )?;
    match state
        .engine
        .acquire_lock(&user.principal, req, std::time::Duration::ZERO)
        .await
    {
        Ok(_) => Ok(Redirect::to(&url).into_response()),
        Err(baton::Error::Locked { conflicts, .. }) => {
            let who = conflicts
                .first()
                .map(|h| format!("{} until {}", h.holder, h.expires_at.format("%H:%M UTC")))
                .unwrap_or_else(|| "someone who asked first".to_owned());
            Ok(redirect_with(
                &url,
                &headers,
                "warn",
                &format!("Not yet: locked by {who}."),
            ))
        }
        Err(e) => Err(WebError::from(e).back(url)),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn cancel(
    State(state): State<AppState>,
    Path((collection, key)): Path<(String, String)>,
    posted: Posted<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let (c, k) = names(&collection, &key)?;
    let url = record_url(&c, &k);
    if let Some(lock) = my_lock(&state, &posted.user, &c, &k).await? {
        release_after_save(&state, &posted.user, Some(lock.id)).await;
    }
    Ok(redirect_with(
        &url,
        &posted.headers,
        "info",
        "Edit cancelled; the record is free for others.",
    ))
}

/// The page's `sendBeacon` when it is left while holding a lock.
async fn release_beacon(
    State(state): State<AppState>,
    Path(id): Path<LockId>,
    posted: Posted<Empty>,
) -> StatusCode {
    release_after_save(&state, &posted.user, Some(id)).await;
    StatusCode::NO_CONTENT
}
