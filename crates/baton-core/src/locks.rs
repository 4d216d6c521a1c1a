//! Lock-manager domain types (Fowler's Pessimistic Offline Lock): resource
//! names, lock modes, locks and how they end, the history of a resource,
//! the conflicts a refused request is told about, and the validated
//! requests the store carries out.
//!
//! A lock covers one or more resources, all or none. Per resource,
//! `shared` locks are compatible with each other and `exclusive` with
//! nothing. Every grant takes a fencing token from one counter that only
//! increases; a downstream system that remembers the largest token it saw
//! for a resource can refuse a write carrying a smaller one.
//!
//! ```text
//!                 acquire (all resources compatible, nobody conflicting queued ahead)
//!   (request) ───────────────────────────────────────────────► live ──heartbeat──┐
//!       │ blocked, wait_seconds > 0                             │ ▲  ◄────────────┘
//!       ▼                                                       │ └ upgrade / downgrade
//!    queued (ticket, FIFO per resource) ──granted──► live       │
//!       └──wait over──► withdrawn (423)                         ├─release (holder, or session logout)──► ended: released
//!                                                               ├─force (supervisor, with reason)──────► ended: forced
//!                                                               └─expiry (TTL or max hold reached)─────► ended: expired
//! ```
//!
//! An ended lock is kept, with how, when, by whom and why it ended, for a
//! retention period, so the evicted holder can learn what happened.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{Error, FencingToken, Result, Timestamp};

/// Identifier of a lock; unique and never reused.
pub type LockId = i64;

/// Identifier of a queued (waiting) lock request. Tickets are ordered:
/// a smaller ticket was queued earlier.
pub type TicketId = i64;

/// Limits on lock requests, shared by every interface.
pub mod lock_limits {
    /// Shortest lock TTL, seconds.
    pub const MIN_TTL_SECONDS: u32 = 1;
    /// Longest lock TTL, seconds (24 h).
    pub const MAX_TTL_SECONDS: u32 = 86_400;
    /// Longest `max_hold_seconds` (7 days).
    pub const MAX_HOLD_SECONDS: u32 = 7 * 86_400;
    /// Longest wait of an acquire, seconds.
    pub const MAX_WAIT_SECONDS: u32 = 60;
    /// Most resources one lock covers.
    pub const MAX_RESOURCES: usize = 100;
    /// Most resources one status request asks about.
    pub const MAX_STATUS_RESOURCES: usize = 500;
    /// Longest resource name, bytes.
    pub const MAX_RESOURCE_BYTES: usize = 256;
    /// Longest session label, bytes.
    pub const MAX_SESSION_BYTES: usize = 128;
    /// Longest reason of a forced release, bytes.
    pub const MAX_REASON_BYTES: usize = 1024;
    /// Largest page of a lock listing.
    pub const MAX_PAGE: u32 = 1000;
    /// Most events of a resource's history in one answer.
    pub const MAX_HISTORY: u32 = 1000;
}

/// Checks a free-text label: 1..=`max` bytes, no control characters, no
/// leading or trailing whitespace (so that one visible name is one
/// resource).
fn check_label(field: &str, s: &str, max: usize) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= max
        && !s.chars().any(char::is_control)
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{s:?}: 1 to {max} bytes of printable text, without leading or trailing whitespace"
            ),
        ))
    }
}

/// The name of a lockable resource, opaque to Baton: `customer/42`,
/// `order:1042`, `invoice 7`. 1 to 256 bytes of printable text (no control
/// characters), without leading or trailing whitespace. Compared byte for
/// byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "customer/42")]
pub struct ResourceName(String);

impl ResourceName {
    /// Parses and validates a resource name.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        check_label("resources", &s, lock_limits::MAX_RESOURCE_BYTES)?;
        Ok(Self(s))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ResourceName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<ResourceName> for String {
    fn from(n: ResourceName) -> String {
        n.0
    }
}

impl std::fmt::Display for ResourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ResourceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Validates a session label (one user, several browser tabs): 1 to 128
/// bytes of printable text without leading or trailing whitespace.
pub fn validate_session(session: &str) -> Result<()> {
    check_label("session", session, lock_limits::MAX_SESSION_BYTES)
}

/// How a lock holds its resources.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// A read lock: any number of shared holders at once.
    Shared,
    /// A write lock: one holder, and no shared holders beside it.
    Exclusive,
}

