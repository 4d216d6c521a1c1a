//! A seeded random walk of store operations, applied both to the store
//! and to a small in-memory model built on [`baton_core::rules`]; after
//! every step the answers must be equal, and at checkpoints every item,
//! every history, every listing and every count.
//!
//! The model is the executable form of the `Store` trait's doc comments:
//! it chooses items the way `rules::claimable` and the claim order say,
//! and changes them only through the rule functions. It is deliberately
//! naive (linear scans over everything).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use baton_core::{
    ClaimRequest, Claimed, CompleteRequest, Error, FencingToken, Item, ItemEvent, ItemFilter,
    ItemId, ItemState, NewItem, QueueConfig, QueueName, Result, Store, SweepReport, Timestamp,
    rules,
};
use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::TestStore;
use crate::harness::{kind, q, t0};

/// The seeds walked; fixed so a failure reproduces.
const SEEDS: [u64; 2] = [0xBA70_0001, 0xBA70_0002];
/// Operations per walk.
const STEPS: usize = 250;
/// Idempotency keys older than this are forgotten by a sweep; longer than
/// any walk, so the model never forgets one.
const KEY_RETENTION: Duration = Duration::days(7);
const HOLDERS: [&str; 3] = ["alice", "bob", "carol"];
const QUEUES: [&str; 2] = ["a", "b"];

/// One step of the walk.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(NewItem),
    Claim(ClaimRequest),
    Heartbeat(ItemId, String, FencingToken, Duration),
    Release(ItemId, String, FencingToken, Duration),
    Complete(ItemId, String, CompleteRequest),
    Revoke(ItemId),
    Requeue(ItemId),
    Advance(Duration),
    Sweep,
}

/// The in-memory model of a store.
#[derive(Default)]
struct Model {
    items: BTreeMap<ItemId, Item>,
    history: BTreeMap<ItemId, Vec<ItemEvent>>,
    configs: HashMap<QueueName, QueueConfig>,
    queues: BTreeSet<QueueName>,
    /// (holder, idempotency key) → (item, token granted).
    keys: HashMap<(String, String), (ItemId, FencingToken)>,
}

impl Model {
    fn config(&self, queue: &QueueName) -> QueueConfig {
        self.configs.get(queue).cloned().unwrap_or_default()
    }

    fn record(&mut self, ev: ItemEvent) {
        self.history.entry(ev.item_id).or_default().push(ev);
    }

    /// `Store::enqueue`; `store_id` is the id the store assigned, since ids
    /// are the store's to choose (they must only increase).
    fn enqueue(&mut self, new: &NewItem, now: Timestamp, store_id: ItemId) -> (Item, bool) {
        self.queues.insert(new.queue.clone());
        if let Some(key) = &new.dedupe_key
            && let Some(existing) = self.items.values().find(|i| {
                i.queue == new.queue
                    && i.dedupe_key.as_ref() == Some(key)
                    && i.state != ItemState::Done
            })
        {
            return (existing.clone(), false);
        }
        let (mut item, mut ev) = rules::enqueue(new, "app", now);
        assert!(
            self.items.keys().all(|&id| id < store_id),
            "the store reused or lowered an id: {store_id}"
        );
        item.id = store_id;
        ev.item_id = store_id;
        self.items.insert(store_id, item.clone());
        self.record(ev);
        (item, true)
    }

    fn promote_and_expire(&mut self, queue: Option<&QueueName>, now: Timestamp) -> SweepReport {
        let mut report = SweepReport::default();
        let mut ready: BTreeMap<QueueName, u64> = BTreeMap::new();
        let ids: Vec<ItemId> = self
            .items
            .values()
            .filter(|i| queue.is_none_or(|q| i.queue == *q))
            .map(|i| i.id)
            .collect();
        for id in ids {
            let cfg = self.config(&self.items[&id].queue);
            let item = self.items.get_mut(&id).expect("listed");
            if rules::promote(item, now) {
                *ready.entry(item.queue.clone()).or_default() += 1;
            }
            if let Some(ev) = rules::expire(item, &cfg, now) {
                report.expired += 1;
                if item.state == ItemState::Parked {
                    report.parked += 1;
                } else {
                    *ready.entry(item.queue.clone()).or_default() += 1;
                }
                self.record(ev);
            }
        }
        report.became_ready = ready.into_iter().collect();
        report
    }

