//! Work-queue domain types: items, leases, fencing tokens, queue settings,
//! the history of an item, and the requests the store carries out.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{Error, Kind, QueueName, Result};

/// Identifier of an item; unique across queues and never reused.
pub type ItemId = i64;

/// A number that strictly increases with every claim of an item. Every
/// action taken with a lease carries it; an action carrying anything but the
/// item's current token is refused.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64)]
pub struct FencingToken(pub i64);

impl FencingToken {
    /// The token after this one.
    pub fn next(self) -> Self {
        FencingToken(self.0 + 1)
    }
}

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where an item is in its life.
///
/// ```text
/// scheduled --(not_before reached)--> ready --claim--> leased --complete--> done
///                                      ^  ^              |  |
///                                      |  +--release-----+  +--expire (attempts < max)--> ready
///                                      |  +--revoke------+  +--expire (attempts = max)--> parked
///                                      +---------------requeue (supervisor)---------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Waiting for its not-before time.
    Scheduled,
    /// Claimable.
    Ready,
    /// Held by one principal under a live or just-expired lease.
    Leased,
    /// Taken out of circulation after too many expired leases; a
    /// supervisor must requeue it.
    Parked,
    /// Completed with an outcome; kept in history.
    Done,
}

impl ItemState {
    /// Every state.
    pub const ALL: [ItemState; 5] = [
        ItemState::Scheduled,
        ItemState::Ready,
        ItemState::Leased,
        ItemState::Parked,
        ItemState::Done,
    ];

    /// The name used in the API and database.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Scheduled => "scheduled",
            ItemState::Ready => "ready",
            ItemState::Leased => "leased",
            ItemState::Parked => "parked",
            ItemState::Done => "done",
        }
    }
}

impl std::fmt::Display for ItemState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ItemState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ItemState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "state",
                    format!("unknown state {s:?}; one of scheduled, ready, leased, parked, done"),
                )
            })
    }
}

/// The right to work an item until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    /// The fencing token of this claim.
    pub token: FencingToken,
    /// The principal holding the item.
    pub holder: String,
    /// When the lease was granted.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub claimed_at: DateTime<Utc>,
    /// When the lease ends unless extended by a heartbeat.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Whether the lease still holds at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// How an item ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    /// One of the queue's outcomes.
    pub outcome: String,
    /// Free text from the operator.
    pub note: Option<String>,
    /// Who completed it.
    pub by: String,
    /// When.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub at: DateTime<Utc>,
}

/// A unit of work in a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    /// Identifier, unique across queues.
    pub id: ItemId,
    /// The queue it is in now (escalation moves it).
    pub queue: QueueName,
    /// What kind of work it is.
    pub kind: Kind,
    /// The application's data; any JSON value.
    pub payload: Value,
    /// Higher is claimed first.
    pub priority: i32,
    /// Where it is in its life.
    pub state: ItemState,
    /// Not claimable before this time.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub available_at: DateTime<Utc>,
    /// Enqueueing the same key in the same queue while this item is not
    /// done returns this item.
    pub dedupe_key: Option<String>,
    /// How many leases of this item expired without completion.
    pub attempts: u32,
    /// The latest fencing token issued for this item (0 before the first
    /// claim).
    pub token: FencingToken,
    /// The current lease, when [`ItemState::Leased`].
    pub lease: Option<Lease>,
    /// Who last released it, and until when it is not offered back to
    /// them.
    pub released_by: Option<String>,
    /// See `released_by`.
    #[serde(serialize_with = "crate::clock::rfc3339::option")]
    pub released_until: Option<DateTime<Utc>>,
    /// How it ended, when [`ItemState::Done`].
    pub completion: Option<Completion>,
    /// When it was enqueued.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last change of any kind.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// Settings of one queue. Created with defaults on first use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Live leases one principal may hold in this queue at once; a further
    /// claim returns the lease already held. Default 1: a person works one
    /// request at a time.
    pub max_leases_per_holder: u32,
    /// Expired leases after which an item is parked for a supervisor.
    pub max_attempts: u32,
    /// The outcomes a completion may name.
    pub outcomes: Vec<String>,
    /// The outcome that may carry `escalate_to` (move to another queue).
    pub escalation_outcome: Option<String>,
    /// After a principal releases an item, it is not offered back to that
    /// principal for this many seconds (others may claim it at once).
    pub skip_cooldown_seconds: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_leases_per_holder: 1,
            max_attempts: 5,
            outcomes: vec!["accepted".into(), "rejected".into(), "escalated".into()],
            escalation_outcome: Some("escalated".into()),
            skip_cooldown_seconds: 30,
        }
    }
}

