//! Statements of the sign-in path whose SQL is fixed, so that both backends keep them
//! prepared.
//!
//! diesel never caches the prepared form of an `UPDATE`, of an upsert or of `sql_query` (a
//! changeset may be empty, a raw query may differ per call): SQLite parses each of them again
//! at every execution and PostgreSQL takes an extra round trip to prepare it unnamed. A
//! statement declared here is one Rust type whose SQL never changes, so diesel caches it by
//! that type on each connection and, on a cache hit, only collects its binds.
//!
//! The SQL is tied to `schema.rs`: the table is named once in the declaration, every column
//! (`[column]`) and every bound value (`{field: column}`) names a column of that table (a
//! path into its `schema.rs` module), and the SQL is written from the schema's names; a
//! value is bound with its column's SQL type. A renamed or dropped column, or a field whose
//! Rust type does not fit its column's SQL type (nullability included), fails the build.
//! Only keywords, operators and literal values are string pieces.
//!
//! Each statement is written once for both backends: identifiers are quoted and binds are
//! placed by the backend's own query builder (`?` on SQLite, `$n` on PostgreSQL), so the SQL
//! must stay within what both accept. Run them on the backend's own connection
//! (`db::native!`), from the model of their table.

use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::sqlite::Sqlite;

/// What every statement declared here is: a struct of the values it binds, with a static
/// query id (so diesel caches its prepared form on each connection), its SQL type when it is
/// a query, and `RunQueryDsl`. Its SQL comes from the macro that uses this one.
macro_rules! statement_type {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $($field:ident : $ty:ty),* }
        $(returns $returns:ty)?
    ) => {
        $(#[$meta])*
        $vis struct $name<'a> {
            $(pub $field: $ty,)*
        }

        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        $(
            impl diesel::query_builder::Query for $name<'_> {
                type SqlType = $returns;
            }
        )?

        impl<Conn> diesel::RunQueryDsl<Conn> for $name<'_> {}
    };
}

/// Declares a statement on one table of `schema.rs`: its fields (the values it binds) and its
/// SQL as a sequence of pieces: `"sql"` (keywords and operators), `table` (the table's name),
/// `[column]` (a column's name) and `{field: column}` (the field, bound as that column's SQL
/// type). `returns column;` makes it a query yielding that column (with `RETURNING`).
macro_rules! fixed_statement {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<'a> on $table:ident $(returning $row:ident)?
            { $($field:ident : $ty:ty),* $(,)? }
        $($piece:tt)*
    ) => {
        statement_type! {
            $(#[$meta])*
            $vis struct $name { $($field: $ty),* }
            $(returns <$crate::db::schema::$table::$row as diesel::Expression>::SqlType)?
        }
        fixed_statement!(@fragment $name, Sqlite, $table, $($piece)*);
        fixed_statement!(@fragment $name, Pg, $table, $($piece)*);
    };
    (@fragment $name:ident, $db:ty, $table:ident, $($piece:tt)*) => {
        impl diesel::query_builder::QueryFragment<$db> for $name<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $db>,
            ) -> diesel::QueryResult<()> {
                let this = self;
                fixed_statement!(@walk out, this, $db, $table, $($piece)*);
                Ok(())
            }
        }
    };
    (@walk $out:ident, $this:ident, $db:ty, $table:ident,) => {};
    (@walk $out:ident, $this:ident, $db:ty, $table:ident, table $($rest:tt)*) => {
        diesel::query_builder::QueryFragment::<$db>::walk_ast(
            &$crate::db::schema::$table::table,
            $out.reborrow(),
        )?;
        fixed_statement!(@walk $out, $this, $db, $table, $($rest)*);
    };
    (@walk $out:ident, $this:ident, $db:ty, $table:ident, [$column:ident] $($rest:tt)*) => {
        $out.push_identifier(
            <$crate::db::schema::$table::$column as diesel::Column>::NAME,
        )?;
        fixed_statement!(@walk $out, $this, $db, $table, $($rest)*);
    };
    (@walk $out:ident, $this:ident, $db:ty, $table:ident, {$field:ident : $column:ident} $($rest:tt)*) => {
        $out.push_bind_param::<
            <$crate::db::schema::$table::$column as diesel::Expression>::SqlType,
            _,
        >(&$this.$field)?;
        fixed_statement!(@walk $out, $this, $db, $table, $($rest)*);
    };
    (@walk $out:ident, $this:ident, $db:ty, $table:ident, $sql:literal $($rest:tt)*) => {
        $out.push_sql($sql);
        fixed_statement!(@walk $out, $this, $db, $table, $($rest)*);
    };
}

