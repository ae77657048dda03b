//! `rate_limits`: one row per bucket, holding the times of its allowed requests (the
//! sliding log the `limits` module reads and writes).

use diesel::prelude::*;

use crate::db::fixed::{OpenBucket, SetBucket};
use crate::db::schema::rate_limits;
use crate::db::{AnyConnection, native};

pub struct RateLimits;

impl RateLimits {
    /// The bucket's log of hits, creating the bucket if it is new. On PostgreSQL the row
    /// stays locked until the transaction ends (see [`OpenBucket`]).
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

    pub fn delete(conn: &mut AnyConnection, key: &str) -> QueryResult<()> {
        native!(conn, |c| diesel::delete(rate_limits::table.find(key))
            .execute(c))
        .map(|_| ())
    }

    /// Deletes the buckets whose every request has left the window by `now_ms`.
    /// Deletes up to `limit` buckets that have drained by `now_ms`.
    pub fn delete_drained(conn: &mut AnyConnection, now_ms: i64, limit: i64) -> QueryResult<usize> {
        super::delete_at_most!(conn, limit, rate_limits.key, |dead| dead
            .field(rate_limits::until_ms)
            .le(now_ms))
    }
}
