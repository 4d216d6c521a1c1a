//! Real concurrency on the real clock: many operators claiming and
//! completing at once, and leases that expire under them while the
//! sweeper runs. Every claim and completion is recorded and the record is
//! checked against the guarantees and against the store's own history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use baton::{Engine, EngineSettings};
use baton_core::{
    ClaimRequest, CompleteRequest, Error, EventKind, FencingToken, ItemId, ItemState, Lease,
    NewItem, Principal, QueueConfig, Role, SystemClock,
};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::TestStore;
use crate::harness::{kind, q};

/// An engine on the system clock over `db`, with an app principal and
/// `n` operators.
async fn engine_with_operators(
    db: &TestStore,
    settings: EngineSettings,
    n: usize,
) -> (Engine, Principal, Vec<Principal>) {
    let engine = Engine::new(db.store(), Arc::new(SystemClock), settings);
    let (app, _) = engine.bootstrap_principal("app", Role::App).await.unwrap();
    let mut operators = Vec::with_capacity(n);
    for i in 0..n {
        let (p, _) = engine
            .bootstrap_principal(&format!("op-{i:02}"), Role::Operator)
            .await
            .unwrap();
        operators.push(p);
    }
    (engine, app, operators)
}

/// Enqueues `n` items concurrently (so a batching backend batches).
async fn enqueue_many(engine: &Engine, app: &Principal, queue: &str, n: usize) -> Vec<ItemId> {
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (engine, app) = (engine.clone(), app.clone());
        let new = NewItem::new(q(queue), kind("k"), json!({ "n": i }), 0, 0, None).unwrap();
        tasks.spawn(async move { engine.enqueue(&app, new).await });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        let (item, created) = r.expect("enqueue task").expect("enqueue");
        assert!(created);
        ids.push(item.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "every enqueue created its own item");
    ids
}

/// One claim as recorded by the claimer.
#[derive(Debug, Clone)]
struct ClaimRecord {
    item: ItemId,
    lease: Lease,
}

/// Checks a record against the store's history of every item: each item
/// was completed exactly once, by the holder of its last claim with that
/// claim's token; the claims in history are the claims recorded; tokens
/// strictly increase; and no two leases of an item overlap in time.
async fn check_against_history(
    engine: &Engine,
    ids: &[ItemId],
    claims: &[ClaimRecord],
    completions: &[(ItemId, String, FencingToken)],
) {
    let mut recorded: BTreeMap<ItemId, Vec<&Lease>> = BTreeMap::new();
    for c in claims {
        recorded.entry(c.item).or_default().push(&c.lease);
    }
    let mut completed: HashMap<ItemId, Vec<(&str, FencingToken)>> = HashMap::new();
    for (id, holder, token) in completions {
        completed.entry(*id).or_default().push((holder, *token));
    }
    for &id in ids {
        let mut leases = recorded.remove(&id).unwrap_or_default();
        leases.sort_by_key(|l| l.token);
        let tokens: Vec<i64> = leases.iter().map(|l| l.token.0).collect();
        assert!(
            tokens.windows(2).all(|w| w[0] < w[1]),
            "item {id}: tokens not strictly increasing: {tokens:?}"
        );
        for w in leases.windows(2) {
            assert!(
                w[1].claimed_at >= w[0].expires_at,
                "item {id}: lease {:?} granted while {:?} was live",
                w[1],
                w[0]
            );
        }
        let done = completed.remove(&id).unwrap_or_default();
        assert_eq!(done.len(), 1, "item {id} completed {} times", done.len());
        let (holder, token) = done[0];
        let last = leases.last().expect("a completed item was claimed");
        assert_eq!(
            (holder, token),
            (last.holder.as_str(), last.token),
            "item {id}: completed with a token that was not the latest"
        );
        let history = engine.store().item_history(id).await.unwrap();
        let claimed: Vec<(String, i64)> = history
            .iter()
            .filter(|e| e.kind == EventKind::Claimed)
            .map(|e| {
                (
                    e.actor.clone().unwrap_or_default(),
                    e.token.map_or(0, |t| t.0),
                )
            })
            .collect();
        let recorded_claims: Vec<(String, i64)> = leases
            .iter()
            .map(|l| (l.holder.clone(), l.token.0))
            .collect();
        assert_eq!(claimed, recorded_claims, "item {id}: history disagrees");
        let completions: Vec<_> = history
            .iter()
            .filter(|e| e.kind == EventKind::Completed)
            .collect();
        assert_eq!(completions.len(), 1, "item {id}: {history:?}");
        assert_eq!(completions[0].token, Some(token));
        assert_eq!(completions[0].actor.as_deref(), Some(holder));
        assert_eq!(history.last().map(|e| e.kind), Some(EventKind::Completed));
        let item = engine.store().item(id).await.unwrap();
        assert_eq!(item.state, ItemState::Done);
        assert_eq!(item.token, token);
    }
    assert!(recorded.is_empty(), "claims of unknown items: {recorded:?}");
    assert!(completed.is_empty(), "completions of unknown items");
}