impl LockMode {
    /// Both modes.
    pub const ALL: [LockMode; 2] = [LockMode::Shared, LockMode::Exclusive];

    /// Whether a lock in this mode and one in `other` may hold the same
    /// resource at once: only two shared ones may.
    pub fn compatible(self, other: LockMode) -> bool {
        self == LockMode::Shared && other == LockMode::Shared
    }

    /// The name used in the API and database.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LockMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LockMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::invalid("mode", format!("{s:?}: shared or exclusive")))
    }
}

/// How a lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndCause {
    /// Released by its holder (one lock, or every lock of a session).
    Released,
    /// Not kept alive: its TTL ran out, or it reached its
    /// `max_hold_seconds`.
    Expired,
    /// Released by a supervisor, with a reason.
    Forced,
}

impl EndCause {
    /// Every cause.
    pub const ALL: [EndCause; 3] = [EndCause::Released, EndCause::Expired, EndCause::Forced];

    /// The name used in the API and database.
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::Released => "released",
            EndCause::Expired => "expired",
            EndCause::Forced => "forced",
        }
    }
}

impl std::fmt::Display for EndCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EndCause {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        EndCause::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| Error::invalid("cause", format!("unknown end cause {s:?}")))
    }
}

/// How, when, by whom and why a lock ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LockEnd {
    /// `released`, `expired` or `forced`.
    pub cause: EndCause,
    /// When it ended (for an expiry: the instant it ran out).
    pub at: DateTime<Utc>,
    /// Who ended it (`None` for an expiry: the clock).
    pub by: Option<String>,
    /// Why: the supervisor's reason of a forced release; for an expiry,
    /// which limit was reached.
    pub reason: Option<String>,
}

impl LockEnd {
    /// A sentence for messages: "it was forced by sup at ...: reason".
    pub fn describe(&self) -> String {
        let mut s = format!("it was {} at {}", self.cause, self.at.to_rfc3339());
        if let Some(by) = &self.by {
            s.push_str(&format!(" by {by}"));
        }
        if let Some(reason) = &self.reason {
            s.push_str(&format!(": {reason}"));
        }
        s
    }
}

/// A lock: who holds which resources, how, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lock {
    /// Identifier.
    pub id: LockId,
    /// The fencing token of this grant (a new one after an upgrade).
    pub token: FencingToken,
    /// The resources, sorted, each once.
    pub resources: Vec<ResourceName>,
    /// `shared` or `exclusive`.
    pub mode: LockMode,
    /// The principal holding it.
    pub holder: String,
    /// The holder's session label, if given (released together on
    /// logout).
    pub session: Option<String>,
    /// The idle TTL of the latest grant or heartbeat, seconds.
    pub ttl_seconds: u32,
    /// When it was granted.
    pub acquired_at: DateTime<Utc>,
    /// When it ends unless kept alive: the latest grant or heartbeat plus
    /// its TTL, but never after `max_hold_until`.
    pub expires_at: DateTime<Utc>,
    /// The absolute limit no heartbeat extends, if one was asked for.
    pub max_hold_until: Option<DateTime<Utc>>,
    /// How it ended; `None` while it is live.
    pub ended: Option<LockEnd>,
}

impl Lock {
    /// Whether the lock holds at `now`: not ended and not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.ended.is_none() && now < self.expires_at
    }
}

/// What happened to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LockEventKind {
    /// A lock on it was granted.
    Granted,
    /// A lock on it was kept alive.
    Extended,
    /// A shared lock on it became exclusive (new token).
    Upgraded,
    /// An exclusive lock on it became shared.
    Downgraded,
    /// Its holder released a lock on it.
    Released,
    /// A lock on it was not kept alive.
    Expired,
    /// A supervisor released a lock on it.
    Forced,
}

impl LockEventKind {
    /// Every kind.
    pub const ALL: [LockEventKind; 7] = [
        LockEventKind::Granted,
        LockEventKind::Extended,
        LockEventKind::Upgraded,
        LockEventKind::Downgraded,
        LockEventKind::Released,
        LockEventKind::Expired,
        LockEventKind::Forced,
    ];

