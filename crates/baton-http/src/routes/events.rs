//! `GET /v1/events`: the engine's live events as server-sent events
//! (`text/event-stream`), for pages (`EventSource`) and applications.
//!
//! Each event is sent with `id:` (strictly increasing per server),
//! `event:` (its kind, e.g. `record.changed`) and `data:` (the event as
//! JSON: `id`, `at`, `kind`, `topics`, `data`). The stream starts with a
//! `retry:` hint and a comment, sends a keep-alive comment every
//! [`KEEP_ALIVE`], and ends when the server shuts down. A client resumes
//! with the `Last-Event-ID` header (browsers send it by themselves) or the
//! `last_event_id` query parameter; see `baton::events` for what is
//! retained and when a `stream.reset` event says to reload.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton::Topic;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::Query;

/// How often a comment keeps an idle stream (and proxies) alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client should wait before reconnecting (the `retry:` hint).
pub const RETRY: Duration = Duration::from_secs(2);

/// The event routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated topics, 1 to 32: `queues`, `queue:NAME`,
    /// `item:ID`, `collection:NAME`, `record:COLLECTION/KEY`, `locks`,
    /// `lock:RESOURCE`.
    pub topics: Option<String>,
    /// Resume after this event id, for clients that cannot set the
    /// `Last-Event-ID` header (the header wins when both are given).
    pub last_event_id: Option<String>,
}

fn parse_id(field: &str, s: &str) -> Result<u64, ApiError> {
    s.trim().parse::<u64>().map_err(|_| {
        ApiError::from(baton::Error::invalid(
            field,
            format!("{s:?} is not an event id (a non-negative integer)"),
        ))
    })
}

/// Live events of the given topics as server-sent events. Every event
/// carries `id`, `event` (its kind) and `data` (JSON: `id`, `at`, `kind`,
/// `topics`, `data`). Kinds: `item.enqueued`, `item.claimed`,
/// `item.released`, `item.completed`, `item.revoked`, `item.requeued`,
/// `lease.expiring`, `lease.lost`, `record.changed`, `lock.granted`,
/// `lock.released`, and `stream.reset` (events were missed: reload).
/// With `Last-Event-ID` (or `last_event_id`), the retained events after
/// that id are sent first (at most 10 000, at most 10 minutes old).
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "The event stream (`text/event-stream`); it ends when the server shuts down", body = String, content_type = "text/event-stream"),
        (status = 422, description = "Missing or invalid topics, more than 32 topics, or a bad event id (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn events(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let topics = Topic::parse_list(query.topics.as_deref().unwrap_or_default())?;
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                ApiError::from(baton::Error::invalid(
                    "Last-Event-ID",
                    "not an event id (a non-negative integer)",
                ))
            })?;
            // An empty header is what a browser sends before any id.
            (!s.trim().is_empty())
                .then(|| parse_id("Last-Event-ID", s))
                .transpose()?
        }
        None => match query.last_event_id.as_deref() {
            None | Some("") => None,
            Some(s) => Some(parse_id("last_event_id", s)?),
        },
    };
    let subscription = state.engine.subscribe(&who, &topics, last_event_id)?;
    let shutdown = state.shutdown.clone();
    let first = SseEvent::default().retry(RETRY).comment("baton events");
    let live = stream::unfold((subscription, shutdown), |(mut sub, shutdown)| async move {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return None,
            e = sub.next() => e?,
        };
        let sse = SseEvent::default()
            .id(event.id.to_string())
            .event(event.kind.as_str())
            .json_data(&*event)
            .unwrap_or_else(|e| {
                SseEvent::default().comment(format!("an event could not be encoded: {e}"))
            });
        Some((Ok::<_, Infallible>(sse), (sub, shutdown)))
    });
    let body = stream::once(async move { Ok::<_, Infallible>(first) }).chain(live);
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Proxies such as nginx must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
