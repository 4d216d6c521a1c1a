//! The lock manager over HTTP: the pessimistic offline lock flow, 423 with
//! the conflicts and `Retry-After`, 410 on an ended lock saying how, forced
//! release (403 without the role, 422 without a reason), fair waiting,
//! idempotent acquisition, status, listing, sessions, upgrade and
//! downgrade, history, limits — every refusal a problem that changed
//! nothing.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Answer, Api, TestApp};

async fn acquire(api: &Api, body: Value) -> Answer {
    api.call(Method::POST, "/v1/locks", Some(body)).await
}

/// What a refused request must leave as it was: the lock, the resources'
/// status and their history.
async fn snapshot(t: &TestApp, id: &Value, resources: &[&str]) -> Value {
    let (_, lock) = t.supervisor.get(&format!("/v1/locks/{id}")).await;
    let (_, status) = t
        .supervisor
        .post("/v1/locks/status", json!({ "resources": resources }))
        .await;
    let mut histories = Vec::new();
    for r in resources {
        let path = format!("/v1/resources/{}/history", r.replace('/', "%2F"));
        histories.push(t.supervisor.get(&path).await.1);
    }
    json!({ "lock": lock, "status": status, "histories": histories })
}

/// Open the form → lock → keep alive from the page → save → release; a
/// second user meanwhile is told who has it until when.
#[tokio::test]
async fn the_pessimistic_offline_lock_flow() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    // Joe (alice) opens customer 42's form.
    let a = acquire(
        &t.alice,
        json!({"resources": ["customer/42"], "mode": "exclusive", "ttl_seconds": 120, "wait_seconds": 0, "session": "tab-1"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let lock = a.body.clone();
    let id = &lock["id"];
    assert_eq!(a.header("location"), format!("/v1/locks/{id}"));
    for field in [
        "id",
        "token",
        "resources",
        "mode",
        "holder",
        "session",
        "expires_at",
    ] {
        assert!(lock.get(field).is_some(), "{field} in {lock}");
    }
    assert_eq!(lock["resources"], json!(["customer/42"]));
    assert_eq!(lock["holder"], "alice");
    assert_eq!(lock["session"], "tab-1");
    assert_eq!(lock["ended"], Value::Null);

    // Fred (bob) opens it too: 423, "locked by alice until ...".
    let b = acquire(
        &t.bob,
        json!({"resources": ["customer/42"], "ttl_seconds": 120}),
    )
    .await;
    let problem = b.assert_problem(423, "locked");
    let conflict = &problem["conflicts"][0];
    assert_eq!(conflict["resource"], "customer/42");
    assert_eq!(conflict["holder"], "alice");
    assert_eq!(conflict["mode"], "exclusive");
    assert_eq!(conflict["expires_at"], lock["expires_at"]);
    assert_eq!(conflict["waiting"], false);
    let retry: u64 = b
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=120).contains(&retry), "{retry}");
    assert!(problem["detail"].as_str().unwrap().contains("alice"));

    // The page keeps the lock alive.
    let hb = t
        .alice
        .call(
            Method::POST,
            &format!("/v1/locks/{id}/heartbeat"),
            Some(json!({"ttl_seconds": 120})),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    assert!(hb.body["expires_at"].as_str() >= lock["expires_at"].as_str());
    // An empty heartbeat keeps the lock's own TTL.
    let hb = t
        .alice
        .send(
            t.alice
                .request(Method::POST, &format!("/v1/locks/{id}/heartbeat")),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    assert_eq!(hb.body["ttl_seconds"], 120);

    // Save (the application writes, checking the token), then release.
    let r = t
        .alice
        .call(Method::DELETE, &format!("/v1/locks/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let (_, ended) = t.alice.get(&format!("/v1/locks/{id}")).await;
    assert_eq!(ended["ended"]["cause"], "released");
    assert_eq!(ended["ended"]["by"], "alice");

    // Now Fred gets it, with a larger fencing token.
    let b = acquire(&t.bob, json!({"resources": ["customer/42"]})).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    assert!(b.body["token"].as_i64() > lock["token"].as_i64());
    t.stop().await;
}

/// Without a heartbeat the lock is gone at its expiry; a heartbeat then is
/// 410, saying it expired; the lock still tells how it ended.
#[tokio::test]
async fn an_expired_lock_is_gone_and_its_heartbeat_is_410() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = acquire(
        &t.alice,
        json!({"resources": ["order/1"], "ttl_seconds": 1}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let id = a.body["id"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, status) = t
        .bob
        .post("/v1/locks/status", json!({"resources": ["order/1"]}))
        .await;
    assert_eq!(status["resources"][0]["locked"], false);
    let before = snapshot(&t, &id, &["order/1"]).await;
    let hb = t
        .alice
        .call(
            Method::POST,
            &format!("/v1/locks/{id}/heartbeat"),
            Some(json!({"ttl_seconds": 60})),
        )
        .await;
    let p = hb.assert_problem(410, "lock-ended");
    assert_eq!(p["lock"], id);
    assert_eq!(p["ended"]["cause"], "expired");
    assert_eq!(p["ended"]["at"], a.body["expires_at"]);
    assert_eq!(snapshot(&t, &id, &["order/1"]).await, before);
    let (_, lock) = t.alice.get(&format!("/v1/locks/{id}")).await;
    assert_eq!(lock["ended"]["cause"], "expired");
    let b = acquire(&t.bob, json!({"resources": ["order/1"]})).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    t.stop().await;
}

/// A forced release needs the supervisor role (403) and a reason (422);
/// it ends the lock for the holder, who learns who and why, and bumps the
/// resource's fencing token.
#[tokio::test]
async fn forced_release_needs_the_role_and_a_reason() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = acquire(&t.alice, json!({"resources": ["customer/42"]})).await;
    let id = a.body["id"].clone();
    let token = a.body["token"].as_i64().unwrap();
    let before = snapshot(&t, &id, &["customer/42"]).await;
    let path = |q: &str| format!("/v1/locks/{id}{q}");
    t.bob
        .call(Method::DELETE, &path("?force=true&reason=mine"), None)
        .await
        .assert_problem(403, "forbidden");
    t.bob
        .call(Method::DELETE, &path(""), None)
        .await
        .assert_problem(403, "not-holder");
    let r = t
        .supervisor
        .call(Method::DELETE, &path("?force=true"), None)
        .await;
    assert_eq!(r.assert_problem(422, "invalid")["field"], "reason");
    let r = t
        .supervisor
        .call(Method::DELETE, &path("?force=true&reason=%20"), None)
        .await;
    assert_eq!(r.assert_problem(422, "invalid")["field"], "reason");
    let r = t
        .alice
        .call(Method::DELETE, &path("?reason=done"), None)
        .await;
    assert_eq!(r.assert_problem(422, "invalid")["field"], "reason");
    t.alice
        .call(Method::DELETE, &path("?force=maybe"), None)
        .await
        .assert_problem(400, "malformed-request");
    assert_eq!(snapshot(&t, &id, &["customer/42"]).await, before);

    let r = t
        .supervisor
        .call(
            Method::DELETE,
            &path("?force=true&reason=Joe%20is%20on%20vacation"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let hb = t
        .alice
        .call(Method::POST, &format!("/v1/locks/{id}/heartbeat"), None)
        .await;
    let p = hb.assert_problem(410, "lock-ended");
    assert_eq!(p["ended"]["cause"], "forced");
    assert_eq!(p["ended"]["by"], "sup");
    assert_eq!(p["ended"]["reason"], "Joe is on vacation");
    let (_, status) = t
        .alice
        .post("/v1/locks/status", json!({"resources": ["customer/42"]}))
        .await;
    assert!(status["resources"][0]["token"].as_i64().unwrap() > token);
    let (_, history) = t
        .supervisor
        .get("/v1/resources/customer%2F42/history")
        .await;
    let last = history["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "forced");
    assert_eq!(last["actor"], "sup");
    assert_eq!(last["detail"]["reason"], "Joe is on vacation");
    // Only supervisors read history.
    t.alice
        .call(Method::GET, "/v1/resources/customer%2F42/history", None)
        .await
        .assert_problem(403, "forbidden");
    // A second forced release: the lock has ended already.
    t.supervisor
        .call(Method::DELETE, &path("?force=true&reason=again"), None)
        .await
        .assert_problem(410, "lock-ended");
    t.stop().await;
}

/// An acquire with `wait_seconds` is granted when the holder releases —
/// within the wait (the time it took is printed, not asserted).
#[tokio::test]
async fn a_waiting_acquire_is_granted_when_the_holder_releases() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = acquire(&t.alice, json!({"resources": ["doc/1"]})).await;
    let id = a.body["id"].clone();
    let bob = t.bob.clone();
    let waiting = tokio::spawn(async move {
        let a = acquire(&bob, json!({"resources": ["doc/1"], "wait_seconds": 5})).await;
        (a, Instant::now())
    });
    // Until the request is queued.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, s) = t
            .alice
            .post("/v1/locks/status", json!({"resources": ["doc/1"]}))
            .await;
        if s["resources"][0]["waiting"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never queued: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = t
        .alice
        .call(Method::DELETE, &format!("/v1/locks/{id}"), None)
        .await;
    let released = Instant::now();
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (a, granted) = waiting.await.unwrap();
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "granted before the wait ran out: {}",
        a.body
    );
    eprintln!(
        "waiting acquire granted {:?} after the release",
        granted.saturating_duration_since(released)
    );
    t.stop().await;
}

/// A retried acquire with the same `Idempotency-Key` gets the same lock
/// (200), never a second grant.
#[tokio::test]
async fn a_retried_acquire_with_the_same_key_gets_the_same_lock() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let send = |key: &'static str| {
        let api = t.alice.clone();
        async move {
            api.send(
                api.request(Method::POST, "/v1/locks")
                    .header("Idempotency-Key", key)
                    .json(&json!({"resources": ["customer/7"]})),
            )
            .await
        }
    };
    let first = send("save-7").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = send("save-7").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body, first.body);
    send("other").await.assert_problem(423, "locked");
    let (_, history) = t.supervisor.get("/v1/resources/customer%2F7/history").await;
    assert_eq!(history["events"].as_array().unwrap().len(), 1);
    t.stop().await;
}

/// Status of up to 500 resources, listings by resource, holder and
/// session, logout by session, upgrade and downgrade.
#[tokio::test]
async fn status_listing_sessions_upgrade_and_downgrade() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = acquire(
        &t.alice,
        json!({"resources": ["c/1", "c/2"], "mode": "shared", "session": "tab-1"}),
    )
    .await;
    let b = acquire(&t.bob, json!({"resources": ["c/2"], "mode": "shared"})).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let names: Vec<String> = (0..500).map(|i| format!("c/{i}")).collect();
    let (s, status) = t
        .app
        .post("/v1/locks/status", json!({ "resources": names }))
        .await;
    assert_eq!(s, StatusCode::OK);
    let rs = status["resources"].as_array().unwrap();
    assert_eq!(rs.len(), 500);
    assert_eq!(rs[1]["locked"], true);
    assert_eq!(rs[1]["mode"], "shared");
    assert_eq!(rs[2]["holders"].as_array().unwrap().len(), 2);
    assert_eq!(rs[2]["holders"][0]["holder"], "alice");
    assert_eq!(rs[3]["locked"], false);
    let mut too_many = names.clone();
    too_many.push("c/500".into());
    let r = t
        .app
        .call(
            Method::POST,
            "/v1/locks/status",
            Some(json!({ "resources": too_many })),
        )
        .await;
    assert_eq!(r.assert_problem(422, "invalid")["field"], "resources");

    let ids = |v: &Value| -> Vec<i64> {
        v["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect()
    };
    let (aid, bid) = (
        a.body["id"].as_i64().unwrap(),
        b.body["id"].as_i64().unwrap(),
    );
    assert_eq!(
        ids(&t.bob.get("/v1/locks?resource=c%2F2").await.1),
        [aid, bid]
    );
    assert_eq!(ids(&t.bob.get("/v1/locks?holder=bob").await.1), [bid]);
    assert_eq!(ids(&t.bob.get("/v1/locks?session=tab-1").await.1), [aid]);
    let (_, page) = t.bob.get("/v1/locks?limit=1").await;
    assert_eq!(ids(&page), [aid]);
    assert_eq!(page["next_after"], aid);
    t.bob
        .call(Method::GET, "/v1/locks?limit=0", None)
        .await
        .assert_problem(422, "invalid");

    // Alice cannot upgrade while Bob shares c/2; after he leaves she can.
    let up = t
        .alice
        .call(Method::POST, &format!("/v1/locks/{aid}/upgrade"), None)
        .await;
    let p = up.assert_problem(423, "locked");
    assert_eq!(p["conflicts"][0]["holder"], "bob");
    assert!(!up.header("retry-after").is_empty());
    let r = t
        .bob
        .call(Method::DELETE, &format!("/v1/locks/{bid}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let up = t
        .alice
        .call(
            Method::POST,
            &format!("/v1/locks/{aid}/upgrade"),
            Some(json!({})),
        )
        .await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
    assert_eq!(up.body["mode"], "exclusive");
    assert!(up.body["token"].as_i64() > a.body["token"].as_i64());
    let down = t
        .alice
        .call(Method::POST, &format!("/v1/locks/{aid}/downgrade"), None)
        .await;
    assert_eq!(down.body["mode"], "shared");
    assert_eq!(down.body["token"], up.body["token"]);

    // Logout releases the session's locks.
    let out = t
        .alice
        .call(Method::DELETE, "/v1/sessions/tab-1/locks", None)
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(out.body["released"][0]["id"], aid);
    assert_eq!(out.body["released"][0]["ended"]["cause"], "released");
    let (_, left) = t.bob.get("/v1/locks").await;
    assert_eq!(ids(&left), Vec::<i64>::new());
    t.stop().await;
}

/// Bad lock requests are 422 naming the field (400 when unreadable), and
/// change nothing.
#[tokio::test]
async fn invalid_lock_requests_name_the_field() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let long = "x".repeat(257);
    let many: Vec<String> = (0..101).map(|i| format!("r{i}")).collect();
    for (body, field) in [
        (json!({"resources": []}), "resources"),
        (json!({"resources": many}), "resources"),
        (json!({"resources": [long]}), "resources"),
        (json!({"resources": ["a\nb"]}), "resources"),
        (json!({"resources": [" padded"]}), "resources"),
        (json!({"resources": ["a"], "ttl_seconds": 0}), "ttl_seconds"),
        (
            json!({"resources": ["a"], "ttl_seconds": 86_401}),
            "ttl_seconds",
        ),
        (
            json!({"resources": ["a"], "wait_seconds": 61}),
            "wait_seconds",
        ),
        (
            json!({"resources": ["a"], "max_hold_seconds": 0}),
            "max_hold_seconds",
        ),
        (json!({"resources": ["a"], "mode": "exclusve"}), "mode"),
        (json!({"resources": ["a"], "session": ""}), "session"),
        (json!({"resources": ["a"], "colour": "red"}), "colour"),
        (json!({"mode": "shared"}), "resources"),
    ] {
        let a = acquire(&t.alice, body.clone()).await;
        assert_eq!(a.assert_problem(422, "invalid")["field"], field, "{body}");
    }
    // Exactly at the limits is fine.
    let ok = acquire(
        &t.alice,
        json!({"resources": ["x".repeat(256)], "ttl_seconds": 86_400, "wait_seconds": 0, "max_hold_seconds": 604_800}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    let (_, listed) = t.alice.get("/v1/locks").await;
    assert_eq!(
        listed["locks"].as_array().unwrap().len(),
        1,
        "nothing else was locked"
    );
    // Unreadable, wrong type, unknown lock, not the holder.
    t.alice
        .send(
            t.alice
                .request(Method::POST, "/v1/locks")
                .header("content-type", "application/json")
                .body("{"),
        )
        .await
        .assert_problem(400, "malformed-request");
    t.alice
        .send(
            t.alice
                .request(Method::POST, "/v1/locks")
                .body("resources=a"),
        )
        .await
        .assert_problem(415, "unsupported-media-type");
    t.alice
        .call(Method::GET, "/v1/locks/999", None)
        .await
        .assert_problem(404, "not-found");
    t.alice
        .call(Method::GET, "/v1/locks/abc", None)
        .await
        .assert_problem(400, "malformed-request");
    let id = ok.body["id"].clone();
    let p = t
        .bob
        .call(Method::POST, &format!("/v1/locks/{id}/heartbeat"), None)
        .await;
    let body = p.assert_problem(403, "not-holder");
    assert_eq!(
        (body["lock"].clone(), body["holder"].clone()),
        (id, json!("alice"))
    );
    t.supervisor
        .call(Method::GET, "/v1/resources/%20x/history", None)
        .await
        .assert_problem(422, "invalid");
    t.stop().await;
}

/// The lock metrics appear on /metrics.
#[tokio::test]
async fn lock_metrics_are_exported() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = acquire(&t.alice, json!({"resources": ["m/1"]})).await;
    acquire(&t.bob, json!({"resources": ["m/1"]})).await;
    let id = a.body["id"].clone();
    t.alice
        .call(Method::DELETE, &format!("/v1/locks/{id}"), None)
        .await;
    t.alice
        .call(Method::POST, &format!("/v1/locks/{id}/heartbeat"), None)
        .await;
    let m = t.anonymous.call(Method::GET, "/metrics", None).await;
    let text = m.body.as_str().unwrap_or_default().to_owned();
    for needle in [
        "baton_lock_grants_total{mode=\"exclusive\"}",
        "baton_lock_conflicts_total",
        "baton_lock_releases_total{cause=\"released\"}",
        "baton_lock_hold_seconds_bucket",
        "baton_lock_stale_refusals_total",
        "baton_lock_requests_waiting",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
    t.stop().await;
}