/// Declares a statement that only PostgreSQL runs (a call of a function its migrations
/// define, or SQL that SQLite does not have): `returns SqlType` if it is a query, its
/// fields, then its SQL as pieces: `"sql"` and `{field as SqlType}` (a bound value). Its SQL
/// is fixed, so each connection keeps it prepared.
macro_rules! postgres_statement {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<'a> $(returns $returns:ty)? { $($field:ident : $ty:ty),* $(,)? }
        $($piece:tt)*
    ) => {
        statement_type! {
            $(#[$meta])*
            $vis struct $name { $($field: $ty),* }
            $(returns $returns)?
        }

        impl diesel::query_builder::QueryFragment<Pg> for $name<'_> {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, Pg>,
            ) -> diesel::QueryResult<()> {
                let this = self;
                postgres_statement!(@walk out, this, $($piece)*);
                Ok(())
            }
        }
    };
    (@walk $out:ident, $this:ident,) => {};
    (@walk $out:ident, $this:ident, {$field:ident as $sql_type:ty} $($rest:tt)*) => {
        $out.push_bind_param::<$sql_type, _>(&$this.$field)?;
        postgres_statement!(@walk $out, $this, $($rest)*);
    };
    (@walk $out:ident, $this:ident, $sql:literal $($rest:tt)*) => {
        $out.push_sql($sql);
        postgres_statement!(@walk $out, $this, $($rest)*);
    };
}

postgres_statement! {
    /// Charges rate-limit buckets, all or none (see the migration that defines it).
    pub struct TakeRateLimits<'a> returns (Integer, BigInt) {
        keys: &'a [&'a str],
        limits: &'a [i64],
        windows_ms: &'a [i64],
        now_ms: i64,
    }
    "SELECT refused, retry_after_ms FROM take_rate_limits(" {keys as Array<Text>} ", "
    {limits as Array<BigInt>} ", " {windows_ms as Array<BigInt>} ", " {now_ms as BigInt} ")"
}

postgres_statement! {
    /// Deletes rate-limit buckets, locking them first in key order as `take_rate_limits`
    /// does (a `DELETE` alone locks rows in whatever order it finds them).
    pub struct DeleteBuckets<'a> { keys: &'a [&'a str] }
    "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits WHERE key = ANY("
    {keys as Array<Text>} ") ORDER BY key FOR UPDATE)"
}

postgres_statement! {
    /// Signs in with an authenticator code already matched to its step (or to none), when
    /// nothing refuses it (see the migration that defines it).
    pub struct AcceptSignInCode<'a> returns Bool {
        user_id: &'a str,
        sealed_secret: &'a str,
        step: Option<i64>,
        now: i64,
        bucket_key: &'a str,
        bucket_limit: i64,
        bucket_window_ms: i64,
        now_ms: i64,
        most_failures: i64,
        events: &'a str,
    }
    "SELECT accepted FROM accept_sign_in_code(" {user_id as Text} ", " {sealed_secret as Text}
    ", " {step as Nullable<BigInt>} ", " {now as BigInt} ", " {bucket_key as Text} ", "
    {bucket_limit as BigInt} ", " {bucket_window_ms as BigInt} ", " {now_ms as BigInt} ", "
    {most_failures as BigInt} ", " {events as Text} ")"
}

fixed_statement! {
    /// Creates a rate-limit bucket if it is new and returns its log of hits: SQLite's path,
    /// in a write transaction that holds the database's write lock until the log is
    /// written back (PostgreSQL charges buckets with `TakeRateLimits` instead).
    pub struct OpenBucket<'a> on rate_limits returning hits { key: &'a str }
    "INSERT INTO " table " (" [key] ", " [hits] ", " [until_ms] ") VALUES (" {key: key}
    ", '', 0) ON CONFLICT (" [key] ") DO UPDATE SET " [until_ms] " = " table "." [until_ms]
    " RETURNING " [hits]
}

fixed_statement! {
    /// Stores a bucket's new log of hits.
    pub struct SetBucket<'a> on rate_limits { key: &'a str, hits: &'a str, until_ms: i64 }
    "UPDATE " table " SET " [hits] " = " {hits: hits}
    ", " [until_ms] " = " {until_ms: until_ms}
    " WHERE " [key] " = " {key: key}
}

fixed_statement! {
    /// Sets a user's count of consecutive second-factor failures and the lock it implies.
    pub struct SetSecondFactorFailures<'a> on users {
        user_id: &'a str,
        failures: i64,
        locked_until: Option<i64>,
    }
    "UPDATE " table " SET " [second_factor_failures] " = " {failures: second_factor_failures}
    ", " [second_factor_locked_until] " = " {locked_until: second_factor_locked_until}
    " WHERE " [id] " = " {user_id: id}
}

