//! Many claims and completions arriving at the same instant, as a store
//! that serves concurrent requests together (group commit) sees them:
//! every request must get the answer it would get alone, whatever else
//! shares its batch — other holders, the same holder again, the same
//! idempotency key again, other `kinds`, a holder's skip cooldown, a
//! refused completion next to accepted ones.
//!
//! Each case starts all its requests together behind a barrier, on the
//! multi-threaded runtime every case runs on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use baton::Engine;
use baton_core::{
    ClaimRequest, Claimed, CompleteRequest, Error, EventKind, FencingToken, ItemId, ItemState,
    Principal, Result,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, kind, q};

/// Runs every claim at once; the answers in the order given.
async fn claim_together(
    engine: &Engine,
    claims: Vec<(Principal, ClaimRequest)>,
) -> Vec<Result<Option<Claimed>>> {
    let barrier = Arc::new(Barrier::new(claims.len()));
    let mut tasks = JoinSet::new();
    for (i, (who, req)) in claims.into_iter().enumerate() {
        let (engine, barrier) = (engine.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            (i, engine.claim(&who, req, StdDuration::ZERO).await)
        });
    }
    in_order(tasks).await
}

/// Runs every completion at once; the answers in the order given.
async fn complete_together(
    engine: &Engine,
    completions: Vec<(Principal, ItemId, CompleteRequest)>,
) -> Vec<Result<baton_core::Item>> {
    let barrier = Arc::new(Barrier::new(completions.len()));
    let mut tasks = JoinSet::new();
    for (i, (who, id, req)) in completions.into_iter().enumerate() {
        let (engine, barrier) = (engine.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            (i, engine.complete(&who, id, req).await)
        });
    }
    in_order(tasks).await
}

async fn in_order<T: 'static>(mut tasks: JoinSet<(usize, T)>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task panicked"));
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn request(who: &Principal, queue: &str, kinds: &[&str], key: Option<&str>) -> ClaimRequest {
    ClaimRequest::new(
        q(queue),
        kinds.iter().map(|k| kind(k)).collect(),
        who.name.clone(),
        LEASE_SECONDS,
        key.map(str::to_owned),
    )
    .expect("a valid claim request")
}

/// 64 operators claim at once from 60 items of two kinds, half of them
/// only kind `a`: no item goes to two claims, a `kinds` filter is obeyed,
/// the items left are claimed afterwards, and each item's history records
/// exactly its one claim.
pub async fn simultaneous_claims_never_share_an_item(db: TestStore) {
    let h = Harness::new(db).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            h.enqueue("q", if i % 2 == 0 { "a" } else { "b" }, i % 3)
                .await
                .id,
        );
    }
    let mut claims = Vec::new();
    for i in 0..64 {
        let who = h.operator(&format!("op-{i:02}")).await;
        let kinds: &[&str] = if i % 2 == 0 { &["a"] } else { &[] };
        claims.push((who.clone(), request(&who, "q", kinds, None)));
    }
    let answers = claim_together(&h.engine, claims.clone()).await;
    let mut seen = HashSet::new();
    for ((who, req), answer) in claims.iter().zip(&answers) {
        if let Some(c) = answer.as_ref().expect("claim") {
            assert!(seen.insert(c.item.id), "item {} claimed twice", c.item.id);
            assert_eq!(c.lease.holder, who.name);
            assert_eq!(c.item.state, ItemState::Leased);
            assert!(
                req.wants(&c.item.kind),
                "{} got a {}",
                who.name,
                c.item.kind
            );
        }
    }
    // A claim may come back empty while the rows it would take are locked
    // by claims that take them (`SKIP LOCKED`); what is left is claimable
    // afterwards, each item once.
    let late = h.operator("late").await;
    h.configure("q", |c| c.max_leases_per_holder = 100).await;
    while let Some(c) = h.claim(&late, "q").await {
        assert!(seen.insert(c.item.id), "item {} claimed twice", c.item.id);
    }
    assert_eq!(seen.len(), ids.len(), "every item claimed");
    for id in &seen {
        let claimed = h
            .history(*id)
            .await
            .iter()
            .filter(|e| e.kind == EventKind::Claimed)
            .count();
        assert_eq!(claimed, 1, "item {id}");
    }
    assert_eq!(
        h.ids_in_state("q", ItemState::Leased).await.len(),
        seen.len()
    );
}