    /// The name used in the API and database.
    pub fn as_str(self) -> &'static str {
        match self {
            LockEventKind::Granted => "granted",
            LockEventKind::Extended => "extended",
            LockEventKind::Upgraded => "upgraded",
            LockEventKind::Downgraded => "downgraded",
            LockEventKind::Released => "released",
            LockEventKind::Expired => "expired",
            LockEventKind::Forced => "forced",
        }
    }
}

impl LockEventKind {
    /// Whether the event ends a lock (released, expired, forced). Of
    /// events at the same instant, ends come first in a history.
    pub fn is_end(self) -> bool {
        matches!(
            self,
            LockEventKind::Released | LockEventKind::Expired | LockEventKind::Forced
        )
    }
}

impl std::str::FromStr for LockEventKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LockEventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("event", format!("unknown lock event kind {s:?}")))
    }
}

/// One entry of a resource's history, produced by the rules in
/// [`crate::lock_rules`] and appended by the store in the same transaction
/// as the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LockEvent {
    /// The resource.
    pub resource: ResourceName,
    /// The lock concerned.
    pub lock: LockId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: LockEventKind,
    /// Who did it (`None` for the clock: an expiry).
    pub actor: Option<String>,
    /// The lock's holder.
    pub holder: String,
    /// The lock's mode after the event.
    pub mode: LockMode,
    /// The lock's fencing token after the event.
    pub token: FencingToken,
    /// Details: new expiry, the forced release's reason and the
    /// resource's new token, the limit an expiry reached.
    pub detail: Value,
}

/// Why a request could not have a resource: a live lock holds it in a
/// conflicting mode, or a conflicting request is queued ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conflict {
    /// The resource.
    pub resource: ResourceName,
    /// Who holds it (or waits for it).
    pub holder: String,
    /// In which mode.
    pub mode: LockMode,
    /// Until when: the lock's expiry, or when the queued request stops
    /// waiting.
    pub expires_at: DateTime<Utc>,
    /// `true` when this is a request queued ahead rather than a lock: it
    /// is served first, so that nobody waits forever.
    pub waiting: bool,
    /// The conflicting lock (`None` for a queued request).
    pub lock: Option<LockId>,
}

/// A lock request, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LockRequest {
    /// The resources, sorted, each once.
    pub resources: Vec<ResourceName>,
    /// `shared` or `exclusive`.
    pub mode: LockMode,
    /// Who asks (the engine sets it to the caller).
    pub holder: String,
    /// The caller's session label.
    pub session: Option<String>,
    /// Idle TTL, 1 s ..= 24 h.
    pub ttl_seconds: u32,
    /// Absolute limit from the grant, if any.
    pub max_hold_seconds: Option<u32>,
    /// A retried request with the same key (per holder) returns the same
    /// lock.
    pub idempotency_key: Option<String>,
}

/// Validates a TTL in seconds.
pub fn lock_ttl(seconds: u32) -> Result<Duration> {
    if (lock_limits::MIN_TTL_SECONDS..=lock_limits::MAX_TTL_SECONDS).contains(&seconds) {
        Ok(Duration::seconds(seconds.into()))
    } else {
        Err(Error::invalid(
            "ttl_seconds",
            format!(
                "must be {}..={}, got {seconds}",
                lock_limits::MIN_TTL_SECONDS,
                lock_limits::MAX_TTL_SECONDS
            ),
        ))
    }
}

