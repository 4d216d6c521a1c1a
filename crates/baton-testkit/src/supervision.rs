//! What supervisors see and set: item listings (by state, by holder,
//! paged by id), queue statistics, and queue settings.

use baton_core::{Error, ItemFilter, ItemId, ItemState, QueueConfig, QueueStats};

use crate::TestStore;
use crate::harness::{Harness, LEASE_SECONDS, q, secs};

async fn list(h: &Harness, queue: &str, filter: ItemFilter) -> Vec<ItemId> {
    h.engine
        .list_items(&h.supervisor, &q(queue), &filter)
        .await
        .unwrap_or_else(|e| panic!("listing {queue} with {filter:?}: {e}"))
        .into_iter()
        .map(|i| i.id)
        .collect()
}

fn by_state(state: Option<ItemState>, limit: u32) -> ItemFilter {
    ItemFilter {
        state,
        limit,
        ..ItemFilter::default()
    }
}

fn by_holder(holder: &str, state: Option<ItemState>) -> ItemFilter {
    ItemFilter {
        state,
        holder: Some(holder.into()),
        limit: 100,
        after: None,
    }
}

async fn stats_of(h: &Harness, queue: &str) -> QueueStats {
    h.engine
        .queue_stats(&h.supervisor)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.queue == q(queue))
        .unwrap_or_else(|| panic!("no stats for queue {queue}"))
}

/// A queue with an item in every state, built at known times. Returns
/// (scheduled, ready, ready, leased by bob, parked, done by alice).
async fn every_state(h: &Harness, queue: &str) -> [ItemId; 6] {
    h.configure(queue, |c| c.max_attempts = 1).await;
    let parked = h.enqueue(queue, "k", 0).await;
    h.claim_some(&h.alice, queue).await;
    h.advance(secs(LEASE_SECONDS.into()));
    h.engine.sweep().await.unwrap();
    let done = h.enqueue(queue, "k", 0).await;
    let c = h.claim_some(&h.alice, queue).await;
    h.accept(&h.alice, &c).await;
    let leased = h.enqueue(queue, "k", 0).await;
    assert_eq!(h.claim_some(&h.bob, queue).await.item.id, leased.id);
    let ready_1 = h.enqueue(queue, "k", 0).await;
    h.advance(secs(40));
    let ready_2 = h.enqueue(queue, "k", 0).await;
    let (scheduled, _) = h.try_enqueue(queue, "k", 0, 600, None).await.unwrap();
    h.advance(secs(10));
    [
        scheduled.id,
        ready_1.id,
        ready_2.id,
        leased.id,
        parked.id,
        done.id,
    ]
}

/// A state filter returns exactly the queue's items in that state, in id
/// order; no filter returns every item, live and done.
pub async fn list_items_filters_by_state(db: TestStore) {
    let h = Harness::new(db).await;
    let [scheduled, ready_1, ready_2, leased, parked, done] = every_state(&h, "q").await;
    h.enqueue("elsewhere", "k", 0).await;
    assert_eq!(
        list(&h, "q", by_state(Some(ItemState::Scheduled), 10)).await,
        vec![scheduled]
    );
    assert_eq!(
        list(&h, "q", by_state(Some(ItemState::Ready), 10)).await,
        vec![ready_1, ready_2]
    );
    assert_eq!(
        list(&h, "q", by_state(Some(ItemState::Leased), 10)).await,
        vec![leased]
    );
    assert_eq!(
        list(&h, "q", by_state(Some(ItemState::Parked), 10)).await,
        vec![parked]
    );
    assert_eq!(
        list(&h, "q", by_state(Some(ItemState::Done), 10)).await,
        vec![done]
    );
    let mut all = vec![scheduled, ready_1, ready_2, leased, parked, done];
    all.sort();
    assert_eq!(list(&h, "q", by_state(None, 10)).await, all);
    // Listed items are the items as stored.
    let listed = h
        .engine
        .list_items(
            &h.supervisor,
            &q("q"),
            &by_state(Some(ItemState::Leased), 10),
        )
        .await
        .unwrap();
    assert_eq!(listed, vec![h.item(leased).await]);
    assert!(list(&h, "empty", by_state(None, 10)).await.is_empty());
    // The engine refuses a page size out of range.
    assert_err!(
        h.engine
            .list_items(&h.supervisor, &q("q"), &by_state(None, 0))
            .await,
        Error::Invalid { field, .. } if field == "limit"
    );
}

