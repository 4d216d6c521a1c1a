//! Versioned records: the engine's part is roles, time, and keeping each
//! refused write as a conflict object so its author's typing is never
//! lost. What a write does is decided by `baton_core::record_rules`
//! inside the store's transaction.

use std::sync::Arc;

use baton_core::{
    Action, CollectionConfig, CollectionName, ConflictId, ConflictObject, Error, HistoryFilter,
    LockId, LockPolicy, Principal, Record, RecordFilter, RecordKey, RecordVersion, RecordWrite,
    Refusal, ResourceName, Result, Role, StoreError, Version, Written, check_record_page,
    record_rules,
};
use metrics::counter;

use super::Engine;

impl Engine {
    /// A collection's settings (the defaults for one never used).
    pub async fn collection_config(
        &self,
        who: &Principal,
        collection: &CollectionName,
    ) -> Result<CollectionConfig> {
        who.require(Action::Read)?;
        self.inner.store.collection_config(collection).await
    }

    /// Admin: changes a collection's settings atomically — `change` is
    /// applied to the settings in force, even when other servers change
    /// them at the same moment — and returns the settings now in force.
    pub async fn update_collection_config(
        &self,
        who: &Principal,
        collection: &CollectionName,
        change: impl Fn(CollectionConfig) -> CollectionConfig + Send + Sync + 'static,
    ) -> Result<CollectionConfig> {
        who.require(Action::Configure)?;
        self.inner
            .store
            .update_collection_config(collection, Arc::new(move |c| Ok(change(c))), self.now())
            .await
    }

