//! `baton bench mixed`: a desk. Operators claim an item whose payload names
//! a customer, take an exclusive lock on the customer's record (its
//! collection has `lock_policy: write`, so the write must present the
//! lock), read the record, write it back with `If-Match` and the lock
//! (`Baton-Lock`; the server checks the lock's fencing token in the
//! write's transaction), release the lock and complete the item.
//!
//! The verdict combines the other scenarios': no item completed twice or
//! under overlapping leases, no lost update (each operator's counter in
//! each customer equals its acknowledged writes; versions without gaps,
//! each based on the one it replaced, fencing tokens increasing) and no
//! overlapping exclusive locks in the customers' lock histories.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::MixedArgs;
use super::queue::{self, Lease, time};
use super::records::{self, Ledger, etag, record_url};
use super::report::{Progress, Recorder, Run, Summary, Verdict};
use super::server::Target;

/// Where the operators work.
#[derive(Clone)]
struct Desk {
    client: reqwest::Client,
    base: String,
    queue: String,
    collection: String,
}

/// One operator's item, from claim to completion. `Ok(false)` when the
/// queue is drained.
async fn handle(
    desk: &Desk,
    token: &str,
    me: usize,
    rec: &mut Recorder,
    ledger: &Mutex<Ledger>,
    leases: &Mutex<Vec<Lease>>,
    done: &AtomicU64,
) -> anyhow::Result<bool> {
    let Desk {
        client,
        base,
        queue,
        collection,
    } = desk;
    let t0 = Instant::now();
    let Ok(resp) = client
        .post(format!("{base}/v1/queues/{queue}/claim"))
        .bearer_auth(token)
        .json(&json!({"lease_seconds": 300}))
        .send()
        .await
    else {
        rec.error("claim transport");
        return Ok(true);
    };
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NO_CONTENT => return Ok(false),
        other => {
            rec.error(format!("claim {}", other.as_u16()));
            return Ok(true);
        }
    }
    let body: Value = resp.json().await.context("claim answer")?;
    rec.latency("claim", t0.elapsed());
    let item = body["item"]["id"].as_i64().context("item id")?;
    let lease = body["lease"]["token"].as_i64().context("lease token")?;
    let from = time(&body["lease"]["claimed_at"]).context("claimed_at")?;
    let customer = body["item"]["payload"]["customer"]
        .as_u64()
        .context("customer in the payload")? as usize;
    let key = format!("k{customer}");

    // Anything but success puts the item back for someone else.
    let give_back = async |rec: &mut Recorder, why: String| -> anyhow::Result<bool> {
        rec.error(why);
        let _ = client
            .post(format!("{base}/v1/items/{item}/release"))
            .bearer_auth(token)
            .json(&json!({ "token": lease }))
            .send()
            .await;
        Ok(true)
    };

    let t1 = Instant::now();
    let resp = client
        .post(format!("{base}/v1/locks"))
        .bearer_auth(token)
        .json(&json!({
            "resources": [format!("{collection}/{key}")],
            "mode": "exclusive",
            "ttl_seconds": 60,
            "wait_seconds": 30,
        }))
        .send()
        .await;
    let Ok(resp) = resp else {
        return give_back(rec, "lock transport".into()).await;
    };
    if resp.status() != StatusCode::CREATED {
        return give_back(rec, format!("lock {}", resp.status().as_u16())).await;
    }
    let lock: Value = resp.json().await.context("lock answer")?;
    rec.latency("lock", t1.elapsed());
    let lock_id = lock["id"].as_i64().context("lock id")?;
    let fencing = lock["token"].as_i64().context("lock token")?;

    let url = record_url(base, collection, &key);
    let t2 = Instant::now();
    let read = client.get(&url).bearer_auth(token).send().await;
    let written = match read {
        Ok(resp) if resp.status() == StatusCode::OK => {
            let tag = etag(resp.headers());
            let body: Value = resp.json().await.context("record")?;
            rec.latency("get record", t2.elapsed());
            let mut data = body["data"].clone();
            let member = format!("c{me}");
            data[&member] = json!(data[&member].as_u64().unwrap_or(0) + 1);
            data["token"] = json!(fencing);
            data["item"] = json!(item);
            let t3 = Instant::now();
            let (tag, _) = tag.context("an ETag")?;
            let resp = client
                .put(&url)
                .bearer_auth(token)
                .header("if-match", tag)
                .header("baton-lock", lock_id.to_string())
                .json(&data)
                .send()
                .await;
            match resp {
                Ok(resp) => match (resp.status(), etag(resp.headers())) {
                    (StatusCode::OK, Some((_, v))) => {
                        rec.latency("put record", t3.elapsed());
                        ledger.lock().expect("ledger").ack(customer, me, v);
                        true
                    }
                    (other, _) => {
                        rec.error(format!("put record {}", other.as_u16()));
                        false
                    }
                },
                Err(_) => {
                    rec.error("put record transport");
                    ledger.lock().expect("ledger").unknown(customer, me);
                    false
                }
            }
        }
        Ok(resp) => {
            rec.error(format!("get record {}", resp.status().as_u16()));
            false
        }
        Err(_) => {
            rec.error("get record transport");
            false
        }
    };

    let t4 = Instant::now();
    match client
        .delete(format!("{base}/v1/locks/{lock_id}"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) if r.status() == StatusCode::NO_CONTENT => rec.latency("unlock", t4.elapsed()),
        Ok(r) => rec.error(format!("unlock {}", r.status().as_u16())),
        Err(_) => rec.error("unlock transport"),
    }
    if !written {
        return give_back(rec, "record not written".into()).await;
    }

    let t5 = Instant::now();
    let Ok(resp) = client
        .post(format!("{base}/v1/items/{item}/complete"))
        .bearer_auth(token)
        .json(&json!({"token": lease, "outcome": "accepted"}))
        .send()
        .await
    else {
        rec.error("complete transport");
        return Ok(true);
    };
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    rec.latency("complete", t5.elapsed());
    if status != StatusCode::OK {
        rec.error(format!("complete {}", status.as_u16()));
        return Ok(true);
    }
    let to = time(&body["completion"]["at"]).context("completion time")?;
    leases.lock().expect("lease log").push(Lease {
        item,
        token: lease,
        from,
        to,
    });
    done.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

