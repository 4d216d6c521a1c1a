//! `baton bench waiters`: many idle long-poll claimers on one queue (the
//! server runs as a child process, so its memory is measured alone), then
//! items enqueued one at a time: how fast does one of the waiters get
//! each, and does exactly one?

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::WaitersArgs;
use super::report::{Progress, Recorder, Run, Summary, Verdict};
use super::server::Target;

/// Who received which item, and when.
#[derive(Default)]
struct Received {
    by_item: Mutex<HashMap<i64, Vec<Instant>>>,
    arrived: Notify,
}

/// Runs the scenario.
pub async fn run(args: WaitersArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        (1..=15_000).contains(&args.waiters),
        "--waiters must be 1..=15000 (each is a connection)"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.samples) && args.samples <= args.waiters,
        "--samples must be 1..=10000 and at most --waiters"
    );
    let t = Target::spawn(&args.common, args.waiters).await?;
    let queue = t.run.clone();
    let app = t.principal(&format!("{}-app", t.run), "app").await?;
    // Create the queue, so the server reports its waiting claimers.
    let created = t
        .client
        .put(format!("{}/v1/queues/{queue}/config", t.url))
        .bearer_auth(&t.admin)
        .json(&json!({}))
        .send()
        .await?;
    anyhow::ensure!(
        created.status().is_success(),
        "creating the queue: {}",
        created.status()
    );

    // One operator per waiter (an operator holds one lease at a time).
    let progress = Progress::start("creating operators");
    let tokens = Arc::new(Mutex::new(Vec::with_capacity(args.waiters)));
    let mut set = JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Arc::new(t);
    for _ in 0..16 {
        let (t, tokens, next, n) = (t.clone(), tokens.clone(), next.clone(), args.waiters);
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let token = t.principal(&format!("{}-w{i}", t.run), "operator").await?;
                tokens.lock().expect("tokens").push(token);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    progress.finish();

    // Every waiter long-polls until it gets an item (then stops).
    let received = Arc::new(Received::default());
    let claim_url = format!("{}/v1/queues/{queue}/claim", t.url);
    let tokens = std::mem::take(&mut *tokens.lock().expect("tokens"));
    let mut waiters = JoinSet::new();
    for token in tokens {
        let (client, url, received) = (t.client.clone(), claim_url.clone(), received.clone());
        waiters.spawn(async move {
            loop {
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"lease_seconds": 600, "wait_seconds": 60}))
                    .send()
                    .await;
                let Ok(resp) = resp else { continue };
                if resp.status() != StatusCode::OK {
                    continue;
                }
                let at = Instant::now();
                let Ok(body) = resp.json::<Value>().await else {
                    continue;
                };
                if let Some(id) = body["item"]["id"].as_i64() {
                    received
                        .by_item
                        .lock()
                        .expect("received")
                        .entry(id)
                        .or_default()
                        .push(at);
                    received.arrived.notify_waiters();
                    return;
                }
            }
        });
    }
    let progress = Progress::start("waiting for every claimer to wait");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting = waiting(&t, &queue).await?;
        if waiting >= args.waiters as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {waiting} of {} claimers are waiting after 2 minutes",
            args.waiters
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress.finish();
    let rss = t.child_rss();

    // Enqueue one item at a time; time until a waiter has it.
    let mut rec = Recorder::default();
    let mut problems = Vec::new();
    let started = Instant::now();
    let items_url = format!("{}/v1/queues/{queue}/items", t.url);
    for n in 0..args.samples {
        let t0 = Instant::now();
        let resp = t
            .client
            .post(&items_url)
            .bearer_auth(&app)
            .json(&json!({"kind": "task", "payload": {"n": n}}))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == StatusCode::CREATED,
            "enqueue: {}",
            resp.status()
        );
        let id = resp.json::<Value>().await?["id"]
            .as_i64()
            .context("item id")?;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = received.arrived.notified();
                if let Some(at) = received
                    .by_item
                    .lock()
                    .expect("received")
                    .get(&id)
                    .and_then(|v| v.first().copied())
                {
                    return at;
                }
                notified.await;
            }
        })
        .await;
        match got {
            Ok(at) => rec.latency("enqueue → claimed", at.saturating_duration_since(t0)),
            Err(_) => problems.push(format!("item {id} reached no waiter within 10 s")),
        }
    }
    let elapsed = started.elapsed();
    // Give a duplicate delivery, if any, time to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    waiters.abort_all();
    let by_item = std::mem::take(&mut *received.by_item.lock().expect("received"));
    for (id, got) in &by_item {
        if got.len() > 1 {
            problems.push(format!("item {id} reached {} waiters", got.len()));
        }
    }
    let summary = Summary::new(
        Run {
            scenario: "waiters",
            db: &t.db,
            clients: args.waiters,
            elapsed,
            operation: "item delivered to a waiter",
            operations: by_item.len() as u64,
        },
        rec,
        Verdict {
            ok: problems.is_empty(),
            checked: format!(
                "{} items each reached exactly one of {} waiting claimers; server RSS with them waiting: {}",
                by_item.len(),
                args.waiters,
                rss.map_or("unknown".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
            ),
            problems,
        },
    );
    match Arc::try_unwrap(t) {
        Ok(t) => t.stop().await?,
        Err(_) => anyhow::bail!("the server is still in use"),
    }
    Ok(summary)
}

/// Claimers the server reports waiting on `queue` (from `/metrics`).
async fn waiting(t: &Target, queue: &str) -> anyhow::Result<u64> {
    let text = t
        .client
        .get(format!("{}/metrics", t.url))
        .send()
        .await?
        .text()
        .await?;
    let prefix = format!("baton_claimers_waiting{{queue=\"{queue}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}
