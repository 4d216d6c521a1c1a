-- The lock manager (MySQL 8 / MariaDB 10.6+, InnoDB). Times are BIGINT
-- milliseconds since the Unix epoch. Resource names are matched by their
-- SHA-256 (`resource_hash`), because every MySQL collation either folds
-- case or ignores trailing spaces; the name itself is kept beside it.
-- Every transaction locks the rows of its resources one by one in byte
-- order of their names.

-- One row per resource ever asked for: the row every operation on the
-- resource locks first, its current fencing token, and a version that
-- changes whenever something that may unblock a waiting request happens,
-- and the latest time an operation on it used: an operation's time is
-- never earlier than that, so times on a resource only move forward in
-- the order its operations commit
-- (waiting requests in other processes poll it).
CREATE TABLE lock_resources (
    resource_hash BINARY(32) NOT NULL PRIMARY KEY,
    resource      VARCHAR(256) NOT NULL,
    token         BIGINT NOT NULL DEFAULT 0,
    version       BIGINT NOT NULL DEFAULT 0,
    at            BIGINT NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every lock, live or ended (kept for the retention period).
CREATE TABLE locks (
    id             BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    token          BIGINT NOT NULL,
    resources      MEDIUMTEXT NOT NULL,
    mode           VARCHAR(16) NOT NULL,
    holder         VARCHAR(64) NOT NULL,
    session        VARCHAR(128),
    ttl_seconds    BIGINT NOT NULL,
    acquired_at    BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    max_hold_until BIGINT,
    ended_at       BIGINT,
    end_cause      VARCHAR(16),
    ended_by       VARCHAR(64),
    end_reason     TEXT,
    KEY locks_due (ended_at, expires_at),
    KEY locks_holder (holder, session, ended_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE lock_holds (
    resource_hash BINARY(32) NOT NULL,
    lock_id       BIGINT NOT NULL,
    resource      VARCHAR(256) NOT NULL,
    PRIMARY KEY (resource_hash, lock_id),
    KEY lock_holds_lock (lock_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE lock_tickets (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    holder     VARCHAR(64) NOT NULL,
    mode       VARCHAR(16) NOT NULL,
    expires_at BIGINT NOT NULL,
    KEY lock_tickets_due (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE lock_ticket_resources (
    resource_hash BINARY(32) NOT NULL,
    ticket_id     BIGINT NOT NULL,
    resource      VARCHAR(256) NOT NULL,
    PRIMARY KEY (resource_hash, ticket_id),
    KEY lock_ticket_resources_ticket (ticket_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE lock_keys (
    holder     VARCHAR(64) NOT NULL,
    key_hash   BINARY(32) NOT NULL,
    lock_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (holder, key_hash),
    KEY lock_keys_created (created_at),
    KEY lock_keys_lock (lock_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE lock_events (
    id            BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    resource_hash BINARY(32) NOT NULL,
    resource      VARCHAR(256) NOT NULL,
    lock_id       BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    kind          VARCHAR(16) NOT NULL,
    actor         VARCHAR(64),
    holder        VARCHAR(64) NOT NULL,
    mode          VARCHAR(16) NOT NULL,
    token         BIGINT NOT NULL,
    detail        TEXT NOT NULL,
    KEY lock_events_resource (resource_hash, at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The one fencing-token counter of every grant, upgrade and forced
-- release; its row is locked last, after the resources' rows.
CREATE TABLE lock_counter (
    id    TINYINT NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
) ENGINE = InnoDB;
INSERT INTO lock_counter (id, value) VALUES (1, 0);
