//! The supervisor's view, `/admin`: queues (depth, oldest wait, the last
//! hour's completions as a small chart), the leases held now with revoke,
//! parked items with requeue, live locks with force release (a reason is
//! required and recorded); the audit trail (`/admin/audit`); and, for
//! admins, people and their tokens (`/admin/principals`).
//!
//! The page refreshes itself from `/v1/events` when queues or locks
//! change. Every action is a plain form post, CSRF-checked, and the engine
//! checks the role again.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use baton::{AuditFilter, ItemFilter, ItemId, ItemState, LockFilter, LockId, Role};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::session::{Posted, WebUser, redirect_with};
use super::{Layout, WebError, encode, ok_page, page, span, when};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/items/{id}/revoke", post(revoke))
        .route("/admin/items/{id}/requeue", post(requeue))
        .route("/admin/locks/{id}/release", post(force_release))
        .route("/admin/audit", get(audit))
        .route("/admin/principals", get(principals).post(create_principal))
        .route("/admin/principals/{name}/password", post(set_password))
        .route("/admin/principals/{name}/tokens", post(create_token))
        .route(
            "/admin/principals/{name}/tokens/{id}/revoke",
            post(revoke_token),
        )
}

/// Leased and parked items listed per queue.
const ITEMS_SHOWN: u32 = 100;
/// Live locks listed.
const LOCKS_SHOWN: u32 = 200;
/// Audit entries per page.
const AUDIT_PAGE: u32 = 100;

fn supervisor(user: &WebUser) -> Result<(), WebError> {
    if user.supervisor() {
        Ok(())
    } else {
        Err(WebError::new(
            403,
            "Supervisors only",
            "This page is for supervisors and admins.",
        ))
    }
}

struct QueueRow {
    name: String,
    path: String,
    ready: u64,
    leased: u64,
    scheduled: u64,
    parked: u64,
    done: u64,
    oldest: Option<String>,
    spark: String,
    last_hour: u64,
}

struct ItemRow {
    id: ItemId,
    kind: String,
    queue: String,
    holder: String,
    expires_at: String,
    left: String,
    attempts: u32,
}

struct LockRow {
    id: LockId,
    resources: String,
    mode: String,
    holder: String,
    session: Option<String>,
    expires_at: String,
    left: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    l: Layout,
    queues: Vec<QueueRow>,
    leased: Vec<ItemRow>,
    parked: Vec<ItemRow>,
    locks: Vec<LockRow>,
}

/// A bar chart of counts as inline SVG (no script, no images).
fn sparkline(counts: &[u64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (w, h, bar) = (120.0, 24.0, 120.0 / counts.len().max(1) as f64);
    // A baseline, so empty stretches read as "none" rather than missing.
    let mut bars = format!(
        "<rect class=\"base\" x=\"0\" y=\"{:.1}\" width=\"{w}\" height=\"1\"></rect>",
        h - 1.0
    );
    for (i, c) in counts.iter().enumerate() {
        let height = (*c as f64 / max * (h - 2.0)).max(if *c > 0 { 1.5 } else { 0.0 });
        bars.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\"><title>{c}</title></rect>",
            i as f64 * bar,
            h - height,
            (bar - 1.0).max(1.0),
        ));
    }
    let total: u64 = counts.iter().sum();
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{total} completed in the last hour, per 5 minutes\">{bars}</svg>"
    )
}

