-- Versioned records. Times are INTEGER milliseconds since the Unix epoch;
-- JSON is stored as text exactly as Baton wrote it.

-- Per-collection settings, created with defaults on first use.
CREATE TABLE collections (
    name       TEXT PRIMARY KEY,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The latest version of every key: the record, or its tombstone after a
-- delete (deleted = 1, data 'null'). A write locks and rewrites this row.
CREATE TABLE records (
    collection TEXT NOT NULL,
    record_key TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    data       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (collection, record_key)
) WITHOUT ROWID;

-- Every version of every key, with its data (NULL for a tombstone) and
-- its change from the previous version. Append-only.
CREATE TABLE record_versions (
    collection     TEXT NOT NULL,
    record_key     TEXT NOT NULL,
    version        INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    at             INTEGER NOT NULL,
    base_version   INTEGER,
    merged_base    INTEGER,
    merged_current INTEGER,
    deleted        INTEGER NOT NULL,
    changes        TEXT NOT NULL,
    data           TEXT,
    PRIMARY KEY (collection, record_key, version)
) WITHOUT ROWID;
CREATE TRIGGER record_versions_no_update BEFORE UPDATE ON record_versions
BEGIN SELECT RAISE(ABORT, 'record history is append-only'); END;
CREATE TRIGGER record_versions_no_delete BEFORE DELETE ON record_versions
BEGIN SELECT RAISE(ABORT, 'record history is append-only'); END;

-- Refused writes, kept for their authors until expires_at.
CREATE TABLE record_conflicts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    author     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX record_conflicts_expires ON record_conflicts (expires_at);
