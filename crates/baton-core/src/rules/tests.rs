//! Unit tests of the lease rules: every transition and every refusal, plus a
//! seeded random walk checking the invariants over long operation sequences.

use chrono::{DateTime, Duration};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::{Kind, QueueName, lease_duration, limits};

fn t0() -> Timestamp {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn new_item() -> Item {
    let new = NewItem::new(
        QueueName::new("q").unwrap(),
        Kind::new("refund").unwrap(),
        json!({"amount": 10}),
        0,
        0,
        None,
    )
    .unwrap();
    let (mut item, ev) = enqueue(&new, "app", t0());
    assert_eq!(ev.kind, EventKind::Enqueued);
    item.id = 1;
    item
}

fn req(holder: &str, secs: u32) -> ClaimRequest {
    ClaimRequest::new(
        QueueName::new("q").unwrap(),
        vec![],
        holder.into(),
        secs,
        None,
    )
    .unwrap()
}

fn done(token: FencingToken, outcome: &str) -> CompleteRequest {
    CompleteRequest::new(token, outcome.into(), None, None).unwrap()
}

#[test]
fn claim_issues_increasing_tokens_and_an_expiry() {
    let mut item = new_item();
    let ev = claim(&mut item, &req("alice", 60), t0()).unwrap();
    assert_eq!(ev.token, Some(FencingToken(1)));
    assert_eq!(item.state, ItemState::Leased);
    let lease = item.lease.clone().unwrap();
    assert_eq!(lease.holder, "alice");
    assert_eq!(lease.expires_at, t0() + Duration::seconds(60));
    // A leased item cannot be claimed again.
    assert!(matches!(
        claim(&mut item, &req("bob", 60), t0()),
        Err(Error::WrongState { .. })
    ));
    release(
        &mut item,
        "alice",
        FencingToken(1),
        Duration::zero(),
        &QueueConfig::default(),
        t0(),
    )
    .unwrap();
    claim(&mut item, &req("bob", 60), t0()).unwrap();
    assert_eq!(item.token, FencingToken(2));
}

#[test]
fn heartbeat_extends_only_for_the_live_holder_with_the_current_token() {
    let mut item = new_item();
    claim(&mut item, &req("alice", 10), t0()).unwrap();
    let later = t0() + Duration::seconds(5);
    heartbeat(
        &mut item,
        "alice",
        FencingToken(1),
        Duration::seconds(10),
        later,
    )
    .unwrap();
    assert_eq!(
        item.lease.as_ref().unwrap().expires_at,
        later + Duration::seconds(10)
    );
    assert!(matches!(
        heartbeat(&mut item, "bob", FencingToken(1), Duration::seconds(10), later),
        Err(Error::NotHolder { ref holder, .. }) if holder == "alice"
    ));
    assert!(matches!(
        heartbeat(
            &mut item,
            "alice",
            FencingToken(0),
            Duration::seconds(10),
            later
        ),
        Err(Error::StaleToken { .. })
    ));
    assert!(matches!(
        heartbeat(
            &mut item,
            "alice",
            FencingToken(7),
            Duration::seconds(10),
            later
        ),
        Err(Error::StaleToken { .. })
    ));
    // Expired (exactly at expiry counts as expired).
    let at_expiry = later + Duration::seconds(10);
    let before = item.clone();
    assert!(matches!(
        heartbeat(
            &mut item,
            "alice",
            FencingToken(1),
            Duration::seconds(10),
            at_expiry
        ),
        Err(Error::StaleToken { .. })
    ));
    assert_eq!(item, before, "a refused heartbeat changes nothing");
}

#[test]
fn expiry_returns_to_ready_then_parks_after_max_attempts() {
    let cfg = QueueConfig {
        max_attempts: 3,
        ..QueueConfig::default()
    };
    let mut item = new_item();
    let mut now = t0();
    for attempt in 1..=3u32 {
        claim(&mut item, &req("alice", 1), now).unwrap();
        assert!(
            expire(&mut item, &cfg, now).is_none(),
            "live lease does not expire"
        );
        now += Duration::seconds(1);
        let ev = expire(&mut item, &cfg, now).unwrap();
        assert_eq!(item.attempts, attempt);
        if attempt < 3 {
            assert_eq!(ev.kind, EventKind::Expired);
            assert_eq!(item.state, ItemState::Ready);
        } else {
            assert_eq!(ev.kind, EventKind::Parked);
            assert_eq!(item.state, ItemState::Parked);
        }
        assert!(item.lease.is_none());
    }
    assert!(matches!(
        claim(&mut item, &req("bob", 1), now),
        Err(Error::WrongState { .. })
    ));
    requeue(&mut item, "sup", now).unwrap();
    assert_eq!((item.state, item.attempts), (ItemState::Ready, 0));
    assert!(
        requeue(&mut item, "sup", now).is_err(),
        "only parked items requeue"
    );
}

#[test]
fn old_holder_is_refused_after_reclaim() {
    let cfg = QueueConfig::default();
    let mut item = new_item();
    claim(&mut item, &req("alice", 1), t0()).unwrap();
    let now = t0() + Duration::seconds(2);
    expire(&mut item, &cfg, now).unwrap();
    claim(&mut item, &req("bob", 60), now).unwrap();
    let before = item.clone();
    let err = complete(
        &mut item,
        "alice",
        &done(FencingToken(1), "accepted"),
        &cfg,
        now,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::StaleToken {
            presented: FencingToken(1),
            current: FencingToken(2),
            ..
        }
    ));
    assert_eq!(item, before);
    complete(
        &mut item,
        "bob",
        &done(FencingToken(2), "accepted"),
        &cfg,
        now,
    )
    .unwrap();
    assert_eq!(item.state, ItemState::Done);
    assert_eq!(item.completion.as_ref().unwrap().by, "bob");
    // Completing twice is stale.
    assert!(matches!(
        complete(
            &mut item,
            "bob",
            &done(FencingToken(2), "accepted"),
            &cfg,
            now
        ),
        Err(Error::StaleToken { .. })
    ));
}