/// Two holders each send 12 claims at once to a queue allowing 3 leases
/// per holder: each ends with exactly 3 distinct items, and every answer
/// is one of its own 3.
pub async fn simultaneous_claims_of_one_holder_respect_its_maximum(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_leases_per_holder = 3).await;
    for _ in 0..20 {
        h.enqueue("q", "k", 0).await;
    }
    let (a, b) = (h.operator("alice").await, h.operator("bob").await);
    let mut claims = Vec::new();
    for _ in 0..12 {
        claims.push((a.clone(), request(&a, "q", &[], None)));
        claims.push((b.clone(), request(&b, "q", &[], None)));
    }
    let answers = claim_together(&h.engine, claims.clone()).await;
    let mut per_holder: HashMap<String, HashSet<ItemId>> = HashMap::new();
    for ((who, _), answer) in claims.iter().zip(answers) {
        let c = answer
            .expect("claim")
            .unwrap_or_else(|| panic!("{} got nothing", who.name));
        assert_eq!(c.lease.holder, who.name);
        per_holder
            .entry(who.name.clone())
            .or_default()
            .insert(c.item.id);
    }
    for who in [&a, &b] {
        let mine = &per_holder[&who.name];
        assert_eq!(mine.len(), 3, "{} got {mine:?}", who.name);
        let leased: HashSet<ItemId> = h
            .store()
            .list_items(
                &q("q"),
                &baton_core::ItemFilter {
                    state: Some(ItemState::Leased),
                    holder: Some(who.name.clone()),
                    limit: 100,
                    after: None,
                },
            )
            .await
            .expect("list")
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(&leased, mine, "{}", who.name);
    }
    assert!(per_holder[&a.name].is_disjoint(&per_holder[&b.name]));
}

/// One holder retries two claims, each 10 times at once with its own
/// idempotency key, alongside other holders claiming: each key's answers
/// are one and the same lease, the two keys got different items, and each
/// item was claimed once. A later retry gets the same answer again.
pub async fn simultaneous_retries_with_one_key_get_one_claim(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_leases_per_holder = 5).await;
    for _ in 0..12 {
        h.enqueue("q", "k", 0).await;
    }
    let a = h.operator("alice").await;
    let mut claims = Vec::new();
    for i in 0..10 {
        claims.push((a.clone(), request(&a, "q", &[], Some("first"))));
        claims.push((a.clone(), request(&a, "q", &[], Some("second"))));
        let other = h.operator(&format!("other-{i}")).await;
        claims.push((other.clone(), request(&other, "q", &[], None)));
    }
    let answers = claim_together(&h.engine, claims.clone()).await;
    let mut by_key: HashMap<&str, HashSet<(ItemId, FencingToken)>> = HashMap::new();
    let mut all = HashSet::new();
    for ((_, req), answer) in claims.iter().zip(answers) {
        let c = answer.expect("claim").expect("items were left");
        match req.idempotency_key.as_deref() {
            Some(k) => {
                by_key
                    .entry(k)
                    .or_default()
                    .insert((c.item.id, c.lease.token));
            }
            None => assert!(all.insert(c.item.id), "item {} claimed twice", c.item.id),
        }
    }
    let first = by_key["first"].iter().copied().collect::<Vec<_>>();
    let second = by_key["second"].iter().copied().collect::<Vec<_>>();
    assert_eq!((first.len(), second.len()), (1, 1), "{by_key:?}");
    assert_ne!(first[0].0, second[0].0);
    for (id, token) in [first[0], second[0]] {
        assert!(all.insert(id), "item {id} claimed twice");
        let claims = h
            .history(id)
            .await
            .iter()
            .filter(|e| e.kind == EventKind::Claimed)
            .count();
        assert_eq!(claims, 1, "item {id}");
        assert_eq!(h.item(id).await.token, token);
    }
    let again = h
        .try_claim(&a, request(&a, "q", &[], Some("first")))
        .await
        .expect("retry")
        .expect("the same claim");
    assert_eq!((again.item.id, again.lease.token), first[0]);
}

