-- Work queues with leases, identity. Times are INTEGER milliseconds since the Unix epoch.

CREATE TABLE principals (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    hash         BLOB PRIMARY KEY,
    principal_id INTEGER NOT NULL REFERENCES principals(id),
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE queues (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    done_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- The live table: only unfinished items, so claims never wade through
-- finished ones. AUTOINCREMENT: ids are never reused after an item moves
-- to done_items.
CREATE TABLE items (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    available_at     INTEGER NOT NULL,
    dedupe_key       TEXT,
    attempts         INTEGER NOT NULL,
    token            INTEGER NOT NULL,
    holder           TEXT,
    claimed_at       INTEGER,
    lease_expires_at INTEGER,
    released_by      TEXT,
    released_until   INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    outcome          TEXT,
    note             TEXT,
    completed_by     TEXT,
    completed_at     INTEGER
);
-- The claim order: one index range scan, first row wins.
CREATE INDEX items_ready ON items (queue, priority DESC, id) WHERE state = 'ready';
CREATE INDEX items_scheduled ON items (queue, available_at) WHERE state = 'scheduled';
CREATE INDEX items_scheduled_due ON items (available_at) WHERE state = 'scheduled';
CREATE INDEX items_leased ON items (queue, lease_expires_at) WHERE state = 'leased';
CREATE INDEX items_leased_due ON items (lease_expires_at) WHERE state = 'leased';
CREATE INDEX items_holder ON items (queue, holder) WHERE state = 'leased';
CREATE INDEX items_state ON items (queue, state, created_at);
CREATE UNIQUE INDEX items_dedupe ON items (queue, dedupe_key) WHERE dedupe_key IS NOT NULL;

-- Finished items, same columns; never scanned by claims.
CREATE TABLE done_items (
    id               INTEGER PRIMARY KEY,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    available_at     INTEGER NOT NULL,
    dedupe_key       TEXT,
    attempts         INTEGER NOT NULL,
    token            INTEGER NOT NULL,
    holder           TEXT,
    claimed_at       INTEGER,
    lease_expires_at INTEGER,
    released_by      TEXT,
    released_until   INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    outcome          TEXT,
    note             TEXT,
    completed_by     TEXT,
    completed_at     INTEGER
);
CREATE INDEX done_items_queue ON done_items (queue, id);

-- Append-only history of every item.
CREATE TABLE item_events (
    id      INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT,
    token   INTEGER,
    queue   TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX item_events_item ON item_events (item_id, id);

-- Idempotency keys of claims, per holder; forgotten by the sweeper.
CREATE TABLE claim_keys (
    holder     TEXT NOT NULL,
    key        TEXT NOT NULL,
    item_id    INTEGER NOT NULL,
    token      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (holder, key)
) WITHOUT ROWID;
CREATE INDEX claim_keys_created ON claim_keys (created_at);
