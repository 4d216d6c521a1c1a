-- The audit trail reads the three histories newest first, by time or by
-- actor; throughput counts a queue's completions by time.

CREATE INDEX item_events_at ON item_events (at, id);
CREATE INDEX item_events_actor ON item_events (actor, at, id);
CREATE INDEX lock_events_at ON lock_events (at, id);
CREATE INDEX lock_events_actor ON lock_events (actor, at, id);
CREATE INDEX record_versions_at ON record_versions (at, collection, record_key, version);
CREATE INDEX record_versions_actor ON record_versions (actor, at);
CREATE INDEX done_items_completed ON done_items (queue, completed_at);
