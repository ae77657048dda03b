//! Abuse limits, with their state in the database so that every instance shares it. The
//! numbers are [`Limits`] (settings in `config.rs`, defaults in `Limits::default`).
//!
//! - **Per client IP** (`Bucket`): `POST /login` at most `login_per_ip`, and `POST /login/2fa`
//!   and `/login/recovery` at most `second_factor_per_ip`, per window — exactly: a sliding
//!   log of the allowed requests, so no window-long span ever holds more; over it, 429 with
//!   `Retry-After` (when the oldest leaves the window). IPv6 clients count by /64
//!   (`client::rate_limit_network`).
//! - **Password failures per account** use buckets keyed by the typed email — known or not,
//!   so the limit does not reveal which emails have accounts: a strict one per email and
//!   client network (`password_failures_per_account` per window), so that someone elsewhere
//!   guessing cannot lock the owner out, and a looser one per email alone
//!   (`ALL_NETWORKS_FACTOR` times that) against guessing from many networks. A request is
//!   charged before the hash is checked (so parallel guesses cannot slip past) and both are
//!   emptied by a successful sign-in, so in effect they count failures.
//! - **Password-reset requests** (`POST /login/forgot`): at most `reset_per_network` per
//!   client network and `reset_per_address` per typed address (known or not, so the limit
//!   says nothing about which addresses have accounts), per window. They bound how many
//!   reset mails anyone can make us send to one inbox, and how fast one network can probe.
//! - **Second-factor failures per account** (`claim_second_factor_attempt`): every kind of
//!   second factor together, counted on the user's row. Each attempt is counted as a
//!   failure before the proof is checked (under the user's row lock), so any number of
//!   parallel wrong codes cannot get more attempts than the limit; a success resets the
//!   count. From the `lock_after`-th consecutive failure on, each failure locks the second
//!   step, for a minute at first and twice as long with each further one, up to
//!   `longest_lock_minutes`; after `most_failures` it stays locked until the user's 2FA is
//!   reset (NIST SP 800-63B §5.2.2). While locked, a right code is refused like a wrong
//!   one. On PostgreSQL a right authenticator code that nothing refuses is accepted in one
//!   statement with the same effect, under the same locks (`accept_sign_in_code`; see
//!   `auth::factors::totp`). The two per-account counters are separate: password guesses
//!   never lock out the second factor or the other way round.
//!
//! The rows are read and written by the models (`db::models::{RateLimits, User}`).

use diesel::QueryResult;

use crate::db::models::{Charge, RateLimits, Refused, User};
use crate::db::{AnyConnection, Backend, Db, DbError};

/// The configured numbers (see `config.rs` for the settings that set them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window_seconds: i64,
    pub login_per_ip: i64,
    pub second_factor_per_ip: i64,
    pub password_failures_per_account: i64,
    /// `POST /login/forgot` per client network, per window.
    pub reset_per_network: i64,
    /// `POST /login/forgot` per typed email address, per window.
    pub reset_per_address: i64,
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
            reset_per_network: 10,
            reset_per_address: 3,
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

impl RetryAfter {
    /// Whole seconds, rounded up, for a wait of `wait_ms`.
    fn of_ms(wait_ms: i64) -> RetryAfter {
        RetryAfter((wait_ms + 999).div_euclid(1000).max(1))
    }
}

/// The clock of the buckets: Unix time in milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// How many more requests than one network may make, all networks together may make on
/// one email's password.
const ALL_NETWORKS_FACTOR: i64 = 10;

impl Bucket {
    /// `network` is `client::rate_limit_network` of the client's IP.
    pub fn login_ip(network: &str, limits: &Limits) -> Bucket {
        Bucket {
            key: format!("login-ip:{network}"),
            limit: limits.login_per_ip,
            window_seconds: limits.window_seconds,
        }
    }

    pub fn second_factor_ip(network: &str, limits: &Limits) -> Bucket {
        Bucket {
            key: format!("2fa-ip:{network}"),
            limit: limits.second_factor_per_ip,
            window_seconds: limits.window_seconds,
        }
    }

