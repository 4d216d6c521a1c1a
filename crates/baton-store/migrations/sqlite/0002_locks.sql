-- The lock manager. Times are INTEGER milliseconds since the Unix epoch.

-- One row per resource ever locked: its current fencing token, and a
-- version that changes whenever something that may unblock a waiting
-- request happens to it.
CREATE TABLE lock_resources (
    resource TEXT PRIMARY KEY,
    token    INTEGER NOT NULL DEFAULT 0,
    version  INTEGER NOT NULL DEFAULT 0,
    at       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Every lock, live or ended (kept for the retention period). A lock is
-- live while ended_at IS NULL and expires_at is in the future; one that
-- ran out is expired for every purpose before the sweeper records it.
-- AUTOINCREMENT: ids are never reused.
CREATE TABLE locks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    token          INTEGER NOT NULL,
    resources      TEXT NOT NULL,
    mode           TEXT NOT NULL,
    holder         TEXT NOT NULL,
    session        TEXT,
    ttl_seconds    INTEGER NOT NULL,
    acquired_at    INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    max_hold_until INTEGER,
    ended_at       INTEGER,
    end_cause      TEXT,
    ended_by       TEXT,
    end_reason     TEXT
);
CREATE INDEX locks_due ON locks (expires_at) WHERE ended_at IS NULL;
CREATE INDEX locks_holder ON locks (holder, session) WHERE ended_at IS NULL;
CREATE INDEX locks_ended ON locks (ended_at) WHERE ended_at IS NOT NULL;

-- Which unended lock holds which resource: what a request is checked
-- against.
CREATE TABLE lock_holds (
    resource TEXT NOT NULL,
    lock_id  INTEGER NOT NULL,
    PRIMARY KEY (resource, lock_id)
) WITHOUT ROWID;
CREATE INDEX lock_holds_lock ON lock_holds (lock_id);

-- Requests waiting for their resources, in ticket order (FIFO).
CREATE TABLE lock_tickets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    holder     TEXT NOT NULL,
    mode       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX lock_tickets_due ON lock_tickets (expires_at);
CREATE TABLE lock_ticket_resources (
    resource  TEXT NOT NULL,
    ticket_id INTEGER NOT NULL,
    PRIMARY KEY (resource, ticket_id)
) WITHOUT ROWID;
CREATE INDEX lock_ticket_resources_ticket ON lock_ticket_resources (ticket_id);

-- Idempotency keys of acquisitions, per holder.
CREATE TABLE lock_keys (
    holder     TEXT NOT NULL,
    key        TEXT NOT NULL,
    lock_id    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (holder, key)
) WITHOUT ROWID;
CREATE INDEX lock_keys_created ON lock_keys (created_at);
CREATE INDEX lock_keys_lock ON lock_keys (lock_id);

-- Append-only history of every resource.
CREATE TABLE lock_events (
    id       INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    lock_id  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    actor    TEXT,
    holder   TEXT NOT NULL,
    mode     TEXT NOT NULL,
    token    INTEGER NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX lock_events_resource ON lock_events (resource, at, id);

-- The one fencing-token counter of every grant, upgrade and forced release.
CREATE TABLE lock_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO lock_counter (id, value) VALUES (1, 0);