fixed_statement! {
    /// The replay rule's check-and-set: records `step` only if it is newer than every step
    /// accepted before (rows affected: 1, or 0 for a replay).
    pub struct AcceptStep<'a> on totp_credentials { user_id: &'a str, step: i64 }
    "UPDATE " table " SET " [last_step] " = " {step: last_step}
    " WHERE " [user_id] " = " {user_id: user_id}
    " AND " [last_step] " < " {step: last_step}
}

fixed_statement! {
    /// A security key's use, with its signature counter's check-and-set: stores the updated
    /// credential only if the counter went up (or stays 0 on a key that has none), so of two
    /// answers with the same counter, or a cloned key's older one, at most one is accepted
    /// (rows affected: 1, or 0).
    pub struct RecordKeyUse<'a> on security_keys {
        id: &'a str,
        user_id: &'a str,
        credential: &'a str,
        counter: i64,
        now: Option<i64>,
    }
    "UPDATE " table " SET " [credential] " = " {credential: credential}
    ", " [sign_count] " = " {counter: sign_count}
    ", " [last_used_at] " = " {now: last_used_at}
    " WHERE " [id] " = " {id: id} " AND " [user_id] " = " {user_id: user_id}
    " AND (" [sign_count] " < " {counter: sign_count}
    " OR (" [sign_count] " = 0 AND " {counter: sign_count} " = 0))"
}

fixed_statement! {
    pub struct RecordSignIn<'a> on users { user_id: &'a str, now: i64 }
    "UPDATE " table " SET " [last_sign_in_at] " = " {now: last_sign_in_at}
    " WHERE " [id] " = " {user_id: id}
}

fixed_statement! {
    /// Writes a session's state back (touching nothing if the row was deleted meanwhile).
    pub struct UpdateSession<'a> on sessions {
        id: &'a str,
        user_id: Option<&'a str>,
        state: &'a str,
        now: i64,
    }
    "UPDATE " table " SET " [user_id] " = " {user_id: user_id}
    ", " [state] " = " {state: state}
    ", " [last_seen_at] " = " {now: last_seen_at}
    " WHERE " [id] " = " {id: id}
}

fixed_statement! {
    /// Moves a session to a new id with its new state (a step up), in one statement: the
    /// old id stops working in the same moment. Its age restarts with the new id.
    pub struct RenewSession<'a> on sessions {
        id: &'a str,
        new_id: &'a str,
        user_id: Option<&'a str>,
        state: &'a str,
        now: i64,
    }
    "UPDATE " table " SET " [id] " = " {new_id: id}
    ", " [user_id] " = " {user_id: user_id}
    ", " [state] " = " {state: state}
    ", " [created_at] " = " {now: created_at}
    ", " [last_seen_at] " = " {now: last_seen_at}
    " WHERE " [id] " = " {id: id}
}

fixed_statement! {
    pub struct TouchSession<'a> on sessions { id: &'a str, now: i64 }
    "UPDATE " table " SET " [last_seen_at] " = " {now: last_seen_at}
    " WHERE " [id] " = " {id: id}
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;

    #[test]
    fn the_sql_is_written_from_the_schema_for_each_backend() {
        let step = AcceptStep {
            user_id: "u",
            step: 7,
        };
        assert_eq!(
            debug_query::<Sqlite, _>(&step).to_string(),
            "UPDATE `totp_credentials` SET `last_step` = ? WHERE `user_id` = ? \
             AND `last_step` < ? -- binds: [7, \"u\", 7]"
        );
        let bucket = OpenBucket { key: "k" };
        assert_eq!(
            debug_query::<Pg, _>(&bucket).to_string(),
            "INSERT INTO \"rate_limits\" (\"key\", \"hits\", \"until_ms\") VALUES ($1, '', 0) \
             ON CONFLICT (\"key\") DO UPDATE SET \"until_ms\" = \"rate_limits\".\"until_ms\" \
             RETURNING \"hits\" -- binds: [\"k\"]"
        );
    }

    #[test]
    fn a_statement_is_prepared_once_per_connection() {
        use diesel::connection::{Connection, InstrumentationEvent, SimpleConnection};
        use diesel::{RunQueryDsl, SqliteConnection};
        use std::sync::{Arc, Mutex};

        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE sessions (id TEXT PRIMARY KEY, last_seen_at BIGINT)")
            .unwrap();
        let cached = Arc::new(Mutex::new(0));
        let counter = cached.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { .. } = event {
                *counter.lock().unwrap() += 1;
            }
        });
        for now in 0..3 {
            TouchSession { id: "s", now }.execute(&mut conn).unwrap();
        }
        assert_eq!(*cached.lock().unwrap(), 1);
    }
}