/// 500 items, 32 operators each claiming and completing in a loop until
/// the queue is empty: every item is completed exactly once, and the
/// store's history agrees with what the operators saw.
pub async fn many_claimers_complete_every_item_exactly_once(db: TestStore) {
    const ITEMS: usize = 500;
    const WORKERS: usize = 32;
    let (engine, app, operators) =
        engine_with_operators(&db, EngineSettings::default(), WORKERS).await;
    let ids = enqueue_many(&engine, &app, "race", ITEMS).await;
    let claims = Arc::new(Mutex::new(Vec::new()));
    let completions = Arc::new(Mutex::new(Vec::new()));
    let mut workers = JoinSet::new();
    for who in operators {
        let (engine, claims, completions) = (engine.clone(), claims.clone(), completions.clone());
        workers.spawn(async move {
            let mut served = 0usize;
            loop {
                let req = ClaimRequest::new(q("race"), vec![], who.name.clone(), 30, None).unwrap();
                let Some(c) = engine.claim(&who, req, StdDuration::ZERO).await.unwrap() else {
                    break;
                };
                assert_eq!(c.lease.holder, who.name);
                lock(&claims).push(ClaimRecord {
                    item: c.item.id,
                    lease: c.lease.clone(),
                });
                let done =
                    CompleteRequest::new(c.lease.token, "accepted".into(), None, None).unwrap();
                let item = engine.complete(&who, c.item.id, done).await.unwrap();
                assert_eq!(item.state, ItemState::Done);
                lock(&completions).push((c.item.id, who.name.clone(), c.lease.token));
                served += 1;
            }
            served
        });
    }
    let mut total = 0;
    while let Some(served) = workers.join_next().await {
        total += served.expect("worker panicked");
    }
    assert_eq!(total, ITEMS);
    let claims = lock(&claims).clone();
    let completions = lock(&completions).clone();
    assert_eq!(claims.len(), ITEMS, "no item was claimed twice");
    check_against_history(&engine, &ids, &claims, &completions).await;
    let stats = engine.store().queue_stats(engine.now()).await.unwrap();
    let s = stats.iter().find(|s| s.queue == q("race")).unwrap();
    assert_eq!(
        (s.done, s.ready, s.leased, s.parked),
        (ITEMS as u64, 0, 0, 0)
    );
}

