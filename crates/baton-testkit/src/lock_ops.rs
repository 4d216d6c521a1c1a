//! The lock manager's operations one by one, on the manual clock:
//! compatibility, all-or-nothing, fencing tokens, expiry at the exact
//! instant, heartbeats and the hold limit, release, forced release,
//! sessions, upgrade and downgrade, idempotency, listing, status, history
//! and retention.

use std::time::Duration as StdDuration;

use baton_core::{
    EndCause, Error, FencingToken, Lock, LockEventKind, LockFilter, LockMode, LockRequest,
    ResourceName, lock_limits,
};
use chrono::Duration;

use crate::TestStore;
use crate::harness::{Harness, LOCK_TTL, res, secs};

use LockMode::{Exclusive as X, Shared as S};

fn kinds(events: &[baton_core::LockEvent]) -> Vec<(LockEventKind, Option<String>, String)> {
    events
        .iter()
        .map(|e| (e.kind, e.actor.clone(), e.holder.clone()))
        .collect()
}

fn ev(
    kind: LockEventKind,
    actor: Option<&str>,
    holder: &str,
) -> (LockEventKind, Option<String>, String) {
    (kind, actor.map(str::to_owned), holder.to_owned())
}

/// Shared locks share a resource; an exclusive request conflicts with each
/// of them and is told who holds it, how and until when; a free resource
/// is granted at once.
pub async fn shared_locks_share_and_exclusive_excludes(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.lock(&h.alice, &["customer/42"], S).await;
    h.advance(secs(5));
    let b = h.lock(&h.bob, &["customer/42"], S).await;
    assert_eq!((a.mode, b.mode), (S, S));
    assert_eq!(a.expires_at, a.acquired_at + secs(LOCK_TTL.into()));
    let e = assert_err!(
        h.try_lock(&h.carol, h.lock_request(&h.carol, &["customer/42"], X))
            .await,
        Error::Locked { .. }
    );
    let Error::Locked {
        conflicts,
        retry_after,
    } = e
    else {
        unreachable!()
    };
    let seen: Vec<(&str, LockMode, bool, Option<i64>)> = conflicts
        .iter()
        .map(|c| (c.holder.as_str(), c.mode, c.waiting, c.lock))
        .collect();
    assert_eq!(
        seen,
        [
            ("alice", S, false, Some(a.id)),
            ("bob", S, false, Some(b.id))
        ]
    );
    assert_eq!(conflicts[0].expires_at, a.expires_at);
    assert_eq!(conflicts[0].resource, res("customer/42"));
    // Alice's lock expires first: 55 s from now.
    assert_eq!(retry_after, 55);
    // Exclusive excludes shared too.
    let x = h.lock(&h.carol, &["customer/7"], X).await;
    let e = assert_err!(
        h.try_lock(&h.alice, h.lock_request(&h.alice, &["customer/7"], S))
            .await,
        Error::Locked { .. }
    );
    assert!(matches!(e, Error::Locked { ref conflicts, .. } if conflicts[0].lock == Some(x.id)));
    // A holder's own locks conflict with each other too (upgrade exists for that).
    assert_err!(
        h.try_lock(&h.carol, h.lock_request(&h.carol, &["customer/7"], X))
            .await,
        Error::Locked { .. }
    );
}

/// A lock covers all of its resources or none: one conflicting resource
/// refuses the whole request, and the free ones stay free and unrecorded.
pub async fn acquire_is_all_or_nothing(db: TestStore) {
    let h = Harness::new(db).await;
    h.lock(&h.alice, &["b"], X).await;
    let before = h.lock_snapshot(&["a", "b", "c"], &[]).await;
    assert_err!(
        h.try_lock(&h.bob, h.lock_request(&h.bob, &["c", "a", "b"], X))
            .await,
        Error::Locked { conflicts, .. } if conflicts.len() == 1 && conflicts[0].resource == res("b")
    );
    assert_eq!(h.lock_snapshot(&["a", "b", "c"], &[]).await, before);
    let both = h.lock(&h.bob, &["c", "a", "a"], X).await;
    assert_eq!(
        both.resources,
        vec![res("a"), res("c")],
        "sorted, once each"
    );
    let status = h.status(&["a", "b", "c", "d"]).await;
    let locked: Vec<bool> = status.iter().map(|s| s.locked).collect();
    assert_eq!(locked, [true, true, true, false]);
}

