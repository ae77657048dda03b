-- Abuse limits whose state every instance must share. Keep this file and its twin in step.

-- Rate limits as sliding logs: one row per key (e.g. "login-ip:203.0.113.7") holding the
-- times (Unix ms, comma-separated) of the requests it allowed within the last window.
-- `until_ms` is when the newest of them leaves the window; the janitor then deletes the
-- row (an empty log and a missing row mean the same).
CREATE TABLE rate_limits (
    key       TEXT PRIMARY KEY NOT NULL,
    hits      TEXT NOT NULL,
    until_ms  BIGINT NOT NULL
);
CREATE INDEX rate_limits_until_idx ON rate_limits (until_ms);

-- Consecutive failed second-factor attempts (TOTP and recovery codes together), reset by
-- a success or a 2FA reset; while second_factor_locked_until is in the future, even a
-- right code is refused.
ALTER TABLE users ADD COLUMN second_factor_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN second_factor_locked_until BIGINT;
