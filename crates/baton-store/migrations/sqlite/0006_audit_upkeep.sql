-- Audit indexes that cost the hot path less: filtering the trail by
-- actor walks the time indexes (`item_events_at`, `lock_events_at`)
-- instead of keeping a per-actor index of the two hot histories, which
-- every claim, complete and lock operation writes (measured: the actor
-- index of `item_events` was most of what migration 0005 added to a
-- claim + complete on SQLite's writer thread).

DROP INDEX item_events_actor;
DROP INDEX lock_events_actor;