/// A holder filter returns the items leased to that holder and the done
/// items that holder completed.
pub async fn list_items_filters_by_holder(db: TestStore) {
    let h = Harness::new(db).await;
    h.configure("q", |c| c.max_leases_per_holder = 2).await;
    let a_done = h.enqueue("q", "k", 0).await;
    let c = h.claim_some(&h.alice, "q").await;
    h.accept(&h.alice, &c).await;
    let a1 = h.enqueue("q", "k", 0).await;
    let a2 = h.enqueue("q", "k", 0).await;
    let b1 = h.enqueue("q", "k", 0).await;
    let free = h.enqueue("q", "k", 0).await;
    assert_eq!(h.claim_some(&h.alice, "q").await.item.id, a1.id);
    assert_eq!(h.claim_some(&h.alice, "q").await.item.id, a2.id);
    assert_eq!(h.claim_some(&h.bob, "q").await.item.id, b1.id);
    let released = h.claim_some(&h.carol, "q").await;
    h.engine
        .release(&h.carol, free.id, released.lease.token, 0)
        .await
        .unwrap();
    assert_eq!(
        list(&h, "q", by_holder("alice", None)).await,
        vec![a_done.id, a1.id, a2.id]
    );
    assert_eq!(
        list(&h, "q", by_holder("alice", Some(ItemState::Leased))).await,
        vec![a1.id, a2.id]
    );
    assert_eq!(
        list(&h, "q", by_holder("alice", Some(ItemState::Done))).await,
        vec![a_done.id]
    );
    assert_eq!(list(&h, "q", by_holder("bob", None)).await, vec![b1.id]);
    assert!(
        list(&h, "q", by_holder("carol", None)).await.is_empty(),
        "a released item has no holder"
    );
    assert!(
        list(&h, "q", by_holder("alice", Some(ItemState::Ready)))
            .await
            .is_empty()
    );
}

/// Keyset paging: `after` an id and `limit` walk the listing without gaps
/// or repeats, across live and done items alike.
pub async fn list_items_pages_by_keyset(db: TestStore) {
    let h = Harness::new(db).await;
    let mut ids = Vec::new();
    for n in 0..7 {
        // Items 1 and 4 (0-based) get priority so they are claimed first.
        let priority = if n == 1 || n == 4 { 1 } else { 0 };
        ids.push(h.enqueue("q", "k", priority).await.id);
    }
    for expected in [ids[1], ids[4]] {
        let c = h.claim_some(&h.alice, "q").await;
        assert_eq!(c.item.id, expected);
        h.accept(&h.alice, &c).await;
    }
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let filter = ItemFilter {
            limit: 3,
            after,
            ..ItemFilter::default()
        };
        let page = list(&h, "q", filter).await;
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        pages.push(page);
        assert!(pages.len() <= 3, "paging does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![
            vec![ids[0], ids[1], ids[2]],
            vec![ids[3], ids[4], ids[5]],
            vec![ids[6]],
        ]
    );
    // Paging a state.
    let ready_page = |after| ItemFilter {
        state: Some(ItemState::Ready),
        limit: 2,
        after,
        holder: None,
    };
    assert_eq!(list(&h, "q", ready_page(None)).await, vec![ids[0], ids[2]]);
    assert_eq!(
        list(&h, "q", ready_page(Some(ids[2]))).await,
        vec![ids[3], ids[5]]
    );
    assert_eq!(list(&h, "q", ready_page(Some(ids[5]))).await, vec![ids[6]]);
    assert!(list(&h, "q", ready_page(Some(ids[6]))).await.is_empty());
    let done_after_first = ItemFilter {
        state: Some(ItemState::Done),
        limit: 10,
        after: Some(ids[1]),
        holder: None,
    };
    assert_eq!(list(&h, "q", done_after_first).await, vec![ids[4]]);
}

