//! Versioned records over HTTP: the seeds' scenarios (Joe and Fred, the
//! two raises) under each conflict policy with their exact final record
//! and history; conditional requests (ETag, If-Match, If-None-Match, 304,
//! 412, 428, 404 before 412); refusals as problems that change nothing;
//! listing, history, versions, conflict objects; and the lost-update race
//! (16 clients × 200 read-modify-write increments).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Answer, Api, TestApp};

const MERGE_PATCH: &str = "application/merge-patch+json";

fn url(collection: &str, key: &str) -> String {
    format!("/v1/collections/{collection}/records/{key}")
}

/// Sends `method path` with headers and an optional JSON body (as
/// `application/json`, or as a merge patch for PATCH).
async fn send(
    api: &Api,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let patch = method == Method::PATCH;
    let mut req = api.request(method, path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(b) = body {
        req = req
            .header(
                "content-type",
                if patch {
                    MERGE_PATCH
                } else {
                    "application/json"
                },
            )
            .body(b.to_string());
    }
    api.send(req).await
}

async fn get(api: &Api, path: &str) -> Answer {
    send(api, Method::GET, path, &[], None).await
}

async fn put(api: &Api, path: &str, if_match: &str, body: Value) -> Answer {
    let header = if if_match == "create" {
        ("if-none-match", "*")
    } else {
        ("if-match", if_match)
    };
    send(api, Method::PUT, path, &[header], Some(body)).await
}

async fn patch(api: &Api, path: &str, if_match: &str, body: Value) -> Answer {
    send(
        api,
        Method::PATCH,
        path,
        &[("if-match", if_match)],
        Some(body),
    )
    .await
}

async fn set_policy(t: &TestApp, collection: &str, policy: &str) {
    let (status, body) = t
        .admin
        .put(
            &format!("/v1/collections/{collection}"),
            json!({"conflict_policy": policy}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["conflict_policy"], policy);
}

fn without(mut v: Value, fields: &[&str]) -> Value {
    if let Some(m) = v.as_object_mut() {
        for f in fields {
            m.remove(*f);
        }
    }
    v
}

/// The record as GET shows it, without its timestamps.
async fn final_record(api: &Api, path: &str) -> (String, Value) {
    let a = get(api, path).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    (
        a.header("etag").to_owned(),
        without(a.body, &["created_at", "updated_at"]),
    )
}

/// Every version of the history, without its time.
async fn history(api: &Api, path: &str) -> Value {
    let a = get(api, &format!("{path}/history")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["next_after"], Value::Null);
    Value::Array(
        a.body["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| {
                assert!(v["at"].is_string(), "{v}");
                without(v.clone(), &["at"])
            })
            .collect(),
    )
}

struct People {
    joe: Api,
    fred: Api,
}

/// Bob's client record as the shop creates it; Joe and Fred both open it.
async fn bob_opened_by_joe_and_fred(t: &TestApp) -> People {
    let joe = t.principal("joe", "operator").await;
    let fred = t.principal("fred", "operator").await;
    let a = put(
        &t.app,
        &url("clients", "bob"),
        "create",
        json!({"name": "Bob", "address": "1 Old Street", "phone": "555-0100"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.header("etag"), "\"1\"");
    assert_eq!(a.header("location"), "/v1/collections/clients/records/bob");
    for p in [&joe, &fred] {
        let a = get(p, &url("clients", "bob")).await;
        assert_eq!((a.status, a.header("etag")), (StatusCode::OK, "\"1\""));
    }
    People { joe, fred }
}

fn created_bob() -> Value {
    json!({"version": 1, "kind": "create", "by": "shop", "deleted": false, "changes": [
        {"path": "/address", "new": "1 Old Street"},
        {"path": "/name", "new": "Bob"},
        {"path": "/phone", "new": "555-0100"},
    ]})
}

/// Joe and Fred under `reject` (the default): Joe's stale save is refused
/// with what Fred changed; his form is kept; he saves again on Fred's
/// version and both changes stand.
#[tokio::test]
async fn joe_and_fred_under_reject() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let People { joe, fred } = bob_opened_by_joe_and_fred(&t).await;
    let bob = url("clients", "bob");
    let a = put(
        &fred,
        &bob,
        "\"1\"",
        json!({"name": "Bob", "address": "2 New Avenue", "phone": "555-0100"}),
    )
    .await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"2\""),
        "{}",
        a.body
    );
    assert_eq!(a.body["kind"], "replace");
    // Joe comes back with his coffee and saves his stale form.
    let joes_form = json!({"name": "Bob", "address": "1 Old Street", "phone": "555-0199"});
    let a = put(&joe, &bob, "\"1\"", joes_form.clone()).await;
    let p = a.assert_problem(412, "precondition-failed");
    assert_eq!(a.header("etag"), "\"2\"");
    assert_eq!(p["record"]["version"], 2);
    assert_eq!(p["record"]["updated_by"], "fred");
    assert_eq!(p["record"]["data"]["address"], "2 New Avenue");
    let changed = p["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{p}");
    assert_eq!(
        without(changed[0].clone(), &["at"]),
        json!({"path": "/address", "old": "1 Old Street", "new": "2 New Avenue", "by": "fred", "version": 2})
    );
    assert!(p["detail"].as_str().unwrap().contains("fred"), "{p}");
    // His typing is kept, for him only.
    let conflict = p["conflict_url"].as_str().unwrap().to_owned();
    assert_eq!(conflict, format!("/v1/conflicts/{}", p["conflict_id"]));
    let kept = get(&joe, &conflict).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.body["body"], joes_form);
    assert_eq!(kept.body["method"], "put");
    assert_eq!(kept.body["refusal"], "precondition_failed");
    assert_eq!(kept.body["base_versions"], json!([1]));
    get(&fred, &conflict).await.assert_problem(404, "not-found");
    // Joe reloads (Fred's address on screen), types his phone again, saves.
    let a = get(&joe, &bob).await;
    assert_eq!(a.header("etag"), "\"2\"");
    let mut form = a.body["data"].clone();
    form["phone"] = json!("555-0199");
    let a = put(&joe, &bob, "\"2\"", form).await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"3\""),
        "{}",
        a.body
    );

    assert_eq!(
        final_record(&fred, &bob).await,
        (
            "\"3\"".to_owned(),
            json!({"collection": "clients", "key": "bob", "version": 3,
                   "data": {"name": "Bob", "address": "2 New Avenue", "phone": "555-0199"},
                   "created_by": "shop", "updated_by": "joe"})
        )
    );
    assert_eq!(
        history(&fred, &bob).await,
        json!([
            created_bob(),
            {"version": 2, "kind": "replace", "by": "fred", "base_version": 1, "deleted": false,
             "changes": [{"path": "/address", "old": "1 Old Street", "new": "2 New Avenue"}]},
            {"version": 3, "kind": "replace", "by": "joe", "base_version": 2, "deleted": false,
             "changes": [{"path": "/phone", "old": "555-0100", "new": "555-0199"}]},
        ])
    );
    t.stop().await;
}

