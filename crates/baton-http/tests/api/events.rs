//! `GET /v1/events` over real HTTP on every backend: events arrive in
//! order with their content; a client that disconnects and resumes with
//! `Last-Event-ID` (or `last_event_id`) receives exactly the events it
//! missed; record writes carry the changed paths; a lease that is not
//! kept alive gives `lease.expiring` then `lease.lost`; locks; 401, 422;
//! the stream ends at shutdown.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Api, TestApp};

/// One server-sent event as received.
#[derive(Debug, Clone)]
struct Sse {
    id: u64,
    event: String,
    data: Value,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// A minimal SSE reader over a streaming response body.
struct Events {
    body: Body,
    buf: String,
    /// Whether the `retry:` hint was seen.
    retry: Option<u64>,
}

impl Events {
    /// Subscribes as `api` to `query` (e.g. `topics=queue:a`), with an
    /// optional `Last-Event-ID`.
    async fn open(api: &Api, query: &str, last_event_id: Option<u64>) -> Events {
        let mut req = api.request(Method::GET, &format!("/v1/events?{query}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            retry: None,
        }
    }

    /// The next block (up to a blank line), or `None` at the end of the
    /// stream.
    async fn block(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block = self.buf[..end].to_owned();
                self.buf.drain(..end + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("the stream says something within 30 s")?;
            let chunk = chunk.expect("body chunk");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next event (comments and retry hints skipped); `None` at the
    /// end of the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            let block = self.block().await?;
            let (mut id, mut event, mut data) = (None, None, String::new());
            for line in block.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.parse::<u64>().expect("numeric id")),
                    "event" => event = Some(value.to_owned()),
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    "retry" => self.retry = Some(value.parse().expect("retry ms")),
                    other => panic!("unexpected field {other:?} in {block:?}"),
                }
            }
            if let (Some(id), Some(event)) = (id, event) {
                let data: Value = serde_json::from_str(&data).expect("JSON data");
                assert_eq!(data["id"], id, "data carries the id");
                assert_eq!(data["kind"], event.as_str(), "data carries the kind");
                return Some(Sse { id, event, data });
            }
        }
    }

    /// The next event, which must exist.
    async fn expect(&mut self) -> Sse {
        self.next().await.expect("an event before the stream ends")
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Sse> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.expect().await);
        }
        out
    }
}

