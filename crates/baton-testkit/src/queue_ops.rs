//! Enqueueing and claiming: what an item looks like when it arrives, which
//! item a claim gets (priority, age, kinds, not-before time, skip
//! cooldown), deduplication, idempotent claims, the per-holder lease limit,
//! and the fencing token.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use baton_core::{
    ClaimRequest, Error, EventKind, FencingToken, ItemState, Lease, QueueName, SweepReport,
};
use chrono::Duration;
use serde_json::json;
use tokio::task::JoinSet;

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, kind, q, secs, shape};

/// An enqueued item comes back ready, with a fresh id, token 0, no lease,
/// the payload as given, and one `enqueued` event by the app.
pub async fn enqueue_returns_a_ready_item(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("refunds", "refund", 3).await;
    assert!(item.id > 0);
    assert_eq!(item.queue, q("refunds"));
    assert_eq!(item.kind, kind("refund"));
    assert_eq!(item.payload, json!({ "kind": "refund", "priority": 3 }));
    assert_eq!(item.priority, 3);
    assert_eq!(item.state, ItemState::Ready);
    assert_eq!(item.token, FencingToken(0));
    assert_eq!(item.lease, None);
    assert_eq!(item.attempts, 0);
    assert_eq!(item.available_at, h.now());
    assert_eq!(item.created_at, h.now());
    assert_eq!(item.completion, None);
    // The store keeps exactly what it returned.
    assert_eq!(h.item(item.id).await, item);
    assert_eq!(
        h.event_shapes(item.id).await,
        vec![shape(EventKind::Enqueued, Some("app"), None)]
    );
    let second = h.enqueue("refunds", "refund", 3).await;
    assert!(second.id > item.id, "ids increase");
}

/// Claims take the highest priority first and, within a priority, the
/// oldest (lowest id).
pub async fn claim_order_is_priority_then_oldest(db: TestStore) {
    let h = Harness::new(db).await;
    let low = h.enqueue("q", "k", 0).await;
    let high_1 = h.enqueue("q", "k", 10).await;
    let mid = h.enqueue("q", "k", 5).await;
    let high_2 = h.enqueue("q", "k", 10).await;
    let negative = h.enqueue("q", "k", -3).await;
    let low_2 = h.enqueue("q", "k", 0).await;
    h.configure("q", |c| c.max_leases_per_holder = 10).await;
    let mut order = Vec::new();
    while let Some(c) = h.claim(&h.alice, "q").await {
        if order.contains(&c.item.id) {
            break; // the limit is reached: the held lease comes back
        }
        order.push(c.item.id);
    }
    assert_eq!(
        order,
        vec![high_1.id, high_2.id, mid.id, low.id, low_2.id, negative.id]
    );
}

/// An item enqueued with a delay is scheduled and cannot be claimed a
/// millisecond before its time; a claim at exactly its time gets it
/// (lazy promotion, no sweep needed).
pub async fn delayed_item_becomes_claimable_exactly_at_its_time(db: TestStore) {
    let h = Harness::new(db).await;
    let (item, created) = h.try_enqueue("q", "k", 0, 10, None).await.unwrap();
    assert!(created);
    assert_eq!(item.state, ItemState::Scheduled);
    assert_eq!(item.available_at, h.now() + secs(10));
    // A later, undelayed item with lower priority is claimable at once.
    let now_item = h.enqueue("q", "k", -1).await;
    let first = h.claim_some(&h.alice, "q").await;
    assert_eq!(first.item.id, now_item.id);
    h.advance(Duration::milliseconds(9_999));
    assert!(h.claim(&h.bob, "q").await.is_none(), "not before its time");
    assert_eq!(h.item(item.id).await.state, ItemState::Scheduled);
    h.advance(Duration::milliseconds(1));
    let claimed = h.claim_some(&h.bob, "q").await;
    assert_eq!(claimed.item.id, item.id);
    assert_eq!(claimed.lease.token, FencingToken(1));
}

