-- Work queues with leases, identity (MySQL 8 / MariaDB 10.6+, InnoDB).
-- Times are BIGINT milliseconds since the Unix epoch (as in every
-- backend); JSON is stored as text exactly as Baton wrote it. Names are
-- compared byte for byte (utf8mb4_bin); free-text keys (dedupe and
-- idempotency keys) are matched by their SHA-256, because every MySQL
-- collation either folds case or ignores trailing spaces.

CREATE TABLE principals (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(64) NOT NULL,
    role       VARCHAR(16) NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE KEY principals_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE tokens (
    hash         VARBINARY(64) NOT NULL PRIMARY KEY,
    principal_id BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT tokens_principal FOREIGN KEY (principal_id) REFERENCES principals (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE queues (
    name       VARCHAR(128) NOT NULL PRIMARY KEY,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Completions per queue, spread over a few rows so that concurrent
-- completions in one queue do not all wait for the same row lock.
CREATE TABLE queue_done_counts (
    queue VARCHAR(128) NOT NULL,
    shard SMALLINT NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (queue, shard)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per principal that ever claimed: a claim locks its holder's row
-- first, so the claims of one holder run one at a time in every process.
CREATE TABLE claim_gates (
    holder VARCHAR(64) NOT NULL PRIMARY KEY
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The live table: only unfinished items, so claims never wade through
-- finished ones.
CREATE TABLE items (
    id               BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    queue            VARCHAR(128) NOT NULL,
    kind             VARCHAR(64) NOT NULL,
    payload          MEDIUMTEXT NOT NULL,
    priority         BIGINT NOT NULL,
    state            VARCHAR(16) NOT NULL,
    available_at     BIGINT NOT NULL,
    dedupe_key       VARCHAR(256),
    attempts         BIGINT NOT NULL,
    token            BIGINT NOT NULL,
    holder           VARCHAR(64),
    claimed_at       BIGINT,
    lease_expires_at BIGINT,
    released_by      VARCHAR(64),
    released_until   BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    outcome          VARCHAR(64),
    note             TEXT,
    completed_by     VARCHAR(64),
    completed_at     BIGINT,
    dedupe_hash      BINARY(32) AS (UNHEX(SHA2(dedupe_key, 256))) STORED,
    KEY items_claim (queue, state, priority DESC, id),
    KEY items_due (state, available_at),
    KEY items_leased (state, lease_expires_at),
    KEY items_holder (queue, holder),
    UNIQUE KEY items_dedupe (queue, dedupe_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Finished items, the same columns but the generated one.
CREATE TABLE done_items (
    id               BIGINT NOT NULL PRIMARY KEY,
    queue            VARCHAR(128) NOT NULL,
    kind             VARCHAR(64) NOT NULL,
    payload          MEDIUMTEXT NOT NULL,
    priority         BIGINT NOT NULL,
    state            VARCHAR(16) NOT NULL,
    available_at     BIGINT NOT NULL,
    dedupe_key       VARCHAR(256),
    attempts         BIGINT NOT NULL,
    token            BIGINT NOT NULL,
    holder           VARCHAR(64),
    claimed_at       BIGINT,
    lease_expires_at BIGINT,
    released_by      VARCHAR(64),
    released_until   BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    outcome          VARCHAR(64),
    note             TEXT,
    completed_by     VARCHAR(64),
    completed_at     BIGINT,
    KEY done_items_queue (queue, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE item_events (
    id      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    item_id BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    kind    VARCHAR(16) NOT NULL,
    actor   VARCHAR(64),
    token   BIGINT,
    queue   VARCHAR(128) NOT NULL,
    detail  TEXT NOT NULL,
    KEY item_events_item (item_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE claim_keys (
    holder     VARCHAR(64) NOT NULL,
    key_hash   BINARY(32) NOT NULL,
    item_id    BIGINT NOT NULL,
    token      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (holder, key_hash),
    KEY claim_keys_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