async fn overview(State(state): State<AppState>, user: WebUser) -> Result<Response, WebError> {
    supervisor(&user)?;
    let engine = &state.engine;
    let who = &user.principal;
    let now = engine.now();
    let stats = engine.queue_stats(who).await?;
    let mut queues = Vec::new();
    let mut leased = Vec::new();
    let mut parked = Vec::new();
    for q in &stats {
        let buckets = engine
            .throughput(
                who,
                &q.queue,
                now - chrono::Duration::hours(1),
                std::time::Duration::from_secs(300),
            )
            .await?;
        let counts: Vec<u64> = buckets.iter().map(|b| b.completed).collect();
        queues.push(QueueRow {
            name: q.queue.to_string(),
            path: encode(q.queue.as_str()),
            ready: q.ready,
            leased: q.leased,
            scheduled: q.scheduled,
            parked: q.parked,
            done: q.done,
            oldest: q.oldest_ready_age_seconds.map(|s| span(s as i64)),
            last_hour: counts.iter().sum(),
            spark: sparkline(&counts),
        });
        for (state_, into) in [
            (ItemState::Leased, &mut leased),
            (ItemState::Parked, &mut parked),
        ] {
            if (state_ == ItemState::Leased && q.leased == 0)
                || (state_ == ItemState::Parked && q.parked == 0)
            {
                continue;
            }
            let items = engine
                .list_items(
                    who,
                    &q.queue,
                    &ItemFilter {
                        state: Some(state_),
                        holder: None,
                        limit: ITEMS_SHOWN,
                        after: None,
                    },
                )
                .await?;
            into.extend(items.into_iter().map(|i| {
                let (holder, expires) = i
                    .lease
                    .as_ref()
                    .map(|l| (l.holder.clone(), Some(l.expires_at)))
                    .unwrap_or_default();
                ItemRow {
                    id: i.id,
                    kind: i.kind.to_string(),
                    queue: i.queue.to_string(),
                    holder,
                    expires_at: expires.map(|e| e.to_rfc3339()).unwrap_or_default(),
                    left: expires
                        .map(|e| span((e - now).num_seconds().max(0)))
                        .unwrap_or_default(),
                    attempts: i.attempts,
                }
            }));
        }
    }
    let locks = engine
        .list_locks(
            who,
            &LockFilter {
                resource: None,
                holder: None,
                session: None,
                limit: LOCKS_SHOWN,
                after: None,
            },
        )
        .await?
        .into_iter()
        .filter(|l| l.ended.is_none())
        .map(|l| LockRow {
            id: l.id,
            resources: l
                .resources
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            mode: l.mode.as_str().to_owned(),
            holder: l.holder,
            session: l.session,
            expires_at: l.expires_at.to_rfc3339(),
            left: span((l.expires_at - now).num_seconds().max(0)),
        })
        .collect();
    Ok(ok_page(
        &user,
        &AdminPage {
            l: Layout::of(&user, "admin"),
            queues,
            leased,
            parked,
            locks,
        },
    ))
}

#[derive(Deserialize)]
struct Empty {}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<ItemId>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    state.engine.revoke(&posted.user.principal, id).await?;
    Ok(redirect_with(
        "/admin",
        &posted.headers,
        "ok",
        &format!("Request #{id} was taken back and is in its queue again."),
    ))
}

async fn requeue(
    State(state): State<AppState>,
    Path(id): Path<ItemId>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    state.engine.requeue(&posted.user.principal, id).await?;
    Ok(redirect_with(
        "/admin",
        &posted.headers,
        "ok",
        &format!("Request #{id} is ready again."),
    ))
}

#[derive(Deserialize)]
struct ReasonForm {
    #[serde(default)]
    reason: String,
}