/// The sweeper promotes a scheduled item once its time has come (not
/// before), and says so in its report.
pub async fn delayed_item_is_promoted_by_sweep(db: TestStore) {
    let h = Harness::new(db).await;
    let (item, _) = h.try_enqueue("q", "k", 0, 30, None).await.unwrap();
    h.advance(secs(29));
    let early = h.engine.sweep().await.unwrap();
    assert_eq!(early, SweepReport::default());
    assert_eq!(h.item(item.id).await.state, ItemState::Scheduled);
    h.advance(secs(1));
    let report = h.engine.sweep().await.unwrap();
    assert_eq!(report.became_ready, vec![(q("q"), 1)]);
    assert_eq!((report.expired, report.parked), (0, 0));
    let swept = h.item(item.id).await;
    assert_eq!(swept.state, ItemState::Ready);
    assert_eq!(h.ids_in_state("q", ItemState::Ready).await, vec![item.id]);
    assert_eq!(h.claim_some(&h.alice, "q").await.item.id, item.id);
}

/// Enqueueing a dedupe key again while the first item is unfinished
/// (ready, leased or scheduled) returns that item, `created == false`, and
/// adds nothing.
pub async fn dedupe_key_returns_the_unfinished_item(db: TestStore) {
    let h = Harness::new(db).await;
    let (first, created) = h
        .try_enqueue("q", "k", 0, 0, Some("order-42"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.dedupe_key.as_deref(), Some("order-42"));
    let (again, created) = h
        .try_enqueue("q", "k", 7, 0, Some("order-42"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, first, "the existing item, unchanged");
    // While leased, too.
    let claimed = h.claim_some(&h.alice, "q").await;
    assert_eq!(claimed.item.id, first.id);
    let (while_leased, created) = h
        .try_enqueue("q", "k", 0, 0, Some("order-42"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(while_leased.id, first.id);
    assert_eq!(while_leased.state, ItemState::Leased);
    // A scheduled item dedupes as well.
    let (scheduled, _) = h.try_enqueue("q", "k", 0, 60, Some("later")).await.unwrap();
    let (again, created) = h.try_enqueue("q", "k", 0, 0, Some("later")).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, scheduled.id);
    assert_eq!(again.state, ItemState::Scheduled);
    // Nothing extra exists and no history was added.
    let ready = h.ids_in_state("q", ItemState::Ready).await;
    assert!(ready.is_empty(), "{ready:?}");
    assert_eq!(h.history(first.id).await.len(), 2, "enqueued + claimed");
}

/// Once the item with a dedupe key is done, the same key creates a new
/// item.
pub async fn dedupe_key_is_free_again_once_done(db: TestStore) {
    let h = Harness::new(db).await;
    let (first, _) = h.try_enqueue("q", "k", 0, 0, Some("d")).await.unwrap();
    let claimed = h.claim_some(&h.alice, "q").await;
    h.accept(&h.alice, &claimed).await;
    let (second, created) = h.try_enqueue("q", "k", 0, 0, Some("d")).await.unwrap();
    assert!(created);
    assert_ne!(second.id, first.id);
    assert_eq!(second.state, ItemState::Ready);
    assert_eq!(second.token, FencingToken(0));
    // And the new one dedupes in turn.
    let (third, created) = h.try_enqueue("q", "k", 0, 0, Some("d")).await.unwrap();
    assert!(!created);
    assert_eq!(third.id, second.id);
}

/// The same dedupe key in another queue is another item.
pub async fn dedupe_is_per_queue(db: TestStore) {
    let h = Harness::new(db).await;
    let (a, created_a) = h.try_enqueue("a", "k", 0, 0, Some("same")).await.unwrap();
    let (b, created_b) = h.try_enqueue("b", "k", 0, 0, Some("same")).await.unwrap();
    assert!(created_a && created_b);
    assert_ne!(a.id, b.id);
    assert_eq!(b.queue, q("b"));
    let (a_again, created) = h.try_enqueue("a", "k", 0, 0, Some("same")).await.unwrap();
    assert!(!created);
    assert_eq!(a_again.id, a.id);
}

/// A claim naming kinds gets only items of those kinds, in claim order.
pub async fn claim_filters_by_kind(db: TestStore) {
    let h = Harness::new(db).await;
    let refund = h.enqueue("q", "refund", 0).await;
    let address = h.enqueue("q", "address", 0).await;
    let complaint = h.enqueue("q", "complaint", 9).await;
    let req = |who: &baton_core::Principal, kinds: &[&str]| {
        ClaimRequest::new(
            q("q"),
            kinds.iter().map(|k| kind(k)).collect(),
            who.name.clone(),
            LEASE_SECONDS,
            None,
        )
        .unwrap()
    };
    let got = h
        .try_claim(&h.alice, req(&h.alice, &["address"]))
        .await
        .unwrap()
        .expect("an address item");
    assert_eq!(got.item.id, address.id);
    let got = h
        .try_claim(&h.bob, req(&h.bob, &["refund", "address"]))
        .await
        .unwrap()
        .expect("a refund item");
    assert_eq!(got.item.id, refund.id);
    let none = h
        .try_claim(&h.carol, req(&h.carol, &["refund", "address", "other"]))
        .await
        .unwrap();
    assert!(none.is_none(), "{none:?}");
    assert_eq!(h.item(complaint.id).await.state, ItemState::Ready);
    let got = h
        .try_claim(&h.carol, req(&h.carol, &[]))
        .await
        .unwrap()
        .expect("any kind");
    assert_eq!(got.item.id, complaint.id);
}

/// Claiming from an empty or unknown queue returns nothing (and does not
/// fail).
pub async fn claim_on_empty_queue_returns_none(db: TestStore) {
    let h = Harness::new(db).await;
    assert!(h.claim(&h.alice, "never-used").await.is_none());
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.accept(&h.alice, &c).await;
    assert_eq!(c.item.id, item.id);
    assert!(
        h.claim(&h.bob, "q").await.is_none(),
        "only a done item left"
    );
    assert!(
        h.claim(&h.bob, "other").await.is_none(),
        "items of other queues are not offered"
    );
}

/// A leased item is never handed to a second claimer: not to one who asks
/// later, and not to any of 32 who ask at the same instant.
pub async fn claim_is_exclusive(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let first = h.claim_some(&h.alice, "q").await;
    assert_eq!(first.item.id, item.id);
    assert!(h.claim(&h.bob, "q").await.is_none());
    assert_eq!(h.item(item.id).await.lease, Some(first.lease.clone()));

    // 32 operators race for 10 items: exactly 10 claims succeed, each with
    // a different item.
    let mut ids = HashSet::new();
    for _ in 0..10 {
        ids.insert(h.enqueue("race", "k", 0).await.id);
    }
    let mut racers = Vec::new();
    for i in 0..32 {
        racers.push(h.operator(&format!("racer-{i}")).await);
    }
    let mut tasks = JoinSet::new();
    for who in racers {
        let engine = h.engine.clone();
        let req = h.claim_request(&who, "race");
        tasks.spawn(async move { engine.claim(&who, req, StdDuration::ZERO).await });
    }
    let mut won = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(c) = r.expect("task").expect("claim") {
            won.push(c.item.id);
        }
    }
    won.sort();
    let mut expected: Vec<_> = ids.into_iter().collect();
    expected.sort();
    assert_eq!(won, expected, "each item leased exactly once");
}

/// The lease is granted at `now` and expires `lease_seconds` later; the
/// item, the claim answer and the stored item agree on it.
pub async fn lease_expires_lease_seconds_after_claim(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    h.advance(secs(5));
    let req = ClaimRequest::new(q("q"), vec![], h.alice.name.clone(), 90, None).unwrap();
    let c = h.try_claim(&h.alice, req).await.unwrap().unwrap();
    let expected = Lease {
        token: FencingToken(1),
        holder: "alice".into(),
        claimed_at: h.now(),
        expires_at: h.now() + secs(90),
    };
    assert_eq!(c.lease, expected);
    assert_eq!(c.item.lease, Some(expected.clone()));
    assert_eq!(c.item.state, ItemState::Leased);
    assert_eq!(c.item.token, FencingToken(1));
    let stored = h.item(item.id).await;
    assert_eq!(stored, c.item);
    let claimed = h.history(item.id).await.pop().unwrap();
    assert_eq!(claimed.kind, EventKind::Claimed);
    assert_eq!(claimed.at, h.now());
    assert_eq!(claimed.detail["expires_at"], json!(expected.expires_at));
}

/// Every claim of an item issues a token one above the item's previous
/// one, through release, expiry, revocation and escalation alike; the
/// item's `token` always shows the latest.
pub async fn fencing_token_increases_with_every_claim(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let mut tokens = Vec::new();
    // 1: alice, released.
    let c = h.claim_some(&h.alice, "q").await;
    tokens.push(c.lease.token);
    h.engine
        .release(&h.alice, item.id, c.lease.token, 0)
        .await
        .unwrap();
    // 2: bob, expires.
    let c = h.claim_some(&h.bob, "q").await;
    tokens.push(c.lease.token);
    h.advance(secs(LEASE_SECONDS.into()));
    // 3: carol recovers it lazily; revoked by the supervisor.
    let c = h.claim_some(&h.carol, "q").await;
    tokens.push(c.lease.token);
    h.engine.revoke(&h.supervisor, item.id).await.unwrap();
    // 4: bob again; escalated to another queue.
    let c = h.claim_some(&h.bob, "q").await;
    tokens.push(c.lease.token);
    let esc = baton_core::CompleteRequest::new(
        c.lease.token,
        "escalated".into(),
        None,
        Some(q("second-line")),
    )
    .unwrap();
    h.engine.complete(&h.bob, item.id, esc).await.unwrap();
    // 5: claimed in the other queue.
    let c = h.claim_some(&h.alice, "second-line").await;
    tokens.push(c.lease.token);
    assert_eq!(c.item.id, item.id);
    assert_eq!(
        tokens,
        (1..=5).map(FencingToken).collect::<Vec<_>>(),
        "one above the previous claim, every time"
    );
    assert_eq!(h.item(item.id).await.token, FencingToken(5));
    let claimed_tokens: Vec<i64> = h
        .history(item.id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Claimed)
        .filter_map(|e| e.token.map(|t| t.0))
        .collect();
    assert_eq!(claimed_tokens, vec![1, 2, 3, 4, 5]);
}

fn keyed(who: &baton_core::Principal, queue: &str, key: &str) -> ClaimRequest {
    ClaimRequest::new(
        q(queue),
        vec![],
        who.name.clone(),
        LEASE_SECONDS,
        Some(key.to_owned()),
    )
    .unwrap()
}

/// A retried claim with the same idempotency key returns the same item
/// and lease — even where a claim without the key would lease a second
/// item — and records no second claim.
pub async fn idempotent_claim_returns_the_same_lease(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_leases_per_holder = 5).await;
    let a = h.enqueue("q", "k", 0).await;
    let b = h.enqueue("q", "k", 0).await;
    let first = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click-1"))
        .await
        .unwrap()
        .expect("an item");
    assert_eq!(first.item.id, a.id);
    h.advance(secs(3));
    let retry = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click-1"))
        .await
        .unwrap()
        .expect("the same item");
    assert_eq!(retry.item.id, a.id);
    assert_eq!(retry.lease, first.lease);
    assert_eq!(h.item(b.id).await.state, ItemState::Ready, "b untouched");
    assert_eq!(h.history(a.id).await.len(), 2, "enqueued + one claim");
    // A new key is a new claim: b.
    let other = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click-2"))
        .await
        .unwrap()
        .expect("another item");
    assert_eq!(other.item.id, b.id);
    // A retry after a heartbeat returns the lease as it is now.
    let extended = h
        .engine
        .heartbeat(&h.alice, a.id, first.lease.token, 120)
        .await
        .unwrap();
    let retry = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click-1"))
        .await
        .unwrap()
        .expect("the same item");
    assert_eq!(Some(retry.lease.clone()), extended.lease);
    assert_eq!(retry.lease.token, first.lease.token);
}

/// Idempotency keys belong to a holder: the same key from someone else is
/// an unrelated claim.
pub async fn idempotency_key_is_per_holder(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.enqueue("q", "k", 0).await;
    let b = h.enqueue("q", "k", 0).await;
    let alice = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "same-key"))
        .await
        .unwrap()
        .expect("an item");
    let bob = h
        .try_claim(&h.bob, keyed(&h.bob, "q", "same-key"))
        .await
        .unwrap()
        .expect("an item");
    assert_eq!(alice.item.id, a.id);
    assert_eq!(bob.item.id, b.id);
    assert_eq!(bob.lease.holder, "bob");
    assert_eq!(bob.lease.token, FencingToken(1));
    let bob_retry = h
        .try_claim(&h.bob, keyed(&h.bob, "q", "same-key"))
        .await
        .unwrap()
        .expect("bob's item");
    assert_eq!(bob_retry.lease, bob.lease);
}