/// Every grant takes a fencing token from one counter that strictly
/// increases; it becomes the token of each of the lock's resources.
pub async fn fencing_tokens_strictly_increase_with_every_grant(db: TestStore) {
    let h = Harness::new(db).await;
    let mut last = FencingToken(0);
    for (who, names, mode) in [
        (&h.alice, &["a"][..], S),
        (&h.bob, &["a", "b"][..], S),
        (&h.carol, &["c"][..], X),
        (&h.alice, &["d", "e"][..], X),
    ] {
        let lock = h.lock(who, names, mode).await;
        assert!(lock.token > last, "{lock:?} after {last}");
        last = lock.token;
        for s in h.status(names).await {
            assert_eq!(s.token, lock.token, "{}", s.resource);
        }
    }
    // Released and granted again: a larger token still.
    let c = h
        .store()
        .list_locks(
            &LockFilter {
                resource: Some(res("c")),
                limit: 10,
                ..LockFilter::default()
            },
            h.now(),
        )
        .await
        .unwrap();
    h.engine.release_lock(&h.carol, c[0].id).await.unwrap();
    let again = h.lock(&h.bob, &["c"], X).await;
    assert!(again.token > last);
    assert_eq!(h.status(&["c"]).await[0].token, again.token);
    assert_eq!(h.status(&["never-locked"]).await[0].token, FencingToken(0));
}

/// A lock not kept alive is gone at its expiry instant for every purpose —
/// conflicts, status, listing, the lock itself, heartbeats — before any
/// sweep; the sweep then records the expiry at that instant, once.
pub async fn lock_expires_at_its_ttl_without_heartbeat(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a"], X).await;
    h.advance(secs(LOCK_TTL.into()) - Duration::milliseconds(1));
    assert!(h.status(&["a"]).await[0].locked);
    assert_err!(
        h.try_lock(&h.bob, h.lock_request(&h.bob, &["a"], X)).await,
        Error::Locked { .. }
    );
    h.advance(Duration::milliseconds(1));
    assert!(
        !h.status(&["a"]).await[0].locked,
        "free at the expiry instant"
    );
    let seen = h.get_lock(lock.id).await;
    let end = seen.ended.clone().expect("shown as ended");
    assert_eq!(
        (end.cause, end.at, end.by),
        (EndCause::Expired, lock.expires_at, None)
    );
    let listed = h
        .store()
        .list_locks(
            &LockFilter {
                limit: 10,
                ..LockFilter::default()
            },
            h.now(),
        )
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let e = assert_err!(
        h.engine.heartbeat_lock(&h.alice, lock.id, Some(60)).await,
        Error::LockEnded { .. }
    );
    assert!(matches!(e, Error::LockEnded { ref end, .. } if end.cause == EndCause::Expired));
    // Someone else gets it at once, without a sweep.
    let bob = h.lock(&h.bob, &["a"], X).await;
    assert!(bob.token > lock.token);
    // A late heartbeat cannot revive it; the sweeper records the expiry
    // once, at the expiry instant (before bob's grant of the same instant).
    assert_err!(
        h.engine.heartbeat_lock(&h.alice, lock.id, Some(60)).await,
        Error::LockEnded { .. }
    );
    let report = h.engine.sweep_locks().await.unwrap();
    assert_eq!(report.expired.len(), 1, "{report:?}");
    assert!(h.engine.sweep_locks().await.unwrap().expired.is_empty());
    assert_eq!(
        kinds(&h.lock_history("a").await),
        [
            ev(LockEventKind::Granted, Some("alice"), "alice"),
            ev(LockEventKind::Expired, None, "alice"),
            ev(LockEventKind::Granted, Some("bob"), "bob"),
        ]
    );
    let expired = &h.lock_history("a").await[1];
    assert_eq!(expired.at, lock.expires_at);
}

