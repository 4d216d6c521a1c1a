//! Browser sessions: the session cookie, CSRF tokens, and the extractors
//! pages use ([`WebUser`] for any page, [`Posted`] for every form post).
//!
//! The cookie holds the session's secret (`baton_session`, `HttpOnly`,
//! `SameSite=Lax`, `Secure` wherever the browser accepts it); the store
//! keeps only its hash. The CSRF token is derived from the secret
//! (SHA-256 of a label and the secret), so it needs no storage, differs per
//! session, and cannot be computed by a page that cannot read the cookie.
//! Every form post must carry it as `_csrf`; API calls authenticated by
//! the cookie carry it as `X-CSRF-Token` (see [`crate::auth`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::{Principal, Role, Session};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::WebError;
use crate::AppState;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "baton_session";
/// The cookie carrying a one-shot message to the next page.
const FLASH_COOKIE: &str = "baton_flash";
/// The cookie that ties the login form to the browser that loaded it.
pub(crate) const LOGIN_COOKIE: &str = "baton_login";
/// The largest form body a page accepts.
const FORM_LIMIT: usize = 256 * 1024;

/// The CSRF token of the session with `secret`.
pub(crate) fn csrf_token(secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"baton-csrf\0")
        .chain_update(secret.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// Compares two secrets without leaking where they differ (by comparing
/// their hashes).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies set for this request may be marked `Secure`: behind a
/// TLS proxy (`X-Forwarded-Proto: https`), and on loopback addresses,
/// which browsers treat as secure contexts. On plain HTTP to any other
/// host a `Secure` cookie would be dropped and nobody could log in; the
/// login page warns instead.
pub(crate) fn secure_context(headers: &HeaderMap) -> bool {
    if headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

/// A `Set-Cookie` value for a cookie of the pages.
pub(crate) fn set_cookie(
    headers: &HeaderMap,
    name: &'static str,
    value: String,
    max_age_seconds: i64,
) -> HeaderValue {
    let secure = if secure_context(headers) {
        "; Secure"
    } else {
        ""
    };
    // Names are ours and values base64url, so no quoting is needed and the
    // result is always a valid header value.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("baton_invalid=; Max-Age=0"))
}

/// A redirect that shows `text` on the next page (`kind`: `ok`, `warn`,
/// `bad` or `info`).
pub(crate) fn redirect_with(to: &str, headers: &HeaderMap, kind: &str, text: &str) -> Response {
    let value = URL_SAFE_NO_PAD.encode(format!("{kind}\n{text}"));
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, FLASH_COOKIE, value, 60),
    );
    response
}

/// The logged-in person behind a page request. Extracting it from a
/// request without a live session redirects to the login page.
#[derive(Debug, Clone)]
pub(crate) struct WebUser {
    /// Who is logged in.
    pub(crate) principal: Principal,
    /// The session (its `id` labels locks taken from the pages).
    pub(crate) session: Session,
    /// The session's CSRF token, put in every form.
    pub(crate) csrf: String,
    /// The session secret, for logout.
    pub(crate) secret: String,
    /// A message left for this page by the previous request.
    pub(crate) flash: Option<(String, String)>,
}

impl WebUser {
    /// Whether this person may use the supervisor view.
    pub(crate) fn supervisor(&self) -> bool {
        matches!(self.principal.role, Role::Admin | Role::Supervisor)
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            Redirect::to(&format!("/login?next={}", super::encode(next))).into_response()
        };
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let session = match state.engine.session(secret).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(WebError::from(e).into_response()),
        };
        let flash = cookie(&parts.headers, FLASH_COOKIE)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| {
                let (kind, text) = v.split_once('\n')?;
                matches!(kind, "ok" | "warn" | "bad" | "info")
                    .then(|| (kind.to_owned(), text.to_owned()))
            });
        Ok(WebUser {
            principal: session.principal.clone(),
            csrf: csrf_token(secret),
            secret: secret.to_owned(),
            session,
            flash,
        })
    }
}

/// A form post from a logged-in person, its CSRF token checked: the
/// posted fields (`T`, read from `application/x-www-form-urlencoded`)
/// with the [`WebUser`]. A post without the right `_csrf` is refused with
/// 403 and changes nothing.
pub(crate) struct Posted<T> {
    /// Who posted.
    pub(crate) user: WebUser,
    /// The fields.
    pub(crate) form: T,
    /// The request's headers (for the cookies of the answer).
    pub(crate) headers: HeaderMap,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = WebUser::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            WebError::new(413, "Form too large", "The form is over 256 KiB.").into_response()
        })?;
        check_form_csrf(&bytes, &user.csrf).map_err(IntoResponse::into_response)?;
        let form = serde_urlencoded::from_bytes::<T>(&bytes).map_err(|e| {
            WebError::new(
                400,
                "Unreadable form",
                format!("The form could not be read: {e}"),
            )
            .into_response()
        })?;
        Ok(Posted {
            user,
            form,
            headers: parts.headers,
        })
    }
}

/// Refuses a form whose `_csrf` field is missing or not `expected`.
pub(crate) fn check_form_csrf(body: &Bytes, expected: &str) -> Result<(), WebError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let presented = pairs.iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v);
    match presented {
        Some(v) if same_secret(v, expected) => Ok(()),
        _ => Err(WebError::new(
            403,
            "Form refused",
            "This form did not carry your session's CSRF token (it may come from another site, or from before you logged in again). Nothing was changed; reload the page and try again.",
        )),
    }
}
