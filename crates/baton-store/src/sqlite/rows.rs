//! Mapping between SQLite rows and domain values, and SQLite errors to
//! [`StoreError`].

use baton_core::clock::{from_millis, to_millis};
use baton_core::{
    Completion, EventKind, FencingToken, Item, ItemEvent, ItemState, Kind, Lease, QueueName,
    StoreError, Timestamp,
};
use rusqlite::{ErrorCode, Row};

/// The columns of `items` and `done_items`, in the order [`item`] reads.
pub(super) const ITEM_COLS: &str = "id, queue, kind, payload, priority, state, available_at, \
    dedupe_key, attempts, token, holder, claimed_at, lease_expires_at, released_by, \
    released_until, created_at, updated_at, outcome, note, completed_by, completed_at";

/// Converts an SQLite error; busy/locked/full/IO conditions are retryable.
pub(super) fn store_err(e: rusqlite::Error) -> StoreError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
        )
    );
    StoreError {
        retryable,
        message: format!("sqlite: {e}"),
    }
}

/// Whether `e` is a UNIQUE/PRIMARY KEY violation.
pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::ConstraintViolation))
}

fn bad(col: usize, what: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("{what}").into(),
    )
}

pub(super) fn ms(t: Timestamp) -> i64 {
    to_millis(t)
}

fn time(row: &Row, i: usize) -> rusqlite::Result<Timestamp> {
    Ok(from_millis(row.get(i)?))
}

fn opt_time(row: &Row, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(from_millis))
}

/// Reads an item from a row selected with [`ITEM_COLS`].
pub(super) fn item(row: &Row) -> rusqlite::Result<Item> {
    let state: ItemState = row.get::<_, String>(5)?.parse().map_err(|e| bad(5, e))?;
    let holder: Option<String> = row.get(10)?;
    let token = FencingToken(row.get(9)?);
    let lease = match (holder, opt_time(row, 11)?, opt_time(row, 12)?) {
        (Some(holder), Some(claimed_at), Some(expires_at)) if state == ItemState::Leased => {
            Some(Lease {
                token,
                holder,
                claimed_at,
                expires_at,
            })
        }
        _ => None,
    };
    let completion = match (
        row.get::<_, Option<String>>(17)?,
        row.get::<_, Option<String>>(19)?,
        opt_time(row, 20)?,
    ) {
        (Some(outcome), Some(by), Some(at)) => Some(Completion {
            outcome,
            note: row.get(18)?,
            by,
            at,
        }),
        _ => None,
    };
    Ok(Item {
        id: row.get(0)?,
        queue: QueueName::new(row.get::<_, String>(1)?).map_err(|e| bad(1, e))?,
        kind: Kind::new(row.get::<_, String>(2)?).map_err(|e| bad(2, e))?,
        payload: serde_json::from_str(&row.get::<_, String>(3)?).map_err(|e| bad(3, e))?,
        priority: row.get(4)?,
        state,
        available_at: time(row, 6)?,
        dedupe_key: row.get(7)?,
        attempts: row.get(8)?,
        token,
        lease,
        released_by: row.get(13)?,
        released_until: opt_time(row, 14)?,
        completion,
        created_at: time(row, 15)?,
        updated_at: time(row, 16)?,
    })
}

/// The columns of `item_events`, in the order [`event`] reads.
pub(super) const EVENT_COLS: &str = "item_id, at, kind, actor, token, queue, detail";

/// Reads an event from a row selected with [`EVENT_COLS`].
pub(super) fn event(row: &Row) -> rusqlite::Result<ItemEvent> {
    Ok(ItemEvent {
        item_id: row.get(0)?,
        at: time(row, 1)?,
        kind: row
            .get::<_, String>(2)?
            .parse::<EventKind>()
            .map_err(|e| bad(2, e))?,
        actor: row.get(3)?,
        token: row.get::<_, Option<i64>>(4)?.map(FencingToken),
        queue: QueueName::new(row.get::<_, String>(5)?).map_err(|e| bad(5, e))?,
        detail: serde_json::from_str(&row.get::<_, String>(6)?).map_err(|e| bad(6, e))?,
    })
}