#[test]
fn complete_validates_outcome_and_escalation() {
    let cfg = QueueConfig::default();
    let mut item = new_item();
    claim(&mut item, &req("alice", 60), t0()).unwrap();
    let before = item.clone();
    assert!(matches!(
        complete(&mut item, "alice", &done(FencingToken(1), "maybe"), &cfg, t0()),
        Err(Error::Invalid { ref field, .. }) if field == "outcome"
    ));
    let to = Some(QueueName::new("level2").unwrap());
    let bad = CompleteRequest::new(FencingToken(1), "accepted".into(), None, to.clone()).unwrap();
    assert!(matches!(
        complete(&mut item, "alice", &bad, &cfg, t0()),
        Err(Error::Invalid { ref field, .. }) if field == "escalate_to"
    ));
    let same = CompleteRequest::new(
        FencingToken(1),
        "escalated".into(),
        None,
        Some(QueueName::new("q").unwrap()),
    )
    .unwrap();
    assert!(complete(&mut item, "alice", &same, &cfg, t0()).is_err());
    assert_eq!(item, before);
    let esc = CompleteRequest::new(
        FencingToken(1),
        "escalated".into(),
        Some("needs L2".into()),
        to,
    )
    .unwrap();
    let ev = complete(&mut item, "alice", &esc, &cfg, t0()).unwrap();
    assert_eq!(ev.kind, EventKind::Escalated);
    assert_eq!(ev.queue.as_str(), "q");
    assert_eq!(item.queue.as_str(), "level2");
    assert_eq!(item.state, ItemState::Ready);
    // The token keeps increasing in the new queue.
    let mut r = req("carol", 60);
    r.queue = QueueName::new("level2").unwrap();
    claim(&mut item, &r, t0()).unwrap();
    assert_eq!(item.token, FencingToken(2));
}

#[test]
fn release_with_delay_schedules_and_cools_down_for_the_releaser() {
    let cfg = QueueConfig {
        skip_cooldown_seconds: 30,
        ..QueueConfig::default()
    };
    let mut item = new_item();
    claim(&mut item, &req("alice", 60), t0()).unwrap();
    release(
        &mut item,
        "alice",
        FencingToken(1),
        Duration::seconds(10),
        &cfg,
        t0(),
    )
    .unwrap();
    assert_eq!(item.state, ItemState::Scheduled);
    assert!(!promote(&mut item, t0() + Duration::seconds(9)));
    assert!(promote(&mut item, t0() + Duration::seconds(10)));
    let at = t0() + Duration::seconds(10);
    assert!(claimable(&item, &req("bob", 60), at));
    assert!(
        !claimable(&item, &req("alice", 60), at),
        "not straight back to alice"
    );
    assert!(claimable(
        &item,
        &req("alice", 60),
        t0() + Duration::seconds(30)
    ));
}

#[test]
fn claimable_respects_kinds_and_time() {
    let item = new_item();
    let mut r = req("bob", 60);
    assert!(claimable(&item, &r, t0()));
    r.kinds = vec![Kind::new("other").unwrap()];
    assert!(!claimable(&item, &r, t0()));
    r.kinds.push(Kind::new("refund").unwrap());
    assert!(claimable(&item, &r, t0()));
}

#[test]
fn revoke_makes_the_token_stale() {
    let cfg = QueueConfig::default();
    let mut item = new_item();
    assert!(revoke(&mut item, "sup", t0()).is_err());
    claim(&mut item, &req("alice", 60), t0()).unwrap();
    let ev = revoke(&mut item, "sup", t0()).unwrap();
    assert_eq!(ev.detail["holder"], "alice");
    assert_eq!(item.state, ItemState::Ready);
    assert!(matches!(
        complete(
            &mut item,
            "alice",
            &done(FencingToken(1), "accepted"),
            &cfg,
            t0()
        ),
        Err(Error::StaleToken { .. })
    ));
}

