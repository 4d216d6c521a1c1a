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
    // The run ends when the queue is drained: the duration only bounds it.
    let s = bench(&[
        "queue",
        "--duration",
        "60",
        "--operators",
        "8",
        "--items",
        "300",
    ]);
    // With no producers the operators drain the queue: every item counted.
    assert_eq!(s["operations"], 300, "{s}");
}

#[test]
fn queue_smoke_prefilled_on_sqlite() {
    // Only finished items loaded: the items enqueued over HTTP must get
    // ids after them (a collision would fail their completion).
    let s = bench(&[
        "queue",
        "--duration",
        "60",
        "--operators",
        "8",
        "--items",
        "100",
        "--done",
        "1000",
    ]);
    assert_eq!(s["operations"], 100, "{s}");
    let s = bench(&[
        "queue",
        "--duration",
        "1",
        "--operators",
        "8",
        "--items",
        "0",
        "--ready",
        "500",
        "--done",
        "1000",
        "--refill",
    ]);
    assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
}

#[tokio::test]
async fn queue_smoke_prefilled_on_postgres() {
    let Some(db) = TestDatabase::create(DbServer::Postgres).await else {
        return;
    };
    let url = db.url().to_owned();
    let s = tokio::task::spawn_blocking(move || {
        bench(&[
            "queue",
            "--db",
            &url,
            "--duration",
            "1",
            "--operators",
            "8",
            "--items",
            "0",
            "--ready",
            "500",
            "--done",
            "1000",
            "--refill",
        ])
    })
    .await
    .expect("bench task");
    assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
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
fn records_smoke_reject_and_merge() {
    for policy in ["reject", "merge"] {
        let s = bench(&[
            "records",
            "--duration",
            "2",
            "--clients",
            "8",
            "--records",
            "2",
            "--policy",
            policy,
        ]);
        assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
    }
}

#[test]
fn mixed_smoke_on_sqlite() {
    let s = bench(&[
        "mixed",
        "--duration",
        "60",
        "--operators",
        "8",
        "--customers",
        "3",
        "--items",
        "150",
    ]);
    // The operators drain the queue (which ends the run before the
    // duration): every item handled once.
    assert_eq!(s["operations"], 150, "{s}");
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

#[tokio::test]
async fn records_and_mixed_smoke_on_postgres_and_mariadb() {
    for server in [DbServer::Postgres, DbServer::MySql] {
        let runs: [&[&str]; 2] = [
            &["records", "--clients", "8", "--records", "2"],
            &[
                "mixed",
                "--operators",
                "8",
                "--customers",
                "3",
                "--items",
                "200",
            ],
        ];
        for run in runs {
            let Some(db) = TestDatabase::create(server).await else {
                continue;
            };
            let mut args: Vec<String> = run.iter().map(|a| (*a).to_owned()).collect();
            args.extend([
                "--db".into(),
                db.url().to_owned(),
                "--duration".into(),
                "2".into(),
            ]);
            let s = tokio::task::spawn_blocking(move || {
                bench(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .expect("bench task");
            assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
        }
    }
}