    /// The buckets a password attempt on `email` from `network` is charged to.
    pub fn password_failures(email: &str, network: &str, limits: &Limits) -> [Bucket; 2] {
        [
            Bucket {
                key: format!("password:{email}:{network}"),
                limit: limits.password_failures_per_account,
                window_seconds: limits.window_seconds,
            },
            Bucket {
                key: format!("password:{email}"),
                limit: limits.password_failures_per_account * ALL_NETWORKS_FACTOR,
                window_seconds: limits.window_seconds,
            },
        ]
    }

    /// The buckets a password-reset request for `email` from `network` is charged to: one
    /// per network, one per address.
    pub fn password_reset(email: &str, network: &str, limits: &Limits) -> [Bucket; 2] {
        [
            Bucket {
                key: format!("reset-ip:{network}"),
                limit: limits.reset_per_network,
                window_seconds: limits.window_seconds,
            },
            Bucket {
                key: format!("reset-email:{email}"),
                limit: limits.reset_per_address,
                window_seconds: limits.window_seconds,
            },
        ]
    }

    /// The bucket as the rate-limit statements take it.
    pub fn charge(&self) -> Charge<'_> {
        Charge {
            key: &self.key,
            limit: self.limit,
            window_ms: self.window_seconds * 1000,
        }
    }

    /// Takes one request from the bucket at `now_ms`, or says how long to wait: [`take_all`]
    /// of this one bucket.
    pub fn take(
        &self,
        conn: &mut AnyConnection,
        now_ms: i64,
    ) -> QueryResult<Result<(), RetryAfter>> {
        Ok(take_all(conn, &[self], now_ms)?.map_err(|(_, wait)| wait))
    }
}

/// Empties the buckets, in one statement (a successful sign-in forgives earlier password
/// failures).
pub fn clear_all(conn: &mut AnyConnection, buckets: &[Bucket]) -> QueryResult<()> {
    let keys: Vec<&str> = buckets.iter().map(|b| b.key.as_str()).collect();
    RateLimits::delete(conn, &keys)
}

/// Takes one request from each of `buckets` at `now_ms`, all or none; refused, it names
/// the first full bucket (its index) and how long to wait.
///
/// On PostgreSQL this is one statement (`RateLimits::take_at_once`): it locks each row (in
/// key order, as clearing does), so of any number of concurrent calls on any instances at
/// most the limit are allowed. On SQLite it reads every log and then writes them: call it
/// in a write transaction, which holds the database's write lock for the same effect.
pub fn take_all(
    conn: &mut AnyConnection,
    buckets: &[&Bucket],
    now_ms: i64,
) -> QueryResult<Result<(), (usize, RetryAfter)>> {
    let charges: Vec<Charge<'_>> = buckets.iter().map(|b| b.charge()).collect();
    if let Some(taken) = RateLimits::take_at_once(conn, &charges, now_ms)? {
        return Ok(taken.map_err(|Refused { index, wait_ms }| (index, RetryAfter::of_ms(wait_ms))));
    }
    let mut logs = Vec::with_capacity(charges.len());
    for (index, charge) in charges.iter().enumerate() {
        let log = RateLimits::open(conn, charge.key)?;
        match next_log(&log, charge, now_ms) {
            Ok(log) => logs.push(log),
            Err(wait_ms) => return Ok(Err((index, RetryAfter::of_ms(wait_ms)))),
        }
    }
    for (charge, log) in charges.iter().zip(logs) {
        RateLimits::set(conn, charge.key, &log, now_ms + charge.window_ms)?;
    }
    Ok(Ok(()))
}

/// The bucket's log (the times of the requests it allowed, Unix ms, comma separated) with
/// a request at `now_ms` added and the times that have left the window dropped; or, when
/// the window already holds the limit, how many milliseconds until its oldest leaves.
/// PostgreSQL's `take_rate_limits` applies the same rule.
fn next_log(log: &str, charge: &Charge<'_>, now_ms: i64) -> Result<String, i64> {
    let mut hits: Vec<i64> = log
        .split(',')
        .filter_map(|t| t.parse().ok())
        .filter(|&at| at > now_ms - charge.window_ms)
        .collect();
    if hits.len() as i64 >= charge.limit {
        let oldest = hits.iter().min().copied().unwrap_or(now_ms);
        return Err(oldest + charge.window_ms - now_ms);
    }
    hits.push(now_ms);
    Ok(hits
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(","))
}

