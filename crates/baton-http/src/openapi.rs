//! The OpenAPI 3 document, generated from the same `#[utoipa::path]`
//! annotations that register the routes (utoipa-axum's `routes!`), so the
//! router and the document cannot name different routes.
//!
//! What the annotations would repeat on every operation is added here once:
//! the bearer security scheme (and its absence on `/livez`, `/healthz`, `/metrics`,
//! `/openapi.json`), and the problem answers any operation may give (400,
//! 401, 413, 415, 500, 503).

use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, Ref, RefOr};

use crate::error::{PROBLEM_JSON, Problem, ProblemKind};

/// Name of the security scheme in the document.
const BEARER: &str = "bearer";

/// The document's fixed parts; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton",
        description = "Work queues with leases and fencing tokens: no request is served to two people at once. \
Versioned records with optimistic concurrency: no update is silently lost. \
A lock manager (pessimistic offline locks) with shared and exclusive modes, TTLs, fencing tokens and fair waiting. \
Every `/v1` call needs `Authorization: Bearer <token>`. Errors are `application/problem+json` (RFC 9457) \
with a stable `type` of the form `urn:baton:problem:<slug>`."
    ),
    components(schemas(Problem)),
    tags(
        (name = "queues", description = "Enqueue, claim, list, statistics, settings"),
        (name = "items", description = "Work an item under a lease; supervise; history"),
        (name = "records", description = "Versioned records: ETag/If-Match, merge, history, conflict objects"),
        (name = "locks", description = "Lock resources (shared/exclusive), keep locks alive, release, force, status, history"),
        (name = "events", description = "Live events (server-sent events): items, leases, records, locks"),
        (name = "principals", description = "Identity, passwords and tokens"),
        (name = "audit", description = "The audit trail: who did what, when, to which item, lock or record"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
struct ApiDoc;

/// The fixed parts of the document, to which the routers add the paths.
pub(crate) fn base() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// Adds the security scheme and the problem answers common to every
/// operation.
pub(crate) fn finish(mut doc: OpenApiDoc) -> OpenApiDoc {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("baton_…")
                .description(Some(
                    "An API token from `baton token create` or `POST /v1/principals`",
                ))
                .build(),
        ),
    );
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for (path, item) in doc.paths.paths.iter_mut() {
        let authenticated = path.starts_with("/v1/");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            decorate(op, authenticated);
        }
    }
    doc
}

fn decorate(op: &mut Operation, authenticated: bool) {
    let mut common = vec![ProblemKind::Internal, ProblemKind::Unavailable];
    if authenticated {
        op.security = Some(vec![SecurityRequirement::new::<_, _, String>(BEARER, [])]);
        common.push(ProblemKind::Unauthorized);
        common.push(ProblemKind::Malformed);
    } else {
        // Explicitly open: overrides any document-wide requirement.
        op.security = Some(Vec::new());
    }
    if op.request_body.is_some() {
        common.push(ProblemKind::PayloadTooLarge);
        common.push(ProblemKind::UnsupportedMediaType);
        common.push(ProblemKind::Invalid);
    }
    for kind in common {
        let status = kind.status().as_u16().to_string();
        op.responses.responses.entry(status).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(format!("{} (`{}`)", kind.title(), kind.slug()))
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        });
    }
}