async fn force_release(
    State(state): State<AppState>,
    Path(id): Path<LockId>,
    posted: Posted<ReasonForm>,
) -> Result<Response, WebError> {
    let reason = posted.form.reason.trim();
    let lock = state
        .engine
        .force_release_lock(&posted.user.principal, id, Some(reason))
        .await
        .map_err(|e| WebError::from(e).back("/admin"))?;
    Ok(redirect_with(
        "/admin",
        &posted.headers,
        "ok",
        &format!(
            "{}'s lock on {} was released: {reason}",
            lock.holder,
            lock.resources
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

struct AuditRow {
    at: String,
    at_text: String,
    actor: String,
    area: String,
    subject: String,
    action: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    actor: String,
    subject: String,
    since: String,
    until: String,
    entries: Vec<AuditRow>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AuditQuery {
    actor: String,
    subject: String,
    since: String,
    until: String,
    before: String,
}

/// Reads a `datetime-local` value (taken as UTC).
fn local_time(field: &str, v: &str) -> Result<Option<DateTime<Utc>>, WebError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(v.trim(), f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| {
            WebError::new(
                400,
                "Unreadable filter",
                format!("{field}: {v:?} is not a date and time like 2026-11-25T10:42"),
            )
            .back("/admin/audit")
        })
}

async fn audit(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    supervisor(&user)?;
    let before = if q.before.is_empty() {
        None
    } else {
        Some(q.before.parse().map_err(|_| {
            WebError::new(
                400,
                "Unreadable page link",
                "The `before` cursor is not valid.",
            )
            .back("/admin/audit")
        })?)
    };
    let filter = AuditFilter {
        actor: Some(q.actor.trim().to_owned()).filter(|s| !s.is_empty()),
        subject: Some(q.subject.trim().to_owned()).filter(|s| !s.is_empty()),
        since: local_time("From", &q.since)?,
        until: local_time("To", &q.until)?,
        limit: AUDIT_PAGE,
        before,
    };
    let entries = state.engine.audit(&user.principal, &filter).await?;
    let next = (entries.len() == AUDIT_PAGE as usize)
        .then(|| entries.last().map(|e| e.cursor.to_string()))
        .flatten()
        .map(|cursor| {
            format!(
                "/admin/audit?actor={}&subject={}&since={}&until={}&before={}",
                encode(&q.actor),
                encode(&q.subject),
                encode(&q.since),
                encode(&q.until),
                encode(&cursor)
            )
        });
    let rows = entries
        .into_iter()
        .map(|e| AuditRow {
            at: e.at.to_rfc3339(),
            at_text: when(e.at),
            actor: e.actor.unwrap_or_default(),
            area: e.area.as_str().to_owned(),
            subject: e.subject,
            action: e.action,
            detail: match &e.detail {
                serde_json::Value::Null => String::new(),
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                other => other.to_string(),
            },
        })
        .collect();
    Ok(ok_page(
        &user,
        &AuditPage {
            l: Layout::of(&user, "audit"),
            actor: q.actor,
            subject: q.subject,
            since: q.since,
            until: q.until,
            entries: rows,
            next,
        },
    ))
}

struct PrincipalRow {
    name: String,
    path: String,
    role: String,
    tokens: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "principals.html")]
struct PrincipalsPage {
    l: Layout,
    principals: Vec<PrincipalRow>,
    roles: Vec<String>,
    new_token: Option<(String, String)>,
}

fn admin_only(user: &WebUser) -> Result<(), WebError> {
    if user.principal.role == Role::Admin {
        Ok(())
    } else {
        Err(WebError::new(
            403,
            "Admins only",
            "Managing people and tokens is for admins.",
        ))
    }
}

async fn principals_page(
    state: &AppState,
    user: &WebUser,
    new_token: Option<(String, String)>,
) -> Result<Response, WebError> {
    admin_only(user)?;
    let who = &user.principal;
    let mut rows = Vec::new();
    for p in state.engine.principals(who).await? {
        let tokens = state
            .engine
            .tokens(who, &p.name)
            .await?
            .into_iter()
            .map(|t| (t.id, format!("created {}", when(t.created_at))))
            .collect();
        rows.push(PrincipalRow {
            path: encode(&p.name),
            name: p.name,
            role: p.role.to_string(),
            tokens,
        });
    }
    let template = PrincipalsPage {
        l: Layout::of(user, "principals"),
        principals: rows,
        roles: Role::ALL.iter().map(|r| r.as_str().to_owned()).collect(),
        new_token,
    };
    Ok(page(StatusCode::OK, &template, user.flash.is_some()))
}

async fn principals(State(state): State<AppState>, user: WebUser) -> Result<Response, WebError> {
    principals_page(&state, &user, None).await
}

#[derive(Deserialize)]
struct NewPrincipal {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

async fn create_principal(
    State(state): State<AppState>,
    posted: Posted<NewPrincipal>,
) -> Result<Response, WebError> {
    let back = |e: baton::Error| WebError::from(e).back("/admin/principals");
    let Posted {
        user,
        form,
        headers,
    } = posted;
    admin_only(&user)?;
    let role: Role = form.role.parse().map_err(back)?;
    // Check the password before creating anyone, so a refusal changes
    // nothing.
    if !form.password.is_empty() && form.password.len() < 8 {
        return Ok(redirect_with(
            "/admin/principals",
            &headers,
            "bad",
            "Not added: a password needs at least 8 characters.",
        ));
    }
    let name = form.name.trim();
    let (_, token) = state
        .engine
        .create_principal(&user.principal, name, role)
        .await
        .map_err(back)?;
    if !form.password.is_empty() {
        state
            .engine
            .set_password(&user.principal, name, &form.password)
            .await
            .map_err(back)?;
    }
    // The first token is shown on this answer, once.
    let mut user = user;
    user.flash = Some(("ok".into(), format!("{name} was added as {role}.")));
    principals_page(&state, &user, Some((name.to_owned(), token))).await
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<PasswordForm>,
) -> Result<Response, WebError> {
    admin_only(&posted.user)?;
    state
        .engine
        .set_password(&posted.user.principal, &name, &posted.form.password)
        .await
        .map_err(|e| WebError::from(e).back("/admin/principals"))?;
    Ok(redirect_with(
        "/admin/principals",
        &posted.headers,
        "ok",
        &format!("{name}'s password was changed."),
    ))
}

async fn create_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    admin_only(&posted.user)?;
    let (_, token) = state
        .engine
        .create_token(&posted.user.principal, &name)
        .await
        .map_err(|e| WebError::from(e).back("/admin/principals"))?;
    // Shown once, on this answer: never put in a URL or a cookie.
    principals_page(&state, &posted.user, Some((name, token))).await
}

async fn revoke_token(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    posted: Posted<Empty>,
) -> Result<Response, WebError> {
    admin_only(&posted.user)?;
    state
        .engine
        .revoke_token(&posted.user.principal, &name, &id)
        .await
        .map_err(|e| WebError::from(e).back("/admin/principals"))?;
    Ok(redirect_with(
        "/admin/principals",
        &posted.headers,
        "ok",
        &format!("{name}'s token {id} was revoked."),
    ))
}
