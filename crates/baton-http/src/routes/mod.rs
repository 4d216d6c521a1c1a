//! The routes, one module per resource. Each module's `router()` registers
//! its handlers through utoipa-axum's `routes!`, which adds each handler's
//! `#[utoipa::path]` to the OpenAPI document as it adds the route: the
//! document and the router come from the same annotations.

pub(crate) mod audit;
pub(crate) mod events;
pub(crate) mod items;
pub(crate) mod locks;
pub(crate) mod ops;
pub(crate) mod principals;
pub(crate) mod queues;
pub(crate) mod records;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

/// Every route of the API, with its part of the OpenAPI document.
pub(crate) fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(queues::router())
        .merge(items::router())
        .merge(records::router())
        .merge(locks::router())
        .merge(principals::router())
        .merge(audit::router())
        .merge(events::router())
        .merge(ops::router())
}
