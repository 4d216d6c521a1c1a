//! Live events across servers: two `baton serve` processes over one
//! PostgreSQL database. A record write on server A reaches a subscriber of
//! `GET /v1/events` on server B (relayed with `NOTIFY`), once; a
//! subscriber on A gets it once too, not twice. On MariaDB, which cannot
//! relay, a subscriber hears only its own server's events (the documented
//! limit).

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use baton_testkit::databases::{Server as DbServer, TestDatabase};

use crate::harness::Api;

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A minimal reader of server-sent events: `(event, data)` pairs.
struct Events {
    body: Body,
    buf: String,
}

impl Events {
    async fn open(api: &Api, topics: &str) -> Events {
        let resp = api
            .request(Method::GET, &format!("/v1/events?topics={topics}"))
            .send()
            .await
            .expect("subscribe");
        assert_eq!(resp.status(), StatusCode::OK);
        Events {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event within `wait`, or `None`.
    async fn next_within(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v).expect("JSON data"));
                    }
                }
                if let (Some(e), Some(d)) = (event, data) {
                    return Some((e, d));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("UTF-8"));
        }
    }

    async fn expect(&mut self) -> (String, Value) {
        self.next_within(Duration::from_secs(20))
            .await
            .expect("an event within 20 s")
    }
}

async fn create(api: &Api, key: &str, data: Value) {
    let (status, _, body) = api
        .send(
            Method::PUT,
            &format!("/v1/collections/clients/records/{key}"),
            &[("if-none-match", "*")],
            Some(data),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_write_on_one_server_reaches_a_subscriber_on_another() {
    let Some(db) = TestDatabase::create(DbServer::Postgres).await else {
        return;
    };
    let servers = crate::race::servers_on(db.url(), 2);
    let admin_a = servers[0].admin();
    let admin_b = admin_a.on(&servers[1].url);
    let mut on_b = Events::open(&admin_b, "collection:clients").await;
    let mut on_a = Events::open(&admin_a, "collection:clients").await;
    create(&admin_a, "1", json!({"name": "Bob", "city": "Paris"})).await;
    for events in [&mut on_b, &mut on_a] {
        let (kind, e) = events.expect().await;
        assert_eq!(kind, "record.changed");
        assert_eq!(e["data"]["key"], "1");
        assert_eq!(e["data"]["actor"], "admin");
        assert_eq!(e["data"]["version"], 1);
        assert_eq!(e["data"]["changed"], json!(["/city", "/name"]));
        assert_eq!(
            e["topics"],
            json!(["collection:clients", "record:clients/1"])
        );
    }
    // The next event on each is the next write, from B this time: nothing
    // was delivered twice.
    create(&admin_b, "2", json!({"name": "Ann"})).await;
    let mut ids = Vec::new();
    for events in [&mut on_a, &mut on_b] {
        let (kind, e) = events.expect().await;
        assert_eq!(kind, "record.changed");
        assert_eq!(e["data"]["key"], "2", "the second write, not a repeat");
        ids.push(e["id"].as_u64().unwrap());
    }
    for events in [&mut on_a, &mut on_b] {
        assert!(
            events
                .next_within(Duration::from_millis(500))
                .await
                .is_none(),
            "no duplicate"
        );
    }
    // Item events travel too.
    let mut queue_on_a = Events::open(&admin_a, "queue:remote").await;
    let app_b = admin_b.principal("shop", "app").await;
    let id = app_b.enqueue_many("remote", 1).await[0];
    let (kind, e) = queue_on_a.expect().await;
    assert_eq!(kind, "item.enqueued");
    assert_eq!(e["data"]["item_id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_mariadb_a_subscriber_hears_its_own_server_only() {
    let Some(db) = TestDatabase::create(DbServer::MySql).await else {
        return;
    };
    let servers = crate::race::servers_on(db.url(), 2);
    let admin_a = servers[0].admin();
    let admin_b = admin_a.on(&servers[1].url);
    let mut on_b = Events::open(&admin_b, "collection:clients").await;
    create(&admin_a, "1", json!({"name": "Bob"})).await;
    assert!(
        on_b.next_within(Duration::from_secs(2)).await.is_none(),
        "MySQL relays no events between servers"
    );
    create(&admin_b, "2", json!({"name": "Ann"})).await;
    let (kind, e) = on_b.expect().await;
    assert_eq!(kind, "record.changed");
    assert_eq!(e["data"]["key"], "2");
}
