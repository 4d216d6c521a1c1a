//! The operator desk, `/desk/{queue}`: one click claims the next request;
//! the page shows it with a lease countdown (kept alive by the page while
//! it is open and visible), offers the queue's outcomes, and after an
//! outcome serves the next request straight away. With nothing to claim,
//! the page waits (long-poll claims from the script) and shows the next
//! request the moment one arrives.
//!
//! The request on screen is found again on every load as the operator's
//! live lease in the queue, so a reload, a second tab or a crash of the
//! browser never claims a second item (`max_leases_per_holder` decides
//! how many one may hold; the desk shows the first).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use baton::{
    ClaimRequest, CompleteRequest, FencingToken, ItemFilter, ItemId, ItemState, QueueName,
};
use serde::Deserialize;

use super::form::{payload_html, plain};
use super::session::{Posted, WebUser, redirect_with};
use super::{Layout, WebError, age, encode, ok_page, when};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/desk/{queue}", get(desk))
        .route("/desk/{queue}/claim", post(claim))
        .route("/desk/{queue}/items/{id}/complete", post(complete))
        .route("/desk/{queue}/items/{id}/release", post(release))
}

fn queue_name(queue: &str) -> Result<QueueName, WebError> {
    QueueName::new(queue).map_err(|e| WebError::from(e).back("/"))
}

/// One line of an item's history.
struct HistoryLine {
    at: String,
    at_text: String,
    kind: String,
    actor: Option<String>,
    detail: String,
}

/// The request on the operator's screen.
struct Current {
    id: ItemId,
    token: i64,
    kind: String,
    expires_at: String,
    created_at: String,
    age: String,
    attempts: u32,
    priority: i32,
    payload_html: String,
    history: Vec<HistoryLine>,
}

