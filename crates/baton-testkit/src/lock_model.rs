//! A seeded random walk of lock operations, applied both to the store and
//! to [`baton_core::lock_model::LockTable`] (the lock manager in memory,
//! built from the rules); after every step the answers must be equal, and
//! at checkpoints every lock, every resource's status and history, and
//! every listing.
//!
//! The walk calls the `Store` trait directly, one operation at a time, on
//! a clock that only moves forward, so a store numbers locks, tickets and
//! tokens exactly as the model does.

use std::collections::BTreeMap;

use baton_core::lock_model::LockTable;
use baton_core::{
    Acquisition, LockFilter, LockId, LockMode, LockRequest, Queueing, ResourceName, Store,
    TicketId, Timestamp,
};
use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::TestStore;
use crate::harness::{res, t0};

/// The seed walked; fixed so a failure reproduces. (One walk per store:
/// the numbering of locks, tickets and tokens starts with the store.)
const SEED: u64 = 0x10C4_0001;
/// Operations in the walk.
const STEPS: usize = 600;
const HOLDERS: [&str; 3] = ["alice", "bob", "carol"];
const RESOURCES: [&str; 3] = ["a", "b", "c"];
/// Retention of ended locks and of idempotency keys in the walk's sweeps:
/// short, so forgetting is exercised too.
const RETENTION: Duration = Duration::minutes(5);
const KEY_RETENTION: Duration = Duration::minutes(2);

#[derive(Debug, Clone)]
enum Op {
    Acquire(LockRequest, Queueing),
    Withdraw(TicketId),
    Heartbeat(LockId, String, u32),
    Release(LockId, String),
    Force(LockId),
    Upgrade(LockId, String),
    Downgrade(LockId, String),
    Logout(String),
    Advance(Duration),
    Sweep,
}

fn random_request(rng: &mut StdRng) -> LockRequest {
    let mut resources: Vec<ResourceName> = RESOURCES
        .iter()
        .filter(|_| rng.random_bool(0.5))
        .map(|r| res(r))
        .collect();
    if resources.is_empty() {
        resources.push(res(RESOURCES[rng.random_range(0..RESOURCES.len())]));
    }
    let holder = HOLDERS[rng.random_range(0..HOLDERS.len())];
    LockRequest::new(
        resources,
        if rng.random_bool(0.5) {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        },
        holder.into(),
        rng.random_bool(0.3).then(|| "s1".to_owned()),
        [5, 20, 60][rng.random_range(0..3)],
        rng.random_bool(0.2).then_some(30),
        rng.random_bool(0.2)
            .then(|| format!("k{}", rng.random_range(0..2))),
    )
    .expect("a valid request")
}

fn random_op(rng: &mut StdRng, model: &LockTable, pending: &BTreeMap<TicketId, LockRequest>) -> Op {
    let ids: Vec<LockId> = model.locks.keys().copied().collect();
    let pick_lock = |rng: &mut StdRng| -> Option<(LockId, String)> {
        if ids.is_empty() {
            return None;
        }
        let id = ids[rng.random_range(0..ids.len())];
        // Mostly the holder, sometimes a stranger.
        let who = if rng.random_bool(0.85) {
            model.locks[&id].holder.clone()
        } else {
            HOLDERS[rng.random_range(0..HOLDERS.len())].to_owned()
        };
        Some((id, who))
    };
    loop {
        let op = match rng.random_range(0..100) {
            0..=34 => {
                let wait = rng.random_bool(0.4).then(|| Duration::seconds(30));
                Op::Acquire(random_request(rng), Queueing { ticket: None, wait })
            }
            35..=44 if !pending.is_empty() => {
                let (t, req) = pending
                    .iter()
                    .nth(rng.random_range(0..pending.len()))
                    .expect("picked");
                Op::Acquire(
                    req.clone(),
                    Queueing {
                        ticket: Some(*t),
                        wait: Some(Duration::seconds(30)),
                    },
                )
            }
            45..=48 if !pending.is_empty() => {
                let t = *pending
                    .keys()
                    .nth(rng.random_range(0..pending.len()))
                    .expect("picked");
                Op::Withdraw(t)
            }
            49..=58 => match pick_lock(rng) {
                Some((id, who)) => Op::Heartbeat(id, who, [5, 20, 60][rng.random_range(0..3)]),
                None => continue,
            },
            59..=68 => match pick_lock(rng) {
                Some((id, who)) => Op::Release(id, who),
                None => continue,
            },
            69..=71 => match pick_lock(rng) {
                Some((id, _)) => Op::Force(id),
                None => continue,
            },
            72..=76 => match pick_lock(rng) {
                Some((id, who)) => Op::Upgrade(id, who),
                None => continue,
            },
            77..=80 => match pick_lock(rng) {
                Some((id, who)) => Op::Downgrade(id, who),
                None => continue,
            },
            81..=83 => Op::Logout(HOLDERS[rng.random_range(0..HOLDERS.len())].to_owned()),
            84..=95 => Op::Advance(Duration::seconds(rng.random_range(1..25))),
            96..=99 => Op::Sweep,
            _ => continue,
        };
        return op;
    }
}

