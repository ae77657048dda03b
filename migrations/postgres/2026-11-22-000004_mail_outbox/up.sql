-- The mail outbox: security emails are written here in the same transaction as the change
-- they report, and a background worker on every instance sends them. Keep this file and
-- its twin (sqlite/postgres) in step.
--
-- A row is pending while sent_at and failed_at are both NULL. An instance owns a row while
-- claimed_until is in the future; it claims one with a single
-- UPDATE … WHERE claimed_until IS NULL OR claimed_until < now, so two instances never send
-- the same mail at once. Times are Unix seconds.
CREATE TABLE mail_outbox (
    id               TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT,
    sent_at          BIGINT,
    failed_at        BIGINT,
    last_error       TEXT
);

-- What the worker asks every poll: pending rows that are due.
CREATE INDEX mail_outbox_pending_idx ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
