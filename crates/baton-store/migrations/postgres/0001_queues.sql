-- Work queues with leases, identity. Times are BIGINT milliseconds since
-- the Unix epoch (as in every backend); JSON is stored as text exactly as
-- Baton wrote it.

CREATE TABLE principals (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    hash         BYTEA PRIMARY KEY,
    principal_id BIGINT NOT NULL REFERENCES principals(id),
    created_at   BIGINT NOT NULL
);

CREATE TABLE queues (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Completions per queue, spread over a few rows so that concurrent
-- completions in one queue do not all wait for the same row lock.
CREATE TABLE queue_done_counts (
    queue TEXT NOT NULL,
    shard SMALLINT NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (queue, shard)
);

-- The live table: only unfinished items, so claims never wade through
-- finished ones (and dead row versions stay few).
CREATE TABLE items (
    id               BIGSERIAL PRIMARY KEY,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    state            TEXT NOT NULL,
    available_at     BIGINT NOT NULL,
    dedupe_key       TEXT,
    attempts         BIGINT NOT NULL,
    token            BIGINT NOT NULL,
    holder           TEXT,
    claimed_at       BIGINT,
    lease_expires_at BIGINT,
    released_by      TEXT,
    released_until   BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    outcome          TEXT,
    note             TEXT,
    completed_by     TEXT,
    completed_at     BIGINT
);
CREATE INDEX items_ready ON items (queue, priority DESC, id) WHERE state = 'ready';
CREATE INDEX items_scheduled_due ON items (available_at) WHERE state = 'scheduled';
CREATE INDEX items_scheduled ON items (queue, available_at) WHERE state = 'scheduled';
CREATE INDEX items_leased_due ON items (lease_expires_at) WHERE state = 'leased';
CREATE INDEX items_leased ON items (queue, lease_expires_at) WHERE state = 'leased';
CREATE INDEX items_holder ON items (queue, holder) WHERE state = 'leased';
CREATE INDEX items_state ON items (queue, state, id);
CREATE UNIQUE INDEX items_dedupe ON items (queue, dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE done_items (LIKE items INCLUDING DEFAULTS);
ALTER TABLE done_items ADD PRIMARY KEY (id);
ALTER TABLE done_items ALTER COLUMN id DROP DEFAULT;
CREATE INDEX done_items_queue ON done_items (queue, id);

CREATE TABLE item_events (
    id      BIGSERIAL PRIMARY KEY,
    item_id BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT,
    token   BIGINT,
    queue   TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX item_events_item ON item_events (item_id, id);

CREATE TABLE claim_keys (
    holder     TEXT NOT NULL,
    key        TEXT NOT NULL,
    item_id    BIGINT NOT NULL,
    token      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (holder, key)
);
CREATE INDEX claim_keys_created ON claim_keys (created_at);
