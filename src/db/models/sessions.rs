//! `sessions`: the rows behind session cookies (the id is a hash of the cookie's key; see
//! `session_store` for the rules they follow).

use diesel::prelude::*;

use crate::db::fixed::{RenewSession, TouchSession, UpdateSession};
use crate::db::schema::sessions;
use crate::db::{AnyConnection, native};

/// What the session store reads back of a row (with the account: `AccountRecord::load_with_session`).
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub state: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

pub struct Sessions;

impl Sessions {
    pub fn insert(
        conn: &mut AnyConnection,
        id: &str,
        user_id: Option<&str>,
        state: &str,
        now: i64,
    ) -> QueryResult<()> {
        let values = (
            sessions::id.eq(id),
            sessions::user_id.eq(user_id),
            sessions::state.eq(state),
            sessions::created_at.eq(now),
            sessions::last_seen_at.eq(now),
        );
        native!(conn, |c| diesel::insert_into(sessions::table)
            .values(&values)
            .execute(c))
        .map(|_| ())
    }

    pub fn delete(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
        native!(conn, |c| diesel::delete(sessions::table.find(id))
            .execute(c))
        .map(|_| ())
    }

    /// Marks the session as used at `now`.
    pub fn touch(conn: &mut AnyConnection, id: &str, now: i64) -> QueryResult<()> {
        native!(conn, |c| TouchSession { id, now }.execute(c)).map(|_| ())
    }

    /// Writes the session's state back, if the row is still there.
    pub fn update(
        conn: &mut AnyConnection,
        id: &str,
        user_id: Option<&str>,
        state: &str,
        now: i64,
    ) -> QueryResult<()> {
        let update = UpdateSession {
            id,
            user_id,
            state,
            now,
        };
        native!(conn, |c| update.execute(c)).map(|_| ())
    }

    /// Moves the row to `new_id` with its new state (see [`RenewSession`]); `false` if
    /// there was no row to move.
    pub fn renew(
        conn: &mut AnyConnection,
        id: &str,
        new_id: &str,
        user_id: Option<&str>,
        state: &str,
        now: i64,
    ) -> QueryResult<bool> {
        let renew = RenewSession {
            id,
            new_id,
            user_id,
            state,
            now,
        };
        native!(conn, |c| renew.execute(c)).map(|moved| moved > 0)
    }

    /// `(id, state, created_at, last_seen_at)` of `user_id`'s sessions seen after
    /// `seen_after`, most recently used first.
    pub fn of_user_seen_after(
        conn: &mut AnyConnection,
        user_id: &str,
        seen_after: i64,
    ) -> QueryResult<Vec<(String, String, i64, i64)>> {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::last_seen_at.gt(seen_after))
            .order(sessions::last_seen_at.desc())
            .select((
                sessions::id,
                sessions::state,
                sessions::created_at,
                sessions::last_seen_at,
            ))
            .load(conn)
    }

    pub fn delete_all_of_user(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
    }

    /// Deletes one session of `user_id` (another user's id deletes nothing).
    pub fn delete_one_of_user(
        conn: &mut AnyConnection,
        user_id: &str,
        id: &str,
    ) -> QueryResult<bool> {
        diesel::delete(
            sessions::table
                .filter(sessions::id.eq(id))
                .filter(sessions::user_id.eq(user_id)),
        )
        .execute(conn)
        .map(|n| n > 0)
    }

    /// Deletes up to `limit` sessions last seen at or before `seen_by`, or created at or
    /// before `created_by`.
    pub fn delete_stale(
        conn: &mut AnyConnection,
        seen_by: i64,
        created_by: i64,
        limit: i64,
    ) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, sessions.id, |dead| dead
            .field(sessions::last_seen_at)
            .le(seen_by)
            .or(dead.field(sessions::created_at).le(created_by)))
    }
}
