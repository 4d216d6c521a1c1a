//! Micro-benchmarks of the rules every request runs: a claim, the lease
//! check of a heartbeat/complete, a completion, and the expiry check.
//! `cargo bench -p baton-core`.

use std::hint::black_box;

use baton_core::{
    ClaimRequest, CompleteRequest, Kind, NewItem, QueueConfig, QueueName, Timestamp, rules,
};
use chrono::{DateTime, Duration};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn t0() -> Timestamp {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time")
}

fn item() -> baton_core::Item {
    let new = NewItem::new(
        QueueName::new("refunds").expect("name"),
        Kind::new("refund").expect("kind"),
        json!({"order": 1042, "amount": "19.90"}),
        5,
        0,
        None,
    )
    .expect("item");
    let (mut item, _) = rules::enqueue(&new, "shop", t0());
    item.id = 1;
    item
}

fn bench(c: &mut Criterion) {
    let req = ClaimRequest::new(
        QueueName::new("refunds").expect("name"),
        vec![],
        "alice".into(),
        300,
        None,
    )
    .expect("request");
    let config = QueueConfig::default();
    let ready = item();
    let mut leased = ready.clone();
    rules::claim(&mut leased, &req, t0()).expect("claim");
    let token = leased.token;
    let done = CompleteRequest::new(token, "accepted".into(), None, None).expect("complete");
    let now = t0() + Duration::seconds(10);

    c.bench_function("claimable + claim", |b| {
        b.iter(|| {
            let mut i = ready.clone();
            assert!(rules::claimable(&i, &req, t0()));
            black_box(rules::claim(&mut i, black_box(&req), t0()).expect("claim"))
        })
    });
    c.bench_function("check_lease", |b| {
        b.iter(|| black_box(rules::check_lease(black_box(&leased), "alice", token, now).is_ok()))
    });
    c.bench_function("complete", |b| {
        b.iter(|| {
            let mut i = leased.clone();
            black_box(rules::complete(&mut i, "alice", black_box(&done), &config, now).expect("ok"))
        })
    });
    c.bench_function("expire (live lease: no-op)", |b| {
        b.iter(|| {
            let mut i = leased.clone();
            black_box(rules::expire(&mut i, &config, now))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