/// [`take_all`] as one atomic unit: one statement on PostgreSQL, a write transaction on
/// SQLite.
pub async fn charge(
    db: &Db,
    buckets: Vec<Bucket>,
    now_ms: i64,
) -> Result<Result<(), (usize, RetryAfter)>, DbError> {
    let take = move |conn: &mut AnyConnection| {
        let buckets: Vec<&Bucket> = buckets.iter().collect();
        Ok::<_, DbError>(take_all(conn, &buckets, now_ms)?)
    };
    match db.backend() {
        Backend::Postgres => db.run(take).await,
        Backend::Sqlite => db.write(take).await,
    }
}

/// Deletes up to `limit` buckets whose every request has left the window (the sweeper's part).
pub fn delete_drained(conn: &mut AnyConnection, now_ms: i64, limit: i64) -> QueryResult<usize> {
    RateLimits::delete_drained(conn, now_ms, limit)
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
    // The user's row lock (see `User::lock`) taken by the read itself on PostgreSQL.
    let (failures, locked_until) = User::second_factor_failures_for_update(conn, user_id)?;
    if failures >= limits.most_failures {
        return Ok(Attempt::Exhausted);
    }
    if let Some(until) = locked_until.filter(|&until| until > now) {
        return Ok(Attempt::Locked { until });
    }
    let failures = failures + 1;
    let locked_until = lock_seconds(failures, limits).map(|s| now + s);
    User::set_second_factor_failures(conn, user_id, failures, locked_until)?;
    Ok(Attempt::Allowed { failures })
}

/// The attempt was right, or the user's 2FA was reset: the count starts again.
pub fn clear_second_factor_failures(conn: &mut AnyConnection, user_id: &str) -> QueryResult<()> {
    User::set_second_factor_failures(conn, user_id, 0, None)
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
    fn a_log_keeps_the_window_and_refuses_at_the_limit() {
        let charge = Charge {
            key: "k",
            limit: 2,
            window_ms: 1000,
        };
        assert_eq!(next_log("", &charge, 5000), Ok("5000".to_owned()));
        assert_eq!(next_log("5000", &charge, 5100), Ok("5000,5100".to_owned()));
        // Full: the wait is until the oldest leaves the window.
        assert_eq!(next_log("5000,5100", &charge, 5200), Err(800));
        // A time exactly one window old has left it.
        assert_eq!(
            next_log("5000,5100", &charge, 6000),
            Ok("5100,6000".to_owned())
        );
        let none = Charge { limit: 0, ..charge };
        assert_eq!(next_log("", &none, 5000), Err(1000));
        assert_eq!(RetryAfter::of_ms(800), RetryAfter(1));
        assert_eq!(RetryAfter::of_ms(1001), RetryAfter(2));
        assert_eq!(RetryAfter::of_ms(0), RetryAfter(1));
    }

    #[test]
    fn password_attempts_count_per_network_and_loosely_per_email() {
        let limits = Limits::default();
        let [strict, loose] = Bucket::password_failures("ann@acme.test", "192.0.2.1", &limits);
        assert_eq!((strict.limit, loose.limit), (10, 100));
        assert_ne!(strict.key, loose.key);
        let [elsewhere, _] = Bucket::password_failures("ann@acme.test", "198.51.100.1", &limits);
        assert_ne!(strict.key, elsewhere.key);
    }

    #[test]
    fn reset_requests_count_per_network_and_per_address_apart_from_sign_in() {
        let limits = Limits::default();
        let [network, address] = Bucket::password_reset("ann@acme.test", "192.0.2.1", &limits);
        assert_eq!((network.limit, address.limit), (10, 3));
        let [other_network, same_address] =
            Bucket::password_reset("ann@acme.test", "198.51.100.1", &limits);
        assert_ne!(network.key, other_network.key);
        assert_eq!(address.key, same_address.key);
        let sign_in = Bucket::password_failures("ann@acme.test", "192.0.2.1", &limits);
        assert!(
            sign_in
                .iter()
                .all(|b| b.key != address.key && b.key != network.key)
        );
        assert_ne!(network.key, Bucket::login_ip("192.0.2.1", &limits).key);
    }
}
