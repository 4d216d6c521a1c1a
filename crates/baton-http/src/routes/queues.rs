//! Queue routes: enqueue, claim (with long-poll and `Idempotency-Key`),
//! listing items, statistics and per-queue settings.
//!
//! Handlers only translate: they build the core's validated request types
//! (so every 422 names its field), call one engine operation, and shape
//! the answer. The engine checks roles; the store makes each operation
//! atomic, so a refused request has changed nothing.

use std::time::Duration;

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton::{
    ClaimRequest, Claimed, Item, ItemFilter, ItemId, ItemState, Kind, NewItem, QueueConfig,
    QueueName, QueueStats,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, ProblemKind, in_field};
use crate::extract::{Json, OptionalJson, Path, Query};

/// The queue routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queues))
        .routes(routes!(enqueue, list_items))
        .routes(routes!(get_config, put_config))
        .routes(routes!(claim))
}

/// Parses the `{queue}` path segment.
fn queue_name(raw: String) -> Result<QueueName, ApiError> {
    Ok(QueueName::new(raw)?)
}

/// Body of `POST /v1/queues/{queue}/items`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    /// What kind of work, e.g. `refund` (1–64 of `A-Za-z0-9._-`).
    pub kind: String,
    /// The application's data: any JSON value up to 256 KiB.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Higher is claimed first.
    #[serde(default)]
    pub priority: i32,
    /// Not claimable for this many seconds (0 ..= 2 592 000).
    #[serde(default)]
    pub delay_seconds: u32,
    /// While an unfinished item of this queue has this key, enqueueing it
    /// again returns that item (200) instead of creating one (201).
    #[serde(default)]
    pub dedupe_key: Option<String>,
}

/// Enqueue an item.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/items",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name")),
    request_body = EnqueueBody,
    responses(
        (status = 201, description = "Enqueued", body = Item,
            headers(("Location" = String, description = "/v1/items/{id}"))),
        (status = 200, description = "An unfinished item with this `dedupe_key` exists: that item", body = Item),
        (status = 403, description = "Role may not enqueue (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn enqueue(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(queue): Path<String>,
    Json(body): Json<EnqueueBody>,
) -> Result<Response, ApiError> {
    let new = NewItem::new(
        queue_name(queue)?,
        Kind::new(body.kind)?,
        body.payload,
        body.priority,
        body.delay_seconds,
        body.dedupe_key,
    )?;
    let (item, created) = state.engine.enqueue(&who, new).await?;
    if created {
        let location =
            HeaderValue::try_from(format!("/v1/items/{}", item.id)).map_err(ApiError::internal)?;
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            JsonBody(item),
        )
            .into_response())
    } else {
        Ok((StatusCode::OK, JsonBody(item)).into_response())
    }
}

/// Statistics of every queue.
#[utoipa::path(
    get,
    path = "/v1/queues",
    tag = "queues",
    responses(
        (status = 200, description = "Counts per queue and state, age of the oldest ready item, settings", body = Vec<QueueStats>),
    )
)]
async fn list_queues(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<JsonBody<Vec<QueueStats>>, ApiError> {
    Ok(JsonBody(state.engine.queue_stats(&who).await?))
}

/// Filter and page of `GET /v1/queues/{queue}/items`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only items in this state: scheduled, ready, leased, parked, done.
    #[param(value_type = Option<ItemState>)]
    pub state: Option<String>,
    /// Only items leased to (or, when done, completed by) this principal.
    pub holder: Option<String>,
    /// Page size, 1 ..= 1000 (default 100).
    pub limit: Option<u32>,
    /// Only items with an id greater than this: the previous page's
    /// `next_after`.
    pub after: Option<ItemId>,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemPage {
    /// The items, by id.
    pub items: Vec<Item>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next_after: Option<ItemId>,
}

/// A page of a queue's items, by id (keyset paging).
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/items",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name"), ListQuery),
    responses(
        (status = 200, description = "A page of items", body = ItemPage),
        (status = 422, description = "Invalid filter (`invalid`, naming `state` or `limit`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_items(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(queue): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<JsonBody<ItemPage>, ApiError> {
    let queue = queue_name(queue)?;
    let filter = ItemFilter {
        state: match query.state.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<ItemState>()?),
        },
        holder: query.holder.filter(|h| !h.is_empty()),
        limit: query.limit.unwrap_or(100),
        after: query.after,
    };
    let items = state.engine.list_items(&who, &queue, &filter).await?;
    let full = u32::try_from(items.len()).is_ok_and(|n| n == filter.limit);
    let next_after = if full {
        items.last().map(|i| i.id)
    } else {
        None
    };
    Ok(JsonBody(ItemPage { items, next_after }))
}

/// A queue's settings (the defaults for a queue not used yet).
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/config",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name")),
    responses((status = 200, description = "The queue's settings", body = QueueConfig))
)]
async fn get_config(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(queue): Path<String>,
) -> Result<JsonBody<QueueConfig>, ApiError> {
    let queue = queue_name(queue)?;
    Ok(JsonBody(state.engine.queue_config(&who, &queue).await?))
}