fn kinds(events: &[Sse]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

fn assert_increasing(events: &[Sse]) {
    for w in events.windows(2) {
        assert!(w[0].id < w[1].id, "{} then {}", w[0].id, w[1].id);
    }
}

#[tokio::test]
async fn item_events_arrive_in_order_with_what_a_page_needs() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let mut events = Events::open(&t.supervisor, "topics=queue:desk", None).await;
    let mut all = Events::open(&t.alice, "topics=queues", None).await;
    let mut other = Events::open(&t.alice, "topics=queue:elsewhere", None).await;
    let a = t.enqueue("desk").await;
    let b = t.enqueue("desk").await;
    let (status, claimed) = t
        .alice
        .post("/v1/queues/desk/claim", json!({"lease_seconds": 60}))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let token = claimed["lease"]["token"].as_i64().unwrap();
    assert_eq!(claimed["item"]["id"], a);
    let (status, body) = t
        .alice
        .post(
            &format!("/v1/items/{a}/complete"),
            json!({"token": token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = events.take(4).await;
    assert_eq!(
        kinds(&got),
        [
            "item.enqueued",
            "item.enqueued",
            "item.claimed",
            "item.completed"
        ]
    );
    assert_increasing(&got);
    assert_eq!(got[0].data["data"]["item_id"], a);
    assert_eq!(got[1].data["data"]["item_id"], b);
    let claim = &got[2].data;
    assert_eq!(claim["data"]["holder"], "alice");
    assert_eq!(claim["data"]["token"], token);
    assert_eq!(claim["data"]["queue"], "desk");
    assert_eq!(
        claim["data"]["lease_expires_at"],
        claimed["lease"]["expires_at"]
    );
    assert_eq!(
        claim["topics"],
        json!(["queues", "queue:desk", format!("item:{a}")])
    );
    assert_eq!(got[3].data["data"]["outcome"], "accepted");
    assert_eq!(got[3].data["data"]["state"], "done");
    // The same events, with the same ids, to a subscriber of all queues.
    let same = all.take(4).await;
    assert_eq!(
        same.iter().map(|e| e.id).collect::<Vec<_>>(),
        got.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert!(events.retry.is_some(), "a retry hint");
    // Nothing for another queue: its first event is the one caused now.
    t.enqueue("elsewhere").await;
    let e = other.expect().await;
    assert_eq!(e.data["data"]["queue"], "elsewhere");
    assert!(e.id > got[3].id);
    t.stop().await;
}

#[tokio::test]
async fn resuming_with_last_event_id_receives_exactly_the_missed_events() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let mut events = Events::open(&t.alice, "topics=queue:resume", None).await;
    t.enqueue("resume").await;
    t.enqueue("resume").await;
    let seen = events.take(2).await;
    drop(events);
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(t.enqueue("resume").await);
    }
    t.enqueue("noise").await;
    let last = seen[1].id;
    let mut resumed = Events::open(&t.alice, "topics=queue:resume", Some(last)).await;
    let mut by_query = Events::open(
        &t.alice,
        &format!("topics=queue:resume&last_event_id={last}"),
        None,
    )
    .await;
    let live = t.enqueue("resume").await;
    for stream in [&mut resumed, &mut by_query] {
        let got = stream.take(4).await;
        assert_eq!(kinds(&got), ["item.enqueued"; 4]);
        assert_increasing(&got);
        assert!(got[0].id > last);
        let items: Vec<i64> = got
            .iter()
            .map(|e| e.data["data"]["item_id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            items,
            [missed[0], missed[1], missed[2], live],
            "exactly the missed ones, then live"
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn a_record_write_says_which_paths_changed() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let mut events = Events::open(&t.alice, "topics=record:clients/42", None).await;
    let mut collection = Events::open(&t.alice, "topics=collection:clients", None).await;
    let path = "/v1/collections/clients/records/42";
    let a = t
        .alice
        .send(
            t.alice
                .request(Method::PUT, path)
                .header("if-none-match", "*")
                .json(&json!({"name": "Bob", "address": {"city": "Paris", "zip": "75001"}})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let etag = a.header("etag").to_owned();
    let a = t
        .bob
        .send(
            t.bob
                .request(Method::PATCH, path)
                .header("if-match", etag)
                .header("content-type", "application/merge-patch+json")
                .body(json!({"address": {"city": "Lyon"}}).to_string()),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // Another record of the collection.
    let a = t
        .alice
        .send(
            t.alice
                .request(Method::PUT, "/v1/collections/clients/records/7")
                .header("if-none-match", "*")
                .json(&json!({"name": "Ann"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let got = events.take(2).await;
    assert_eq!(kinds(&got), ["record.changed", "record.changed"]);
    let created = &got[0].data["data"];
    assert_eq!(created["op"], "create");
    assert_eq!(created["actor"], "alice");
    assert_eq!(created["version"], 1);
    let patched = &got[1].data["data"];
    assert_eq!(patched["collection"], "clients");
    assert_eq!(patched["key"], "42");
    assert_eq!(patched["op"], "patch");
    assert_eq!(patched["actor"], "bob");
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["changed"], json!(["/address/city"]));
    assert!(patched["at"].is_string());
    let all = collection.take(3).await;
    assert_eq!(all[2].data["data"]["key"], "7");
    assert_eq!(all[1].id, got[1].id);
    t.stop().await;
}

#[tokio::test]
async fn a_lease_not_kept_alive_gives_expiring_then_lost() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("short").await;
    let mut events = Events::open(&t.alice, &format!("topics=item:{id}"), None).await;
    let (status, claimed) = t
        .alice
        .post("/v1/queues/short/claim", json!({"lease_seconds": 2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let token = claimed["lease"]["token"].as_i64().unwrap();
    let got = events.take(3).await;
    assert_eq!(
        kinds(&got),
        ["item.claimed", "lease.expiring", "lease.lost"]
    );
    let expiring = &got[1].data["data"];
    assert_eq!(expiring["holder"], "alice");
    assert_eq!(expiring["token"], token);
    assert_eq!(expiring["lease_expires_at"], claimed["lease"]["expires_at"]);
    assert!(expiring["seconds_left"].as_f64().unwrap() <= 2.0);
    let lost = &got[2].data["data"];
    assert_eq!(lost["cause"], "expired");
    assert_eq!(lost["holder"], "alice");
    assert_eq!(lost["lost_token"], token);
    assert_eq!(lost["item_id"], id);
    // The item is claimable again, and the old token is refused.
    let (status, body) = t
        .alice
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": token, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    t.stop().await;
}

#[tokio::test]
async fn a_heartbeat_postpones_the_warning_and_a_revocation_loses_the_lease() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("kept").await;
    let mut events = Events::open(&t.alice, &format!("topics=item:{id}"), None).await;
    let (_, claimed) = t
        .alice
        .post("/v1/queues/kept/claim", json!({"lease_seconds": 3}))
        .await;
    let token = claimed["lease"]["token"].as_i64().unwrap();
    assert_eq!(events.expect().await.event, "item.claimed");
    // Keep it alive for a while: 60 s leases warn 10 s before expiry, so
    // no warning comes before the revocation.
    let (status, body) = t
        .alice
        .post(
            &format!("/v1/items/{id}/heartbeat"),
            json!({"token": token, "lease_seconds": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = t
        .supervisor
        .post(&format!("/v1/items/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = events.take(2).await;
    assert_eq!(kinds(&got), ["item.revoked", "lease.lost"]);
    assert_eq!(got[1].data["data"]["cause"], "revoked");
    assert_eq!(got[1].data["data"]["by"], "sup");
    assert_eq!(got[1].data["data"]["holder"], "alice");
    t.stop().await;
}

#[tokio::test]
async fn lock_grants_and_releases_name_holder_and_cause() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let mut events = Events::open(&t.bob, "topics=lock:customer/42", None).await;
    let (status, lock) = t
        .alice
        .post(
            "/v1/locks",
            json!({"resources": ["customer/42"], "ttl_seconds": 30, "session": "tab-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lock}");
    let lock_id = lock["id"].as_i64().unwrap();
    // Bob waits for it; alice releases; bob is granted.
    let bob = t.bob.clone();
    let waiting = tokio::spawn(async move {
        bob.post(
            "/v1/locks",
            json!({"resources": ["customer/42"], "ttl_seconds": 30, "wait_seconds": 20}),
        )
        .await
    });
    let granted = events.expect().await;
    assert_eq!(granted.event, "lock.granted");
    assert_eq!(granted.data["data"]["holder"], "alice");
    assert_eq!(granted.data["data"]["lock_id"], lock_id);
    assert_eq!(granted.data["data"]["session"], "tab-1");
    assert_eq!(granted.data["data"]["mode"], "exclusive");
    assert_eq!(granted.data["data"]["resources"], json!(["customer/42"]));
    assert!(granted.data["data"]["expires_at"].is_string());
    // Give bob's request time to queue (it is granted either way).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = t
        .alice
        .call(Method::DELETE, &format!("/v1/locks/{lock_id}"), None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let (status, bob_lock) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{bob_lock}");
    let got = events.take(2).await;
    assert_eq!(kinds(&got), ["lock.released", "lock.granted"]);
    assert_eq!(got[0].data["data"]["cause"], "released");
    assert_eq!(got[0].data["data"]["holder"], "alice");
    assert_eq!(got[1].data["data"]["holder"], "bob");
    assert_eq!(got[1].data["data"]["lock_id"], bob_lock["id"]);
    // A forced release says so, with who and why.
    let a = t
        .supervisor
        .call(
            Method::DELETE,
            &format!("/v1/locks/{}?force=true&reason=stuck", bob_lock["id"]),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let forced = events.expect().await;
    assert_eq!(forced.event, "lock.released");
    assert_eq!(forced.data["data"]["cause"], "forced");
    assert_eq!(forced.data["data"]["by"], "sup");
    assert_eq!(forced.data["data"]["reason"], "stuck");
    t.stop().await;
}

#[tokio::test]
async fn refusals_are_problems() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    t.anonymous
        .call(Method::GET, "/v1/events?topics=queues", None)
        .await
        .assert_problem(401, "unauthorized");
    for query in [
        "",
        "topics=",
        "topics=weather",
        "topics=queue:a%20b",
        "topics=item:0",
        "topics=queues,,locks",
        "topics=queues&last_event_id=x",
    ] {
        let a = t
            .alice
            .call(Method::GET, &format!("/v1/events?{query}"), None)
            .await;
        let body = a.assert_problem(422, "invalid");
        assert!(
            body["detail"].as_str().unwrap().contains("topics")
                || body["detail"].as_str().unwrap().contains("last_event_id"),
            "{query}: {body}"
        );
    }
    let many: Vec<String> = (1..=33).map(|i| format!("item:{i}")).collect();
    t.alice
        .call(
            Method::GET,
            &format!("/v1/events?topics={}", many.join(",")),
            None,
        )
        .await
        .assert_problem(422, "invalid");
    let a = t
        .alice
        .send(
            t.alice
                .request(Method::GET, "/v1/events?topics=queues")
                .header("last-event-id", "yesterday"),
        )
        .await;
    a.assert_problem(422, "invalid");
    // 32 topics are fine.
    let ok: Vec<String> = (1..=32).map(|i| format!("item:{i}")).collect();
    let resp = t
        .alice
        .request(Method::GET, &format!("/v1/events?topics={}", ok.join(",")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    t.stop().await;
}

#[tokio::test]
async fn the_stream_ends_when_the_server_shuts_down() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let mut events = Events::open(&t.alice, "topics=queues", None).await;
    t.enqueue("last").await;
    assert_eq!(events.expect().await.event, "item.enqueued");
    let shutdown = t.shutdown.clone();
    let stopping = tokio::spawn(t.stop());
    shutdown.cancel();
    assert!(events.next().await.is_none(), "the stream ends");
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("the server stops although a stream was open")
        .unwrap();
}
