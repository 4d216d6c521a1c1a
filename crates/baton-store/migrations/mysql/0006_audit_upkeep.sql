-- Audit indexes that cost the hot path less (as on SQLite): filtering
-- the trail by actor walks the time indexes (`item_events_at`,
-- `lock_events_at`) instead of keeping a per-actor index of the two hot
-- histories, which every claim, complete and lock operation writes.

DROP INDEX item_events_actor ON item_events;
DROP INDEX lock_events_actor ON lock_events;
