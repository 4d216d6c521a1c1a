//! Every refusal and failure of the HTTP API as one type, [`ApiError`],
//! answered as an RFC 9457 problem document (`application/problem+json`).
//!
//! Each kind of problem has a stable `type` URI, `urn:baton:problem:<slug>`,
//! that clients may match on; `title` is fixed per kind, `detail` explains
//! this occurrence, and some kinds carry extension members (a stale token
//! names the item and both tokens, an invalid request names the field).
//!
//! This is the one place that maps [`baton::Error`] to HTTP statuses. A
//! store failure that is not retryable is logged here with its cause and
//! shown to the client as a bare 500: nothing internal leaks.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton::{
    Change, ChangeSince, Conflict, ConflictId, Error, FencingToken, FieldConflict, ItemId,
    ItemState, LockEnd, LockId, Record, Version,
};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:baton:problem:";

/// An RFC 9457 problem document, as sent to clients.
///
/// The extension members are present only for the kinds of problem that
/// define them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem,
    /// `urn:baton:problem:<slug>`, e.g. `urn:baton:problem:stale-token`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the kind of problem; the same for every
    /// occurrence.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for people.
    pub detail: String,
    /// `invalid`, `malformed-request`: the request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `stale-token`, `not-holder` (of a lease), `wrong-state`: the item
    /// concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemId>,
    /// `stale-token`: the fencing token the caller presented;
    /// `lock-required`: the named lock's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub presented: Option<FencingToken>,
    /// `stale-token`: the item's current fencing token; `lock-required`:
    /// the newest granted on the record's resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub current: Option<FencingToken>,
    /// `not-holder`: who holds the lease or lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// `wrong-state`: the item's current state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ItemState>,
    /// `precondition-failed`, `merge-conflict`: the record as it is now
    /// (data, version, who and when); its version is also the `ETag` of
    /// the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// `precondition-failed`: each member changed since the version you
    /// sent, from what to what, by whom, when, in which version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<ChangeSince>>,
    /// `merge-conflict`: the version your change was based on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_version: Option<Version>,
    /// `merge-conflict`: your changes that did merge cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<Vec<Change>>,
    /// `precondition-failed`, `merge-conflict`: the refused write, kept
    /// for you at `conflict_url` (`GET /v1/conflicts/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_id: Option<ConflictId>,
    /// See `conflict_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_url: Option<String>,
    /// `lock-ended`, `not-holder` (of a lock), `lock-required`: the lock
    /// concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockId>,
    /// `locked`: each resource in the way, with its holder (or the request
    /// queued ahead), mode and expiry; `lock-required`: who holds the
    /// record's resource now. `merge-conflict`: each member you
    /// and someone else changed differently: base, yours, theirs, and who
    /// made theirs when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<ProblemConflicts>,
    /// `lock-ended`: how, when, by whom and why the lock ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<LockEnd>,
}

/// The `conflicts` member of a problem: what is in the way of a lock, or
/// where a stale change overlaps others'.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProblemConflicts {
    /// `locked`: the resources in the way.
    Locks(Vec<Conflict>),
    /// `merge-conflict`: the members changed differently on both sides.
    Fields(Vec<FieldConflict>),
}

/// The kinds of problem the API answers with: status, slug and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// 400: the request could not be read (bad JSON, bad path or query).
    Malformed,
    /// 401: no bearer token, or an unknown one.
    Unauthorized,
    /// 403: the caller's role does not allow the action.
    Forbidden,
    /// 403: the caller does not hold the lease or lock it acts with.
    NotHolder,
    /// 403: a request authenticated by a browser session cookie did not
    /// carry the session's CSRF token (`X-CSRF-Token`, or `_csrf` in a
    /// form).
    Csrf,
    /// 404: no such item, queue or principal.
    NotFound,
    /// 404: no such route.
    UnknownRoute,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the fencing token is no longer current.
    StaleToken,
    /// 409: the item's state does not allow the action.
    WrongState,
    /// 409: the name is taken.
    AlreadyExists,
    /// 409: a stale partial update overlaps changes made since its version.
    MergeConflict,
    /// 412: the record is not at the version the write was based on (or,
    /// for a create, exists).
    PreconditionFailed,
    /// 428: the write must say which version it is based on.
    PreconditionRequired,
    /// 423: the collection's lock policy requires the caller's exclusive
    /// lock on the record, named in `Baton-Lock`.
    LockRequired,
    /// 410: the lock has ended (released, expired or forced).
    LockEnded,
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: a field is invalid.
    Invalid,
    /// 423: the resources are locked by others (or others wait first).
    Locked,
    /// 500: a bug or corruption; details are in the server log.
    Internal,
    /// 503: the store is unavailable for now; retry.
    Unavailable,
    /// 503: the server is shutting down; retry (on another instance).
    ShuttingDown,
}

