//! Leases that run out, items that park, and what supervisors do about
//! them: lazy recovery at claim time, the sweeper, parking after
//! `max_attempts`, requeue and revoke.

use baton_core::{Error, EventKind, FencingToken, ItemState, SweepReport};
use chrono::Duration;
use serde_json::json;

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, q, secs, shape};
use crate::queue_ops::sorted_ready;

fn lease() -> Duration {
    secs(LEASE_SECONDS.into())
}

/// An expired lease is recovered by the next claim of the queue: another
/// holder gets the item with a higher token, and the history shows the
/// expiry (by nobody) between the two claims.
pub async fn expired_lease_is_recovered_at_claim(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let first = h.claim_some(&h.alice, "q").await;
    h.advance(lease() - Duration::milliseconds(1));
    assert!(h.claim(&h.bob, "q").await.is_none(), "still live");
    h.advance(Duration::milliseconds(1));
    let second = h.claim_some(&h.bob, "q").await;
    assert_eq!(second.item.id, item.id);
    assert!(second.lease.token > first.lease.token);
    assert_eq!(second.item.attempts, 1);
    assert_eq!(
        h.event_shapes(item.id).await,
        vec![
            shape(EventKind::Enqueued, Some("app"), None),
            shape(EventKind::Claimed, Some("alice"), Some(1)),
            shape(EventKind::Expired, None, Some(1)),
            shape(EventKind::Claimed, Some("bob"), Some(2)),
        ]
    );
}

/// The sweeper expires an overdue lease: the item is ready with one more
/// attempt and no lease, an `expired` event records the lost holder, and
/// the report counts it.
pub async fn expired_lease_is_recovered_by_sweep(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.advance(lease() - Duration::milliseconds(1));
    assert_eq!(h.engine.sweep().await.unwrap(), SweepReport::default());
    assert_eq!(h.item(item.id).await.state, ItemState::Leased);
    h.advance(Duration::milliseconds(1));
    let report = h.engine.sweep().await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.parked, 0);
    assert_eq!(report.became_ready, vec![(q("q"), 1)]);
    let swept = h.item(item.id).await;
    assert_eq!(swept.state, ItemState::Ready);
    assert_eq!(swept.lease, None);
    assert_eq!(swept.attempts, 1);
    assert_eq!(swept.token, c.lease.token, "no token is issued by expiry");
    assert_eq!(swept.available_at, h.now());
    let ev = h.history(item.id).await.pop().unwrap();
    assert_eq!(
        (ev.kind, ev.actor.clone(), ev.token),
        (EventKind::Expired, None, Some(FencingToken(1)))
    );
    assert_eq!(ev.detail["holder"], json!("alice"));
    assert_eq!(ev.detail["expired_at"], json!(c.lease.expires_at));
    assert_eq!(ev.at, h.now());
    // Alice may claim it again (an expiry is not a release): new token.
    let again = h.claim_some(&h.alice, "q").await;
    assert_eq!(again.lease.token, FencingToken(2));
}

/// The `max_attempts`-th expired lease parks the item (a `parked` event,
/// counted by the sweep): it is no longer offered to anyone.
pub async fn item_is_parked_after_max_attempts(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_attempts = 3).await;
    let item = h.enqueue("q", "k", 0).await;
    let holders = [&h.alice, &h.bob, &h.carol];
    for (n, who) in holders.iter().enumerate() {
        let c = h.claim_some(who, "q").await;
        assert_eq!(c.item.id, item.id);
        h.advance(lease());
        let report = h.engine.sweep().await.unwrap();
        let last = n == holders.len() - 1;
        assert_eq!(report.expired, 1);
        assert_eq!(report.parked, u64::from(last));
        assert_eq!(report.became_ready.is_empty(), last, "{report:?}");
    }
    let parked = h.item(item.id).await;
    assert_eq!(parked.state, ItemState::Parked);
    assert_eq!(parked.attempts, 3);
    assert_eq!(parked.lease, None);
    let kinds: Vec<_> = h.history(item.id).await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Enqueued,
            EventKind::Claimed,
            EventKind::Expired,
            EventKind::Claimed,
            EventKind::Expired,
            EventKind::Claimed,
            EventKind::Parked,
        ]
    );
    let ev = h.history(item.id).await.pop().unwrap();
    assert_eq!(ev.actor, None);
    assert_eq!(ev.token, Some(FencingToken(3)));
    assert_eq!(ev.detail["holder"], json!("carol"));
    for who in holders {
        assert!(
            h.claim(who, "q").await.is_none(),
            "a parked item is not offered"
        );
    }
    assert_eq!(h.ids_in_state("q", ItemState::Parked).await, vec![item.id]);
    // A later sweep leaves it parked.
    h.advance(secs(3600));
    assert_eq!(h.engine.sweep().await.unwrap(), SweepReport::default());
    assert_eq!(h.item(item.id).await, parked);
}

