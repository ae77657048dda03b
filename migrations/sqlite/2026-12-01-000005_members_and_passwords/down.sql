DROP TABLE password_resets;
DROP TABLE invites;
ALTER TABLE users DROP COLUMN is_demo;
ALTER TABLE users DROP COLUMN deactivated_at;
