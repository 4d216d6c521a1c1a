//! Starts `baton serve` as a child process and talks to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// A running `baton serve` child process.
pub struct Server {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The admin token printed on first start (None on a restart, and on
    /// every server but the first sharing one database).
    pub admin_token: Option<String>,
    db: String,
}

impl Server {
    /// Starts a server over the SQLite file `db` on a free port.
    pub fn start(db: &Path) -> Server {
        Self::start_url(&format!("sqlite://{}", db.display()), &[])
    }

    /// Starts a server over the database at `url` on a free port, with
    /// extra command-line arguments.
    pub fn start_url(db: &str, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
            .args(args)
            .env("BATON_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn baton serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut admin_token = None;
        let url = loop {
            let line = lines
                .next()
                .expect("baton serve exited before listening")
                .expect("read stdout");
            let trimmed = line.trim();
            if let Some(token) = trimmed.strip_prefix("API token: ") {
                admin_token = Some(token.to_owned());
            }
            if let Some(rest) = line.strip_prefix("Baton is listening on ") {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            admin_token,
            db: db.to_owned(),
        }
    }

    /// Kills the process with SIGKILL (no chance to clean up); returns
    /// the database URL, to start another server on it.
    pub fn kill9(mut self) -> String {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
        self.db.clone()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        self.child.wait().expect("wait")
    }

    /// An API client authenticated as the first-start admin.
    pub fn admin(&self) -> Api {
        Api::new(&self.url, self.admin_token.as_deref().expect("first start"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A thin JSON client for one principal.
#[derive(Clone)]
pub struct Api {
    client: Client,
    url: String,
    token: String,
}

impl Api {
    /// A client for `url` using `token`.
    pub fn new(url: &str, token: &str) -> Api {
        Api {
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            url: url.to_owned(),
            token: token.to_owned(),
        }
    }

    /// The same principal, talking to another server (sharing the
    /// database).
    pub fn on(&self, url: &str) -> Api {
        Api {
            client: self.client.clone(),
            url: url.to_owned(),
            token: self.token.clone(),
        }
    }

    /// A request to this server as this principal, to send yourself
    /// (e.g. to read a streaming body).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends a request; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self.call_with_headers(method, path, body).await;
        (status, value)
    }

    /// Like [`Api::call`], with the response headers.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(method, path, &[], body).await
    }

    /// Sends a request with extra headers; returns status, response
    /// headers and JSON body (Null when empty).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (status, headers, value)
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// Creates a principal with `role` and returns a client for it.
    /// Like any client of Baton, it retries a 503 (the store was briefly
    /// out of connections on a loaded machine).
    pub async fn principal(&self, name: &str, role: &str) -> Api {
        let mut attempt = 0;
        let (status, body) = loop {
            let (status, body) = self
                .post("/v1/principals", json!({"name": name, "role": role}))
                .await;
            attempt += 1;
            if status != StatusCode::SERVICE_UNAVAILABLE || attempt == 10 {
                break (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Api::new(&self.url, body["token"].as_str().expect("token"))
    }

    /// Enqueues `n` items of kind `task` into `queue`; returns their ids.
    pub async fn enqueue_many(&self, queue: &str, n: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let (status, body) = self
                .post(
                    &format!("/v1/queues/{queue}/items"),
                    json!({"kind": "task", "payload": {"n": i}}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            ids.push(body["id"].as_i64().expect("id"));
        }
        ids
    }
}
