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
/// count, oldest `created_at`, and of leased items how many ran out by
/// `now` and the oldest of those.
pub(crate) type StateGroup = (String, String, i64, Option<i64>, i64, Option<i64>);

/// Adds a group of live items to its queue's counts. A lease that ran out
/// but was not swept yet counts as ready, as it is in truth.
pub(crate) fn add_group(
    stats: &mut [QueueStats],
    (queue, state, count, oldest, expired, oldest_expired): StateGroup,
    now: Timestamp,
) -> Result<()> {
    let state: ItemState = state.parse()?;
    let (count, expired) = (count.max(0) as u64, expired.max(0) as u64);
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
        ItemState::Scheduled => s.scheduled += count,
        ItemState::Ready => note_ready(count, oldest),
        ItemState::Leased => {
            note_ready(expired, oldest_expired);
            s.leased += count - expired.min(count);
        }
        ItemState::Parked => s.parked += count,
        ItemState::Done => s.done += count,
    }
    Ok(())
}
