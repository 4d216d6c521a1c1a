//! Every refusal answers with the right error *and changes nothing*: each
//! case compares the item and its whole history before and after.

use baton_core::{CompleteRequest, Error, FencingToken, ItemFilter, ItemState, Role};
use chrono::Duration;

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, Snapshot, q, secs};

/// Tries heartbeat, release and complete as `who` with `token`, asserting
/// each is refused as `check` says and leaves the item as `before`.
async fn refused_everywhere(
    h: &Harness,
    who: &baton_core::Principal,
    id: i64,
    token: FencingToken,
    before: &Snapshot,
    check: impl Fn(&Error) -> bool,
) {
    let results = [
        (
            "heartbeat",
            h.engine
                .heartbeat(who, id, token, LEASE_SECONDS)
                .await
                .err(),
        ),
        ("release", h.engine.release(who, id, token, 0).await.err()),
        (
            "release later",
            h.engine.release(who, id, token, 60).await.err(),
        ),
        (
            "complete",
            h.complete(who, id, token, "accepted").await.err(),
        ),
    ];
    for (op, err) in results {
        let err = err.unwrap_or_else(|| panic!("{op} with token {token} was accepted"));
        assert!(check(&err), "{op}: unexpected error {err:?}");
    }
    assert_eq!(&h.snapshot(id).await, before, "a refusal changed the item");
}

/// After the lease expired and someone else claimed the item, the old
/// holder's token is stale for every action.
pub async fn stale_token_after_reclaim_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let old = h.claim_some(&h.alice, "q").await;
    h.advance(secs(LEASE_SECONDS.into()));
    let new = h.claim_some(&h.bob, "q").await;
    assert_eq!(new.lease.token, FencingToken(2));
    let before = h.snapshot(item.id).await;
    refused_everywhere(&h, &h.alice, item.id, old.lease.token, &before, |e| {
        matches!(e, Error::StaleToken { item: i, presented, current, .. }
            if *i == item.id && *presented == FencingToken(1) && *current == FencingToken(2))
    })
    .await;
    // Bob, the holder now, cannot use the old token either.
    refused_everywhere(&h, &h.bob, item.id, old.lease.token, &before, |e| {
        matches!(e, Error::StaleToken { .. })
    })
    .await;
    // And the new lease is intact.
    assert_eq!(h.accept(&h.bob, &new).await.state, ItemState::Done);
}

/// The token of a completed item is stale: completing twice is refused
/// and the done item stays as it was.
pub async fn token_of_a_completed_item_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.accept(&h.alice, &c).await;
    h.advance(secs(1));
    let before = h.snapshot(item.id).await;
    assert_eq!(before.item.state, ItemState::Done);
    refused_everywhere(
        &h,
        &h.alice,
        item.id,
        c.lease.token,
        &before,
        |e| matches!(e, Error::StaleToken { current, .. } if *current == c.lease.token),
    )
    .await;
    assert_err!(
        h.engine.revoke(&h.supervisor, item.id).await,
        Error::WrongState {
            state: ItemState::Done,
            ..
        }
    );
    assert_err!(
        h.engine.requeue(&h.supervisor, item.id).await,
        Error::WrongState {
            state: ItemState::Done,
            ..
        }
    );
    assert_eq!(h.snapshot(item.id).await, before);
}

/// A token that was never issued (higher than the item's) or that
/// belongs to no lease (0) is stale.
pub async fn token_never_issued_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let before = h.snapshot(item.id).await;
    refused_everywhere(&h, &h.alice, item.id, FencingToken(0), &before, |e| {
        matches!(e, Error::StaleToken { .. })
    })
    .await;
    let c = h.claim_some(&h.alice, "q").await;
    let before = h.snapshot(item.id).await;
    refused_everywhere(
        &h,
        &h.alice,
        item.id,
        c.lease.token.next(),
        &before,
        |e| matches!(e, Error::StaleToken { presented, .. } if *presented == FencingToken(2)),
    )
    .await;
}

