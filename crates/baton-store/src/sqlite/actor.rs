//! The threads that own SQLite connections: one writer doing group commit,
//! a few readers. Async callers hand them closures over channels and await
//! the answer on a oneshot, so no async task ever blocks on SQLite.

use std::panic::{AssertUnwindSafe, catch_unwind};

use baton_core::{Error, Result, StoreError};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most operations committed together in one transaction.
const MAX_BATCH: usize = 512;

/// Called after the batch's commit with the commit's failure, if any.
type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// Runs inside its own savepoint; says whether it succeeded and how to
/// answer once the batch is committed.
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The answer when an operation was dropped without running to a commit
/// (the store is shutting down, the transaction could not start, or the
/// operation panicked): nothing of it was written, so a retry is safe.
fn gone() -> Error {
    StoreError::retryable("the store operation was aborted before commit; nothing was written")
        .into()
}

/// Handle to the writer thread.
pub(super) struct Writer {
    tx: Sender<WriteJob>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<WriteJob>();
        std::thread::Builder::new()
            .name("baton-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .expect("spawning the SQLite writer thread");
        Self { tx }
    }

    /// Runs `f` atomically (all of its changes or none) and answers after
    /// they are durably committed.
    pub(super) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let r = f(conn);
            let ok = r.is_ok();
            let reply: Reply = Box::new(move |commit_err| {
                let _ = tx.send(match commit_err {
                    Some(e) if ok => Err(e.into()),
                    _ => r,
                });
            });
            (ok, reply)
        });
        self.tx.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn exec(conn: &Connection, sql: &str) -> Option<StoreError> {
    conn.execute_batch(sql).err().map(super::rows::store_err)
}

/// Runs one statement from the connection's cache: the savepoint
/// statements around every operation are parsed once, not per operation.
fn exec_cached(conn: &Connection, sql: &str) -> Option<StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .err()
        .map(super::rows::store_err)
}

fn writer_loop(conn: Connection, rx: Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Some(e) = exec(&conn, "BEGIN IMMEDIATE") {
            // Nothing ran. Dropping the jobs drops their answer channels:
            // each caller gets a retryable "aborted" error.
            tracing::error!(error = %e, "SQLite write transaction could not start");
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            if exec_cached(&conn, "SAVEPOINT op").is_some() {
                continue; // dropped: its caller gets "aborted"
            }
            let (ok, reply) = catch_unwind(AssertUnwindSafe(|| job(&conn))).unwrap_or_else(|_| {
                tracing::error!("a store operation panicked; rolled back");
                (false, Box::new(|_| {}))
            });
            if ok {
                exec_cached(&conn, "RELEASE op");
            } else {
                exec(&conn, "ROLLBACK TO op; RELEASE op");
            }
            replies.push(reply);
        }
        let commit_err = exec(&conn, "COMMIT");
        if let Some(e) = &commit_err {
            tracing::error!(error = %e, "SQLite commit failed; batch rolled back");
            exec(&conn, "ROLLBACK");
        }
        for reply in replies {
            reply(commit_err.clone());
        }
    }
}

/// Handle to the reader threads.
pub(super) struct Readers {
    tx: Sender<ReadJob>,
}

impl Readers {
    pub(super) fn spawn(conns: Vec<Connection>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<ReadJob>();
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("baton-sqlite-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job(&conn);
                    }
                })
                .expect("spawning an SQLite reader thread");
        }
        Self { tx }
    }

    /// Runs `f` on a reader connection (a consistent snapshot per statement;
    /// wrap several statements in a transaction inside `f` if they must
    /// agree).
    pub(super) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let r = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(StoreError::fatal("store read panicked").into()));
            let _ = tx.send(r);
        });
        self.tx.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}