/// Stats count each state per queue, with the age of the oldest ready
/// item and the queue's settings; queues that only have settings are
/// listed with zeros.
pub async fn queue_stats_count_every_state(db: TestStore) {
    let h = Harness::new(db).await;
    let [_, ready_1, ..] = every_state(&h, "q").await;
    h.configure("quiet", |c| c.skip_cooldown_seconds = 5).await;
    let s = stats_of(&h, "q").await;
    assert_eq!(
        (s.scheduled, s.ready, s.leased, s.parked, s.done),
        (1, 2, 1, 1, 1),
        "{s:?}"
    );
    let oldest = h.item(ready_1).await;
    let age = (h.now() - oldest.created_at).num_milliseconds() as f64 / 1000.0;
    assert_eq!(age, 50.0);
    assert_eq!(s.oldest_ready_age_seconds, Some(age));
    assert_eq!(s.config.max_attempts, 1);
    let quiet = stats_of(&h, "quiet").await;
    assert_eq!(
        (
            quiet.scheduled,
            quiet.ready,
            quiet.leased,
            quiet.parked,
            quiet.done
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(quiet.oldest_ready_age_seconds, None);
    assert_eq!(quiet.config.skip_cooldown_seconds, 5);
    // The same through the store, at the engine's time.
    let direct = h.store().queue_stats(h.now()).await.unwrap();
    assert_eq!(direct, h.engine.queue_stats(&h.supervisor).await.unwrap());
    assert!(direct.iter().all(|s| s.queue != q("never-used")));
}

/// A lease that ran out counts as ready (not leased) even before any
/// sweep; the sweep then changes no count.
pub async fn queue_stats_count_an_unswept_expired_lease_as_ready(db: TestStore) {
    let h = Harness::new(db).await;
    h.enqueue("q", "k", 0).await;
    h.enqueue("q", "k", 0).await;
    h.claim_some(&h.alice, "q").await;
    h.claim_some(&h.bob, "q").await;
    let s = stats_of(&h, "q").await;
    assert_eq!((s.ready, s.leased), (0, 2));
    assert_eq!(s.oldest_ready_age_seconds, None);
    h.advance(secs(LEASE_SECONDS.into()));
    let before_sweep = stats_of(&h, "q").await;
    assert_eq!((before_sweep.ready, before_sweep.leased), (2, 0));
    assert_eq!(before_sweep.oldest_ready_age_seconds, Some(60.0));
    h.engine.sweep().await.unwrap();
    assert_eq!(stats_of(&h, "q").await, before_sweep);
    h.claim_some(&h.carol, "q").await;
    let s = stats_of(&h, "q").await;
    assert_eq!((s.ready, s.leased), (1, 1));
}

/// A scheduled item whose time has come is ready in the stats before any
/// sweep promotes it (a claim would take it), and not a moment earlier.
pub async fn queue_stats_count_a_due_scheduled_item_as_ready(db: TestStore) {
    let h = Harness::new(db).await;
    h.try_enqueue("q", "k", 0, 30, None).await.unwrap();
    let s = stats_of(&h, "q").await;
    assert_eq!((s.scheduled, s.ready), (1, 0));
    h.advance(secs(30) - chrono::Duration::milliseconds(1));
    assert_eq!(stats_of(&h, "q").await.scheduled, 1);
    h.advance(chrono::Duration::milliseconds(1));
    let due = stats_of(&h, "q").await;
    assert_eq!((due.scheduled, due.ready), (0, 1));
    assert_eq!(due.oldest_ready_age_seconds, Some(30.0));
    h.engine.sweep().await.unwrap();
    assert_eq!(stats_of(&h, "q").await, due);
}

/// Settings written are read back unchanged, by the engine and the store;
/// an unknown queue has the defaults.
pub async fn queue_config_round_trips(db: TestStore) {
    let h = Harness::new(db).await;
    let queue = q("desk");
    assert_eq!(
        h.engine.queue_config(&h.alice, &queue).await.unwrap(),
        QueueConfig::default()
    );
    let custom = QueueConfig {
        max_leases_per_holder: 3,
        max_attempts: 9,
        outcomes: vec!["approved".into(), "denied".into(), "up".into()],
        escalation_outcome: Some("up".into()),
        skip_cooldown_seconds: 0,
    };
    h.engine
        .set_queue_config(&h.supervisor, &queue, &custom)
        .await
        .unwrap();
    assert_eq!(
        h.engine.queue_config(&h.alice, &queue).await.unwrap(),
        custom
    );
    assert_eq!(h.store().queue_config(&queue).await.unwrap(), custom);
    assert_eq!(stats_of(&h, "desk").await.config, custom);
    let changed = QueueConfig {
        escalation_outcome: None,
        ..custom.clone()
    };
    h.store().set_queue_config(&queue, &changed).await.unwrap();
    assert_eq!(h.store().queue_config(&queue).await.unwrap(), changed);
    // Items enqueued later keep the settings.
    h.enqueue("desk", "k", 0).await;
    assert_eq!(h.store().queue_config(&queue).await.unwrap(), changed);
    assert_eq!(
        h.store().queue_config(&q("other")).await.unwrap(),
        QueueConfig::default()
    );
}

/// The engine refuses unusable settings, naming the field, and keeps the
/// old ones.
pub async fn invalid_queue_config_is_refused(db: TestStore) {
    let h = Harness::new(db).await;
    let queue = q("desk");
    let good = QueueConfig {
        max_attempts: 7,
        ..QueueConfig::default()
    };
    h.engine
        .set_queue_config(&h.supervisor, &queue, &good)
        .await
        .unwrap();
    let cases: Vec<(&str, QueueConfig)> = vec![
        (
            "max_leases_per_holder",
            QueueConfig {
                max_leases_per_holder: 0,
                ..good.clone()
            },
        ),
        (
            "max_attempts",
            QueueConfig {
                max_attempts: 0,
                ..good.clone()
            },
        ),
        (
            "outcomes",
            QueueConfig {
                outcomes: vec![],
                escalation_outcome: None,
                ..good.clone()
            },
        ),
        (
            "outcomes",
            QueueConfig {
                outcomes: vec!["not valid".into()],
                escalation_outcome: None,
                ..good.clone()
            },
        ),
        (
            "escalation_outcome",
            QueueConfig {
                escalation_outcome: Some("missing".into()),
                ..good.clone()
            },
        ),
        (
            "skip_cooldown_seconds",
            QueueConfig {
                skip_cooldown_seconds: 86_401,
                ..good.clone()
            },
        ),
    ];
    for (expected, config) in cases {
        assert_err!(
            h.engine.set_queue_config(&h.supervisor, &queue, &config).await,
            Error::Invalid { field, .. } if field == expected
        );
        assert_eq!(h.store().queue_config(&queue).await.unwrap(), good);
    }
    assert_err!(
        h.engine
            .set_queue_config(
                &h.supervisor,
                &q("new"),
                &QueueConfig {
                    max_attempts: 0,
                    ..QueueConfig::default()
                }
            )
            .await,
        Error::Invalid { .. }
    );
    assert!(
        h.store()
            .queue_stats(h.now())
            .await
            .unwrap()
            .iter()
            .all(|s| s.queue != q("new")),
        "a refused setting creates no queue"
    );
}

/// Concurrent read-modify-write changes of one queue's settings never
/// lose one another: 24 racing increments of `max_attempts` all land, and
/// a change the rules refuse leaves the settings as they were.
pub async fn concurrent_config_changes_all_survive(db: TestStore) {
    let h = Harness::new(db).await;
    let queue = q("busy");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (engine, who, queue) = (h.engine.clone(), h.supervisor.clone(), queue.clone());
        tasks.spawn(async move {
            engine
                .update_queue_config(&who, &queue, |mut c| {
                    c.max_attempts += 1;
                    c
                })
                .await
        });
    }
    let mut seen = Vec::new();
    while let Some(done) = tasks.join_next().await {
        seen.push(done.expect("task").expect("update").max_attempts);
    }
    seen.sort_unstable();
    let defaults = QueueConfig::default().max_attempts;
    assert_eq!(seen, (defaults + 1..=defaults + 24).collect::<Vec<_>>());
    let now = h.store().queue_config(&queue).await.unwrap();
    assert_eq!(now.max_attempts, defaults + 24);
    assert_err!(
        h.engine
            .update_queue_config(&h.supervisor, &queue, |mut c| {
                c.max_attempts = 0;
                c
            })
            .await,
        Error::Invalid { .. }
    );
    assert_err!(
        h.engine.update_queue_config(&h.alice, &queue, |c| c).await,
        Error::Forbidden(_)
    );
    assert_eq!(h.store().queue_config(&queue).await.unwrap(), now);
}
