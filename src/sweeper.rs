//! The sweeper: every instance removes the rows that can no longer be used, so the tables
//! a sign-in touches stay at their live size however long the service runs.
//!
//! Invariants:
//! - Only dead rows go: sessions past their idle or absolute limit, expired enrolments,
//!   drained rate-limit buckets, mail sent or given up on past its keeping time, and
//!   invitations expired for [`KEEP_EXPIRED_INVITES`] (until then the admin sees them as
//!   expired, with Resend), and expired password-reset links and WebAuthn challenges. Accepted and revoked invitations are deleted when that happens. The audit log is never swept
//!   (it is append-only; see the README on archiving it).
//! - In batches: each statement deletes at most [`BATCH`] rows and is its own transaction,
//!   so a sweep never holds SQLite's write lock, or many PostgreSQL row locks, for long;
//!   a table is swept again until a batch comes back short.
//! - Several instances may sweep at once: each deletes only dead rows, and a row another
//!   instance deleted first is simply not there. Each instance waits a random part of the
//!   interval before its first sweep and ±20% between sweeps, so they drift apart.

use std::time::Duration;

use crate::db::models::{Ceremonies, Invites, PasswordResets, PendingEnrolment};
use crate::db::{AnyConnection, Db, DbError, now};

/// Rows per delete statement.
pub const BATCH: i64 = 1_000;

/// How long an expired invitation stays listed before it is swept.
pub const KEEP_EXPIRED_INVITES: i64 = 30 * 24 * 3600;

/// How often each instance sweeps, on average.
const EVERY: Duration = Duration::from_secs(300);

/// What the sweeper needs to know: the session limits.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub session_idle: Duration,
    pub session_absolute: Duration,
}

/// Rows removed by one sweep, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub sessions: usize,
    pub enrolments: usize,
    pub rate_limits: usize,
    pub mail: usize,
    pub invites: usize,
    pub password_resets: usize,
    pub ceremonies: usize,
}

impl Swept {
    fn total(&self) -> usize {
        self.sessions
            + self.enrolments
            + self.rate_limits
            + self.mail
            + self.invites
            + self.password_resets
            + self.ceremonies
    }
}

/// One sweep of every table at `now` (Unix seconds).
pub fn sweep(conn: &mut AnyConnection, rules: Rules, now: i64) -> Result<Swept, DbError> {
    Ok(Swept {
        sessions: in_batches(|| {
            crate::session_store::delete_expired(
                conn,
                rules.session_idle,
                rules.session_absolute,
                now,
                BATCH,
            )
            .map_err(DbError::from)
        })?,
        enrolments: in_batches(|| {
            PendingEnrolment::delete_expired(conn, now, BATCH).map_err(DbError::from)
        })?,
        rate_limits: in_batches(|| {
            crate::limits::delete_drained(conn, now * 1000, BATCH).map_err(DbError::from)
        })?,
        mail: in_batches(|| crate::mail::prune(conn, now, BATCH))?,
        invites: in_batches(|| {
            Invites::delete_expired(conn, now - KEEP_EXPIRED_INVITES, BATCH).map_err(DbError::from)
        })?,
        // A dead link is useless at once (the claim checks the expiry): nothing keeps it.
        password_resets: in_batches(|| {
            PasswordResets::delete_expired(conn, now, BATCH).map_err(DbError::from)
        })?,
        // An expired challenge cannot be answered (the answer checks the expiry).
        ceremonies: in_batches(|| {
            Ceremonies::delete_expired(conn, now, BATCH).map_err(DbError::from)
        })?,
    })
}

/// Runs `batch` until it deletes fewer than a whole batch; the total deleted.
fn in_batches(mut batch: impl FnMut() -> Result<usize, DbError>) -> Result<usize, DbError> {
    let mut total = 0;
    loop {
        let deleted = batch()?;
        total += deleted;
        if (deleted as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Sweeps every [`EVERY`] (jittered) until the task is dropped.
pub async fn run(db: Db, rules: Rules) {
    tokio::time::sleep(EVERY.mul_f64(unit_random())).await;
    loop {
        // Not `run_writing`: on SQLite that would hold every other writer for the whole
        // sweep; each batch takes SQLite's lock for itself, between the others' writes.
        match db.run(move |conn| sweep(conn, rules, now())).await {
            Ok(swept) if swept.total() == 0 => {}
            Ok(swept) => tracing::debug!(?swept, "dead rows removed"),
            Err(e) => tracing::warn!(error = %e, "the sweeper could not remove dead rows"),
        }
        tokio::time::sleep(EVERY.mul_f64(0.8 + 0.4 * unit_random())).await;
    }
}

/// A number in [0, 1) from the OS RNG (0.5 if it fails: jitter is not worth failing for).
fn unit_random() -> f64 {
    crate::random::bytes::<2>()
        .map(|b| f64::from(u16::from_le_bytes(b)) / 65_536.0)
        .unwrap_or(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_swept_again_until_a_batch_comes_back_short() {
        let mut left = 2_500usize;
        let mut calls = 0;
        let total = in_batches(|| {
            calls += 1;
            let n = left.min(BATCH as usize);
            left -= n;
            Ok(n)
        })
        .unwrap();
        assert_eq!((total, calls), (2_500, 3));
    }

    #[test]
    fn jitter_stays_within_its_range() {
        for _ in 0..1_000 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }
}
