//! Abuse limits, with their state in the database so that every instance shares it.
//!
//! - **Per client IP** (`Bucket`): `POST /login` 10 per 15 minutes, `POST /login/2fa` and
//!   `/login/recovery` 5 per 15 minutes by default. GCRA: a bucket allows a burst of `limit`
//!   requests and then one per `window / limit`; over it, 429 with `Retry-After`.
//! - **Password failures per account** use the same kind of bucket keyed by the typed email —
//!   known or not, so the limit does not reveal which emails have accounts. A request is
//!   charged before the hash is checked (so parallel guesses cannot slip past the limit)
//!   and the bucket is emptied by a successful sign-in.
//! - **Second-factor failures per account** (`claim_second_factor_attempt`): TOTP and
//!   recovery codes together, counted on the user's row. Each attempt is counted as a
//!   failure before the code is checked (under the user's row lock), so 50 parallel wrong
//!   codes cannot get more attempts than the limit; a success resets the count. From the
//!   5th consecutive failure the second step is locked for 1, 2, 4 … up to 60 minutes
//!   after each further failure; after 100 it stays locked until the user's 2FA is reset
//!   (NIST SP 800-63B §5.2.2). While locked, a right code is refused like a wrong one.
//!   The two per-account counters are separate: password guesses never lock out the
//!   second factor or the other way round.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::db::AnyConnection;
use crate::db::models::User;
use crate::db::schema::{rate_limits, users};

/// The configured numbers (see `config.rs` for the settings that set them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window_seconds: i64,
    pub login_per_ip: i64,
    pub second_factor_per_ip: i64,
    pub password_failures_per_account: i64,
    /// Consecutive second-factor failures before the first lock.
    pub lock_after: i64,
    pub longest_lock_minutes: i64,
    /// Consecutive second-factor failures after which only a reset helps.
    pub most_failures: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            window_seconds: 15 * 60,
            login_per_ip: 10,
            second_factor_per_ip: 5,
            password_failures_per_account: 10,
            lock_after: 5,
            longest_lock_minutes: 60,
            most_failures: 100,
        }
    }
}

/// A rate-limit bucket: a key and how many requests it allows per window.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub key: String,
    pub limit: i64,
    pub window_seconds: i64,
}

/// Refused: how many seconds until a request would be allowed again (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub i64);

impl Bucket {
    pub fn login_ip(ip: &str, limits: &Limits) -> Bucket {
        Bucket {
            key: format!("login-ip:{ip}"),
            limit: limits.login_per_ip,
            window_seconds: limits.window_seconds,
        }
    }

    pub fn second_factor_ip(ip: &str, limits: &Limits) -> Bucket {
        Bucket {
            key: format!("2fa-ip:{ip}"),
            limit: limits.second_factor_per_ip,
            window_seconds: limits.window_seconds,
        }
    }

    pub fn password_failures(email: &str, limits: &Limits) -> Bucket {
        Bucket {
            key: format!("password:{email}"),
            limit: limits.password_failures_per_account,
            window_seconds: limits.window_seconds,
        }
    }

    fn interval_ms(&self) -> i64 {
        (self.window_seconds * 1000 / self.limit.max(1)).max(1)
    }

