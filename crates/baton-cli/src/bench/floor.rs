//! `baton bench http-floor`: the same server and client answering
//! `GET /livez`, which touches nothing but the HTTP stack. Its requests/s
//! is the ceiling for any endpoint on this machine.

use std::sync::atomic::Ordering;
use std::time::Instant;

use reqwest::StatusCode;
use tokio::task::JoinSet;

use super::FloorArgs;
use super::report::{Progress, Recorder, Run, Summary, Verdict};
use super::server::Target;

/// Runs the scenario.
pub async fn run(args: FloorArgs) -> anyhow::Result<Summary> {
    let duration = args.common.duration()?;
    anyhow::ensure!(
        (1..=10_000).contains(&args.connections),
        "--connections must be 1..=10000"
    );
    let t = Target::start(&args.common, args.connections).await?;
    let progress = Progress::start("GET /livez");
    let count = progress.counter();
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for _ in 0..args.connections {
        let (client, url, count) = (t.client.clone(), format!("{}/livez", t.url), count.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match client.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        // Read the body, as every other scenario does.
                        let _ = r.bytes().await;
                        rec.latency("GET /livez", t0.elapsed());
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => rec.error(format!("livez {}", r.status().as_u16())),
                    Err(_) => rec.error("livez transport"),
                }
            }
            Ok(rec)
        });
    }
    let rec = progress.collect(set, "GET /livez").await?;
    let elapsed = started.elapsed();
    let n = count.load(Ordering::Relaxed);
    let summary = Summary::new(
        Run {
            scenario: "http-floor",
            db: &t.db,
            clients: args.connections,
            elapsed,
            operation: "GET /livez",
            operations: n,
        },
        rec,
        Verdict {
            ok: true,
            checked: "nothing to check: a trivial endpoint".into(),
            problems: Vec::new(),
        },
    );
    t.stop().await?;
    Ok(summary)
}
