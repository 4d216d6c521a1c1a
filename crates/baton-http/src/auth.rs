//! Bearer-token authentication: the [`Caller`] extractor turns
//! `Authorization: Bearer <token>` into the [`Principal`] making the
//! request, or refuses with 401 and `WWW-Authenticate: Bearer`.
//!
//! Only authentication happens here. What a principal may do is decided by
//! the engine, which checks the role on every operation, so an in-process
//! caller meets exactly the same rules as an HTTP one.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use baton::Principal;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated principal making the request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?;
        match state.engine.authenticate(token).await? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(ApiError::unauthorized(
                "the bearer token is unknown or has been revoked",
                true,
            )),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::unauthorized(
            "send `Authorization: Bearer <token>`; create tokens with `baton token create` or POST /v1/principals",
            false,
        )
    };
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token)
}
