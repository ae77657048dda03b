-- Searching members by part of an email or a name (`q=` on the members page, the
-- support search) without reading every member: trigram indexes, which the planner
-- uses for `LIKE '%text%'` when the text is rare. Keep this file and its twin in step
-- (SQLite has an FTS5 trigram table for the same). pg_trgm ships with PostgreSQL and is
-- a trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
CREATE INDEX users_name_trgm_idx ON users USING gin (lower(name) gin_trgm_ops);
