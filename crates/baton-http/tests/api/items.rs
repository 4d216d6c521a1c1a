//! Happy paths of the item routes: claim, heartbeat, release, complete,
//! escalate, revoke, requeue, item and history; and principals.

use std::time::Duration;

use chrono::DateTime;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Api, TestApp};

#[tokio::test]
async fn an_item_is_claimed_kept_alive_released_and_completed() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("desk").await;

    let (status, claimed) = t
        .alice
        .post("/v1/queues/desk/claim", json!({"lease_seconds": 60}))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["item"]["id"], id);
    assert_eq!(claimed["item"]["state"], "leased");
    assert_eq!(claimed["lease"]["holder"], "alice");
    assert_eq!(claimed["lease"]["token"], 1);
    assert_eq!(claimed["item"]["lease"], claimed["lease"]);
    let expires =
        DateTime::parse_from_rfc3339(claimed["lease"]["expires_at"].as_str().unwrap()).unwrap();

    let (status, lease) = t
        .alice
        .post(
            &format!("/v1/items/{id}/heartbeat"),
            json!({"token": 1, "lease_seconds": 600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lease}");
    assert_eq!(
        (lease["token"].as_i64(), lease["holder"].as_str()),
        (Some(1), Some("alice"))
    );
    let extended = DateTime::parse_from_rfc3339(lease["expires_at"].as_str().unwrap()).unwrap();
    assert!(extended > expires);

    // Release: ready again; nothing left for alice (the skip cooldown), bob
    // gets it with a higher token.
    let (status, released) = t
        .alice
        .post(&format!("/v1/items/{id}/release"), json!({"token": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["state"], "ready");
    assert_eq!(released["released_by"], "alice");
    assert_eq!(
        t.alice.claim("desk", json!({})).await,
        None,
        "not offered straight back"
    );
    let (_, token) = t.bob.claim("desk", json!({})).await.expect("bob claims");
    assert_eq!(token, 2);

    let (status, done) = t
        .bob
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": 2, "outcome": "rejected", "note": "duplicate"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "done");
    assert_eq!(done["completion"]["outcome"], "rejected");
    assert_eq!(done["completion"]["note"], "duplicate");
    assert_eq!(done["completion"]["by"], "bob");
    assert_eq!(
        t.app.get(&format!("/v1/items/{id}")).await.1,
        done,
        "a done item is still readable"
    );

    let (status, history) = t.app.get(&format!("/v1/items/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let events = history["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "enqueued",
            "claimed",
            "extended",
            "released",
            "claimed",
            "completed"
        ]
    );
    let actors: Vec<&str> = events
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(actors, ["shop", "alice", "alice", "alice", "bob", "bob"]);
    assert_eq!(events[4]["token"], 2);
    assert!(events.iter().all(|e| e["item_id"] == id));
    t.stop().await;
}

#[tokio::test]
async fn a_release_with_a_delay_schedules_the_item() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("desk").await;
    let (_, token) = t.alice.claim("desk", json!({})).await.expect("claimed");
    let (status, item) = t
        .alice
        .post(
            &format!("/v1/items/{id}/release"),
            json!({"token": token, "delay_seconds": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(item["state"], "scheduled");
    assert_eq!(t.bob.claim("desk", json!({})).await, None);
    t.stop().await;
}

#[tokio::test]
async fn escalation_moves_the_item_to_another_queue() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("tier1").await;
    let (_, token) = t.alice.claim("tier1", json!({})).await.expect("claimed");
    let (status, item) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "escalated", "note": "needs a manager", "escalate_to": "tier2"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(
        (item["queue"].as_str(), item["state"].as_str()),
        (Some("tier2"), Some("ready"))
    );
    assert_eq!(t.alice.claim("tier1", json!({})).await, None);
    let (same, newer) = t
        .bob
        .claim("tier2", json!({}))
        .await
        .expect("claimed in tier2");
    assert_eq!(same, id);
    assert!(newer > token, "the fencing token keeps increasing");
    let (_, history) = t.app.get(&format!("/v1/items/{id}/history")).await;
    let escalated = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "escalated")
        .cloned();
    assert_eq!(escalated.expect("escalated event")["detail"]["to"], "tier2");
    t.stop().await;
}

#[tokio::test]
async fn a_supervisor_revokes_a_lease_and_requeues_a_parked_item() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("desk").await;
    let (_, token) = t.alice.claim("desk", json!({})).await.expect("claimed");
    // An empty body is fine for supervisor actions.
    let a = t
        .supervisor
        .send(
            t.supervisor
                .request(reqwest::Method::POST, &format!("/v1/items/{id}/revoke")),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["state"], "ready");
    assert!(a.body["lease"].is_null());
    let (status, _) = t
        .alice
        .post(
            &format!("/v1/items/{id}/heartbeat"),
            json!({"token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "the revoked token is stale");

    // Park: one attempt allowed, a 1 s lease left to expire.
    let (status, _) = t
        .supervisor
        .put("/v1/queues/flaky/config", json!({"max_attempts": 1}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let parked_id = t.enqueue("flaky").await;
    t.bob
        .claim("flaky", json!({"lease_seconds": 1}))
        .await
        .expect("claimed");
    let mut state = String::new();
    for _ in 0..100 {
        state = t.supervisor.get(&format!("/v1/items/{parked_id}")).await.1["state"]
            .as_str()
            .unwrap()
            .to_owned();
        if state == "parked" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "parked", "the sweeper parks it");
    let (_, parked) = t
        .supervisor
        .get("/v1/queues/flaky/items?state=parked")
        .await;
    assert_eq!(parked["items"][0]["id"], parked_id);
    let (status, item) = t
        .supervisor
        .post(&format!("/v1/items/{parked_id}/requeue"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(
        (item["state"].as_str(), item["attempts"].as_u64()),
        (Some("ready"), Some(0))
    );
    let (_, history) = t
        .supervisor
        .get(&format!("/v1/items/{parked_id}/history"))
        .await;
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["enqueued", "claimed", "parked", "requeued"]);
    t.stop().await;
}

#[tokio::test]
async fn admins_create_principals_whose_token_works_once_shown() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let (status, me) = t.alice.get("/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("alice"), Some("operator"))
    );

    let (status, created) = t
        .admin
        .post(
            "/v1/principals",
            json!({"name": "carol", "role": "supervisor"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["principal"]["name"], "carol");
    assert_eq!(created["principal"]["role"], "supervisor");
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("baton_"));
    let carol = Api::new(&t.url, Some(token));
    assert_eq!(carol.get("/v1/me").await.1, created["principal"]);

    let (status, all) = t.admin.get("/v1/principals").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in ["admin", "alice", "bob", "carol", "shop", "sup"] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|p| p.get("token").is_none()),
        "no secrets listed"
    );
    t.stop().await;
}
