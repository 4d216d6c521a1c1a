//! Watching the leases this server granted, for the live events
//! `lease.expiring` and `lease.lost`: one deadline map and one timer task
//! (see `Engine::watch_leases`), not a task per lease.
//!
//! Each lease granted here is watched until its holder ends it here
//! (release, complete) or a supervisor revokes it here. Its first
//! deadline is [`warn_before`] its expiry; a heartbeat here moves it. When
//! a deadline comes, the timer reads the item from the store, so a
//! heartbeat, release or completion made through another server is seen
//! too: if the lease was extended, the deadline moves; if it still ends
//! at the same time, `lease.expiring` is published once and the next
//! deadline is just after the expiry (when the sweeper has recorded it);
//! then `lease.lost` is published if the lease did expire (or another
//! server revoked it), found from the item's history by the lease's
//! fencing token.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use baton_core::{FencingToken, ItemId, Lease, Timestamp};
use chrono::Duration;

/// The longest warning before a lease expires: 10 seconds, or a third of
/// the lease for leases shorter than 30 seconds.
pub const MAX_WARNING: Duration = Duration::seconds(10);

/// When to warn of a lease's expiry: [`MAX_WARNING`] before it, or a
/// third of the lease's length before it when that is shorter.
pub fn warn_before(claimed_at: Timestamp, expires_at: Timestamp) -> Duration {
    let len = expires_at - claimed_at;
    (len / 3).min(MAX_WARNING).max(Duration::zero())
}

/// One watched lease.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Watched {
    pub(crate) token: FencingToken,
    /// When the lease (or its latest extension) began.
    pub(crate) since: Timestamp,
    pub(crate) expires_at: Timestamp,
    /// Whether `lease.expiring` was published for this expiry time.
    pub(crate) warned: bool,
    pub(crate) due: Timestamp,
}

#[derive(Default)]
struct State {
    by_item: HashMap<ItemId, Watched>,
    due: BTreeSet<(Timestamp, ItemId)>,
}

/// The deadline map.
#[derive(Default)]
pub(crate) struct LeaseWatch {
    state: Mutex<State>,
    /// Told when a deadline earlier than every other was added.
    pub(crate) changed: tokio::sync::Notify,
}

impl LeaseWatch {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, s: &mut State, id: ItemId, w: Watched) {
        if let Some(old) = s.by_item.remove(&id) {
            s.due.remove(&(old.due, id));
        }
        let earliest = s.due.first().is_none_or(|(t, _)| w.due < *t);
        s.due.insert((w.due, id));
        s.by_item.insert(id, w);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Starts watching a lease granted here. Returns `None` when that very
    /// lease is watched already (a repeated claim answer: no new grant),
    /// otherwise `Some` with the older lease of the item that was still
    /// watched, if any (it ended without news here: lost).
    pub(crate) fn track(&self, id: ItemId, lease: &Lease) -> Option<Option<FencingToken>> {
        let mut s = self.state();
        let previous = match s.by_item.get(&id) {
            Some(w) if w.token == lease.token => return None,
            Some(w) if w.token > lease.token => return None,
            Some(w) => Some(w.token),
            None => None,
        };
        let w = watched(lease.token, lease.claimed_at, lease.expires_at);
        self.put(&mut s, id, w);
        Some(previous)
    }

    /// A heartbeat here extended the lease.
    pub(crate) fn extend(&self, id: ItemId, lease: &Lease, now: Timestamp) {
        let mut s = self.state();
        if s.by_item.get(&id).is_some_and(|w| w.token == lease.token) {
            self.put(&mut s, id, watched(lease.token, now, lease.expires_at));
        }
    }

