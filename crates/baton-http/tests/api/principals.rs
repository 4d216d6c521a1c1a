//! Passwords and tokens over HTTP: who may set a password, its limits,
//! token listing, creation and revocation, and the problems for each
//! refusal (which change nothing).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Api, TestApp};

const PW: &str = "correct horse battery";

#[tokio::test]
async fn passwords_are_set_by_admins_and_by_their_owners_only() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let a = t
        .admin
        .call(
            Method::PUT,
            "/v1/principals/alice/password",
            Some(json!({"password": PW})),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert_eq!(a.body, serde_json::Value::Null);
    let (_, s) = t.engine.login("alice", PW).await.unwrap().expect("login");
    assert_eq!(s.principal.name, "alice");

    // Alice changes her own.
    let a = t
        .alice
        .call(
            Method::PUT,
            "/v1/principals/alice/password",
            Some(json!({"password": "alice's own secret"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert!(t.engine.login("alice", PW).await.unwrap().is_none());

    // Refusals, each a problem, none changing anything.
    let cases = [
        (
            &t.bob,
            "alice",
            json!({"password": "bob's choice"}),
            403,
            "",
        ),
        (
            &t.supervisor,
            "alice",
            json!({"password": "sup's choice"}),
            403,
            "",
        ),
        (
            &t.admin,
            "alice",
            json!({"password": "short"}),
            422,
            "password",
        ),
        (
            &t.admin,
            "alice",
            json!({"password": "x".repeat(1025)}),
            422,
            "password",
        ),
        (&t.admin, "nobody", json!({"password": PW}), 404, ""),
        (
            &t.alice,
            "alice",
            json!({"password": PW, "extra": 1}),
            422,
            "extra",
        ),
        (
            &t.alice,
            "alice",
            json!({"password": 12345678}),
            422,
            "password",
        ),
    ];
    for (api, name, body, status, field) in cases {
        let slug = match status {
            403 => "forbidden",
            404 => "not-found",
            _ => "invalid",
        };
        let a = api
            .call(
                Method::PUT,
                &format!("/v1/principals/{name}/password"),
                Some(body.clone()),
            )
            .await;
        let p = a.assert_problem(status, slug);
        if status == 422 {
            assert_eq!(p["field"], field, "{body}");
        }
        assert!(!a.body.to_string().contains("choice"), "{}", a.body);
    }
    let a = t
        .anonymous
        .call(
            Method::PUT,
            "/v1/principals/alice/password",
            Some(json!({"password": PW})),
        )
        .await;
    a.assert_problem(401, "unauthorized");
    assert!(
        t.engine
            .login("alice", "alice's own secret")
            .await
            .unwrap()
            .is_some(),
        "unchanged by the refusals"
    );
    t.stop().await;
}

#[tokio::test]
async fn tokens_are_listed_created_and_revoked_by_admins() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let (status, listed) = t.admin.get("/v1/principals/alice/tokens").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let (status, created) = t
        .admin
        .post("/v1/principals/alice/tokens", json!(null))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    assert!(created["created_at"].is_string());
    let new = Api::new(&t.url, Some(&token));
    let (status, me) = new.get("/v1/me").await;
    assert_eq!(
        (status, me["name"].as_str()),
        (StatusCode::OK, Some("alice"))
    );

    let (_, listed) = t.admin.get("/v1/principals/alice/tokens").await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], id, "oldest first");
    assert!(!listed.to_string().contains(&token), "never the token");

    // Refusals first: none changes anything.
    let path = format!("/v1/principals/alice/tokens/{id}");
    t.alice
        .call(Method::DELETE, &path, None)
        .await
        .assert_problem(403, "forbidden");
    t.alice
        .call(Method::GET, "/v1/principals/alice/tokens", None)
        .await
        .assert_problem(403, "forbidden");
    t.alice
        .call(Method::POST, "/v1/principals/alice/tokens", None)
        .await
        .assert_problem(403, "forbidden");
    t.admin
        .call(
            Method::DELETE,
            &format!("/v1/principals/bob/tokens/{id}"),
            None,
        )
        .await
        .assert_problem(404, "not-found");
    t.admin
        .call(Method::DELETE, "/v1/principals/alice/tokens/XYZ", None)
        .await
        .assert_problem(422, "invalid");
    t.admin
        .call(Method::GET, "/v1/principals/nobody/tokens", None)
        .await
        .assert_problem(404, "not-found");
    t.admin
        .call(Method::POST, "/v1/principals/nobody/tokens", None)
        .await
        .assert_problem(404, "not-found");
    assert_eq!(new.get("/v1/me").await.0, StatusCode::OK);

    // Revoked: refused at once, though it was just used.
    let a = t.admin.call(Method::DELETE, &path, None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    new.call(Method::GET, "/v1/me", None)
        .await
        .assert_problem(401, "unauthorized");
    t.admin
        .call(Method::DELETE, &path, None)
        .await
        .assert_problem(404, "not-found");
    // Alice's first token still works.
    assert_eq!(t.alice.get("/v1/me").await.0, StatusCode::OK);
    let (_, listed) = t.admin.get("/v1/principals/alice/tokens").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    t.stop().await;
}