    /// Takes one request from the bucket at `now_ms`, or says how long to wait. Atomic: of
    /// any number of concurrent calls on any instances, at most the limit are allowed.
    pub fn take(
        &self,
        conn: &mut AnyConnection,
        now_ms: i64,
    ) -> QueryResult<Result<(), RetryAfter>> {
        let interval = self.interval_ms();
        let window = self.window_seconds * 1000;
        // Push the bucket one interval further, only if that stays within the window.
        let charge = "UPDATE rate_limits \
             SET tat_ms = (CASE WHEN tat_ms > $1 THEN tat_ms ELSE $1 END) + $2 \
             WHERE key = $3 AND (CASE WHEN tat_ms > $1 THEN tat_ms ELSE $1 END) + $2 - $1 <= $4";
        // Each pass: charge the bucket; if that did nothing, find out why — full (refuse),
        // missing (create it with this request), or created by a concurrent first request
        // since our charge (charge again).
        for _ in 0..3 {
            let charged = sql(conn, charge)
                .bind::<BigInt, _>(now_ms)
                .bind::<BigInt, _>(interval)
                .bind::<Text, _>(&self.key)
                .bind::<BigInt, _>(window)
                .execute(conn)?;
            if charged == 1 {
                return Ok(Ok(()));
            }
            let existing: Option<i64> = rate_limits::table
                .find(&self.key)
                .select(rate_limits::tat_ms)
                .first(conn)
                .optional()?;
            match existing {
                Some(tat) => {
                    let wait_ms = tat.max(now_ms) + interval - window - now_ms;
                    if wait_ms > 0 {
                        return Ok(Err(RetryAfter((wait_ms + 999).div_euclid(1000))));
                    }
                }
                None => {
                    let created = sql(
                        conn,
                        "INSERT INTO rate_limits (key, tat_ms) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    )
                    .bind::<Text, _>(&self.key)
                    .bind::<BigInt, _>(now_ms + interval)
                    .execute(conn)?;
                    if created == 1 {
                        return Ok(Ok(()));
                    }
                }
            }
        }
        // Changed under us on every pass: a bucket this busy can take a refusal.
        Ok(Err(RetryAfter(1)))
    }

    /// Empties the bucket (a successful sign-in forgives earlier password failures).
    pub fn clear(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::delete(rate_limits::table.find(&self.key))
            .execute(conn)
            .map(|_| ())
    }
}

/// `query` with `$n` placeholders as the connection's backend spells them (`?n` on SQLite).
fn sql(conn: &AnyConnection, query: &str) -> diesel::query_builder::SqlQuery {
    match conn {
        AnyConnection::Postgresql(_) => diesel::sql_query(query),
        AnyConnection::Sqlite(_) => diesel::sql_query(query.replace('$', "?")),
    }
}

/// Deletes buckets that have drained completely; run periodically.
pub fn delete_drained(conn: &mut AnyConnection, now_ms: i64) -> QueryResult<usize> {
    diesel::delete(rate_limits::table.filter(rate_limits::tat_ms.le(now_ms))).execute(conn)
}

/// Whether a second-factor attempt may be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted as a failure until the code proves right; `failures` includes this attempt.
    Allowed { failures: i64 },
    /// Locked until then (Unix seconds); nothing is checked or counted.
    Locked { until: i64 },
    /// Too many failures in a row: locked until the user's 2FA is reset.
    Exhausted,
}

/// How long the second step stays locked after `failures` consecutive failures.
pub fn lock_seconds(failures: i64, limits: &Limits) -> Option<i64> {
    if failures < limits.lock_after {
        return None;
    }
    let doublings = (failures - limits.lock_after).min(16) as u32;
    Some((60 * 2_i64.pow(doublings)).min(limits.longest_lock_minutes * 60))
}

/// Claims one second-factor attempt for `user_id`; call first in the write transaction
/// that checks the code (it takes the user's row lock).
pub fn claim_second_factor_attempt(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
    limits: &Limits,
) -> QueryResult<Attempt> {
    User::lock(conn, user_id)?;
    let (failures, locked_until): (i64, Option<i64>) = users::table
        .find(user_id)
        .select((
            users::second_factor_failures,
            users::second_factor_locked_until,
        ))
        .first(conn)?;
    if failures >= limits.most_failures {
        return Ok(Attempt::Exhausted);
    }
    if let Some(until) = locked_until.filter(|&until| until > now) {
        return Ok(Attempt::Locked { until });
    }
    let failures = failures + 1;
    diesel::update(users::table.find(user_id))
        .set((
            users::second_factor_failures.eq(failures),
            users::second_factor_locked_until.eq(lock_seconds(failures, limits).map(|s| now + s)),
        ))
        .execute(conn)?;
    Ok(Attempt::Allowed { failures })
}

/// The attempt was right, or the user's 2FA was reset: the count starts again.
pub fn clear_second_factor_failures(conn: &mut AnyConnection, user_id: &str) -> QueryResult<()> {
    diesel::update(users::table.find(user_id))
        .set((
            users::second_factor_failures.eq(0),
            users::second_factor_locked_until.eq(None::<i64>),
        ))
        .execute(conn)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_grow_from_one_minute_to_the_longest() {
        let limits = Limits::default();
        assert_eq!(lock_seconds(4, &limits), None);
        assert_eq!(lock_seconds(5, &limits), Some(60));
        assert_eq!(lock_seconds(6, &limits), Some(120));
        assert_eq!(lock_seconds(7, &limits), Some(240));
        assert_eq!(lock_seconds(10, &limits), Some(1920));
        assert_eq!(lock_seconds(11, &limits), Some(3600));
        assert_eq!(lock_seconds(99, &limits), Some(3600));
    }

    #[test]
    fn a_bucket_spreads_its_limit_over_the_window() {
        let limits = Limits::default();
        assert_eq!(Bucket::login_ip("1.2.3.4", &limits).interval_ms(), 90_000);
        assert_eq!(
            Bucket::second_factor_ip("1.2.3.4", &limits).interval_ms(),
            180_000
        );
    }
}
