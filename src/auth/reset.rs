//! Removing a user's second factor for them, when they have lost it: by an admin of their
//! workspace, by support staff with a reason, or by an operator at the command line with a
//! reason (the locked-out-admin runbook).
//!
//! Invariants:
//! - One transaction removes every second factor (`auth::factors::remove_all`: the
//!   authenticator, the recovery codes, any pending enrolment, every security key and
//!   passkey), names what it removed in the audit detail and the user's mail, ends every session of the
//!   user (rows deleted, epoch bumped, so a racing request cannot keep one alive) and
//!   records who did it and why. Nothing else changes; nobody but the user ever sees or
//!   chooses the next secret.
//! - The event belongs to the user's workspace, so its admins read in their audit log who
//!   reset whom and why — including staff from outside the workspace.
//! - Who may reset whom is the caller's decision (see the admin and support routes); this
//!   module only refuses a user who has no 2FA to reset.

use crate::audit::{Actor, Event, Kind};
use crate::auth::session::end_sessions_of_user;
use crate::db::AnyConnection;
use crate::db::models::{SecurityKeys, TotpCredential, User};
use crate::mail::{Mail, ResetAuthor};

/// Who asked for the reset.
pub enum ResetBy<'a> {
    Admin(&'a User),
    Staff { staff: &'a User, reason: &'a str },
    Cli { reason: &'a str },
}

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("{0} does not use two-factor sign-in, so there is nothing to reset.")]
    NotEnrolled(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Resets `target`'s second factor; call in a write transaction (an error rolls it back).
/// Returns what was removed, for the caller to tell whoever asked.
/// `now` is the policy clock's time: a member reset while their workspace requires 2FA is
/// held at enrolment without a grace period (see `auth::policy`).
pub fn reset_second_factor(
    conn: &mut AnyConnection,
    target: &User,
    by: ResetBy<'_>,
    ip: Option<String>,
    now: i64,
) -> Result<Removed, ResetError> {
    User::lock(conn, &target.id)?;
    // Read under the user's lock, in the transaction that removes them: what is named is
    // what goes.
    let removed = Removed {
        authenticator: TotpCredential::find(conn, &target.id)?.is_some(),
        keys: SecurityKeys::count_for(conn, &target.id)?,
    };
    if !crate::auth::factors::remove_all(conn, &target.id)? {
        return Err(ResetError::NotEnrolled(target.email.clone()));
    }
    let words = removed.to_string();
    User::note_reset(conn, &target.id, now)?;
    crate::limits::clear_second_factor_failures(conn, &target.id)?;
    end_sessions_of_user(conn, &target.id)?;
    let author = match &by {
        ResetBy::Admin(admin) => ResetAuthor::Admin {
            email: &admin.email,
        },
        ResetBy::Staff { staff, reason } => ResetAuthor::Staff {
            email: &staff.email,
            reason,
        },
        ResetBy::Cli { reason } => ResetAuthor::Cli { reason },
    };
    let mail = Mail::TwoFactorReset {
        to: &target.email,
        by: author,
        removed: &words,
    };
    crate::mail::enqueue(conn, &mail)?;
    let (actor, detail) = match by {
        ResetBy::Admin(admin) => (
            Actor::user(admin),
            "by an admin of the workspace".to_owned(),
        ),
        ResetBy::Staff { staff, reason } => (
            Actor::Staff {
                id: staff.id.clone(),
                email: staff.email.clone(),
            },
            format!("by support staff; reason: {reason}"),
        ),
        ResetBy::Cli { reason } => (
            Actor::Cli,
            format!("from the command line; reason: {reason}"),
        ),
    };
    Event::on_user(Kind::TwoFactorReset, actor, target, ip)
        .with_detail(format!("{detail}; removed: {words}"))
        .record(conn)?;
    Ok(removed)
}

/// What a reset removed, in words: "authenticator app", "1 security key",
/// "authenticator app and 2 security keys" (passkeys are counted as keys: they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub authenticator: bool,
    /// Security keys and passkeys.
    pub keys: i64,
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match self.keys {
            0 => None,
            1 => Some("1 security key".to_owned()),
            n => Some(format!("{n} security keys")),
        };
        match (self.authenticator, keys) {
            (true, Some(keys)) => write!(f, "authenticator app and {keys}"),
            (true, None) => f.write_str("authenticator app"),
            (false, Some(keys)) => f.write_str(&keys),
            // Not reached: a user with neither is refused as not enrolled.
            (false, None) => f.write_str("second factor"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Removed;

    #[test]
    fn what_was_removed_is_named_and_counted() {
        let words = |authenticator, keys| {
            Removed {
                authenticator,
                keys,
            }
            .to_string()
        };
        assert_eq!(words(true, 0), "authenticator app");
        assert_eq!(words(false, 1), "1 security key");
        assert_eq!(words(true, 2), "authenticator app and 2 security keys");
    }
}