/// Body of `PUT /v1/queues/{queue}/config`: the fields to change. A field
/// left out keeps its current value; `"escalation_outcome": null` turns
/// escalation off.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfigChange {
    /// Live leases one principal may hold in the queue at once.
    pub max_leases_per_holder: Option<u32>,
    /// Expired leases after which an item is parked.
    pub max_attempts: Option<u32>,
    /// The outcomes a completion may name.
    pub outcomes: Option<Vec<String>>,
    /// The outcome that may carry `escalate_to`; `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub escalation_outcome: Option<Option<String>>,
    /// Seconds a released item is not offered back to whoever released
    /// it.
    pub skip_cooldown_seconds: Option<u32>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl QueueConfigChange {
    fn apply(self, mut config: QueueConfig) -> QueueConfig {
        if let Some(v) = self.max_leases_per_holder {
            config.max_leases_per_holder = v;
        }
        if let Some(v) = self.max_attempts {
            config.max_attempts = v;
        }
        if let Some(v) = self.outcomes {
            config.outcomes = v;
        }
        if let Some(v) = self.escalation_outcome {
            config.escalation_outcome = v;
        }
        if let Some(v) = self.skip_cooldown_seconds {
            config.skip_cooldown_seconds = v;
        }
        config
    }
}

/// Supervisor: change a queue's settings. The body names only the fields
/// to change; the others keep their current values. Answers the settings
/// now in force.
#[utoipa::path(
    put,
    path = "/v1/queues/{queue}/config",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name")),
    request_body = QueueConfigChange,
    responses(
        (status = 200, description = "The settings now in force", body = QueueConfig),
        (status = 403, description = "Only supervisors change settings (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid setting (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn put_config(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(queue): Path<String>,
    Json(change): Json<QueueConfigChange>,
) -> Result<JsonBody<QueueConfig>, ApiError> {
    let queue = queue_name(queue)?;
    // Merged onto the settings in force inside the store's transaction, so
    // concurrent changes of different fields (on any server) all survive.
    let config = state
        .engine
        .update_queue_config(&who, &queue, move |current| change.clone().apply(current))
        .await?;
    Ok(JsonBody(config))
}

/// Body of `POST /v1/queues/{queue}/claim`; may be empty (all defaults).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimBody {
    /// Length of the lease, 1 ..= 86 400 seconds (default 300).
    pub lease_seconds: u32,
    /// Only items of these kinds (at most 32); empty for any.
    pub kinds: Vec<String>,
    /// With nothing claimable, wait up to this many seconds (0 ..= 60) for
    /// work to arrive.
    pub wait_seconds: u32,
}

impl Default for ClaimBody {
    fn default() -> Self {
        Self {
            lease_seconds: 300,
            kinds: Vec::new(),
            wait_seconds: 0,
        }
    }
}

/// Operator: claim the next item (highest priority, then oldest).
///
/// A retry carrying the same `Idempotency-Key` returns the same item and
/// lease. A principal already holding `max_leases_per_holder` live leases
/// in the queue gets the one it holds back.
#[utoipa::path(
    post,
    path = "/v1/queues/{queue}/claim",
    tag = "queues",
    params(
        ("queue" = String, Path, description = "Queue name"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the same claim (up to 256 bytes, remembered 24 h)"),
    ),
    request_body(content = Option<ClaimBody>, description = "May be empty: lease 300 s, any kind, no wait"),
    responses(
        (status = 200, description = "Claimed: the item and its lease", body = Claimed),
        (status = 204, description = "Nothing claimable (within `wait_seconds`)"),
        (status = 403, description = "Role may not claim (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The `Idempotency-Key` was used for a claim whose lease has ended (`stale-token`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn claim(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<ClaimBody>,
) -> Result<Response, ApiError> {
    let queue = queue_name(queue)?;
    let kinds = body
        .kinds
        .into_iter()
        .map(Kind::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(in_field("kinds"))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::malformed("the Idempotency-Key header must be printable text")
                        .with_field("Idempotency-Key")
                })?
                .to_owned(),
        ),
    };
    // The header values share hyper's read buffer: holding them through a
    // long-poll would pin that buffer (8 KB) for the whole wait.
    drop(headers);
    let req = ClaimRequest::new(queue, kinds, who.name.clone(), body.lease_seconds, key)?;
    let wait = Duration::from_secs(body.wait_seconds.into());
    // A long-poll must not hold up a graceful shutdown. If shutdown wins the
    // race while the store is committing a claim, the lease is not lost:
    // the holder's next claim returns it (max_leases_per_holder), or it
    // expires.
    let claimed = tokio::select! {
        r = state.engine.claim(&who, req, wait) => r?,
        _ = state.shutdown.cancelled() => {
            return Err(ApiError::unavailable(
                ProblemKind::ShuttingDown,
                "the server is shutting down; claim again",
                1,
            ));
        }
    };
    Ok(match claimed {
        Some(claimed) => (StatusCode::OK, JsonBody::<Claimed>(claimed)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
