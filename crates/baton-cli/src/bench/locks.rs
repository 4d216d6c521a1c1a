//! `baton bench locks`: clients acquiring and releasing random resources
//! (a mix of exclusive and shared) with TTLs; the verdict is computed from
//! the server's own lock history of every resource.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, FixedOffset};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::LocksArgs;
use super::report::{Progress, Recorder, Run, Summary, Verdict};
use super::server::Target;

/// Runs the scenario.
pub async fn run(args: LocksArgs) -> anyhow::Result<Summary> {
    let duration = args.common.duration()?;
    anyhow::ensure!(
        (1..=10_000).contains(&args.clients),
        "--clients must be 1..=10000"
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.resources),
        "--resources must be 1..=100000"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.exclusive),
        "--exclusive is a fraction, 0..=1"
    );
    let t = Target::start(&args.common, args.clients).await?;
    let sup = t.principal(&format!("{}-sup", t.run), "supervisor").await?;
    let mut tokens = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        tokens.push(t.principal(&format!("{}-c{i}", t.run), "operator").await?);
    }
    let progress = Progress::start("acquire+release");
    let done = progress.counter();
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (client, base, run, done) =
            (t.client.clone(), t.url.clone(), t.run.clone(), done.clone());
        let (resources, exclusive) = (args.resources, args.exclusive);
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0xB47 + i as u64);
            while Instant::now() < deadline {
                let n = rng.random_range(1..=3usize);
                let mut names: Vec<String> = (0..n)
                    .map(|_| format!("{run}/r{}", rng.random_range(0..resources)))
                    .collect();
                names.sort();
                names.dedup();
                let mode = if rng.random_bool(exclusive) {
                    "exclusive"
                } else {
                    "shared"
                };
                let t0 = Instant::now();
                let resp = client
                    .post(format!("{base}/v1/locks"))
                    .bearer_auth(&token)
                    .json(&json!({"resources": names, "mode": mode, "ttl_seconds": 30}))
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    rec.error("acquire transport");
                    continue;
                };
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                rec.latency("acquire", t0.elapsed());
                match status {
                    StatusCode::CREATED => {}
                    // A conflict is an answer, not an error: count it apart.
                    StatusCode::LOCKED => {
                        rec.latency("acquire refused (423)", t0.elapsed());
                        continue;
                    }
                    other => {
                        rec.error(format!("acquire {}", other.as_u16()));
                        continue;
                    }
                }
                let Some(id) = body["id"].as_i64() else {
                    rec.error("acquire without id");
                    continue;
                };
                let t1 = Instant::now();
                match client
                    .delete(format!("{base}/v1/locks/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => {
                        rec.latency("release", t1.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => rec.error(format!("release {}", r.status().as_u16())),
                    Err(_) => rec.error("release transport"),
                }
            }
            Ok(rec)
        });
    }
    let rec = progress.collect(set, "acquire+release").await?;
    let elapsed = started.elapsed();
    let cycles = done.load(Ordering::Relaxed);
    let names: Vec<String> = (0..args.resources)
        .map(|r| format!("{}/r{r}", t.run))
        .collect();
    let found = check(&t, &sup, &names).await?;
    let verdict = Verdict {
        ok: found.problems.is_empty(),
        checked: found.checked(),
        problems: found.problems,
    };
    let summary = Summary::new(
        Run {
            scenario: "locks",
            db: &t.db,
            clients: args.clients,
            elapsed,
            operation: "acquire+release",
            operations: cycles,
        },
        rec,
        verdict,
    );
    t.stop().await?;
    Ok(summary)
}

/// One grant as the server's history tells it.
struct Interval {
    lock: i64,
    exclusive: bool,
    from: DateTime<FixedOffset>,
    to: Option<DateTime<FixedOffset>>,
}

fn time(v: &Value) -> anyhow::Result<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(v.as_str().context("a time")?).context("an RFC 3339 time")
}

/// What the lock histories showed.
pub(super) struct LockFindings {
    /// Grants read, over all resources.
    pub grants: usize,
    /// Resources read.
    pub resources: usize,
    /// Resources with more history than one page: only their latest 1000
    /// events were checked.
    pub truncated: usize,
    /// Every violation found.
    pub problems: Vec<String>,
}

impl LockFindings {
    /// What was checked, in words.
    pub fn checked(&self) -> String {
        format!(
            "{} grants (per resource) on {} resources from the server's history: tokens increasing, no exclusive overlap{}",
            self.grants,
            self.resources,
            if self.truncated > 0 {
                format!(
                    " ({} resources had more than 1000 events: only their latest 1000 were checked)",
                    self.truncated
                )
            } else {
                String::new()
            }
        )
    }
}

/// From each resource's history (read by supervisor `sup`): tokens
/// strictly increase in grant order, and no exclusive grant overlaps
/// another grant of the same resource.
pub(super) async fn check(t: &Target, sup: &str, names: &[String]) -> anyhow::Result<LockFindings> {
    let mut problems = Vec::new();
    let (mut grants, mut truncated) = (0usize, 0usize);
    for name in names {
        let body: Value = t
            .client
            .get(format!(
                "{}/v1/resources/{}/history?limit=1000",
                t.url,
                name.replace('/', "%2F")
            ))
            .bearer_auth(sup)
            .send()
            .await?
            .json()
            .await?;
        let events = body["events"].as_array().context("events")?;
        if events.len() >= 1000 {
            truncated += 1;
        }
        // Within one instant the history lists ends before grants, so a
        // lock released in the millisecond it was granted may show its end
        // first: pair the events by lock, not by order.
        let mut by_lock: BTreeMap<i64, Interval> = BTreeMap::new();
        let mut ends: BTreeMap<i64, DateTime<FixedOffset>> = BTreeMap::new();
        let mut tokens: Vec<(i64, DateTime<FixedOffset>)> = Vec::new();
        for e in events {
            let lock = e["lock"].as_i64().context("lock id")?;
            let at = time(&e["at"])?;
            match e["kind"].as_str().unwrap_or_default() {
                "granted" => {
                    grants += 1;
                    tokens.push((e["token"].as_i64().context("token")?, at));
                    let exclusive = e["mode"] == "exclusive";
                    by_lock.insert(
                        lock,
                        Interval {
                            lock,
                            exclusive,
                            from: at,
                            to: None,
                        },
                    );
                }
                "upgraded" => {
                    if let Some(i) = by_lock.get_mut(&lock) {
                        i.exclusive = true;
                    }
                }
                "released" | "expired" | "forced" => {
                    ends.insert(lock, at);
                }
                _ => {}
            }
        }
        // Tokens strictly increase in the order of grant time.
        tokens.sort();
        for w in tokens.windows(2) {
            if w[0].0 == w[1].0 || w[1].1 < w[0].1 {
                problems.push(format!(
                    "{name}: token {} granted at {} but token {} at {}",
                    w[0].0, w[0].1, w[1].0, w[1].1
                ));
            }
        }
        let closed: Vec<Interval> = by_lock
            .into_values()
            .map(|mut i| {
                i.to = ends.get(&i.lock).copied();
                i
            })
            .collect();
        for (k, a) in closed.iter().enumerate() {
            for b in &closed[k + 1..] {
                let apart =
                    a.to.is_some_and(|to| to <= b.from) || b.to.is_some_and(|to| to <= a.from);
                if (a.exclusive || b.exclusive) && !apart {
                    problems.push(format!("{name}: locks {} and {} overlap", a.lock, b.lock));
                }
            }
        }
    }
    Ok(LockFindings {
        grants,
        resources: names.len(),
        truncated,
        problems,
    })
}
