//! Baton's core: the domain types, the rules about leases, locks and
//! versioned records, the errors users meet in multi-user work, and the
//! [`store::Store`] trait every backend implements.
//!
//! Architecture invariant: this crate knows nothing of SQL, HTTP or the
//! async runtime. Every rule that decides what a claim, a heartbeat, a
//! release or a completion does lives here as a plain function over plain
//! values (see [`rules`] for leases, [`lock_rules`] for locks,
//! [`record_rules`] and [`merge`] for records), with time
//! passed in explicitly, so it can be tested exhaustively without a
//! database. [`lock_model`] is the lock manager in memory: the executable
//! specification every store's lock operations are compared with.

pub mod audit;
pub mod clock;
pub mod error;
pub mod identity;
pub mod lock_model;
pub mod lock_rules;
pub mod locks;
pub mod merge;
pub mod names;
pub mod queue;
pub mod record_rules;
pub mod records;
pub mod rules;
pub mod store;
pub mod topics;

pub use audit::{AuditArea, AuditCursor, AuditEntry, AuditFilter, ThroughputBucket, audit_limits};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, Result, StoreError};
pub use identity::{Action, Principal, Role, Session, TokenInfo};
pub use locks::*;
pub use merge::Change;
pub use names::{CollectionName, Kind, QueueName, RecordKey};
pub use queue::*;
pub use records::*;
pub use store::{
    ConfigChange, EventCallback, LockCallback, MAX_EVENT_PAYLOAD, Store, Wakeups, WorkCallback,
};
pub use topics::Topic;