impl QueueConfig {
    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        if !(1..=1000).contains(&self.max_leases_per_holder) {
            return Err(Error::invalid("max_leases_per_holder", "must be 1..=1000"));
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(Error::invalid("max_attempts", "must be 1..=1000"));
        }
        if self.outcomes.is_empty() || self.outcomes.len() > 32 {
            return Err(Error::invalid("outcomes", "1 to 32 outcomes"));
        }
        for o in &self.outcomes {
            Kind::new(o.clone()).map_err(|_| {
                Error::invalid("outcomes", format!("{o:?} is not a valid outcome name"))
            })?;
        }
        if let Some(e) = &self.escalation_outcome
            && !self.outcomes.contains(e)
        {
            return Err(Error::invalid(
                "escalation_outcome",
                format!("{e:?} is not one of the outcomes"),
            ));
        }
        if self.skip_cooldown_seconds > 86_400 {
            return Err(Error::invalid("skip_cooldown_seconds", "must be 0..=86400"));
        }
        Ok(())
    }
}

/// Limits on request values, shared by every interface.
pub mod limits {
    /// Shortest lease, seconds.
    pub const MIN_LEASE_SECONDS: u32 = 1;
    /// Longest lease, seconds (one day).
    pub const MAX_LEASE_SECONDS: u32 = 86_400;
    /// Longest release delay and not-before offset, seconds (30 days).
    pub const MAX_DELAY_SECONDS: u32 = 30 * 86_400;
    /// Longest long-poll wait, seconds.
    pub const MAX_WAIT_SECONDS: u32 = 60;
    /// Largest payload, bytes of JSON.
    pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
    /// Longest dedupe key, idempotency key, note (bytes).
    pub const MAX_KEY_BYTES: usize = 256;
    /// Longest completion note (bytes).
    pub const MAX_NOTE_BYTES: usize = 4096;
    /// Most kinds in a claim filter.
    pub const MAX_KINDS: usize = 32;
    /// Largest page of a list.
    pub const MAX_PAGE: u32 = 1000;
}

/// Validates a lease length in seconds.
pub fn lease_duration(seconds: u32) -> Result<Duration> {
    if (limits::MIN_LEASE_SECONDS..=limits::MAX_LEASE_SECONDS).contains(&seconds) {
        Ok(Duration::seconds(seconds.into()))
    } else {
        Err(Error::invalid(
            "lease_seconds",
            format!(
                "must be {}..={}, got {seconds}",
                limits::MIN_LEASE_SECONDS,
                limits::MAX_LEASE_SECONDS
            ),
        ))
    }
}

/// Validates a delay (release delay, enqueue delay) in seconds.
pub fn delay_duration(field: &str, seconds: u32) -> Result<Duration> {
    if seconds <= limits::MAX_DELAY_SECONDS {
        Ok(Duration::seconds(seconds.into()))
    } else {
        Err(Error::invalid(
            field,
            format!("must be 0..={}, got {seconds}", limits::MAX_DELAY_SECONDS),
        ))
    }
}

fn check_key(field: &str, key: &str, max: usize) -> Result<()> {
    if key.is_empty() || key.len() > max || key.chars().any(char::is_control) {
        Err(Error::invalid(
            field,
            format!("1 to {max} bytes of printable text"),
        ))
    } else {
        Ok(())
    }
}

/// An item to enqueue, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    /// Target queue.
    pub queue: QueueName,
    /// Kind of work.
    pub kind: Kind,
    /// Application data.
    pub payload: Value,
    /// Higher first.
    pub priority: i32,
    /// Not claimable before `now + delay`.
    pub delay: Duration,
    /// Optional deduplication key.
    pub dedupe_key: Option<String>,
}

impl NewItem {
    /// Validates an enqueue request.
    pub fn new(
        queue: QueueName,
        kind: Kind,
        payload: Value,
        priority: i32,
        delay_seconds: u32,
        dedupe_key: Option<String>,
    ) -> Result<Self> {
        let size = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > limits::MAX_PAYLOAD_BYTES {
            return Err(Error::invalid(
                "payload",
                format!(
                    "{size} bytes; at most {} allowed",
                    limits::MAX_PAYLOAD_BYTES
                ),
            ));
        }
        if let Some(k) = &dedupe_key {
            check_key("dedupe_key", k, limits::MAX_KEY_BYTES)?;
        }
        Ok(Self {
            queue,
            kind,
            payload,
            priority,
            delay: delay_duration("delay_seconds", delay_seconds)?,
            dedupe_key,
        })
    }
}

/// A claim, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    /// Queue to claim from.
    pub queue: QueueName,
    /// Only these kinds, when not empty.
    pub kinds: Vec<Kind>,
    /// Who claims.
    pub holder: String,
    /// Lease length.
    pub lease: Duration,
    /// A retried claim with the same key (per holder) returns the same
    /// item and lease.
    pub idempotency_key: Option<String>,
}