/// Lazy recovery at claim time parks too, and the claim then finds
/// nothing rather than the parked item.
pub async fn item_is_parked_by_lazy_recovery_too(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_attempts = 1).await;
    let item = h.enqueue("q", "k", 0).await;
    h.claim_some(&h.alice, "q").await;
    h.advance(lease());
    assert!(h.claim(&h.bob, "q").await.is_none());
    let parked = h.item(item.id).await;
    assert_eq!(parked.state, ItemState::Parked);
    assert_eq!(parked.attempts, 1);
    assert_eq!(
        h.event_shapes(item.id).await.last().cloned(),
        Some(shape(EventKind::Parked, None, Some(1)))
    );
}

/// A supervisor's requeue puts a parked item back to ready with attempts
/// reset; it is claimed with the next token.
pub async fn requeue_returns_a_parked_item_to_ready(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_attempts = 1).await;
    let item = h.enqueue("q", "k", 0).await;
    h.claim_some(&h.alice, "q").await;
    h.advance(lease());
    h.engine.sweep().await.unwrap();
    assert_eq!(h.item(item.id).await.state, ItemState::Parked);
    h.advance(secs(5));
    let requeued = h.engine.requeue(&h.supervisor, item.id).await.unwrap();
    assert_eq!(requeued.state, ItemState::Ready);
    assert_eq!(requeued.attempts, 0);
    assert_eq!(requeued.available_at, h.now());
    assert_eq!(requeued.lease, None);
    assert_eq!(h.item(item.id).await, requeued);
    assert_eq!(
        h.event_shapes(item.id).await.last().cloned(),
        Some(shape(EventKind::Requeued, Some("supervisor"), None))
    );
    let c = h.claim_some(&h.bob, "q").await;
    assert_eq!(c.item.id, item.id);
    assert_eq!(c.lease.token, FencingToken(2));
    assert_eq!(c.item.attempts, 0);
}

/// Requeue applies only to parked items: ready, leased, scheduled and done
/// items are refused with `WrongState` and left as they were.
pub async fn requeue_of_a_non_parked_item_is_wrong_state(db: TestStore) {
    let h = Harness::new(db).await;
    let done = h.enqueue("q", "k", 0).await;
    let leased = h.enqueue("q", "k", 0).await;
    let (scheduled, _) = h.try_enqueue("q", "k", 0, 60, None).await.unwrap();
    let ready = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    assert_eq!(c.item.id, done.id, "lowest id first");
    h.accept(&h.alice, &c).await;
    let c2 = h.claim_some(&h.alice, "q").await;
    assert_eq!(c2.item.id, leased.id);
    for (id, state) in [
        (done.id, ItemState::Done),
        (leased.id, ItemState::Leased),
        (scheduled.id, ItemState::Scheduled),
        (ready.id, ItemState::Ready),
    ] {
        let before = h.snapshot(id).await;
        assert_eq!(before.item.state, state);
        assert_err!(
            h.engine.requeue(&h.supervisor, id).await,
            Error::WrongState { item, state: s, .. } if *item == id && *s == state
        );
        assert_eq!(h.snapshot(id).await, before);
    }
}

/// A supervisor's revoke takes the lease away: the item is ready at once,
/// the `revoked` event names the supervisor and the old token, and the old
/// holder's token is stale.
pub async fn revoke_makes_the_old_token_stale(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.advance(secs(3));
    let revoked = h.engine.revoke(&h.supervisor, item.id).await.unwrap();
    assert_eq!(revoked.state, ItemState::Ready);
    assert_eq!(revoked.lease, None);
    assert_eq!(revoked.available_at, h.now());
    assert_eq!(revoked.attempts, 0, "a revocation is not a failed attempt");
    assert_eq!(h.item(item.id).await, revoked);
    let ev = h.history(item.id).await.pop().unwrap();
    assert_eq!(
        (ev.kind, ev.actor.as_deref(), ev.token),
        (
            EventKind::Revoked,
            Some("supervisor"),
            Some(FencingToken(1))
        )
    );
    assert_eq!(ev.detail["holder"], json!("alice"));
    let before = h.snapshot(item.id).await;
    assert_err!(
        h.complete(&h.alice, item.id, c.lease.token, "accepted")
            .await,
        Error::StaleToken { .. }
    );
    assert_err!(
        h.engine
            .heartbeat(&h.alice, item.id, c.lease.token, LEASE_SECONDS)
            .await,
        Error::StaleToken { .. }
    );
    assert_eq!(h.snapshot(item.id).await, before);
    let bob = h.claim_some(&h.bob, "q").await;
    assert_eq!(bob.lease.token, FencingToken(2));
}