/// The sweeper records each expiry at the expiry instant, once.
pub async fn sweep_records_each_expiry_once(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a", "b"], S).await;
    let live = h.lock(&h.bob, &["c"], S).await;
    h.engine
        .heartbeat_lock(&h.bob, live.id, Some(600))
        .await
        .unwrap();
    h.advance(secs(61));
    let report = h.engine.sweep_locks().await.unwrap();
    assert_eq!(report.expired.len(), 1);
    assert_eq!(report.expired[0].id, lock.id);
    let end = report.expired[0].ended.clone().unwrap();
    assert_eq!((end.cause, end.at), (EndCause::Expired, lock.expires_at));
    assert_eq!(h.get_lock(lock.id).await.ended, Some(end));
    assert!(
        h.engine.sweep_locks().await.unwrap().expired.is_empty(),
        "idempotent"
    );
    for r in ["a", "b"] {
        let history = h.lock_history(r).await;
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(history[1].kind, LockEventKind::Expired);
        assert_eq!(history[1].at, lock.expires_at);
    }
    assert!(h.get_lock(live.id).await.ended.is_none());
}

/// A heartbeat extends the expiry from now by the TTL it names (or the
/// lock's own TTL), and is recorded.
pub async fn heartbeat_extends_the_expiry(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a"], X).await;
    h.advance(secs(50));
    let extended = h
        .engine
        .heartbeat_lock(&h.alice, lock.id, Some(120))
        .await
        .unwrap();
    assert_eq!(extended.expires_at, h.now() + secs(120));
    assert_eq!(extended.ttl_seconds, 120);
    assert_eq!(extended.token, lock.token, "a heartbeat keeps the token");
    h.advance(secs(100));
    let again = h
        .engine
        .heartbeat_lock(&h.alice, lock.id, None)
        .await
        .unwrap();
    assert_eq!(again.expires_at, h.now() + secs(120), "the lock's own TTL");
    assert_eq!(h.get_lock(lock.id).await, again);
    assert_eq!(
        kinds(&h.lock_history("a").await),
        [
            ev(LockEventKind::Granted, Some("alice"), "alice"),
            ev(LockEventKind::Extended, Some("alice"), "alice"),
            ev(LockEventKind::Extended, Some("alice"), "alice"),
        ]
    );
    // TTL limits.
    for bad in [0, lock_limits::MAX_TTL_SECONDS + 1] {
        assert_err!(
            h.engine.heartbeat_lock(&h.alice, lock.id, Some(bad)).await,
            Error::Invalid { field, .. } if field == "ttl_seconds"
        );
    }
}

/// `max_hold_seconds` is a limit no heartbeat extends: the lock expires
/// at it, saying so.
pub async fn max_hold_is_never_extended(db: TestStore) {
    let h = Harness::new(db).await;
    let req = LockRequest::new(
        vec![res("customer/42")],
        X,
        "alice".into(),
        None,
        60,
        Some(90),
        None,
    )
    .unwrap();
    let lock = h.try_lock(&h.alice, req).await.unwrap();
    assert_eq!(lock.max_hold_until, Some(h.now() + secs(90)));
    h.advance(secs(50));
    let l = h
        .engine
        .heartbeat_lock(&h.alice, lock.id, Some(60))
        .await
        .unwrap();
    assert_eq!(l.expires_at, lock.acquired_at + secs(90), "capped");
    h.advance(secs(40));
    let e = assert_err!(
        h.engine.heartbeat_lock(&h.alice, lock.id, Some(60)).await,
        Error::LockEnded { .. }
    );
    let Error::LockEnded { end, .. } = e else {
        unreachable!()
    };
    assert_eq!(end.cause, EndCause::Expired);
    assert_eq!(end.at, lock.acquired_at + secs(90));
    assert_eq!(end.reason.as_deref(), Some("max_hold_seconds reached"));
}