/// Joe and Fred under `merge`: Joe's stale partial update merges with
/// Fred's change of another field; the answer says from which versions.
#[tokio::test]
async fn joe_and_fred_under_merge() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    set_policy(&t, "clients", "merge").await;
    let People { joe, fred } = bob_opened_by_joe_and_fred(&t).await;
    let bob = url("clients", "bob");
    let a = patch(&fred, &bob, "\"1\"", json!({"address": "2 New Avenue"})).await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"2\""),
        "{}",
        a.body
    );
    assert_eq!(a.body["kind"], "patch");
    assert!(a.body.get("merged_from").is_none());
    // A full replace from a stale form is still refused under merge.
    let a = put(
        &joe,
        &bob,
        "\"1\"",
        json!({"name": "Bob", "address": "1 Old Street", "phone": "555-0199"}),
    )
    .await;
    a.assert_problem(412, "precondition-failed");
    // Joe's form sends what he changed, based on the version he read.
    let a = patch(&joe, &bob, "\"1\"", json!({"phone": "555-0199"})).await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"3\""),
        "{}",
        a.body
    );
    assert_eq!(a.body["kind"], "merge");
    assert_eq!(a.body["merged_from"], json!({"base": 1, "current": 2}));
    assert_eq!(
        a.body["data"],
        json!({"name": "Bob", "address": "2 New Avenue", "phone": "555-0199"})
    );

    assert_eq!(
        final_record(&fred, &bob).await,
        (
            "\"3\"".to_owned(),
            json!({"collection": "clients", "key": "bob", "version": 3,
                   "data": {"name": "Bob", "address": "2 New Avenue", "phone": "555-0199"},
                   "created_by": "shop", "updated_by": "joe"})
        )
    );
    assert_eq!(
        history(&fred, &bob).await,
        json!([
            created_bob(),
            {"version": 2, "kind": "patch", "by": "fred", "base_version": 1, "deleted": false,
             "changes": [{"path": "/address", "old": "1 Old Street", "new": "2 New Avenue"}]},
            {"version": 3, "kind": "merge", "by": "joe", "base_version": 1,
             "merged_from": {"base": 1, "current": 2}, "deleted": false,
             "changes": [{"path": "/phone", "old": "555-0100", "new": "555-0199"}]},
        ])
    );
    t.stop().await;
}

