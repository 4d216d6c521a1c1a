//! `baton bench records`: clients doing read-modify-write with `If-Match`
//! on a few hot records. Each client owns one counter member in every
//! record (`c0`, `c1`, …) and adds one to it per write, so a lost update
//! shows as a counter smaller than the writes its client saw acknowledged;
//! the verdict also reads every record's history back from the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::RecordsArgs;
use super::report::{Progress, Recorder, Run, Summary, Verdict};
use super::server::Target;

/// What the clients saw of one record: per client, the writes it had
/// acknowledged and those whose outcome it never learned (transport
/// errors); every version an acknowledged write made, with its author.
#[derive(Default)]
pub(super) struct Ledger {
    acked: HashMap<(usize, usize), u64>,
    unknown: HashMap<(usize, usize), u64>,
    versions: Vec<(usize, i64, usize)>,
}

impl Ledger {
    /// Notes an acknowledged write by `client` on `record` making `version`.
    pub(super) fn ack(&mut self, record: usize, client: usize, version: i64) {
        *self.acked.entry((record, client)).or_default() += 1;
        self.versions.push((record, version, client));
    }

    /// Notes a write whose answer never arrived.
    pub(super) fn unknown(&mut self, record: usize, client: usize) {
        *self.unknown.entry((record, client)).or_default() += 1;
    }

    /// Acknowledged writes in all.
    pub(super) fn writes(&self) -> u64 {
        self.acked.values().sum()
    }
}

/// The `ETag` of an answer as the version number it quotes.
pub(super) fn etag(headers: &HeaderMap) -> Option<(String, i64)> {
    let tag = headers.get("etag")?.to_str().ok()?.to_owned();
    let v = tag.trim_matches('"').parse().ok()?;
    Some((tag, v))
}

/// The URL of record `key` in `collection`.
pub(super) fn record_url(base: &str, collection: &str, key: &str) -> String {
    format!("{base}/v1/collections/{collection}/records/{key}")
}

/// Creates a record with `data` (`If-None-Match: *`).
pub(super) async fn create(t: &Target, url: &str, data: &Value) -> anyhow::Result<()> {
    let resp = t
        .client
        .put(url)
        .bearer_auth(&t.admin)
        .header("if-none-match", "*")
        .json(data)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == StatusCode::CREATED,
        "creating {url}: {}",
        resp.status()
    );
    Ok(())
}

/// Every version of a record, oldest first, page by page.
pub(super) async fn history(t: &Target, url: &str) -> anyhow::Result<Vec<Value>> {
    let mut versions = Vec::new();
    let mut after = 0i64;
    loop {
        let page: Value = t
            .client
            .get(format!("{url}/history?limit=1000&after={after}"))
            .bearer_auth(&t.admin)
            .send()
            .await?
            .json()
            .await?;
        versions.extend(
            page["versions"]
                .as_array()
                .context("versions in a history page")?
                .iter()
                .cloned(),
        );
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return Ok(versions),
        }
    }
}