#[test]
fn request_validation() {
    assert!(lease_duration(0).is_err());
    assert!(lease_duration(1).is_ok());
    assert!(lease_duration(86_400).is_ok());
    assert!(lease_duration(86_401).is_err());
    let q = QueueName::new("q").unwrap();
    let k = Kind::new("k").unwrap();
    let big = json!("x".repeat(limits::MAX_PAYLOAD_BYTES));
    assert!(NewItem::new(q.clone(), k.clone(), big, 0, 0, None).is_err());
    assert!(NewItem::new(q.clone(), k.clone(), json!({}), 0, 0, Some(String::new())).is_err());
    assert!(
        NewItem::new(
            q.clone(),
            k.clone(),
            json!({}),
            0,
            limits::MAX_DELAY_SECONDS + 1,
            None
        )
        .is_err()
    );
    let kinds = vec![k; limits::MAX_KINDS + 1];
    assert!(ClaimRequest::new(q, kinds, "a".into(), 60, None).is_err());
    assert!(QueueConfig::default().validate().is_ok());
    let bad = QueueConfig {
        escalation_outcome: Some("nope".into()),
        ..QueueConfig::default()
    };
    assert!(bad.validate().is_err());
    let bad = QueueConfig {
        max_attempts: 0,
        ..QueueConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Claim(usize, u32),
    Heartbeat(usize, i64, u32),
    Release(usize, i64),
    Complete(usize, i64),
    Revoke,
    Requeue,
    Expire,
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..5u32).prop_map(|(h, s)| Op::Claim(h, s)),
        (0..3usize, 0..6i64, 1..5u32).prop_map(|(h, t, s)| Op::Heartbeat(h, t, s)),
        (0..3usize, 0..6i64).prop_map(|(h, t)| Op::Release(h, t)),
        (0..3usize, 0..6i64).prop_map(|(h, t)| Op::Complete(h, t)),
        Just(Op::Revoke),
        Just(Op::Requeue),
        Just(Op::Expire),
        (0..4u32).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, rng_seed: proptest::test_runner::RngSeed::Fixed(0xBA70), ..ProptestConfig::default() })]

    /// Over any sequence of operations: tokens never decrease and rise by
    /// one per claim, a refused operation changes nothing, only the live
    /// holder with the current token acts, and a done item stays done.
    #[test]
    fn lease_invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..60)) {
        let holders = ["alice", "bob", "carol"];
        let cfg = QueueConfig { max_attempts: 3, skip_cooldown_seconds: 0, ..QueueConfig::default() };
        let mut item = new_item();
        let mut now = t0();
        let mut claims = 0i64;
        for op in ops {
            let before = item.clone();
            let live_holder = item.lease.as_ref().filter(|l| item.state == ItemState::Leased && l.is_live(now)).map(|l| l.holder.clone());
            let result: Result<()> = match op {
                Op::Claim(h, s) => {
                    let r = req(holders[h], s);
                    if claimable(&item, &r, now) { claim(&mut item, &r, now).map(|_| { claims += 1; }) } else { Ok(()) }
                }
                Op::Heartbeat(h, t, s) => heartbeat(&mut item, holders[h], FencingToken(t), Duration::seconds(s.into()), now).map(|_| ()),
                Op::Release(h, t) => release(&mut item, holders[h], FencingToken(t), Duration::zero(), &cfg, now).map(|_| ()),
                Op::Complete(h, t) => complete(&mut item, holders[h], &done(FencingToken(t), "accepted"), &cfg, now).map(|_| ()),
                Op::Revoke => revoke(&mut item, "sup", now).map(|_| ()),
                Op::Requeue => requeue(&mut item, "sup", now).map(|_| ()),
                Op::Expire => { expire(&mut item, &cfg, now); Ok(()) }
                Op::Advance(s) => { now += Duration::seconds(s.into()); Ok(()) }
            };
            match (&op, &result) {
                (_, Err(_)) => prop_assert_eq!(&item, &before, "refused op {:?} changed the item", op),
                (Op::Heartbeat(h, t, _) | Op::Release(h, t) | Op::Complete(h, t), Ok(())) => {
                    prop_assert_eq!(live_holder.as_deref(), Some(holders[*h]));
                    prop_assert_eq!(before.token, FencingToken(*t));
                }
                _ => {}
            }
            prop_assert!(item.token >= before.token);
            prop_assert_eq!(item.token, FencingToken(claims));
            if before.state == ItemState::Done { prop_assert_eq!(item.state, ItemState::Done); }
            prop_assert_eq!(item.lease.is_some(), item.state == ItemState::Leased);
            prop_assert!(item.attempts <= cfg.max_attempts);
        }
    }
}