/// Joe and Fred under `last_write_wins`: Joe's stale form overwrites
/// Fred's address (recorded as forced), and Fred's version stays readable
/// in the history.
#[tokio::test]
async fn joe_and_fred_under_last_write_wins() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    set_policy(&t, "clients", "last_write_wins").await;
    let People { joe, fred } = bob_opened_by_joe_and_fred(&t).await;
    let bob = url("clients", "bob");
    let a = put(
        &fred,
        &bob,
        "\"1\"",
        json!({"name": "Bob", "address": "2 New Avenue", "phone": "555-0100"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = put(
        &joe,
        &bob,
        "\"1\"",
        json!({"name": "Bob", "address": "1 Old Street", "phone": "555-0199"}),
    )
    .await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"3\""),
        "{}",
        a.body
    );
    assert_eq!(a.body["kind"], "forced");

    assert_eq!(
        final_record(&fred, &bob).await,
        (
            "\"3\"".to_owned(),
            json!({"collection": "clients", "key": "bob", "version": 3,
                   "data": {"name": "Bob", "address": "1 Old Street", "phone": "555-0199"},
                   "created_by": "shop", "updated_by": "joe"})
        )
    );
    assert_eq!(
        history(&fred, &bob).await,
        json!([
            created_bob(),
            {"version": 2, "kind": "replace", "by": "fred", "base_version": 1, "deleted": false,
             "changes": [{"path": "/address", "old": "1 Old Street", "new": "2 New Avenue"}]},
            {"version": 3, "kind": "forced", "by": "joe", "base_version": 1, "deleted": false,
             "changes": [
                {"path": "/address", "old": "2 New Avenue", "new": "1 Old Street"},
                {"path": "/phone", "old": "555-0100", "new": "555-0199"},
             ]},
        ])
    );
    let a = get(&fred, &format!("{bob}/versions/2")).await;
    assert_eq!((a.status, a.header("etag")), (StatusCode::OK, "\"2\""));
    assert_eq!(a.body["data"]["address"], "2 New Avenue");
    t.stop().await;
}

struct Hr {
    local: Api,
    corporate: Api,
}