    /// `Store::claim`, step by step as its doc comment says.
    fn claim(&mut self, req: &ClaimRequest, now: Timestamp) -> Result<Option<Claimed>> {
        if let Some(key) = &req.idempotency_key
            && let Some(&(id, token)) = self.keys.get(&(req.holder.clone(), key.clone()))
        {
            let item = self.items[&id].clone();
            let lease = rules::check_lease(&item, &req.holder, token, now)?.clone();
            return Ok(Some(Claimed { item, lease }));
        }
        let cfg = self.config(&req.queue);
        let mut held: Vec<&Item> = self
            .items
            .values()
            .filter(|i| {
                i.queue == req.queue
                    && i.state == ItemState::Leased
                    && i.lease
                        .as_ref()
                        .is_some_and(|l| l.holder == req.holder && l.is_live(now))
            })
            .collect();
        if held.len() >= cfg.max_leases_per_holder as usize {
            held.sort_by_key(|i| (i.lease.as_ref().map(|l| l.claimed_at), i.id));
            let item = held[0].clone();
            let lease = item.lease.clone().expect("held");
            self.remember(req, &item);
            return Ok(Some(Claimed { item, lease }));
        }
        self.promote_and_expire(Some(&req.queue), now);
        let next = self
            .items
            .values()
            .filter(|i| i.queue == req.queue && rules::claimable(i, req, now))
            .min_by_key(|i| (std::cmp::Reverse(i.priority), i.id))
            .map(|i| i.id);
        let Some(id) = next else {
            return Ok(None);
        };
        let item = self.items.get_mut(&id).expect("chosen");
        let ev = rules::claim(item, req, now)?;
        let item = item.clone();
        self.record(ev);
        self.remember(req, &item);
        let lease = item.lease.clone().expect("claimed");
        Ok(Some(Claimed { item, lease }))
    }

    fn remember(&mut self, req: &ClaimRequest, item: &Item) {
        if let Some(key) = &req.idempotency_key {
            self.keys
                .insert((req.holder.clone(), key.clone()), (item.id, item.token));
        }
    }

    /// A mutation of one item by a rule: all of it or nothing.
    fn mutate(
        &mut self,
        id: ItemId,
        rule: impl FnOnce(&mut Item, &QueueConfig) -> Result<ItemEvent>,
    ) -> Result<Item> {
        let mut item = self
            .items
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("item", id))?;
        let cfg = self.config(&item.queue);
        let from = item.queue.clone();
        let ev = rule(&mut item, &cfg)?;
        if item.queue != from {
            self.queues.insert(item.queue.clone());
            // The dedupe key moves along only if the target queue has no
            // unfinished item with it.
            if let Some(key) = &item.dedupe_key
                && self.items.values().any(|i| {
                    i.id != id
                        && i.queue == item.queue
                        && i.dedupe_key.as_ref() == Some(key)
                        && i.state != ItemState::Done
                })
            {
                item.dedupe_key = None;
            }
        }
        self.items.insert(id, item.clone());
        self.record(ev);
        Ok(item)
    }

    fn sweep(&mut self, now: Timestamp) -> SweepReport {
        self.promote_and_expire(None, now)
    }
}

