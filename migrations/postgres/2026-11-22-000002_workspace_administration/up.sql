-- Workspace administration: "Require 2FA" with a fixed deadline, exemptions, and staff
-- actions marked in the audit trail. Keep this file and its postgres twin in step.

-- Enforcement is on while require_2fa_since is set. The deadline is one fixed instant
-- (since + grace), the same for every member; it moves only when an admin changes the
-- grace period, which is audited. grace_days keeps the admin's last choice for the form.
ALTER TABLE workspaces ADD COLUMN require_2fa_since BIGINT;
ALTER TABLE workspaces ADD COLUMN require_2fa_deadline BIGINT;
ALTER TABLE workspaces ADD COLUMN grace_days BIGINT NOT NULL DEFAULT 7;

-- When an admin, support or the CLI last reset the user's 2FA: a member reset while
-- their workspace requires 2FA gets no grace period, but is held at enrolment at once.
ALTER TABLE users ADD COLUMN two_factor_reset_at BIGINT;

-- At most one exemption per member; it lapses by itself at `until`.
CREATE TABLE exemptions (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    until       BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- user, staff, anonymous or cli: staff actions are shown as such in a workspace's log.
ALTER TABLE audit_events ADD COLUMN actor_kind TEXT NOT NULL DEFAULT 'user';
CREATE INDEX audit_events_workspace_kind_idx ON audit_events (workspace_id, kind, id);
