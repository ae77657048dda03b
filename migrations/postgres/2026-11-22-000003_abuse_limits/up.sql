-- Abuse limits whose state every instance must share. Keep this file and its twin in step.

-- Rate limits as GCRA buckets: `tat_ms` is the bucket's "theoretical arrival time" in Unix
-- milliseconds; a request is allowed when pushing it one interval further stays within
-- the window. One row per key (e.g. "login-ip:203.0.113.7"); rows whose tat has passed are
-- deleted by the janitor (an empty bucket and a missing row mean the same).
CREATE TABLE rate_limits (
    key     TEXT PRIMARY KEY NOT NULL,
    tat_ms  BIGINT NOT NULL
);
CREATE INDEX rate_limits_tat_idx ON rate_limits (tat_ms);

-- Consecutive failed second-factor attempts (TOTP and recovery codes together), reset by
-- a success or a 2FA reset; while second_factor_locked_until is in the future, even a
-- right code is refused.
ALTER TABLE users ADD COLUMN second_factor_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN second_factor_locked_until BIGINT;
