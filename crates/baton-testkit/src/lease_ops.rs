//! What a holder does with a lease: heartbeat, release (now or later),
//! complete, escalate — and the history every step leaves behind.

use baton_core::{
    CompleteRequest, Completion, EventKind, FencingToken, ItemFilter, ItemState, Principal,
};
use serde_json::json;

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, q, secs, shape};

/// A heartbeat by the holder with the current token moves the expiry to
/// `now + lease_seconds` (from now, not from the old expiry), keeps the
/// token, and is recorded as `extended`; the lease then outlives its
/// original expiry.
pub async fn heartbeat_extends_the_lease(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.advance(secs(50));
    let extended = h
        .engine
        .heartbeat(&h.alice, item.id, c.lease.token, 30)
        .await
        .unwrap();
    let lease = extended.lease.clone().expect("still leased");
    assert_eq!(lease.expires_at, h.now() + secs(30));
    assert_eq!(lease.claimed_at, c.lease.claimed_at);
    assert_eq!(lease.token, c.lease.token);
    assert_eq!(extended.token, c.lease.token);
    assert_eq!(extended.state, ItemState::Leased);
    assert_eq!(h.item(item.id).await, extended);
    let ev = h.history(item.id).await.pop().unwrap();
    assert_eq!(
        (ev.kind, ev.actor.as_deref(), ev.token),
        (EventKind::Extended, Some("alice"), Some(c.lease.token))
    );
    assert_eq!(ev.detail["expires_at"], json!(lease.expires_at));
    // Past the original expiry (t0 + 60) the lease still holds: nobody
    // else gets the item, and the holder can complete.
    h.advance(secs(20));
    assert!(h.claim(&h.bob, "q").await.is_none());
    assert_eq!(h.engine.sweep().await.unwrap().expired, 0);
    let done = h.accept(&h.alice, &c).await;
    assert_eq!(done.state, ItemState::Done);
}

/// A release by the holder makes the item ready at once with no lease,
/// records `released`, and makes the holder's token stale.
pub async fn release_makes_the_item_ready(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.advance(secs(4));
    let released = h
        .engine
        .release(&h.alice, item.id, c.lease.token, 0)
        .await
        .unwrap();
    assert_eq!(released.state, ItemState::Ready);
    assert_eq!(released.lease, None);
    assert_eq!(released.available_at, h.now());
    assert_eq!(released.token, c.lease.token, "the token is not reissued");
    assert_eq!(released.attempts, 0, "a release is not a failed attempt");
    assert_eq!(h.item(item.id).await, released);
    assert_eq!(
        h.event_shapes(item.id).await.last().cloned(),
        Some(shape(EventKind::Released, Some("alice"), Some(1)))
    );
    assert_err!(
        h.complete(&h.alice, item.id, c.lease.token, "accepted")
            .await,
        baton_core::Error::StaleToken { .. }
    );
    assert_eq!(h.ids_in_state("q", ItemState::Ready).await, vec![item.id]);
}

/// A release with a delay schedules the item: nobody can claim it before
/// the delay has passed; from then on it is claimable.
pub async fn release_with_delay_schedules_the_item(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    let released = h
        .engine
        .release(&h.alice, item.id, c.lease.token, 120)
        .await
        .unwrap();
    assert_eq!(released.state, ItemState::Scheduled);
    assert_eq!(released.available_at, h.now() + secs(120));
    assert_eq!(released.lease, None);
    let ev = h.history(item.id).await.pop().unwrap();
    assert_eq!(ev.kind, EventKind::Released);
    assert_eq!(ev.detail["available_at"], json!(released.available_at));
    assert!(h.claim(&h.bob, "q").await.is_none());
    h.advance(secs(119));
    assert!(h.claim(&h.bob, "q").await.is_none());
    h.advance(secs(1));
    let bob = h.claim_some(&h.bob, "q").await;
    assert_eq!(bob.item.id, item.id);
    assert_eq!(bob.lease.token, FencingToken(2));
}

