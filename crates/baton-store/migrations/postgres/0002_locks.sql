-- The lock manager. Times are BIGINT milliseconds since the Unix epoch.
-- Resource names are TEXT compared byte for byte; every transaction locks
-- the rows of its resources in byte order (COLLATE "C"), so that two
-- transactions never wait for each other's resources crosswise.

-- One row per resource ever asked for: the row every operation on the
-- resource locks first, its current fencing token, and a version that
-- changes whenever something that may unblock a waiting request happens,
-- and the latest time an operation on it used: an operation's time is
-- never earlier than that, so times on a resource only move forward in
-- the order its operations commit.
CREATE TABLE lock_resources (
    resource TEXT PRIMARY KEY,
    token    BIGINT NOT NULL DEFAULT 0,
    version  BIGINT NOT NULL DEFAULT 0,
    at       BIGINT NOT NULL DEFAULT 0
);

-- Every lock, live or ended (kept for the retention period).
CREATE TABLE locks (
    id             BIGSERIAL PRIMARY KEY,
    token          BIGINT NOT NULL,
    resources      TEXT NOT NULL,
    mode           TEXT NOT NULL,
    holder         TEXT NOT NULL,
    session        TEXT,
    ttl_seconds    BIGINT NOT NULL,
    acquired_at    BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    max_hold_until BIGINT,
    ended_at       BIGINT,
    end_cause      TEXT,
    ended_by       TEXT,
    end_reason     TEXT
);
CREATE INDEX locks_due ON locks (expires_at) WHERE ended_at IS NULL;
CREATE INDEX locks_holder ON locks (holder, session) WHERE ended_at IS NULL;
CREATE INDEX locks_ended ON locks (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE lock_holds (
    resource TEXT NOT NULL,
    lock_id  BIGINT NOT NULL,
    PRIMARY KEY (resource, lock_id)
);
CREATE INDEX lock_holds_lock ON lock_holds (lock_id);

CREATE TABLE lock_tickets (
    id         BIGSERIAL PRIMARY KEY,
    holder     TEXT NOT NULL,
    mode       TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX lock_tickets_due ON lock_tickets (expires_at);
CREATE TABLE lock_ticket_resources (
    resource  TEXT NOT NULL,
    ticket_id BIGINT NOT NULL,
    PRIMARY KEY (resource, ticket_id)
);
CREATE INDEX lock_ticket_resources_ticket ON lock_ticket_resources (ticket_id);

CREATE TABLE lock_keys (
    holder     TEXT NOT NULL,
    key        TEXT NOT NULL,
    lock_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (holder, key)
);
CREATE INDEX lock_keys_created ON lock_keys (created_at);
CREATE INDEX lock_keys_lock ON lock_keys (lock_id);

CREATE TABLE lock_events (
    id       BIGSERIAL PRIMARY KEY,
    resource TEXT NOT NULL,
    lock_id  BIGINT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    actor    TEXT,
    holder   TEXT NOT NULL,
    mode     TEXT NOT NULL,
    token    BIGINT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX lock_events_resource ON lock_events (resource, at, id);

-- The one fencing-token counter of every grant, upgrade and forced
-- release. Its values are taken after the resources' rows are locked, so
-- each resource sees strictly increasing tokens even though values are
-- handed out outside transactions.
CREATE SEQUENCE lock_tokens;
