-- Versioned records (MySQL 8 / MariaDB 10.6+, InnoDB). Times are BIGINT
-- milliseconds since the Unix epoch (as in every backend); JSON is stored
-- as text exactly as Baton wrote it. Collection names and keys have no
-- spaces (see RecordKey), so utf8mb4_bin compares and orders them byte by
-- byte as the other backends do.

-- Per-collection settings, created with defaults on first use.
CREATE TABLE collections (
    name       VARCHAR(64) NOT NULL PRIMARY KEY,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The latest version of every key: the record, or its tombstone after a
-- delete (deleted, data 'null'). A write locks this row first.
CREATE TABLE records (
    collection VARCHAR(64) NOT NULL,
    record_key VARCHAR(128) NOT NULL,
    version    BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL,
    data       MEDIUMTEXT NOT NULL,
    created_by VARCHAR(64) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_by VARCHAR(64) NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (collection, record_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every version of every key, with its data (NULL for a tombstone) and
-- its change from the previous version. Append-only by Baton's code
-- (no trigger: creating one needs privileges a Baton user may not have).
CREATE TABLE record_versions (
    collection     VARCHAR(64) NOT NULL,
    record_key     VARCHAR(128) NOT NULL,
    version        BIGINT NOT NULL,
    kind           VARCHAR(16) NOT NULL,
    actor          VARCHAR(64) NOT NULL,
    at             BIGINT NOT NULL,
    base_version   BIGINT,
    merged_base    BIGINT,
    merged_current BIGINT,
    deleted        BOOLEAN NOT NULL,
    changes        MEDIUMTEXT NOT NULL,
    data           MEDIUMTEXT,
    PRIMARY KEY (collection, record_key, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Refused writes, kept for their authors until expires_at.
CREATE TABLE record_conflicts (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    author     VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,
    detail     MEDIUMTEXT NOT NULL,
    KEY record_conflicts_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
