//! Request extractors whose every rejection is an [`ApiError`] problem, so
//! no request is ever answered with axum's plain-text rejections.
//!
//! - [`Json`]: a JSON body. Wrong or missing `Content-Type` → 415; body
//!   over the limit → 413; not JSON at all → 400; JSON of the wrong shape
//!   (a missing or unknown field, a wrong type, a number out of range) →
//!   422 naming the field.
//! - [`OptionalJson`]: the same, but an empty body means the defaults.
//! - [`MergePatch`]: a JSON Merge Patch (RFC 7396): `Content-Type:
//!   application/merge-patch+json` and nothing else (415), any JSON value.
//! - [`Path`], [`Query`]: axum's, with a 400 problem on failure.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::{ApiError, ProblemKind};

/// A JSON request body, parsed into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// A JSON request body that may be absent (empty): then `T::default()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

/// A JSON Merge Patch body (RFC 7396), sent as
/// `application/merge-patch+json`.
#[derive(Debug, Clone, Default)]
pub struct MergePatch(pub serde_json::Value);

/// The media type of a JSON Merge Patch.
pub const MERGE_PATCH_JSON: &str = "application/merge-patch+json";

/// Path parameters; a parameter that does not parse is a 400 problem.
#[derive(Debug, Clone, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a query string that does not parse is a 400 problem.
#[derive(Debug, Clone, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state).await?;
        parse(&bytes).map(Json)
    }
}

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        parse(&bytes).map(OptionalJson)
    }
}

impl<S> FromRequest<S> for MergePatch
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if essence(req.headers()).as_deref() != Some(MERGE_PATCH_JSON) {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                format!(
                    "PATCH takes a JSON Merge Patch (RFC 7396): send it with \
                     `Content-Type: {MERGE_PATCH_JSON}`; to replace the whole record, use PUT"
                ),
            ));
        }
        let bytes = Bytes::from_request(req, state).await?;
        parse(&bytes).map(MergePatch)
    }
}

fn not_json() -> ApiError {
    ApiError::new(
        ProblemKind::UnsupportedMediaType,
        "the request body must be JSON, sent with `Content-Type: application/json`",
    )
}

/// The media type of the body without parameters, lower case.
fn essence(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// `application/json` or any `application/*+json`, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    essence(headers).is_some_and(|essence| {
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Parses `bytes` as `T`, telling apart unreadable JSON (400) from JSON
/// of the wrong shape (422, naming the field). The syntax is checked first,
/// on the whole body, so a broken body is always a 400 whatever its
/// beginning says.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed(format!("the request body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => {
                let field = if path == "." || path.is_empty() {
                    field_from_message(&inner.to_string()).unwrap_or_else(|| "body".to_owned())
                } else {
                    path
                };
                ApiError::new(ProblemKind::Invalid, format!("{field}: {inner}")).with_field(field)
            }
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::malformed(format!("the request body is not valid JSON: {inner}"))
            }
        }
    })
}

/// serde names a missing or unknown field only in its message:
/// "missing field `token`", "unknown field `tokn`, expected one of ...".
fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        token: i64,
        lease_seconds: Option<u32>,
    }

    #[test]
    fn shape_errors_name_the_field() {
        let e = parse::<Body>(br#"{"token":1,"lease_seconds":-1}"#).unwrap_err();
        assert_eq!(e.problem().status, 422);
        assert_eq!(e.problem().field.as_deref(), Some("lease_seconds"));
        let e = parse::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(e.problem().field.as_deref(), Some("token"));
        let e = parse::<Body>(br#"{"token":1,"tokn":2}"#).unwrap_err();
        assert_eq!(e.problem().field.as_deref(), Some("tokn"));
    }

    #[test]
    fn syntax_errors_are_malformed() {
        for bad in [&b"{"[..], b"{\"token\":1} x", b"not json"] {
            let e = parse::<Body>(bad).unwrap_err();
            assert_eq!(e.problem().status, 400, "{:?}", std::str::from_utf8(bad));
        }
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }
}