/// Chooses the next operation.
fn next_op(rng: &mut StdRng, model: &Model) -> Op {
    let queue = |rng: &mut StdRng| q(QUEUES[rng.random_range(0..QUEUES.len())]);
    let holder = |rng: &mut StdRng| HOLDERS[rng.random_range(0..HOLDERS.len())].to_owned();
    // An item to act on: mostly a leased one, sometimes any, rarely none.
    let target = |rng: &mut StdRng| -> Option<&Item> {
        let leased: Vec<&Item> = model
            .items
            .values()
            .filter(|i| i.state == ItemState::Leased)
            .collect();
        if !leased.is_empty() && rng.random_bool(0.7) {
            return Some(leased[rng.random_range(0..leased.len())]);
        }
        let all: Vec<&Item> = model.items.values().collect();
        if all.is_empty() || rng.random_bool(0.05) {
            None
        } else {
            Some(all[rng.random_range(0..all.len())])
        }
    };
    let missing = model.items.keys().last().copied().unwrap_or(0) + 1_000;
    // Who acts and with which token: mostly the holder with the current
    // token, sometimes someone else or an old or future token.
    let credentials = |rng: &mut StdRng, item: Option<&Item>| -> (ItemId, String, FencingToken) {
        let Some(item) = item else {
            return (missing, holder(rng), FencingToken(1));
        };
        let who = match &item.lease {
            Some(l) if rng.random_bool(0.85) => l.holder.clone(),
            _ => holder(rng),
        };
        let token = match rng.random_range(0..10) {
            0 => FencingToken(item.token.0 - 1),
            1 => item.token.next(),
            _ => item.token,
        };
        (item.id, who, token)
    };
    match rng.random_range(0..100) {
        0..20 => {
            let delay = if rng.random_bool(0.7) {
                0
            } else {
                rng.random_range(1..10)
            };
            let dedupe = rng
                .random_bool(0.4)
                .then(|| format!("d{}", rng.random_range(0..4)));
            let kind_name = if rng.random_bool(0.5) { "x" } else { "y" };
            Op::Enqueue(
                NewItem::new(
                    queue(rng),
                    kind(kind_name),
                    json!({ "r": rng.random_range(0..1000) }),
                    rng.random_range(0..3),
                    delay,
                    dedupe,
                )
                .expect("valid"),
            )
        }
        20..50 => {
            let kinds = match rng.random_range(0..10) {
                0 => vec![kind("x")],
                1 => vec![kind("y")],
                2 => vec![kind("x"), kind("y")],
                _ => vec![],
            };
            let key = rng
                .random_bool(0.3)
                .then(|| format!("k{}", rng.random_range(0..4)));
            Op::Claim(
                ClaimRequest::new(queue(rng), kinds, holder(rng), rng.random_range(5..30), key)
                    .expect("valid"),
            )
        }
        50..58 => {
            let item = target(rng);
            let (id, who, token) = credentials(rng, item);
            Op::Heartbeat(id, who, token, Duration::seconds(rng.random_range(1..30)))
        }
        58..66 => {
            let item = target(rng);
            let (id, who, token) = credentials(rng, item);
            let delay = if rng.random_bool(0.7) {
                0
            } else {
                rng.random_range(1..10)
            };
            Op::Release(id, who, token, Duration::seconds(delay))
        }
        66..78 => {
            let item = target(rng);
            let (id, who, token) = credentials(rng, item);
            let other = match item.map(|i| i.queue.as_str()) {
                Some("a") => q("b"),
                _ => q("a"),
            };
            let (outcome, escalate_to) = match rng.random_range(0..20) {
                0..12 => ("accepted", None),
                12..15 => ("rejected", None),
                15..18 => ("escalated", Some(other)),
                18 => ("bogus", None),
                _ => ("accepted", Some(other)),
            };
            let note = rng.random_bool(0.3).then(|| "a note".to_owned());
            Op::Complete(
                id,
                who,
                CompleteRequest::new(token, outcome.into(), note, escalate_to).expect("valid"),
            )
        }
        78..82 => Op::Revoke(target(rng).map_or(missing, |i| i.id)),
        82..85 => Op::Requeue(target(rng).map_or(missing, |i| i.id)),
        85..95 => Op::Advance(Duration::milliseconds(rng.random_range(1..20_000))),
        _ => Op::Sweep,
    }
}

fn sorted(mut r: SweepReport) -> SweepReport {
    r.became_ready.sort();
    r
}

/// Compares everything the store can be asked about with the model.
async fn checkpoint(store: &Arc<dyn Store>, model: &Model, now: Timestamp, at: &str) {
    for (id, item) in &model.items {
        assert_eq!(&store.item(*id).await.unwrap(), item, "{at}: item {id}");
        assert_eq!(
            &store.item_history(*id).await.unwrap(),
            &model.history[id],
            "{at}: history of item {id}"
        );
    }
    for queue in &model.queues {
        let listed = store
            .list_items(
                queue,
                &ItemFilter {
                    limit: 1000,
                    ..ItemFilter::default()
                },
            )
            .await
            .unwrap();
        let expected: Vec<&Item> = model.items.values().filter(|i| i.queue == *queue).collect();
        assert_eq!(
            listed.iter().collect::<Vec<_>>(),
            expected,
            "{at}: list {queue}"
        );
    }
    let mut stats = store.queue_stats(now).await.unwrap();
    stats.sort_by(|a, b| a.queue.cmp(&b.queue));
    let names: Vec<&QueueName> = stats.iter().map(|s| &s.queue).collect();
    assert_eq!(
        names,
        model.queues.iter().collect::<Vec<_>>(),
        "{at}: queues"
    );
    for s in stats {
        let mut counts = [0u64; 5];
        for i in model.items.values().filter(|i| i.queue == s.queue) {
            let slot = match i.state {
                ItemState::Scheduled if i.available_at <= now => 1,
                ItemState::Scheduled => 0,
                ItemState::Ready => 1,
                ItemState::Leased if rules::lease_expired(i, now) => 1,
                ItemState::Leased => 2,
                ItemState::Parked => 3,
                ItemState::Done => 4,
            };
            counts[slot] += 1;
        }
        assert_eq!(
            [s.scheduled, s.ready, s.leased, s.parked, s.done],
            counts,
            "{at}: stats of {}",
            s.queue
        );
        assert_eq!(
            s.config,
            model.config(&s.queue),
            "{at}: config of {}",
            s.queue
        );
    }
}

