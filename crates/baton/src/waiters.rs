//! Long-poll claimers waiting for work.
//!
//! A waiting claim holds no thread and no database connection: it is a
//! oneshot receiver in a per-queue FIFO. When an item becomes claimable
//! (enqueue, release, revoke, requeue, escalation, or the sweeper finding
//! expired leases and due scheduled items) the engine wakes the *first*
//! waiter whose kind filter matches — one item, one wake-up, no thundering
//! herd. A woken waiter that ends without claiming (its own retry won, or
//! its request was dropped) passes the wake-up on, so it is never lost.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use baton_core::{Kind, QueueName};
use tokio::sync::oneshot;

struct Entry {
    id: u64,
    kinds: Vec<Kind>,
    tx: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    queues: HashMap<QueueName, VecDeque<Entry>>,
}

/// The registry of waiting claimers of every queue.
#[derive(Clone, Default)]
pub(crate) struct Waiters {
    // A std Mutex, not a Tokio one: nothing awaits while holding it.
    inner: Arc<Mutex<Inner>>,
}

/// One registered waiter; dropping it deregisters, passing on a wake-up it
/// received but did not use.
pub(crate) struct Waiter {
    waiters: Waiters,
    queue: QueueName,
    id: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a waiter for `queue` interested in `kinds` (all if empty).
    pub(crate) fn register(&self, queue: &QueueName, kinds: &[Kind]) -> Waiter {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner
            .queues
            .entry(queue.clone())
            .or_default()
            .push_back(Entry {
                id,
                kinds: kinds.to_vec(),
                tx,
            });
        Waiter {
            waiters: self.clone(),
            queue: queue.clone(),
            id,
            rx: Some(rx),
        }
    }

    /// Wakes up to `n` waiters of `queue` whose filter accepts `kind` (any
    /// waiter when `kind` is `None`), oldest first. Returns how many woke.
    pub(crate) fn wake(&self, queue: &QueueName, kind: Option<&Kind>, n: u64) -> u64 {
        let mut inner = self.lock();
        let Some(list) = inner.queues.get_mut(queue) else {
            return 0;
        };
        let mut woken = 0;
        let mut i = 0;
        while woken < n && i < list.len() {
            let matches = match kind {
                None => true,
                Some(k) => list[i].kinds.is_empty() || list[i].kinds.contains(k),
            };
            if list[i].tx.is_closed() {
                list.remove(i);
            } else if matches {
                if let Some(e) = list.remove(i)
                    && e.tx.send(()).is_ok()
                {
                    woken += 1;
                }
            } else {
                i += 1;
            }
        }
        if list.is_empty() {
            inner.queues.remove(queue);
        }
        woken
    }

    /// Wakes every waiter of every queue (news may have been missed).
    pub(crate) fn wake_all(&self) {
        let queues: Vec<QueueName> = self.lock().queues.keys().cloned().collect();
        for q in queues {
            self.wake(&q, None, u64::MAX);
        }
    }

    /// How many claimers are waiting, per queue.
    pub(crate) fn counts(&self) -> Vec<(QueueName, usize)> {
        self.lock()
            .queues
            .iter()
            .map(|(q, l)| (q.clone(), l.len()))
            .collect()
    }
}

impl Waiter {
    /// Waits for a wake-up. Returns at once if one already arrived.
    pub(crate) async fn woken(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            // An Err means the sender was dropped, which only happens when
            // the entry was removed: treat it as a wake-up too.
            let _ = rx.await;
            self.rx = None;
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut inner = self.waiters.lock();
        if let Some(list) = inner.queues.get_mut(&self.queue) {
            list.retain(|e| e.id != self.id);
            if list.is_empty() {
                inner.queues.remove(&self.queue);
            }
        }
        drop(inner);
        // Woken but never used: someone else must get this wake-up.
        if let Some(mut rx) = self.rx.take()
            && rx.try_recv().is_ok()
        {
            self.waiters.wake(&self.queue, None, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> QueueName {
        QueueName::new("q").unwrap()
    }

    #[tokio::test]
    async fn wakes_one_matching_waiter_in_fifo_order() {
        let w = Waiters::default();
        let refund = Kind::new("refund").unwrap();
        let other = Kind::new("other").unwrap();
        let mut a = w.register(&q(), std::slice::from_ref(&other));
        let mut b = w.register(&q(), &[]);
        let mut c = w.register(&q(), &[]);
        assert_eq!(w.wake(&q(), Some(&refund), 1), 1);
        b.woken().await; // b was first to accept refunds
        assert!(a.rx.as_mut().unwrap().try_recv().is_err());
        assert!(c.rx.as_mut().unwrap().try_recv().is_err());
        assert_eq!(w.wake(&q(), Some(&other), 5), 2);
        a.woken().await;
        c.woken().await;
        assert_eq!(w.wake(&q(), None, 1), 0);
    }

    #[tokio::test]
    async fn an_unused_wake_up_is_passed_on() {
        let w = Waiters::default();
        let a = w.register(&q(), &[]);
        let mut b = w.register(&q(), &[]);
        assert_eq!(w.wake(&q(), None, 1), 1);
        drop(a); // woken, but gave up without claiming
        tokio::time::timeout(std::time::Duration::from_secs(1), b.woken())
            .await
            .expect("b inherits a's wake-up");
        drop(b);
        assert!(w.counts().is_empty());
    }
}
