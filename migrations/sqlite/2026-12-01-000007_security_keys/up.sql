-- Security keys and passkeys (WebAuthn). Keep this file and its twin (sqlite/postgres) in
-- step. Times are Unix seconds.

-- A registered key. `credential` is the library's credential (public key, counter, flags)
-- as JSON inside our versioned envelope; nothing in it is secret. `credential_id` is the
-- authenticator's id for it (base64url), unique across the installation: one key cannot
-- be registered to two accounts. `sign_count` mirrors the counter for the atomic
-- "only upwards" update that catches a cloned key.
CREATE TABLE security_keys (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    credential_id  TEXT NOT NULL UNIQUE,
    credential     TEXT NOT NULL,
    passwordless   BOOLEAN NOT NULL,
    sign_count     BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX security_keys_user_idx ON security_keys (user_id);

-- A WebAuthn challenge waiting for its answer: one per session and purpose, single-use
-- (taken with DELETE … RETURNING), five minutes. `session_binding` is a hash of the
-- session's CSRF token, so a challenge from another browser, from before the password
-- step or from before a sign-out is not found. The state never leaves the server.
CREATE TABLE webauthn_ceremonies (
    session_binding TEXT NOT NULL,
    purpose         TEXT NOT NULL CHECK (purpose IN
                      ('register_key', 'register_passkey', 'second_factor', 'passwordless')),
    user_id         TEXT REFERENCES users (id) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (session_binding, purpose)
);
CREATE INDEX webauthn_ceremonies_expires_idx ON webauthn_ceremonies (expires_at);
-- Only the challenges of known users (resets remove them): the sign-in page's passkey
-- challenges, one per view, have none and are not indexed here.
CREATE INDEX webauthn_ceremonies_user_idx ON webauthn_ceremonies (user_id)
    WHERE user_id IS NOT NULL;

-- "Members must use a security key or passkey": on since, and the deadline after which a
-- member without a key is held at adding one (the grace days are the workspace's).
ALTER TABLE workspaces ADD COLUMN require_keys_since BIGINT;
ALTER TABLE workspaces ADD COLUMN require_keys_deadline BIGINT;