/// A retried claim whose lease has ended (completed, or expired) is
/// refused as stale rather than leasing something else.
pub async fn idempotent_claim_after_the_lease_ended_is_stale(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.enqueue("q", "k", 0).await;
    let b = h.enqueue("q", "k", 0).await;
    let first = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "k1"))
        .await
        .unwrap()
        .expect("an item");
    h.accept(&h.alice, &first).await;
    assert_err!(
        h.try_claim(&h.alice, keyed(&h.alice, "q", "k1")).await,
        Error::StaleToken { item, .. } if *item == a.id
    );
    assert_eq!(h.item(b.id).await.state, ItemState::Ready, "b not leased");
    // Expired, unswept.
    let second = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "k2"))
        .await
        .unwrap()
        .expect("b");
    assert_eq!(second.item.id, b.id);
    h.advance(secs(LEASE_SECONDS.into()));
    let before = h.snapshot(b.id).await;
    assert_err!(
        h.try_claim(&h.alice, keyed(&h.alice, "q", "k2")).await,
        Error::StaleToken { item, .. } if *item == b.id
    );
    assert_eq!(h.snapshot(b.id).await, before);
}

/// A sweep forgets idempotency keys older than the engine's retention
/// (24 h by default), not younger ones: until then a retried claim is
/// answered from the key (here: stale, the item is done); afterwards the
/// same key is a new claim.
pub async fn idempotency_key_is_forgotten_after_retention(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.enqueue("q", "k", 0).await;
    let b = h.enqueue("q", "k", 0).await;
    let first = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click"))
        .await
        .unwrap()
        .expect("an item");
    assert_eq!(first.item.id, a.id);
    h.accept(&h.alice, &first).await;
    let retention = baton::EngineSettings::default().idempotency_retention;
    // Exactly as old as the retention: not older, so remembered.
    h.advance(retention);
    h.engine.sweep().await.unwrap();
    assert_err!(
        h.try_claim(&h.alice, keyed(&h.alice, "q", "click")).await,
        Error::StaleToken { item, .. } if *item == a.id
    );
    assert_eq!(h.item(b.id).await.state, ItemState::Ready);
    // A millisecond older: the next sweep forgets it.
    h.advance(Duration::milliseconds(1));
    h.engine.sweep().await.unwrap();
    let again = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click"))
        .await
        .unwrap()
        .expect("a new claim");
    assert_eq!(again.item.id, b.id);
    assert_eq!(again.lease.token, FencingToken(1));
    // And the key now stands for the new claim.
    let retry = h
        .try_claim(&h.alice, keyed(&h.alice, "q", "click"))
        .await
        .unwrap()
        .expect("the same item");
    assert_eq!(retry.lease, again.lease);
}

