//! Leases that are not kept alive: re-claimed by someone else with a higher
//! token, the old holder refused; parking after max_attempts.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_goes_to_someone_else_and_the_old_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("expiry.db"));
    let admin = server.admin();
    let app = admin.principal("app", "app").await;
    let alice = admin.principal("alice", "operator").await;
    let bob = admin.principal("bob", "operator").await;
    let id = app.enqueue_many("desk", 1).await[0];

    let (status, first) = alice
        .post("/v1/queues/desk/claim", json!({"lease_seconds": 1}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let old_token = first["lease"]["token"].as_i64().unwrap();
    // Bob waits (long-poll) and gets the item once alice's lease expires.
    let (status, second) = bob
        .post(
            "/v1/queues/desk/claim",
            json!({"lease_seconds": 60, "wait_seconds": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["item"]["id"], id);
    let new_token = second["lease"]["token"].as_i64().unwrap();
    assert!(new_token > old_token);

    let before = admin.get(&format!("/v1/items/{id}")).await.1;
    let history_before = admin.get(&format!("/v1/items/{id}/history")).await.1;
    let (status, problem) = alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": old_token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["status"], 409);
    assert!(problem["type"].as_str().unwrap().contains("stale-token"));
    assert_eq!(
        admin.get(&format!("/v1/items/{id}")).await.1,
        before,
        "refusal changed nothing"
    );
    assert_eq!(
        admin.get(&format!("/v1/items/{id}/history")).await.1,
        history_before
    );

    let (status, done) = bob
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": new_token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["completion"]["by"], "bob");
    let events = admin.get(&format!("/v1/items/{id}/history")).await.1;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["enqueued", "claimed", "expired", "claimed", "completed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_is_parked_after_max_attempts_and_requeued_by_a_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("park.db"));
    let admin = server.admin();
    let sup = admin.principal("sup", "supervisor").await;
    let (status, cfg) = sup
        .call(
            Method::PUT,
            "/v1/queues/flaky/config",
            Some(json!({"max_attempts": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cfg}");
    let app = admin.principal("app", "app").await;
    let op = admin.principal("op", "operator").await;
    let id = app.enqueue_many("flaky", 1).await[0];
    for _ in 0..2 {
        let (status, body) = op
            .post(
                "/v1/queues/flaky/claim",
                json!({"lease_seconds": 1, "wait_seconds": 5}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    // The sweeper parks it without anyone claiming.
    let mut state = String::new();
    for _ in 0..50 {
        state = admin.get(&format!("/v1/items/{id}")).await.1["state"]
            .as_str()
            .unwrap()
            .to_owned();
        if state == "parked" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "parked");
    let (status, _) = op.post("/v1/queues/flaky/claim", json!({})).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a parked item is not claimable"
    );
    let stats = admin.get("/v1/queues").await.1;
    let q = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "flaky")
        .unwrap()
        .clone();
    assert_eq!(
        (q["parked"].as_u64(), q["ready"].as_u64()),
        (Some(1), Some(0))
    );

    let (status, _) = op.post(&format!("/v1/items/{id}/requeue"), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "operators cannot requeue");
    let (status, item) = sup
        .post(&format!("/v1/items/{id}/requeue"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (item["state"].as_str(), item["attempts"].as_u64()),
        (Some("ready"), Some(0))
    );
    let (status, _) = op.post("/v1/queues/flaky/claim", json!({})).await;
    assert_eq!(status, StatusCode::OK);
}
