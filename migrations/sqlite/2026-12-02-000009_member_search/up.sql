-- Searching members by part of an email or a name (`q=` on the members page, the
-- support search) without reading every member: a trigram index, which finds the users
-- whose email or name contains a text of three characters or more. Keep this file and
-- its twin in step (PostgreSQL has pg_trgm for the same).
--
-- Its rows are the users' id, workspace, email and name, kept by the triggers below.
-- They are found again by id, never by rowid: VACUUM may renumber the users table's
-- rowids (it has no INTEGER PRIMARY KEY). A removed user's row is found by its email,
-- through the index, so that removing users never reads the whole table.
CREATE VIRTUAL TABLE users_search USING fts5(
    user_id UNINDEXED, workspace_id UNINDEXED, email, name, tokenize = 'trigram'
);
INSERT INTO users_search (user_id, workspace_id, email, name)
    SELECT id, workspace_id, email, name FROM users;

CREATE TRIGGER users_search_in AFTER INSERT ON users
BEGIN
    INSERT INTO users_search (user_id, workspace_id, email, name)
        VALUES (NEW.id, NEW.workspace_id, NEW.email, NEW.name);
END;
CREATE TRIGGER users_search_out AFTER DELETE ON users
BEGIN
    DELETE FROM users_search WHERE rowid IN (
        SELECT rowid FROM users_search
        WHERE users_search MATCH 'email : "' || replace(OLD.email, '"', '""') || '"'
          AND user_id = OLD.id);
END;
CREATE TRIGGER users_search_again AFTER UPDATE OF workspace_id, email, name ON users
    WHEN OLD.workspace_id IS NOT NEW.workspace_id OR OLD.email IS NOT NEW.email
        OR OLD.name IS NOT NEW.name
BEGIN
    DELETE FROM users_search WHERE rowid IN (
        SELECT rowid FROM users_search
        WHERE users_search MATCH 'email : "' || replace(OLD.email, '"', '""') || '"'
          AND user_id = OLD.id);
    INSERT INTO users_search (user_id, workspace_id, email, name)
        VALUES (NEW.id, NEW.workspace_id, NEW.email, NEW.name);
END;
