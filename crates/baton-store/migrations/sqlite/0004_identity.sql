-- Identity for people: passwords, web sessions, token listing.

-- A PHC string (argon2id); NULL: no password, no web login.
ALTER TABLE principals ADD COLUMN password_hash TEXT;

-- Listing and revoking a principal's tokens.
CREATE INDEX tokens_principal ON tokens (principal_id, created_at);

-- Web sessions, keyed by the SHA-256 of their secret (the secret itself
-- is never stored); `id` is public (the lock `session` label).
CREATE TABLE sessions (
    hash         BLOB PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    principal_id INTEGER NOT NULL REFERENCES principals(id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
-- The sweeper deletes expired sessions by this index.
CREATE INDEX sessions_expires ON sessions (expires_at);
