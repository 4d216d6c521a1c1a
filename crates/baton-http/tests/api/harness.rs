//! Starts a server over a fresh database with one principal per role, and
//! a thin JSON client.

use std::time::Duration;

use baton::{Engine, Role};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server and a client for each role.
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    pub admin: Api,
    pub supervisor: Api,
    /// Operator `alice`.
    pub alice: Api,
    /// Operator `bob`.
    pub bob: Api,
    /// Application `shop`.
    pub app: Api,
    /// No token at all.
    pub anonymous: Api,
    /// The engine the server runs (a clone: shares everything with it).
    pub engine: Engine,
    pub shutdown: CancellationToken,
    pub server: Option<JoinHandle<std::io::Result<()>>>,
    // The temporary directory or test database; dropped last.
    _db: Box<dyn std::any::Any + Send>,
}

impl TestApp {
    /// Boots a server with the default settings over a fresh database of
    /// this test binary's backend ([`crate::BACKEND`]). `None` when that
    /// database server is unavailable (the skip is announced loudly).
    pub async fn start() -> Option<TestApp> {
        Self::start_with(baton_http::HttpSettings::default()).await
    }

    /// Boots a server with `settings`.
    pub async fn start_with(settings: baton_http::HttpSettings) -> Option<TestApp> {
        let (db_url, guard): (String, Box<dyn std::any::Any + Send>) = match crate::BACKEND {
            None => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("baton.db").display());
                (url, Box::new(dir))
            }
            Some(server) => {
                let db = baton_testkit::databases::TestDatabase::create(server).await?;
                (db.url().to_owned(), Box::new(db))
            }
        };
        let engine = Engine::open(&db_url).await.expect("open engine");
        let mut tokens = Vec::new();
        for (name, role) in [
            ("admin", Role::Admin),
            ("sup", Role::Supervisor),
            ("alice", Role::Operator),
            ("bob", Role::Operator),
            ("shop", Role::App),
        ] {
            let (_, token) = engine
                .bootstrap_principal(name, role)
                .await
                .expect("principal");
            tokens.push(token);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(baton_http::serve(
            listener,
            engine.clone(),
            settings,
            shutdown.clone(),
        ));
        let api = |t: &str| Api::new(&url, Some(t));
        Some(TestApp {
            admin: api(&tokens[0]),
            supervisor: api(&tokens[1]),
            alice: api(&tokens[2]),
            bob: api(&tokens[3]),
            app: api(&tokens[4]),
            anonymous: Api::new(&url, None),
            engine,
            url,
            shutdown,
            server: Some(server),
            _db: guard,
        })
    }

    /// Enqueues one item of kind `task` into `queue`; returns its id.
    pub async fn enqueue(&self, queue: &str) -> i64 {
        let (status, body) = self
            .app
            .post(
                &format!("/v1/queues/{queue}/items"),
                json!({"kind": "task", "payload": {"n": 1}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("id")
    }

    /// Creates a principal named `name` with `role` (as admin); a client
    /// for it.
    pub async fn principal(&self, name: &str, role: &str) -> Api {
        let (status, body) = self
            .admin
            .post("/v1/principals", json!({"name": name, "role": role}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Api::new(&self.url, Some(body["token"].as_str().expect("token")))
    }

    /// The item and its history, to show a refused request changed nothing.
    pub async fn snapshot(&self, id: i64) -> (Value, Value) {
        let (s1, item) = self.supervisor.get(&format!("/v1/items/{id}")).await;
        let (s2, history) = self
            .supervisor
            .get(&format!("/v1/items/{id}/history"))
            .await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
        (item, history)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), server)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("serve result");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An answer: status, headers and JSON body (Null when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The header as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts this is a problem of `status` whose type ends with `slug`.
    pub fn assert_problem(&self, status: u16, slug: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{}",
            self.body
        );
        assert_eq!(
            self.body["type"],
            format!("urn:baton:problem:{slug}"),
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string(), "{}", self.body);
        assert!(self.body["detail"].is_string(), "{}", self.body);
        &self.body
    }
}

/// A JSON client for one principal (or none).
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Api {
    pub fn new(url: &str, token: Option<&str>) -> Api {
        Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("client"),
            url: url.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// A request builder with the token set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.client.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a built request and reads the answer.
    pub async fn send(&self, req: RequestBuilder) -> Answer {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = if bytes.is_empty() {
            Value::Null
        } else if json {
            serde_json::from_slice(&bytes).expect("JSON body")
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends `method path` with an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let a = self.call(Method::POST, path, Some(body)).await;
        (a.status, a.body)
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let a = self.call(Method::PUT, path, Some(body)).await;
        (a.status, a.body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let a = self.call(Method::GET, path, None).await;
        (a.status, a.body)
    }

    /// Claims from `queue` with `body`; returns (item id, token) or None on
    /// 204.
    pub async fn claim(&self, queue: &str, body: Value) -> Option<(i64, i64)> {
        let (status, b) = self.post(&format!("/v1/queues/{queue}/claim"), body).await;
        match status {
            StatusCode::OK => Some((
                b["item"]["id"].as_i64().expect("id"),
                b["lease"]["token"].as_i64().expect("token"),
            )),
            StatusCode::NO_CONTENT => None,
            other => panic!("claim answered {other}: {b}"),
        }
    }
}