#[derive(Template)]
#[template(path = "desk.html")]
struct DeskPage {
    l: Layout,
    queue: String,
    queue_path: String,
    ready: u64,
    leased: u64,
    current: Option<Current>,
    outcomes: Vec<String>,
    /// The outcome that may move the request to another queue, and the
    /// queues it may go to.
    escalation: Option<String>,
    other_queues: Vec<String>,
    lease_seconds: u32,
    waiting: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeskQuery {
    wait: Option<String>,
}

async fn desk(
    State(state): State<AppState>,
    user: WebUser,
    Path(queue): Path<String>,
    Query(q): Query<DeskQuery>,
) -> Result<Response, WebError> {
    let name = queue_name(&queue)?;
    let who = &user.principal;
    let engine = &state.engine;
    let config = engine.queue_config(who, &name).await?;
    let stats = engine.queue_stats(who).await?;
    let (ready, leased) = stats
        .iter()
        .find(|s| s.queue == name)
        .map_or((0, 0), |s| (s.ready, s.leased));
    let mine = engine
        .list_items(
            who,
            &name,
            &ItemFilter {
                state: Some(ItemState::Leased),
                holder: Some(who.name.clone()),
                limit: 1,
                after: None,
            },
        )
        .await?;
    let now = engine.now();
    let current = match mine.into_iter().next() {
        Some(item) => {
            let Some(lease) = item.lease.clone() else {
                return Err(WebError::new(
                    500,
                    "Inconsistent item",
                    "a leased item has no lease",
                ));
            };
            let history = engine
                .item_history(who, item.id)
                .await?
                .into_iter()
                .map(|e| HistoryLine {
                    at: e.at.to_rfc3339(),
                    at_text: when(e.at),
                    kind: e.kind.as_str().to_owned(),
                    actor: e.actor,
                    detail: match &e.detail {
                        serde_json::Value::Object(m) if !m.is_empty() => m
                            .iter()
                            .map(|(k, v)| format!("{k}: {}", plain(v)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => String::new(),
                    },
                })
                .collect();
            Some(Current {
                id: item.id,
                token: lease.token.0,
                kind: item.kind.to_string(),
                expires_at: lease.expires_at.to_rfc3339(),
                created_at: when(item.created_at),
                age: age(now, item.created_at),
                attempts: item.attempts,
                priority: item.priority,
                payload_html: payload_html(&item.payload),
                history,
            })
        }
        None => None,
    };
    let template = DeskPage {
        l: Layout::of(&user, "home"),
        queue: name.to_string(),
        queue_path: encode(name.as_str()),
        ready,
        leased,
        current,
        outcomes: config.outcomes,
        other_queues: match &config.escalation_outcome {
            Some(_) => stats
                .iter()
                .filter(|s| s.queue != name)
                .map(|s| s.queue.to_string())
                .collect(),
            None => Vec::new(),
        },
        escalation: config.escalation_outcome,
        lease_seconds: state.settings.desk_lease_seconds,
        waiting: q.wait.is_some(),
    };
    Ok(ok_page(&user, &template))
}

/// Claims the next request for the operator, without waiting: the desk
/// shows it, or waits for one (`?wait=1`) when there is none.
async fn claim_next(state: &AppState, user: &WebUser, name: &QueueName) -> Result<bool, WebError> {
    let req = ClaimRequest::new(
        name.clone(),
        Vec::new(),
        user.principal.name.clone(),
        state.settings.desk_lease_seconds,
        None,
    )?;
    let claimed = state
        .engine
        .claim(&user.principal, req, std::time::Duration::ZERO)
        .await?;
    Ok(claimed.is_some())
}

fn desk_url(name: &QueueName, claimed: bool) -> String {
    let base = format!("/desk/{}", encode(name.as_str()));
    if claimed { base } else { base + "?wait=1" }
}

#[derive(Deserialize)]
struct Empty {}

async fn claim(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    let name = queue_name(&queue)?;
    let claimed = claim_next(&state, &posted.user, &name).await?;
    Ok(Redirect::to(&desk_url(&name, claimed)).into_response())
}

#[derive(Deserialize)]
struct OutcomeForm {
    token: i64,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    escalate_to: String,
}

async fn complete(
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, ItemId)>,
    posted: Posted<OutcomeForm>,
) -> Result<Response, WebError> {
    let name = queue_name(&queue)?;
    let Posted {
        user,
        form,
        headers,
    } = posted;
    let note = Some(form.note.trim().to_owned()).filter(|n| !n.is_empty());
    // The queue picker only means something with the escalation outcome.
    let config = state.engine.queue_config(&user.principal, &name).await?;
    let escalate_to = match form.escalate_to.trim() {
        "" => None,
        _ if config.escalation_outcome.as_deref() != Some(form.outcome.as_str()) => None,
        q => Some(queue_name(q)?),
    };
    let req = CompleteRequest::new(
        FencingToken(form.token),
        form.outcome.clone(),
        note,
        escalate_to.clone(),
    )?;
    if let Err(e) = state.engine.complete(&user.principal, id, req).await {
        return Ok(refused(&headers, &name, "Not completed", e));
    }
    let claimed = claim_next(&state, &user, &name).await?;
    let next = if claimed {
        "Here is the next one."
    } else {
        "The queue is empty: waiting for the next request."
    };
    Ok(redirect_with(
        &desk_url(&name, claimed),
        &headers,
        "ok",
        &match escalate_to {
            Some(q) => format!("Request #{id} {} to {q}. {next}", form.outcome),
            None => format!("Request #{id} done: {}. {next}", form.outcome),
        },
    ))
}

#[derive(Deserialize)]
struct ReleaseForm {
    token: i64,
}

async fn release(
    State(state): State<AppState>,
    Path((queue, id)): Path<(String, ItemId)>,
    posted: Posted<ReleaseForm>,
) -> Result<Response, WebError> {
    let name = queue_name(&queue)?;
    let Posted {
        user,
        form,
        headers,
    } = posted;
    if let Err(e) = state
        .engine
        .release(&user.principal, id, FencingToken(form.token), 0)
        .await
    {
        return Ok(refused(&headers, &name, "Not put back", e));
    }
    Ok(redirect_with(
        &desk_url(&name, true),
        &headers,
        "info",
        &format!("Request #{id} is back in the queue for someone else."),
    ))
}

/// Back to the desk with what went wrong: a lost lease is said plainly.
fn refused(headers: &HeaderMap, name: &QueueName, what: &str, e: baton::Error) -> Response {
    let why = match &e {
        baton::Error::StaleToken { .. } | baton::Error::NotHolder { .. } => {
            "this request is no longer yours (its lease expired or a supervisor took it back). Nothing was recorded.".to_owned()
        }
        other => other.to_string(),
    };
    redirect_with(
        &desk_url(name, true),
        headers,
        "bad",
        &format!("{what}: {why}"),
    )
}
