//! Baton's HTTP API over [`baton::Engine`]: JSON under `/v1`, bearer-token
//! authentication, RFC 9457 problem answers, an OpenAPI 3 document at
//! `/openapi.json`, `/healthz` and Prometheus `/metrics`.
//!
//! This crate is the only one that knows JSON shapes and status codes. It
//! holds no business rule: each handler parses the request into the core's
//! validated types, calls one engine operation (which checks the caller's
//! role), and maps the result or [`baton::Error`] to HTTP.
//!
//! ```no_run
//! # async fn demo(engine: baton::Engine) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! baton_http::serve(listener, engine, baton_http::HttpSettings::default(), shutdown).await
//! # }
//! ```
//!
//! Code map: [`auth`] (who is calling), [`extract`] (bodies, paths and
//! queries whose rejections are problems), `conditional` (`If-Match`,
//! `If-None-Match`, `ETag`), [`error`] (every problem),
//! `routes` (the handlers, one module per resource), [`mod@openapi`] (the
//! document's fixed parts), [`metrics`] (the recorder and
//! the request middleware).

#![warn(missing_docs)]

pub mod auth;
mod conditional;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
mod routes;
mod web;

use std::any::Any;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use baton::Engine;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, Problem, ProblemKind};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body, in bytes (default 1 MiB). A larger
    /// body is refused with 413.
    pub body_limit: usize,
    /// Length of the leases the operator desk takes, in seconds (default
    /// 60). The page keeps them alive while it is open, so a short lease
    /// only bounds how long a closed tab holds on to a request.
    pub desk_lease_seconds: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            desk_lease_seconds: 60,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The engine doing the work.
    pub(crate) engine: Engine,
    /// Cancelled when the server shuts down; ends long-polls early.
    pub(crate) shutdown: CancellationToken,
    /// The document served at `/openapi.json`.
    pub(crate) openapi: Arc<utoipa::openapi::OpenApi>,
    /// The settings it was started with.
    pub(crate) settings: Arc<HttpSettings>,
}

/// The whole application: every route, its middleware, and the fallbacks
/// that answer unknown routes (404) and methods (405) with problems.
///
/// Long-polling claims end only when their wait does; use [`serve`] to
/// have them end at shutdown.
pub fn router(engine: Engine, settings: HttpSettings) -> Router {
    app(engine, settings, CancellationToken::new())
}

/// The OpenAPI 3 document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::finish(routes::all().into_openapi())
}

fn app(engine: Engine, settings: HttpSettings, shutdown: CancellationToken) -> Router {
    // Install the recorder before the first request so nothing is missed.
    let _ = metrics::prometheus();
    let (routes, doc) = routes::all().split_for_parts();
    let state = AppState {
        engine,
        shutdown,
        openapi: Arc::new(openapi::finish(doc)),
        settings: Arc::new(settings.clone()),
    };
    routes
        .merge(web::router())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` is cancelled.
///
/// Runs the engine's sweeper alongside (so expired leases return to their
/// queues even when nobody claims). On shutdown, stops accepting
/// connections, ends waiting long-polls with 503 and `Retry-After`, lets
/// in-flight requests finish, then waits for the sweeper to stop.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    settings: HttpSettings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let sweeper = engine
        .spawn_sweeper(shutdown.clone())
        .await
        .map_err(std::io::Error::other)?;
    // `into_make_service` hands each connection a clone of the finished
    // router (one `Arc`). Serving the `Router` itself would rebuild every
    // route for each connection (axum's `Service<IncomingStream>` calls
    // `with_state(())`): about 100 KB per open connection, measured with
    // heaptrack on 3,000 waiting long-polls.
    let app = app(engine, settings, shutdown.clone()).into_make_service();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    // If serving failed on its own, stop the sweeper too.
    shutdown.cancel();
    if let Err(e) = sweeper.await {
        tracing::warn!(error = %e, "the sweeper task ended abnormally");
    }
    served
}

async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::new(
        ProblemKind::UnknownRoute,
        format!("no route {}; see /openapi.json", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ProblemKind::MethodNotAllowed,
        format!(
            "{method} is not allowed on {}; the Allow header lists what is",
            uri.path()
        ),
    )
}

fn panicked(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    ApiError::internal(format_args!("a request handler panicked: {message}")).into_response()
}
