//! Lock requests waiting for their resources.
//!
//! Fairness is not decided here: every waiting request holds a ticket in
//! the store's FIFO queue of each of its resources, and the store grants
//! in ticket order (see `baton_core::lock_rules`). This registry only
//! says *when* to look again, so a waiting request holds no thread and no
//! database connection, and never polls in a tight loop: it is woken when
//! one of its resources may have become free — a lock on it released,
//! forced or downgraded, a request queued for it withdrawn, an expiry
//! recorded — by this process directly, by other processes through the
//! store's notifications, or by the engine's poll of resource versions
//! where the store cannot notify. Every waiter on the resource is woken
//! (several shared requests may all be granted at once); each then tries
//! again, and the store's queue decides who gets what.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use baton_core::ResourceName;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    next_id: u64,
    by_resource: HashMap<ResourceName, Vec<(u64, Arc<Notify>)>>,
    /// For polled stores: the last version seen of each resource waited
    /// for.
    versions: HashMap<ResourceName, i64>,
}

/// The registry of waiting lock requests of this process.
#[derive(Clone, Default)]
pub(crate) struct LockWaiters {
    // A std Mutex: nothing awaits while holding it.
    inner: Arc<Mutex<Inner>>,
}

/// One waiting request; dropping it deregisters.
pub(crate) struct LockWaiter {
    waiters: LockWaiters,
    id: u64,
    resources: Vec<ResourceName>,
    notify: Arc<Notify>,
}

impl LockWaiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request waiting for `resources`. Register before each
    /// attempt, so that news arriving between the attempt and the wait is
    /// not lost.
    pub(crate) fn register(&self, resources: &[ResourceName]) -> LockWaiter {
        let notify = Arc::new(Notify::new());
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        for r in resources {
            inner
                .by_resource
                .entry(r.clone())
                .or_default()
                .push((id, notify.clone()));
        }
        LockWaiter {
            waiters: self.clone(),
            id,
            resources: resources.to_vec(),
            notify,
        }
    }

    /// Wakes every request waiting for `resource`.
    pub(crate) fn wake(&self, resource: &ResourceName) {
        if let Some(list) = self.lock().by_resource.get(resource) {
            for (_, n) in list {
                n.notify_one();
            }
        }
    }

    /// Wakes every waiting request (news may have been missed).
    pub(crate) fn wake_all(&self) {
        for list in self.lock().by_resource.values() {
            for (_, n) in list {
                n.notify_one();
            }
        }
    }

    /// How many requests wait, in total.
    pub(crate) fn count(&self) -> usize {
        let inner = self.lock();
        let mut ids: Vec<u64> = inner
            .by_resource
            .values()
            .flat_map(|l| l.iter().map(|(id, _)| *id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// The resources waited for, for polling.
    pub(crate) fn resources(&self) -> Vec<ResourceName> {
        self.lock().by_resource.keys().cloned().collect()
    }

    /// For polled stores: takes the versions just read of `resources` and
    /// wakes the waiters of each whose version changed since the last
    /// poll — or that was not polled before (it may have changed between
    /// its waiter's attempt and now).
    pub(crate) fn observe_versions(&self, resources: &[ResourceName], versions: &[i64]) {
        let mut changed = Vec::new();
        {
            let mut inner = self.lock();
            let observed: BTreeMap<&ResourceName, i64> =
                resources.iter().zip(versions.iter().copied()).collect();
            for (r, v) in &observed {
                if inner.versions.insert((*r).clone(), *v) != Some(*v) {
                    changed.push((*r).clone());
                }
            }
            // Forget resources nobody waits for any more.
            let Inner {
                by_resource,
                versions,
                ..
            } = &mut *inner;
            versions.retain(|r, _| by_resource.contains_key(r));
        }
        for r in changed {
            self.wake(&r);
        }
    }
}

impl LockWaiter {
    /// Waits for a wake-up; returns at once if one arrived since the
    /// waiter registered (or since the last wake-up it consumed).
    pub(crate) async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for LockWaiter {
    fn drop(&mut self) {
        let mut inner = self.waiters.lock();
        for r in &self.resources {
            if let Some(list) = inner.by_resource.get_mut(r) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    inner.by_resource.remove(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn r(n: &str) -> ResourceName {
        ResourceName::new(n).unwrap()
    }

    #[tokio::test]
    async fn wakes_every_waiter_of_the_resource_and_keeps_early_news() {
        let w = LockWaiters::default();
        let a = w.register(&[r("x"), r("y")]);
        let b = w.register(&[r("x")]);
        let c = w.register(&[r("z")]);
        assert_eq!(w.count(), 3);
        // Woken before waiting: the wake-up is kept.
        w.wake(&r("x"));
        tokio::time::timeout(Duration::from_secs(1), a.woken())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), b.woken())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), c.woken())
                .await
                .is_err()
        );
        drop((a, b));
        assert_eq!(w.count(), 1);
        w.wake_all();
        tokio::time::timeout(Duration::from_secs(1), c.woken())
            .await
            .unwrap();
        drop(c);
        assert!(w.resources().is_empty());
    }

    #[tokio::test]
    async fn polling_wakes_on_a_changed_or_first_seen_version() {
        let w = LockWaiters::default();
        let a = w.register(&[r("x")]);
        w.observe_versions(&[r("x")], &[3]);
        tokio::time::timeout(Duration::from_secs(1), a.woken())
            .await
            .expect("first seen");
        w.observe_versions(&[r("x")], &[3]);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), a.woken())
                .await
                .is_err(),
            "unchanged"
        );
        w.observe_versions(&[r("x")], &[4]);
        tokio::time::timeout(Duration::from_secs(1), a.woken())
            .await
            .expect("changed");
    }
}
