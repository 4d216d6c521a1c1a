//! Live events: the engine's event bus, what `GET /v1/events` streams.
//!
//! After each successful operation the engine publishes an [`Event`]: an
//! item enqueued, claimed, released, completed, revoked or requeued; a
//! lease about to expire or lost; a record changed; a lock granted or
//! released. Each event belongs to [`Topic`]s (its queue, its item, all
//! queues; its record and collection; each of its lock's resources, all
//! locks) and carries in `data` what a page needs without another
//! request.
//!
//! Ids are strictly increasing per server process and start from the
//! process's start time in milliseconds × 1000, so the ids of a restarted
//! server are larger than those of its previous run (a client resuming
//! across a restart gets a [`EventKind::StreamReset`], not a wrong
//! replay).
//!
//! Resumption: the bus keeps the latest events, at most
//! [`MAX_RETAINED_EVENTS`] and none older than [`RETENTION`]. A
//! subscription with a last event id first replays the retained matching
//! events after it, then continues live, in id order, without a gap or a
//! duplicate. When events after that id are no longer retained, or when a
//! subscriber falls more than [`LIVE_CAPACITY`] events behind the live
//! stream, it receives a `stream.reset` event instead of a silent gap:
//! reload what you show, then carry on.
//!
//! Ordering: ids are assigned and events handed to the live channel under
//! one mutex, so every subscriber sees them in id order even when many
//! tasks publish at once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use baton_core::clock::rfc3339::Rfc3339;
use baton_core::{Item, Lock, Timestamp, Topic};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Most events kept for resumption (`Last-Event-ID`).
pub const MAX_RETAINED_EVENTS: usize = 10_000;
/// Oldest event kept for resumption, in seconds (10 minutes).
pub const RETENTION_SECONDS: i64 = 600;
/// [`RETENTION_SECONDS`] as a duration.
pub const RETENTION: Duration = Duration::seconds(RETENTION_SECONDS);
/// How far a subscriber may fall behind the live stream before it gets a
/// `stream.reset`.
pub const LIVE_CAPACITY: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventKind {
    /// An item was enqueued (created; a deduplicated enqueue is no event).
    #[serde(rename = "item.enqueued")]
    ItemEnqueued,
    /// An item was leased to a holder.
    #[serde(rename = "item.claimed")]
    ItemClaimed,
    /// The holder gave an item back.
    #[serde(rename = "item.released")]
    ItemReleased,
    /// An item was completed (or escalated to another queue).
    #[serde(rename = "item.completed")]
    ItemCompleted,
    /// A supervisor took an item's lease away.
    #[serde(rename = "item.revoked")]
    ItemRevoked,
    /// A supervisor put a parked item back into circulation.
    #[serde(rename = "item.requeued")]
    ItemRequeued,
    /// A lease expires soon unless its holder heartbeats (once per lease
    /// and expiry time).
    #[serde(rename = "lease.expiring")]
    LeaseExpiring,
    /// A lease ended without its holder ending it: it expired, or a
    /// supervisor revoked it (`data.cause`).
    #[serde(rename = "lease.lost")]
    LeaseLost,
    /// A record was created, replaced, patched, merged or deleted.
    #[serde(rename = "record.changed")]
    RecordChanged,
    /// A lock was granted (also to a request that waited in the queue).
    #[serde(rename = "lock.granted")]
    LockGranted,
    /// A lock ended: `data.cause` is `released`, `forced`, `expired` or
    /// `session` (released with its holder's session).
    #[serde(rename = "lock.released")]
    LockReleased,
    /// The subscriber missed events (it resumed from an id no longer
    /// retained, or fell behind): reload what you show from the API.
    #[serde(rename = "stream.reset")]
    StreamReset,
}

impl EventKind {
    /// The name on the wire (SSE `event:`), e.g. `item.claimed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ItemEnqueued => "item.enqueued",
            EventKind::ItemClaimed => "item.claimed",
            EventKind::ItemReleased => "item.released",
            EventKind::ItemCompleted => "item.completed",
            EventKind::ItemRevoked => "item.revoked",
            EventKind::ItemRequeued => "item.requeued",
            EventKind::LeaseExpiring => "lease.expiring",
            EventKind::LeaseLost => "lease.lost",
            EventKind::RecordChanged => "record.changed",
            EventKind::LockGranted => "lock.granted",
            EventKind::LockReleased => "lock.released",
            EventKind::StreamReset => "stream.reset",
        }
    }

    /// Every kind.
    pub const ALL: [EventKind; 12] = [
        EventKind::ItemEnqueued,
        EventKind::ItemClaimed,
        EventKind::ItemReleased,
        EventKind::ItemCompleted,
        EventKind::ItemRevoked,
        EventKind::ItemRequeued,
        EventKind::LeaseExpiring,
        EventKind::LeaseLost,
        EventKind::RecordChanged,
        EventKind::LockGranted,
        EventKind::LockReleased,
        EventKind::StreamReset,
    ];

    /// The kind named `s` on the wire.
    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One live event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Strictly increasing per server process (see the module
    /// documentation).
    pub id: u64,
    /// When it happened (the engine's clock).
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The topics it belongs to.
    #[serde(serialize_with = "topic_strings")]
    pub topics: Vec<Topic>,
    /// What a page needs to show it; see the README for each kind.
    pub data: Value,
    /// Whether another server made it (relayed through the database; see
    /// `Engine::spawn_sweeper`); not sent to subscribers.
    #[serde(skip)]
    pub remote: bool,
}

