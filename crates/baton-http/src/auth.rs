//! Authentication: the [`Caller`] extractor turns `Authorization: Bearer
//! <token>` — or, for the web pages' scripts, the browser's session
//! cookie — into the [`Principal`] making the request, or refuses with 401
//! and `WWW-Authenticate: Bearer`.
//!
//! A request authenticated by the session cookie that could change
//! something (any method but GET, HEAD, OPTIONS) must also carry the
//! session's CSRF token in `X-CSRF-Token`, or it is refused with 403
//! `csrf` and changes nothing: another site can make a browser send the
//! cookie, but cannot read the token. The session is put in the request's
//! extensions ([`WebSession`]) so that locks taken from a page are
//! labelled with it and released at logout.
//!
//! Only authentication happens here. What a principal may do is decided by
//! the engine, which checks the role on every operation, so an in-process
//! caller meets exactly the same rules as an HTTP one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use baton::{Principal, Session};

use crate::AppState;
use crate::error::{ApiError, ProblemKind};
use crate::web::session::{SESSION_COOKIE, cookie, csrf_token, same_secret};

/// The browser session a request was authenticated with, when it was.
#[derive(Debug, Clone)]
pub struct WebSession(pub Session);

/// The authenticated principal making the request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.get(header::AUTHORIZATION).is_none()
            && let Some(secret) = cookie(&parts.headers, SESSION_COOKIE)
        {
            return session_caller(parts, state, secret.to_owned()).await;
        }
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

/// The caller behind a session cookie, CSRF-checked for unsafe methods.
async fn session_caller(
    parts: &mut Parts,
    state: &AppState,
    secret: String,
) -> Result<Caller, ApiError> {
    let Some(session) = state.engine.session(&secret).await? else {
        return Err(ApiError::unauthorized(
            "the session has expired or was logged out; log in again",
            true,
        ));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let presented = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        if !presented.is_some_and(|t| same_secret(t, &csrf_token(&secret))) {
            return Err(ApiError::new(
                ProblemKind::Csrf,
                "a request authenticated by the session cookie must carry the session's CSRF token in X-CSRF-Token (pages have it in <meta name=\"csrf-token\">)",
            ));
        }
    }
    let principal = session.principal.clone();
    parts.extensions.insert(WebSession(session));
    Ok(Caller(principal))
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