/// 200 items with 1-second leases; half of 16 workers stall on their
/// first item past its lease and only then try to complete it, while the
/// sweeper runs. Every stalled completion is refused as stale, every item
/// ends done exactly once with its latest token, and no two leases of an
/// item ever overlapped.
pub async fn stalled_workers_never_complete_with_a_stale_token(db: TestStore) {
    const ITEMS: usize = 200;
    const WORKERS: usize = 16;
    const STALL: StdDuration = StdDuration::from_millis(1_300);
    let settings = EngineSettings {
        sweep_interval: StdDuration::from_millis(100),
        ..EngineSettings::default()
    };
    let (engine, _app, operators) = engine_with_operators(&db, settings, WORKERS).await;
    let (supervisor, _) = engine
        .bootstrap_principal("supervisor", Role::Supervisor)
        .await
        .unwrap();
    // Expiries must not park anything in this test.
    let config = QueueConfig {
        max_attempts: 100,
        ..QueueConfig::default()
    };
    engine
        .set_queue_config(&supervisor, &q("stall"), &config)
        .await
        .unwrap();
    let ids = enqueue_many(&engine, &_app, "stall", ITEMS).await;
    let shutdown = CancellationToken::new();
    let sweeper = engine.spawn_sweeper(shutdown.clone());
    let done = Arc::new(AtomicUsize::new(0));
    let claims = Arc::new(Mutex::new(Vec::new()));
    let completions = Arc::new(Mutex::new(Vec::new()));
    let stale_refusals = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + StdDuration::from_secs(30);
    let mut workers = JoinSet::new();
    for (n, who) in operators.into_iter().enumerate() {
        let (engine, done, claims, completions, stale_refusals) = (
            engine.clone(),
            done.clone(),
            claims.clone(),
            completions.clone(),
            stale_refusals.clone(),
        );
        let mut stall_next = n % 2 == 0;
        workers.spawn(async move {
            while done.load(Ordering::SeqCst) < ITEMS {
                assert!(Instant::now() < deadline, "items left undone");
                let req = ClaimRequest::new(q("stall"), vec![], who.name.clone(), 1, None).unwrap();
                let wait = StdDuration::from_millis(300);
                let Some(c) = engine.claim(&who, req, wait).await.unwrap() else {
                    continue;
                };
                lock(&claims).push(ClaimRecord {
                    item: c.item.id,
                    lease: c.lease.clone(),
                });
                let stalled = std::mem::take(&mut stall_next);
                if stalled {
                    tokio::time::sleep(STALL).await;
                }
                let req =
                    CompleteRequest::new(c.lease.token, "accepted".into(), None, None).unwrap();
                match engine.complete(&who, c.item.id, req).await {
                    Ok(item) => {
                        assert!(
                            !stalled,
                            "a completion after the lease ran out was accepted"
                        );
                        assert_eq!(item.state, ItemState::Done);
                        lock(&completions).push((c.item.id, who.name.clone(), c.lease.token));
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    // Allowed for anyone whose lease ran out (certain for
                    // the stalled, possible on a very slow machine).
                    Err(Error::StaleToken { .. }) => {
                        lock(&stale_refusals).push((c.item.id, c.lease.token, stalled));
                    }
                    Err(e) => panic!("{} completing {}: {e}", who.name, c.item.id),
                }
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.expect("worker panicked");
    }
    shutdown.cancel();
    sweeper.await.expect("sweeper");
    let claims = lock(&claims).clone();
    let completions = lock(&completions).clone();
    let refusals = lock(&stale_refusals).clone();
    let stalled: Vec<_> = refusals.iter().filter(|r| r.2).collect();
    assert_eq!(
        stalled.len(),
        WORKERS / 2,
        "every stalled completion refused"
    );
    assert!(
        claims.iter().any(|c| c.lease.token > FencingToken(1)),
        "expired leases were claimed again"
    );
    assert_eq!(completions.len(), ITEMS);
    check_against_history(&engine, &ids, &claims, &completions).await;
    // The refused completions changed nothing: every expiry is in history.
    for (id, token, _) in &refusals {
        let history = engine.store().item_history(*id).await.unwrap();
        assert!(
            history
                .iter()
                .any(|e| e.kind == EventKind::Expired && e.token == Some(*token)),
            "item {id}: lease {token} ended without an expiry event: {history:?}"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