/// The holder releases; the lock then says it was released, by whom and
/// when, and every further action with it is refused saying so.
pub async fn release_frees_and_the_lock_says_how_it_ended(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a"], X).await;
    h.advance(secs(3));
    let released = h.engine.release_lock(&h.alice, lock.id).await.unwrap();
    let end = released.ended.clone().unwrap();
    assert_eq!(
        (end.cause, end.at, end.by.as_deref()),
        (EndCause::Released, h.now(), Some("alice"))
    );
    assert_eq!(h.get_lock(lock.id).await, released);
    assert!(!h.status(&["a"]).await[0].locked);
    let before = h.lock_snapshot(&["a"], &[lock.id]).await;
    for r in [
        h.engine.release_lock(&h.alice, lock.id).await,
        h.engine.heartbeat_lock(&h.alice, lock.id, Some(60)).await,
        h.engine.upgrade_lock(&h.alice, lock.id).await,
        h.engine.downgrade_lock(&h.alice, lock.id).await,
        h.engine
            .force_release_lock(&h.supervisor, lock.id, Some("cleanup"))
            .await,
    ] {
        assert_err!(r, Error::LockEnded { end, .. } if end.cause == EndCause::Released);
    }
    assert_eq!(h.lock_snapshot(&["a"], &[lock.id]).await, before);
    h.lock(&h.bob, &["a"], X).await;
}

/// Only the holder acts with a lock; a refusal changes nothing.
pub async fn only_the_holder_acts_with_a_lock(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a"], S).await;
    let before = h.lock_snapshot(&["a"], &[lock.id]).await;
    for r in [
        h.engine.heartbeat_lock(&h.bob, lock.id, Some(60)).await,
        h.engine.release_lock(&h.bob, lock.id).await,
        h.engine.upgrade_lock(&h.bob, lock.id).await,
        h.engine.downgrade_lock(&h.bob, lock.id).await,
        // A supervisor without force is no holder either.
        h.engine.release_lock(&h.supervisor, lock.id).await,
    ] {
        assert_err!(r, Error::NotLockHolder { holder, .. } if holder == "alice");
    }
    assert_eq!(h.lock_snapshot(&["a"], &[lock.id]).await, before);
}

/// A forced release needs the supervisor role and a reason; it is
/// recorded with who and why, the evicted holder learns it from the lock,
/// and the resources get a new, larger fencing token.
pub async fn forced_release_needs_a_supervisor_and_a_reason_and_bumps_the_token(db: TestStore) {
    let h = Harness::new(db).await;
    let joe = h.lock(&h.alice, &["customer/42", "customer/43"], X).await;
    let before = h.lock_snapshot(&["customer/42"], &[joe.id]).await;
    assert_err!(
        h.engine
            .force_release_lock(&h.bob, joe.id, Some("mine now"))
            .await,
        Error::Forbidden(_)
    );
    assert_err!(
        h.engine
            .force_release_lock(&h.app, joe.id, Some("mine now"))
            .await,
        Error::Forbidden(_)
    );
    for reason in [None, Some(""), Some("   ")] {
        assert_err!(
            h.engine
                .force_release_lock(&h.supervisor, joe.id, reason)
                .await,
            Error::Invalid { field, .. } if field == "reason"
        );
    }
    assert_eq!(h.lock_snapshot(&["customer/42"], &[joe.id]).await, before);
    h.advance(secs(10));
    let forced = h
        .engine
        .force_release_lock(&h.supervisor, joe.id, Some("Joe is on vacation"))
        .await
        .unwrap();
    let end = forced.ended.clone().unwrap();
    assert_eq!(
        (end.cause, end.by.as_deref(), end.reason.as_deref(), end.at),
        (
            EndCause::Forced,
            Some("supervisor"),
            Some("Joe is on vacation"),
            h.now()
        )
    );
    // The evicted holder learns why, from the lock and from any action.
    assert_eq!(h.get_lock(joe.id).await.ended, Some(end.clone()));
    let e = assert_err!(
        h.engine.heartbeat_lock(&h.alice, joe.id, Some(60)).await,
        Error::LockEnded { .. }
    );
    assert!(e.to_string().contains("Joe is on vacation"), "{e}");
    // Both resources' tokens moved past the evicted holder's.
    let status = h.status(&["customer/42", "customer/43"]).await;
    assert!(status.iter().all(|s| !s.locked && s.token > joe.token));
    assert_eq!(status[0].token, status[1].token);
    let history = h.lock_history("customer/42").await;
    let last = history.last().unwrap();
    assert_eq!(last.kind, LockEventKind::Forced);
    assert_eq!(last.actor.as_deref(), Some("supervisor"));
    assert_eq!(last.holder, "alice");
    assert_eq!(last.detail["reason"], "Joe is on vacation");
    assert_eq!(last.detail["resource_token"], status[0].token.0);
    // The next grant's token is larger still.
    let next = h.lock(&h.bob, &["customer/42"], X).await;
    assert!(next.token > status[0].token);
}

