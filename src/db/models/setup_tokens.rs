//! `setup_tokens`: the one-time tokens of the first-run setup page.

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::setup_tokens;

pub struct SetupTokens;

impl SetupTokens {
    pub fn insert(conn: &mut AnyConnection, token_hash: &str, now: i64) -> QueryResult<()> {
        diesel::insert_into(setup_tokens::table)
            .values((
                setup_tokens::token_hash.eq(token_hash),
                setup_tokens::created_at.eq(now),
            ))
            .execute(conn)
            .map(|_| ())
    }

    pub fn exists(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(setup_tokens::table.find(token_hash))).get_result(conn)
    }

    /// Consumes the token and every other one: exactly one of two racing setups wins.
    pub fn consume_all(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<bool> {
        let mine = diesel::delete(setup_tokens::table.find(token_hash)).execute(conn)?;
        diesel::delete(setup_tokens::table).execute(conn)?;
        Ok(mine == 1)
    }
}
