DROP INDEX users_workspace_email_idx;
