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

-- Statement-level triggers with transition tables: an import's multi-row INSERT is one
-- UPDATE of users here, not one per row (per row, the import of 100,000 members took
-- about 8 s longer).
CREATE FUNCTION users_count_authenticator() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE users SET authenticator_on = TRUE FROM added WHERE users.id = added.user_id;
    ELSE
        UPDATE users SET authenticator_on = FALSE FROM removed WHERE users.id = removed.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER totp_credentials_added AFTER INSERT ON totp_credentials
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_authenticator();
CREATE TRIGGER totp_credentials_removed AFTER DELETE ON totp_credentials
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_authenticator();

CREATE FUNCTION users_count_security_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE users SET security_key_count = security_key_count + k.n
        FROM (SELECT user_id, count(*) AS n FROM added GROUP BY user_id) k
        WHERE users.id = k.user_id;
    ELSE
        UPDATE users SET security_key_count = security_key_count - k.n
        FROM (SELECT user_id, count(*) AS n FROM removed GROUP BY user_id) k
        WHERE users.id = k.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER security_keys_added AFTER INSERT ON security_keys
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_security_keys();
CREATE TRIGGER security_keys_removed AFTER DELETE ON security_keys
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION users_count_security_keys();

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

-- Statement-level, with transition tables, for the same reason: one upsert per
-- statement and workspace. An UPDATE trigger with transition tables cannot name columns,
-- so this one runs after every UPDATE of users and counts only the rows whose counted
-- columns changed (none, for a sign-in's).
CREATE FUNCTION member_counts_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO member_counts
            (workspace_id, members, not_enrolled, active, active_not_enrolled, active_without_key)
        SELECT workspace_id, sum(sign),
            COALESCE(sum(sign) FILTER (WHERE NOT authenticator_on AND security_key_count = 0), 0),
            COALESCE(sum(sign) FILTER (WHERE deactivated_at IS NULL), 0),
            COALESCE(sum(sign) FILTER (WHERE deactivated_at IS NULL AND NOT authenticator_on
                AND security_key_count = 0), 0),
            COALESCE(sum(sign) FILTER (WHERE deactivated_at IS NULL AND security_key_count = 0), 0)
        FROM (
            SELECT added.workspace_id, added.authenticator_on, added.security_key_count, added.deactivated_at, 1 AS sign
            FROM added
        ) AS delta
        GROUP BY workspace_id
        -- Rows locked in one order: two statements across the same workspaces cannot deadlock.
        ORDER BY workspace_id
        ON CONFLICT (workspace_id) DO UPDATE SET
            members = member_counts.members + excluded.members,
            not_enrolled = member_counts.not_enrolled + excluded.not_enrolled,
            active = member_counts.active + excluded.active,
            active_not_enrolled = member_counts.active_not_enrolled + excluded.active_not_enrolled,
            active_without_key = member_counts.active_without_key + excluded.active_without_key;
    ELSIF TG_OP = 'DELETE' THEN
        -- An update only: a workspace being deleted loses its row, and gets no new one.
        UPDATE member_counts SET
            members = member_counts.members - d.members,
            not_enrolled = member_counts.not_enrolled - d.not_enrolled,
            active = member_counts.active - d.active,
            active_not_enrolled = member_counts.active_not_enrolled - d.active_not_enrolled,
            active_without_key = member_counts.active_without_key - d.active_without_key
        FROM (
            SELECT workspace_id, count(*) AS members,
                count(*) FILTER (WHERE NOT authenticator_on AND security_key_count = 0)
                    AS not_enrolled,
                count(*) FILTER (WHERE deactivated_at IS NULL) AS active,
                count(*) FILTER (WHERE deactivated_at IS NULL AND NOT authenticator_on
                    AND security_key_count = 0) AS active_not_enrolled,
                count(*) FILTER (WHERE deactivated_at IS NULL AND security_key_count = 0)
                    AS active_without_key
            FROM removed GROUP BY workspace_id
        ) AS d
        WHERE member_counts.workspace_id = d.workspace_id;
    ELSE
        INSERT INTO member_counts
            (workspace_id, members, not_enrolled, active, active_not_enrolled, active_without_key)
        SELECT workspace_id, sum(sign),
            COALESCE(sum(sign) FILTER (WHERE NOT authenticator_on AND security_key_count = 0), 0),
            COALESCE(sum(sign) FILTER (WHERE deactivated_at IS NULL), 0),
            COALESCE(sum(sign) FILTER (WHERE deactivated_at IS NULL AND NOT authenticator_on
                AND security_key_count = 0), 0),
            COALESCE(sum(sign) FILTER (WHERE deactivated_at IS NULL AND security_key_count = 0), 0)
        FROM (
            SELECT o.workspace_id, o.authenticator_on, o.security_key_count, o.deactivated_at, -1 AS sign
            FROM before o JOIN after n USING (id)
            WHERE (o.workspace_id, o.deactivated_at, o.authenticator_on, o.security_key_count)
                IS DISTINCT FROM (n.workspace_id, n.deactivated_at, n.authenticator_on, n.security_key_count)
            UNION ALL
            SELECT n.workspace_id, n.authenticator_on, n.security_key_count, n.deactivated_at, 1 AS sign
            FROM before o JOIN after n USING (id)
            WHERE (o.workspace_id, o.deactivated_at, o.authenticator_on, o.security_key_count)
                IS DISTINCT FROM (n.workspace_id, n.deactivated_at, n.authenticator_on, n.security_key_count)
        ) AS delta
        GROUP BY workspace_id
        -- Rows locked in one order: two statements across the same workspaces cannot deadlock.
        ORDER BY workspace_id
        ON CONFLICT (workspace_id) DO UPDATE SET
            members = member_counts.members + excluded.members,
            not_enrolled = member_counts.not_enrolled + excluded.not_enrolled,
            active = member_counts.active + excluded.active,
            active_not_enrolled = member_counts.active_not_enrolled + excluded.active_not_enrolled,
            active_without_key = member_counts.active_without_key + excluded.active_without_key;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_counted_in AFTER INSERT ON users
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION member_counts_kept();
CREATE TRIGGER users_counted_out AFTER DELETE ON users
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION member_counts_kept();
CREATE TRIGGER users_counted_again AFTER UPDATE ON users
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION member_counts_kept();

-- users_workspace_idx is a prefix of users_workspace_email_idx: it goes.
DROP INDEX users_workspace_idx;

-- The workspace page's live exemptions (until > now) start from the few exemptions, not
-- from every member of the workspace.
CREATE INDEX exemptions_until_idx ON exemptions (until);

-- The audit log's member filter (subject or actor, newest first) from an index each.
CREATE INDEX audit_events_subject_label_idx ON audit_events (workspace_id, subject_label, id);
CREATE INDEX audit_events_actor_label_idx ON audit_events (workspace_id, actor_label, id);