impl LockRequest {
    /// Validates a request: 1..=100 resources (duplicates are merged),
    /// TTL 1..=86 400 s, `max_hold_seconds` 1..=604 800 s, a printable
    /// session label and idempotency key.
    pub fn new(
        resources: Vec<ResourceName>,
        mode: LockMode,
        holder: String,
        session: Option<String>,
        ttl_seconds: u32,
        max_hold_seconds: Option<u32>,
        idempotency_key: Option<String>,
    ) -> Result<Self> {
        let mut resources = resources;
        resources.sort();
        resources.dedup();
        if resources.is_empty() || resources.len() > lock_limits::MAX_RESOURCES {
            return Err(Error::invalid(
                "resources",
                format!("1 to {} resource names", lock_limits::MAX_RESOURCES),
            ));
        }
        lock_ttl(ttl_seconds)?;
        if let Some(h) = max_hold_seconds
            && !(1..=lock_limits::MAX_HOLD_SECONDS).contains(&h)
        {
            return Err(Error::invalid(
                "max_hold_seconds",
                format!("must be 1..={}, got {h}", lock_limits::MAX_HOLD_SECONDS),
            ));
        }
        if let Some(s) = &session {
            validate_session(s)?;
        }
        if let Some(k) = &idempotency_key {
            check_label("Idempotency-Key", k, crate::limits::MAX_KEY_BYTES)?;
        }
        Ok(Self {
            resources,
            mode,
            holder,
            session,
            ttl_seconds,
            max_hold_seconds,
            idempotency_key,
        })
    }
}

/// Validates the reason of a forced release: required, 1..=1024 bytes of
/// printable text.
pub fn validate_reason(reason: Option<&str>) -> Result<String> {
    let reason = reason.map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(Error::invalid(
            "reason",
            "a forced release needs a reason (it is recorded in the resource's history)",
        ));
    }
    if reason.len() > lock_limits::MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        return Err(Error::invalid(
            "reason",
            format!(
                "at most {} bytes of printable text",
                lock_limits::MAX_REASON_BYTES
            ),
        ));
    }
    Ok(reason.to_owned())
}

/// Where a lock request stands after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Acquisition {
    /// Granted now (`created`), or the lock an earlier request with the
    /// same idempotency key got (`created == false`).
    Granted {
        /// The lock.
        lock: Lock,
        /// Whether this attempt created it.
        created: bool,
    },
    /// Not granted: what stands in the way. With queueing asked for, the
    /// request holds `ticket`, its place in the FIFO queue of each of its
    /// resources, until it is granted or withdrawn.
    Blocked {
        /// What conflicts, per resource.
        conflicts: Vec<Conflict>,
        /// The request's place in the queue, if it queued.
        ticket: Option<TicketId>,
        /// The store's time of the attempt: `expires_at` of the conflicts
        /// are relative to it.
        now: Timestamp,
    },
}

/// How an attempt to acquire may queue if it is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Queueing {
    /// The ticket of an earlier blocked attempt of the same request: its
    /// place in the queue. A ticket that no longer exists (withdrawn,
    /// or its wait ran out) counts as none.
    pub ticket: Option<TicketId>,
    /// When blocked without a (live) ticket, queue for this long; `None`
    /// fails fast and queues nothing.
    pub wait: Option<Duration>,
}

/// Filter and page of a lock listing. Lists live locks only.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LockFilter {
    /// Only locks covering this resource.
    pub resource: Option<ResourceName>,
    /// Only locks of this holder.
    pub holder: Option<String>,
    /// Only locks of this session label.
    pub session: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Only locks with an id greater than this (keyset paging).
    pub after: Option<LockId>,
}

/// One holder of a resource, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceHolder {
    /// The lock.
    pub lock: LockId,
    /// Who holds it.
    pub holder: String,
    /// The holder's session label.
    pub session: Option<String>,
    /// `shared` or `exclusive`.
    pub mode: LockMode,
    /// Until when, unless kept alive.
    pub expires_at: DateTime<Utc>,
}

/// The lock state of one resource: for a list page's lock badges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceStatus {
    /// The resource.
    pub resource: ResourceName,
    /// Whether any live lock holds it.
    pub locked: bool,
    /// `exclusive` when one exclusive lock holds it, `shared` when shared
    /// locks do; `None` when free.
    pub mode: Option<LockMode>,
    /// The live locks holding it, oldest first.
    pub holders: Vec<ResourceHolder>,
    /// Requests queued for it.
    pub waiting: u32,
    /// The resource's current fencing token: the latest grant's, or higher
    /// after a forced release; 0 if never locked.
    pub token: FencingToken,
}

/// What a lock sweep changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LockSweepReport {
    /// Locks that expired and were recorded as such.
    pub expired: Vec<Lock>,
    /// Queued requests whose wait ran out unwithdrawn (their waiter died).
    pub abandoned_tickets: u64,
    /// Ended locks forgotten after the retention period.
    pub forgotten: u64,
}
