//! Unit tests of the lock rules: compatibility, admission (holds, queued
//! requests, expiry), every transition and every refusal.

use chrono::{DateTime, Duration};

use super::*;
use crate::{EndCause, LockRequest, lock_limits, validate_reason};

fn t0() -> Timestamp {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn r(name: &str) -> ResourceName {
    ResourceName::new(name).unwrap()
}

fn req(holder: &str, names: &[&str], mode: LockMode, ttl: u32) -> LockRequest {
    LockRequest::new(
        names.iter().map(|n| r(n)).collect(),
        mode,
        holder.into(),
        None,
        ttl,
        None,
        None,
    )
    .unwrap()
}

fn hold(resource: &str, lock: LockId, mode: LockMode, secs: i64) -> Hold {
    Hold {
        resource: r(resource),
        lock,
        holder: format!("holder{lock}"),
        mode,
        expires_at: t0() + Duration::seconds(secs),
    }
}

fn queued(resource: &str, ticket: TicketId, mode: LockMode, secs: i64) -> Queued {
    Queued {
        resource: r(resource),
        ticket,
        holder: format!("waiter{ticket}"),
        mode,
        expires_at: t0() + Duration::seconds(secs),
    }
}

use LockMode::{Exclusive as X, Shared as S};

#[test]
fn only_shared_and_shared_are_compatible() {
    assert!(S.compatible(S));
    assert!(!S.compatible(X));
    assert!(!X.compatible(S));
    assert!(!X.compatible(X));
}

#[test]
fn resource_names_are_printable_bounded_and_trimmed() {
    assert!(ResourceName::new("customer/42").is_ok());
    assert!(ResourceName::new("invoice 7 – Müller").is_ok());
    assert!(ResourceName::new("x".repeat(lock_limits::MAX_RESOURCE_BYTES)).is_ok());
    for bad in [
        String::new(),
        "x".repeat(lock_limits::MAX_RESOURCE_BYTES + 1),
        "a\nb".into(),
        "tab\there".into(),
        " leading".into(),
        "trailing ".into(),
        "\u{7f}".into(),
    ] {
        let e = ResourceName::new(bad.clone()).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "resources"),
            "{bad:?}: {e:?}"
        );
    }
    assert!(serde_json::from_str::<ResourceName>("\"a\\u0000b\"").is_err());
}