/// By default a holder has one live lease per queue: a further claim
/// returns the lease already held (same token, no new event) and leaves
/// other items ready.
pub async fn one_lease_per_holder_by_default(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.enqueue("q", "k", 0).await;
    let b = h.enqueue("q", "k", 0).await;
    let first = h.claim_some(&h.alice, "q").await;
    assert_eq!(first.item.id, a.id);
    h.advance(secs(1));
    let again = h.claim_some(&h.alice, "q").await;
    assert_eq!(again.item.id, a.id);
    assert_eq!(again.lease, first.lease);
    assert_eq!(h.item(b.id).await.state, ItemState::Ready);
    assert_eq!(h.history(a.id).await.len(), 2);
    // The limit is per queue.
    let other = h.enqueue("other", "k", 0).await;
    assert_eq!(h.claim_some(&h.alice, "other").await.item.id, other.id);
    // From the instant the held lease expires (claimed at t0, now t0 + 1)
    // it no longer counts.
    h.advance(secs(i64::from(LEASE_SECONDS) - 1));
    let next = h.claim_some(&h.alice, "q").await;
    assert_eq!(next.item.id, a.id, "a recovered lazily, oldest first");
    assert_eq!(next.lease.token, FencingToken(2));
    assert_eq!(h.item(b.id).await.state, ItemState::Ready);
}