/// Someone who does not hold the lease cannot act with its token, even a
/// supervisor; the answer names the holder.
pub async fn not_the_holder_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    let before = h.snapshot(item.id).await;
    for who in [&h.bob, &h.supervisor, &h.admin] {
        refused_everywhere(&h, who, item.id, c.lease.token, &before, |e| {
            matches!(e, Error::NotHolder { item: i, holder } if *i == item.id && holder == "alice")
        })
        .await;
    }
    assert_eq!(h.accept(&h.alice, &c).await.state, ItemState::Done);
}

/// An outcome the queue does not define is invalid and changes nothing;
/// a queue's own outcome set is honoured.
pub async fn unknown_outcome_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    let before = h.snapshot(item.id).await;
    assert_err!(
        h.complete(&h.alice, item.id, c.lease.token, "maybe").await,
        Error::Invalid { field, .. } if field == "outcome"
    );
    assert_eq!(h.snapshot(item.id).await, before);
    // A queue with its own outcomes.
    h.configure("custom", |c| {
        c.outcomes = vec!["paid".into(), "refused".into()];
        c.escalation_outcome = None;
    })
    .await;
    let other = h.enqueue("custom", "k", 0).await;
    let oc = h.claim_some(&h.alice, "custom").await;
    let before = h.snapshot(other.id).await;
    assert_err!(
        h.complete(&h.alice, other.id, oc.lease.token, "accepted").await,
        Error::Invalid { field, .. } if field == "outcome"
    );
    assert_eq!(h.snapshot(other.id).await, before);
    let done = h
        .complete(&h.alice, other.id, oc.lease.token, "paid")
        .await
        .unwrap();
    assert_eq!(done.completion.map(|c| c.outcome).as_deref(), Some("paid"));
}

/// `escalate_to` is only allowed with the queue's escalation outcome, and
/// not at all in a queue without one.
pub async fn escalate_to_needs_the_escalation_outcome(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    let before = h.snapshot(item.id).await;
    let req =
        CompleteRequest::new(c.lease.token, "accepted".into(), None, Some(q("other"))).unwrap();
    assert_err!(
        h.engine.complete(&h.alice, item.id, req).await,
        Error::Invalid { field, .. } if field == "escalate_to"
    );
    assert_eq!(h.snapshot(item.id).await, before);
    assert!(
        h.ids_in_state("other", ItemState::Ready).await.is_empty(),
        "nothing moved"
    );
    h.configure("flat", |c| c.escalation_outcome = None).await;
    let flat = h.enqueue("flat", "k", 0).await;
    let fc = h.claim_some(&h.bob, "flat").await;
    let before = h.snapshot(flat.id).await;
    let req =
        CompleteRequest::new(fc.lease.token, "escalated".into(), None, Some(q("other"))).unwrap();
    assert_err!(
        h.engine.complete(&h.bob, flat.id, req).await,
        Error::Invalid { field, .. } if field == "escalate_to"
    );
    assert_eq!(h.snapshot(flat.id).await, before);
}

/// Escalating into the queue the item is already in is invalid.
pub async fn escalation_to_the_same_queue_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    let before = h.snapshot(item.id).await;
    let req = CompleteRequest::new(c.lease.token, "escalated".into(), None, Some(q("q"))).unwrap();
    assert_err!(
        h.engine.complete(&h.alice, item.id, req).await,
        Error::Invalid { field, .. } if field == "escalate_to"
    );
    assert_eq!(h.snapshot(item.id).await, before);
}

/// A lease that has run out cannot be used even if nobody swept or
/// claimed since: refused as stale, and the item stays as it was until
/// recovery.
pub async fn expired_lease_is_refused_before_any_sweep(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.advance(Duration::milliseconds(59_999));
    // Still live a millisecond before the expiry.
    h.engine
        .heartbeat(&h.alice, item.id, c.lease.token, 1)
        .await
        .unwrap();
    h.advance(secs(1)); // exactly at the new expiry: over
    let before = h.snapshot(item.id).await;
    assert_eq!(before.item.state, ItemState::Leased);
    refused_everywhere(
        &h,
        &h.alice,
        item.id,
        c.lease.token,
        &before,
        |e| matches!(e, Error::StaleToken { current, .. } if *current == c.lease.token),
    )
    .await;
}

