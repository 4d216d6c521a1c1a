//! Group commit for PostgreSQL: concurrent requests of one kind (claims,
//! completions) waiting on the same store are served together by one
//! transaction.
//!
//! There is no timer: a request starts a batch at once if fewer than
//! `in_flight` batches are running (a few, so that the round trips of one
//! overlap with another's); otherwise it waits, with every other request
//! arriving meanwhile, for the next batch, which takes them all (up to
//! [`MAX_BATCH`]). An idle store therefore adds
//! no latency, and a busy one spends a transaction's round trips on many
//! requests instead of one.
//!
//! A batch runs in its own task, so a caller that gives up (a client that
//! disconnects) cannot cancel a transaction other callers wait on. Its
//! answers are per request; a batch that fails as a whole (the database
//! is unreachable, a fatal error) answers every request with that error.
//! A request whose caller left before its batch started is dropped unrun.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use baton_core::{Result, StoreError};
use tokio::sync::oneshot;

/// The most requests one transaction serves.
pub(super) const MAX_BATCH: usize = 64;

/// Runs one batch: one answer per job, in the jobs' order.
type Runner<J, R> =
    Arc<dyn Fn(Vec<J>) -> Pin<Box<dyn Future<Output = Vec<Result<R>>> + Send>> + Send + Sync>;

struct State<J, R> {
    pending: Vec<(J, oneshot::Sender<Result<R>>)>,
    /// Batches in flight.
    running: usize,
}

/// Collects concurrent jobs and runs them in batches (see the module
/// documentation).
pub(super) struct Batcher<J, R> {
    state: Mutex<State<J, R>>,
    /// How many batches may be in flight at once, each on its own
    /// connection; further requests wait for the next batch.
    in_flight: usize,
    run: Runner<J, R>,
}

impl<J: Send + 'static, R: Send + 'static> Batcher<J, R> {
    /// A batcher whose batches `run` serves, at most `in_flight` at once.
    pub(super) fn new<F, Fut>(in_flight: usize, run: F) -> Arc<Self>
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<R>>> + Send + 'static,
    {
        Arc::new(Self {
            state: Mutex::new(State {
                pending: Vec::new(),
                running: 0,
            }),
            in_flight: in_flight.max(1),
            run: Arc::new(move |jobs| Box::pin(run(jobs))),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<J, R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `job` in the next batch and returns its answer.
    pub(super) async fn submit(self: &Arc<Self>, job: J) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut s = self.state();
            s.pending.push((job, tx));
            let lead = s.running < self.in_flight;
            if lead {
                s.running += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(Arc::clone(self).drain());
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::retryable("the batch serving this request was lost").into())
        })
    }

    /// Runs batches until no job is waiting.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch = {
                let mut s = self.state();
                s.pending.retain(|(_, tx)| !tx.is_closed());
                if s.pending.is_empty() {
                    s.running -= 1;
                    return;
                }
                let n = s.pending.len().min(MAX_BATCH);
                s.pending.drain(..n).collect::<Vec<_>>()
            };
            let (jobs, answers): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
            let n = jobs.len();
            // In a task of its own, so that a panic answers this batch
            // with an error instead of stopping every later one.
            let results = match tokio::spawn((self.run)(jobs)).await {
                Ok(results) if results.len() == n => results,
                Ok(results) => {
                    let e = StoreError::fatal(format!(
                        "a batch of {n} requests returned {} answers",
                        results.len()
                    ));
                    every(n, e.into())
                }
                Err(e) => every(n, StoreError::fatal(format!("a batch failed: {e}")).into()),
            };
            for (tx, r) in answers.into_iter().zip(results) {
                let _ = tx.send(r);
            }
        }
    }
}

/// The same error as the answer to each of `n` requests.
pub(super) fn every<R>(n: usize, e: baton_core::Error) -> Vec<Result<R>> {
    (0..n).map(|_| Err(e.clone())).collect()
}
