//! The audit trail (supervisors and admins) and a queue's throughput per
//! time bucket, for the supervisor's view.

use std::time::Duration;

use axum::Json as JsonBody;
use axum::extract::State;
use baton::{AuditCursor, AuditEntry, AuditFilter, Error, QueueName, ThroughputBucket};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query};

/// Default page of `GET /v1/audit`.
const DEFAULT_AUDIT_PAGE: u32 = 100;
/// Default range of a throughput chart, minutes.
const DEFAULT_MINUTES: u64 = 60;
/// Default bucket of a throughput chart, seconds.
const DEFAULT_BUCKET_SECONDS: u64 = 300;

/// The routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit))
        .routes(routes!(throughput))
}

/// Filter and page of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries by this principal.
    pub actor: Option<String>,
    /// Only entries about this: a queue, an item id, a lock resource,
    /// `collection/key`, or a collection.
    pub subject: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1 ..= 500 (default 100).
    pub limit: Option<u32>,
    /// The previous page's `next_before`.
    pub before: Option<String>,
}

/// A page of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries, newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; `null` on the last one.
    pub next_before: Option<AuditCursor>,
}

fn time(field: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, Error> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| Error::invalid(field, format!("an RFC 3339 time: {e}"))),
    }
}

/// Supervisors and admins: a page of the audit trail — item events, lock
/// events and record versions — newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the trail", body = AuditPage),
        (status = 403, description = "Only supervisors and admins read the trail (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filter (`invalid`, naming the field)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn audit(
    State(state): State<AppState>,
    Caller(who): Caller,
    Query(query): Query<AuditQuery>,
) -> Result<JsonBody<AuditPage>, ApiError> {
    let filter = AuditFilter {
        actor: query.actor.filter(|a| !a.is_empty()),
        subject: query.subject.filter(|s| !s.is_empty()),
        since: time("since", query.since)?,
        until: time("until", query.until)?,
        limit: query.limit.unwrap_or(DEFAULT_AUDIT_PAGE),
        before: match query.before.as_deref() {
            None | Some("") => None,
            Some(b) => Some(b.parse()?),
        },
    };
    let entries = state.engine.audit(&who, &filter).await?;
    let full = u32::try_from(entries.len()).is_ok_and(|n| n == filter.limit);
    let next_before = if full {
        entries.last().map(|e| e.cursor.clone())
    } else {
        None
    };
    Ok(JsonBody(AuditPage {
        entries,
        next_before,
    }))
}

/// Range and bucket of `GET /v1/queues/{queue}/throughput`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThroughputQuery {
    /// How far back, minutes: 1 ..= 10080 (default 60).
    pub minutes: Option<u64>,
    /// Bucket length, seconds: 1 ..= 86400 (default 300); at most 1440
    /// buckets.
    pub bucket_seconds: Option<u64>,
}

/// A queue's completions per bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Throughput {
    /// The queue.
    #[schema(value_type = String)]
    pub queue: QueueName,
    /// Bucket length, seconds.
    pub bucket_seconds: u64,
    /// Every bucket from the one holding the moment `minutes` ago to the
    /// one holding now, oldest first, zeros included; aligned to
    /// multiples of the bucket length (5-minute buckets start at :00,
    /// :05, …).
    pub buckets: Vec<ThroughputBucket>,
}

/// Items completed in a queue per time bucket (escalations count in the
/// queue that completes the item).
#[utoipa::path(
    get,
    path = "/v1/queues/{queue}/throughput",
    tag = "queues",
    params(("queue" = String, Path, description = "Queue name"), ThroughputQuery),
    responses(
        (status = 200, description = "Completions per bucket", body = Throughput),
        (status = 422, description = "Invalid range or bucket (`invalid`, naming `minutes` or `bucket_seconds`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn throughput(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(queue): Path<String>,
    Query(query): Query<ThroughputQuery>,
) -> Result<JsonBody<Throughput>, ApiError> {
    let queue = QueueName::new(queue)?;
    let minutes = query.minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=baton::audit_limits::MAX_RANGE_MINUTES).contains(&minutes) {
        return Err(Error::invalid(
            "minutes",
            format!("1..={}", baton::audit_limits::MAX_RANGE_MINUTES),
        )
        .into());
    }
    let bucket_seconds = query.bucket_seconds.unwrap_or(DEFAULT_BUCKET_SECONDS);
    let since = state.engine.now() - chrono::Duration::minutes(minutes as i64);
    let buckets = state
        .engine
        .throughput(&who, &queue, since, Duration::from_secs(bucket_seconds))
        .await?;
    Ok(JsonBody(Throughput {
        queue,
        bucket_seconds,
        buckets,
    }))
}
