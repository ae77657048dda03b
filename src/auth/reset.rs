//! Removing a user's second factor for them, when they have lost it: by an admin of their
//! workspace, by support staff with a reason, or by an operator at the command line with a
//! reason (the locked-out-admin runbook).
//!
//! Invariants:
//! - One transaction removes every second factor (`auth::factors::remove_all`: the
//!   authenticator, the recovery codes, any pending enrolment), ends every session of the
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
use crate::db::models::User;
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
/// `now` is the policy clock's time: a member reset while their workspace requires 2FA is
/// held at enrolment without a grace period (see `auth::policy`).
pub fn reset_second_factor(
    conn: &mut AnyConnection,
    target: &User,
    by: ResetBy<'_>,
    ip: Option<String>,
    now: i64,
) -> Result<(), ResetError> {
    User::lock(conn, &target.id)?;
    if !crate::auth::factors::remove_all(conn, &target.id)? {
        return Err(ResetError::NotEnrolled(target.email.clone()));
    }
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
        .with_detail(detail)
        .record(conn)?;
    Ok(())
}
