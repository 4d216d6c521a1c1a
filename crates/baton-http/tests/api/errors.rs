//! Every error status the API produces, each as a problem document, and
//! refused mutating requests shown to change nothing.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Api, TestApp};

#[tokio::test]
async fn no_or_unknown_token_is_401_with_a_bearer_challenge() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = t.anonymous.call(Method::GET, "/v1/me", None).await;
    a.assert_problem(401, "unauthorized");
    assert!(
        a.header("www-authenticate").starts_with("Bearer"),
        "{:?}",
        a.headers
    );

    let stranger = Api::new(&t.url, Some("baton_not-a-real-token"));
    let a = stranger.call(Method::GET, "/v1/queues", None).await;
    a.assert_problem(401, "unauthorized");
    assert!(a.header("www-authenticate").contains("invalid_token"));

    // A wrong scheme is no token either.
    let a = t
        .anonymous
        .send(
            t.anonymous
                .request(Method::GET, "/v1/me")
                .header("authorization", "Basic YWxpY2U6eA=="),
        )
        .await;
    a.assert_problem(401, "unauthorized");

    // Authentication comes before the body: nothing is enqueued.
    let a = t
        .anonymous
        .call(
            Method::POST,
            "/v1/queues/q/items",
            Some(json!({"kind": "task"})),
        )
        .await;
    a.assert_problem(401, "unauthorized");
    let (_, stats) = t.supervisor.get("/v1/queues").await;
    assert_eq!(stats, json!([]));
    t.stop().await;
}

#[tokio::test]
async fn a_role_that_does_not_allow_the_action_is_403_and_changes_nothing() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("q").await;
    let before = t.snapshot(id).await;

    // Operators do not enqueue, apps do not claim.
    let (status, body) = t
        .alice
        .post("/v1/queues/q/items", json!({"kind": "task"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["type"], "urn:baton:problem:forbidden");
    t.app
        .call(Method::POST, "/v1/queues/q/claim", Some(json!({})))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        t.snapshot(id).await,
        before,
        "the refused claim changed nothing"
    );

    // Only supervisors revoke, requeue and change settings; only admins
    // manage principals.
    t.alice.claim("q", json!({})).await.expect("claimed");
    let leased = t.snapshot(id).await;
    t.alice
        .call(Method::POST, &format!("/v1/items/{id}/revoke"), None)
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        t.snapshot(id).await,
        leased,
        "the refused revoke changed nothing"
    );
    t.alice
        .call(
            Method::PUT,
            "/v1/queues/q/config",
            Some(json!({"max_attempts": 1})),
        )
        .await
        .assert_problem(403, "forbidden");
    let (_, config) = t.alice.get("/v1/queues/q/config").await;
    assert_eq!(config["max_attempts"], 5);
    t.supervisor
        .call(Method::GET, "/v1/principals", None)
        .await
        .assert_problem(403, "forbidden");
    t.alice
        .call(
            Method::POST,
            "/v1/principals",
            Some(json!({"name": "mallory", "role": "admin"})),
        )
        .await
        .assert_problem(403, "forbidden");
    let (_, principals) = t.admin.get("/v1/principals").await;
    assert!(
        !principals
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "mallory")
    );
    t.stop().await;
}

#[tokio::test]
async fn acting_on_someone_elses_lease_is_403_not_holder_and_changes_nothing() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("q").await;
    let (_, token) = t.alice.claim("q", json!({})).await.expect("claimed");
    let before = t.snapshot(id).await;
    for (path, body) in [
        ("complete", json!({"token": token, "outcome": "accepted"})),
        ("heartbeat", json!({"token": token, "lease_seconds": 60})),
        ("release", json!({"token": token})),
    ] {
        let a = t
            .bob
            .call(Method::POST, &format!("/v1/items/{id}/{path}"), Some(body))
            .await;
        let p = a.assert_problem(403, "not-holder");
        assert_eq!(p["holder"], "alice");
        assert_eq!(p["item"], id);
    }
    assert_eq!(t.snapshot(id).await, before, "refusals changed nothing");
    t.stop().await;
}