#[test]
fn requests_are_validated_and_resources_sorted_once() {
    let q = LockRequest::new(
        vec![r("b"), r("a"), r("b")],
        X,
        "alice".into(),
        Some("tab-1".into()),
        60,
        Some(3600),
        Some("key".into()),
    )
    .unwrap();
    assert_eq!(q.resources, vec![r("a"), r("b")]);
    let field = |e: Error| match e {
        Error::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    let new = |resources: Vec<ResourceName>, ttl, hold: Option<u32>, session: Option<&str>| {
        LockRequest::new(
            resources,
            S,
            "a".into(),
            session.map(str::to_owned),
            ttl,
            hold,
            None,
        )
    };
    assert_eq!(field(new(vec![], 60, None, None).unwrap_err()), "resources");
    let many: Vec<ResourceName> = (0..=lock_limits::MAX_RESOURCES)
        .map(|i| r(&format!("r{i}")))
        .collect();
    assert_eq!(
        field(new(many.clone(), 60, None, None).unwrap_err()),
        "resources"
    );
    assert!(new(many[1..].to_vec(), 60, None, None).is_ok());
    assert_eq!(
        field(new(vec![r("a")], 0, None, None).unwrap_err()),
        "ttl_seconds"
    );
    assert_eq!(
        field(new(vec![r("a")], 86_401, None, None).unwrap_err()),
        "ttl_seconds"
    );
    assert!(new(vec![r("a")], 1, None, None).is_ok());
    assert!(new(vec![r("a")], 86_400, None, None).is_ok());
    assert_eq!(
        field(new(vec![r("a")], 60, Some(0), None).unwrap_err()),
        "max_hold_seconds"
    );
    assert_eq!(
        field(
            new(
                vec![r("a")],
                60,
                Some(lock_limits::MAX_HOLD_SECONDS + 1),
                None
            )
            .unwrap_err()
        ),
        "max_hold_seconds"
    );
    assert_eq!(
        field(new(vec![r("a")], 60, None, Some("")).unwrap_err()),
        "session"
    );
    assert_eq!(
        field(new(vec![r("a")], 60, None, Some(&"s".repeat(129))).unwrap_err()),
        "session"
    );
    assert_eq!(field(validate_reason(None).unwrap_err()), "reason");
    assert_eq!(field(validate_reason(Some("  ")).unwrap_err()), "reason");
    assert_eq!(
        field(validate_reason(Some(&"x".repeat(1025))).unwrap_err()),
        "reason"
    );
    assert_eq!(
        validate_reason(Some(" on vacation ")).unwrap(),
        "on vacation"
    );
}

#[test]
fn admission_checks_every_resource_against_live_holds() {
    let holds = [
        hold("a", 1, S, 60),
        hold("b", 2, X, 60),
        hold("c", 3, X, 0),  // expired exactly now
        hold("z", 4, X, 60), // another resource
    ];
    // Shared on a: compatible with the shared hold.
    assert!(admit(&[r("a")], S, &holds, &[], None, t0()).granted());
    // Exclusive on a: conflicts with it.
    let adm = admit(&[r("a")], X, &holds, &[], None, t0());
    assert_eq!(adm.conflicts.len(), 1);
    assert_eq!(adm.conflicts[0].lock, Some(1));
    assert!(!adm.conflicts[0].waiting);
    // All or nothing: a and b, b conflicts.
    let adm = admit(&[r("a"), r("b")], S, &holds, &[], None, t0());
    assert_eq!(
        adm.conflicts
            .iter()
            .map(|c| c.resource.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    // An expired hold is no conflict.
    assert!(admit(&[r("c")], X, &holds, &[], None, t0()).granted());
    // One's own lock (upgrade) is no conflict.
    assert!(admit(&[r("b")], X, &holds, &[], Some(2), t0()).granted());
}

#[test]
fn admission_queues_behind_conflicting_requests_ahead() {
    let holds = [hold("a", 1, S, 60)];
    let ahead = [
        queued("a", 7, X, 30),
        queued("b", 8, S, 30),
        queued("a", 9, X, 0),
    ];
    // Shared on a is compatible with the shared hold, but an exclusive
    // request waits ahead: it must not be overtaken.
    let adm = admit(&[r("a")], S, &holds, &ahead, None, t0());
    assert_eq!(adm.conflicts.len(), 1);
    assert!(adm.conflicts[0].waiting);
    assert_eq!(adm.conflicts[0].holder, "waiter7");
    assert_eq!(adm.conflicts[0].lock, None);
    // A shared request queued ahead does not block another shared one;
    // a request whose wait ran out (ticket 9) is not in the queue.
    assert!(admit(&[r("b")], S, &[], &ahead, None, t0()).granted());
    let adm = admit(&[r("a")], X, &[], &ahead[1..], None, t0());
    assert!(adm.granted(), "{adm:?}");
}

#[test]
fn retry_after_is_the_earliest_conflict_in_whole_seconds() {
    let holds = [hold("a", 1, X, 90), hold("b", 2, X, 30)];
    let adm = admit(&[r("a"), r("b")], S, &holds, &[], None, t0());
    assert_eq!(retry_after(&adm.conflicts, t0()), 30);
    assert_eq!(
        retry_after(&adm.conflicts, t0() + Duration::milliseconds(29_500)),
        1
    );
    assert_eq!(
        retry_after(&adm.conflicts, t0() + Duration::seconds(100)),
        1
    );
    assert!(matches!(
        locked(adm.conflicts, t0()),
        Error::Locked {
            retry_after: 30,
            ..
        }
    ));
}

#[test]
fn grant_sets_expiry_token_and_events_per_resource() {
    let mut q = req("alice", &["b", "a"], X, 120);
    q.session = Some("tab-1".into());
    q.max_hold_seconds = Some(60);
    let (lock, events) = grant(&q, 5, FencingToken(9), t0());
    assert_eq!(lock.token, FencingToken(9));
    assert_eq!(lock.acquired_at, t0());
    // max_hold caps the idle TTL.
    assert_eq!(lock.max_hold_until, Some(t0() + Duration::seconds(60)));
    assert_eq!(lock.expires_at, t0() + Duration::seconds(60));
    assert!(lock.is_live(t0()));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].resource, r("a"));
    assert!(events.iter().all(|e| e.kind == LockEventKind::Granted
        && e.token == FencingToken(9)
        && e.actor.as_deref() == Some("alice")));
}

#[test]
fn heartbeat_extends_but_never_past_max_hold() {
    let mut q = req("alice", &["a"], X, 10);
    q.max_hold_seconds = Some(25);
    let (mut lock, _) = grant(&q, 1, FencingToken(1), t0());
    let t = t0() + Duration::seconds(8);
    heartbeat(&mut lock, "alice", 10, t).unwrap();
    assert_eq!(lock.expires_at, t + Duration::seconds(10));
    let t = t + Duration::seconds(9);
    heartbeat(&mut lock, "alice", 60, t).unwrap();
    assert_eq!(lock.expires_at, t0() + Duration::seconds(25), "capped");
    assert_eq!(lock.ttl_seconds, 60);
    // At the hold limit it has ended, by expiry, naming the limit.
    let at_limit = t0() + Duration::seconds(25);
    let e = heartbeat(&mut lock.clone(), "alice", 10, at_limit).unwrap_err();
    match e {
        Error::LockEnded { end, .. } => {
            assert_eq!(end.cause, EndCause::Expired);
            assert_eq!(end.at, at_limit);
            assert_eq!(end.reason.as_deref(), Some("max_hold_seconds reached"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_holder_acts_and_an_ended_lock_says_how_it_ended() {
    let (mut lock, _) = grant(&req("alice", &["a"], S, 10), 1, FencingToken(1), t0());
    let before = lock.clone();
    assert!(matches!(
        heartbeat(&mut lock, "bob", 10, t0()),
        Err(Error::NotLockHolder { ref holder, .. }) if holder == "alice"
    ));
    assert!(matches!(
        release(&mut lock, "bob", false, t0()),
        Err(Error::NotLockHolder { .. })
    ));
    assert_eq!(lock, before, "refusals change nothing");
    // Expired exactly at expires_at: ended for every purpose, before any
    // sweep, and the holder check comes second.
    let later = t0() + Duration::seconds(10);
    let e = heartbeat(&mut lock, "bob", 10, later).unwrap_err();
    assert!(matches!(e, Error::LockEnded { ref end, .. } if end.cause == EndCause::Expired));
    assert_eq!(lock, before);
    assert_eq!(settle(lock.clone(), later).ended.unwrap().at, later);
    assert!(settle(lock.clone(), t0()).ended.is_none());
    // Released: the second release says so.
    let evs = release(&mut lock, "alice", false, t0()).unwrap();
    assert_eq!(evs[0].kind, LockEventKind::Released);
    let e = release(&mut lock, "alice", false, t0()).unwrap_err();
    assert!(matches!(e, Error::LockEnded { ref end, .. }
        if end.cause == EndCause::Released && end.by.as_deref() == Some("alice")));
}

#[test]
fn force_records_who_and_why_and_bumps_the_resource_token() {
    let (mut lock, _) = grant(&req("joe", &["a", "b"], X, 600), 1, FencingToken(4), t0());
    let evs = force(
        &mut lock,
        "sup",
        "Joe is on vacation",
        FencingToken(5),
        t0(),
    )
    .unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].detail["resource_token"], 5);
    assert_eq!(evs[0].detail["reason"], "Joe is on vacation");
    let end = lock.ended.clone().unwrap();
    assert_eq!(
        (end.cause, end.by.as_deref(), end.reason.as_deref()),
        (EndCause::Forced, Some("sup"), Some("Joe is on vacation"))
    );
    let e = heartbeat(&mut lock, "joe", 10, t0()).unwrap_err();
    assert!(e.to_string().contains("Joe is on vacation"), "{e}");
    assert!(matches!(
        force(&mut lock, "sup", "again", FencingToken(6), t0()),
        Err(Error::LockEnded { .. })
    ));
}

#[test]
fn expire_records_the_end_at_the_expiry_instant() {
    let (mut lock, _) = grant(&req("alice", &["a"], S, 10), 1, FencingToken(1), t0());
    assert!(expire(&mut lock, t0() + Duration::seconds(9)).is_none());
    let evs = expire(&mut lock, t0() + Duration::seconds(30)).unwrap();
    assert_eq!(evs[0].at, t0() + Duration::seconds(10));
    assert_eq!(evs[0].actor, None);
    assert_eq!(
        lock.ended.as_ref().unwrap().at,
        t0() + Duration::seconds(10)
    );
    assert!(
        expire(&mut lock, t0() + Duration::seconds(40)).is_none(),
        "once"
    );
}

#[test]
fn upgrade_needs_to_be_the_only_holder_and_takes_a_new_token() {
    let (mut lock, _) = grant(&req("alice", &["a", "b"], S, 60), 1, FencingToken(3), t0());
    let other = hold("b", 2, S, 60);
    let mine = [hold("a", 1, S, 60), hold("b", 1, S, 60)];
    let e = plan_upgrade(
        &lock,
        "alice",
        &[mine[0].clone(), mine[1].clone(), other.clone()],
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Locked { ref conflicts, .. } if conflicts.len() == 1));
    assert!(matches!(
        plan_upgrade(&lock, "bob", &mine, t0()),
        Err(Error::NotLockHolder { .. })
    ));
    // The other sharer expired: allowed.
    let stale = hold("b", 2, S, 0);
    assert!(plan_upgrade(&lock, "alice", &[stale], t0()).unwrap());
    let evs = upgrade(&mut lock, FencingToken(8), t0());
    assert_eq!((lock.mode, lock.token), (X, FencingToken(8)));
    assert_eq!(evs[0].detail["from_token"], 3);
    assert!(!plan_upgrade(&lock, "alice", &[], t0()).unwrap(), "already");
    // Downgrade keeps the token.
    assert!(downgrade(&mut lock, "alice", t0()).unwrap().is_some());
    assert_eq!((lock.mode, lock.token), (S, FencingToken(8)));
    assert!(
        downgrade(&mut lock, "alice", t0()).unwrap().is_none(),
        "already"
    );
}
