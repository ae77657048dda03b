//! `recovery_codes`: single-use codes that stand in for the authenticator.

use diesel::prelude::*;

use crate::db::schema::recovery_codes;
use crate::db::{AnyConnection, native};

pub struct RecoveryCodes;

impl RecoveryCodes {
    /// `(id, bcrypt hash)` of the user's unused codes.
    pub fn unused(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<(String, String)>> {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .order(recovery_codes::id)
            .select((recovery_codes::id, recovery_codes::code_hash))
            .load(conn)
    }

    pub fn count_unused(conn: &mut AnyConnection, user_id: &str) -> QueryResult<i64> {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .count()
            .get_result(conn)
    }

    /// Single use, atomically: of two requests spending one code, one gets `true`.
    pub fn spend(conn: &mut AnyConnection, code_id: &str, now: i64) -> QueryResult<bool> {
        let updated = diesel::update(
            recovery_codes::table
                .filter(recovery_codes::id.eq(code_id))
                .filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(now))
        .execute(conn)?;
        Ok(updated == 1)
    }

    /// Revokes every code the user has (their last second factor went).
    pub fn remove_all_for(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)
    }

    /// Revokes every code the user has and stores `hashes` as the new set. Call in a write
    /// transaction, after [`User::lock`]: on PostgreSQL two overlapping replacements would
    /// otherwise each delete only the rows they can see and leave both new sets.
    pub fn replace_all(
        conn: &mut AnyConnection,
        user_id: &str,
        hashes: &[String],
        now: i64,
    ) -> QueryResult<()> {
        RecoveryCodes::remove_all_for(conn, user_id)?;
        RecoveryCodes::insert_many(conn, &[(user_id, hashes)], now)
    }

    /// Adds each user's code hashes (for users who have none yet), in one statement per
    /// 500 codes.
    pub fn insert_many(
        conn: &mut AnyConnection,
        sets: &[(&str, &[String])],
        now: i64,
    ) -> QueryResult<()> {
        let codes: Vec<(String, &str, &String)> = sets
            .iter()
            .flat_map(|(user_id, hashes)| hashes.iter().map(move |hash| (*user_id, hash)))
            .map(|(user_id, hash)| Ok((super::new_row_id()?, user_id, hash)))
            .collect::<QueryResult<_>>()?;
        for chunk in codes.chunks(super::ROWS_PER_INSERT) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|(id, user_id, hash)| {
                    (
                        recovery_codes::id.eq(id),
                        recovery_codes::user_id.eq(*user_id),
                        recovery_codes::code_hash.eq(*hash),
                        recovery_codes::created_at.eq(now),
                    )
                })
                .collect();
            native!(conn, |c| diesel::insert_into(recovery_codes::table)
                .values(&rows)
                .execute(c))?;
        }
        Ok(())
    }
}
