//! Lock routes (Fowler's pessimistic offline lock): acquire (fail fast
//! with 423, or wait fairly; `Idempotency-Key`), keep alive, upgrade,
//! downgrade, release (by the holder, by session, or forced by a
//! supervisor with a reason), read a lock (also after it ended: how and
//! why), list, batch status, and a resource's history.
//!
//! Handlers only translate: they build the core's validated types (every
//! 422 names its field), call one engine operation (which checks the
//! role), and shape the answer. A refused request changed nothing.

use std::time::Duration;

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton::{
    Lock, LockEvent, LockFilter, LockId, LockMode, LockRequest, ResourceName, ResourceStatus,
    lock_limits,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, ProblemKind};
use crate::extract::{Json, OptionalJson, Path, Query};

/// The lock routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(acquire, list_locks))
        .routes(routes!(get_lock, release))
        .routes(routes!(status))
        .routes(routes!(heartbeat))
        .routes(routes!(upgrade))
        .routes(routes!(downgrade))
        .routes(routes!(release_session))
        .routes(routes!(history))
}

fn resource_names(names: Vec<String>) -> Result<Vec<ResourceName>, ApiError> {
    names
        .into_iter()
        .map(|n| ResourceName::new(n).map_err(ApiError::from))
        .collect()
}

/// Body of `POST /v1/locks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    /// The resources to lock, all or none: 1 to 100 names such as
    /// `customer/42` (each 1–256 bytes of printable text, without leading
    /// or trailing whitespace).
    pub resources: Vec<String>,
    /// `exclusive` (a write lock, the default) or `shared` (a read lock).
    #[serde(default = "default_mode")]
    pub mode: LockMode,
    /// Idle TTL: the lock ends this many seconds after the grant or the
    /// latest heartbeat, 1 ..= 86 400 (default 120).
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u32,
    /// With conflicts, wait up to this many seconds (0 ..= 60, default 0:
    /// fail fast with 423), queued fairly behind earlier requests.
    #[serde(default)]
    pub wait_seconds: u32,
    /// The caller's session label (one user, several tabs); `DELETE
    /// /v1/sessions/{session}/locks` releases them together. Defaults to
    /// the browser session's id when the request is authenticated by the
    /// session cookie.
    #[serde(default)]
    pub session: Option<String>,
    /// An absolute limit from the grant that no heartbeat extends, 1 ..=
    /// 604 800 seconds.
    #[serde(default)]
    pub max_hold_seconds: Option<u32>,
}

fn default_mode() -> LockMode {
    LockMode::Exclusive
}

fn default_ttl() -> u32 {
    120
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => Ok(Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::malformed("the Idempotency-Key header must be printable text")
                        .with_field("Idempotency-Key")
                })?
                .to_owned(),
        )),
    }
}

/// Lock resources, all or none.
///
/// Fails fast with 423 naming each conflicting resource with its holder,
/// mode and expiry (and `Retry-After`), unless `wait_seconds` > 0: then the
/// request waits in a fair FIFO queue per resource (a waiting exclusive
/// request is not overtaken by later shared ones) and is granted as soon as
/// what stands in its way is gone. A retry with the same `Idempotency-Key`
/// returns the same lock (200), never a second grant.
#[utoipa::path(
    post,
    path = "/v1/locks",
    tag = "locks",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the same lock (up to 256 bytes, remembered 24 h)"),
    ),
    request_body = AcquireBody,
    responses(
        (status = 201, description = "Granted", body = Lock,
            headers(("Location" = String, description = "/v1/locks/{id}"))),
        (status = 200, description = "The lock an earlier request with this `Idempotency-Key` got", body = Lock),
        (status = 403, description = "Role may not take locks (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The lock this `Idempotency-Key` got has ended (`lock-ended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (`invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "Locked by others, or others wait first (`locked`): `conflicts` names each resource's holder, mode and expiry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until the earliest conflict may be gone"))),
    )
)]
async fn acquire(
    State(state): State<AppState>,
    Caller(who): Caller,
    web: Option<axum::Extension<crate::auth::WebSession>>,
    headers: HeaderMap,
    Json(body): Json<AcquireBody>,
) -> Result<Response, ApiError> {
    // A lock taken from a page without a label of its own is labelled with
    // the browser session, so logging out releases it.
    let session = body
        .session
        .or_else(|| web.map(|axum::Extension(s)| s.0.id));
    let req = LockRequest::new(
        resource_names(body.resources)?,
        body.mode,
        who.name.clone(),
        session,
        body.ttl_seconds,
        body.max_hold_seconds,
        idempotency_key(&headers)?,
    )?;
    let wait = Duration::from_secs(body.wait_seconds.into());
    // A waiting request must not hold up a graceful shutdown; its ticket
    // is withdrawn when the engine's future is dropped.
    let (lock, created) = tokio::select! {
        r = state.engine.acquire_lock(&who, req, wait) => r?,
        _ = state.shutdown.cancelled() => {
            return Err(ApiError::unavailable(
                ProblemKind::ShuttingDown,
                "the server is shutting down; try again",
                1,
            ));
        }
    };
    if created {
        let location =
            HeaderValue::try_from(format!("/v1/locks/{}", lock.id)).map_err(ApiError::internal)?;
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            JsonBody(lock),
        )
            .into_response())
    } else {
        Ok((StatusCode::OK, JsonBody(lock)).into_response())
    }
}

