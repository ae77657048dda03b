//! `invites`: pending invitations to a workspace.
//!
//! Invariants:
//! - The link's token is never stored, only its SHA-256 (hex) in `token_hash`.
//! - A resend replaces the hash and the expiry in one `UPDATE`: the old link is dead the
//!   moment the new one exists.
//! - Accepting claims the row with one `DELETE … WHERE token_hash = ? AND expires_at > ?
//!   RETURNING …`, in the transaction that creates the account: of two racing posts only
//!   one gets the row back. Revoking deletes it too; the audit log keeps the story.
//! - Every lookup by id also filters by the workspace, so an admin only ever reaches their
//!   own workspace's invitations.

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::{invites, workspaces};
use crate::domain::{Email, Role, UserId, WorkspaceId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invites)]
pub struct Invite {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub email: String,
    pub role: Role,
    /// The admin (or staff) who sent it, while their account exists.
    pub invited_by: Option<UserId>,
    /// Who sent it, as they were called then (kept when their account goes).
    pub invited_by_label: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A new invitation; `token_hash` is the SHA-256 (hex) of the mailed token.
pub struct NewInvite<'a> {
    pub workspace_id: &'a str,
    pub email: &'a Email,
    pub role: Role,
    pub invited_by: &'a UserId,
    pub invited_by_label: &'a str,
    pub token_hash: &'a str,
    pub expires_at: i64,
}

/// [`Invite`]'s columns in its order, for `RETURNING` (which `as_returning` cannot give
/// over the two-backend connection).
const COLUMNS: (
    invites::id,
    invites::workspace_id,
    invites::email,
    invites::role,
    invites::invited_by,
    invites::invited_by_label,
    invites::created_at,
    invites::expires_at,
) = (
    invites::id,
    invites::workspace_id,
    invites::email,
    invites::role,
    invites::invited_by,
    invites::invited_by_label,
    invites::created_at,
    invites::expires_at,
);

pub struct Invites;

impl Invites {
    /// Stores an invitation; a second one for the same email in the same workspace is a
    /// unique violation (see `is_unique_violation`).
    pub fn insert(conn: &mut AnyConnection, new: &NewInvite<'_>, now: i64) -> QueryResult<Invite> {
        let id = super::new_row_id()?;
        diesel::insert_into(invites::table)
            .values((
                invites::id.eq(&id),
                invites::workspace_id.eq(new.workspace_id),
                invites::email.eq(new.email.as_str()),
                invites::role.eq(new.role),
                invites::token_hash.eq(new.token_hash),
                invites::invited_by.eq(Some(new.invited_by)),
                invites::invited_by_label.eq(new.invited_by_label),
                invites::created_at.eq(now),
                invites::expires_at.eq(new.expires_at),
            ))
            .returning(COLUMNS)
            .get_result(conn)
    }

    /// `workspace_id`'s invitations (expired ones too, so they can be resent), by email.
    pub fn of_workspace(conn: &mut AnyConnection, workspace_id: &str) -> QueryResult<Vec<Invite>> {
        invites::table
            .filter(invites::workspace_id.eq(workspace_id))
            .order(invites::email.asc())
            .select(Invite::as_select())
            .load(conn)
    }

    /// The invitation of `email` in `workspace_id`, if any.
    pub fn find_by_email(
        conn: &mut AnyConnection,
        workspace_id: &str,
        email: &Email,
    ) -> QueryResult<Option<Invite>> {
        invites::table
            .filter(invites::workspace_id.eq(workspace_id))
            .filter(invites::email.eq(email.as_str()))
            .select(Invite::as_select())
            .get_result(conn)
            .optional()
    }

    /// Gives invitation `id` of `workspace_id` a new token and expiry, in one statement;
    /// `None` when there is no such invitation in that workspace.
    pub fn renew(
        conn: &mut AnyConnection,
        workspace_id: &str,
        id: &str,
        token_hash: &str,
        expires_at: i64,
    ) -> QueryResult<Option<Invite>> {
        diesel::update(
            invites::table
                .filter(invites::id.eq(id))
                .filter(invites::workspace_id.eq(workspace_id)),
        )
        .set((
            invites::token_hash.eq(token_hash),
            invites::expires_at.eq(expires_at),
        ))
        .returning(COLUMNS)
        .get_result(conn)
        .optional()
    }

    /// Deletes invitation `id` of `workspace_id`; `None` when there is no such invitation.
    pub fn revoke(
        conn: &mut AnyConnection,
        workspace_id: &str,
        id: &str,
    ) -> QueryResult<Option<Invite>> {
        diesel::delete(
            invites::table
                .filter(invites::id.eq(id))
                .filter(invites::workspace_id.eq(workspace_id)),
        )
        .returning(COLUMNS)
        .get_result(conn)
        .optional()
    }

    /// The live invitation whose token hashes to `token_hash`, with its workspace's name
    /// (for the page that accepts it).
    pub fn find_live(
        conn: &mut AnyConnection,
        token_hash: &str,
        now: i64,
    ) -> QueryResult<Option<(Invite, String)>> {
        invites::table
            .inner_join(workspaces::table)
            .filter(invites::token_hash.eq(token_hash))
            .filter(invites::expires_at.gt(now))
            .select((Invite::as_select(), workspaces::name))
            .get_result(conn)
            .optional()
    }

    /// Takes the live invitation whose token hashes to `token_hash` (atomically: see the
    /// module's invariants); `None` if it is unknown, expired, or already taken.
    pub fn claim(
        conn: &mut AnyConnection,
        token_hash: &str,
        now: i64,
    ) -> QueryResult<Option<Invite>> {
        diesel::delete(
            invites::table
                .filter(invites::token_hash.eq(token_hash))
                .filter(invites::expires_at.gt(now)),
        )
        .returning(COLUMNS)
        .get_result(conn)
        .optional()
    }

    /// Deletes up to `limit` invitations that expired at or before `expired_by` (the
    /// sweeper's part).
    pub fn delete_expired(
        conn: &mut AnyConnection,
        expired_by: i64,
        limit: i64,
    ) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, invites.id, |dead| dead
            .field(invites::expires_at)
            .le(expired_by))
    }

    /// Deletes the pending invitations `user_id` sent in `workspace_id` (their sender was
    /// deactivated or is no longer an admin: the invitations go with their authority).
    pub fn revoke_sent_by(
        conn: &mut AnyConnection,
        workspace_id: &str,
        user_id: &str,
    ) -> QueryResult<Vec<Invite>> {
        diesel::delete(
            invites::table
                .filter(invites::workspace_id.eq(workspace_id))
                .filter(invites::invited_by.eq(user_id)),
        )
        .returning(COLUMNS)
        .get_results(conn)
    }
}
