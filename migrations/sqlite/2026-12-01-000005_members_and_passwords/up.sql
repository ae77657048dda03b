-- Members from the web (invitations, deactivation, demo accounts) and password resets.
-- Keep this file and its twin (sqlite/postgres) in step. Times are Unix seconds.

-- A deactivated user keeps their row (the audit trail names them) but cannot sign in.
ALTER TABLE users ADD COLUMN deactivated_at BIGINT;
-- A demo account signs in but cannot change its password or second factors.
ALTER TABLE users ADD COLUMN is_demo BOOLEAN NOT NULL DEFAULT FALSE;

-- A pending invitation. The link's token is stored only as its SHA-256 (hex); a resend
-- replaces the hash, so the old link stops working in the same statement. Accepting or
-- revoking deletes the row (the audit log keeps the story).
CREATE TABLE invites (
    id             TEXT PRIMARY KEY NOT NULL,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email          TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    token_hash     TEXT NOT NULL UNIQUE,
    invited_by     TEXT REFERENCES users (id) ON DELETE SET NULL,
    invited_by_label TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    UNIQUE (workspace_id, email)
);
CREATE INDEX invites_expiry_idx ON invites (expires_at);

-- At most one live password-reset link per user: a newer request replaces the row (and so
-- kills the older link); using it, changing the password or deactivating deletes it. The
-- token is stored only as its SHA-256 (hex).
CREATE TABLE password_resets (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX password_resets_expiry_idx ON password_resets (expires_at);