impl ProblemKind {
    /// Every kind, for documentation and tests.
    pub const ALL: [ProblemKind; 23] = [
        ProblemKind::Malformed,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::NotHolder,
        ProblemKind::Csrf,
        ProblemKind::NotFound,
        ProblemKind::UnknownRoute,
        ProblemKind::MethodNotAllowed,
        ProblemKind::StaleToken,
        ProblemKind::WrongState,
        ProblemKind::AlreadyExists,
        ProblemKind::MergeConflict,
        ProblemKind::PreconditionFailed,
        ProblemKind::PreconditionRequired,
        ProblemKind::LockRequired,
        ProblemKind::LockEnded,
        ProblemKind::PayloadTooLarge,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::Invalid,
        ProblemKind::Locked,
        ProblemKind::Internal,
        ProblemKind::Unavailable,
        ProblemKind::ShuttingDown,
    ];

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        use ProblemKind::*;
        match self {
            Malformed => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden | NotHolder | Csrf => StatusCode::FORBIDDEN,
            NotFound | UnknownRoute => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            StaleToken | WrongState | AlreadyExists | MergeConflict => StatusCode::CONFLICT,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            LockRequired => StatusCode::LOCKED,
            LockEnded => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Locked => StatusCode::LOCKED,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable slug; the problem `type` is `urn:baton:problem:<slug>`.
    pub fn slug(self) -> &'static str {
        use ProblemKind::*;
        match self {
            Malformed => "malformed-request",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotHolder => "not-holder",
            Csrf => "csrf",
            NotFound => "not-found",
            UnknownRoute => "unknown-route",
            MethodNotAllowed => "method-not-allowed",
            StaleToken => "stale-token",
            WrongState => "wrong-state",
            AlreadyExists => "already-exists",
            MergeConflict => "merge-conflict",
            PreconditionFailed => "precondition-failed",
            PreconditionRequired => "precondition-required",
            LockRequired => "lock-required",
            LockEnded => "lock-ended",
            PayloadTooLarge => "payload-too-large",
            UnsupportedMediaType => "unsupported-media-type",
            Invalid => "invalid",
            Locked => "locked",
            Internal => "internal",
            Unavailable => "unavailable",
            ShuttingDown => "shutting-down",
        }
    }

    /// The fixed title.
    pub fn title(self) -> &'static str {
        use ProblemKind::*;
        match self {
            Malformed => "Malformed request",
            Unauthorized => "Authentication required",
            Forbidden => "Not allowed for your role",
            NotHolder => "You do not hold this lease or lock",
            Csrf => "Missing or wrong CSRF token",
            NotFound => "Not found",
            UnknownRoute => "No such route",
            MethodNotAllowed => "Method not allowed",
            StaleToken => "Stale fencing token",
            WrongState => "Item is in the wrong state",
            AlreadyExists => "Already exists",
            MergeConflict => "Your change conflicts with changes made since your version",
            PreconditionFailed => "The record changed since your version",
            PreconditionRequired => "Say which version your write is based on",
            LockRequired => "This record needs your lock",
            LockEnded => "The lock has ended",
            PayloadTooLarge => "Request body too large",
            UnsupportedMediaType => "Unsupported media type",
            Invalid => "Invalid field",
            Locked => "Locked",
            Internal => "Internal error",
            Unavailable => "Temporarily unavailable",
            ShuttingDown => "Shutting down",
        }
    }

    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.slug())
    }
}

