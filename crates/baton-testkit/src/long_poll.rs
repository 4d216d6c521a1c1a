//! Long-poll claims through the engine: a waiting claimer is woken by new
//! work (enqueue, release, a sweep that recovers a lease) and gives up
//! with nothing when the wait ends. Timing assertions are deliberately
//! loose: "promptly" means well within the wait, "not before" allows for
//! timer granularity.

use std::time::{Duration as StdDuration, Instant};

use baton_core::{ClaimRequest, Claimed, FencingToken, Principal, Result};
use tokio::task::JoinHandle;

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, kind, q, secs};

/// How long the waiting claims in this module are willing to wait.
const WAIT: StdDuration = StdDuration::from_secs(5);
/// "Promptly": well under [`WAIT`], generous for a loaded machine.
const PROMPTLY: StdDuration = StdDuration::from_secs(3);

fn start_waiting(
    h: &Harness,
    who: &Principal,
    req: ClaimRequest,
) -> JoinHandle<Result<Option<Claimed>>> {
    let engine = h.engine.clone();
    let who = who.clone();
    tokio::spawn(async move { engine.claim(&who, req, WAIT).await })
}

/// Waits until `n` claimers wait on `queue` (the engine registers them
/// after finding nothing), so the test acts only once they are parked.
async fn until_waiting(h: &Harness, queue: &str, n: usize) {
    let deadline = Instant::now() + StdDuration::from_secs(2);
    loop {
        let waiting = h
            .engine
            .waiting_claimers()
            .into_iter()
            .find(|(name, _)| *name == q(queue))
            .map_or(0, |(_, count)| count);
        if waiting == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} waiting claimers on {queue}, have {waiting}"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

async fn finish(task: JoinHandle<Result<Option<Claimed>>>) -> Option<Claimed> {
    tokio::time::timeout(PROMPTLY, task)
        .await
        .expect("the waiting claim did not return promptly")
        .expect("the claim task panicked")
        .expect("the claim failed")
}

/// A claim waiting on an empty queue returns the item another task
/// enqueues, promptly; an item of a kind it does not want does not
/// satisfy it.
pub async fn waiting_claim_is_woken_by_enqueue(db: TestStore) {
    let h = Harness::new(db).await;
    let req = ClaimRequest::new(
        q("q"),
        vec![kind("refund")],
        h.bob.name.clone(),
        LEASE_SECONDS,
        None,
    )
    .unwrap();
    let task = start_waiting(&h, &h.bob, req);
    until_waiting(&h, "q", 1).await;
    let other = h.enqueue("q", "address", 0).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert!(!task.is_finished(), "woken by an item it cannot take");
    let started = Instant::now();
    let wanted = h.enqueue("q", "refund", 0).await;
    let got = finish(task).await.expect("the enqueued item");
    assert!(started.elapsed() < PROMPTLY);
    assert_eq!(got.item.id, wanted.id);
    assert_eq!(got.lease.holder, "bob");
    assert_eq!(h.item(other.id).await.state, baton_core::ItemState::Ready);
    until_waiting(&h, "q", 0).await;
}

/// With nothing arriving, a waiting claim returns nothing, and not before
/// the wait has (about) elapsed.
pub async fn waiting_claim_times_out_with_none(db: TestStore) {
    let h = Harness::new(db).await;
    let started = Instant::now();
    let got = h
        .engine
        .claim(
            &h.alice,
            h.claim_request(&h.alice, "q"),
            StdDuration::from_secs(1),
        )
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(got.is_none(), "{got:?}");
    assert!(
        waited >= StdDuration::from_millis(950),
        "returned after {waited:?}"
    );
    assert!(
        waited < StdDuration::from_secs(4),
        "returned after {waited:?}"
    );
    until_waiting(&h, "q", 0).await;
    // A wait longer than the engine allows is refused up front.
    assert_err!(
        h.engine
            .claim(
                &h.alice,
                h.claim_request(&h.alice, "q"),
                StdDuration::from_secs(3600)
            )
            .await,
        baton_core::Error::Invalid { .. }
    );
}

/// A release wakes a claimer waiting for that queue, which gets the item
/// with the next token.
pub async fn waiting_claim_is_woken_by_release(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let held = h.claim_some(&h.alice, "q").await;
    let task = start_waiting(&h, &h.bob, h.claim_request(&h.bob, "q"));
    until_waiting(&h, "q", 1).await;
    assert!(!task.is_finished());
    h.engine
        .release(&h.alice, item.id, held.lease.token, 0)
        .await
        .unwrap();
    let got = finish(task).await.expect("the released item");
    assert_eq!(got.item.id, item.id);
    assert_eq!(got.lease.token, FencingToken(2));
    assert_eq!(got.lease.holder, "bob");
}

/// A sweep that expires a lease wakes a waiting claimer, which gets the
/// recovered item.
pub async fn waiting_claim_is_woken_by_sweep(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    h.claim_some(&h.alice, "q").await;
    let task = start_waiting(&h, &h.bob, h.claim_request(&h.bob, "q"));
    until_waiting(&h, "q", 1).await;
    h.advance(secs(LEASE_SECONDS.into()));
    let report = h.engine.sweep().await.unwrap();
    assert_eq!(report.became_ready, vec![(q("q"), 1)]);
    let got = finish(task).await.expect("the recovered item");
    assert_eq!(got.item.id, item.id);
    assert_eq!(got.lease.token, FencingToken(2));
}
