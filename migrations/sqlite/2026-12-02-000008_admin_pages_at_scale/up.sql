-- The admin pages at 100,000 members. Keep this file and its twin in step.
--
-- Which second factors each member has, kept on the users row by triggers in the same
-- transaction as the credential itself: the members list, its "not enrolled" filter and
-- the counts below read these two columns instead of probing two tables for every
-- member. Sign-in and enforcement still ask the credential tables
-- themselves (`has_second_factor`); a test holds the two in agreement.
ALTER TABLE users ADD COLUMN authenticator_on BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN security_key_count BIGINT NOT NULL DEFAULT 0;
UPDATE users SET
    authenticator_on = EXISTS (SELECT 1 FROM totp_credentials t WHERE t.user_id = users.id),
    security_key_count = (SELECT count(*) FROM security_keys k WHERE k.user_id = users.id);

CREATE TRIGGER totp_credentials_added AFTER INSERT ON totp_credentials
BEGIN
    UPDATE users SET authenticator_on = TRUE WHERE id = NEW.user_id;
END;
CREATE TRIGGER totp_credentials_removed AFTER DELETE ON totp_credentials
BEGIN
    UPDATE users SET authenticator_on = FALSE WHERE id = OLD.user_id;
END;
CREATE TRIGGER security_keys_added AFTER INSERT ON security_keys
BEGIN
    UPDATE users SET security_key_count = security_key_count + 1 WHERE id = NEW.user_id;
END;
CREATE TRIGGER security_keys_removed AFTER DELETE ON security_keys
BEGIN
    UPDATE users SET security_key_count = security_key_count - 1 WHERE id = OLD.user_id;
END;

-- How many members each workspace has, all and active, with and without 2FA or a key:
-- exact, kept by triggers on users in the same transaction as the change they count, so
-- the members page and the workspace page read one row instead of counting 100,000.
CREATE TABLE member_counts (
    workspace_id         TEXT PRIMARY KEY NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    members              BIGINT NOT NULL DEFAULT 0,
    not_enrolled         BIGINT NOT NULL DEFAULT 0,
    active               BIGINT NOT NULL DEFAULT 0,
    active_not_enrolled  BIGINT NOT NULL DEFAULT 0,
    active_without_key   BIGINT NOT NULL DEFAULT 0
);
INSERT INTO member_counts
        (workspace_id, members, not_enrolled, active, active_not_enrolled, active_without_key)
    SELECT workspace_id, count(*),
        sum(CASE WHEN NOT authenticator_on AND security_key_count = 0 THEN 1 ELSE 0 END),
        sum(CASE WHEN deactivated_at IS NULL THEN 1 ELSE 0 END),
        sum(CASE WHEN deactivated_at IS NULL AND NOT authenticator_on AND security_key_count = 0 THEN 1 ELSE 0 END),
        sum(CASE WHEN deactivated_at IS NULL AND security_key_count = 0 THEN 1 ELSE 0 END)
    FROM users GROUP BY workspace_id;

CREATE TRIGGER users_counted_in AFTER INSERT ON users
BEGIN
    INSERT INTO member_counts
        (workspace_id, members, not_enrolled, active, active_not_enrolled, active_without_key)
    VALUES (NEW.workspace_id, 1,
        CASE WHEN NOT NEW.authenticator_on AND NEW.security_key_count = 0 THEN 1 ELSE 0 END,
        CASE WHEN NEW.deactivated_at IS NULL THEN 1 ELSE 0 END,
        CASE WHEN NEW.deactivated_at IS NULL AND NOT NEW.authenticator_on AND NEW.security_key_count = 0 THEN 1 ELSE 0 END,
        CASE WHEN NEW.deactivated_at IS NULL AND NEW.security_key_count = 0 THEN 1 ELSE 0 END)
    ON CONFLICT (workspace_id) DO UPDATE SET
        members = member_counts.members + 1,
        not_enrolled = member_counts.not_enrolled + excluded.not_enrolled,
        active = member_counts.active + excluded.active,
        active_not_enrolled = member_counts.active_not_enrolled + excluded.active_not_enrolled,
        active_without_key = member_counts.active_without_key + excluded.active_without_key;
