//! The lost-update race across servers: 16 clients spread over several
//! `baton serve` processes sharing PostgreSQL or MariaDB each make 200
//! read-modify-write increments of one counter with If-Match, retrying on
//! 412. No increment is lost: the counter equals the number of successful
//! writes, and the history shows every write based on the version it
//! replaced.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use baton_testkit::databases::{Server as DbServer, TestDatabase};

use crate::harness::{Api, Server};

const CLIENTS: usize = 16;
const EACH: usize = 200;
const COUNTER: &str = "/v1/collections/counters/records/hits";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_postgres_lose_no_increment() {
    let Some(db) = TestDatabase::create(DbServer::Postgres).await else {
        return;
    };
    race(&crate::race::servers_on(db.url(), 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_mariadb_lose_no_increment() {
    let Some(db) = TestDatabase::create(DbServer::MySql).await else {
        return;
    };
    race(&crate::race::servers_on(db.url(), 2)).await;
}

fn etag(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_owned()
}

/// One client: read, add one, write with If-Match; on 412 take the
/// current value and ETag the answer carries and try again after a short
/// random pause. Returns the versions its successful writes made.
async fn client(api: Api) -> Vec<i64> {
    let mut made = Vec::with_capacity(EACH);
    for _ in 0..EACH {
        let (status, headers, body) = api.send(Method::GET, COUNTER, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (mut n, mut tag) = (body["data"]["n"].as_i64().expect("n"), etag(&headers));
        let mut lost = 0u32;
        loop {
            let (status, headers, body) = api
                .send(
                    Method::PUT,
                    COUNTER,
                    &[("if-match", &tag)],
                    Some(json!({"n": n + 1})),
                )
                .await;
            match status {
                StatusCode::OK => {
                    made.push(body["version"].as_i64().expect("version"));
                    break;
                }
                StatusCode::PRECONDITION_FAILED => {
                    n = body["record"]["data"]["n"].as_i64().expect("current n");
                    tag = etag(&headers);
                    lost += 1;
                    let pause = rand::rng().random_range(0..=(1u64 << lost.min(5)));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => panic!("PUT answered {other}: {body}"),
            }
        }
    }
    made
}

async fn race(servers: &[Server]) {
    let admin = servers[0].admin();
    let (status, _, body) = admin
        .send(
            Method::PUT,
            COUNTER,
            &[("if-none-match", "*")],
            Some(json!({"n": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let api = admin
            .principal(&format!("counter-{i}"), "app")
            .await
            .on(&servers[i % servers.len()].url);
        tasks.push(tokio::spawn(client(api)));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.expect("client task"));
    }
    made.sort_unstable();
    let total = (CLIENTS * EACH) as i64;
    assert_eq!(
        made,
        (2..=total + 1).collect::<Vec<_>>(),
        "each success made its own version"
    );

    // Every server sees the same counter.
    for s in servers {
        let (status, body) = admin.on(&s.url).get(COUNTER).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["data"]["n"].as_i64(), body["version"].as_i64()),
            (Some(total), Some(total + 1))
        );
    }
    let mut after = 0;
    let mut versions: Vec<Value> = Vec::new();
    loop {
        let (status, page) = admin
            .get(&format!("{COUNTER}/history?limit=1000&after={after}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        versions.extend(page["versions"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(versions.len() as i64, total + 1);
    for (i, v) in versions.iter().enumerate().skip(1) {
        let version = i as i64 + 1;
        assert_eq!(v["version"], version);
        assert_eq!(v["kind"], "replace", "{v}");
        assert_eq!(
            v["base_version"],
            version - 1,
            "not based on the version it replaced: {v}"
        );
        assert_eq!(
            v["changes"],
            json!([{"path": "/n", "old": version - 2, "new": version - 1}])
        );
    }
}
