//! kill -9 right after acknowledged completions: after a restart every
//! acknowledged completion is still there. And SIGTERM stops cleanly.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Api, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_completions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durable.db");
    let server = Server::start(&db);
    let admin = server.admin();
    let admin_token = server.admin_token.clone().unwrap();
    let app = admin.principal("app", "app").await;
    app.enqueue_many("d", 400).await;
    let acked: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let mut workers = Vec::new();
    for i in 0..8 {
        let op = admin.principal(&format!("op{i}"), "operator").await;
        let acked = acked.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let (status, body) = op.post("/v1/queues/d/claim", json!({})).await;
                if status != StatusCode::OK {
                    return;
                }
                let id = body["item"]["id"].as_i64().unwrap();
                let token = body["lease"]["token"].as_i64().unwrap();
                let (status, _) = op
                    .post(
                        &format!("/v1/items/{id}/complete"),
                        json!({"token": token, "outcome": "rejected"}),
                    )
                    .await;
                if status == StatusCode::OK {
                    acked.lock().unwrap().push((id, token));
                }
            }
        }));
    }
    // Kill while the workers are mid-flight.
    while acked.lock().unwrap().len() < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let db = server.kill9();
    let acked_at_kill: Vec<(i64, i64)> = acked.lock().unwrap().clone();
    for w in workers {
        // Their requests fail once the server is gone; that ends them.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(70), w).await;
    }
    let acked: Vec<(i64, i64)> = acked.lock().unwrap().clone();
    assert!(acked.len() >= acked_at_kill.len());

    let server = Server::start_url(&db, &[]);
    assert!(
        server.admin_token.is_none(),
        "a restart does not create a second admin"
    );
    let admin = Api::new(&server.url, &admin_token);
    for (id, token) in &acked {
        let (status, item) = admin.get(&format!("/v1/items/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            item["state"], "done",
            "acknowledged completion of {id} lost: {item}"
        );
        assert_eq!(item["completion"]["outcome"], "rejected");
        assert_eq!(item["token"], *token);
    }
    let stats = admin.get("/v1/queues").await.1;
    let q = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "d")
        .unwrap()
        .clone();
    let total: u64 = ["ready", "leased", "done", "parked", "scheduled"]
        .iter()
        .map(|k| q[*k].as_u64().unwrap())
        .sum();
    assert_eq!(total, 400, "no item lost or duplicated: {q}");
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("term.db"));
    let (status, _) = server.admin().get("/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    let exit = server.terminate();
    assert!(exit.success(), "exit status {exit:?}");
}
