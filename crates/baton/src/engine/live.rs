//! The engine's side of live events (see [`crate::events`]): publishing
//! after each successful operation, subscribing, and the timer task that
//! publishes `lease.expiring` and `lease.lost` (see `lease_watch`).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use baton_core::{
    Action, Claimed, EventKind as ItemEventKind, Item, ItemId, ItemState, Lease, Lock,
    MAX_EVENT_PAYLOAD, Principal, Result, Timestamp, Topic, Written,
};
use chrono::Duration;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::events::{
    Event, EventKind, Subscription, item_data, item_topics, lock_data, lock_topics,
};
use crate::lease_watch::{Watched, watched};

/// The longest the lease timer sleeps without looking at the clock again
/// (the engine's clock may be a test clock that jumps).
const TIMER_TICK: StdDuration = StdDuration::from_secs(1);

impl Engine {
    /// Subscribes `who` (any role that may read) to the live events of
    /// `topics` (1 to [`baton_core::topics::MAX_TOPICS`]): with
    /// `last_event_id`, the retained events after it are replayed first
    /// (see [`crate::events`] for resumption and `stream.reset`).
    pub fn subscribe(
        &self,
        who: &Principal,
        topics: &[Topic],
        last_event_id: Option<u64>,
    ) -> Result<Subscription> {
        who.require(Action::Read)?;
        Topic::check_count(topics.len())?;
        Ok(self
            .inner
            .bus
            .subscribe(topics.to_vec(), last_event_id, self.now()))
    }

    /// Publishes a live event now; returns it with its id.
    pub(crate) fn emit(&self, kind: EventKind, topics: Vec<Topic>, data: Value) -> Arc<Event> {
        self.inner.bus.publish(kind, topics, data, self.now())
    }

    /// Publishes an item event; `extra` members are added to the item's
    /// data.
    pub(super) fn emit_item(&self, kind: EventKind, item: &Item, extra: Option<Value>) {
        let mut data = item_data(item);
        if let (Some(Value::Object(extra)), Value::Object(d)) = (extra, &mut data) {
            d.extend(extra);
        }
        self.emit(kind, item_topics(item), data);
    }

    /// A claim answered: publishes `item.claimed` for a new grant (not
    /// for a repeated answer), after `lease.lost` for the item's previous
    /// lease if this server still watched it (it expired and was taken
    /// over lazily by this claim).
    pub(super) fn claimed(&self, claimed: &Claimed) {
        let item = &claimed.item;
        let Some(previous) = self.inner.leases.track(item.id, &claimed.lease) else {
            return;
        };
        if let Some(token) = previous {
            self.emit_item(
                EventKind::LeaseLost,
                item,
                Some(json!({
                    "cause": "expired",
                    "lost_token": token.0,
                    "holder": Value::Null,
                    "lease_expires_at": Value::Null,
                })),
            );
        }
        self.emit_item(EventKind::ItemClaimed, item, None);
    }

    /// Publishes `lease.lost` for `lease` of `item`.
    pub(super) fn emit_lease_lost(
        &self,
        item: &Item,
        lease: &Lease,
        cause: &str,
        by: Option<&str>,
    ) {
        self.emit_item(
            EventKind::LeaseLost,
            item,
            Some(json!({
                "cause": cause,
                "by": by,
                "lost_token": lease.token.0,
                "holder": lease.holder,
                "lease_expires_at": lease.expires_at,
            })),
        );
    }

    /// Publishes `record.changed` for a successful write.
    pub(super) fn emit_record(&self, written: &Written, deleted: bool) {
        let r = &written.record;
        self.emit(
            EventKind::RecordChanged,
            vec![
                Topic::Collection(r.collection.clone()),
                Topic::Record(r.collection.clone(), r.key.clone()),
            ],
            json!({
                "collection": r.collection,
                "key": r.key,
                "version": r.version,
                "op": written.kind,
                "deleted": deleted,
                "actor": r.updated_by,
                "changed": written.changed,
                "merged_from": written.merged_from,
                "at": r.updated_at,
            }),
        );
    }

    /// Publishes `lock.granted`.
    pub(super) fn emit_lock_granted(&self, lock: &Lock) {
        self.emit(
            EventKind::LockGranted,
            lock_topics(lock),
            lock_data(lock, None),
        );
    }

