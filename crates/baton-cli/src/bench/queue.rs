//! `baton bench queue`: operators looping claim → complete.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, FixedOffset};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::QueueArgs;
use super::report::{Progress, Recorder, Run, Summary, Verdict};
use super::server::Target;

/// One lease as the operator saw it, from claim to completion.
pub(super) struct Lease {
    /// The item.
    pub item: i64,
    /// Its fencing token.
    pub token: i64,
    /// When it was claimed (server time).
    pub from: DateTime<FixedOffset>,
    /// When it was completed (server time).
    pub to: DateTime<FixedOffset>,
}

/// An RFC 3339 time of an answer.
pub(super) fn time(v: &Value) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

/// The payload of the `i`-th item enqueued.
pub(super) type Payload = Arc<dyn Fn(u64) -> Value + Send + Sync>;

/// Enqueues `n` items with `tasks` concurrent producers.
pub(super) async fn fill(
    t: &Target,
    app: &str,
    queue: &str,
    n: usize,
    tasks: usize,
    payload: Payload,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..tasks.max(1) {
        let (client, url, app, next, payload) = (
            t.client.clone(),
            format!("{}/v1/queues/{queue}/items", t.url),
            app.to_owned(),
            next.clone(),
            payload.clone(),
        );
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    return anyhow::Ok(());
                }
                let resp = client
                    .post(&url)
                    .bearer_auth(&app)
                    .json(&json!({"kind": "task", "payload": payload(i)}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    resp.status() == StatusCode::CREATED,
                    "enqueue answered {}",
                    resp.status()
                );
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Runs the scenario.
pub async fn run(args: QueueArgs) -> anyhow::Result<Summary> {
    let duration = args.common.duration()?;
    anyhow::ensure!(
        (1..=10_000).contains(&args.operators),
        "--operators must be 1..=10000"
    );
    let prefill = (args.ready > 0 || args.done > 0).then_some(baton_store::bench::Prefill {
        ready: args.ready,
        done: args.done,
    });
    let progress = Progress::start("prefilling");
    let t = Target::start_with(&args.common, args.operators + args.producers, prefill).await?;
    progress.finish();
    let queue = t.run.clone();
    let app = t.principal(&format!("{}-app", t.run), "app").await?;
    let mut ops = Vec::with_capacity(args.operators);
    for i in 0..args.operators {
        ops.push(t.principal(&format!("{}-op{i}", t.run), "operator").await?);
    }
    let progress = Progress::start("enqueueing");
    fill(
        &t,
        &app,
        &queue,
        args.items,
        32,
        Arc::new(|i| json!({ "n": i })),
    )
    .await?;
    progress.finish();

    let progress = Progress::start("claim+complete");
    let done = progress.counter();
    let leases: Arc<Mutex<Vec<Lease>>> = Arc::default();
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    // Each operator's time between two claims when paced.
    let pace = args
        .rate
        .map(|r| std::time::Duration::from_secs_f64(args.operators as f64 / r));
    let started = Instant::now();
    let deadline = started + duration;
    let mut set: JoinSet<anyhow::Result<Recorder>> = JoinSet::new();
    for (n, token) in ops.into_iter().enumerate() {
        let (client, base, queue, done, leases) = (
            t.client.clone(),
            t.url.clone(),
            queue.clone(),
            done.clone(),
            leases.clone(),
        );
        let refill = args.refill.then(|| app.clone());
        let operators = args.operators;
        let wait = u32::from(args.producers > 0);
        set.spawn(async move {
            let mut rec = Recorder::default();
            let claim_url = format!("{base}/v1/queues/{queue}/claim");
            // Paced operators start spread over one period.
            let mut next = pace.map(|p| started + p.mul_f64(n as f64 / operators as f64));
            while Instant::now() < deadline {
                if let (Some(at), Some(p)) = (next, pace) {
                    tokio::time::sleep_until(at.into()).await;
                    next = Some(at + p);
                }
                let t0 = Instant::now();
                let resp = client
                    .post(&claim_url)
                    .bearer_auth(&token)
                    .json(&json!({"lease_seconds": 300, "wait_seconds": wait}))
                    .send()
                    .await;
                let resp = match resp {
                    Ok(r) => r,
                    Err(_) => {
                        rec.error("claim transport");
                        continue;
                    }
                };
                let status = resp.status();
                let body: Value = if status == StatusCode::OK {
                    resp.json().await.context("claim answer")?
                } else {
                    Value::Null
                };
                rec.latency("claim", t0.elapsed());
                match status {
                    StatusCode::OK => {}
                    // Drained, and nobody is producing: this operator is done.
                    StatusCode::NO_CONTENT if wait == 0 => break,
                    StatusCode::NO_CONTENT => continue,
                    other => {
                        rec.error(format!("claim {}", other.as_u16()));
                        continue;
                    }
                }
                let item = body["item"]["id"].as_i64().context("item id")?;
                let lease_token = body["lease"]["token"].as_i64().context("token")?;
                let from = time(&body["lease"]["claimed_at"]).context("claimed_at")?;
                let t1 = Instant::now();
                let resp = client
                    .post(format!("{base}/v1/items/{item}/complete"))
                    .bearer_auth(&token)
                    .json(&json!({"token": lease_token, "outcome": "accepted"}))
                    .send()
                    .await;
                let resp = match resp {
                    Ok(r) => r,
                    Err(_) => {
                        rec.error("complete transport");
                        continue;
                    }
                };
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                rec.latency("complete", t1.elapsed());
                if status != StatusCode::OK {
                    rec.error(format!("complete {}", status.as_u16()));
                    continue;
                }
                let to = time(&body["completion"]["at"]).context("completion time")?;
                leases.lock().expect("lease log").push(Lease {
                    item,
                    token: lease_token,
                    from,
                    to,
                });
                done.fetch_add(1, Ordering::Relaxed);
                if let Some(app) = &refill {
                    let t2 = Instant::now();
                    match client
                        .post(format!("{base}/v1/queues/{queue}/items"))
                        .bearer_auth(app)
                        .json(&json!({"kind": "task", "payload": {"refill": item}}))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            rec.latency("enqueue", t2.elapsed())
                        }
                        Ok(r) => rec.error(format!("enqueue {}", r.status().as_u16())),
                        Err(_) => rec.error("enqueue transport"),
                    }
                }
            }
            Ok(rec)
        });
    }
    for p in 0..args.producers {
        let (client, url, app) = (
            t.client.clone(),
            format!("{}/v1/queues/{queue}/items", t.url),
            app.clone(),
        );
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let t0 = Instant::now();
                match client
                    .post(&url)
                    .bearer_auth(&app)
                    .json(&json!({"kind": "task", "payload": {"producer": p, "n": n}}))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        rec.latency("enqueue", t0.elapsed())
                    }
                    Ok(r) => rec.error(format!("enqueue {}", r.status().as_u16())),
                    Err(_) => rec.error("enqueue transport"),
                }
            }
            Ok(rec)
        });
    }
    let rec = progress.collect(set, "claim+complete").await?;
    let elapsed = started.elapsed();

    let leases = std::mem::take(&mut *leases.lock().expect("lease log"));
    let verdict = check(&t, &queue, &leases, args.done).await?;
    let summary = Summary::new(
        Run {
            scenario: "queue",
            db: &t.db,
            clients: args.operators,
            elapsed,
            operation: "claim+complete",
            operations: leases.len() as u64,
        },
        rec,
        verdict,
    );
    t.stop().await?;
    Ok(summary)
}

