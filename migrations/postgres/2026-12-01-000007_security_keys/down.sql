ALTER TABLE workspaces DROP COLUMN require_keys_deadline;
ALTER TABLE workspaces DROP COLUMN require_keys_since;
DROP TABLE webauthn_ceremonies;
DROP TABLE security_keys;