/// Random operation sequences give the same answers from the store as
/// from the rules model, step by step, and leave the same state.
pub async fn random_operations_agree_with_the_rules_model(db: TestStore) {
    // The seeds run one after another on the same store, the model
    // carrying over the state the previous walk left.
    let store = db.store();
    let mut model = Model::default();
    let special = QueueConfig {
        max_leases_per_holder: 2,
        max_attempts: 2,
        skip_cooldown_seconds: 5,
        ..QueueConfig::default()
    };
    store.set_queue_config(&q("a"), &special).await.unwrap();
    model.configs.insert(q("a"), special);
    model.queues.insert(q("a"));
    let mut now = t0();
    for seed in SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut log: Vec<String> = Vec::new();
        for step in 0..STEPS {
            let op = next_op(&mut rng, &model);
            log.push(format!("{step}: {op:?}"));
            let at = || {
                let recent = log.len().saturating_sub(8);
                format!(
                    "seed {seed:#x} step {step} (recent ops:\n  {})\n",
                    log[recent..].join("\n  ")
                )
            };
            match op {
                Op::Enqueue(new) => {
                    let got = store.enqueue(new.clone(), "app", now).await;
                    let got = got.unwrap_or_else(|e| panic!("{}: enqueue failed: {e}", at()));
                    let want = model.enqueue(&new, now, got.0.id);
                    assert_eq!(got, want, "{}", at());
                }
                Op::Claim(req) => {
                    let got = store.claim(req.clone(), now).await;
                    let want = model.claim(&req, now);
                    assert_eq!(got, want, "{}", at());
                }
                Op::Heartbeat(id, who, token, lease) => {
                    let got = store.heartbeat(id, &who, token, lease, now).await;
                    let want =
                        model.mutate(id, |i, _| rules::heartbeat(i, &who, token, lease, now));
                    assert_eq!(got, want, "{}", at());
                }
                Op::Release(id, who, token, delay) => {
                    let got = store.release(id, &who, token, delay, now).await;
                    let want =
                        model.mutate(id, |i, cfg| rules::release(i, &who, token, delay, cfg, now));
                    assert_eq!(got, want, "{}", at());
                }
                Op::Complete(id, who, req) => {
                    let got = store.complete(id, &who, req.clone(), now).await;
                    let want = model.mutate(id, |i, cfg| rules::complete(i, &who, &req, cfg, now));
                    assert_eq!(got, want, "{}", at());
                }
                Op::Revoke(id) => {
                    let got = store.revoke(id, "supervisor", now).await;
                    let want = model.mutate(id, |i, _| rules::revoke(i, "supervisor", now));
                    assert_eq!(got, want, "{}", at());
                }
                Op::Requeue(id) => {
                    let got = store.requeue(id, "supervisor", now).await;
                    let want = model.mutate(id, |i, _| rules::requeue(i, "supervisor", now));
                    assert_eq!(got, want, "{}", at());
                }
                Op::Advance(by) => now += by,
                Op::Sweep => {
                    let got = store.sweep(now, KEY_RETENTION).await.unwrap();
                    let want = model.sweep(now);
                    assert_eq!(sorted(got), sorted(want), "{}", at());
                }
            }
            if step % 50 == 49 {
                checkpoint(&store, &model, now, &at()).await;
            }
        }
        checkpoint(&store, &model, now, &format!("end of seed {seed:#x}")).await;
    }
    let states: BTreeSet<&str> = model.items.values().map(|i| i.state.as_str()).collect();
    assert!(
        states.len() >= 4,
        "the walk should reach most states, reached {states:?}"
    );
}
