//! The operational routes: health and metrics, open without a token.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestApp;

#[tokio::test]
async fn healthz_and_livez_answer_ok_without_a_token() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for path in ["/healthz", "/livez"] {
        let a = t.anonymous.call(Method::GET, path, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.body, json!({"status": "ok"}), "{path}");
    }
    t.stop().await;
}

#[tokio::test]
async fn metrics_show_requests_engine_counters_and_queue_depth() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for _ in 0..3 {
        t.enqueue("metered").await;
    }
    let (id, token) = t.alice.claim("metered", json!({})).await.expect("claimed");
    let (status, _) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (id, token) = t.alice.claim("metered", json!({})).await.expect("claimed");
    t.alice
        .post(&format!("/v1/items/{id}/release"), json!({"token": token}))
        .await;
    t.alice
        .post(&format!("/v1/items/{id}/release"), json!({"token": token}))
        .await; // stale
    t.anonymous.get("/v1/me").await;
    // Let the sweeper run at least once.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    let a = t.anonymous.call(Method::GET, "/metrics", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.header("content-type").starts_with("text/plain"),
        "{:?}",
        a.headers
    );
    let text = a.body.as_str().expect("text");
    for needle in [
        "baton_http_requests_total{",
        r#"route="/v1/queues/{queue}/claim""#,
        r#"status="401""#,
        "baton_http_request_duration_seconds_bucket{",
        "baton_claims_total",
        "baton_completions_total{outcome=\"accepted\"}",
        "baton_releases_total",
        "baton_stale_token_refusals_total",
        "baton_leases_expired_total",
        "baton_items_enqueued_total",
        r#"baton_queue_items{queue="metered",state="ready"} 2"#,
        r#"baton_queue_items{queue="metered",state="done"} 1"#,
        r#"baton_queue_oldest_ready_age_seconds{queue="metered"}"#,
        "baton_store_up 1",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    assert!(
        !text.contains(&format!("/v1/items/{id}/")),
        "routes are templates, not raw paths"
    );
    t.stop().await;
}
