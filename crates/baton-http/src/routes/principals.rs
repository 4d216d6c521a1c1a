//! Identity routes: who am I; (admin) listing and creating principals,
//! their tokens (list, create, revoke); passwords (admins for anyone,
//! people for themselves). A token is in its creation answer and never
//! again; a password is never in any answer or log.

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::StatusCode;
use baton::{Principal, Role, TokenInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};

/// The identity routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_principals, create_principal))
        .routes(routes!(set_password))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Body of `PUT /v1/principals/{name}/password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The new password, 8 to 1024 bytes (UTF-8).
    pub password: String,
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword { password: \"***\" }")
    }
}

/// A new token of an existing principal.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// Its id (for listing and revoking) and creation time.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token, `baton_…`. Shown once; only its hash is stored.
    pub token: String,
}

/// Set a principal's password: admins for anyone, anyone for themselves.
/// The principal's sessions and tokens stay valid.
#[utoipa::path(
    put,
    path = "/v1/principals/{name}/password",
    tag = "principals",
    params(("name" = String, Path, description = "Principal name")),
    request_body = NewPassword,
    responses(
        (status = 204, description = "Set"),
        (status = 403, description = "Only admins set others' passwords (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Password not 8 to 1024 bytes (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn set_password(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
    Json(body): Json<NewPassword>,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .set_password(&who, &name, &body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admin: a principal's tokens (ids and creation times, never the tokens),
/// oldest first.
#[utoipa::path(
    get,
    path = "/v1/principals/{name}/tokens",
    tag = "principals",
    params(("name" = String, Path, description = "Principal name")),
    responses(
        (status = 200, description = "The principal's tokens", body = Vec<TokenInfo>),
        (status = 403, description = "Only admins manage tokens (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Result<JsonBody<Vec<TokenInfo>>, ApiError> {
    Ok(JsonBody(state.engine.tokens(&who, &name).await?))
}

/// Admin: a new token for a principal.
#[utoipa::path(
    post,
    path = "/v1/principals/{name}/tokens",
    tag = "principals",
    params(("name" = String, Path, description = "Principal name")),
    responses(
        (status = 201, description = "Created; the token is shown only now", body = CreatedToken),
        (status = 403, description = "Only admins manage tokens (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal (`not-found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, JsonBody<CreatedToken>), ApiError> {
    let (info, token) = state.engine.create_token(&who, &name).await?;
    Ok((StatusCode::CREATED, JsonBody(CreatedToken { info, token })))
}

/// Admin: revoke one of a principal's tokens. It stops working at once on
/// this server, within 10 s on others sharing the database.
#[utoipa::path(
    delete,
    path = "/v1/principals/{name}/tokens/{id}",
    tag = "principals",
    params(
        ("name" = String, Path, description = "Principal name"),
        ("id" = String, Path, description = "Token id (16 hex digits, from the listing)"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Only admins manage tokens (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such principal, or it has no such token (`not-found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not 16 hex digits (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.engine.revoke_token(&who, &name, &id).await?;
    Ok(StatusCode::NO_CONTENT)
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