/// Roles are enforced for every store-changing operation, and a refusal
/// changes nothing.
pub async fn roles_are_enforced(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    // The app cannot claim; operators cannot enqueue.
    assert_err!(
        h.try_claim(&h.app, h.claim_request(&h.app, "q")).await,
        Error::Forbidden(_)
    );
    let new = baton_core::NewItem::new(
        q("q"),
        crate::harness::kind("k"),
        serde_json::json!({}),
        0,
        0,
        None,
    )
    .unwrap();
    assert_err!(h.engine.enqueue(&h.alice, new).await, Error::Forbidden(_));
    let c = h.claim_some(&h.alice, "q").await;
    let before = h.snapshot(item.id).await;
    // An operator cannot revoke or requeue, or change queue settings.
    assert_err!(h.engine.revoke(&h.bob, item.id).await, Error::Forbidden(_));
    assert_err!(
        h.engine.revoke(&h.alice, item.id).await,
        Error::Forbidden(_)
    );
    assert_err!(
        h.engine.requeue(&h.alice, item.id).await,
        Error::Forbidden(_)
    );
    let config = baton_core::QueueConfig {
        max_attempts: 1,
        ..baton_core::QueueConfig::default()
    };
    assert_err!(
        h.engine.set_queue_config(&h.alice, &q("q"), &config).await,
        Error::Forbidden(_)
    );
    assert_eq!(
        h.store().queue_config(&q("q")).await.unwrap(),
        baton_core::QueueConfig::default()
    );
    // The app cannot work the item even with the right token.
    assert_err!(
        h.complete(&h.app, item.id, c.lease.token, "accepted").await,
        Error::Forbidden(_)
    );
    assert_err!(
        h.engine
            .heartbeat(&h.app, item.id, c.lease.token, LEASE_SECONDS)
            .await,
        Error::Forbidden(_)
    );
    // Only admins manage principals.
    assert_err!(
        h.engine
            .create_principal(&h.supervisor, "mallory", Role::Admin)
            .await,
        Error::Forbidden(_)
    );
    assert_err!(h.engine.principals(&h.alice).await, Error::Forbidden(_));
    assert!(h.store().principal("mallory").await.unwrap().is_none());
    assert_eq!(h.snapshot(item.id).await, before);
}

/// Every operation on an item id that never existed answers `NotFound`.
pub async fn unknown_item_is_not_found_everywhere(db: TestStore) {
    let h = Harness::new(db).await;
    let real = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    let missing = real.id + 1_000;
    let t = FencingToken(1);
    let not_found =
        |e: &Error| matches!(e, Error::NotFound { what: "item", id } if *id == missing.to_string());
    let results = [
        (
            "heartbeat",
            h.engine
                .heartbeat(&h.alice, missing, t, LEASE_SECONDS)
                .await
                .err(),
        ),
        (
            "release",
            h.engine.release(&h.alice, missing, t, 0).await.err(),
        ),
        (
            "complete",
            h.complete(&h.alice, missing, t, "accepted").await.err(),
        ),
        (
            "revoke",
            h.engine.revoke(&h.supervisor, missing).await.err(),
        ),
        (
            "requeue",
            h.engine.requeue(&h.supervisor, missing).await.err(),
        ),
        ("item", h.engine.item(&h.supervisor, missing).await.err()),
        (
            "history",
            h.engine.item_history(&h.supervisor, missing).await.err(),
        ),
    ];
    for (op, err) in results {
        let err = err.unwrap_or_else(|| panic!("{op} of a missing item succeeded"));
        assert!(not_found(&err), "{op}: {err:?}");
    }
    // Directly on the store, too.
    assert!(not_found(&h.store().item(missing).await.unwrap_err()));
    assert!(not_found(
        &h.store().item_history(missing).await.unwrap_err()
    ));
    // The real item was not touched.
    assert_eq!(h.item(real.id).await, c.item);
    let listed = h
        .store()
        .list_items(
            &q("q"),
            &ItemFilter {
                limit: 10,
                ..ItemFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}
