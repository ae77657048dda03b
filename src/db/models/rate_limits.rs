//! `rate_limits`: one row per bucket, holding the times of its allowed requests (the
//! sliding log the `limits` module reads and writes).

use diesel::prelude::*;

use crate::db::fixed::{DeleteBuckets, OpenBucket, SetBucket, TakeRateLimits};
use crate::db::schema::rate_limits;
use crate::db::{AnyConnection, native};

pub struct RateLimits;

/// One bucket to charge: its key, its limit, and its window in milliseconds.
pub struct Charge<'a> {
    pub key: &'a str,
    pub limit: i64,
    pub window_ms: i64,
}

/// A request refused by the bucket at this index (0-based), and how many milliseconds
/// until its oldest request leaves the window.
pub struct Refused {
    pub index: usize,
    pub wait_ms: i64,
}

impl RateLimits {
    /// PostgreSQL: charges every bucket, all or none, in one statement (the
    /// `take_rate_limits` function; see its migration for the rule). `None` on SQLite,
    /// whose caller runs the same rule in Rust with [`RateLimits::open`] and
    /// [`RateLimits::set`].
    pub fn take_at_once(
        conn: &mut AnyConnection,
        charges: &[Charge<'_>],
        now_ms: i64,
    ) -> QueryResult<Option<Result<(), Refused>>> {
        let AnyConnection::Postgresql(c) = conn else {
            return Ok(None);
        };
        let keys: Vec<&str> = charges.iter().map(|c| c.key).collect();
        let limits: Vec<i64> = charges.iter().map(|c| c.limit).collect();
        let windows_ms: Vec<i64> = charges.iter().map(|c| c.window_ms).collect();
        let (refused, wait_ms) = TakeRateLimits {
            keys: &keys,
            limits: &limits,
            windows_ms: &windows_ms,
            now_ms,
        }
        .get_result::<(i32, i64)>(c)?;
        Ok(Some(match usize::try_from(refused) {
            Ok(0) => Ok(()),
            Ok(at) => Err(Refused {
                index: at - 1,
                wait_ms,
            }),
            Err(_) => {
                return Err(diesel::result::Error::DeserializationError(
                    "take_rate_limits answered a negative index".into(),
                ));
            }
        }))
    }

    /// The bucket's log of hits, creating the bucket if it is new: SQLite's path (see
    /// [`OpenBucket`]); PostgreSQL uses [`RateLimits::take_at_once`].
    pub fn open(conn: &mut AnyConnection, key: &str) -> QueryResult<String> {
        native!(conn, |c| OpenBucket { key }.get_result(c))
    }

    /// Stores the bucket's new log, which holds requests until `until_ms`.
    pub fn set(conn: &mut AnyConnection, key: &str, hits: &str, until_ms: i64) -> QueryResult<()> {
        let set = SetBucket {
            key,
            hits,
            until_ms,
        };
        native!(conn, |c| set.execute(c)).map(|_| ())
    }

    /// Deletes the buckets. On PostgreSQL the rows are locked in key order first, as
    /// `take_rate_limits` locks them, so the two cannot deadlock (a `DELETE` alone locks in
    /// whatever order it finds them); SQLite's write lock is the database's.
    pub fn delete(conn: &mut AnyConnection, keys: &[&str]) -> QueryResult<()> {
        let deleted = match conn {
            AnyConnection::Postgresql(c) => DeleteBuckets { keys }.execute(c),
            AnyConnection::Sqlite(c) => {
                diesel::delete(rate_limits::table.filter(rate_limits::key.eq_any(keys))).execute(c)
            }
        };
        deleted.map(|_| ())
    }

    /// Deletes the buckets whose every request has left the window by `now_ms`.
    /// Deletes up to `limit` buckets that have drained by `now_ms`.
    pub fn delete_drained(conn: &mut AnyConnection, now_ms: i64, limit: i64) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, rate_limits.key, |dead| dead
            .field(rate_limits::until_ms)
            .le(now_ms))
    }
}