/// Filter and page of `GET /v1/locks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LockQuery {
    /// Only locks covering this resource.
    pub resource: Option<String>,
    /// Only locks of this holder.
    pub holder: Option<String>,
    /// Only locks of this session label.
    pub session: Option<String>,
    /// Page size, 1 ..= 1000 (default 100).
    pub limit: Option<u32>,
    /// Only locks with an id greater than this: the previous page's
    /// `next_after`.
    pub after: Option<LockId>,
}

/// A page of live locks.
#[derive(Debug, Serialize, ToSchema)]
pub struct LockPage {
    /// The locks, by id.
    pub locks: Vec<Lock>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<LockId>,
}

/// The live locks, by resource, holder and session.
#[utoipa::path(
    get,
    path = "/v1/locks",
    tag = "locks",
    params(LockQuery),
    responses(
        (status = 200, description = "A page of live locks", body = LockPage),
        (status = 422, description = "Invalid filter (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_locks(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(q): Query<LockQuery>,
) -> Result<JsonBody<LockPage>, ApiError> {
    let filter = LockFilter {
        resource: q
            .resource
            .filter(|r| !r.is_empty())
            .map(|r| ResourceName::new(r).map_err(crate::error::in_field("resource")))
            .transpose()?,
        holder: q.holder.filter(|h| !h.is_empty()),
        session: q.session.filter(|s| !s.is_empty()),
        limit: q.limit.unwrap_or(100),
        after: q.after,
    };
    let locks = state.engine.list_locks(&who, &filter).await?;
    let full = u32::try_from(locks.len()).is_ok_and(|n| n == filter.limit);
    let next_after = if full {
        locks.last().map(|l| l.id)
    } else {
        None
    };
    Ok(JsonBody(LockPage { locks, next_after }))
}

/// One lock, live or ended: an ended lock says how (`released`,
/// `expired`, `forced`), when, by whom and why, for 7 days.
#[utoipa::path(
    get,
    path = "/v1/locks/{id}",
    tag = "locks",
    params(("id" = LockId, Path, description = "Lock id")),
    responses(
        (status = 200, description = "The lock; `ended` is null while it is live", body = Lock),
        (status = 404, description = "No such lock, or it ended longer ago than the retention (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_lock(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<LockId>,
) -> Result<JsonBody<Lock>, ApiError> {
    Ok(JsonBody(state.engine.lock(&who, id).await?))
}

/// Query of `DELETE /v1/locks/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReleaseQuery {
    /// Supervisor: release someone else's lock.
    pub force: Option<bool>,
    /// With `force=true`, required: why (recorded in the history and shown
    /// to the evicted holder).
    pub reason: Option<String>,
}

/// Release a lock: the holder's own, or with `force=true&reason=...` a
/// supervisor's forced release of anyone's, which also gives the
/// resources a new fencing token.
#[utoipa::path(
    delete,
    path = "/v1/locks/{id}",
    tag = "locks",
    params(("id" = LockId, Path, description = "Lock id"), ReleaseQuery),
    responses(
        (status = 204, description = "Released"),
        (status = 403, description = "Not the holder (`not-holder`), or `force` without the supervisor role (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such lock (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The lock has ended already, saying how (`lock-ended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`force` without a `reason`, or a `reason` without `force` (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn release(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<LockId>,
    Query(q): Query<ReleaseQuery>,
) -> Result<StatusCode, ApiError> {
    if q.force == Some(true) {
        state
            .engine
            .force_release_lock(&who, id, q.reason.as_deref())
            .await?;
    } else {
        if q.reason.is_some() {
            return Err(ApiError::from(baton::Error::invalid(
                "reason",
                "a reason goes with force=true; a holder releases without one",
            )));
        }
        state.engine.release_lock(&who, id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /v1/locks/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// Up to 500 resource names.
    pub resources: Vec<String>,
}

/// The lock state of each resource asked about.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAnswer {
    /// One entry per distinct resource, in the order asked.
    pub resources: Vec<ResourceStatus>,
}

/// Batch status: which of up to 500 resources are locked, by whom, in
/// which mode, until when — lock badges for a whole list page in one call.
#[utoipa::path(
    post,
    path = "/v1/locks/status",
    tag = "locks",
    request_body = StatusBody,
    responses(
        (status = 200, description = "The state of each resource", body = StatusAnswer),
        (status = 422, description = "More than 500 resources, or an invalid name (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn status(
    State(state): State<AppState>,
    Caller(who): Caller,
    Json(body): Json<StatusBody>,
) -> Result<JsonBody<StatusAnswer>, ApiError> {
    if body.resources.len() > lock_limits::MAX_STATUS_RESOURCES {
        return Err(ApiError::from(baton::Error::invalid(
            "resources",
            format!(
                "at most {} resources per request, got {}",
                lock_limits::MAX_STATUS_RESOURCES,
                body.resources.len()
            ),
        )));
    }
    let resources = resource_names(body.resources)?;
    Ok(JsonBody(StatusAnswer {
        resources: state.engine.lock_status(&who, &resources).await?,
    }))
}

/// Body of `POST /v1/locks/{id}/heartbeat`; may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockHeartbeatBody {
    /// The new idle TTL from now, 1 ..= 86 400 seconds (default: the
    /// lock's current TTL). Never extends past `max_hold_until`.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
}

/// Holder: keep the lock alive (a page open on the record pings this).
#[utoipa::path(
    post,
    path = "/v1/locks/{id}/heartbeat",
    tag = "locks",
    params(("id" = LockId, Path, description = "Lock id")),
    request_body(content = Option<LockHeartbeatBody>, description = "May be empty: the lock's own TTL"),
    responses(
        (status = 200, description = "The lock with its new expiry", body = Lock),
        (status = 403, description = "Not the holder (`not-holder`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such lock (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The lock has ended: `ended` says how (expired, released, forced), when, by whom and why (`lock-ended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid TTL (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn heartbeat(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<LockId>,
    OptionalJson(body): OptionalJson<LockHeartbeatBody>,
) -> Result<JsonBody<Lock>, ApiError> {
    Ok(JsonBody(
        state
            .engine
            .heartbeat_lock(&who, id, body.ttl_seconds)
            .await?,
    ))
}

/// Body of the upgrade and downgrade: empty, or an empty JSON object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// Holder: make a shared lock exclusive (new fencing token) — only when
/// the caller is its resources' only holder, 423 otherwise.
#[utoipa::path(
    post,
    path = "/v1/locks/{id}/upgrade",
    tag = "locks",
    params(("id" = LockId, Path, description = "Lock id")),
    request_body(content = Option<EmptyBody>, description = "Empty, or `{}`"),
    responses(
        (status = 200, description = "The lock, now exclusive (unchanged if it was)", body = Lock),
        (status = 403, description = "Not the holder (`not-holder`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such lock (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The lock has ended (`lock-ended`)", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "Others share a resource (`locked`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until the earliest other holder's lock expires"))),
    )
)]
async fn upgrade(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<LockId>,
    OptionalJson(EmptyBody {}): OptionalJson<EmptyBody>,
) -> Result<JsonBody<Lock>, ApiError> {
    Ok(JsonBody(state.engine.upgrade_lock(&who, id).await?))
}

