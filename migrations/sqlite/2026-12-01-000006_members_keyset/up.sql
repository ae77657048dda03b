-- The members list walks a workspace's members by email: the CSV export in keyset pages
-- (WHERE workspace_id = ? AND email > ? ORDER BY email LIMIT 1000), the members page by
-- OFFSET. Without this index SQLite walks the global email index and filters on the
-- workspace, so a page of a small workspace beside a large one reads the whole table, and
-- PostgreSQL may sort the whole workspace for every page. Keep this file and its twin in step.
CREATE INDEX users_workspace_email_idx ON users (workspace_id, email);