END;
CREATE TRIGGER users_counted_out AFTER DELETE ON users
BEGIN
    UPDATE member_counts SET
        members = members - 1,
        not_enrolled = not_enrolled - CASE WHEN NOT OLD.authenticator_on AND OLD.security_key_count = 0 THEN 1 ELSE 0 END,
        active = active - CASE WHEN OLD.deactivated_at IS NULL THEN 1 ELSE 0 END,
        active_not_enrolled = active_not_enrolled - CASE WHEN OLD.deactivated_at IS NULL AND NOT OLD.authenticator_on AND OLD.security_key_count = 0 THEN 1 ELSE 0 END,
        active_without_key = active_without_key - CASE WHEN OLD.deactivated_at IS NULL AND OLD.security_key_count = 0 THEN 1 ELSE 0 END
    WHERE workspace_id = OLD.workspace_id;
END;
CREATE TRIGGER users_counted_again AFTER UPDATE OF workspace_id, deactivated_at, authenticator_on, security_key_count ON users
    WHEN OLD.workspace_id IS NOT NEW.workspace_id OR OLD.deactivated_at IS NOT NEW.deactivated_at OR OLD.authenticator_on IS NOT NEW.authenticator_on OR OLD.security_key_count IS NOT NEW.security_key_count
BEGIN
    UPDATE member_counts SET
        members = members - 1,
        not_enrolled = not_enrolled - CASE WHEN NOT OLD.authenticator_on AND OLD.security_key_count = 0 THEN 1 ELSE 0 END,
        active = active - CASE WHEN OLD.deactivated_at IS NULL THEN 1 ELSE 0 END,
        active_not_enrolled = active_not_enrolled - CASE WHEN OLD.deactivated_at IS NULL AND NOT OLD.authenticator_on AND OLD.security_key_count = 0 THEN 1 ELSE 0 END,
        active_without_key = active_without_key - CASE WHEN OLD.deactivated_at IS NULL AND OLD.security_key_count = 0 THEN 1 ELSE 0 END
    WHERE workspace_id = OLD.workspace_id;
    INSERT INTO member_counts
        (workspace_id, members, not_enrolled, active, active_not_enrolled, active_without_key)
    VALUES (NEW.workspace_id, 1,
        CASE WHEN NOT NEW.authenticator_on AND NEW.security_key_count = 0 THEN 1 ELSE 0 END,
        CASE WHEN NEW.deactivated_at IS NULL THEN 1 ELSE 0 END,
        CASE WHEN NEW.deactivated_at IS NULL AND NOT NEW.authenticator_on AND NEW.security_key_count = 0 THEN 1 ELSE 0 END,
        CASE WHEN NEW.deactivated_at IS NULL AND NEW.security_key_count = 0 THEN 1 ELSE 0 END)
    ON CONFLICT (workspace_id) DO UPDATE SET
        members = member_counts.members + 1,
        not_enrolled = member_counts.not_enrolled + excluded.not_enrolled,
        active = member_counts.active + excluded.active,
        active_not_enrolled = member_counts.active_not_enrolled + excluded.active_not_enrolled,
        active_without_key = member_counts.active_without_key + excluded.active_without_key;
END;

-- users_workspace_idx is a prefix of users_workspace_email_idx: it goes.
DROP INDEX users_workspace_idx;

-- The workspace page's live exemptions (until > now) start from the few exemptions, not
-- from every member of the workspace.
CREATE INDEX exemptions_until_idx ON exemptions (until);

-- The audit log's member filter (subject or actor, newest first) from an index each.
CREATE INDEX audit_events_subject_label_idx ON audit_events (workspace_id, subject_label, id);
CREATE INDEX audit_events_actor_label_idx ON audit_events (workspace_id, actor_label, id);
