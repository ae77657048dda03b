//! The time that workspace policy runs on: when "Require 2FA" takes hold, how many days a
//! member has left, when an exemption lapses.
//!
//! It is the system clock plus an offset that is zero unless a test moves it forward
//! (`advance`): the deadline of a seven-day grace period is tested by moving this clock,
//! not by sleeping. Nothing outside tests calls `advance`, and there is no setting or
//! route for it. Sessions, TOTP time steps and the audit trail keep the system clock, so
//! moving policy time does not expire sessions or change which code is valid.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The system clock in Unix seconds: what sessions, time steps and stored times use.
pub fn system_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Shared by every clone, so a test's handle moves the running server's clock.
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// Unix seconds.
    pub fn now(&self) -> i64 {
        system_now() + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) forward by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_moved_time() {
        let clock = Clock::default();
        let copy = clock.clone();
        let before = copy.now();
        clock.advance(86_400);
        let after = copy.now();
        assert!(
            (86_400..86_400 + 5).contains(&(after - before)),
            "{before} {after}"
        );
    }
}
