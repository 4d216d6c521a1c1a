//! Lock holders racing over HTTP — on one server over SQLite, and on
//! several servers sharing PostgreSQL or MariaDB (lock times then come
//! from the database's clock): 32 clients repeatedly lock random subsets
//! of 8 resources in random modes with short TTLs, sometimes waiting,
//! sometimes heartbeating, mostly releasing and sometimes abandoning the
//! lock to expire. A checker over the grant intervals they observed proves
//! that no resource ever had an exclusive holder overlapping any other
//! holder and that tokens strictly increase, and the servers' history
//! agrees with what the clients saw.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use baton_testkit::databases::{Server as DbServer, TestDatabase};

use crate::harness::{Api, Server};

const CLIENTS: usize = 32;
const ROUNDS: usize = 20;
const RESOURCES: usize = 8;

/// A grant as its holder saw it, and until when it held.
#[derive(Debug, Clone)]
struct Grant {
    lock: i64,
    resources: Vec<String>,
    exclusive: bool,
    token: i64,
    from: DateTime<FixedOffset>,
    to: DateTime<FixedOffset>,
}

fn ts(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().expect("timestamp")).expect("RFC 3339")
}

fn name(i: usize) -> String {
    format!("customer/{i}")
}

async fn client(api: Api, seed: u64, log: Arc<Mutex<Vec<Grant>>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..ROUNDS {
        let mut resources: Vec<String> = (0..RESOURCES)
            .filter(|_| rng.random_bool(0.2))
            .map(name)
            .collect();
        if resources.is_empty() {
            resources.push(name(rng.random_range(0..RESOURCES)));
        }
        let exclusive = rng.random_bool(0.5);
        let wait = if rng.random_bool(0.4) {
            rng.random_range(1..3)
        } else {
            0
        };
        let (status, lock) = api
            .post(
                "/v1/locks",
                json!({
                    "resources": resources,
                    "mode": if exclusive { "exclusive" } else { "shared" },
                    "ttl_seconds": rng.random_range(1..3),
                    "wait_seconds": wait,
                }),
            )
            .await;
        if status == StatusCode::LOCKED {
            assert_eq!(lock["type"], "urn:baton:problem:locked", "{lock}");
            assert!(!lock["conflicts"].as_array().expect("conflicts").is_empty());
            continue;
        }
        assert_eq!(status, StatusCode::CREATED, "{lock}");
        let id = lock["id"].as_i64().expect("id");
        let mut to = ts(&lock["expires_at"]);
        tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..40))).await;
        if rng.random_bool(0.3) {
            let (s, l) = api
                .post(
                    &format!("/v1/locks/{id}/heartbeat"),
                    json!({"ttl_seconds": 2}),
                )
                .await;
            match s {
                StatusCode::OK => to = ts(&l["expires_at"]),
                // A slow machine may have let it run out.
                StatusCode::GONE => {}
                other => panic!("heartbeat answered {other}: {l}"),
            }
        }
        if rng.random_bool(0.85) {
            let (s, body) = api
                .call(Method::DELETE, &format!("/v1/locks/{id}"), None)
                .await;
            assert!(
                s == StatusCode::NO_CONTENT || s == StatusCode::GONE,
                "release answered {s}: {body}"
            );
            let (_, ended) = api.get(&format!("/v1/locks/{id}")).await;
            let end = ts(&ended["ended"]["at"]);
            to = to.min(end);
        }
        log.lock().unwrap().push(Grant {
            lock: id,
            resources: lock["resources"]
                .as_array()
                .expect("resources")
                .iter()
                .map(|r| r.as_str().expect("name").to_owned())
                .collect(),
            exclusive,
            token: lock["token"].as_i64().expect("token"),
            from: ts(&lock["acquired_at"]),
            to,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_never_overlap_an_exclusive_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("locks.db"));
    race(&[server]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_postgres_never_overlap_an_exclusive_lock() {
    let Some(db) = TestDatabase::create(DbServer::Postgres).await else {
        return;
    };
    race(&servers_on(db.url(), 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_mariadb_never_overlap_an_exclusive_lock() {
    let Some(db) = TestDatabase::create(DbServer::MySql).await else {
        return;
    };
    race(&servers_on(db.url(), 2)).await;
}

fn servers_on(url: &str, n: usize) -> Vec<Server> {
    let first = Server::start_url(url, &[]);
    assert!(first.admin_token.is_some(), "first start prints a token");
    let mut all = vec![first];
    all.extend((1..n).map(|_| Server::start_url(url, &[])));
    all
}

async fn race(servers: &[Server]) {
    let admin = servers[0].admin();
    let supervisor = admin.principal("sup", "supervisor").await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let api = admin
            .principal(&format!("user{i}"), "operator")
            .await
            .on(&servers[i % servers.len()].url);
        tasks.push(tokio::spawn(client(api, 0x10C4 + i as u64, log.clone())));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let grants = log.lock().unwrap().clone();
    assert!(grants.len() > CLIENTS, "only {} grants", grants.len());
    let exclusive = grants.iter().filter(|g| g.exclusive).count();
    assert!(
        exclusive > 0 && exclusive < grants.len(),
        "both modes granted"
    );
    eprintln!(
        "{} grants ({exclusive} exclusive) of {} attempts over {} server(s)",
        grants.len(),
        CLIENTS * ROUNDS,
        servers.len()
    );
    check(&grants);
    // The servers' history has exactly the grants the clients saw.
    for i in 0..RESOURCES {
        let (s, body) = supervisor
            .get(&format!(
                "/v1/resources/{}/history?limit=1000",
                name(i).replace('/', "%2F")
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let events = body["events"].as_array().expect("events");
        assert!(events.len() < 1000, "history longer than one page");
        let mut theirs: Vec<(i64, i64)> = events
            .iter()
            .filter(|e| e["kind"] == "granted")
            .map(|e| (e["lock"].as_i64().unwrap(), e["token"].as_i64().unwrap()))
            .collect();
        let mut ours: Vec<(i64, i64)> = grants
            .iter()
            .filter(|g| g.resources.contains(&name(i)))
            .map(|g| (g.lock, g.token))
            .collect();
        theirs.sort();
        ours.sort();
        assert_eq!(theirs, ours, "{}", name(i));
    }
}

/// On every resource: no exclusive grant's interval overlaps another
/// grant's, and tokens strictly increase in grant order.
fn check(grants: &[Grant]) {
    let mut by_resource: BTreeMap<&str, Vec<&Grant>> = BTreeMap::new();
    for g in grants {
        for r in &g.resources {
            by_resource.entry(r).or_default().push(g);
        }
    }
    for (r, mut gs) in by_resource {
        gs.sort_by_key(|g| g.token);
        for w in gs.windows(2) {
            assert!(w[0].token < w[1].token, "{r}: a token granted twice: {w:?}");
            assert!(
                w[0].from <= w[1].from,
                "{r}: a later grant carries a smaller token: {w:?}"
            );
        }
        for (i, a) in gs.iter().enumerate() {
            for b in &gs[i + 1..] {
                if a.exclusive || b.exclusive {
                    assert!(
                        a.to <= b.from || b.to <= a.from,
                        "{r}: an exclusive lock overlapped another:\n{a:?}\n{b:?}"
                    );
                }
            }
        }
    }
}
