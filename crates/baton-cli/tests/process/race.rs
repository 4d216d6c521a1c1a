//! Operators racing over HTTP for the items of one queue — on one server
//! over SQLite, and on several servers sharing PostgreSQL or MariaDB —
//! checked from the history they observed: every item completed exactly
//! once, fencing tokens strictly increasing, no two leases of one item
//! overlapping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;

use baton_testkit::databases::{Server as DbServer, TestDatabase};

use crate::harness::{Api, Server};

const OPERATORS: usize = 64;

#[derive(Debug, Clone)]
struct Claim {
    item: i64,
    holder: String,
    token: i64,
    from: DateTime<FixedOffset>,
    to: DateTime<FixedOffset>,
    completed: bool,
}

fn ts(v: &serde_json::Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().expect("timestamp")).expect("RFC 3339")
}

async fn operator(api: Api, name: String, seed: u64, log: Arc<Mutex<Vec<Claim>>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    loop {
        let (status, body) = api
            .post(
                "/v1/queues/race/claim",
                json!({"lease_seconds": 300, "wait_seconds": 1}),
            )
            .await;
        if status == StatusCode::NO_CONTENT {
            // Nothing for me; stop only when nothing is left for anyone.
            let (_, stats) = api.get("/v1/queues").await;
            let q = stats
                .as_array()
                .and_then(|a| a.iter().find(|q| q["queue"] == "race"))
                .cloned()
                .expect("race queue stats");
            let open = q["ready"].as_u64().unwrap()
                + q["leased"].as_u64().unwrap()
                + q["scheduled"].as_u64().unwrap();
            if open == 0 {
                return;
            }
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        let item = body["item"]["id"].as_i64().unwrap();
        let token = body["lease"]["token"].as_i64().unwrap();
        assert_eq!(body["lease"]["holder"], name.as_str());
        let from = ts(&body["lease"]["claimed_at"]);
        // One claim in ten is skipped (released) so items change hands.
        let release = rng.random_bool(0.1);
        let (path, req) = if release {
            (format!("/v1/items/{item}/release"), json!({"token": token}))
        } else {
            (
                format!("/v1/items/{item}/complete"),
                json!({"token": token, "outcome": "accepted"}),
            )
        };
        let (status, done) = api.post(&path, req).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        let to = if release {
            ts(&done["updated_at"])
        } else {
            ts(&done["completion"]["at"])
        };
        log.lock().unwrap().push(Claim {
            item,
            holder: name.clone(),
            token,
            from,
            to,
            completed: !release,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_operators_never_share_an_item() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("race.db"));
    race(&[server], 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_postgres_never_share_an_item() {
    let Some(db) = TestDatabase::create(DbServer::Postgres).await else {
        return;
    };
    race(&servers_on(db.url(), 3), 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_mariadb_never_share_an_item() {
    let Some(db) = TestDatabase::create(DbServer::MySql).await else {
        return;
    };
    race(&servers_on(db.url(), 2), 2000).await;
}

/// `n` servers over one database; the first one migrates it and prints
/// the admin token.
pub(crate) fn servers_on(url: &str, n: usize) -> Vec<Server> {
    let first = Server::start_url(url, &[]);
    assert!(first.admin_token.is_some(), "first start prints a token");
    let mut all = vec![first];
    all.extend((1..n).map(|_| Server::start_url(url, &[])));
    all
}

/// `items` items, [`OPERATORS`] operators spread over `servers`, all racing
/// for the queue `race`; then the checks.
async fn race(servers: &[Server], items: usize) {
    let admin = servers[0].admin();
    let app = admin.principal("producer", "app").await;
    // Enqueue through every server at once.
    let mut producers = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let app = app.on(&s.url);
        let share = items / servers.len() + usize::from(i < items % servers.len());
        producers.push(tokio::spawn(async move {
            app.enqueue_many("race", share).await
        }));
    }
    let mut ids = Vec::with_capacity(items);
    for p in producers {
        ids.extend(p.await.expect("producer task"));
    }
    assert_eq!(ids.len(), items);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..OPERATORS {
        let name = format!("op{i}");
        let api = admin
            .principal(&name, "operator")
            .await
            .on(&servers[i % servers.len()].url);
        tasks.push(tokio::spawn(operator(
            api,
            name,
            0xBA70 + i as u64,
            log.clone(),
        )));
    }
    for t in tasks {
        t.await.expect("operator task");
    }
    let log = log.lock().unwrap().clone();

    let mut by_item: HashMap<i64, Vec<Claim>> = HashMap::new();
    for c in log {
        by_item.entry(c.item).or_default().push(c);
    }
    assert_eq!(by_item.len(), items, "every item was claimed");
    for id in &ids {
        let claims = by_item.get_mut(id).expect("claimed");
        claims.sort_by_key(|c| c.token);
        assert_eq!(
            claims.iter().filter(|c| c.completed).count(),
            1,
            "item {id} completed exactly once: {claims:?}"
        );
        assert!(
            claims.last().unwrap().completed,
            "completion is the last claim of {id}"
        );
        for pair in claims.windows(2) {
            assert!(
                pair[0].token < pair[1].token,
                "tokens strictly increase: {pair:?}"
            );
            assert!(
                pair[0].to <= pair[1].from,
                "leases of item {id} overlap: {pair:?}"
            );
        }
    }
    // The server's own history agrees: as many claims as we saw, one completion.
    for id in ids.iter().step_by(7) {
        let (status, body) = admin.get(&format!("/v1/items/{id}/history")).await;
        assert_eq!(status, StatusCode::OK);
        let events = body["events"].as_array().expect("events");
        let count = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
        assert_eq!(count("claimed"), by_item[id].len(), "item {id}: {events:?}");
        assert_eq!(count("completed"), 1);
        let holders: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "claimed")
            .map(|e| e["actor"].as_str().unwrap())
            .collect();
        let ours: Vec<&str> = by_item[id].iter().map(|c| c.holder.as_str()).collect();
        assert_eq!(holders, ours);
    }
    let (_, stats) = admin.get("/v1/queues").await;
    let q = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "race")
        .unwrap();
    assert_eq!(q["done"], items as u64);
    assert_eq!(q["ready"], 0);
}