/// Revoke applies only to leased items.
pub async fn revoke_of_a_non_leased_item_is_wrong_state(db: TestStore) {
    let h = Harness::new(db).await;
    let ready = h.enqueue("q", "k", 0).await;
    let (scheduled, _) = h.try_enqueue("q", "k", 0, 60, None).await.unwrap();
    for (id, state) in [
        (ready.id, ItemState::Ready),
        (scheduled.id, ItemState::Scheduled),
    ] {
        let before = h.snapshot(id).await;
        assert_err!(
            h.engine.revoke(&h.supervisor, id).await,
            Error::WrongState { state: s, .. } if *s == state
        );
        assert_eq!(h.snapshot(id).await, before);
    }
    // Nor to an item whose lease was revoked already.
    h.claim_some(&h.alice, "q").await;
    h.engine.revoke(&h.supervisor, ready.id).await.unwrap();
    let before = h.snapshot(ready.id).await;
    assert_err!(
        h.engine.revoke(&h.supervisor, ready.id).await,
        Error::WrongState {
            state: ItemState::Ready,
            ..
        }
    );
    assert_eq!(h.snapshot(ready.id).await, before);
}

/// A second sweep at the same instant changes nothing and reports nothing.
pub async fn sweep_is_idempotent(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_attempts = 2).await;
    // `parking` loses one lease first, so its next expiry parks it.
    let parking = h.enqueue("q", "k", 0).await;
    h.claim_some(&h.alice, "q").await;
    h.advance(lease());
    assert_eq!(h.engine.sweep().await.unwrap().expired, 1);
    assert_eq!(h.claim_some(&h.bob, "q").await.item.id, parking.id);
    let expiring = h.enqueue("q", "k", 0).await;
    assert_eq!(h.claim_some(&h.carol, "q").await.item.id, expiring.id);
    let (due, _) = h.try_enqueue("q", "k", 0, 10, None).await.unwrap();
    h.advance(lease());
    let ids = [due.id, expiring.id, parking.id];
    let first = h.engine.sweep().await.unwrap();
    assert_eq!(first.expired, 2, "{first:?}");
    assert_eq!(first.parked, 1);
    assert_eq!(sorted_ready(&first), vec![(q("q"), 2)]);
    let mut after_first = Vec::new();
    for id in ids {
        after_first.push(h.snapshot(id).await);
    }
    assert_eq!(after_first[0].item.state, ItemState::Ready);
    assert_eq!(after_first[1].item.state, ItemState::Ready);
    assert_eq!(after_first[2].item.state, ItemState::Parked);
    let second = h.engine.sweep().await.unwrap();
    assert_eq!(second, SweepReport::default());
    for (id, before) in ids.into_iter().zip(after_first) {
        assert_eq!(h.snapshot(id).await, before);
    }
}

/// The sweep's report names, per queue, how many items became claimable
/// (due scheduled items and expired leases; not parked ones).
pub async fn sweep_reports_became_ready_per_queue(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("c", |c| c.max_attempts = 1).await;
    h.try_enqueue("a", "k", 0, 60, None).await.unwrap();
    h.try_enqueue("a", "k", 0, 60, None).await.unwrap();
    h.try_enqueue("a", "k", 0, 61, None).await.unwrap(); // not yet due
    h.enqueue("b", "k", 0).await;
    h.try_enqueue("b", "k", 0, 5, None).await.unwrap();
    h.enqueue("c", "k", 0).await;
    h.claim_some(&h.alice, "b").await;
    h.claim_some(&h.alice, "c").await;
    h.advance(lease());
    let report = h.engine.sweep().await.unwrap();
    assert_eq!(sorted_ready(&report), vec![(q("a"), 2), (q("b"), 2)]);
    assert_eq!((report.expired, report.parked), (2, 1));
    h.advance(secs(1));
    let report = h.engine.sweep().await.unwrap();
    assert_eq!(sorted_ready(&report), vec![(q("a"), 1)]);
    assert_eq!((report.expired, report.parked), (0, 0));
}
