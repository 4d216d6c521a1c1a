//! The OpenAPI document cannot drift from the router: every route of the
//! contract is served and documented with its method, the document names
//! nothing else, and no path answers a method the document does not list.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Answer, TestApp};

/// The API's contract: every route the server serves, in one place.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/queues"),
    ("POST", "/v1/queues/{queue}/items"),
    ("GET", "/v1/queues/{queue}/items"),
    ("GET", "/v1/queues/{queue}/config"),
    ("PUT", "/v1/queues/{queue}/config"),
    ("POST", "/v1/queues/{queue}/claim"),
    ("GET", "/v1/items/{id}"),
    ("GET", "/v1/items/{id}/history"),
    ("POST", "/v1/items/{id}/heartbeat"),
    ("POST", "/v1/items/{id}/release"),
    ("POST", "/v1/items/{id}/complete"),
    ("POST", "/v1/items/{id}/revoke"),
    ("POST", "/v1/items/{id}/requeue"),
    ("GET", "/v1/collections/{collection}"),
    ("PUT", "/v1/collections/{collection}"),
    ("GET", "/v1/collections/{collection}/records"),
    ("GET", "/v1/collections/{collection}/records/{key}"),
    ("PUT", "/v1/collections/{collection}/records/{key}"),
    ("PATCH", "/v1/collections/{collection}/records/{key}"),
    ("DELETE", "/v1/collections/{collection}/records/{key}"),
    ("GET", "/v1/collections/{collection}/records/{key}/history"),
    (
        "GET",
        "/v1/collections/{collection}/records/{key}/versions/{version}",
    ),
    ("GET", "/v1/conflicts/{id}"),
    ("POST", "/v1/locks"),
    ("GET", "/v1/locks"),
    ("GET", "/v1/locks/{id}"),
    ("DELETE", "/v1/locks/{id}"),
    ("POST", "/v1/locks/status"),
    ("POST", "/v1/locks/{id}/heartbeat"),
    ("POST", "/v1/locks/{id}/upgrade"),
    ("POST", "/v1/locks/{id}/downgrade"),
    ("DELETE", "/v1/sessions/{session}/locks"),
    ("GET", "/v1/resources/{resource}/history"),
    ("GET", "/v1/events"),
    ("GET", "/v1/me"),
    ("GET", "/v1/principals"),
    ("POST", "/v1/principals"),
    ("PUT", "/v1/principals/{name}/password"),
    ("GET", "/v1/principals/{name}/tokens"),
    ("POST", "/v1/principals/{name}/tokens"),
    ("DELETE", "/v1/principals/{name}/tokens/{id}"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/queues/{queue}/throughput"),
    ("GET", "/openapi.json"),
    ("GET", "/livez"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A concrete path for a template.
fn concrete(template: &str) -> String {
    template
        .replace("{queue}", "drift")
        .replace("{id}", "1")
        .replace("{collection}", "drift")
        .replace("{key}", "k")
        .replace("{version}", "1")
        .replace("{session}", "tab-1")
        .replace("{resource}", "customer%2F42")
}

/// Whether the router has a handler for this method and path: anything but
/// the unknown-route 404 and the 405.
fn served(a: &Answer) -> bool {
    let ty = a.body["type"].as_str().unwrap_or_default();
    !(ty.ends_with(":unknown-route") || a.status == reqwest::StatusCode::METHOD_NOT_ALLOWED)
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
                set.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    set
}

#[tokio::test]
async fn the_document_and_the_router_name_the_same_routes() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = t.anonymous.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(a.status, reqwest::StatusCode::OK);
    let doc = a.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "OpenAPI 3: {}",
        doc["openapi"]
    );
    assert_eq!(
        doc,
        serde_json::to_value(baton_http::openapi()).unwrap(),
        "served = generated"
    );

    let contract: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented(&doc),
        contract,
        "the document lists exactly the contract's routes"
    );

    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        for method in METHODS {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let a = t
                .admin
                .send(t.admin.request(m, &concrete(path)).json(&json!({})))
                .await;
            let expected = contract.contains(&(method.to_string(), path.to_string()));
            assert_eq!(
                served(&a),
                expected,
                "{method} {path}: served={} documented={expected}: {} {}",
                !expected,
                a.status,
                a.body
            );
        }
    }
    t.stop().await;
}

#[tokio::test]
async fn every_operation_documents_security_and_problems() {
    let doc = serde_json::to_value(baton_http::openapi()).unwrap();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for schema in [
        "Item",
        "Lease",
        "Claimed",
        "QueueStats",
        "QueueConfig",
        "ItemEvent",
        "Principal",
        "Record",
        "RecordVersion",
        "Written",
        "ConflictObject",
        "CollectionConfig",
        "FieldConflict",
        "ChangeSince",
        "Lock",
        "LockEvent",
        "ResourceStatus",
        "Conflict",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method.to_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: a success answer"
        );
        assert!(responses.contains_key("500"), "{method} {path}");
        if path.starts_with("/v1/") {
            assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
            let unauthorized = &responses["401"]["content"]["application/problem+json"]["schema"];
            assert_eq!(
                unauthorized["$ref"], "#/components/schemas/Problem",
                "{method} {path}"
            );
        } else {
            assert_eq!(op["security"], json!([]), "{method} {path} is open");
        }
        if op.get("requestBody").is_some() {
            for status in ["413", "415", "422"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
        }
    }
}
