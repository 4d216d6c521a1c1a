//! Operational routes, open without a token: the OpenAPI document, health
//! and Prometheus metrics.

use std::time::Duration;

use axum::Json as JsonBody;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, Problem, ProblemKind};

/// The operational routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(livez))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

/// How long `/healthz` waits for the store.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of a healthy server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// This OpenAPI 3 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json"))
)]
async fn openapi_json(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(&*state.openapi).map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Liveness: the process serves HTTP. Touches nothing else, so it also
/// measures the floor of this HTTP stack (`baton bench http-floor`); use
/// `/healthz` to know whether the store answers.
#[utoipa::path(
    get,
    path = "/livez",
    tag = "operations",
    responses((status = 200, description = "The process serves HTTP", body = Health))
)]
async fn livez() -> JsonBody<Health> {
    JsonBody(Health { status: "ok" })
}

/// Health: the server runs and its store answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The store does not answer (`unavailable`)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn healthz(State(state): State<AppState>) -> Result<JsonBody<Health>, ApiError> {
    // The cheapest real read: one index lookup of a token hash that cannot
    // exist.
    let probe = state.engine.store().principal_by_token(&[]);
    match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
        Ok(Ok(_)) => Ok(JsonBody(Health { status: "ok" })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: store failed");
            Err(unhealthy())
        }
        Err(_) => {
            tracing::warn!("health check: store did not answer in time");
            Err(unhealthy())
        }
    }
}

fn unhealthy() -> ApiError {
    ApiError::unavailable(ProblemKind::Unavailable, "the store does not answer", 1)
}

/// Prometheus metrics: HTTP requests by route and status, the engine's
/// counters, and queue depth per queue and state.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let text = crate::metrics::render(&state.engine).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