#[tokio::test]
async fn a_stale_token_is_409_and_changes_nothing() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("q").await;
    let (_, old) = t.alice.claim("q", json!({})).await.expect("claimed");
    // A supervisor takes the lease away; bob claims the item again.
    let (status, _) = t
        .supervisor
        .post(&format!("/v1/items/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, new) = t.bob.claim("q", json!({})).await.expect("claimed again");
    assert!(new > old);
    let before = t.snapshot(id).await;
    for (path, body) in [
        ("complete", json!({"token": old, "outcome": "accepted"})),
        ("heartbeat", json!({"token": old})),
        ("release", json!({"token": old, "delay_seconds": 10})),
    ] {
        let a = t
            .alice
            .call(Method::POST, &format!("/v1/items/{id}/{path}"), Some(body))
            .await;
        let p = a.assert_problem(409, "stale-token");
        assert_eq!(
            (
                p["item"].as_i64(),
                p["presented"].as_i64(),
                p["current"].as_i64()
            ),
            (Some(id), Some(old), Some(new))
        );
    }
    // A token never issued is stale too.
    t.bob
        .call(
            Method::POST,
            &format!("/v1/items/{id}/complete"),
            Some(json!({"token": new + 5, "outcome": "accepted"})),
        )
        .await
        .assert_problem(409, "stale-token");
    assert_eq!(t.snapshot(id).await, before, "refusals changed nothing");

    // After completion the holder's own token is stale as well.
    let (status, _) = t
        .bob
        .post(
            &format!("/v1/items/{id}/complete"),
            json!({"token": new, "outcome": "accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = t.snapshot(id).await;
    t.bob
        .call(
            Method::POST,
            &format!("/v1/items/{id}/complete"),
            Some(json!({"token": new, "outcome": "rejected"})),
        )
        .await
        .assert_problem(409, "stale-token");
    assert_eq!(t.snapshot(id).await, done);
    t.stop().await;
}

#[tokio::test]
async fn wrong_state_and_already_exists_are_409() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("q").await;
    let before = t.snapshot(id).await;
    let p = t
        .supervisor
        .call(Method::POST, &format!("/v1/items/{id}/requeue"), None)
        .await;
    let p = p.assert_problem(409, "wrong-state");
    assert_eq!(
        (p["item"].as_i64(), p["state"].as_str()),
        (Some(id), Some("ready"))
    );
    t.supervisor
        .call(
            Method::POST,
            &format!("/v1/items/{id}/revoke"),
            Some(json!({})),
        )
        .await
        .assert_problem(409, "wrong-state");
    assert_eq!(t.snapshot(id).await, before);

    t.admin
        .call(
            Method::POST,
            "/v1/principals",
            Some(json!({"name": "alice", "role": "app"})),
        )
        .await
        .assert_problem(409, "already-exists");
    let (_, me) = t.alice.get("/v1/me").await;
    assert_eq!(me["role"], "operator", "alice is unchanged");
    t.stop().await;
}

#[tokio::test]
async fn unknown_things_are_404() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for path in ["/v1/items/424242", "/v1/items/424242/history"] {
        t.supervisor
            .call(Method::GET, path, None)
            .await
            .assert_problem(404, "not-found");
    }
    t.alice
        .call(
            Method::POST,
            "/v1/items/424242/complete",
            Some(json!({"token": 1, "outcome": "accepted"})),
        )
        .await
        .assert_problem(404, "not-found");
    for path in [
        "/v1/nope",
        "/v2/queues",
        "/no/such/page",
        "/v1/items/1/explode",
    ] {
        t.supervisor
            .call(Method::GET, path, None)
            .await
            .assert_problem(404, "unknown-route");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_method_the_route_does_not_have_is_405_with_allow() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = t.supervisor.call(Method::DELETE, "/v1/items/1", None).await;
    a.assert_problem(405, "method-not-allowed");
    assert!(a.header("allow").contains("GET"), "{:?}", a.headers);
    let a = t
        .supervisor
        .call(Method::GET, "/v1/queues/q/claim", None)
        .await;
    a.assert_problem(405, "method-not-allowed");
    assert!(a.header("allow").contains("POST"));
    t.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("q").await;
    let (_, token) = t.alice.claim("q", json!({})).await.expect("claimed");
    let before = t.snapshot(id).await;
    for raw in ["{", "{\"token\": 1,}", "not json", "{\"token\":1} trailing"] {
        let a = t
            .alice
            .send(
                t.alice
                    .request(Method::POST, &format!("/v1/items/{id}/complete"))
                    .header(CONTENT_TYPE, "application/json")
                    .body(raw),
            )
            .await;
        a.assert_problem(400, "malformed-request");
    }
    assert_eq!(t.snapshot(id).await, before);
    // Bad path and query parameters.
    t.alice
        .call(Method::GET, "/v1/items/abc", None)
        .await
        .assert_problem(400, "malformed-request");
    t.alice
        .call(
            Method::POST,
            "/v1/items/1.5/heartbeat",
            Some(json!({"token": token})),
        )
        .await
        .assert_problem(400, "malformed-request");
    t.alice
        .call(Method::GET, "/v1/queues/q/items?limit=many", None)
        .await
        .assert_problem(400, "malformed-request");
    t.alice
        .call(Method::GET, "/v1/queues/q/items?after=x", None)
        .await
        .assert_problem(400, "malformed-request");
    t.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    // The default limit is 1 MiB.
    let Some(t) = TestApp::start().await else {
        return;
    };
    let big = "x".repeat(1024 * 1024 + 10);
    let a = t
        .app
        .call(
            Method::POST,
            "/v1/queues/q/items",
            Some(json!({"kind": "task", "payload": big})),
        )
        .await;
    a.assert_problem(413, "payload-too-large");
    let (_, stats) = t.supervisor.get("/v1/queues").await;
    assert_eq!(stats, json!([]), "nothing was enqueued");
    t.stop().await;

    // A configured limit.
    let Some(t) = TestApp::start_with(baton_http::HttpSettings {
        body_limit: 64,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let a = t
        .app
        .call(
            Method::POST,
            "/v1/queues/q/items",
            Some(json!({"kind": "task", "payload": "y".repeat(100)})),
        )
        .await;
    a.assert_problem(413, "payload-too-large");
    let (status, _) = t
        .app
        .post("/v1/queues/q/items", json!({"kind": "task"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "a small body still passes");
    t.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = t
        .app
        .send(
            t.app
                .request(Method::POST, "/v1/queues/q/items")
                .header(CONTENT_TYPE, "text/plain")
                .body(r#"{"kind":"task"}"#),
        )
        .await;
    a.assert_problem(415, "unsupported-media-type");
    let a = t
        .app
        .send(
            t.app
                .request(Method::POST, "/v1/queues/q/items")
                .body(r#"{"kind":"task"}"#),
        )
        .await;
    a.assert_problem(415, "unsupported-media-type");
    let (_, stats) = t.supervisor.get("/v1/queues").await;
    assert_eq!(stats, json!([]), "nothing was enqueued");
    t.stop().await;
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field_and_change_nothing() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let id = t.enqueue("q").await;

    // Claims with a lease outside 1..=86400 claim nothing.
    let ready = t.snapshot(id).await;
    for (body, field) in [
        (json!({"lease_seconds": 0}), "lease_seconds"),
        (json!({"lease_seconds": 86401}), "lease_seconds"),
        (json!({"lease_seconds": -1}), "lease_seconds"),
        (json!({"wait_seconds": 61}), "wait_seconds"),
        (json!({"kinds": ["no spaces"]}), "kinds"),
        (json!({"lease_secs": 10}), "lease_secs"),
    ] {
        let a = t
            .alice
            .call(Method::POST, "/v1/queues/q/claim", Some(body.clone()))
            .await;
        assert_eq!(a.assert_problem(422, "invalid")["field"], field, "{body}");
    }
    assert_eq!(t.snapshot(id).await, ready, "no claim happened");

    // An unknown outcome, a bad escalation target, a note too long.
    let (_, token) = t.alice.claim("q", json!({})).await.expect("claimed");
    let leased = t.snapshot(id).await;
    for (body, field) in [
        (json!({"token": token, "outcome": "maybe"}), "outcome"),
        (
            json!({"token": token, "outcome": "escalated", "escalate_to": "no/slash"}),
            "escalate_to",
        ),
        (
            json!({"token": token, "outcome": "accepted", "escalate_to": "other"}),
            "escalate_to",
        ),
        (
            json!({"token": token, "outcome": "accepted", "note": "n".repeat(5000)}),
            "note",
        ),
        (json!({"outcome": "accepted"}), "token"),
        (json!({"token": "one", "outcome": "accepted"}), "token"),
    ] {
        let a = t
            .alice
            .call(
                Method::POST,
                &format!("/v1/items/{id}/complete"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(a.assert_problem(422, "invalid")["field"], field, "{body}");
    }
    for lease_seconds in [0, 86401] {
        let a = t
            .alice
            .call(
                Method::POST,
                &format!("/v1/items/{id}/heartbeat"),
                Some(json!({"token": token, "lease_seconds": lease_seconds})),
            )
            .await;
        assert_eq!(a.assert_problem(422, "invalid")["field"], "lease_seconds");
    }
    assert_eq!(t.snapshot(id).await, leased, "refusals changed nothing");

    // A bad queue name, kind, or state filter.
    let a = t
        .app
        .call(
            Method::POST,
            "/v1/queues/bad%20name/items",
            Some(json!({"kind": "task"})),
        )
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "queue");
    let a = t
        .app
        .call(
            Method::POST,
            "/v1/queues/q/items",
            Some(json!({"kind": "-task"})),
        )
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "kind");
    let a = t
        .supervisor
        .call(Method::GET, "/v1/queues/q/items?state=lost", None)
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "state");
    let a = t
        .supervisor
        .call(Method::GET, "/v1/queues/q/items?limit=0", None)
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "limit");
    let a = t
        .supervisor
        .call(
            Method::PUT,
            "/v1/queues/q/config",
            Some(json!({"max_attempts": 0})),
        )
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "max_attempts");
    let a = t
        .admin
        .call(
            Method::POST,
            "/v1/principals",
            Some(json!({"name": "x", "role": "root"})),
        )
        .await;
    assert_eq!(a.assert_problem(422, "invalid")["field"], "role");
    let (_, stats) = t.supervisor.get("/v1/queues").await;
    assert_eq!(
        stats.as_array().unwrap().len(),
        1,
        "no queue was created: {stats}"
    );
    assert_eq!(stats[0]["config"]["max_attempts"], 5);
    t.stop().await;
}