/// Logging out releases every live lock of the caller's session, and
/// nothing else.
pub async fn session_logout_releases_only_that_session(db: TestStore) {
    let h = Harness::new(db).await;
    let with = |who: &baton_core::Principal, name: &str, session: &str| {
        LockRequest::new(
            vec![res(name)],
            S,
            who.name.clone(),
            Some(session.into()),
            60,
            None,
            None,
        )
        .unwrap()
    };
    let a1 = h
        .try_lock(&h.alice, with(&h.alice, "a", "tab-1"))
        .await
        .unwrap();
    let a2 = h
        .try_lock(&h.alice, with(&h.alice, "b", "tab-1"))
        .await
        .unwrap();
    let a3 = h
        .try_lock(&h.alice, with(&h.alice, "c", "tab-2"))
        .await
        .unwrap();
    let b1 = h
        .try_lock(&h.bob, with(&h.bob, "a", "tab-1"))
        .await
        .unwrap();
    let released = h.engine.release_session(&h.alice, "tab-1").await.unwrap();
    let ids: Vec<_> = released.iter().map(|l| l.id).collect();
    assert_eq!(ids, [a1.id, a2.id]);
    for l in &released {
        let end = l.ended.clone().unwrap();
        assert_eq!(
            (end.cause, end.by.as_deref()),
            (EndCause::Released, Some("alice"))
        );
    }
    assert!(h.get_lock(a3.id).await.ended.is_none());
    assert!(h.get_lock(b1.id).await.ended.is_none());
    assert!(
        h.engine
            .release_session(&h.alice, "tab-1")
            .await
            .unwrap()
            .is_empty()
    );
    assert_err!(
        h.engine.release_session(&h.alice, "").await,
        Error::Invalid { field, .. } if field == "session"
    );
}