/// Runs the scenario.
pub async fn run(args: RecordsArgs) -> anyhow::Result<Summary> {
    let duration = args.common.duration()?;
    anyhow::ensure!(
        (1..=10_000).contains(&args.clients),
        "--clients must be 1..=10000"
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.records),
        "--records must be 1..=100000"
    );
    let merge = match args.policy.as_str() {
        "reject" => false,
        "merge" => true,
        other => anyhow::bail!("--policy must be reject or merge, not {other:?}"),
    };
    let t = Target::start(&args.common, args.clients).await?;
    let collection = format!("{}-records", t.run);
    let mut tokens = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        tokens.push(t.principal(&format!("{}-c{i}", t.run), "app").await?);
    }
    if merge {
        let resp = t
            .client
            .put(format!("{}/v1/collections/{collection}", t.url))
            .bearer_auth(&t.admin)
            .json(&json!({"conflict_policy": "merge"}))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "collection: {}", resp.status());
    }
    for k in 0..args.records {
        create(
            &t,
            &record_url(&t.url, &collection, &format!("r{k}")),
            &json!({"n": k}),
        )
        .await?;
    }

    let progress = Progress::start("read-modify-write");
    let done = progress.counter();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (client, base, collection, done, ledger) = (
            t.client.clone(),
            t.url.clone(),
            collection.clone(),
            done.clone(),
            ledger.clone(),
        );
        let records = args.records;
        set.spawn(async move {
            let mut rec = Recorder::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EC + i as u64);
            let member = format!("c{i}");
            while Instant::now() < deadline {
                let k = rng.random_range(0..records);
                let url = record_url(&base, &collection, &format!("r{k}"));
                let t0 = Instant::now();
                let Ok(resp) = client.get(&url).bearer_auth(&token).send().await else {
                    rec.error("get transport");
                    continue;
                };
                let status = resp.status();
                let Some((mut tag, _)) = etag(resp.headers()) else {
                    rec.error(format!("get {} without ETag", status.as_u16()));
                    continue;
                };
                let body: Value = resp.json().await.context("record")?;
                rec.latency("get", t0.elapsed());
                if status != StatusCode::OK {
                    rec.error(format!("get {}", status.as_u16()));
                    continue;
                }
                let mut data = body["data"].clone();
                // Write until acknowledged; a refusal carries the record as
                // it is now, so a retry needs no second read.
                while Instant::now() < deadline {
                    let n = data[&member].as_u64().unwrap_or(0);
                    let t1 = Instant::now();
                    let req = if merge {
                        client
                            .patch(&url)
                            .header("content-type", "application/merge-patch+json")
                            .body(json!({ &member: n + 1 }).to_string())
                    } else {
                        data[&member] = json!(n + 1);
                        client.put(&url).json(&data)
                    };
                    let resp = req
                        .bearer_auth(&token)
                        .header("if-match", &tag)
                        .send()
                        .await;
                    let Ok(resp) = resp else {
                        rec.error("write transport");
                        ledger.lock().expect("ledger").unknown(k, i);
                        break;
                    };
                    let status = resp.status();
                    let tagged = etag(resp.headers());
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    match (status, tagged) {
                        (StatusCode::OK, Some((_, v))) => {
                            rec.latency("write", t1.elapsed());
                            ledger.lock().expect("ledger").ack(k, i, v);
                            done.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        (StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT, Some((t, _))) => {
                            rec.latency("write refused", t1.elapsed());
                            rec.count("conflicts");
                            tag = t;
                            data = body["record"]["data"].clone();
                        }
                        (other, _) => {
                            rec.error(format!("write {}", other.as_u16()));
                            break;
                        }
                    }
                }
            }
            Ok(rec)
        });
    }
    let rec = progress.collect(set, "read-modify-write").await?;
    let elapsed = started.elapsed();
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let keys: Vec<String> = (0..args.records).map(|k| format!("r{k}")).collect();
    let verdict = check(
        &t,
        &collection,
        &keys,
        &ledger,
        &format!("{}-c", t.run),
        !merge,
        false,
    )
    .await?;
    let summary = Summary::new(
        Run {
            scenario: "records",
            db: &t.db,
            clients: args.clients,
            elapsed,
            operation: "acknowledged write",
            operations: ledger.writes(),
        },
        rec,
        verdict,
    );
    t.stop().await?;
    Ok(summary)
}