/// Holder: make an exclusive lock shared (same token); others may then
/// share.
#[utoipa::path(
    post,
    path = "/v1/locks/{id}/downgrade",
    tag = "locks",
    params(("id" = LockId, Path, description = "Lock id")),
    request_body(content = Option<EmptyBody>, description = "Empty, or `{}`"),
    responses(
        (status = 200, description = "The lock, now shared (unchanged if it was)", body = Lock),
        (status = 403, description = "Not the holder (`not-holder`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such lock (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The lock has ended (`lock-ended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn downgrade(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<LockId>,
    OptionalJson(EmptyBody {}): OptionalJson<EmptyBody>,
) -> Result<JsonBody<Lock>, ApiError> {
    Ok(JsonBody(state.engine.downgrade_lock(&who, id).await?))
}

/// The locks a logout released.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionReleased {
    /// The caller's locks of that session that were live, now released.
    pub released: Vec<Lock>,
}

/// Logout: release every live lock of the caller with this session label.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{session}/locks",
    tag = "locks",
    params(("session" = String, Path, description = "Session label (percent-encoded)")),
    responses(
        (status = 200, description = "The locks released (possibly none)", body = SessionReleased),
        (status = 403, description = "Role may not take locks (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid session label (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn release_session(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(session): Path<String>,
) -> Result<JsonBody<SessionReleased>, ApiError> {
    Ok(JsonBody(SessionReleased {
        released: state.engine.release_session(&who, &session).await?,
    }))
}

/// Page of `GET /v1/resources/{resource}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many of the latest events, 1 ..= 1000 (default 100).
    pub limit: Option<u32>,
}

/// A resource's lock history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceHistory {
    /// The latest events, oldest first.
    pub events: Vec<LockEvent>,
}

/// Supervisor: a resource's lock history — granted, extended, upgraded,
/// downgraded, released, expired, forced (with who and why).
#[utoipa::path(
    get,
    path = "/v1/resources/{resource}/history",
    tag = "locks",
    params(("resource" = String, Path, description = "Resource name, percent-encoded (`customer%2F42`)"), HistoryQuery),
    responses(
        (status = 200, description = "The latest events, oldest first (none for a resource never locked)", body = ResourceHistory),
        (status = 403, description = "Only supervisors read lock history (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid resource name or limit (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(resource): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<JsonBody<ResourceHistory>, ApiError> {
    let resource = ResourceName::new(resource).map_err(crate::error::in_field("resource"))?;
    let events = state
        .engine
        .resource_history(&who, &resource, q.limit.unwrap_or(100))
        .await?;
    Ok(JsonBody(ResourceHistory { events }))
}
