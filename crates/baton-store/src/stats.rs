//! Queue statistics, assembled the same way by every backend from two
//! reads: one row per queue (settings, done count) and one per group of
//! live items (queue, state).

use baton_core::clock::to_millis;
use baton_core::{ItemState, QueueName, QueueStats, Result, StoreError, Timestamp};

/// The counts of a queue before its live items are added.
pub(crate) fn queue_row(name: String, config: &str, done: i64) -> Result<QueueStats> {
    Ok(QueueStats {
        queue: QueueName::new(name)?,
        scheduled: 0,
        ready: 0,
        leased: 0,
        parked: 0,
        done: done.max(0) as u64,
        oldest_ready_age_seconds: None,
        config: serde_json::from_str(config)
            .map_err(|e| StoreError::fatal(format!("corrupt queue config: {e}")))?,
    })
}

/// One group of live items, as the stats queries select it: queue, state,
/// count, oldest `created_at`, and how many of the group are claimable by
/// time alone at `now` (a lease that ran out, a scheduled item whose time
/// has come — neither swept yet) with the oldest of those.
pub(crate) type StateGroup = (String, String, i64, Option<i64>, i64, Option<i64>);

/// Adds a group of live items to its queue's counts. A lease that ran out
/// or a scheduled item that is due, not swept yet, counts as ready: a
/// claim would take it now.
pub(crate) fn add_group(
    stats: &mut [QueueStats],
    (queue, state, count, oldest, due, oldest_due): StateGroup,
    now: Timestamp,
) -> Result<()> {
    let state: ItemState = state.parse()?;
    let (count, due) = (count.max(0) as u64, due.max(0) as u64);
    let Some(s) = stats.iter_mut().find(|s| s.queue.as_str() == queue) else {
        return Ok(());
    };
    let mut note_ready = |n: u64, oldest: Option<i64>| {
        s.ready += n;
        if let Some(o) = oldest {
            let age = (to_millis(now) - o).max(0) as f64 / 1000.0;
            s.oldest_ready_age_seconds =
                Some(s.oldest_ready_age_seconds.map_or(age, |a| a.max(age)));
        }
    };
    match state {
        ItemState::Scheduled => {
            note_ready(due, oldest_due);
            s.scheduled += count - due.min(count);
        }
        ItemState::Ready => note_ready(count, oldest),
        ItemState::Leased => {
            note_ready(due, oldest_due);
            s.leased += count - due.min(count);
        }
        ItemState::Parked => s.parked += count,
        ItemState::Done => s.done += count,
    }
    Ok(())
}