/// A shared lock becomes exclusive only when its holder is the only
/// sharer, with a new token; an exclusive one becomes shared keeping its
/// token, and others may then share.
pub async fn upgrade_needs_the_only_sharer_and_downgrade_shares(db: TestStore) {
    let h = Harness::new(db).await;
    let alice = h.lock(&h.alice, &["a", "b"], S).await;
    let bob = h.lock(&h.bob, &["b"], S).await;
    let before = h.lock_snapshot(&["a", "b"], &[alice.id, bob.id]).await;
    let e = assert_err!(
        h.engine.upgrade_lock(&h.alice, alice.id).await,
        Error::Locked { .. }
    );
    assert!(matches!(e, Error::Locked { ref conflicts, .. }
        if conflicts.len() == 1 && conflicts[0].holder == "bob" && conflicts[0].resource == res("b")));
    assert_eq!(
        h.lock_snapshot(&["a", "b"], &[alice.id, bob.id]).await,
        before
    );
    h.engine.release_lock(&h.bob, bob.id).await.unwrap();
    let up = h.engine.upgrade_lock(&h.alice, alice.id).await.unwrap();
    assert_eq!(up.mode, X);
    assert!(up.token > bob.token && up.token > alice.token);
    assert_eq!(h.status(&["a"]).await[0].token, up.token);
    assert_eq!(
        h.engine.upgrade_lock(&h.alice, alice.id).await.unwrap(),
        up,
        "already exclusive: unchanged"
    );
    assert_err!(
        h.try_lock(&h.bob, h.lock_request(&h.bob, &["a"], S)).await,
        Error::Locked { .. }
    );
    let down = h.engine.downgrade_lock(&h.alice, alice.id).await.unwrap();
    assert_eq!((down.mode, down.token), (S, up.token));
    h.lock(&h.bob, &["a"], S).await;
    let kinds: Vec<LockEventKind> = h.lock_history("a").await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            LockEventKind::Granted,
            LockEventKind::Upgraded,
            LockEventKind::Downgraded,
            LockEventKind::Granted
        ]
    );
}

/// A retried acquire with the same idempotency key gets the same lock,
/// never a second grant; once that lock ended, the retry is told how. Keys
/// are per holder.
pub async fn idempotent_acquire_returns_the_same_lock(db: TestStore) {
    let h = Harness::new(db).await;
    let keyed = |who: &baton_core::Principal, key: &str| {
        let mut r = h.lock_request(who, &["a"], X);
        r.idempotency_key = Some(key.into());
        r
    };
    let (first, created) = h
        .engine
        .acquire_lock(&h.alice, keyed(&h.alice, "k1"), StdDuration::ZERO)
        .await
        .unwrap();
    assert!(created);
    h.advance(secs(1));
    let (again, created) = h
        .engine
        .acquire_lock(&h.alice, keyed(&h.alice, "k1"), StdDuration::ZERO)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, first);
    let grants = h
        .lock_history("a")
        .await
        .iter()
        .filter(|e| e.kind == LockEventKind::Granted)
        .count();
    assert_eq!(grants, 1);
    // Another key of the same holder is another request: refused.
    assert_err!(
        h.engine
            .acquire_lock(&h.alice, keyed(&h.alice, "k2"), StdDuration::ZERO)
            .await,
        Error::Locked { .. }
    );
    // The same key of another holder is that holder's own.
    assert_err!(
        h.engine
            .acquire_lock(&h.bob, keyed(&h.bob, "k1"), StdDuration::ZERO)
            .await,
        Error::Locked { .. }
    );
    h.engine.release_lock(&h.alice, first.id).await.unwrap();
    assert_err!(
        h.engine
            .acquire_lock(&h.alice, keyed(&h.alice, "k1"), StdDuration::ZERO)
            .await,
        Error::LockEnded { end, .. } if end.cause == EndCause::Released
    );
}

