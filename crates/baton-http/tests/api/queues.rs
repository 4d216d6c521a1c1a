//! Happy paths of the queue routes: enqueue and dedupe, listing with
//! paging and filters, statistics, settings.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestApp;

#[tokio::test]
async fn enqueue_answers_201_with_location_and_200_when_deduplicated() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = t
        .app
        .call(
            Method::POST,
            "/v1/queues/refunds/items",
            Some(json!({"kind": "refund", "payload": {"order": 1042}, "priority": 5, "dedupe_key": "order-1042"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let id = a.body["id"].as_i64().unwrap();
    assert_eq!(a.header("location"), format!("/v1/items/{id}"));
    assert_eq!(a.body["queue"], "refunds");
    assert_eq!(a.body["kind"], "refund");
    assert_eq!(a.body["payload"], json!({"order": 1042}));
    assert_eq!(a.body["priority"], 5);
    assert_eq!(a.body["state"], "ready");
    assert_eq!(a.body["token"], 0);

    let (status, again) = t
        .app
        .post(
            "/v1/queues/refunds/items",
            json!({"kind": "refund", "payload": {"other": true}, "dedupe_key": "order-1042"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id);
    assert_eq!(
        again["payload"],
        json!({"order": 1042}),
        "the existing item, unchanged"
    );

    // Defaults: payload null, priority 0; a delay schedules the item.
    let (status, later) = t
        .app
        .post(
            "/v1/queues/refunds/items",
            json!({"kind": "refund", "delay_seconds": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (later["state"].as_str(), later["priority"].as_i64()),
        (Some("scheduled"), Some(0))
    );
    assert_eq!(later["payload"], json!(null));
    t.stop().await;
}

#[tokio::test]
async fn items_are_listed_in_pages_and_filtered_by_state_and_holder() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(t.enqueue("pages").await);
    }
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match after {
            Some(a) => format!("/v1/queues/pages/items?limit=2&after={a}"),
            None => "/v1/queues/pages/items?limit=2".to_owned(),
        };
        let (status, page) = t.supervisor.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap()),
        );
        match page["next_after"].as_i64() {
            Some(n) => after = Some(n),
            None => {
                assert!(page["next_after"].is_null());
                break;
            }
        }
        assert!(pages < 10);
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);

    // Default page and the empty filters of a form.
    let (_, page) = t.app.get("/v1/queues/pages/items?state=&holder=").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert!(page["next_after"].is_null());

    let (id, _) = t.alice.claim("pages", json!({})).await.expect("claimed");
    let (_, leased) = t
        .supervisor
        .get("/v1/queues/pages/items?state=leased")
        .await;
    let leased: Vec<i64> = leased["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(leased, [id]);
    let (_, mine) = t
        .supervisor
        .get("/v1/queues/pages/items?holder=alice")
        .await;
    assert_eq!(mine["items"][0]["lease"]["holder"], "alice");
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let (_, nobody) = t.supervisor.get("/v1/queues/pages/items?holder=bob").await;
    assert_eq!(nobody["items"], json!([]));
    let (_, ready) = t
        .supervisor
        .get("/v1/queues/pages/items?state=ready&limit=1000")
        .await;
    assert_eq!(ready["items"].as_array().unwrap().len(), 4);
    // A queue that was never used is empty, not an error.
    let (status, none) = t.supervisor.get("/v1/queues/unused/items").await;
    assert_eq!(
        (status, none),
        (StatusCode::OK, json!({"items": [], "next_after": null}))
    );
    t.stop().await;
}

#[tokio::test]
async fn stats_count_every_state_per_queue() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for _ in 0..3 {
        t.enqueue("a").await;
    }
    t.enqueue("b").await;
    t.app
        .post(
            "/v1/queues/a/items",
            json!({"kind": "task", "delay_seconds": 600}),
        )
        .await;
    let (id, token) = t.alice.claim("a", json!({})).await.expect("claimed");
    let (status, _) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    t.alice.claim("a", json!({})).await.expect("claimed");

    let (status, stats) = t.app.get("/v1/queues").await;
    assert_eq!(status, StatusCode::OK);
    let a = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "a")
        .unwrap();
    assert_eq!(
        [
            &a["scheduled"],
            &a["ready"],
            &a["leased"],
            &a["parked"],
            &a["done"]
        ],
        [1, 1, 1, 0, 1]
    );
    assert!(a["oldest_ready_age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(a["config"]["max_leases_per_holder"], 1);
    let b = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "b")
        .unwrap();
    assert_eq!(b["ready"], 1);
    t.stop().await;
}

#[tokio::test]
async fn config_changes_merge_onto_the_current_settings() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let (status, defaults) = t.alice.get("/v1/queues/desk/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        defaults,
        json!({
            "max_leases_per_holder": 1,
            "max_attempts": 5,
            "outcomes": ["accepted", "rejected", "escalated"],
            "escalation_outcome": "escalated",
            "skip_cooldown_seconds": 30
        })
    );
    let (status, after) = t
        .supervisor
        .put("/v1/queues/desk/config", json!({"max_attempts": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let mut expected = defaults.clone();
    expected["max_attempts"] = json!(2);
    assert_eq!(after, expected);

    let (status, after) = t
        .supervisor
        .put(
            "/v1/queues/desk/config",
            json!({"outcomes": ["done", "spam"], "escalation_outcome": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    expected["outcomes"] = json!(["done", "spam"]);
    expected["escalation_outcome"] = json!(null);
    assert_eq!(after, expected, "max_attempts kept");
    assert_eq!(t.app.get("/v1/queues/desk/config").await.1, expected);

    // The queue's own outcomes are the ones a completion may name.
    t.enqueue("desk").await;
    let (id, token) = t.alice.claim("desk", json!({})).await.expect("claimed");
    let (status, _) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, done) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "spam"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["completion"]["outcome"], "spam");

    // An unknown setting is named.
    let (status, p) = t
        .supervisor
        .put("/v1/queues/desk/config", json!({"max_atempts": 3}))
        .await;
    assert_eq!(
        (status, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("max_atempts"))
    );
    t.stop().await;
}
