DROP INDEX audit_events_workspace_kind_idx;
ALTER TABLE audit_events DROP COLUMN actor_kind;
DROP TABLE exemptions;
ALTER TABLE users DROP COLUMN two_factor_reset_at;
ALTER TABLE workspaces DROP COLUMN grace_days;
ALTER TABLE workspaces DROP COLUMN require_2fa_deadline;
ALTER TABLE workspaces DROP COLUMN require_2fa_since;
