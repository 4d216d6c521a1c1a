-- The baseline `baton bench queue` on PostgreSQL is compared with: a bare
-- SKIP LOCKED claim + complete, no Baton, no HTTP, no history. Usage
-- (README, Performance):
--   createdb -h 127.0.0.1 -U postgres pgq
--   psql -h 127.0.0.1 -U postgres -d pgq -f setup.sql
--   pgbench -h 127.0.0.1 -U postgres -n -c 64 -j 2 -T 8 -f claim_complete.sql pgq
DROP TABLE IF EXISTS q;
CREATE TABLE q (
    id         BIGSERIAL PRIMARY KEY,
    state      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    holder     TEXT,
    token      BIGINT NOT NULL DEFAULT 0,
    claimed_at TIMESTAMPTZ,
    outcome    TEXT
);
CREATE INDEX q_ready ON q (id) WHERE state = 'ready';
INSERT INTO q (state, payload) SELECT 'ready', '{"n":' || i || '}' FROM generate_series(1, 1000000) AS i;
VACUUM ANALYZE q;