/// Checks the recorded history: every item completed at most once, its
/// tokens strictly increasing and its leases never overlapping; and the
/// server's own count of completions agrees with what the clients saw
/// (plus `done_before`, the finished items loaded before the run).
pub(super) async fn check(
    t: &Target,
    queue: &str,
    leases: &[Lease],
    done_before: u64,
) -> anyhow::Result<Verdict> {
    let mut problems = Vec::new();
    let mut by_item: HashMap<i64, Vec<&Lease>> = HashMap::new();
    for l in leases {
        by_item.entry(l.item).or_default().push(l);
    }
    for (item, mut ls) in by_item {
        if ls.len() > 1 {
            problems.push(format!("item {item} was completed {} times", ls.len()));
        }
        ls.sort_by_key(|l| l.token);
        for w in ls.windows(2) {
            if w[0].token >= w[1].token {
                problems.push(format!("item {item}: token {} repeated", w[0].token));
            }
            if w[0].to > w[1].from {
                problems.push(format!(
                    "item {item}: leases {} and {} overlap",
                    w[0].token, w[1].token
                ));
            }
        }
    }
    let stats: Value = t
        .client
        .get(format!("{}/v1/queues", t.url))
        .bearer_auth(&t.admin)
        .send()
        .await?
        .json()
        .await?;
    let q = stats
        .as_array()
        .and_then(|a| a.iter().find(|q| q["queue"] == queue))
        .context("the bench queue in the stats")?;
    let server_done = q["done"].as_u64().unwrap_or(0);
    if server_done != leases.len() as u64 + done_before {
        problems.push(format!(
            "the server counts {server_done} completions, the clients saw {} (and {done_before} were loaded finished)",
            leases.len()
        ));
    }
    if q["leased"].as_u64() != Some(0) {
        problems.push(format!("{} leases left behind", q["leased"]));
    }
    Ok(Verdict {
        ok: problems.is_empty(),
        checked: format!(
            "{} completions: each item completed once, tokens increasing, no overlapping leases, server count agrees",
            leases.len()
        ),
        problems,
    })
}
