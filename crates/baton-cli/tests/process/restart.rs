//! The database restarts under a running server: meanwhile requests are
//! answered 503 with `Retry-After`; afterwards the server serves again by
//! itself, and every acknowledged write is there.
//!
//! Runs a private PostgreSQL cluster (initdb into a temporary directory,
//! on a free port) so that stopping it disturbs no other test. Needs the
//! PostgreSQL server binaries and root (to run them as `postgres`); skips
//! loudly otherwise, or fails when `BATON_REQUIRE_DATABASES=1`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Api, Server};

/// A PostgreSQL cluster of this test's own.
struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn skip_or_fail(why: &str) -> Option<PgCluster> {
    if std::env::var("BATON_REQUIRE_DATABASES").as_deref() == Ok("1") {
        panic!("cannot run the PostgreSQL restart test: {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: PostgreSQL restart test — {why} ***\n"
    );
    None
}

fn run(cmd: &mut Command) -> bool {
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

impl PgCluster {
    fn create() -> Option<PgCluster> {
        let Some(bin) = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
                    .filter(|b| b.join("initdb").exists())
                    .max()
            })
        else {
            return skip_or_fail("no PostgreSQL server binaries under /usr/lib/postgresql");
        };
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return skip_or_fail("not running as root (needed to run PostgreSQL as `postgres`)");
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        assert!(run(Command::new("chown").arg("postgres").arg(dir.path())));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = PgCluster { dir, bin, port };
        assert!(
            run(cluster
                .as_postgres("initdb")
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(cluster.data())
                .stdout(std::process::Stdio::null())),
            "initdb"
        );
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
        c
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        assert!(
            run(self
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-o", &opts, "-w", "-l"])
                .arg(self.dir.path().join("log"))
                .arg("start")
                .stdout(std::process::Stdio::null())),
            "pg_ctl start"
        );
    }

    /// Stops at once, as a crash would: no checkpoint, clients cut off.
    fn stop_immediately(&self) {
        assert!(
            run(self
                .as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(std::process::Stdio::null())),
            "pg_ctl stop"
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    enqueued: Mutex<Vec<i64>>,
    completed: Mutex<Vec<i64>>,
    unavailable: AtomicUsize,
}

impl Seen {
    /// Counts a 503, which must say when to come back.
    fn unavailable(&self, headers: &reqwest::header::HeaderMap, body: &serde_json::Value) {
        assert!(
            headers.contains_key("retry-after"),
            "503 without Retry-After: {body}"
        );
        assert_eq!(body["status"], 503, "{body}");
        self.unavailable.fetch_add(1, Ordering::Relaxed);
    }
}

async fn producer(app: Api, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (status, headers, body) = app
            .call_with_headers(
                Method::POST,
                "/v1/queues/r/items",
                Some(json!({"kind": "task", "payload": {"n": n}})),
            )
            .await;
        match status {
            StatusCode::CREATED => seen
                .enqueued
                .lock()
                .unwrap()
                .push(body["id"].as_i64().unwrap()),
            StatusCode::SERVICE_UNAVAILABLE => {
                seen.unavailable(&headers, &body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("enqueue answered {other}: {body}"),
        }
    }
}

async fn worker(op: Api, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let (status, headers, body) = op
            .call_with_headers(Method::POST, "/v1/queues/r/claim", Some(json!({})))
            .await;
        match status {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                seen.unavailable(&headers, &body);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            other => panic!("claim answered {other}: {body}"),
        }
        let id = body["item"]["id"].as_i64().unwrap();
        let token = body["lease"]["token"].as_i64().unwrap();
        loop {
            let (status, headers, body) = op
                .call_with_headers(
                    Method::POST,
                    &format!("/v1/items/{id}/complete"),
                    Some(json!({"token": token, "outcome": "accepted"})),
                )
                .await;
            match status {
                StatusCode::OK => {
                    seen.completed.lock().unwrap().push(id);
                    break;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    seen.unavailable(&headers, &body);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // A completion whose answer was lost in the outage may
                // have committed: not acknowledged, so not counted.
                StatusCode::CONFLICT => break,
                other => panic!("complete answered {other}: {body}"),
            }
        }
    }
}

/// Waits until `cond` holds, for at most a minute.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restart_loses_no_acknowledged_write() {
    let Some(pg) = PgCluster::create() else {
        return;
    };
    pg.start();
    let server = Server::start_url(&pg.url(), &["--db-acquire-timeout", "1"]);
    let admin = server.admin();
    let app = admin.principal("app", "app").await;
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = vec![tokio::spawn(producer(app, seen.clone(), stop.clone()))];
    for i in 0..4 {
        let op = admin.principal(&format!("op{i}"), "operator").await;
        clients.push(tokio::spawn(worker(op, seen.clone(), stop.clone())));
    }
    until("work before the outage", || {
        seen.completed.lock().unwrap().len() >= 50
    })
    .await;

    pg.stop_immediately();
    until("503 answers during the outage", || {
        seen.unavailable.load(Ordering::Relaxed) >= 5
    })
    .await;
    let (enqueued_before, completed_before) = (
        seen.enqueued.lock().unwrap().len(),
        seen.completed.lock().unwrap().len(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start();
    // The same server, never restarted, serves again.
    until("work after the restart", || {
        seen.enqueued.lock().unwrap().len() >= enqueued_before + 50
            && seen.completed.lock().unwrap().len() >= completed_before + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }

    let enqueued = seen.enqueued.lock().unwrap().clone();
    let completed = seen.completed.lock().unwrap().clone();
    for id in &enqueued {
        let (status, body) = admin.get(&format!("/v1/items/{id}")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged item {id} is lost: {body}"
        );
    }
    for id in &completed {
        let (status, body) = admin.get(&format!("/v1/items/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["state"], "done",
            "acknowledged completion of {id} is lost: {body}"
        );
    }
    let (status, health) = admin.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{health}");
}
