-- Times are Unix seconds (BIGINT) and ids are random text, so that one diesel schema
-- serves SQLite and PostgreSQL alike. Keep this file and its postgres twin in step.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Emails are stored trimmed and lower-cased (the application's Email type does it),
-- so the plain UNIQUE constraint is the case-insensitive one the contract asks for.
CREATE TABLE users (
    id               TEXT PRIMARY KEY NOT NULL,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email            TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL DEFAULT '',
    role             TEXT NOT NULL CHECK (role IN ('member', 'admin')),
    is_staff         BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash    TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_sign_in_at  BIGINT,
    -- Bumped whenever all of the user's sessions are ended; a session made
    -- under an older value is refused, even one written after the ending.
    session_epoch    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX users_workspace_idx ON users (workspace_id);

CREATE TABLE totp_credentials (
    user_id            TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_ciphertext  TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    last_step          BIGINT NOT NULL,
    enabled_at         BIGINT NOT NULL
);

CREATE TABLE pending_enrolments (
    user_id            TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_ciphertext  TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    -- SHA-256 of a nonce kept in the session that started the enrolment: only
    -- that session sees this secret and can confirm it.
    session_binding    TEXT NOT NULL
);

CREATE TABLE recovery_codes (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX recovery_codes_user_idx ON recovery_codes (user_id);

-- id is the SHA-256 of the session key in the cookie: a copy of this table
-- does not let anyone present a live session.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT REFERENCES users (id) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_last_seen_idx ON sessions (last_seen_at);

-- No foreign keys: the audit trail outlives the users and workspaces it names,
-- so it keeps their emails as labels.
CREATE TABLE audit_events (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at     BIGINT NOT NULL,
    workspace_id   TEXT,
    actor_id       TEXT,
    actor_label    TEXT NOT NULL,
    subject_id     TEXT,
    subject_label  TEXT,
    kind           TEXT NOT NULL,
    ip             TEXT,
    detail         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_workspace_idx ON audit_events (workspace_id, id);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_id, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

-- One-time links for the first-run setup; all are deleted when setup completes.
CREATE TABLE setup_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Installation-wide secrets that every instance must share (the cookie signing key).
CREATE TABLE app_secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