/// The salary record at Rs. 10,000; both HR managers open it.
async fn salary_opened_by_both(t: &TestApp) -> Hr {
    let local = t.principal("local-hr", "operator").await;
    let corporate = t.principal("corporate-hr", "operator").await;
    let a = put(
        &t.app,
        &url("salaries", "E-1042"),
        "create",
        json!({"employee": "E-1042", "salary": 10000}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    for p in [&local, &corporate] {
        assert_eq!(
            get(p, &url("salaries", "E-1042")).await.header("etag"),
            "\"1\""
        );
    }
    Hr { local, corporate }
}

fn created_salary() -> Value {
    json!({"version": 1, "kind": "create", "by": "shop", "deleted": false, "changes": [
        {"path": "/employee", "new": "E-1042"},
        {"path": "/salary", "new": 10000},
    ]})
}

/// The two raises under `reject`: corporate HR is told the salary went
/// from 10,000 to 12,000 by local HR, re-applies 5 % on 12,000, and the
/// employee gets 12,600 as the seed says is right.
#[tokio::test]
async fn two_raises_under_reject() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let Hr { local, corporate } = salary_opened_by_both(&t).await;
    let e = url("salaries", "E-1042");
    let a = put(
        &local,
        &e,
        "\"1\"",
        json!({"employee": "E-1042", "salary": 12000}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = put(
        &corporate,
        &e,
        "\"1\"",
        json!({"employee": "E-1042", "salary": 10500}),
    )
    .await;
    let p = a.assert_problem(412, "precondition-failed");
    let changed = p["changed"].as_array().unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|c| without(c.clone(), &["at"]))
            .collect::<Vec<_>>(),
        vec![
            json!({"path": "/salary", "old": 10000, "new": 12000, "by": "local-hr", "version": 2})
        ]
    );
    let current = p["record"]["data"]["salary"].as_i64().unwrap();
    let a = put(
        &corporate,
        &e,
        a.header("etag"),
        json!({"employee": "E-1042", "salary": current * 105 / 100}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    assert_eq!(
        final_record(&local, &e).await,
        (
            "\"3\"".to_owned(),
            json!({"collection": "salaries", "key": "E-1042", "version": 3,
                   "data": {"employee": "E-1042", "salary": 12600},
                   "created_by": "shop", "updated_by": "corporate-hr"})
        )
    );
    assert_eq!(
        history(&local, &e).await,
        json!([
            created_salary(),
            {"version": 2, "kind": "replace", "by": "local-hr", "base_version": 1, "deleted": false,
             "changes": [{"path": "/salary", "old": 10000, "new": 12000}]},
            {"version": 3, "kind": "replace", "by": "corporate-hr", "base_version": 2, "deleted": false,
             "changes": [{"path": "/salary", "old": 12000, "new": 12600}]},
        ])
    );
    t.stop().await;
}

/// The two raises under `merge`: the same field changed on both sides is
/// a 409 naming it with base, yours, theirs and who; the note that did
/// merge is listed apart; the refused patch is kept for its author only.
#[tokio::test]
async fn two_raises_under_merge() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    set_policy(&t, "salaries", "merge").await;
    let Hr { local, corporate } = salary_opened_by_both(&t).await;
    let e = url("salaries", "E-1042");
    let a = patch(&local, &e, "\"1\"", json!({"salary": 12000})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let hers = json!({"salary": 10500, "note": "company performance 5%"});
    let a = patch(&corporate, &e, "\"1\"", hers.clone()).await;
    let p = a.assert_problem(409, "merge-conflict").clone();
    assert_eq!(a.header("etag"), "\"2\"");
    assert_eq!(p["base_version"], 1);
    assert_eq!(p["record"]["version"], 2);
    let conflicts = p["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        without(conflicts[0].clone(), &["at"]),
        json!({"path": "/salary", "base": 10000, "yours": 10500, "theirs": 12000, "by": "local-hr", "version": 2})
    );
    assert!(conflicts[0]["at"].is_string());
    assert_eq!(
        p["merged"],
        json!([{"path": "/note", "new": "company performance 5%"}])
    );
    let conflict = p["conflict_url"].as_str().unwrap();
    let kept = get(&corporate, conflict).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.body["body"], hers);
    assert_eq!(kept.body["method"], "patch");
    assert_eq!(kept.body["refusal"], "merge_conflict");
    assert_eq!(kept.body["conflicts"], p["conflicts"]);
    get(&local, conflict).await.assert_problem(404, "not-found");
    // She decides: 5 % on top of the new salary, on the version she now
    // knows.
    let a = patch(
        &corporate,
        &e,
        "\"2\"",
        json!({"salary": 12600, "note": "company performance 5%"}),
    )
    .await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"3\""),
        "{}",
        a.body
    );

    assert_eq!(
        final_record(&local, &e).await,
        (
            "\"3\"".to_owned(),
            json!({"collection": "salaries", "key": "E-1042", "version": 3,
                   "data": {"employee": "E-1042", "salary": 12600, "note": "company performance 5%"},
                   "created_by": "shop", "updated_by": "corporate-hr"})
        )
    );
    assert_eq!(
        history(&local, &e).await,
        json!([
            created_salary(),
            {"version": 2, "kind": "patch", "by": "local-hr", "base_version": 1, "deleted": false,
             "changes": [{"path": "/salary", "old": 10000, "new": 12000}]},
            {"version": 3, "kind": "patch", "by": "corporate-hr", "base_version": 2, "deleted": false,
             "changes": [
                {"path": "/note", "new": "company performance 5%"},
                {"path": "/salary", "old": 12000, "new": 12600},
             ]},
        ])
    );
    t.stop().await;
}