/// Compares everything the store can be asked about with the model.
async fn checkpoint(store: &dyn Store, model: &LockTable, now: Timestamp, ctx: &str) {
    let names: Vec<ResourceName> = RESOURCES.iter().map(|r| res(r)).collect();
    assert_eq!(
        store.lock_status(&names, now).await.expect("status"),
        model.status(&names, now),
        "status {ctx}"
    );
    for r in &names {
        assert_eq!(
            store.resource_history(r, 1000).await.expect("history"),
            model.resource_history(r, 1000),
            "history of {r} {ctx}"
        );
    }
    let filter = LockFilter {
        limit: 1000,
        ..LockFilter::default()
    };
    assert_eq!(
        store.list_locks(&filter, now).await.expect("list"),
        model.list(&filter, now),
        "listing {ctx}"
    );
    let last = model.locks.keys().last().copied().unwrap_or(0);
    for id in 1..=last + 1 {
        assert_eq!(
            store.lock(id, now).await,
            model.lock(id, now),
            "lock {id} {ctx}"
        );
    }
}

async fn walk(store: &dyn Store, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = LockTable::new();
    let mut pending: BTreeMap<TicketId, LockRequest> = BTreeMap::new();
    let mut now = t0();
    // (granted, blocked, queued, refused, other ok) answers, so the walk is
    // shown not to be vacuous.
    let mut seen = [0usize; 5];
    for step in 0..STEPS {
        let op = random_op(&mut rng, &model, &pending);
        let ctx = format!("at step {step} of seed {seed:#x}: {op:?}");
        match &op {
            Op::Acquire(req, q) => {
                let got = store.acquire_lock(req.clone(), *q, now).await;
                let want = model.acquire(req, *q, now);
                assert_eq!(got, want, "{ctx}");
                match &got {
                    Ok(Acquisition::Granted { .. }) => seen[0] += 1,
                    Ok(Acquisition::Blocked { ticket: None, .. }) => seen[1] += 1,
                    Ok(Acquisition::Blocked { .. }) => seen[2] += 1,
                    Err(_) => seen[3] += 1,
                }
                if let Some(t) = q.ticket {
                    pending.remove(&t);
                }
                if let Ok(Acquisition::Blocked {
                    ticket: Some(t), ..
                }) = got
                {
                    pending.insert(t, req.clone());
                }
            }
            Op::Withdraw(t) => {
                let got = store.withdraw_lock_ticket(*t, now).await.expect("withdraw");
                assert_eq!(got, model.withdraw(*t), "{ctx}");
                pending.remove(t);
            }
            Op::Heartbeat(id, who, ttl) => {
                let got = store.heartbeat_lock(*id, who, *ttl, now).await;
                seen[if got.is_ok() { 4 } else { 3 }] += 1;
                assert_eq!(got, model.heartbeat(*id, who, *ttl, now), "{ctx}");
            }
            Op::Release(id, who) => {
                let got = store.release_lock(*id, who, now).await;
                seen[if got.is_ok() { 4 } else { 3 }] += 1;
                assert_eq!(got, model.release(*id, who, now), "{ctx}");
            }
            Op::Force(id) => {
                let got = store
                    .force_release_lock(*id, "supervisor", "walk", now)
                    .await;
                assert_eq!(got, model.force(*id, "supervisor", "walk", now), "{ctx}");
            }
            Op::Upgrade(id, who) => {
                let got = store.upgrade_lock(*id, who, now).await;
                assert_eq!(got, model.upgrade(*id, who, now), "{ctx}");
            }
            Op::Downgrade(id, who) => {
                let got = store.downgrade_lock(*id, who, now).await;
                assert_eq!(got, model.downgrade(*id, who, now), "{ctx}");
            }
            Op::Logout(who) => {
                let got = store
                    .release_session_locks(who, "s1", now)
                    .await
                    .expect("logout");
                assert_eq!(got, model.release_session(who, "s1", now), "{ctx}");
            }
            Op::Advance(d) => now += *d,
            Op::Sweep => {
                let got = store
                    .sweep_locks(now, RETENTION, KEY_RETENTION)
                    .await
                    .expect("sweep");
                assert_eq!(got, model.sweep(now, RETENTION, KEY_RETENTION), "{ctx}");
            }
        }
        // Tickets whose wait ran out are not worth retrying.
        pending.retain(|t, _| model.tickets.get(t).is_some_and(|t| t.expires_at > now));
        if step % 25 == 24 {
            checkpoint(store, &model, now, &ctx).await;
        }
    }
    checkpoint(store, &model, now, "at the end").await;
    assert!(seen.iter().all(|n| *n >= 10), "a vacuous walk: {seen:?}");
}

/// Random lock operations agree with the lock manager model, answer for
/// answer, and every read agrees at checkpoints.
pub async fn random_lock_operations_agree_with_the_model(db: TestStore) {
    let store = db.store();
    walk(store.as_ref(), SEED).await;
}