    /// Publishes `lock.released` with its cause (`released`, `forced`,
    /// `expired`, `session`).
    pub(super) fn emit_lock_released(&self, lock: &Lock, cause: &str) {
        self.emit(
            EventKind::LockReleased,
            lock_topics(lock),
            lock_data(lock, Some(cause)),
        );
    }

    /// Leases this server watches for `lease.expiring`/`lease.lost`.
    pub fn watched_leases(&self) -> usize {
        self.inner.leases.len()
    }

    /// The lease timer: sleeps until the earliest deadline of a watched
    /// lease (or news of an earlier one), then checks each lease due.
    pub(super) async fn watch_leases(self, shutdown: CancellationToken) {
        loop {
            let sleep = match self.inner.leases.next_due() {
                Some(due) => (due - self.now())
                    .to_std()
                    .unwrap_or(StdDuration::ZERO)
                    .min(TIMER_TICK),
                None => TIMER_TICK,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.leases.changed.notified() => continue,
                _ = tokio::time::sleep(sleep) => {}
            }
            let now = self.now();
            for (id, w) in self.inner.leases.take_due(now) {
                if let Err(e) = self.check_lease(id, &w).await {
                    tracing::warn!(error = %e, item = id, "checking a watched lease failed; will retry");
                    let mut retry = w.clone();
                    retry.due = self.now() + Duration::seconds(1);
                    self.inner.leases.settle(id, &w, Some(retry));
                }
            }
        }
    }

    /// One deadline of a watched lease has come: look at the item.
    async fn check_lease(&self, id: ItemId, w: &Watched) -> Result<()> {
        let item = self.inner.store.item(id).await?;
        let now = self.now();
        let same_lease = item.state == ItemState::Leased && item.token == w.token;
        if same_lease && let Some(lease) = &item.lease {
            if lease.expires_at > w.expires_at {
                // Extended through another server.
                self.inner
                    .leases
                    .settle(id, w, Some(watched(w.token, now, lease.expires_at)));
                return Ok(());
            }
            if !w.warned {
                if self.inner.leases.is_current(id, w) {
                    let left = (lease.expires_at - now).num_milliseconds().max(0);
                    self.emit_item(
                        EventKind::LeaseExpiring,
                        &item,
                        Some(json!({ "seconds_left": left as f64 / 1000.0 })),
                    );
                }
                let next = Watched {
                    warned: true,
                    due: lost_check_time(self, lease.expires_at),
                    ..w.clone()
                };
                self.inner.leases.settle(id, w, Some(next));
                return Ok(());
            }
            if lease.expires_at > now {
                // Not yet (the clock went back, or woke early).
                let next = Watched {
                    due: lease.expires_at,
                    ..w.clone()
                };
                self.inner.leases.settle(id, w, Some(next));
                return Ok(());
            }
            // Ran out; the sweeper has not recorded it yet.
            if self.inner.leases.settle(id, w, None) {
                self.emit_lease_lost(&item, lease, "expired", None);
            }
            return Ok(());
        }
        // The lease ended elsewhere: how? Its ending event carries its
        // token.
        let history = self.inner.store.item_history(id).await?;
        let end = history.iter().find(|e| {
            e.token == Some(w.token)
                && !matches!(
                    e.kind,
                    ItemEventKind::Claimed | ItemEventKind::Extended | ItemEventKind::Enqueued
                )
        });
        let cause = match end.map(|e| e.kind) {
            Some(ItemEventKind::Expired | ItemEventKind::Parked) => Some("expired"),
            Some(ItemEventKind::Revoked) => Some("revoked"),
            _ => None,
        };
        if self.inner.leases.settle(id, w, None)
            && let (Some(cause), Some(end)) = (cause, end)
        {
            let holder = end
                .detail
                .get("holder")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let lease = Lease {
                token: w.token,
                holder: holder.unwrap_or_default(),
                claimed_at: w.since,
                expires_at: w.expires_at,
            };
            self.emit_lease_lost(&item, &lease, cause, end.actor.as_deref());
        }
        Ok(())
    }
}

/// When to look for a lease's loss: just after the sweeper's next pass
/// following its expiry, so the item's state is the recorded one.
fn lost_check_time(engine: &Engine, expires_at: Timestamp) -> Timestamp {
    let sweep = Duration::from_std(engine.inner.settings.sweep_interval)
        .unwrap_or_else(|_| Duration::milliseconds(500));
    expires_at + sweep + Duration::milliseconds(100)
}

