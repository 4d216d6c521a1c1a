//! The audit trail and queue throughput over HTTP: order, pages, filters,
//! roles, and a problem naming the field for every bad parameter.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestApp;

/// Work in every area: an item enqueued, claimed and completed, a lock
/// taken and released, a record created.
async fn work(t: &TestApp) {
    let id = t.enqueue("desk").await;
    let (_, token) = t
        .alice
        .claim("desk", json!({"lease_seconds": 60}))
        .await
        .unwrap();
    let (s, b) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, lock) = t
        .bob
        .post(
            "/v1/locks",
            json!({"resources": ["doc/1"], "mode": "exclusive", "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{lock}");
    let a = t
        .bob
        .call(Method::DELETE, &format!("/v1/locks/{}", lock["id"]), None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let a = t
        .app
        .send(
            t.app
                .request(Method::PUT, "/v1/collections/clients/records/bob")
                .header("if-none-match", "*")
                .json(&json!({"name": "Bob"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

fn actions(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["area"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[tokio::test]
async fn the_trail_pages_newest_first_and_filters() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    work(&t).await;
    let (s, page) = t.supervisor.get("/v1/audit").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let all = actions(&page);
    // Several entries may share an instant; the order within an instant
    // is fixed but not chronological, so check membership and counts.
    for want in [
        "item enqueued shop",
        "item claimed alice",
        "item completed alice",
        "lock granted bob",
        "lock released bob",
        "record create shop",
    ] {
        assert!(all.contains(&want.to_owned()), "{want} in {all:?}");
    }
    assert_eq!(all.len(), 6);
    assert_eq!(page["next_before"], Value::Null);
    let times: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    // Pages of 4, then the rest: the same entries in the same order.
    let (_, first) = t.admin.get("/v1/audit?limit=4").await;
    let cursor = first["next_before"]
        .as_str()
        .expect("a full page has a cursor");
    let (s, second) = t
        .admin
        .send(
            t.admin
                .request(Method::GET, "/v1/audit")
                .query(&[("limit", "4"), ("before", cursor)]),
        )
        .await
        .pipe(|a| (a.status, a.body));
    assert_eq!(s, StatusCode::OK, "{second}");
    let mut paged = actions(&first);
    paged.extend(actions(&second));
    assert_eq!(paged, all);
    assert_eq!(second["next_before"], Value::Null);

    // Filters.
    let (_, by_alice) = t.supervisor.get("/v1/audit?actor=alice").await;
    assert_eq!(actions(&by_alice).len(), 2);
    let (_, desk) = t.supervisor.get("/v1/audit?subject=desk").await;
    assert_eq!(actions(&desk).len(), 3);
    let (_, doc) = t.supervisor.get("/v1/audit?subject=doc%2F1").await;
    assert_eq!(actions(&doc), vec!["lock released bob", "lock granted bob"]);
    assert_eq!(doc["entries"][0]["subject"], "doc/1");
    let (_, bob) = t.supervisor.get("/v1/audit?subject=clients%2Fbob").await;
    assert_eq!(actions(&bob), vec!["record create shop"]);
    let (_, future) = t
        .supervisor
        .get("/v1/audit?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(actions(&future).len(), 0);
    t.stop().await;
}

#[tokio::test]
async fn the_trail_refuses_operators_and_bad_parameters() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for api in [&t.alice, &t.app] {
        api.call(Method::GET, "/v1/audit", None)
            .await
            .assert_problem(403, "forbidden");
    }
    t.anonymous
        .call(Method::GET, "/v1/audit", None)
        .await
        .assert_problem(401, "unauthorized");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("since=yesterday", "since"),
        ("until=2025-13-01T00:00:00Z", "until"),
        (
            "since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z",
            "until",
        ),
        ("before=nonsense", "before"),
        ("before=1.record.1.no-slash", "before"),
    ] {
        let a = t
            .supervisor
            .call(Method::GET, &format!("/v1/audit?{query}"), None)
            .await;
        assert_eq!(a.assert_problem(422, "invalid")["field"], field, "{query}");
    }
    t.supervisor
        .call(Method::GET, "/v1/audit?limit=many", None)
        .await
        .assert_problem(400, "malformed-request");
    t.stop().await;
}

#[tokio::test]
async fn throughput_counts_completions_per_bucket() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for _ in 0..2 {
        let id = t.enqueue("desk").await;
        let (_, token) = t
            .alice
            .claim("desk", json!({"lease_seconds": 60}))
            .await
            .unwrap();
        let (s, b) = t
            .alice
            .post(
                &format!("/v1/items/{id}/complete"),
                json!({"token": token, "outcome": "accepted"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    t.enqueue("desk").await;
    let (s, body) = t
        .supervisor
        .get("/v1/queues/desk/throughput?minutes=10&bucket_seconds=60")
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["queue"], "desk");
    assert_eq!(body["bucket_seconds"], 60);
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 11, "10 minutes and the current one: {body}");
    let counts: Vec<u64> = buckets
        .iter()
        .map(|b| b["completed"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 2, "{counts:?}");
    // Both in the current minute's bucket, or the one before if a minute
    // began meanwhile.
    assert_eq!(counts[9] + counts[10], 2, "just now: {counts:?}");
    // Defaults: the last hour in 5-minute buckets; any role may read.
    let (s, body) = t.app.get("/v1/queues/desk/throughput").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["buckets"].as_array().unwrap().len(), 13);
    for (query, field) in [
        ("minutes=0", "minutes"),
        ("minutes=10081", "minutes"),
        ("bucket_seconds=0", "bucket_seconds"),
        ("bucket_seconds=86401", "bucket_seconds"),
        ("minutes=10080&bucket_seconds=1", "bucket_seconds"),
    ] {
        let a = t
            .supervisor
            .call(
                Method::GET,
                &format!("/v1/queues/desk/throughput?{query}"),
                None,
            )
            .await;
        assert_eq!(a.assert_problem(422, "invalid")["field"], field, "{query}");
    }
    t.supervisor
        .call(Method::GET, "/v1/queues/bad%20name/throughput", None)
        .await
        .assert_problem(422, "invalid");
    t.stop().await;
}

/// `x.pipe(f)` is `f(x)`: keeps a chain of calls readable.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