/// Completing moves the item to done: it can still be read (state done,
/// the completion's outcome, note, by and at), it is never offered again,
/// a listing of done items finds it, and the queue counts it as done.
pub async fn complete_moves_the_item_to_done(db: TestStore) {
    let h = Harness::new(db).await;
    let item = h.enqueue("q", "k", 0).await;
    let other = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.advance(secs(7));
    let req = CompleteRequest::new(
        c.lease.token,
        "rejected".into(),
        Some("duplicate request".into()),
        None,
    )
    .unwrap();
    let done = h.engine.complete(&h.alice, item.id, req).await.unwrap();
    let expected = Completion {
        outcome: "rejected".into(),
        note: Some("duplicate request".into()),
        by: "alice".into(),
        at: h.now(),
    };
    assert_eq!(done.state, ItemState::Done);
    assert_eq!(done.completion, Some(expected));
    assert_eq!(done.lease, None);
    assert_eq!(done.token, c.lease.token);
    assert_eq!(done.queue, q("q"));
    assert_eq!(h.item(item.id).await, done, "still readable, unchanged");
    let last = h.history(item.id).await.pop().unwrap();
    assert_eq!(last.kind, EventKind::Completed);
    assert_eq!(last.detail["outcome"], json!("rejected"));
    assert_eq!(last.detail["note"], json!("duplicate request"));
    // Never offered again: the next claim gets the other item, then none.
    assert_eq!(h.claim_some(&h.bob, "q").await.item.id, other.id);
    assert!(h.claim(&h.carol, "q").await.is_none());
    assert_eq!(h.ids_in_state("q", ItemState::Done).await, vec![item.id]);
    let all = h
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
    assert_eq!(
        all.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![item.id, other.id]
    );
    assert_eq!(all[0], done);
    let stats = h.engine.queue_stats(&h.supervisor).await.unwrap();
    let s = stats
        .iter()
        .find(|s| s.queue == q("q"))
        .expect("stats of q");
    assert_eq!((s.done, s.leased, s.ready), (1, 1, 0));
}

/// The history lists every event of a long life in order, each with its
/// actor, token and time.
pub async fn history_records_every_event_in_order(db: TestStore) {
    let h = Harness::new(db).await;
    let t = h.now();
    let item = h.enqueue("q", "k", 0).await;
    let c1 = h.claim_some(&h.alice, "q").await;
    h.advance(secs(10));
    h.engine
        .heartbeat(&h.alice, item.id, c1.lease.token, LEASE_SECONDS)
        .await
        .unwrap();
    h.engine
        .release(&h.alice, item.id, c1.lease.token, 0)
        .await
        .unwrap();
    let c2 = h.claim_some(&h.bob, "q").await;
    h.advance(secs(LEASE_SECONDS.into()));
    h.engine.sweep().await.unwrap();
    let c3 = h.claim_some(&h.carol, "q").await;
    h.engine.revoke(&h.supervisor, item.id).await.unwrap();
    let c4 = h.claim_some(&h.carol, "q").await;
    h.advance(secs(1));
    h.accept(&h.carol, &c4).await;
    assert_eq!(
        (
            c1.lease.token.0,
            c2.lease.token.0,
            c3.lease.token.0,
            c4.lease.token.0
        ),
        (1, 2, 3, 4)
    );
    let history = h.history(item.id).await;
    let shapes: Vec<_> = history
        .iter()
        .map(|e| (e.kind, e.actor.clone(), e.token.map(|t| t.0)))
        .collect();
    assert_eq!(
        shapes,
        vec![
            shape(EventKind::Enqueued, Some("app"), None),
            shape(EventKind::Claimed, Some("alice"), Some(1)),
            shape(EventKind::Extended, Some("alice"), Some(1)),
            shape(EventKind::Released, Some("alice"), Some(1)),
            shape(EventKind::Claimed, Some("bob"), Some(2)),
            shape(EventKind::Expired, None, Some(2)),
            shape(EventKind::Claimed, Some("carol"), Some(3)),
            shape(EventKind::Revoked, Some("supervisor"), Some(3)),
            shape(EventKind::Claimed, Some("carol"), Some(4)),
            shape(EventKind::Completed, Some("carol"), Some(4)),
        ]
    );
    let times: Vec<_> = history.iter().map(|e| (e.at - t).num_seconds()).collect();
    assert_eq!(times, vec![0, 0, 10, 10, 10, 70, 70, 70, 70, 71]);
    assert!(
        history
            .iter()
            .all(|e| e.item_id == item.id && e.queue == q("q"))
    );
    let expired = &history[5];
    assert_eq!(expired.detail["holder"], json!("bob"));
    assert_eq!(expired.detail["attempts"], json!(1));
    assert_eq!(history[7].detail["holder"], json!("carol"));
}

