//! `password_resets`: the live password-reset link of a user, at most one (the user id is
//! the key). The token itself is never stored, only its SHA-256 (hex).
//!
//! A link works while its row exists, is unexpired, and its user is neither deactivated nor
//! a demo account; using it deletes the row in the statement that checks it
//! ([`PasswordResets::claim`]), so two racing uses cannot both win.

use diesel::prelude::*;

use super::User;
use crate::db::AnyConnection;
use crate::db::schema::{password_resets, users, workspaces};

pub struct PasswordResets;

impl PasswordResets {
    /// Makes `token_hash` the user's one live link, valid until `expires_at`: an older link
    /// of theirs stops working in the same transaction. Call in a write transaction, after
    /// [`User::lock`] (so two requests for one user cannot both insert).
    pub fn replace(
        conn: &mut AnyConnection,
        user_id: &str,
        token_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> QueryResult<()> {
        diesel::delete(password_resets::table.find(user_id)).execute(conn)?;
        diesel::insert_into(password_resets::table)
            .values((
                password_resets::user_id.eq(user_id),
                password_resets::token_hash.eq(token_hash),
                password_resets::created_at.eq(now),
                password_resets::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// The user a live link belongs to, with their workspace's name (the new password must
    /// not contain it), without using the link (the page that shows the form).
    pub fn find_live(
        conn: &mut AnyConnection,
        token_hash: &str,
        now: i64,
    ) -> QueryResult<Option<(User, String)>> {
        password_resets::table
            .inner_join(users::table.inner_join(workspaces::table))
            .filter(password_resets::token_hash.eq(token_hash))
            .filter(password_resets::expires_at.gt(now))
            .filter(users::deactivated_at.is_null())
            .filter(users::is_demo.eq(false))
            .select((User::as_select(), workspaces::name))
            .get_result(conn)
            .optional()
    }

    /// Uses `user_id`'s link: deletes it if it is live and has `token_hash`, and says
    /// whether it did; `false` if it is unknown, expired, used, superseded, or its user may
    /// not be reset. One statement, so of two racing uses exactly one gets `true`.
    pub fn claim(
        conn: &mut AnyConnection,
        user_id: &str,
        token_hash: &str,
        now: i64,
    ) -> QueryResult<bool> {
        diesel::delete(
            password_resets::table
                .filter(password_resets::user_id.eq(user_id))
                .filter(password_resets::token_hash.eq(token_hash))
                .filter(password_resets::expires_at.gt(now))
                .filter(
                    password_resets::user_id.eq_any(
                        users::table
                            .filter(users::deactivated_at.is_null())
                            .filter(users::is_demo.eq(false))
                            .select(users::id),
                    ),
                ),
        )
        .execute(conn)
        .map(|deleted| deleted == 1)
    }

    /// Kills the user's live link, if any (their password changed, or they were deactivated).
    pub fn delete_of_user(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        diesel::delete(password_resets::table.find(user_id))
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Deletes up to `limit` links that expired by `now` (the sweeper).
    pub fn delete_expired(conn: &mut AnyConnection, now: i64, limit: i64) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, password_resets.user_id, |dead| dead
            .field(password_resets::expires_at)
            .le(now))
    }
}