/// Most events relayed in one `publish_events` call.
const RELAY_BATCH: usize = 256;

/// Encodes a local event for other servers: origin, local id (so that no
/// two payloads are identical), kind, topics, time, data — at most
/// [`MAX_EVENT_PAYLOAD`] bytes: when too long, `data` is cut down to what
/// names the thing (marked `"truncated": true`); `None` when even that is
/// too long (the other servers are then told to reset).
fn encode(origin: &str, e: &Event) -> Option<String> {
    let topics: Vec<String> = e.topics.iter().map(|t| t.to_string()).collect();
    let payload = |data: &Value| {
        json!({"o": origin, "i": e.id, "k": e.kind.as_str(), "t": topics, "a": e.at, "d": data})
            .to_string()
    };
    let full = payload(&e.data);
    if full.len() <= MAX_EVENT_PAYLOAD {
        return Some(full);
    }
    let mut short = serde_json::Map::new();
    for key in [
        "queue",
        "item_id",
        "state",
        "holder",
        "token",
        "cause",
        "collection",
        "key",
        "version",
        "op",
        "actor",
        "at",
        "lock_id",
        "mode",
    ] {
        if let Some(v) = e.data.get(key) {
            short.insert(key.to_owned(), v.clone());
        }
    }
    short.insert("truncated".to_owned(), Value::Bool(true));
    let cut = payload(&Value::Object(short));
    (cut.len() <= MAX_EVENT_PAYLOAD).then_some(cut)
}

/// Adds a local event to a relay batch (remote events and resets are not
/// relayed; an event too large to relay owes the others a reset).
fn add(origin: &str, e: &Event, batch: &mut Vec<String>, reset_owed: &mut bool) {
    if e.remote || e.kind == EventKind::StreamReset {
        return;
    }
    match encode(origin, e) {
        Some(p) => batch.push(p),
        None => *reset_owed = true,
    }
}

impl Engine {
    /// Relays live events between the servers sharing a database that can
    /// carry them (PostgreSQL `NOTIFY`, see [`baton_core::Store::publish_events`]):
    /// a task sends this server's events in batches, and what other
    /// servers send is published on this server's bus with local ids.
    /// Whatever cannot be relayed (the relay fell behind, an event too
    /// large, the database unreachable, the listening connection lost)
    /// becomes a `stream.reset` for the subscribers who may have missed
    /// it, never a silent gap.
    pub(super) async fn relay_events(&self, shutdown: CancellationToken) -> Result<()> {
        let engine = self.clone();
        self.inner
            .store
            .listen_events(Arc::new(move |payload: Option<&str>| {
                engine.receive_relayed(payload)
            }))
            .await?;
        let engine = self.clone();
        let mut rx = self.inner.bus.raw_subscribe();
        tokio::spawn(async move {
            let origin = engine.inner.origin.clone();
            let mut reset_owed = false;
            loop {
                let mut batch = Vec::new();
                let first = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = rx.recv() => r,
                };
                match first {
                    Ok(e) => add(&origin, &e, &mut batch, &mut reset_owed),
                    Err(broadcast::error::RecvError::Lagged(_)) => reset_owed = true,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
                while batch.len() < RELAY_BATCH {
                    match rx.try_recv() {
                        Ok(e) => add(&origin, &e, &mut batch, &mut reset_owed),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => reset_owed = true,
                        Err(_) => break,
                    }
                }
                if reset_owed {
                    batch.push(json!({"o": origin, "reset": true}).to_string());
                }
                match engine.inner.store.publish_events(&batch).await {
                    Ok(()) => reset_owed = false,
                    Err(e) => {
                        tracing::warn!(error = %e, events = batch.len(), "relaying live events to other servers failed");
                        reset_owed = true;
                    }
                }
            }
        });
        Ok(())
    }

