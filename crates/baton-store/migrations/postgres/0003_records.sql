-- Versioned records. Times are BIGINT milliseconds since the Unix epoch
-- (as in every backend); JSON is stored as text exactly as Baton wrote
-- it. Names and keys use the "C" collation: compared and ordered byte by
-- byte, as on the other backends, whatever the database's locale.

-- Per-collection settings, created with defaults on first use.
CREATE TABLE collections (
    name       TEXT COLLATE "C" PRIMARY KEY,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The latest version of every key: the record, or its tombstone after a
-- delete (deleted, data 'null'). A write locks this row first.
CREATE TABLE records (
    collection TEXT COLLATE "C" NOT NULL,
    record_key TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL,
    data       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (collection, record_key)
);

-- Every version of every key, with its data (NULL for a tombstone) and
-- its change from the previous version. Append-only.
CREATE TABLE record_versions (
    collection     TEXT COLLATE "C" NOT NULL,
    record_key     TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    at             BIGINT NOT NULL,
    base_version   BIGINT,
    merged_base    BIGINT,
    merged_current BIGINT,
    deleted        BOOLEAN NOT NULL,
    changes        TEXT NOT NULL,
    data           TEXT,
    PRIMARY KEY (collection, record_key, version)
);
CREATE FUNCTION record_versions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'record history is append-only';
END $$;
CREATE TRIGGER record_versions_append_only BEFORE UPDATE OR DELETE ON record_versions
    FOR EACH ROW EXECUTE FUNCTION record_versions_append_only();

-- Refused writes, kept for their authors until expires_at.
CREATE TABLE record_conflicts (
    id         BIGSERIAL PRIMARY KEY,
    author     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX record_conflicts_expires ON record_conflicts (expires_at);
