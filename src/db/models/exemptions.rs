//! `exemptions`: members let off "Require 2FA" until a date, with who granted it and why.

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::{exemptions, users};

/// An exemption from "Require 2FA", as listed for the workspace's admins.
#[derive(Debug, Clone)]
pub struct ExemptionRow {
    pub user_id: String,
    pub email: String,
    pub until: i64,
    pub reason: String,
    pub granted_by: String,
    pub created_at: i64,
}

pub struct Exemptions;

impl Exemptions {
    /// The exemptions in `workspace_id` that have not lapsed at `now`, soonest to end first.
    /// Read from the live exemptions (`exemptions_until_idx`), each member looked up by id:
    /// joined the other way, SQLite would read every member of the workspace whenever the
    /// exemptions table is empty (it then has no statistics to plan with).
    pub fn active_in(
        conn: &mut AnyConnection,
        workspace_id: &str,
        now: i64,
    ) -> QueryResult<Vec<ExemptionRow>> {
        let member = || users::table.filter(users::id.eq(exemptions::user_id));
        let rows: Vec<(String, Option<String>, i64, String, String, i64)> = exemptions::table
            .filter(exemptions::until.gt(now))
            .filter(diesel::dsl::exists(
                member().filter(users::workspace_id.eq(workspace_id)),
            ))
            .select((
                exemptions::user_id,
                member().select(users::email).single_value(),
                exemptions::until,
                exemptions::reason,
                exemptions::granted_by,
                exemptions::created_at,
            ))
            .load(conn)?;
        let mut rows: Vec<ExemptionRow> = rows
            .into_iter()
            .map(
                |(user_id, email, until, reason, granted_by, created_at)| ExemptionRow {
                    user_id,
                    email: email.unwrap_or_default(),
                    until,
                    reason,
                    granted_by,
                    created_at,
                },
            )
            .collect();
        rows.sort_by(|a, b| (a.until, &a.email).cmp(&(b.until, &b.email)));
        Ok(rows)
    }

    /// Exempts `user_id` until `until`, replacing any earlier exemption of theirs.
    pub fn grant(
        conn: &mut AnyConnection,
        user_id: &str,
        until: i64,
        reason: &str,
        granted_by: &str,
        now: i64,
    ) -> QueryResult<()> {
        diesel::delete(exemptions::table.find(user_id)).execute(conn)?;
        diesel::insert_into(exemptions::table)
            .values((
                exemptions::user_id.eq(user_id),
                exemptions::until.eq(until),
                exemptions::reason.eq(reason),
                exemptions::granted_by.eq(granted_by),
                exemptions::created_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// Ends `user_id`'s exemption early; whether there was one still running at `now` (a
    /// lapsed one has ended by itself, and its row is simply replaced by the next grant).
    pub fn end(conn: &mut AnyConnection, user_id: &str, now: i64) -> QueryResult<bool> {
        diesel::delete(
            exemptions::table
                .filter(exemptions::user_id.eq(user_id))
                .filter(exemptions::until.gt(now)),
        )
        .execute(conn)
        .map(|n| n > 0)
    }
}