impl ClaimRequest {
    /// Validates a claim.
    pub fn new(
        queue: QueueName,
        kinds: Vec<Kind>,
        holder: String,
        lease_seconds: u32,
        idempotency_key: Option<String>,
    ) -> Result<Self> {
        if kinds.len() > limits::MAX_KINDS {
            return Err(Error::invalid(
                "kinds",
                format!("at most {} kinds", limits::MAX_KINDS),
            ));
        }
        if let Some(k) = &idempotency_key {
            check_key("Idempotency-Key", k, limits::MAX_KEY_BYTES)?;
        }
        Ok(Self {
            queue,
            kinds,
            holder,
            lease: lease_duration(lease_seconds)?,
            idempotency_key,
        })
    }

    /// Whether an item of `kind` matches this claim's filter.
    pub fn wants(&self, kind: &Kind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(kind)
    }
}

/// The answer to a successful claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Claimed {
    /// The item, now leased.
    pub item: Item,
    /// The lease (also in `item.lease`), repeated for convenience.
    pub lease: Lease,
}

/// A completion request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteRequest {
    /// The token of the caller's lease.
    pub token: FencingToken,
    /// One of the queue's outcomes.
    pub outcome: String,
    /// Free text.
    pub note: Option<String>,
    /// With the escalation outcome: move the item to this queue.
    pub escalate_to: Option<QueueName>,
}

impl CompleteRequest {
    /// Validates what can be checked without the queue's settings.
    pub fn new(
        token: FencingToken,
        outcome: String,
        note: Option<String>,
        escalate_to: Option<QueueName>,
    ) -> Result<Self> {
        if let Some(n) = &note
            && n.len() > limits::MAX_NOTE_BYTES
        {
            return Err(Error::invalid(
                "note",
                format!("at most {} bytes", limits::MAX_NOTE_BYTES),
            ));
        }
        Ok(Self {
            token,
            outcome,
            note,
            escalate_to,
        })
    }
}

/// What happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Put into a queue.
    Enqueued,
    /// Leased to a holder.
    Claimed,
    /// Lease extended by a heartbeat.
    Extended,
    /// Given back by the holder.
    Released,
    /// Lease ran out; the item went back to ready.
    Expired,
    /// Lease ran out for the last allowed time; the item was parked.
    Parked,
    /// Completed with an outcome.
    Completed,
    /// Completed as escalated and moved to another queue.
    Escalated,
    /// Lease taken away by a supervisor.
    Revoked,
    /// Parked item put back into circulation by a supervisor.
    Requeued,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 10] = [
        EventKind::Enqueued,
        EventKind::Claimed,
        EventKind::Extended,
        EventKind::Released,
        EventKind::Expired,
        EventKind::Parked,
        EventKind::Completed,
        EventKind::Escalated,
        EventKind::Revoked,
        EventKind::Requeued,
    ];

    /// The name used in the API and database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Enqueued => "enqueued",
            EventKind::Claimed => "claimed",
            EventKind::Extended => "extended",
            EventKind::Released => "released",
            EventKind::Expired => "expired",
            EventKind::Parked => "parked",
            EventKind::Completed => "completed",
            EventKind::Escalated => "escalated",
            EventKind::Revoked => "revoked",
            EventKind::Requeued => "requeued",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("event", format!("unknown event kind {s:?}")))
    }
}

/// One entry of an item's history, produced by the rules in [`crate::rules`]
/// and appended by the store in the same transaction as the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ItemEvent {
    /// The item.
    pub item_id: ItemId,
    /// When.
    #[serde(serialize_with = "crate::clock::rfc3339::serialize")]
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// Who did it (`None` for the system: expiry by the clock).
    pub actor: Option<String>,
    /// The fencing token involved, if any.
    pub token: Option<FencingToken>,
    /// The queue the item was in when it happened.
    pub queue: QueueName,
    /// Details: lease expiry, outcome, note, delay, target queue.
    pub detail: Value,
}

/// Counts of one queue, for supervisors and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueStats {
    /// The queue.
    pub queue: QueueName,
    /// Waiting for a not-before time.
    pub scheduled: u64,
    /// Claimable now.
    pub ready: u64,
    /// Under a live lease.
    pub leased: u64,
    /// Waiting for a supervisor.
    pub parked: u64,
    /// Completed (all time).
    pub done: u64,
    /// Age in seconds of the oldest claimable item, if any.
    pub oldest_ready_age_seconds: Option<f64>,
    /// The queue's settings.
    pub config: QueueConfig,
}

/// Filter and page of an item listing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemFilter {
    /// Only items in this state.
    pub state: Option<ItemState>,
    /// Only items leased to (or, for done items, completed by) this holder.
    pub holder: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Items with an id greater than this (keyset pagination).
    pub after: Option<ItemId>,
}

/// What a sweep changed, so the engine can wake waiting claimers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepReport {
    /// Queues in which items became claimable (expired leases, scheduled
    /// items whose time came), with how many.
    pub became_ready: Vec<(QueueName, u64)>,
    /// Leases that expired.
    pub expired: u64,
    /// Items parked after too many expired leases.
    pub parked: u64,
}
