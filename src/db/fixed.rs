//! Statements of the sign-in path whose SQL is fixed at compile time, so that both backends
//! keep them prepared.
//!
//! diesel never caches the prepared form of an `UPDATE`, of an upsert or of `sql_query` (a
//! changeset may be empty, a raw query may differ per call): SQLite parses each of them again
//! at every execution and PostgreSQL takes an extra round trip to prepare it unnamed. The
//! profile of a sign-in showed a dozen such statements per flow, and the parsing at a tenth
//! of the flow's instructions on SQLite. A statement declared here is one Rust type with
//! constant SQL, so diesel caches it by that type on each connection and, on a cache hit,
//! only collects its binds.
//!
//! Each statement is written once for both backends: the binds are placed by the backend's
//! own query builder (`?` on SQLite, `$n` on PostgreSQL), so the SQL must stay within what
//! both accept. Run them on the backend's own connection (`db::native!`).

use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::Sqlite;

/// Declares a statement: its fields (the values it binds) and its SQL, written as string
/// pieces with `{field: SqlType}` where a value is bound. `returns Type;` makes it a query
/// that yields rows of that SQL type (with `RETURNING`).
macro_rules! fixed_statement {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<'a> { $($field:ident : $ty:ty),* $(,)? }
        $(returns $row:ty;)?
        $( $sql:literal $({ $bind:ident : $st:ty })? )*
    ) => {
        $(#[$meta])*
        $vis struct $name<'a> {
            $(pub $field: $ty,)*
        }

        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        fixed_statement!(@fragment $name, Sqlite, $( $sql $({ $bind : $st })? )*);
        fixed_statement!(@fragment $name, Pg, $( $sql $({ $bind : $st })? )*);

        $(
            impl diesel::query_builder::Query for $name<'_> {
                type SqlType = $row;
            }
        )?

        impl<Conn> diesel::RunQueryDsl<Conn> for $name<'_> {}
    };
    (@fragment $name:ident, $db:ty, $( $sql:literal $({ $bind:ident : $st:ty })? )*) => {
        impl diesel::query_builder::QueryFragment<$db> for $name<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> diesel::QueryResult<()> {
                $(
                    out.push_sql($sql);
                    $( out.push_bind_param::<$st, _>(&self.$bind)?; )?
                )*
                Ok(())
            }
        }
    };
}

fixed_statement! {
    /// Creates a rate-limit bucket if it is new and returns its log of hits. On PostgreSQL
    /// the upsert locks the row until the transaction ends, like `SELECT … FOR UPDATE`, so
    /// the read and the write that follows cannot interleave with another request's.
    pub struct OpenBucket<'a> { key: &'a str }
    returns Text;
    "INSERT INTO rate_limits (key, hits, until_ms) VALUES (" {key: Text}
    ", '', 0) ON CONFLICT (key) DO UPDATE SET until_ms = rate_limits.until_ms RETURNING hits"
}

fixed_statement! {
    /// Stores a bucket's new log of hits.
    pub struct SetBucket<'a> { key: &'a str, hits: &'a str, until_ms: i64 }
    "UPDATE rate_limits SET hits = " {hits: Text}
    ", until_ms = " {until_ms: BigInt}
    " WHERE key = " {key: Text}
}

fixed_statement! {
    /// Sets a user's count of consecutive second-factor failures and the lock it implies.
    pub struct SetSecondFactorFailures<'a> {
        user_id: &'a str,
        failures: i64,
        locked_until: Option<i64>,
    }
    "UPDATE users SET second_factor_failures = " {failures: BigInt}
    ", second_factor_locked_until = " {locked_until: Nullable<BigInt>}
    " WHERE id = " {user_id: Text}
}

fixed_statement! {
    /// The replay rule's check-and-set: records `step` only if it is newer than every step
    /// accepted before (rows affected: 1, or 0 for a replay).
    pub struct AcceptStep<'a> { user_id: &'a str, step: i64 }
    "UPDATE totp_credentials SET last_step = " {step: BigInt}
    " WHERE user_id = " {user_id: Text}
    " AND last_step < " {step: BigInt}
}

fixed_statement! {
    pub struct RecordSignIn<'a> { user_id: &'a str, now: i64 }
    "UPDATE users SET last_sign_in_at = " {now: BigInt}
    " WHERE id = " {user_id: Text}
}

fixed_statement! {
    /// Writes a session's state back (touching nothing if the row was deleted meanwhile).
    pub struct UpdateSession<'a> {
        id: &'a str,
        user_id: Option<&'a str>,
        state: &'a str,
        now: i64,
    }
    "UPDATE sessions SET user_id = " {user_id: Nullable<Text>}
    ", state = " {state: Text}
    ", last_seen_at = " {now: BigInt}
    " WHERE id = " {id: Text}
}

fixed_statement! {
    /// Moves a session to a new id with its new state (a step up), in one statement: the
    /// old id stops working in the same moment. Its age restarts with the new id.
    pub struct RenewSession<'a> {
        id: &'a str,
        new_id: &'a str,
        user_id: Option<&'a str>,
        state: &'a str,
        now: i64,
    }
    "UPDATE sessions SET id = " {new_id: Text}
    ", user_id = " {user_id: Nullable<Text>}
    ", state = " {state: Text}
    ", created_at = " {now: BigInt}
    ", last_seen_at = " {now: BigInt}
    " WHERE id = " {id: Text}
}

fixed_statement! {
    pub struct TouchSession<'a> { id: &'a str, now: i64 }
    "UPDATE sessions SET last_seen_at = " {now: BigInt}
    " WHERE id = " {id: Text}
}