/// With `max_leases_per_holder = 2` a holder gets two different items; a
/// third claim returns one already held (the oldest).
pub async fn max_leases_per_holder_is_configurable(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_leases_per_holder = 2).await;
    let a = h.enqueue("q", "k", 0).await;
    let b = h.enqueue("q", "k", 0).await;
    let c = h.enqueue("q", "k", 0).await;
    let first = h.claim_some(&h.alice, "q").await;
    h.advance(secs(1));
    let second = h.claim_some(&h.alice, "q").await;
    assert_eq!((first.item.id, second.item.id), (a.id, b.id));
    let third = h.claim_some(&h.alice, "q").await;
    assert_eq!(third.item.id, a.id, "the oldest lease held");
    assert_eq!(third.lease, first.lease);
    assert_eq!(h.item(c.id).await.state, ItemState::Ready);
    // Someone else is not limited by alice's leases.
    assert_eq!(h.claim_some(&h.bob, "q").await.item.id, c.id);
}

/// After alice releases an item it is not offered back to her during the
/// queue's skip cooldown (she gets other work, or nothing), and is offered
/// to her again from the moment the cooldown ends.
pub async fn released_item_is_not_offered_back_during_cooldown(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.skip_cooldown_seconds = 30).await;
    let a = h.enqueue("q", "k", 5).await;
    let b = h.enqueue("q", "k", 0).await;
    let first = h.claim_some(&h.alice, "q").await;
    assert_eq!(first.item.id, a.id);
    let released = h
        .engine
        .release(&h.alice, a.id, first.lease.token, 0)
        .await
        .unwrap();
    assert_eq!(released.released_by.as_deref(), Some("alice"));
    assert_eq!(released.released_until, Some(h.now() + secs(30)));
    let next = h.claim_some(&h.alice, "q").await;
    assert_eq!(next.item.id, b.id, "other work instead of a");
    h.accept(&h.alice, &next).await;
    assert!(
        h.claim(&h.alice, "q").await.is_none(),
        "only a is left, still cooling down for alice"
    );
    h.advance(Duration::milliseconds(29_999));
    assert!(h.claim(&h.alice, "q").await.is_none());
    h.advance(Duration::milliseconds(1));
    let back = h.claim_some(&h.alice, "q").await;
    assert_eq!(back.item.id, a.id);
    assert_eq!(back.lease.token, FencingToken(2));
}