fn topic_strings<S: serde::Serializer>(topics: &[Topic], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(topics.iter().map(|t| t.to_string()))
}

impl Event {
    /// Whether the event belongs to one of `topics` (a `stream.reset`
    /// belongs to every subscription).
    pub fn matches(&self, topics: &[Topic]) -> bool {
        self.kind == EventKind::StreamReset || self.topics.iter().any(|t| topics.contains(t))
    }
}

/// The retention and live-channel limits of a bus.
#[derive(Debug, Clone, Copy)]
pub struct BusLimits {
    /// Most events retained for resumption.
    pub max_events: usize,
    /// Oldest event retained.
    pub max_age: Duration,
    /// How far a subscriber may lag the live stream.
    pub live_capacity: usize,
}

impl Default for BusLimits {
    fn default() -> Self {
        Self {
            max_events: MAX_RETAINED_EVENTS,
            max_age: RETENTION,
            live_capacity: LIVE_CAPACITY,
        }
    }
}

struct Ring {
    /// The id the next event gets.
    next_id: u64,
    /// Retained events, oldest first.
    events: VecDeque<Arc<Event>>,
}

/// The event bus: ids, the retained events and the live channel.
pub struct Bus {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Event>>,
    limits: BusLimits,
}

impl Bus {
    /// A bus whose first id is derived from `start` (milliseconds × 1000).
    pub fn new(start: Timestamp, limits: BusLimits) -> Self {
        let first = u64::try_from(start.timestamp_millis())
            .unwrap_or(0)
            .saturating_mul(1000)
            .max(1);
        let (live, _) = broadcast::channel(limits.live_capacity.max(1));
        Self {
            ring: Mutex::new(Ring {
                next_id: first,
                events: VecDeque::new(),
            }),
            live,
            limits,
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (every
        // change is one push or pop), so a poisoned lock is usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn trim(&self, ring: &mut Ring, now: Timestamp) {
        while ring.events.len() > self.limits.max_events {
            ring.events.pop_front();
        }
        let oldest = now - self.limits.max_age;
        while ring.events.front().is_some_and(|e| e.at < oldest) {
            ring.events.pop_front();
        }
    }

    /// Publishes an event of this server at `at`; returns it with its id.
    pub fn publish(
        &self,
        kind: EventKind,
        topics: Vec<Topic>,
        data: Value,
        at: Timestamp,
    ) -> Arc<Event> {
        self.publish_from(kind, topics, data, at, false)
    }

    /// Publishes an event, made by another server when `remote`, with the
    /// next id of this server.
    pub fn publish_from(
        &self,
        kind: EventKind,
        topics: Vec<Topic>,
        data: Value,
        at: Timestamp,
        remote: bool,
    ) -> Arc<Event> {
        let mut ring = self.ring();
        let event = Arc::new(Event {
            id: ring.next_id,
            at,
            kind,
            topics,
            data,
            remote,
        });
        ring.next_id += 1;
        ring.events.push_back(event.clone());
        self.trim(&mut ring, at);
        // Under the lock, so the live channel carries events in id order.
        // No receiver is no error: nobody listens right now.
        let _ = self.live.send(event.clone());
        event
    }

    /// Every event published from now on, unfiltered, for relaying (a
    /// receiver that falls [`BusLimits::live_capacity`] behind is told it
    /// lagged).
    pub fn raw_subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// The id of the latest event published (`None` before the first).
    pub fn last_id(&self) -> Option<u64> {
        let ring = self.ring();
        ring.events.back().map(|e| e.id)
    }

    /// A subscription to `topics` (already checked by the caller): the
    /// retained events after `last_event_id` first (or a `stream.reset`
    /// when some of them are no longer retained), then live ones.
    pub fn subscribe(
        &self,
        topics: Vec<Topic>,
        last_event_id: Option<u64>,
        now: Timestamp,
    ) -> Subscription {
        let mut ring = self.ring();
        self.trim(&mut ring, now);
        // Subscribing under the lock: every event not in the copy below
        // arrives on the channel, and none in the copy does.
        let live = self.live.subscribe();
        let mut backlog = VecDeque::new();
        let mut last_sent = ring.next_id - 1;
        if let Some(after) = last_event_id {
            let first_retained = ring.events.front().map_or(ring.next_id, |e| e.id);
            if after >= ring.next_id || after + 1 < first_retained {
                // From the future (another run of the server) or older than
                // what is kept: events were missed.
                let reset_id = first_retained - 1;
                backlog.push_back(reset_event(
                    reset_id,
                    now,
                    "the events after the given id are no longer retained",
                ));
                backlog.extend(ring.events.iter().filter(|e| e.matches(&topics)).cloned());
            } else {
                backlog.extend(
                    ring.events
                        .iter()
                        .filter(|e| e.id > after && e.matches(&topics))
                        .cloned(),
                );
            }
        }
        if let Some(e) = backlog.back() {
            last_sent = last_sent.max(e.id);
        }
        Subscription {
            backlog,
            live,
            topics,
            last_sent,
            clock_hint: now,
        }
    }
}

fn reset_event(id: u64, at: Timestamp, reason: &str) -> Arc<Event> {
    Arc::new(Event {
        id,
        at,
        kind: EventKind::StreamReset,
        topics: Vec::new(),
        data: json!({ "reason": reason }),
        remote: false,
    })
}

/// One subscriber's stream of events: see [`Bus::subscribe`].
pub struct Subscription {
    backlog: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    topics: Vec<Topic>,
    /// The highest id delivered (or skipped as already covered).
    last_sent: u64,
    clock_hint: Timestamp,
}

impl Subscription {
    /// The topics subscribed to.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// The next event, waiting for one; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        loop {
            match self.live.recv().await {
                Ok(e) => {
                    if e.id <= self.last_sent {
                        continue;
                    }
                    self.last_sent = e.id;
                    self.clock_hint = e.at;
                    if e.matches(&self.topics) {
                        return Some(e);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // The events before the oldest still in the channel
                    // are gone for this subscriber: say so, with the id up
                    // to which the client must reload.
                    let upto = match self.live.recv().await {
                        Ok(e) => {
                            let upto = e.id - 1;
                            self.last_sent = e.id;
                            if e.matches(&self.topics) {
                                self.backlog.push_back(e);
                            }
                            upto
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    };
                    return Some(reset_event(
                        upto,
                        self.clock_hint,
                        "the subscriber fell behind the live stream",
                    ));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Topics of an item event.
pub fn item_topics(item: &Item) -> Vec<Topic> {
    vec![
        Topic::Queues,
        Topic::Queue(item.queue.clone()),
        Topic::Item(item.id),
    ]
}

/// What an item event carries: queue, item id, kind, state, holder,
/// fencing token, lease expiry, attempts, and the outcome once completed.
pub fn item_data(item: &Item) -> Value {
    json!({
        "queue": item.queue,
        "item_id": item.id,
        "kind": item.kind,
        "state": item.state,
        "priority": item.priority,
        "holder": item.lease.as_ref().map(|l| &l.holder),
        "token": item.token.0,
        "lease_expires_at": item.lease.as_ref().map(|l| Rfc3339(l.expires_at)),
        "attempts": item.attempts,
        "outcome": item.completion.as_ref().map(|c| &c.outcome),
        "available_at": Rfc3339(item.available_at),
    })
}

/// Topics of a lock event.
pub fn lock_topics(lock: &Lock) -> Vec<Topic> {
    let mut t = Vec::with_capacity(lock.resources.len() + 1);
    t.push(Topic::Locks);
    t.extend(lock.resources.iter().cloned().map(Topic::Lock));
    t
}

/// What a lock event carries: resources, lock id, holder, session, mode,
/// fencing token, expiry, and for an ended lock the cause, who and why.
pub fn lock_data(lock: &Lock, cause: Option<&str>) -> Value {
    json!({
        "lock_id": lock.id,
        "resources": lock.resources,
        "holder": lock.holder,
        "session": lock.session,
        "mode": lock.mode,
        "token": lock.token.0,
        "expires_at": lock.expires_at,
        "cause": cause,
        "by": lock.ended.as_ref().and_then(|e| e.by.as_ref()),
        "reason": lock.ended.as_ref().and_then(|e| e.reason.as_ref()),
    })
}

#[cfg(test)]
mod tests;