/// Runs the scenario.
pub async fn run(args: MixedArgs) -> anyhow::Result<Summary> {
    let duration = args.common.duration()?;
    anyhow::ensure!(
        (1..=10_000).contains(&args.operators),
        "--operators must be 1..=10000"
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.customers),
        "--customers must be 1..=100000"
    );
    let t = Target::start(&args.common, args.operators).await?;
    let desk = Desk {
        client: t.client.clone(),
        base: t.url.clone(),
        queue: t.run.clone(),
        collection: format!("{}-customers", t.run),
    };
    let app = t.principal(&format!("{}-app", t.run), "app").await?;
    let sup = t.principal(&format!("{}-sup", t.run), "supervisor").await?;
    let mut ops = Vec::with_capacity(args.operators);
    for i in 0..args.operators {
        ops.push(t.principal(&format!("{}-op{i}", t.run), "operator").await?);
    }
    let keys: Vec<String> = (0..args.customers).map(|k| format!("k{k}")).collect();
    let progress = Progress::start("creating customers, enqueueing");
    for key in &keys {
        records::create(
            &t,
            &record_url(&t.url, &desk.collection, key),
            &json!({"name": key}),
        )
        .await?;
    }
    // Lock-aware from now on: a write must present its writer's lock.
    let resp = t
        .client
        .put(format!("{}/v1/collections/{}", t.url, desk.collection))
        .bearer_auth(&t.admin)
        .json(&json!({"lock_policy": "write"}))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "collection: {}", resp.status());
    let customers = args.customers as u64;
    queue::fill(
        &t,
        &app,
        &desk.queue,
        args.items,
        32,
        Arc::new(move |i| json!({ "customer": i.wrapping_mul(7919) % customers })),
    )
    .await?;
    progress.finish();

    let progress = Progress::start("claim+lock+edit+unlock+complete");
    let done = progress.counter();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let leases: Arc<Mutex<Vec<Lease>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + duration;
    let mut set = JoinSet::new();
    for (me, token) in ops.into_iter().enumerate() {
        let (desk, done, ledger, leases) =
            (desk.clone(), done.clone(), ledger.clone(), leases.clone());
        set.spawn(async move {
            let mut rec = Recorder::default();
            while Instant::now() < deadline {
                if !handle(&desk, &token, me, &mut rec, &ledger, &leases, &done).await? {
                    break;
                }
            }
            Ok(rec)
        });
    }
    let rec = progress.collect(set, "items handled").await?;
    let elapsed = started.elapsed();

    let leases = std::mem::take(&mut *leases.lock().expect("lease log"));
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let claims = queue::check(&t, &desk.queue, &leases, 0).await?;
    let writes = records::check(
        &t,
        &desk.collection,
        &keys,
        &ledger,
        &format!("{}-op", t.run),
        true,
        true,
    )
    .await?;
    let names: Vec<String> = keys
        .iter()
        .map(|k| format!("{}/{k}", desk.collection))
        .collect();
    let locks = super::locks::check(&t, &sup, &names).await?;
    let mut problems = claims.problems;
    problems.extend(writes.problems);
    problems.extend(locks.problems.iter().cloned());
    let verdict = Verdict {
        ok: problems.is_empty(),
        checked: format!(
            "claims: {}; records: {}; locks: {}",
            claims.checked,
            writes.checked,
            locks.checked()
        ),
        problems,
    };
    let summary = Summary::new(
        Run {
            scenario: "mixed",
            db: &t.db,
            clients: args.operators,
            elapsed,
            operation: "item handled",
            operations: leases.len() as u64,
        },
        rec,
        verdict,
    );
    t.stop().await?;
    Ok(summary)
}
