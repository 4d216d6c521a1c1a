//! Real concurrency on the real clock: many holders locking random
//! subsets of a few resources in random modes, with short TTLs, waiting,
//! heartbeats, releases and abandoned locks while the sweeper runs. Every
//! grant is recorded with the interval it held; the record is checked for
//! mutual exclusion and fencing-token order, and against the store's own
//! history.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use baton::{Engine, EngineSettings};
use baton_core::{
    Error, FencingToken, LockEventKind, LockId, LockMode, LockRequest, Principal, ResourceName,
    Role, SystemClock, Timestamp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::TestStore;
use crate::harness::res;

/// One grant as its holder saw it: what, how, and from when to when it
/// held (its release, or its last known expiry if abandoned).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The lock.
    pub lock: LockId,
    /// Its holder.
    pub holder: String,
    /// Its resources.
    pub resources: Vec<ResourceName>,
    /// Its mode.
    pub mode: LockMode,
    /// Its fencing token.
    pub token: FencingToken,
    /// When it was granted.
    pub from: Timestamp,
    /// When it ended.
    pub to: Timestamp,
}

/// Checks recorded grants: on every resource, no exclusive grant's
/// interval overlaps any other grant's, and tokens strictly increase in
/// the order of the grants' times. Panics with the offending pair.
pub fn check_grants(grants: &[Grant]) {
    let mut by_resource: BTreeMap<&ResourceName, Vec<&Grant>> = BTreeMap::new();
    for g in grants {
        for r in &g.resources {
            by_resource.entry(r).or_default().push(g);
        }
    }
    for (r, mut gs) in by_resource {
        gs.sort_by_key(|g| g.token);
        for w in gs.windows(2) {
            assert!(w[0].token < w[1].token, "{r}: a token granted twice: {w:?}");
            assert!(
                w[0].from <= w[1].from,
                "{r}: a later grant has a smaller token: {w:?}"
            );
        }
        for (i, a) in gs.iter().enumerate() {
            for b in &gs[i + 1..] {
                if a.mode == LockMode::Exclusive || b.mode == LockMode::Exclusive {
                    assert!(
                        a.to <= b.from || b.to <= a.from,
                        "{r}: exclusive overlap:\n{a:?}\n{b:?}"
                    );
                }
            }
        }
    }
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn engine_with_holders(db: &TestStore, n: usize) -> (Engine, Vec<Principal>) {
    let settings = EngineSettings {
        sweep_interval: StdDuration::from_millis(100),
        ..EngineSettings::default()
    };
    let engine = Engine::new(db.store(), Arc::new(SystemClock), settings);
    let mut holders = Vec::with_capacity(n);
    for i in 0..n {
        let (p, _) = engine
            .bootstrap_principal(&format!("h-{i:02}"), Role::Operator)
            .await
            .unwrap();
        holders.push(p);
    }
    (engine, holders)
}

/// 16 holders, 30 rounds each, random subsets of 4 resources in random
/// modes, TTL 1 s, waiting up to 1 s or failing fast, holding a few
/// milliseconds, heartbeating, releasing — or abandoning one lock in ten
/// to expire under the running sweeper. No exclusive grant ever overlaps
/// another grant of a resource, tokens follow grant order, and the
/// store's history has exactly the grants seen.
pub async fn many_lockers_never_overlap(db: TestStore) {
    const HOLDERS: usize = 16;
    const ROUNDS: usize = 30;
    const NAMES: [&str; 4] = ["r0", "r1", "r2", "r3"];
    let (engine, holders) = engine_with_holders(&db, HOLDERS).await;
    let shutdown = CancellationToken::new();
    let sweeper = engine
        .spawn_sweeper(shutdown.clone())
        .await
        .expect("sweeper");
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut workers = JoinSet::new();
    for (n, who) in holders.into_iter().enumerate() {
        let (engine, grants) = (engine.clone(), grants.clone());
        workers.spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x10C4 + n as u64);
            for _ in 0..ROUNDS {
                let mut names: Vec<ResourceName> = NAMES
                    .iter()
                    .filter(|_| rng.random_bool(0.4))
                    .map(|r| res(r))
                    .collect();
                if names.is_empty() {
                    names.push(res(NAMES[rng.random_range(0..NAMES.len())]));
                }
                let mode = if rng.random_bool(0.5) {
                    LockMode::Shared
                } else {
                    LockMode::Exclusive
                };
                let req =
                    LockRequest::new(names, mode, who.name.clone(), None, 1, None, None).unwrap();
                let wait = if rng.random_bool(0.5) {
                    StdDuration::from_millis(rng.random_range(100..1000))
                } else {
                    StdDuration::ZERO
                };
                let lock = match engine.acquire_lock(&who, req, wait).await {
                    Ok((lock, _)) => lock,
                    Err(Error::Locked { .. }) => continue,
                    Err(e) => panic!("{} acquiring: {e}", who.name),
                };
                let mut to = lock.expires_at;
                tokio::time::sleep(StdDuration::from_millis(rng.random_range(0..20))).await;
                if rng.random_bool(0.3) {
                    match engine.heartbeat_lock(&who, lock.id, Some(1)).await {
                        Ok(l) => to = l.expires_at,
                        // A slow machine may let it run out: fine.
                        Err(Error::LockEnded { .. }) => {}
                        Err(e) => panic!("heartbeat: {e}"),
                    }
                }
                if rng.random_bool(0.9) {
                    match engine.release_lock(&who, lock.id).await {
                        Ok(l) => to = l.ended.expect("ended").at,
                        Err(Error::LockEnded { end, .. }) => to = end.at.min(to),
                        Err(e) => panic!("release: {e}"),
                    }
                }
                guard(&grants).push(Grant {
                    lock: lock.id,
                    holder: who.name.clone(),
                    resources: lock.resources.clone(),
                    mode: lock.mode,
                    token: lock.token,
                    from: lock.acquired_at,
                    to,
                });
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.expect("worker panicked");
    }
    shutdown.cancel();
    sweeper.await.expect("sweeper");
    let grants = guard(&grants).clone();
    assert!(grants.len() > HOLDERS, "only {} grants", grants.len());
    check_grants(&grants);
    // The store's history agrees: the same grants, resource by resource.
    for name in NAMES {
        let history = engine
            .store()
            .resource_history(&res(name), 1000)
            .await
            .unwrap();
        let mut theirs: Vec<(LockId, i64)> = history
            .iter()
            .filter(|e| e.kind == LockEventKind::Granted)
            .map(|e| (e.lock, e.token.0))
            .collect();
        let mut ours: Vec<(LockId, i64)> = grants
            .iter()
            .filter(|g| g.resources.contains(&res(name)))
            .map(|g| (g.lock, g.token.0))
            .collect();
        theirs.sort();
        ours.sort();
        assert_eq!(theirs, ours, "{name}");
    }
}

/// Eight concurrent copies of one request with the same idempotency key
/// (a client retrying on a flaky network): one grant, and every copy gets
/// that lock.
pub async fn concurrent_retries_with_one_key_get_one_lock(db: TestStore) {
    let (engine, holders) = engine_with_holders(&db, 1).await;
    let who = holders[0].clone();
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (engine, who) = (engine.clone(), who.clone());
        tasks.spawn(async move {
            let req = LockRequest::new(
                vec![res("customer/42")],
                LockMode::Exclusive,
                who.name.clone(),
                None,
                60,
                None,
                Some("save-42".into()),
            )
            .unwrap();
            engine.acquire_lock(&who, req, StdDuration::ZERO).await
        });
    }
    let mut ids = Vec::new();
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        let (lock, c) = r.expect("task").expect("every copy gets the lock");
        ids.push(lock.id);
        created += usize::from(c);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one lock: {ids:?}");
    assert_eq!(created, 1);
    let history = engine
        .store()
        .resource_history(&res("customer/42"), 100)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
}