/// Checks every record against what the clients saw: each client's
/// counter equals its acknowledged writes (plus at most those whose answer
/// was lost), the versions run 1, 2, 3, … without gap or repeat, each
/// acknowledged version is in the history by its author, and (under
/// `reject`) every write was based on the version it replaced. With
/// `fenced`, each write also set the member `token` to the fencing token
/// of the lock it was made under, and those tokens must strictly increase
/// from version to version.
pub(super) async fn check(
    t: &Target,
    collection: &str,
    keys: &[String],
    ledger: &Ledger,
    author_prefix: &str,
    strict_bases: bool,
    fenced: bool,
) -> anyhow::Result<Verdict> {
    let mut problems = Vec::new();
    let mut authors: HashMap<(usize, i64), usize> = HashMap::new();
    for &(k, v, c) in &ledger.versions {
        if authors.insert((k, v), c).is_some() {
            problems.push(format!(
                "{}: version {v} acknowledged to two writers",
                keys[k]
            ));
        }
    }
    let mut versions_seen = 0usize;
    for (k, key) in keys.iter().enumerate() {
        let url = record_url(&t.url, collection, key);
        let current: Value = t
            .client
            .get(&url)
            .bearer_auth(&t.admin)
            .send()
            .await?
            .json()
            .await?;
        let data = &current["data"];
        let mut clients: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        for (&(r, c), &n) in &ledger.acked {
            if r == k {
                clients.entry(c).or_default().0 = n;
            }
        }
        for (&(r, c), &n) in &ledger.unknown {
            if r == k {
                clients.entry(c).or_default().1 = n;
            }
        }
        for (c, (acked, unknown)) in clients {
            let have = data[format!("c{c}")].as_u64().unwrap_or(0);
            if have < acked || have > acked + unknown {
                problems.push(format!(
                    "{key}: client {c} had {acked} writes acknowledged ({unknown} unanswered) but its counter is {have}"
                ));
            }
        }
        let history = history(t, &url).await?;
        versions_seen += history.len();
        for (i, v) in history.iter().enumerate() {
            let want = i as i64 + 1;
            let version = v["version"].as_i64().unwrap_or(0);
            if version != want {
                problems.push(format!(
                    "{key}: history entry {} is version {version}",
                    i + 1
                ));
                break;
            }
            if strict_bases && version > 1 && v["base_version"].as_i64() != Some(version - 1) {
                problems.push(format!(
                    "{key}: version {version} was based on {}, not on the version it replaced",
                    v["base_version"]
                ));
            }
            if let Some(&c) = authors.get(&(k, version))
                && v["by"].as_str() != Some(&format!("{author_prefix}{c}"))
            {
                problems.push(format!(
                    "{key}: version {version} acknowledged to client {c} but made by {}",
                    v["by"]
                ));
            }
        }
        if fenced {
            let mut previous: Option<i64> = None;
            for v in history.iter().skip(1) {
                let token = v["changes"].as_array().and_then(|cs| {
                    cs.iter()
                        .find(|c| c["path"] == "/token")
                        .and_then(|c| c["new"].as_i64())
                });
                match (previous, token) {
                    (_, None) => problems.push(format!(
                        "{key}: version {} did not change the fencing token",
                        v["version"]
                    )),
                    (Some(p), Some(t)) if t <= p => problems.push(format!(
                        "{key}: version {} was written under token {t}, after token {p}",
                        v["version"]
                    )),
                    _ => {}
                }
                previous = token.or(previous);
            }
        }
        let last = history.len() as i64;
        if current["version"].as_i64() != Some(last) {
            problems.push(format!(
                "{key}: the record is at version {} but its history ends at {last}",
                current["version"]
            ));
        }
        for &(r, v, c) in &ledger.versions {
            if r == k && v > last {
                problems.push(format!(
                    "{key}: version {v} acknowledged to client {c} is not in the history"
                ));
            }
        }
    }
    Ok(Verdict {
        ok: problems.is_empty(),
        checked: format!(
            "{} acknowledged writes, {versions_seen} versions of {} records: every counter equals its acknowledged increments (no lost update), versions 1, 2, 3, … without repeat, each by the writer it was acknowledged to{}",
            ledger.writes(),
            keys.len(),
            match (strict_bases, fenced) {
                (true, true) =>
                    ", each based on the version it replaced, fencing tokens increasing",
                (true, false) => ", each based on the version it replaced",
                (false, _) => "",
            }
        ),
        problems,
    })
}
