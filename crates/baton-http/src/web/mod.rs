//! The web UI: server-rendered pages for operators (`/desk/{queue}`),
//! people editing records (`/records/{collection}/{key}`) and supervisors
//! (`/admin`), over the same engine calls as the JSON API.
//!
//! Templates (`templates/`, askama) are compiled into the binary; the one
//! stylesheet and script (`static/`) are embedded with `include_str!`, so
//! `baton serve` needs no front-end build. Pages work as plain forms; the
//! script adds what is live by nature (keepalive, countdowns, waiting for
//! work, the "someone else changed this" banner) over `/v1` and
//! `/v1/events`, authenticated by the session cookie.
//!
//! Module map: [`session`] (cookie, CSRF, extractors), `login`, `desk`,
//! `records` with `form` (JSON ⇄ form fields), `admin`.

mod admin;
mod desk;
mod form;
mod login;
mod records;
pub(crate) mod session;

use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use baton::Error;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use session::WebUser;

const CSS: &str = include_str!("../../static/baton.css");
const JS: &str = include_str!("../../static/baton.js");

/// A short hash of the embedded assets, put in their URLs so browsers may
/// cache them for good and still get a new build's files.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::new().chain_update(CSS).chain_update(JS).finalize();
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
});

/// Every page route.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/static/{file}", get(asset))
        .merge(login::router())
        .merge(desk::router())
        .merge(records::router())
        .merge(admin::router())
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "baton.css" => (CSS, "text/css; charset=utf-8"),
        "baton.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return WebError::new(404, "Not found", "There is no such file.").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

/// What every page's frame shows: who is logged in, the CSRF token for
/// its forms, the navigation and a message from the previous request.
pub(crate) struct Layout {
    /// The logged-in name, if any.
    pub(crate) user: Option<String>,
    /// Their role.
    pub(crate) role: String,
    /// The CSRF token for forms (empty when logged out).
    pub(crate) csrf: String,
    /// Which navigation entry is current.
    pub(crate) nav: &'static str,
    /// Whether to show the supervisor's entries.
    pub(crate) supervisor: bool,
    /// Whether to show the admin's entries.
    pub(crate) admin: bool,
    /// Messages: (class, text).
    pub(crate) flash: Vec<(String, String)>,
    /// Put in asset URLs.
    pub(crate) asset_version: &'static str,
}

impl Layout {
    /// The frame for `user`'s page, `nav` naming the current entry.
    pub(crate) fn of(user: &WebUser, nav: &'static str) -> Self {
        Layout {
            user: Some(user.principal.name.clone()),
            role: user.principal.role.to_string(),
            csrf: user.csrf.clone(),
            nav,
            supervisor: user.supervisor(),
            admin: user.principal.role == baton::Role::Admin,
            flash: user.flash.clone().into_iter().collect(),
            asset_version: ASSET_VERSION.as_str(),
        }
    }

    /// The frame of a page seen without a session.
    pub(crate) fn anonymous(csrf: String) -> Self {
        Layout {
            user: None,
            role: String::new(),
            csrf,
            nav: "",
            supervisor: false,
            admin: false,
            flash: Vec::new(),
            asset_version: ASSET_VERSION.as_str(),
        }
    }
}

/// Renders a page with the headers every page gets: no framing by other
/// sites, no inline scripts, no MIME sniffing, and no caching of pages
/// that show private data. `clear_flash` removes the message cookie once
/// it has been shown.
pub(crate) fn page(status: StatusCode, template: &impl Template, clear_flash: bool) -> Response {
    let html = match template.render() {
        Ok(html) => html,
        Err(e) => return WebError::from(ApiError::internal(e)).into_response(),
    };
    let mut response = (status, Html(html)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if clear_flash {
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("baton_flash=; Path=/; Max-Age=0"),
        );
    }
    response
}

/// Renders `template` for `user` with status 200, clearing the message
/// the page showed.
pub(crate) fn ok_page(user: &WebUser, template: &impl Template) -> Response {
    page(StatusCode::OK, template, user.flash.is_some())
}

/// A page-level failure: shown as an error page with a way back.
#[derive(Debug)]
pub(crate) struct WebError {
    status: StatusCode,
    heading: String,
    detail: String,
    back: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    l: Layout,
    heading: &'a str,
    detail: &'a str,
    back: &'a str,
}

impl WebError {
    /// A failure with `status`, a heading and what happened.
    pub(crate) fn new(status: u16, heading: &str, detail: impl Into<String>) -> Self {
        WebError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            heading: heading.to_owned(),
            detail: detail.into(),
            back: "/".to_owned(),
        }
    }

    /// Where the page's "Back" link leads.
    pub(crate) fn back(mut self, to: impl Into<String>) -> Self {
        self.back = to.into();
        self
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        let p = e.problem();
        WebError {
            status: e.status(),
            heading: p.title.to_owned(),
            detail: p.detail.clone(),
            back: "/".to_owned(),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        WebError::from(ApiError::from(e))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let template = ErrorPage {
            l: Layout::anonymous(String::new()),
            heading: &self.heading,
            detail: &self.detail,
            back: &self.back,
        };
        page(self.status, &template, false)
    }
}

/// Percent-encodes one path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `2026-11-25 10:42:07 UTC`: how pages print an instant (scripts turn
/// some into the reader's local time).
pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// How long ago `t` was, for people: `45 s`, `12 min`, `3 h`, `2 days`.
pub(crate) fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    span((now - t).num_seconds().max(0))
}

/// A length of time for people.
pub(crate) fn span(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}
