//! Smoke runs of `baton bench`: every scenario runs for a second or two
//! and its correctness verdict holds. Speed is never asserted here; the
//! figures are in the README, measured with the release build.

use std::process::Command;

use baton_testkit::databases::{Server as DbServer, TestDatabase};
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("BATON_LOG", "warn")
        .output()
        .expect("run baton bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "baton bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary");
    assert_eq!(summary["verdict"]["ok"], true, "{summary}");
    assert_eq!(summary["errors"], serde_json::json!({}), "{summary}");
    summary
}

#[test]
fn http_floor_smoke() {
    let s = bench(&["http-floor", "--duration", "1", "--connections", "8"]);
    assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn queue_smoke_on_sqlite() {
    let s = bench(&[
        "queue",
        "--duration",
        "2",
        "--operators",
        "8",
        "--items",
        "300",
    ]);
    // With no producers the operators drain the queue: every item counted.
    assert_eq!(s["operations"], 300, "{s}");
}

#[test]
fn locks_smoke() {
    let s = bench(&[
        "locks",
        "--duration",
        "2",
        "--clients",
        "8",
        "--resources",
        "16",
    ]);
    assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn waiters_smoke() {
    let s = bench(&["waiters", "--waiters", "50", "--samples", "10"]);
    assert_eq!(s["operations"], 10, "{s}");
}

#[tokio::test]
async fn queue_smoke_on_postgres_and_mariadb() {
    for server in [DbServer::Postgres, DbServer::MySql] {
        let Some(db) = TestDatabase::create(server).await else {
            continue;
        };
        let url = db.url().to_owned();
        let s = tokio::task::spawn_blocking(move || {
            bench(&[
                "queue",
                "--db",
                &url,
                "--duration",
                "2",
                "--operators",
                "8",
                "--items",
                "200",
                "--producers",
                "2",
            ])
        })
        .await
        .expect("bench task");
        assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
    }
}