/// The two raises under `last_write_wins`: the second overwrites the
/// first (forced), and the history still shows the 12,000.
#[tokio::test]
async fn two_raises_under_last_write_wins() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    set_policy(&t, "salaries", "last_write_wins").await;
    let Hr { local, corporate } = salary_opened_by_both(&t).await;
    let e = url("salaries", "E-1042");
    let a = put(
        &local,
        &e,
        "\"1\"",
        json!({"employee": "E-1042", "salary": 12000}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = put(
        &corporate,
        &e,
        "\"1\"",
        json!({"employee": "E-1042", "salary": 10500}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["kind"], "forced");

    assert_eq!(
        final_record(&local, &e).await,
        (
            "\"3\"".to_owned(),
            json!({"collection": "salaries", "key": "E-1042", "version": 3,
                   "data": {"employee": "E-1042", "salary": 10500},
                   "created_by": "shop", "updated_by": "corporate-hr"})
        )
    );
    assert_eq!(
        history(&local, &e).await,
        json!([
            created_salary(),
            {"version": 2, "kind": "replace", "by": "local-hr", "base_version": 1, "deleted": false,
             "changes": [{"path": "/salary", "old": 10000, "new": 12000}]},
            {"version": 3, "kind": "forced", "by": "corporate-hr", "base_version": 1, "deleted": false,
             "changes": [{"path": "/salary", "old": 12000, "new": 10500}]},
        ])
    );
    t.stop().await;
}

/// GET answers the version as a strong ETag; If-None-Match (weak
/// comparison, lists, *) gives 304; If-Match on a read is compared
/// strongly.
#[tokio::test]
async fn conditional_reads() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let r = url("docs", "d1");
    put(&t.app, &r, "create", json!({"title": "one"})).await;
    put(&t.app, &r, "\"1\"", json!({"title": "two"})).await;
    let a = get(&t.alice, &r).await;
    assert_eq!((a.status, a.header("etag")), (StatusCode::OK, "\"2\""));
    assert_eq!(a.body["data"], json!({"title": "two"}));
    for (inm, status) in [
        ("\"2\"", StatusCode::NOT_MODIFIED),
        ("W/\"2\"", StatusCode::NOT_MODIFIED),
        ("\"1\", \"2\"", StatusCode::NOT_MODIFIED),
        ("*", StatusCode::NOT_MODIFIED),
        ("\"1\"", StatusCode::OK),
    ] {
        let a = send(&t.alice, Method::GET, &r, &[("if-none-match", inm)], None).await;
        assert_eq!(a.status, status, "If-None-Match: {inm}");
        assert_eq!(a.header("etag"), "\"2\"");
        if status == StatusCode::NOT_MODIFIED {
            assert_eq!(a.body, Value::Null, "304 has no body");
        }
    }
    let a = send(&t.alice, Method::GET, &r, &[("if-match", "\"1\"")], None).await;
    assert_eq!(
        a.assert_problem(412, "precondition-failed")["record"]["version"],
        2
    );
    let a = send(&t.alice, Method::GET, &r, &[("if-match", "\"2\"")], None).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(&t.alice, Method::GET, &r, &[("if-match", "W/\"2\"")], None).await;
    a.assert_problem(400, "malformed-request");
    // 404 before any precondition.
    let a = send(
        &t.alice,
        Method::GET,
        &url("docs", "nope"),
        &[("if-match", "\"1\"")],
        None,
    )
    .await;
    a.assert_problem(404, "not-found");
    t.stop().await;
}

/// The records of a snapshot: the record (or its 404) and its history.
async fn snapshot(api: &Api, path: &str) -> (Value, Value) {
    let r = get(api, path).await;
    let h = get(api, &format!("{path}/history")).await;
    (
        json!({"status": r.status.as_u16(), "etag": r.header("etag"), "body": r.body}),
        h.body,
    )
}

/// A request expected to be refused: method, headers, body, status, slug.
type RefusedCase = (
    Method,
    Vec<(&'static str, &'static str)>,
    Option<Value>,
    u16,
    &'static str,
);

/// Every refusal of a write is a problem document and changes nothing.
#[tokio::test]
async fn refused_writes_are_problems_and_change_nothing() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let r = url("clients", "bob");
    let a = put(&t.app, &r, "create", json!({"name": "Bob"})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let before = snapshot(&t.app, &r).await;
    let cases: Vec<RefusedCase> = vec![
        // No precondition under reject.
        (
            Method::PUT,
            vec![],
            Some(json!({"a": 1})),
            428,
            "precondition-required",
        ),
        (
            Method::PATCH,
            vec![],
            Some(json!({"a": 1})),
            428,
            "precondition-required",
        ),
        (Method::DELETE, vec![], None, 428, "precondition-required"),
        // Stale, and create on an existing record.
        (
            Method::PUT,
            vec![("if-match", "\"7\"")],
            Some(json!({"a": 1})),
            412,
            "precondition-failed",
        ),
        (
            Method::DELETE,
            vec![("if-match", "\"7\"")],
            None,
            412,
            "precondition-failed",
        ),
        (
            Method::PUT,
            vec![("if-none-match", "*")],
            Some(json!({"a": 1})),
            412,
            "precondition-failed",
        ),
        // Weak or malformed tags, contradictory or unsupported headers.
        (
            Method::PUT,
            vec![("if-match", "W/\"1\"")],
            Some(json!({"a": 1})),
            400,
            "malformed-request",
        ),
        (
            Method::PUT,
            vec![("if-match", "1")],
            Some(json!({"a": 1})),
            400,
            "malformed-request",
        ),
        (
            Method::PUT,
            vec![("if-match", "\"abc\"")],
            Some(json!({"a": 1})),
            400,
            "malformed-request",
        ),
        (
            Method::PUT,
            vec![("if-match", "\"1\""), ("if-none-match", "*")],
            Some(json!({"a": 1})),
            400,
            "malformed-request",
        ),
        (
            Method::PUT,
            vec![("if-none-match", "\"1\"")],
            Some(json!({"a": 1})),
            400,
            "malformed-request",
        ),
        (
            Method::PATCH,
            vec![("if-none-match", "*")],
            Some(json!({"a": 1})),
            422,
            "invalid",
        ),
        (
            Method::PUT,
            vec![("if-match", "\"1\""), ("baton-lock", "x")],
            Some(json!({"a": 1})),
            400,
            "malformed-request",
        ),
        // Bodies: not an object, not JSON.
        (
            Method::PUT,
            vec![("if-match", "\"1\"")],
            Some(json!([1, 2])),
            422,
            "invalid",
        ),
        (
            Method::PATCH,
            vec![("if-match", "\"1\"")],
            Some(json!("x")),
            422,
            "invalid",
        ),
        (
            Method::PUT,
            vec![("if-match", "\"1\"")],
            Some(json!({"big": "x".repeat(70_000)})),
            422,
            "invalid",
        ),
    ];
    for (method, headers, body, status, slug) in cases {
        let a = send(&t.app, method.clone(), &r, &headers, body).await;
        a.assert_problem(status, slug);
        assert_eq!(
            snapshot(&t.app, &r).await,
            before,
            "{method} {headers:?} changed something"
        );
    }
    // A PATCH must be a merge patch.
    let a = send(
        &t.app,
        Method::PATCH,
        &r,
        &[("if-match", "\"1\""), ("content-type", "application/json")],
        None,
    )
    .await;
    a.assert_problem(415, "unsupported-media-type");
    let a = t
        .app
        .send(
            t.app
                .request(Method::PATCH, &r)
                .header("if-match", "\"1\"")
                .header("content-type", "application/json")
                .body("{\"a\":1}"),
        )
        .await;
    assert!(
        a.assert_problem(415, "unsupported-media-type")["detail"]
            .as_str()
            .unwrap()
            .contains("merge-patch")
    );
    // Not valid JSON at all.
    let a = t
        .app
        .send(
            t.app
                .request(Method::PUT, &r)
                .header("if-match", "\"1\"")
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    a.assert_problem(400, "malformed-request");
    // Over the request body limit.
    let a = put(&t.app, &r, "\"1\"", json!({"big": "x".repeat(1_100_000)})).await;
    a.assert_problem(413, "payload-too-large");
    // Bad names.
    let a = put(&t.app, &url("clients", "bob%20smith"), "create", json!({})).await;
    a.assert_problem(422, "invalid");
    assert_eq!(snapshot(&t.app, &r).await, before);

    // A missing record is 404 before any precondition: never 412.
    let missing = url("clients", "nobody");
    for (method, headers, body) in [
        (
            Method::PUT,
            vec![("if-match", "\"1\"")],
            Some(json!({"a": 1})),
        ),
        (
            Method::PATCH,
            vec![("if-match", "\"1\"")],
            Some(json!({"a": 1})),
        ),
        (
            Method::PATCH,
            vec![("if-match", "*")],
            Some(json!({"a": 1})),
        ),
        (Method::DELETE, vec![("if-match", "\"3\"")], None),
    ] {
        send(&t.app, method, &missing, &headers, body)
            .await
            .assert_problem(404, "not-found");
    }
    get(&t.app, &format!("{missing}/history"))
        .await
        .assert_problem(404, "not-found");
    get(&t.app, &format!("{r}/versions/9"))
        .await
        .assert_problem(404, "not-found");

    // Settings: admin only, validated.
    let (s, b) = t
        .supervisor
        .put(
            "/v1/collections/clients",
            json!({"conflict_policy": "merge"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = t
        .admin
        .put(
            "/v1/collections/clients",
            json!({"conflict_policy": "first_wins"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["field"], "conflict_policy");
    let (s, b) = t.alice.get("/v1/collections/clients").await;
    assert_eq!(
        (s, b),
        (
            StatusCode::OK,
            json!({"conflict_policy": "reject", "lock_policy": "none"})
        )
    );
    t.stop().await;
}

/// Listing by key in pages, history in pages, a version read back,
/// delete (204, a tombstone in history) and create again.
#[tokio::test]
async fn listing_history_versions_and_delete() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    for k in ["c", "a", "b"] {
        put(&t.app, &url("notes", k), "create", json!({"k": k})).await;
    }
    let (s, page) = t.alice.get("/v1/collections/notes/records?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    let keys = |p: &Value| {
        p["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (keys(&page), &page["next_after"]),
        (vec!["a".to_owned(), "b".to_owned()], &json!("b"))
    );
    let (_, page) = t
        .alice
        .get("/v1/collections/notes/records?limit=2&after=b")
        .await;
    assert_eq!(
        (keys(&page), &page["next_after"]),
        (vec!["c".to_owned()], &Value::Null)
    );
    for bad in [
        "/v1/collections/notes/records?limit=0",
        "/v1/collections/notes/records?limit=1001",
        "/v1/collections/notes/records/a/history?limit=1001",
    ] {
        let (s, b) = t.alice.get(bad).await;
        assert_eq!(
            (s, &b["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("limit")),
            "{bad}"
        );
    }

    let a = url("notes", "a");
    for v in 1..=3 {
        let r = patch(&t.app, &a, &format!("\"{v}\""), json!({"n": v})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let (_, h) = t.alice.get(&format!("{a}/history?limit=2&after=1")).await;
    let versions: Vec<i64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!((versions, &h["next_after"]), (vec![2, 3], &json!(3)));
    assert!(
        h["versions"][0].get("data").is_none(),
        "history leaves data out"
    );
    let (_, v2) = t.alice.get(&format!("{a}/versions/2")).await;
    assert_eq!(v2["data"], json!({"k": "a", "n": 1}));

    let d = send(&t.app, Method::DELETE, &a, &[("if-match", "\"4\"")], None).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
    let gone = get(&t.alice, &a).await;
    assert!(
        gone.assert_problem(404, "not-found")["detail"]
            .as_str()
            .unwrap()
            .contains("deleted in version 5 by shop")
    );
    let (_, page) = t.alice.get("/v1/collections/notes/records").await;
    assert_eq!(keys(&page), vec!["b".to_owned(), "c".to_owned()]);
    let (_, h) = t.alice.get(&format!("{a}/history")).await;
    assert_eq!(h["versions"][4]["kind"], "delete");
    assert_eq!(h["versions"][4]["deleted"], true);
    let (_, v5) = t.alice.get(&format!("{a}/versions/5")).await;
    assert!(v5.get("data").is_none(), "a tombstone has no data: {v5}");
    // Created again: the version keeps counting, the old tag never matches.
    let c = put(&t.alice, &a, "create", json!({"k": "a again"})).await;
    assert_eq!((c.status, c.header("etag")), (StatusCode::CREATED, "\"6\""));
    patch(&t.alice, &a, "\"4\"", json!({"x": 1}))
        .await
        .assert_problem(412, "precondition-failed");
    t.stop().await;
}

/// The lost-update race: 16 clients each make 200 read-modify-write
/// increments of one counter with If-Match, retrying on 412 (with the
/// current value the 412 carries). The final
/// value is the number of successful writes, and the history shows every
/// successful write based on the version it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_lose_no_increment() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let counter = url("counters", "hits");
    let a = put(&t.app, &counter, "create", json!({"n": 0})).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let (ok, refused) = increment_race(&t, &counter, 16, 200).await;
    assert_eq!(ok, 16 * 200);
    assert!(refused > 0, "the clients did race");
    eprintln!("race: {ok} writes, {refused} refused");
    check_counter(&t.admin, &counter, ok).await;
    t.stop().await;
}

/// Runs `clients` clients each making `each` successful increments of
/// the counter at `path`; returns (successful writes, 412 answers).
pub async fn increment_race(
    t: &TestApp,
    path: &str,
    clients: usize,
    each: usize,
) -> (usize, usize) {
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let api = t.principal(&format!("counter-{i}"), "app").await;
        let (path, ok, refused) = (path.to_owned(), ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            increment(&api, &path, each, &ok, &refused).await
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    (ok.load(Ordering::SeqCst), refused.load(Ordering::SeqCst))
}

/// One client: read, add one, write with If-Match. A 412 carries the
/// current record and its ETag: the client adds one to that and tries
/// again, after a short random pause that grows while it keeps losing
/// (so that 16 clients do not all collide on every round).
pub async fn increment(
    api: &Api,
    path: &str,
    each: usize,
    ok: &AtomicUsize,
    refused: &AtomicUsize,
) {
    use rand::Rng;
    for _ in 0..each {
        let r = get(api, path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let (mut n, mut etag) = (
            r.body["data"]["n"].as_i64().expect("n"),
            r.header("etag").to_owned(),
        );
        let mut lost = 0u32;
        loop {
            let w = put(api, path, &etag, json!({"n": n + 1})).await;
            match w.status {
                StatusCode::OK => {
                    ok.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                StatusCode::PRECONDITION_FAILED => {
                    refused.fetch_add(1, Ordering::SeqCst);
                    n = w.body["record"]["data"]["n"].as_i64().expect("current n");
                    etag = w.header("etag").to_owned();
                    lost += 1;
                    let pause = rand::rng().random_range(0..=(1u64 << lost.min(5)));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                other => panic!("PUT answered {other}: {}", w.body),
            }
        }
    }
}

/// The counter equals the successful writes, and its history has one
/// version per write, each based on the version before it.
pub async fn check_counter(api: &Api, path: &str, ok: usize) {
    let r = get(api, path).await;
    assert_eq!(r.body["data"]["n"], json!(ok));
    assert_eq!(r.body["version"], json!(ok + 1));
    let mut after = 0;
    let mut seen = 0;
    loop {
        let h = get(api, &format!("{path}/history?limit=1000&after={after}")).await;
        assert_eq!(h.status, StatusCode::OK, "{}", h.body);
        for v in h.body["versions"].as_array().unwrap() {
            let version = v["version"].as_i64().unwrap();
            assert_eq!(version, seen as i64 + 1, "versions are consecutive");
            if version > 1 {
                assert_eq!(v["kind"], "replace", "{v}");
                assert_eq!(v["base_version"], json!(version - 1), "{v}");
                assert_eq!(
                    v["changes"],
                    json!([{"path": "/n", "old": version - 2, "new": version - 1}]),
                    "{v}"
                );
            }
            seen += 1;
        }
        match h.body["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, ok + 1);
}

/// Acquires an exclusive lock on `resource` over HTTP; (id, token).
async fn acquire(api: &Api, resource: &str, ttl: u32) -> (i64, i64) {
    let (status, body) = api
        .post(
            "/v1/locks",
            json!({"resources": [resource], "ttl_seconds": ttl}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["id"].as_i64().unwrap(),
        body["token"].as_i64().unwrap(),
    )
}

/// Lock-aware writes: under `lock_policy: write` a write without the lock
/// is 423 naming the current holder; with it, it succeeds; after the lock
/// expired and the record was locked by someone else, a write naming the
/// old lock is refused for its older fencing token. Refusals change
/// nothing. Under `read_write` reads need the lock too.
#[tokio::test]
async fn lock_aware_writes() {
    let Some(t) = TestApp::start().await else {
        return;
    };
    let (s, b) = t
        .admin
        .put("/v1/collections/clients", json!({"lock_policy": "write"}))
        .await;
    assert_eq!(
        (s, &b["lock_policy"]),
        (StatusCode::OK, &json!("write")),
        "{b}"
    );
    let r = url("clients", "bob");
    let a = put(&t.alice, &r, "create", json!({"name": "Bob"})).await;
    let p = a.assert_problem(423, "lock-required");
    assert_eq!(p["conflicts"], json!([]));
    assert!(p["detail"].as_str().unwrap().contains("Baton-Lock"), "{p}");
    let (alice_lock, alice_token) = acquire(&t.alice, "clients/bob", 1).await;
    let lock_header = alice_lock.to_string();
    let a = send(
        &t.alice,
        Method::PUT,
        &r,
        &[("if-none-match", "*"), ("baton-lock", &lock_header)],
        Some(json!({"name": "Bob"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // Bob, without the lock: told alice holds it.
    let before = snapshot(&t.bob, &r).await;
    let a = patch(&t.bob, &r, "\"1\"", json!({"phone": "1"})).await;
    let p = a.assert_problem(423, "lock-required");
    assert_eq!(p["conflicts"][0]["holder"], "alice");
    assert_eq!(p["conflicts"][0]["lock"], alice_lock);
    // Alice's lock runs out (1 s); bob locks the record.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (bob_lock, bob_token) = acquire(&t.bob, "clients/bob", 60).await;
    assert!(bob_token > alice_token);
    let a = send(
        &t.alice,
        Method::PATCH,
        &r,
        &[("if-match", "\"1\""), ("baton-lock", &lock_header)],
        Some(json!({"phone": "2"})),
    )
    .await;
    let p = a.assert_problem(423, "lock-required");
    assert_eq!(
        (p["presented"].as_i64(), p["current"].as_i64()),
        (Some(alice_token), Some(bob_token))
    );
    assert_eq!(p["lock"], alice_lock);
    assert!(p["detail"].as_str().unwrap().contains("older"), "{p}");
    assert_eq!(
        snapshot(&t.bob, &r).await,
        before,
        "refusals changed nothing"
    );
    let bob_header = bob_lock.to_string();
    let a = send(
        &t.bob,
        Method::PATCH,
        &r,
        &[("if-match", "\"1\""), ("baton-lock", &bob_header)],
        Some(json!({"phone": "3"})),
    )
    .await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"2\""),
        "{}",
        a.body
    );

    // read_write: reading needs the lock as well.
    let (s, _) = t
        .admin
        .put(
            "/v1/collections/clients",
            json!({"lock_policy": "read_write"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    get(&t.alice, &r).await.assert_problem(423, "lock-required");
    get(&t.alice, &format!("{r}/history"))
        .await
        .assert_problem(423, "lock-required");
    let a = send(
        &t.bob,
        Method::GET,
        &r,
        &[("baton-lock", &bob_header)],
        None,
    )
    .await;
    assert_eq!(
        (a.status, a.header("etag")),
        (StatusCode::OK, "\"2\""),
        "{}",
        a.body
    );
    assert_eq!(a.body["data"]["phone"], "3");
    let (_, page) = t.alice.get("/v1/collections/clients/records").await;
    assert_eq!(page["records"][0]["data"], Value::Null, "{page}");
    t.stop().await;
}
