//! Item routes: what a lease holder does with an item (heartbeat, release,
//! complete), what a supervisor does (revoke, requeue), and reading an item
//! and its history.
//!
//! Every holder action carries the fencing token of the caller's lease; the
//! engine refuses a stale one with 409 and a caller who is not the holder
//! with 403, and the store guarantees the refusal changed nothing.

use axum::Json as JsonBody;
use axum::extract::State;
use baton::{CompleteRequest, FencingToken, Item, ItemEvent, ItemId, Lease, QueueName};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, in_field};
use crate::extract::{Json, OptionalJson, Path};

/// The item routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_item))
        .routes(routes!(history))
        .routes(routes!(heartbeat))
        .routes(routes!(release))
        .routes(routes!(complete))
        .routes(routes!(revoke))
        .routes(routes!(requeue))
}

/// Body of `POST /v1/items/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The fencing token of your lease.
    #[schema(value_type = i64)]
    pub token: FencingToken,
    /// New length of the lease from now, 1 ..= 86 400 seconds (default
    /// 300).
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
}

fn default_lease_seconds() -> u32 {
    300
}

/// Body of `POST /v1/items/{id}/release`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The fencing token of your lease.
    #[schema(value_type = i64)]
    pub token: FencingToken,
    /// Claimable again after this many seconds (0 ..= 2 592 000).
    #[serde(default)]
    pub delay_seconds: u32,
}

/// Body of `POST /v1/items/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    /// The fencing token of your lease.
    #[schema(value_type = i64)]
    pub token: FencingToken,
    /// One of the queue's outcomes (default `accepted`, `rejected`,
    /// `escalated`).
    pub outcome: String,
    /// Free text, up to 4 KiB.
    #[serde(default)]
    pub note: Option<String>,
    /// With the queue's escalation outcome: move the item to this queue,
    /// where it is ready again.
    #[serde(default)]
    pub escalate_to: Option<String>,
}

/// Body of the supervisor actions: empty, or an empty JSON object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoBody {}

/// Every event of an item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemHistory {
    /// Oldest first.
    pub events: Vec<ItemEvent>,
}

/// One item, live or done.
#[utoipa::path(
    get,
    path = "/v1/items/{id}",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_item(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
) -> Result<JsonBody<Item>, ApiError> {
    Ok(JsonBody(state.engine.item(&who, id).await?))
}

/// Every event of an item: enqueued, claimed (by whom, with which token),
/// extended, released, expired, parked, completed, escalated, revoked,
/// requeued.
#[utoipa::path(
    get,
    path = "/v1/items/{id}/history",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item's events, oldest first", body = ItemHistory),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn history(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
) -> Result<JsonBody<ItemHistory>, ApiError> {
    let events = state.engine.item_history(&who, id).await?;
    Ok(JsonBody(ItemHistory { events }))
}

/// Holder: extend the lease (keepalive).
#[utoipa::path(
    post,
    path = "/v1/items/{id}/heartbeat",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    request_body = HeartbeatBody,
    responses(
        (status = 200, description = "The extended lease", body = Lease),
        (status = 403, description = "Not the holder (`not-holder`) or role may not work items (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is stale (`stale-token`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn heartbeat(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
    Json(body): Json<HeartbeatBody>,
) -> Result<JsonBody<Lease>, ApiError> {
    let item = state
        .engine
        .heartbeat(&who, id, body.token, body.lease_seconds)
        .await?;
    let lease = item
        .lease
        .ok_or_else(|| ApiError::internal(format!("heartbeat of item {id} left no lease")))?;
    Ok(JsonBody(lease))
}

/// Holder: give the item back, claimable again after `delay_seconds`.
#[utoipa::path(
    post,
    path = "/v1/items/{id}/release",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    request_body = ReleaseBody,
    responses(
        (status = 200, description = "The released item", body = Item),
        (status = 403, description = "Not the holder (`not-holder`) or role may not work items (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is stale (`stale-token`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn release(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
    Json(body): Json<ReleaseBody>,
) -> Result<JsonBody<Item>, ApiError> {
    let item = state
        .engine
        .release(&who, id, body.token, body.delay_seconds)
        .await?;
    Ok(JsonBody(item))
}

/// Holder: complete the item with an outcome; with the escalation outcome
/// and `escalate_to`, move it to another queue instead.
#[utoipa::path(
    post,
    path = "/v1/items/{id}/complete",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    request_body = CompleteBody,
    responses(
        (status = 200, description = "The completed (or escalated) item", body = Item),
        (status = 403, description = "Not the holder (`not-holder`) or role may not work items (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The token is stale (`stale-token`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown outcome, bad `escalate_to`, note too long (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn complete(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
    Json(body): Json<CompleteBody>,
) -> Result<JsonBody<Item>, ApiError> {
    let escalate_to = body
        .escalate_to
        .map(QueueName::new)
        .transpose()
        .map_err(in_field("escalate_to"))?;
    let req = CompleteRequest::new(body.token, body.outcome, body.note, escalate_to)?;
    Ok(JsonBody(state.engine.complete(&who, id, req).await?))
}

/// Supervisor: take the lease away; the item is ready again and the
/// holder's token is stale.
#[utoipa::path(
    post,
    path = "/v1/items/{id}/revoke",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    request_body(content = Option<NoBody>, description = "Empty, or `{}`"),
    responses(
        (status = 200, description = "The item, ready again", body = Item),
        (status = 403, description = "Only supervisors revoke (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The item is not leased (`wrong-state`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<JsonBody<Item>, ApiError> {
    Ok(JsonBody(state.engine.revoke(&who, id).await?))
}

/// Supervisor: put a parked item back into circulation (attempts reset).
#[utoipa::path(
    post,
    path = "/v1/items/{id}/requeue",
    tag = "items",
    params(("id" = ItemId, Path, description = "Item id")),
    request_body(content = Option<NoBody>, description = "Empty, or `{}`"),
    responses(
        (status = 200, description = "The item, ready again", body = Item),
        (status = 403, description = "Only supervisors requeue (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The item is not parked (`wrong-state`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn requeue(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<ItemId>,
    OptionalJson(NoBody {}): OptionalJson<NoBody>,
) -> Result<JsonBody<Item>, ApiError> {
    Ok(JsonBody(state.engine.requeue(&who, id).await?))
}
