//! Waiting for locks through the engine: a waiting request is granted
//! when what stands in its way goes (release, downgrade, a recorded
//! expiry, a request ahead giving up), in FIFO order per resource, so a
//! waiting exclusive request is not starved by shared ones; it gives up
//! with the conflicts when its wait runs out, leaving nothing queued.
//! Timing assertions are deliberately loose: "promptly" means well within
//! the wait.

use std::time::{Duration as StdDuration, Instant};

use baton_core::{Error, Lock, LockMode, LockRequest, Principal, Result};
use tokio::task::JoinHandle;

use crate::TestStore;
use crate::harness::{Harness, LOCK_TTL, secs};

use LockMode::{Exclusive as X, Shared as S};

/// How long the waiting requests in this module are willing to wait.
const WAIT: StdDuration = StdDuration::from_secs(10);
/// "Promptly": well under [`WAIT`], generous for a loaded machine.
const PROMPTLY: StdDuration = StdDuration::from_secs(5);

fn start_waiting(
    h: &Harness,
    who: &Principal,
    req: LockRequest,
    wait: StdDuration,
) -> JoinHandle<Result<(Lock, bool)>> {
    let engine = h.engine.clone();
    let who = who.clone();
    tokio::spawn(async move { engine.acquire_lock(&who, req, wait).await })
}