    /// An event relayed by the database: published here unless this
    /// server sent it; `None` (news may have been lost) and relayed resets
    /// become a `stream.reset`.
    fn receive_relayed(&self, payload: Option<&str>) {
        let reset = |why: &str| {
            self.inner.bus.publish_from(
                EventKind::StreamReset,
                Vec::new(),
                json!({ "reason": why }),
                self.now(),
                true,
            );
        };
        let Some(payload) = payload else {
            reset("events from other servers may have been missed");
            return;
        };
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            tracing::warn!("ignoring a relayed event that is not JSON");
            return;
        };
        if v["o"].as_str() == Some(self.inner.origin.as_str()) {
            return;
        }
        if v["reset"] == Value::Bool(true) {
            reset("another server could not relay all of its events");
            return;
        }
        let kind = v["k"].as_str().and_then(EventKind::parse);
        let at = serde_json::from_value::<Timestamp>(v["a"].clone()).ok();
        let topics: Option<Vec<Topic>> = v["t"].as_array().map(|ts| {
            ts.iter()
                .filter_map(|t| t.as_str())
                .filter_map(|t| Topic::parse(t).ok())
                .collect()
        });
        match (kind, at, topics) {
            (Some(kind), Some(at), Some(topics)) => {
                self.inner
                    .bus
                    .publish_from(kind, topics, v["d"].clone(), at, true);
            }
            _ => tracing::warn!("ignoring a malformed relayed event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::{CollectionName, RecordKey, ResourceName};

    fn event(topics: Vec<Topic>, data: Value) -> Event {
        Event {
            id: 7,
            at: chrono::Utc::now(),
            kind: EventKind::RecordChanged,
            topics,
            data,
            remote: false,
        }
    }

    fn record_topics() -> Vec<Topic> {
        let c = CollectionName::new("clients").unwrap();
        vec![
            Topic::Collection(c.clone()),
            Topic::Record(c, RecordKey::new("42").unwrap()),
        ]
    }

    #[test]
    fn relayed_payloads_fit_postgres_notify() {
        let small = event(record_topics(), json!({"key": "42", "changed": ["/a"]}));
        let p: Value = serde_json::from_str(&encode("srv", &small).unwrap()).unwrap();
        assert_eq!(p["o"], "srv");
        assert_eq!(p["i"], 7);
        assert_eq!(p["k"], "record.changed");
        assert_eq!(p["t"], json!(["collection:clients", "record:clients/42"]));
        assert_eq!(p["d"]["changed"], json!(["/a"]));

        // Thousands of changed paths: cut down to what names the record.
        let paths: Vec<String> = (0..2000).map(|i| format!("/field{i}")).collect();
        let big = event(
            record_topics(),
            json!({"key": "42", "version": 3, "changed": paths}),
        );
        let cut = encode("srv", &big).unwrap();
        assert!(cut.len() <= MAX_EVENT_PAYLOAD);
        let p: Value = serde_json::from_str(&cut).unwrap();
        assert_eq!(
            p["d"],
            json!({"key": "42", "version": 3, "truncated": true})
        );

        // A lock on 100 long resource names cannot be named in 7900 bytes.
        let topics = (0..100)
            .map(|i| Topic::Lock(ResourceName::new(format!("{i:0>200}")).unwrap()))
            .collect();
        assert_eq!(encode("srv", &event(topics, json!({}))), None);
    }

    #[tokio::test]
    async fn relayed_events_are_published_with_local_ids_and_own_ones_ignored() {
        let dir = std::env::temp_dir().join(format!("baton-live-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let engine = Engine::open(&format!("sqlite://{}", dir.join("b.db").display()))
            .await
            .unwrap();
        let who = Principal {
            id: 1,
            name: "reader".into(),
            role: baton_core::Role::App,
        };
        let mut sub = engine.subscribe(&who, &record_topics(), None).unwrap();
        let other = event(record_topics(), json!({"key": "42"}));
        let own = event(record_topics(), json!({"key": "mine"}));
        let mine = encode(&engine.inner.origin, &own).unwrap();
        engine.receive_relayed(Some(&mine));
        engine.receive_relayed(Some("not json"));
        engine.receive_relayed(Some(&encode("other-server", &other).unwrap()));
        let e = sub.next().await.unwrap();
        assert_eq!(e.kind, EventKind::RecordChanged);
        assert!(e.remote, "not relayed back");
        assert_ne!(e.id, 7, "a local id");
        assert_eq!(e.data["key"], "42", "its own relayed event is ignored");
        // A lost listening connection: subscribers are told to reload.
        engine.receive_relayed(None);
        let reset = sub.next().await.unwrap();
        assert_eq!(reset.kind, EventKind::StreamReset);
        assert!(reset.id > e.id);
        engine.receive_relayed(Some(
            &json!({"o": "other-server", "reset": true}).to_string(),
        ));
        assert_eq!(sub.next().await.unwrap().kind, EventKind::StreamReset);
        drop(engine);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
