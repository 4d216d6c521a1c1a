//! The errors people meet in normal multi-user work, plus the store's
//! backend-neutral failure.
//!
//! Each variant maps to exactly one HTTP status and problem `type` in the
//! HTTP layer; the core itself knows nothing of HTTP.

use crate::{
    Conflict, FencingToken, ItemId, ItemState, LockEnd, LockId, LockRequired, MergeConflicts,
    StaleWrite, Timestamp,
};

/// Result with Baton's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything an engine or store operation can refuse or fail with.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// The addressed thing does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing (`item`, `queue`, `principal`).
        what: &'static str,
        /// Its identifier as the caller gave it.
        id: String,
    },
    /// The caller presented a fencing token that is no longer current: the
    /// lease expired and someone else claimed the item, or the item was
    /// completed, released or revoked meanwhile.
    #[error("fencing token {presented} of item {item} is stale: {reason}")]
    StaleToken {
        /// The item.
        item: ItemId,
        /// The token the caller presented.
        presented: FencingToken,
        /// The item's latest token.
        current: FencingToken,
        /// Why the token no longer holds (human readable).
        reason: String,
    },
    /// The caller is not the holder of the lease it tried to act with.
    #[error("item {item} is leased to {holder}, not to you")]
    NotHolder {
        /// The item.
        item: ItemId,
        /// The current holder.
        holder: String,
    },
    /// The caller's role does not allow the action.
    #[error("{0}")]
    Forbidden(String),
    /// A field of the request is invalid; nothing was changed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The offending field, as named in the API.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The item is not in a state that allows the action (for example a
    /// requeue of an item that is not parked).
    #[error("item {item} is {state}: {reason}")]
    WrongState {
        /// The item.
        item: ItemId,
        /// Its current state.
        state: ItemState,
        /// Why the action needs another state.
        reason: String,
    },
    /// Something else already exists under this name.
    #[error("{0}")]
    AlreadyExists(String),
    /// A write was based on a version of a record that is no longer the
    /// current one (or a create found the record existing); nothing was
    /// written. Carries the current record and what changed since.
    #[error("{}", .0.describe())]
    PreconditionFailed(Box<StaleWrite>),
    /// A stale partial update changed members that were changed
    /// differently since its version; nothing was written. Carries each
    /// conflicting member with its base, yours and theirs.
    #[error("{}", .0.describe())]
    MergeConflict(Box<MergeConflicts>),
    /// The collection requires a write to name the version it is based on.
    #[error("{0}")]
    PreconditionRequired(String),
    /// The collection's lock policy requires a live exclusive lock of the
    /// caller on the record, named with the access, and it was not.
    #[error("{}", .0.describe())]
    LockRequired(Box<LockRequired>),
    /// The resources are locked in a conflicting mode, or conflicting
    /// requests are queued ahead (the lock was not granted; nothing
    /// changed).
    #[error("{}", describe_conflicts(conflicts))]
    Locked {
        /// Each conflict: resource, holder, mode, until when.
        conflicts: Vec<Conflict>,
        /// Seconds until the earliest conflict may be gone (at least 1).
        retry_after: u32,
    },
    /// The lock has ended (released, expired or forced); the holder's
    /// token is stale. Says how, when, by whom and why.
    #[error("lock {lock} has ended: {}", end.describe())]
    LockEnded {
        /// The lock.
        lock: LockId,
        /// How it ended.
        end: Box<LockEnd>,
    },
    /// The caller does not hold the lock it tried to act with.
    #[error("lock {lock} is held by {holder}, not by you")]
    NotLockHolder {
        /// The lock.
        lock: LockId,
        /// Its holder.
        holder: String,
    },
    /// The store failed; see [`StoreError::retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

/// A backend-neutral storage failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("store error: {message}")]
pub struct StoreError {
    /// True when trying again later may succeed (database unreachable,
    /// busy, serialization failure); the HTTP layer answers 503 with
    /// `Retry-After`. False for bugs and corruption (500).
    pub retryable: bool,
    /// What went wrong, for logs; never shown to clients.
    pub message: String,
}

impl StoreError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure that retrying will not fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

/// "customer/42 is locked exclusive by joe until ...; ..." for messages.
fn describe_conflicts(conflicts: &[Conflict]) -> String {
    let parts: Vec<String> = conflicts
        .iter()
        .map(|c| {
            if c.waiting {
                format!(
                    "{} is awaited ({}) by {}, queued ahead, until {}",
                    c.resource,
                    c.mode,
                    c.holder,
                    c.expires_at.to_rfc3339()
                )
            } else {
                format!(
                    "{} is locked {} by {} until {}",
                    c.resource,
                    c.mode,
                    c.holder,
                    c.expires_at.to_rfc3339()
                )
            }
        })
        .collect();
    if parts.is_empty() {
        "locked".to_owned()
    } else {
        parts.join("; ")
    }
}

/// When a lease ended, for messages.
pub(crate) fn describe_expiry(expires_at: Timestamp, now: Timestamp) -> String {
    let ago = (now - expires_at).num_milliseconds().max(0) as f64 / 1000.0;
    format!("the lease expired {ago:.1} s ago")
}
