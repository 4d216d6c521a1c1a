//! Stores shared by several servers (PostgreSQL, MySQL) take lock times
//! from the database's clock when told to (`StoreSettings::database_clock`,
//! the default of `baton serve`): every server then agrees on when a lock
//! expires. These cases run on such stores only (stamped with
//! [`database_clock_suite!`](crate::database_clock_suite)); the engine's
//! manual clock is stopped at [`t0`](crate::harness::t0), long ago, and
//! the locks must not care.

use std::time::Duration as StdDuration;

use baton_core::{EndCause, Error, LockMode};
use chrono::{Duration, Utc};

use crate::TestStore;
use crate::harness::{Harness, secs};

fn near_the_wall_clock(t: baton_core::Timestamp) -> bool {
    (t - Utc::now()).abs() < Duration::seconds(60)
}

/// Grants, heartbeats and expiries follow the database's clock, not the
/// engine's.
pub async fn lock_times_come_from_the_database_clock(db: TestStore) {
    let h = Harness::new(db).await;
    let lock = h.lock(&h.alice, &["a"], LockMode::Exclusive).await;
    assert!(
        near_the_wall_clock(lock.acquired_at),
        "acquired at {} (engine clock {})",
        lock.acquired_at,
        h.now()
    );
    assert_eq!(lock.expires_at, lock.acquired_at + secs(60));
    // The engine's clock jumping two hours ahead expires nothing.
    h.advance(Duration::hours(2));
    assert!(h.engine.sweep_locks().await.unwrap().expired.is_empty());
    assert!(h.status(&["a"]).await[0].locked);
    let l = h
        .engine
        .heartbeat_lock(&h.alice, lock.id, Some(60))
        .await
        .unwrap();
    assert!(near_the_wall_clock(l.expires_at - secs(60)));
}

/// A lock not kept alive expires when the database's clock says so.
pub async fn a_lock_expires_by_the_database_clock(db: TestStore) {
    let h = Harness::new(db).await;
    let req = h.lock_request(&h.alice, &["a"], LockMode::Exclusive);
    let req = baton_core::LockRequest {
        ttl_seconds: 1,
        ..req
    };
    let lock = h.try_lock(&h.alice, req).await.unwrap();
    assert!(h.status(&["a"]).await[0].locked);
    tokio::time::sleep(StdDuration::from_millis(1300)).await;
    assert!(!h.status(&["a"]).await[0].locked);
    assert_err!(
        h.engine.heartbeat_lock(&h.alice, lock.id, Some(60)).await,
        Error::LockEnded { end, .. } if end.cause == EndCause::Expired
    );
    let report = h.engine.sweep_locks().await.unwrap();
    assert_eq!(report.expired.len(), 1);
}