    /// The lease `token` of item `id` ended here; stop watching it.
    pub(crate) fn forget(&self, id: ItemId, token: FencingToken) {
        let mut s = self.state();
        if let Some(w) = s.by_item.get(&id)
            && w.token <= token
        {
            let due = w.due;
            s.due.remove(&(due, id));
            s.by_item.remove(&id);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        self.state().due.first().map(|(t, _)| *t)
    }

    /// The leases whose deadline has come, taken out of the deadline
    /// order (they stay watched until [`LeaseWatch::settle`]).
    pub(crate) fn take_due(&self, now: Timestamp) -> Vec<(ItemId, Watched)> {
        let mut s = self.state();
        let mut out = Vec::new();
        while let Some(&(t, id)) = s.due.first() {
            if t > now {
                break;
            }
            s.due.pop_first();
            if let Some(w) = s.by_item.get(&id) {
                out.push((id, w.clone()));
            }
        }
        out
    }

    /// After a check of `was`: stop watching (`next == None`) or watch
    /// with `next` — unless the entry changed meanwhile (a heartbeat or an
    /// end here), which then wins. Returns whether `was` was still the
    /// entry.
    pub(crate) fn settle(&self, id: ItemId, was: &Watched, next: Option<Watched>) -> bool {
        let mut s = self.state();
        if s.by_item.get(&id) != Some(was) {
            return false;
        }
        match next {
            Some(w) => self.put(&mut s, id, w),
            None => {
                s.by_item.remove(&id);
            }
        }
        true
    }

    /// Whether `was` is still the entry of `id`.
    pub(crate) fn is_current(&self, id: ItemId, was: &Watched) -> bool {
        self.state().by_item.get(&id) == Some(was)
    }

    /// How many leases are watched.
    pub(crate) fn len(&self) -> usize {
        self.state().by_item.len()
    }
}

/// A lease to warn about before it expires.
pub(crate) fn watched(token: FencingToken, since: Timestamp, expires_at: Timestamp) -> Watched {
    Watched {
        token,
        since,
        expires_at,
        warned: false,
        due: expires_at - warn_before(since, expires_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn t(s: i64) -> Timestamp {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn lease(token: i64, from: i64, to: i64) -> Lease {
        Lease {
            token: FencingToken(token),
            holder: "alice".into(),
            claimed_at: t(from),
            expires_at: t(to),
        }
    }

    #[test]
    fn warning_is_ten_seconds_or_a_third() {
        assert_eq!(warn_before(t(0), t(300)), Duration::seconds(10));
        assert_eq!(warn_before(t(0), t(30)), Duration::seconds(10));
        assert_eq!(warn_before(t(0), t(6)), Duration::seconds(2));
    }

    #[test]
    fn deadlines_in_order_heartbeats_move_them_ends_forget() {
        let w = LeaseWatch::default();
        assert_eq!(w.track(1, &lease(1, 0, 300)), Some(None));
        assert_eq!(w.track(2, &lease(2, 0, 6)), Some(None));
        // The same lease again (a repeated claim answer) is no new grant.
        assert_eq!(w.track(2, &lease(2, 0, 6)), None);
        assert_eq!(w.next_due(), Some(t(4)));
        // A heartbeat at 3 moves item 2's deadline to 3 + 60 - 10.
        w.extend(2, &lease(2, 0, 63), t(3));
        assert_eq!(w.next_due(), Some(t(53)));
        assert!(w.take_due(t(52)).is_empty());
        let due = w.take_due(t(290));
        assert_eq!(
            due.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![2, 1]
        );
        // Taken out of the order, still watched until settled.
        assert_eq!(w.next_due(), None);
        assert_eq!(w.len(), 2);
        w.forget(1, FencingToken(1));
        assert!(!w.settle(1, &due[1].1, None));
        assert!(w.settle(2, &due[0].1, None));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_newer_grant_reports_the_older_lease_still_watched() {
        let w = LeaseWatch::default();
        w.track(7, &lease(3, 0, 60));
        assert_eq!(w.track(7, &lease(4, 61, 120)), Some(Some(FencingToken(3))));
        // An older token never replaces a newer one.
        assert_eq!(w.track(7, &lease(3, 0, 60)), None);
        w.forget(7, FencingToken(3));
        assert_eq!(w.len(), 1, "forgetting an older lease keeps the newer one");
        w.forget(7, FencingToken(4));
        assert_eq!(w.len(), 0);
    }
}