/// A holder whose skip cooldown covers the best items claims at the same
/// moment as others: the others may take those items, the holder gets an
/// item not cooling down for it (looking past the ones that are), as it
/// would alone; no item goes to two of them.
pub async fn simultaneous_claims_respect_each_holders_cooldown(db: TestStore) {
    let h = Harness::new(db).await;
    let r = h.operator("releaser").await;
    for _ in 0..4 {
        h.enqueue("q", "k", 9).await;
    }
    h.configure("q", |c| c.max_leases_per_holder = 4).await;
    let mut cooling = HashSet::new();
    for _ in 0..4 {
        let c = h.claim_some(&r, "q").await;
        cooling.insert(c.item.id);
    }
    for id in &cooling {
        let token = h.item(*id).await.token;
        h.engine.release(&r, *id, token, 0).await.expect("release");
    }
    let low: Vec<ItemId> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(h.enqueue("q", "k", 0).await.id);
        }
        v
    };
    let others = [h.operator("o1").await, h.operator("o2").await];
    let claims = vec![
        (others[0].clone(), request(&others[0], "q", &[], None)),
        (r.clone(), request(&r, "q", &[], None)),
        (others[1].clone(), request(&others[1], "q", &[], None)),
    ];
    let answers = claim_together(&h.engine, claims).await;
    let got: Vec<Claimed> = answers
        .into_iter()
        .map(|a| a.expect("claim").expect("items were ready"))
        .collect();
    assert!(
        low.contains(&got[1].item.id),
        "the releaser got {} (cooling down for it: {cooling:?})",
        got[1].item.id
    );
    let distinct: HashSet<ItemId> = got.iter().map(|c| c.item.id).collect();
    assert_eq!(distinct.len(), 3, "{got:?}");
}

/// 40 leased items, and at once: right completions, duplicates of some of
/// them, stale tokens, unknown outcomes and completions by someone else.
/// Each right one is accepted and archived once; each refused one gets
/// its own error and leaves its item exactly as it was.
pub async fn refused_completions_do_not_disturb_the_others(db: TestStore) {
    let h = Harness::new(db).await;
    let mut held = Vec::new();
    for i in 0..40 {
        h.enqueue("q", "k", 0).await;
        let who = h.operator(&format!("op-{i:02}")).await;
        let c = h.claim_some(&who, "q").await;
        held.push((who, c));
    }
    let stranger = h.operator("stranger").await;
    let mut before = HashMap::new();
    let mut completions = Vec::new();
    let done = |t| CompleteRequest::new(t, "accepted".into(), None, None).unwrap();
    for (i, (who, c)) in held.iter().enumerate() {
        let (id, token) = (c.item.id, c.lease.token);
        match i % 5 {
            0 => completions.push((who.clone(), id, done(token))),
            1 => {
                completions.push((who.clone(), id, done(token)));
                completions.push((who.clone(), id, done(token)));
            }
            2 => completions.push((who.clone(), id, done(FencingToken(token.0 + 1)))),
            3 => completions.push((
                who.clone(),
                id,
                CompleteRequest::new(token, "no-such-outcome".into(), None, None).unwrap(),
            )),
            _ => completions.push((stranger.clone(), id, done(token))),
        }
        if i % 5 >= 2 {
            before.insert(id, h.snapshot(id).await);
        }
    }
    let answers = complete_together(&h.engine, completions.clone()).await;
    let mut accepted: HashMap<ItemId, usize> = HashMap::new();
    for ((who, id, _), answer) in completions.iter().zip(answers) {
        let i = held.iter().position(|(_, c)| c.item.id == *id).unwrap();
        match (i % 5, answer) {
            (0 | 1, Ok(item)) => {
                assert_eq!(item.state, ItemState::Done);
                assert_eq!(
                    item.completion.as_ref().map(|c| c.by.as_str()),
                    Some(who.name.as_str())
                );
                *accepted.entry(*id).or_default() += 1;
            }
            // The duplicate that came second finds the item done.
            (1, Err(Error::StaleToken { .. } | Error::WrongState { .. })) => {}
            (2, Err(Error::StaleToken { .. })) => {}
            (3, Err(Error::Invalid { .. })) => {}
            (4, Err(Error::NotHolder { .. })) => {}
            (n, other) => panic!("item {id} (case {n}) by {}: {other:?}", who.name),
        }
    }
    for (i, (who, c)) in held.iter().enumerate() {
        let id = c.item.id;
        if i % 5 < 2 {
            assert_eq!(accepted.get(&id), Some(&1), "item {id} accepted once");
            let item = h.item(id).await;
            assert_eq!(item.state, ItemState::Done);
            let completed = h
                .history(id)
                .await
                .iter()
                .filter(|e| e.kind == EventKind::Completed)
                .count();
            assert_eq!(completed, 1, "item {id}");
        } else {
            assert_eq!(
                h.snapshot(id).await,
                before[&id],
                "refused item {id} changed"
            );
            h.accept(who, c).await;
        }
    }
    let stats = h.store().queue_stats(h.now()).await.expect("stats");
    let s = stats.iter().find(|s| s.queue == q("q")).expect("queue q");
    assert_eq!((s.done, s.leased, s.ready), (40, 0, 0));
}