/// Waits until `n` requests are queued for `resource` (the store counts
/// them in its status), so the test acts only once they wait.
async fn until_queued(h: &Harness, resource: &str, n: u32) {
    let deadline = Instant::now() + StdDuration::from_secs(5);
    loop {
        let waiting = h.status(&[resource]).await[0].waiting;
        if waiting == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} requests queued for {resource}, have {waiting}"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

async fn granted(task: JoinHandle<Result<(Lock, bool)>>) -> Lock {
    tokio::time::timeout(PROMPTLY, task)
        .await
        .expect("the waiting request was not granted promptly")
        .expect("the request task panicked")
        .expect("the request failed")
        .0
}

async fn still_waiting(task: &JoinHandle<Result<(Lock, bool)>>) {
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    assert!(!task.is_finished(), "the request should still wait");
}

/// A waiting request is granted as soon as the holder releases.
pub async fn waiting_request_is_granted_when_the_holder_releases(db: TestStore) {
    let h = Harness::new(db).await;
    let held = h.lock(&h.alice, &["a"], X).await;
    let bob = start_waiting(&h, &h.bob, h.lock_request(&h.bob, &["a"], X), WAIT);
    until_queued(&h, "a", 1).await;
    still_waiting(&bob).await;
    h.engine.release_lock(&h.alice, held.id).await.unwrap();
    let lock = granted(bob).await;
    assert_eq!(lock.holder, "bob");
    assert!(lock.token > held.token);
    assert_eq!(h.status(&["a"]).await[0].waiting, 0, "the ticket is gone");
}

/// A waiting request whose wait runs out is refused with the conflicts
/// and leaves nothing queued.
pub async fn waiting_request_times_out_with_the_conflicts(db: TestStore) {
    let h = Harness::new(db).await;
    h.lock(&h.alice, &["a"], X).await;
    let started = Instant::now();
    let r = h
        .engine
        .acquire_lock(
            &h.bob,
            h.lock_request(&h.bob, &["a"], S),
            StdDuration::from_millis(300),
        )
        .await;
    assert!(started.elapsed() >= StdDuration::from_millis(290), "waited");
    assert_err!(r, Error::Locked { conflicts, .. } if conflicts[0].holder == "alice");
    assert_eq!(h.status(&["a"]).await[0].waiting, 0, "withdrawn");
    assert_eq!(h.lock_history("a").await.len(), 1, "only alice's grant");
    assert_err!(
        h.engine
            .acquire_lock(&h.bob, h.lock_request(&h.bob, &["a"], S), StdDuration::from_secs(61))
            .await,
        Error::Invalid { field, .. } if field == "wait_seconds"
    );
}

/// A waiting exclusive request is not starved by a stream of shared ones:
/// later shared requests queue behind it (or fail fast, naming it), it
/// gets the resource when the shared holder leaves, and they get it
/// together after it.
pub async fn waiting_exclusive_is_not_starved_by_shared_requests(db: TestStore) {
    let h = Harness::new(db).await;
    let reader = h.lock(&h.alice, &["doc"], S).await;
    let writer = start_waiting(&h, &h.bob, h.lock_request(&h.bob, &["doc"], X), WAIT);
    until_queued(&h, "doc", 1).await;
    // A reader failing fast is refused although it is compatible with the
    // reader holding the resource: the writer waits ahead.
    let e = assert_err!(
        h.try_lock(&h.carol, h.lock_request(&h.carol, &["doc"], S))
            .await,
        Error::Locked { .. }
    );
    assert!(matches!(e, Error::Locked { ref conflicts, .. }
        if conflicts.len() == 1 && conflicts[0].waiting && conflicts[0].holder == "bob" && conflicts[0].mode == X));
    // Waiting readers queue behind the writer.
    let dave = h.operator("dave").await;
    let r1 = start_waiting(&h, &h.carol, h.lock_request(&h.carol, &["doc"], S), WAIT);
    until_queued(&h, "doc", 2).await;
    let r2 = start_waiting(&h, &dave, h.lock_request(&dave, &["doc"], S), WAIT);
    until_queued(&h, "doc", 3).await;
    still_waiting(&writer).await;
    still_waiting(&r1).await;
    h.engine.release_lock(&h.alice, reader.id).await.unwrap();
    let w = granted(writer).await;
    assert_eq!(w.mode, X);
    still_waiting(&r1).await;
    still_waiting(&r2).await;
    h.engine.release_lock(&h.bob, w.id).await.unwrap();
    let (l1, l2) = (granted(r1).await, granted(r2).await);
    assert!(l1.token > w.token && l2.token > w.token);
    let status = &h.status(&["doc"]).await[0];
    assert_eq!((status.holders.len(), status.waiting), (2, 0));
}

/// A waiting request is woken when the sweeper records the expiry of the
/// lock in its way.
pub async fn waiting_request_is_woken_by_a_recorded_expiry(db: TestStore) {
    let h = Harness::new(db).await;
    h.lock(&h.alice, &["a"], X).await;
    let bob = start_waiting(&h, &h.bob, h.lock_request(&h.bob, &["a"], X), WAIT);
    until_queued(&h, "a", 1).await;
    still_waiting(&bob).await;
    h.advance(secs(LOCK_TTL.into()));
    h.engine.sweep_locks().await.unwrap();
    assert_eq!(granted(bob).await.holder, "bob");
}

/// A waiting shared request is granted when the exclusive holder
/// downgrades.
pub async fn waiting_request_is_woken_by_a_downgrade(db: TestStore) {
    let h = Harness::new(db).await;
    let held = h.lock(&h.alice, &["a"], X).await;
    let bob = start_waiting(&h, &h.bob, h.lock_request(&h.bob, &["a"], S), WAIT);
    until_queued(&h, "a", 1).await;
    h.engine.downgrade_lock(&h.alice, held.id).await.unwrap();
    let lock = granted(bob).await;
    assert_eq!(lock.mode, S);
    assert!(h.get_lock(held.id).await.ended.is_none());
}

/// A request that gives up (its caller went away) leaves the queue, and
/// whoever queued behind it moves up.
pub async fn abandoned_request_leaves_the_queue(db: TestStore) {
    let h = Harness::new(db).await;
    let reader = h.lock(&h.alice, &["a"], S).await;
    let writer = start_waiting(&h, &h.bob, h.lock_request(&h.bob, &["a"], X), WAIT);
    until_queued(&h, "a", 1).await;
    let carol = start_waiting(&h, &h.carol, h.lock_request(&h.carol, &["a"], S), WAIT);
    until_queued(&h, "a", 2).await;
    still_waiting(&carol).await;
    // The writer's caller goes away: its ticket is withdrawn, and carol,
    // compatible with the reader, is granted.
    writer.abort();
    let c = granted(carol).await;
    assert_eq!(c.mode, S);
    until_queued(&h, "a", 0).await;
    assert!(h.get_lock(reader.id).await.ended.is_none());
}

/// A request for several resources waits until all of them are free and
/// takes them together.
pub async fn waiting_request_takes_all_its_resources_at_once(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.lock(&h.alice, &["a"], X).await;
    let b = h.lock(&h.carol, &["b"], X).await;
    let bob = start_waiting(&h, &h.bob, h.lock_request(&h.bob, &["a", "b"], X), WAIT);
    until_queued(&h, "a", 1).await;
    h.engine.release_lock(&h.alice, a.id).await.unwrap();
    still_waiting(&bob).await;
    assert!(!h.status(&["a"]).await[0].locked, "nothing taken half-way");
    h.engine.release_lock(&h.carol, b.id).await.unwrap();
    let lock = granted(bob).await;
    assert_eq!(lock.resources.len(), 2);
}