async fn escalate(
    h: &Harness,
    who: &Principal,
    id: i64,
    token: FencingToken,
    to: &str,
) -> baton_core::Result<baton_core::Item> {
    let req = CompleteRequest::new(
        token,
        "escalated".into(),
        Some("needs a manager".into()),
        Some(q(to)),
    )
    .unwrap();
    h.engine.complete(who, id, req).await
}

/// Completing with the escalation outcome and `escalate_to` moves the item
/// (same id) to the other queue as ready, with no lease and attempts reset;
/// it is claimable there with a higher token and no longer in the old
/// queue; the history shows `escalated`.
pub async fn escalation_moves_the_item_to_another_queue(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("front", |c| c.max_attempts = 3).await;
    let item = h.enqueue("front", "k", 4).await;
    // One expired lease first, so attempts is 1 before the escalation.
    h.claim_some(&h.bob, "front").await;
    h.advance(secs(LEASE_SECONDS.into()));
    let c = h.claim_some(&h.alice, "front").await;
    assert_eq!(c.item.attempts, 1);
    let moved = escalate(&h, &h.alice, item.id, c.lease.token, "back")
        .await
        .unwrap();
    assert_eq!(moved.id, item.id);
    assert_eq!(moved.queue, q("back"));
    assert_eq!(moved.state, ItemState::Ready);
    assert_eq!(moved.lease, None);
    assert_eq!(moved.attempts, 0);
    assert_eq!(moved.completion, None);
    assert_eq!(moved.priority, 4);
    assert_eq!(moved.token, FencingToken(2));
    assert_eq!(h.item(item.id).await, moved);
    let ev = h.history(item.id).await.pop().unwrap();
    assert_eq!(
        (ev.kind, ev.actor.as_deref(), ev.token),
        (EventKind::Escalated, Some("alice"), Some(FencingToken(2)))
    );
    assert_eq!(ev.queue, q("front"), "recorded in the queue it left");
    assert_eq!(ev.detail["to"], json!("back"));
    assert_eq!(ev.detail["outcome"], json!("escalated"));
    // Gone from front, not counted as done there; ready in back.
    assert!(h.claim(&h.carol, "front").await.is_none());
    assert!(h.ids_in_state("front", ItemState::Ready).await.is_empty());
    assert_eq!(
        h.ids_in_state("back", ItemState::Ready).await,
        vec![item.id]
    );
    let stats = h.engine.queue_stats(&h.supervisor).await.unwrap();
    let front = stats.iter().find(|s| s.queue == q("front")).unwrap();
    let back = stats
        .iter()
        .find(|s| s.queue == q("back"))
        .expect("back exists");
    assert_eq!((front.ready, front.done), (0, 0));
    assert_eq!(back.ready, 1);
    // The escalating operator's token is stale now.
    assert_err!(
        h.complete(&h.alice, item.id, c.lease.token, "accepted")
            .await,
        baton_core::Error::StaleToken { .. }
    );
    let c2 = h.claim_some(&h.carol, "back").await;
    assert_eq!(c2.item.id, item.id);
    assert_eq!(c2.lease.token, FencingToken(3));
    let done = h.accept(&h.carol, &c2).await;
    assert_eq!(done.queue, q("back"));
    assert_eq!(h.ids_in_state("back", ItemState::Done).await, vec![item.id]);
}
