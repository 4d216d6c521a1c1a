-- Identity for people: passwords, web sessions, token listing.

-- A PHC string (argon2id); NULL: no password, no web login.
ALTER TABLE principals ADD COLUMN password_hash VARCHAR(255) NULL;

-- Listing and revoking a principal's tokens (the foreign key's own index
-- has principal_id alone).
CREATE INDEX tokens_by_principal ON tokens (principal_id, created_at);

-- Web sessions, keyed by the SHA-256 of their secret (the secret itself
-- is never stored); `id` is public (the lock `session` label).
CREATE TABLE sessions (
    hash         VARBINARY(64) NOT NULL PRIMARY KEY,
    id           VARCHAR(32) NOT NULL,
    principal_id BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    UNIQUE KEY sessions_id (id),
    KEY sessions_expires (expires_at),
    CONSTRAINT sessions_principal FOREIGN KEY (principal_id) REFERENCES principals (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
