//! Logging in and out, and the home page listing the desks.
//!
//! The login form is protected against login CSRF by a double-submit
//! token: the page sets a random `baton_login` cookie and puts the same
//! value in the form; a post whose two differ is refused. Logging out
//! ends the session and releases every lock taken in it.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{
    LOGIN_COOKIE, Posted, SESSION_COOKIE, WebUser, cookie, same_secret, secure_context, set_cookie,
};
use super::{Layout, WebError, encode, ok_page, page, span};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    error: Option<String>,
    insecure: bool,
    next: String,
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: String,
}

/// Where to go after logging in: only a path on this site (not `//host`,
/// which browsers read as another site).
fn local_target(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

fn login_form(
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    name: &str,
    error: Option<String>,
) -> Response {
    let token = baton::generate_token();
    let template = LoginPage {
        l: Layout::anonymous(token.clone()),
        error,
        insecure: !secure_context(headers),
        next: local_target(next),
        name: name.to_owned(),
    };
    let mut response = page(status, &template, false);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, token, 3600),
    );
    response
}

async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = state.engine.session(secret).await
    {
        return Redirect::to(&local_target(&q.next)).into_response();
    }
    login_form(&headers, StatusCode::OK, &q.next, "", None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(rename = "_csrf", default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let bound = cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, &form.csrf));
    if !bound {
        return login_form(
            &headers,
            StatusCode::FORBIDDEN,
            &form.next,
            &form.name,
            Some(
                "This login form had expired or did not come from this page. Please try again."
                    .into(),
            ),
        );
    }
    let name = form.name.trim();
    match state.engine.login(name, &form.password).await {
        Ok(Some((secret, session))) => {
            let max_age = (session.expires_at - state.engine.now())
                .num_seconds()
                .max(1);
            let mut response = Redirect::to(&local_target(&form.next)).into_response();
            let h = response.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(&headers, SESSION_COOKIE, secret, max_age),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&headers, LOGIN_COOKIE, String::new(), 0),
            );
            response
        }
        Ok(None) => login_form(
            &headers,
            StatusCode::UNAUTHORIZED,
            &form.next,
            name,
            Some("Wrong name or password.".into()),
        ),
        Err(e) => WebError::from(e).back("/login").into_response(),
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn logout(State(state): State<AppState>, posted: Posted<Empty>) -> Response {
    if let Err(e) = state.engine.logout(&posted.user.secret).await {
        return WebError::from(e).into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&posted.headers, SESSION_COOKIE, String::new(), 0),
    );
    response
}

/// One queue on the home page.
struct QueueCard {
    name: String,
    path: String,
    ready: u64,
    leased: u64,
    oldest: Option<String>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    l: Layout,
    queues: Vec<QueueCard>,
    default_collection: String,
}

async fn home(State(state): State<AppState>, user: WebUser) -> Result<Response, WebError> {
    let stats = state.engine.queue_stats(&user.principal).await?;
    let queues = stats
        .into_iter()
        .map(|q| QueueCard {
            path: encode(q.queue.as_str()),
            name: q.queue.to_string(),
            ready: q.ready,
            leased: q.leased,
            oldest: q.oldest_ready_age_seconds.map(|s| span(s as i64)),
        })
        .collect();
    Ok(ok_page(
        &user,
        &HomePage {
            l: Layout::of(&user, "home"),
            queues,
            default_collection: "clients".to_owned(),
        },
    ))
}