/// What alice released is offered to bob at once.
pub async fn released_item_goes_to_another_operator_at_once(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.enqueue("q", "k", 0).await;
    let first = h.claim_some(&h.alice, "q").await;
    h.engine
        .release(&h.alice, a.id, first.lease.token, 0)
        .await
        .unwrap();
    let bob = h.claim_some(&h.bob, "q").await;
    assert_eq!(bob.item.id, a.id);
    assert_eq!(bob.lease.token, FencingToken(2));
    assert_eq!(bob.lease.holder, "bob");
    // The cooldown is alice's alone; a queue without cooldown offers it
    // straight back.
    h.configure("fast", |c| c.skip_cooldown_seconds = 0).await;
    let f = h.enqueue("fast", "k", 0).await;
    let c = h.claim_some(&h.alice, "fast").await;
    h.engine
        .release(&h.alice, f.id, c.lease.token, 0)
        .await
        .unwrap();
    assert_eq!(h.claim_some(&h.alice, "fast").await.item.id, f.id);
}

/// Shorthand used by other modules' scenes: queues named in a
/// [`SweepReport`], sorted.
pub(crate) fn sorted_ready(report: &SweepReport) -> Vec<(QueueName, u64)> {
    let mut v = report.became_ready.clone();
    v.sort();
    v
}