    /// Under `lock_policy: read_write`, checks that a read of the record
    /// names a live exclusive lock of the caller on `{collection}/{key}`
    /// (see [`record_rules::check_lock`]).
    async fn check_read_lock(
        &self,
        who: &Principal,
        collection: &CollectionName,
        key: &RecordKey,
        lock: Option<LockId>,
    ) -> Result<()> {
        let config = self.inner.store.collection_config(collection).await?;
        if !record_rules::lock_needed(config.lock_policy, false) {
            return Ok(());
        }
        let resource = ResourceName::new(format!("{collection}/{key}"))?;
        let now = self.now();
        let named = match lock {
            Some(id) => match self.inner.store.lock(id, now).await {
                Ok(l) => Some(l),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let status = self
            .inner
            .store
            .lock_status(std::slice::from_ref(&resource), now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::fatal("no status for the record's resource"))?;
        let checked = record_rules::check_lock(
            resource.as_str(),
            &who.name,
            lock,
            named.as_ref(),
            &status,
            now,
        );
        if checked.is_err() {
            counter!("baton_record_refusals_total", "reason" => "lock_required").increment(1);
        }
        checked
    }

    /// The record as it is now. `NotFound` for a key never written or
    /// deleted (saying when and by whom). Under `lock_policy: read_write`
    /// the read must name (`lock`) the caller's exclusive lock on it.
    pub async fn record(
        &self,
        who: &Principal,
        collection: &CollectionName,
        key: &RecordKey,
        lock: Option<LockId>,
    ) -> Result<Record> {
        who.require(Action::Read)?;
        self.check_read_lock(who, collection, key, lock).await?;
        let head = self.inner.store.record_head(collection, key).await?;
        match head {
            Some(h) if !h.deleted => Ok(h.record),
            Some(h) => Err(Error::not_found(
                "record",
                format!(
                    "{collection}/{key} (deleted in version {} by {} at {})",
                    h.record.version,
                    h.record.updated_by,
                    h.record.updated_at.to_rfc3339()
                ),
            )),
            None => Err(Error::not_found("record", format!("{collection}/{key}"))),
        }
    }

    /// Writes a record as `who` (the write's actor is set to `who`). A
    /// refused stale write (412) or merge (409) is kept as a conflict
    /// object for its author, named in the refusal.
    pub async fn write_record(&self, who: &Principal, mut write: RecordWrite) -> Result<Written> {
        who.require(Action::Edit)?;
        write.actor = who.name.clone();
        let now = self.now();
        match self.inner.store.write_record(write.clone(), now).await {
            Ok(written) => {
                counter!("baton_record_writes_total", "kind" => written.kind.as_str()).increment(1);
                self.emit_record(&written, matches!(write.op, baton_core::WriteOp::Delete));
                Ok(written)
            }
            Err(e) => Err(self.refused(&write, e).await),
        }
    }

    /// Counts a refusal and, for a stale write or a merge conflict, keeps
    /// the refused body and names it in the error.
    async fn refused(&self, write: &RecordWrite, mut e: Error) -> Error {
        let reason = match &e {
            Error::PreconditionFailed(_) => "precondition_failed",
            Error::MergeConflict(_) => "merge_conflict",
            Error::PreconditionRequired(_) => "precondition_required",
            Error::LockRequired(_) => "lock_required",
            _ => return e,
        };
        counter!("baton_record_refusals_total", "reason" => reason).increment(1);
        let now = self.now();
        let mut object = ConflictObject {
            id: 0,
            collection: write.collection.clone(),
            key: write.key.clone(),
            author: write.actor.clone(),
            at: now,
            expires_at: now + self.inner.settings.conflict_retention,
            method: write.op.method(),
            base_versions: match &write.precondition {
                baton_core::Precondition::Matches(vs) => vs.clone(),
                _ => Vec::new(),
            },
            body: write.op.body().cloned(),
            refusal: Refusal::PreconditionFailed,
            current_version: Version(0),
            changed: Vec::new(),
            conflicts: Vec::new(),
            merged: Vec::new(),
        };
        match &e {
            Error::PreconditionFailed(s) => {
                object.current_version = s.current.version;
                object.changed = s.changed.clone();
            }
            Error::MergeConflict(m) => {
                object.refusal = Refusal::MergeConflict;
                object.current_version = m.current.version;
                object.conflicts = m.conflicts.clone();
                object.merged = m.merged.clone();
            }
            _ => return e,
        }
        match self.inner.store.save_conflict(&object).await {
            Ok(id) => match &mut e {
                Error::PreconditionFailed(s) => s.conflict = Some(id),
                Error::MergeConflict(m) => m.conflict = Some(id),
                _ => {}
            },
            // The refusal itself is the answer that matters; the caller
            // still has its body in hand.
            Err(store) => tracing::warn!(error = %store, "could not keep a refused write"),
        }
        e
    }

    /// A page of a collection's live records, by key. Under
    /// `lock_policy: read_write` the records' data is left out (`null`):
    /// reading it needs the record's lock.
    pub async fn list_records(
        &self,
        who: &Principal,
        collection: &CollectionName,
        filter: &RecordFilter,
    ) -> Result<Vec<Record>> {
        who.require(Action::Read)?;
        check_record_page(filter.limit)?;
        let mut records = self.inner.store.list_records(collection, filter).await?;
        let config = self.inner.store.collection_config(collection).await?;
        if config.lock_policy == LockPolicy::ReadWrite {
            for r in &mut records {
                r.data = serde_json::Value::Null;
            }
        }
        Ok(records)
    }

    /// A page of a record's history, oldest first (without the versions'
    /// data, with their changes). A read: under `lock_policy: read_write`
    /// it must name the caller's lock.
    pub async fn record_history(
        &self,
        who: &Principal,
        collection: &CollectionName,
        key: &RecordKey,
        filter: &HistoryFilter,
        lock: Option<LockId>,
    ) -> Result<Vec<RecordVersion>> {
        who.require(Action::Read)?;
        check_record_page(filter.limit)?;
        self.check_read_lock(who, collection, key, lock).await?;
        self.inner
            .store
            .record_history(collection, key, filter)
            .await
    }

    /// One version of a record, with its data. A read: under
    /// `lock_policy: read_write` it must name the caller's lock.
    pub async fn record_version(
        &self,
        who: &Principal,
        collection: &CollectionName,
        key: &RecordKey,
        version: Version,
        lock: Option<LockId>,
    ) -> Result<RecordVersion> {
        who.require(Action::Read)?;
        self.check_read_lock(who, collection, key, lock).await?;
        self.inner
            .store
            .record_version(collection, key, version)
            .await
    }

    /// A kept refused write. Only its author (and an admin) may read it;
    /// to anyone else it does not exist.
    pub async fn conflict(&self, who: &Principal, id: ConflictId) -> Result<ConflictObject> {
        who.require(Action::Read)?;
        match self.inner.store.conflict(id).await? {
            Some(c)
                if (c.author == who.name || who.role == Role::Admin)
                    && c.expires_at > self.now() =>
            {
                Ok(c)
            }
            _ => Err(Error::not_found("conflict", id)),
        }
    }
}
