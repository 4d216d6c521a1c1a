//! Claim semantics over HTTP: idempotent retries, one item per operator,
//! long-poll woken by an enqueue, an empty wait, and long-polls ending at
//! shutdown.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestApp;

#[tokio::test]
async fn a_retried_claim_with_the_same_idempotency_key_returns_the_same_lease() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let first_id = t.enqueue("desk").await;
    t.enqueue("desk").await;
    let claim = |key: &'static str| {
        let api = t.alice.clone();
        async move {
            api.send(
                api.request(Method::POST, "/v1/queues/desk/claim")
                    .header("Idempotency-Key", key)
                    .json(&json!({"lease_seconds": 120})),
            )
            .await
        }
    };
    let a = claim("click-1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["item"]["id"], first_id);
    let b = claim("click-1").await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    assert_eq!(b.body["item"]["id"], a.body["item"]["id"]);
    assert_eq!(
        b.body["lease"], a.body["lease"],
        "same item, same lease, same token"
    );

    // Another key: alice already holds her one lease in this queue, so she
    // gets it back rather than a second item.
    let c = claim("click-2").await;
    assert_eq!(c.body["item"]["id"], first_id);
    assert_eq!(c.body["lease"]["token"], a.body["lease"]["token"]);
    let (_, leased) = t.supervisor.get("/v1/queues/desk/items?state=leased").await;
    assert_eq!(
        leased["items"].as_array().unwrap().len(),
        1,
        "never a second item"
    );

    // A key that is not printable text is refused.
    let a = t
        .alice
        .send(
            t.alice
                .request(Method::POST, "/v1/queues/desk/claim")
                .header("Idempotency-Key", "x".repeat(300))
                .json(&json!({})),
        )
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "Idempotency-Key");
    t.stop().await;
}

#[tokio::test]
async fn a_second_claim_by_the_same_operator_returns_the_item_already_held() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    t.enqueue("desk").await;
    t.enqueue("desk").await;
    let first = t.alice.claim("desk", json!({})).await.expect("claimed");
    let again = t.alice.claim("desk", json!({})).await.expect("claimed");
    assert_eq!(first, again);
    // An empty body means all defaults.
    let a = t
        .alice
        .send(t.alice.request(Method::POST, "/v1/queues/desk/claim"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["item"]["id"], first.0);
    // Bob gets the other one.
    let other = t.bob.claim("desk", json!({})).await.expect("claimed");
    assert_ne!(other.0, first.0);
    t.stop().await;
}

#[tokio::test]
async fn claims_honour_the_kinds_filter_and_priority() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let (_, low) = t
        .app
        .post(
            "/v1/queues/mix/items",
            json!({"kind": "email", "priority": 1}),
        )
        .await;
    let (_, high) = t
        .app
        .post(
            "/v1/queues/mix/items",
            json!({"kind": "email", "priority": 9}),
        )
        .await;
    let (_, call) = t
        .app
        .post(
            "/v1/queues/mix/items",
            json!({"kind": "call", "priority": 5}),
        )
        .await;
    let (id, _) = t
        .alice
        .claim("mix", json!({"kinds": ["call"]}))
        .await
        .expect("claimed");
    assert_eq!(id, call["id"].as_i64().unwrap());
    let (id, _) = t.bob.claim("mix", json!({})).await.expect("claimed");
    assert_eq!(id, high["id"].as_i64().unwrap(), "highest priority first");
    assert!(low["id"].is_i64());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_woken_by_an_enqueue() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let alice = t.alice.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        alice
            .post("/v1/queues/later/claim", json!({"wait_seconds": 30}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = t.enqueue("later").await;
    let (status, body) = waiting.await.expect("claim task");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["item"]["id"], id);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "woken, not timed out"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_wait_with_nothing_arriving_answers_204() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let started = Instant::now();
    let a = t
        .alice
        .call(
            Method::POST,
            "/v1/queues/empty/claim",
            Some(json!({"wait_seconds": 1})),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.body, json!(null));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it did wait"
    );
    let (status, _) = t.alice.post("/v1/queues/empty/claim", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_waiting_long_polls_promptly() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let alice = t.alice.clone();
    let waiting = tokio::spawn(async move {
        alice
            .call(
                Method::POST,
                "/v1/queues/idle/claim",
                Some(json!({"wait_seconds": 60})),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    t.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "graceful shutdown did not wait for the poll"
    );
    let a = waiting.await.expect("claim task");
    a.assert_problem(503, "shutting-down");
    assert_eq!(a.header("retry-after"), "1");
}