/// A refused or failed request: a problem document plus the headers that
/// go with it (`WWW-Authenticate`, `Retry-After`).
#[derive(Debug, Clone)]
pub struct ApiError {
    // Boxed: results carrying an `ApiError` stay small.
    problem: Box<Problem>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem {
                type_uri: kind.type_uri(),
                title: kind.title(),
                status: kind.status().as_u16(),
                detail: detail.into(),
                field: None,
                item: None,
                presented: None,
                current: None,
                holder: None,
                state: None,
                record: None,
                changed: None,
                base_version: None,
                merged: None,
                conflict_id: None,
                conflict_url: None,
                lock: None,
                conflicts: None,
                ended: None,
            }),
            headers: Vec::new(),
        }
    }

    /// 400 Malformed request.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Malformed, detail)
    }

    /// 401, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            HeaderValue::from_static("Bearer realm=\"baton\", error=\"invalid_token\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"baton\"")
        };
        Self::new(ProblemKind::Unauthorized, detail)
            .with_header(header::WWW_AUTHENTICATE, challenge)
    }

    /// 500, logging `cause` (never shown to the client).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ProblemKind::Internal,
            "the server failed to handle the request; the cause is in its log",
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(
        kind: ProblemKind,
        detail: impl Into<String>,
        retry_after_secs: u32,
    ) -> Self {
        let value = HeaderValue::from(retry_after_secs);
        Self::new(kind, detail).with_header(header::RETRY_AFTER, value)
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.problem.field = Some(field.into());
        self
    }

    /// Adds the `ETag` of a record's version.
    fn with_etag(self, version: Version) -> Self {
        match HeaderValue::try_from(etag(version)) {
            Ok(v) => self.with_header(header::ETAG, v),
            Err(_) => self,
        }
    }

    /// Names the kept refused write.
    fn with_conflict(mut self, id: Option<ConflictId>) -> Self {
        if let Some(id) = id {
            self.problem.conflict_id = Some(id);
            self.problem.conflict_url = Some(format!("/v1/conflicts/{id}"));
        }
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The problem document.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let detail = e.to_string();
        match e {
            Error::NotFound { .. } => Self::new(ProblemKind::NotFound, detail),
            Error::StaleToken {
                item,
                presented,
                current,
                ..
            } => {
                let mut err = Self::new(ProblemKind::StaleToken, detail);
                err.problem.item = Some(item);
                err.problem.presented = Some(presented);
                err.problem.current = Some(current);
                err
            }
            Error::NotHolder { item, holder } => {
                let mut err = Self::new(ProblemKind::NotHolder, detail);
                err.problem.item = Some(item);
                err.problem.holder = Some(holder);
                err
            }
            Error::Forbidden(_) => Self::new(ProblemKind::Forbidden, detail),
            Error::Invalid { field, .. } => {
                Self::new(ProblemKind::Invalid, detail).with_field(field)
            }
            Error::WrongState { item, state, .. } => {
                let mut err = Self::new(ProblemKind::WrongState, detail);
                err.problem.item = Some(item);
                err.problem.state = Some(state);
                err
            }
            Error::AlreadyExists(_) => Self::new(ProblemKind::AlreadyExists, detail),
            Error::PreconditionFailed(stale) => {
                let mut err = Self::new(ProblemKind::PreconditionFailed, detail)
                    .with_etag(stale.current.version)
                    .with_conflict(stale.conflict);
                err.problem.record = Some(stale.current);
                err.problem.changed = Some(stale.changed);
                err
            }
            Error::MergeConflict(m) => {
                let mut err = Self::new(ProblemKind::MergeConflict, detail)
                    .with_etag(m.current.version)
                    .with_conflict(m.conflict);
                err.problem.record = Some(m.current);
                err.problem.base_version = Some(m.base);
                err.problem.conflicts = Some(ProblemConflicts::Fields(m.conflicts));
                err.problem.merged = Some(m.merged);
                err
            }
            Error::PreconditionRequired(_) => Self::new(ProblemKind::PreconditionRequired, detail),
            Error::LockRequired(l) => {
                let mut err = Self::new(ProblemKind::LockRequired, detail);
                err.problem.lock = l.lock;
                err.problem.presented = l.presented;
                err.problem.current = Some(l.current);
                err.problem.conflicts = Some(ProblemConflicts::Locks(l.holders));
                err
            }
            Error::Locked {
                conflicts,
                retry_after,
            } => {
                let mut err = Self::new(ProblemKind::Locked, detail)
                    .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after));
                err.problem.conflicts = Some(ProblemConflicts::Locks(conflicts));
                err
            }
            Error::LockEnded { lock, end } => {
                let mut err = Self::new(ProblemKind::LockEnded, detail);
                err.problem.lock = Some(lock);
                err.problem.ended = Some(*end);
                err
            }
            Error::NotLockHolder { lock, holder } => {
                let mut err = Self::new(ProblemKind::NotHolder, detail);
                err.problem.lock = Some(lock);
                err.problem.holder = Some(holder);
                err
            }
            Error::Store(s) if s.retryable => {
                tracing::warn!(error = %s.message, "store unavailable; answering 503");
                Self::unavailable(
                    ProblemKind::Unavailable,
                    "the store is temporarily unavailable; retry shortly",
                    1,
                )
            }
            Error::Store(s) => Self::internal(s.message),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        match r {
            PathRejection::FailedToDeserializePathParams(e) => {
                Self::malformed(format!("bad path parameter: {}", e.body_text()))
            }
            other => Self::internal(format!("path extraction failed: {}", other.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::malformed(format!("bad query string: {}", r.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                ProblemKind::PayloadTooLarge,
                "the request body is larger than the server accepts",
            )
        } else {
            Self::malformed(format!(
                "could not read the request body: {}",
                r.body_text()
            ))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match serde_json::to_vec(&*self.problem) {
            Ok(b) => b,
            // Serializing plain strings and numbers cannot fail; keep a
            // valid answer anyway.
            Err(_) => br#"{"type":"urn:baton:problem:internal","title":"Internal error","status":500,"detail":""}"#.to_vec(),
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.problem.status, self.problem.title, self.problem.detail
        )
    }
}

impl std::error::Error for ApiError {}

/// The strong entity tag of a record version: `"3"`.
pub(crate) fn etag(version: Version) -> String {
    format!("\"{version}\"")
}

/// Renames the field of an [`Error::Invalid`] (the core names a queue name
/// `queue`; in a completion it is `escalate_to`).
pub(crate) fn in_field(field: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Invalid { reason, .. } => Error::Invalid {
            field: field.to_owned(),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton::StoreError;

    fn answer(e: Error) -> (StatusCode, HeaderValue, Option<HeaderValue>, Problem) {
        let api = ApiError::from(e);
        let problem = (*api.problem).clone();
        let response = api.into_response();
        let content_type = response.headers()[header::CONTENT_TYPE].clone();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        (response.status(), content_type, retry, problem)
    }

    #[test]
    fn every_core_error_has_one_status_and_type() {
        let cases = [
            (Error::not_found("item", 7), 404, "not-found"),
            (
                Error::StaleToken {
                    item: 7,
                    presented: FencingToken(1),
                    current: FencingToken(2),
                    reason: "claimed again".into(),
                },
                409,
                "stale-token",
            ),
            (
                Error::NotHolder {
                    item: 7,
                    holder: "bob".into(),
                },
                403,
                "not-holder",
            ),
            (Error::Forbidden("no".into()), 403, "forbidden"),
            (Error::invalid("lease_seconds", "too long"), 422, "invalid"),
            (
                Error::WrongState {
                    item: 7,
                    state: ItemState::Ready,
                    reason: "not parked".into(),
                },
                409,
                "wrong-state",
            ),
            (Error::AlreadyExists("alice".into()), 409, "already-exists"),
        ];
        for (e, status, slug) in cases {
            let (s, ct, _, p) = answer(e);
            assert_eq!(s.as_u16(), status);
            assert_eq!(ct, PROBLEM_JSON);
            assert_eq!(p.type_uri, format!("urn:baton:problem:{slug}"));
            assert_eq!(p.status, status);
        }
    }

    #[test]
    fn extension_members_carry_the_details() {
        let (_, _, _, p) = answer(Error::StaleToken {
            item: 7,
            presented: FencingToken(1),
            current: FencingToken(2),
            reason: "claimed again".into(),
        });
        assert_eq!(
            (p.item, p.presented, p.current),
            (Some(7), Some(FencingToken(1)), Some(FencingToken(2)))
        );
        let (_, _, _, p) = answer(Error::invalid("outcome", "unknown"));
        assert_eq!(p.field.as_deref(), Some("outcome"));
        let (_, _, _, p) = answer(Error::NotHolder {
            item: 7,
            holder: "bob".into(),
        });
        assert_eq!(p.holder.as_deref(), Some("bob"));
        let (_, _, _, p) = answer(Error::WrongState {
            item: 7,
            state: ItemState::Leased,
            reason: "x".into(),
        });
        assert_eq!(p.state, Some(ItemState::Leased));
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("field").is_none(), "absent members are left out");
    }

    #[test]
    fn store_failures_are_503_when_retryable_and_500_showing_nothing_internal() {
        let (s, _, retry, p) = answer(Error::Store(StoreError::retryable("database is locked")));
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry, Some(HeaderValue::from_static("1")));
        assert_eq!(p.type_uri, "urn:baton:problem:unavailable");
        assert!(!p.detail.contains("locked"));
        let (s, _, retry, p) = answer(Error::Store(StoreError::fatal("disk image is malformed")));
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(retry, None);
        assert!(!p.detail.contains("malformed"), "{}", p.detail);
    }

    #[test]
    fn every_kind_has_a_distinct_slug() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
    }
}
