//! Identity routes: who am I, and (admin) listing and creating principals.
//! A new principal's token is in the creation answer and never again.

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::StatusCode;
use baton::{Principal, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::Json;

/// The identity routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_principals, create_principal))
}

/// Body of `POST /v1/principals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    /// Unique name, 1–64 of letters, digits, `.`, `_`, `-`, `@`.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A new principal and its first token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPrincipal {
    /// The principal.
    pub principal: Principal,
    /// Its bearer token, `baton_…`. Shown once; only its hash is stored.
    pub token: String,
}

/// The principal making the request.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "principals",
    responses((status = 200, description = "You", body = Principal))
)]
async fn me(Caller(who): Caller) -> JsonBody<Principal> {
    JsonBody(who)
}

/// Admin: every principal, by name.
#[utoipa::path(
    get,
    path = "/v1/principals",
    tag = "principals",
    responses(
        (status = 200, description = "Every principal", body = Vec<Principal>),
        (status = 403, description = "Only admins manage principals (`forbidden`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_principals(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<JsonBody<Vec<Principal>>, ApiError> {
    Ok(JsonBody(state.engine.principals(&who).await?))
}

/// Admin: create a principal and its first token.
#[utoipa::path(
    post,
    path = "/v1/principals",
    tag = "principals",
    request_body = NewPrincipal,
    responses(
        (status = 201, description = "Created; the token is shown only now", body = CreatedPrincipal),
        (status = 403, description = "Only admins manage principals (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (`already-exists`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name or role (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_principal(
    State(state): State<AppState>,
    Caller(who): Caller,
    Json(body): Json<NewPrincipal>,
) -> Result<(StatusCode, JsonBody<CreatedPrincipal>), ApiError> {
    let (principal, token) = state
        .engine
        .create_principal(&who, &body.name, body.role)
        .await?;
    Ok((
        StatusCode::CREATED,
        JsonBody(CreatedPrincipal { principal, token }),
    ))
}
