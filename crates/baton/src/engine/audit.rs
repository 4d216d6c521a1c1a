//! The audit trail and queue throughput, for supervisors' pages (rules
//! and order in [`baton_core::audit`]).

use std::time::Duration as StdDuration;

use baton_core::audit::{self, AuditEntry, AuditFilter, ThroughputBucket};
use baton_core::{Action, Principal, QueueName, Result};
use chrono::{DateTime, Utc};

use super::Engine;

impl Engine {
    /// Supervisors and admins: a page of the audit trail, newest first
    /// (see [`AuditFilter`] for what `subject` matches). The next page:
    /// the same filter with `before` set to the last entry's `cursor`.
    pub async fn audit(&self, who: &Principal, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        who.require(Action::Supervise)?;
        filter.validate()?;
        self.inner.store.audit(filter).await
    }

    /// Items completed in `queue` per `bucket` (whole seconds) from the
    /// bucket holding `since` to the one holding now: every bucket, zeros
    /// included, aligned to multiples of `bucket` since the Unix epoch
    /// (see [`audit::throughput_buckets`]). At most
    /// [`baton_core::audit_limits::MAX_BUCKETS`] buckets.
    pub async fn throughput(
        &self,
        who: &Principal,
        queue: &QueueName,
        since: DateTime<Utc>,
        bucket: StdDuration,
    ) -> Result<Vec<ThroughputBucket>> {
        who.require(Action::Read)?;
        let now = self.now();
        let starts = audit::throughput_buckets(since, now, bucket)?;
        let bucket_ms = bucket.as_millis() as i64;
        let first = starts.first().copied().unwrap_or(since);
        let until =
            starts.last().copied().unwrap_or(since) + chrono::Duration::milliseconds(bucket_ms);
        let counts = self
            .inner
            .store
            .completion_counts(queue, first, until, bucket_ms)
            .await?;
        Ok(audit::fill_buckets(starts, &counts))
    }
}