/// Live locks are listed by resource, holder and session, by id, a page
/// at a time; ended and expired ones are not.
pub async fn locks_are_listed_by_resource_holder_and_session(db: TestStore) {
    let h = Harness::new(db).await;
    let mut session = h.lock_request(&h.alice, &["a", "b"], S);
    session.session = Some("tab-1".into());
    let l1 = h.try_lock(&h.alice, session).await.unwrap();
    let l2 = h.lock(&h.bob, &["b"], S).await;
    let l3 = h.lock(&h.alice, &["c"], X).await;
    let l4 = h.lock(&h.carol, &["d"], X).await;
    h.engine.release_lock(&h.carol, l4.id).await.unwrap();
    let list = |f: LockFilter| {
        let store = h.store();
        let now = h.now();
        async move {
            store
                .list_locks(
                    &LockFilter {
                        limit: f.limit.max(1),
                        ..f
                    },
                    now,
                )
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(LockFilter {
            limit: 100,
            ..Default::default()
        })
        .await,
        [l1.id, l2.id, l3.id]
    );
    assert_eq!(
        list(LockFilter {
            resource: Some(res("b")),
            limit: 100,
            ..Default::default()
        })
        .await,
        [l1.id, l2.id]
    );
    assert_eq!(
        list(LockFilter {
            holder: Some("alice".into()),
            limit: 100,
            ..Default::default()
        })
        .await,
        [l1.id, l3.id]
    );
    assert_eq!(
        list(LockFilter {
            session: Some("tab-1".into()),
            limit: 100,
            ..Default::default()
        })
        .await,
        [l1.id]
    );
    assert_eq!(
        list(LockFilter {
            limit: 2,
            ..Default::default()
        })
        .await,
        [l1.id, l2.id]
    );
    assert_eq!(
        list(LockFilter {
            limit: 2,
            after: Some(l2.id),
            ..Default::default()
        })
        .await,
        [l3.id]
    );
    h.advance(secs(LOCK_TTL.into()));
    assert!(
        list(LockFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert_err!(
        h.engine
            .list_locks(&h.alice, &LockFilter { limit: 0, ..Default::default() })
            .await,
        Error::Invalid { field, .. } if field == "limit"
    );
}

/// The status answers each distinct resource once, in the order asked:
/// locked or not, the mode, the live holders oldest first, how many wait,
/// the current token. Up to 500 resources.
pub async fn status_answers_each_resource_in_order(db: TestStore) {
    let h = Harness::new(db).await;
    let mut tab = h.lock_request(&h.alice, &["r2"], S);
    tab.session = Some("tab-1".into());
    let a = h.try_lock(&h.alice, tab).await.unwrap();
    let b = h.lock(&h.bob, &["r2"], S).await;
    let x = h.lock(&h.carol, &["r1"], X).await;
    let status = h.status(&["r2", "free", "r1", "r2"]).await;
    assert_eq!(status.len(), 3);
    assert_eq!(status[0].resource, res("r2"));
    assert!(status[0].locked);
    assert_eq!(status[0].mode, Some(S));
    let holders: Vec<(i64, &str, Option<&str>)> = status[0]
        .holders
        .iter()
        .map(|h| (h.lock, h.holder.as_str(), h.session.as_deref()))
        .collect();
    assert_eq!(
        holders,
        [(a.id, "alice", Some("tab-1")), (b.id, "bob", None)]
    );
    assert_eq!(status[0].holders[0].expires_at, a.expires_at);
    assert_eq!(status[0].token, b.token);
    assert_eq!(
        (
            status[1].locked,
            status[1].mode,
            status[1].holders.len(),
            status[1].token
        ),
        (false, None, 0, FencingToken(0))
    );
    assert_eq!((status[2].mode, status[2].token), (Some(X), x.token));
    assert_eq!(status[2].waiting, 0);
    // Limits: 500 names at most, each a valid name.
    let many: Vec<ResourceName> = (0..lock_limits::MAX_STATUS_RESOURCES)
        .map(|i| res(&format!("r{i}")))
        .collect();
    let all = h.engine.lock_status(&h.app, &many).await.unwrap();
    assert_eq!(all.len(), lock_limits::MAX_STATUS_RESOURCES);
    assert!(all[1].locked && all[2].locked && !all[3].locked);
    let mut too_many = many.clone();
    too_many.push(res("one-more"));
    assert_err!(
        h.engine.lock_status(&h.app, &too_many).await,
        Error::Invalid { field, .. } if field == "resources"
    );
}

/// A resource's history records every event in order, with actor, holder,
/// mode and token; only supervisors read it.
pub async fn resource_history_records_every_event(db: TestStore) {
    let h = Harness::new(db).await;
    let a = h.lock(&h.alice, &["a"], S).await;
    h.advance(secs(1));
    h.engine
        .heartbeat_lock(&h.alice, a.id, Some(30))
        .await
        .unwrap();
    h.advance(secs(1));
    let up = h.engine.upgrade_lock(&h.alice, a.id).await.unwrap();
    h.advance(secs(1));
    h.engine.downgrade_lock(&h.alice, a.id).await.unwrap();
    h.advance(secs(1));
    h.engine.release_lock(&h.alice, a.id).await.unwrap();
    let b = h.lock(&h.bob, &["a"], X).await;
    h.advance(secs(1));
    h.engine
        .force_release_lock(&h.supervisor, b.id, Some("stuck"))
        .await
        .unwrap();
    let c = h.lock(&h.carol, &["a"], S).await;
    h.advance(secs(LOCK_TTL.into()));
    h.engine.sweep_locks().await.unwrap();
    let history = h
        .engine
        .resource_history(&h.supervisor, &res("a"), 100)
        .await
        .unwrap();
    assert_eq!(
        kinds(&history),
        [
            ev(LockEventKind::Granted, Some("alice"), "alice"),
            ev(LockEventKind::Extended, Some("alice"), "alice"),
            ev(LockEventKind::Upgraded, Some("alice"), "alice"),
            ev(LockEventKind::Downgraded, Some("alice"), "alice"),
            ev(LockEventKind::Released, Some("alice"), "alice"),
            ev(LockEventKind::Granted, Some("bob"), "bob"),
            ev(LockEventKind::Forced, Some("supervisor"), "bob"),
            ev(LockEventKind::Granted, Some("carol"), "carol"),
            ev(LockEventKind::Expired, None, "carol"),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(history[2].token, up.token);
    assert_eq!(history[2].mode, X);
    assert_eq!(history[7].lock, c.id);
    // The latest events only, still oldest first.
    let last2 = h
        .engine
        .resource_history(&h.supervisor, &res("a"), 2)
        .await
        .unwrap();
    assert_eq!(last2, history[7..].to_vec());
    assert!(
        h.engine
            .resource_history(&h.supervisor, &res("never"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_err!(
        h.engine.resource_history(&h.alice, &res("a"), 10).await,
        Error::Forbidden(_)
    );
}

/// Ended locks are kept for the retention period, then forgotten (with
/// their idempotency keys).
pub async fn ended_locks_are_forgotten_after_the_retention(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a"], X).await;
    h.engine.release_lock(&h.alice, lock.id).await.unwrap();
    h.advance(Duration::days(7) - secs(1));
    assert_eq!(h.engine.sweep_locks().await.unwrap().forgotten, 0);
    assert!(h.get_lock(lock.id).await.ended.is_some());
    h.advance(secs(2));
    assert_eq!(h.engine.sweep_locks().await.unwrap().forgotten, 1);
    assert_err!(
        h.store().lock(lock.id, h.now()).await,
        Error::NotFound { what: "lock", .. }
    );
    // The history stays.
    assert_eq!(h.lock_history("a").await.len(), 2);
}

/// Unknown locks are not found by any operation; roles are enforced:
/// operators and apps take locks, only supervisors force or read history.
pub async fn unknown_locks_and_roles(db: TestStore) {
    let h = Harness::new(db).await;
    for r in [
        h.engine.heartbeat_lock(&h.alice, 999, Some(60)).await,
        h.engine.heartbeat_lock(&h.alice, 999, None).await,
        h.engine.release_lock(&h.alice, 999).await,
        h.engine.upgrade_lock(&h.alice, 999).await,
        h.engine.downgrade_lock(&h.alice, 999).await,
        h.engine
            .force_release_lock(&h.supervisor, 999, Some("x"))
            .await,
        h.engine.lock(&h.alice, 999).await,
    ] {
        assert_err!(r, Error::NotFound { what: "lock", .. });
    }
    // An application may hold locks (a batch job locking what it edits).
    h.lock(&h.app, &["import/7"], X).await;
    let lock: Lock = h.lock(&h.admin, &["a"], X).await;
    assert_eq!(lock.holder, "admin");
}
