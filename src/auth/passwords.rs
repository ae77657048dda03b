//! Setting a user's password from the web: changing it (signed in, knowing the current
//! one) and resetting it with a link mailed to the account's address.
//!
//! Invariants:
//! - Each is one write transaction that takes the user's row lock first (see `User::lock`),
//!   then sets the new hash, ends sessions, kills any live reset link, records the event
//!   and queues the mail: all of it happens, or none.
//! - A change ends every *other* session (the caller moves its own to the new epoch); a
//!   reset ends every session and signs nobody in.
//! - Neither touches the second factor: the authenticator, recovery codes, pending
//!   enrolment and the second-factor failure count stay exactly as they were, so the next
//!   sign-in asks for the second factor as before.
//! - A reset link's token carries 256 random bits and is stored only as its SHA-256; it is
//!   used by one `DELETE … WHERE token_hash = ? AND expires_at > ? RETURNING user_id`, so
//!   of two racing uses exactly one wins. A newer link, a change of password, or the
//!   account's deactivation kills it; a deactivated or demo account never gets one.
//! - Link times are on the policy clock (`Settings::clock`): it is the system clock in
//!   production, and tests move it past the expiry instead of sleeping.

use crate::audit::{Event, Kind};
use crate::auth::session::{end_sessions_of_user, still_current};
use crate::db::AnyConnection;
use crate::db::models::{PasswordResets, User};
use crate::mail::{self, Mail};

/// How long a reset link works.
pub const RESET_LINK_MINUTES: i64 = 30;

/// The hash under which a reset link's token is stored (and looked up).
pub fn reset_token_hash(token: &str) -> String {
    crate::random::sha256_hex(token)
}

/// Whether `user` may get a reset link: not deactivated, not a demo account.
pub fn may_reset(user: &User) -> bool {
    user.deactivated_at.is_none() && !user.is_demo
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("no randomness for a reset token: {0}")]
    Random(#[from] getrandom::Error),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Makes a new reset link for `user` (killing any older one) and queues the mail that
/// carries it, to `PUBLIC_URL/login/reset/{token}` under `public_url`. Call in a write
/// transaction, and only for a user that [`may_reset`]. `now` is the policy clock's time.
pub fn send_reset_link(
    conn: &mut AnyConnection,
    user: &User,
    public_url: &str,
    ip: Option<String>,
    now: i64,
) -> Result<(), PasswordError> {
    User::lock(conn, &user.id)?;
    // Decided again under the lock: a deactivation that committed since the look-up must
    // not be followed by a link that a reactivation would bring back to life.
    if !User::find(conn, &user.id)?.is_some_and(|u| may_reset(&u)) {
        return Ok(());
    }
    let token = zeroize::Zeroizing::new(crate::random::token::<32>()?);
    let expires_at = now + RESET_LINK_MINUTES * 60;
    PasswordResets::replace(conn, &user.id, &reset_token_hash(&token), now, expires_at)?;
    let link = zeroize::Zeroizing::new(format!("{public_url}/login/reset/{}", token.as_str()));
    mail::enqueue(
        conn,
        &Mail::PasswordResetLink {
            to: &user.email,
            link: &link,
            expires_at,
            minutes: RESET_LINK_MINUTES,
        },
    )?;
    Event::against_user(Kind::PasswordResetRequested, user, ip)
        .with_detail(format!(
            "a link valid for {RESET_LINK_MINUTES} minutes was mailed to the account's address"
        ))
        .record(conn)?;
    Ok(())
}

/// Sets `user`'s password to `new_hash` at their own request, ending every other session;
/// returns the user's new session epoch, for the session that made the change. `user` is
/// as the guard loaded them and `verified_hash` the stored hash the current password was
/// checked against: if, under the user's lock, either has changed since (a reset, another
/// change, or "sign out everywhere" in between), nothing is changed and `None` returned,
/// so a change already under way can never undo a reset. Call in a write transaction.
pub fn change_password(
    conn: &mut AnyConnection,
    user: &User,
    verified_hash: &str,
    new_hash: &str,
    ip: Option<String>,
) -> diesel::QueryResult<Option<i64>> {
    User::lock(conn, &user.id)?;
    if !still_current(conn, user)?
        || User::password_hash(conn, &user.id)?.as_deref() != Some(verified_hash)
    {
        return Ok(None);
    }
    User::set_password_hash(conn, &user.id, new_hash)?;
    let killed_link = PasswordResets::delete_of_user(conn, &user.id)?;
    let epoch = end_sessions_of_user(conn, &user.id)?;
    let detail = if killed_link {
        "every other session signed out; a pending reset link stopped working"
    } else {
        "every other session signed out"
    };
    Event::by_user(Kind::PasswordChanged, user, ip)
        .with_detail(detail)
        .record(conn)?;
    mail::enqueue(conn, &Mail::PasswordChanged { to: &user.email })?;
    Ok(Some(epoch))
}

/// Uses the reset link whose token hashes to `token_hash`, which was found to belong to
/// `user_id`, and sets that user's password to `new_hash`, ending every session. Returns
/// the user, or `None` if the link is no longer live (used, superseded or expired since it
/// was looked up, or its user deactivated): then nothing changed. Call in a write
/// transaction; `now` is the policy clock's time.
pub fn reset_password(
    conn: &mut AnyConnection,
    user_id: &str,
    token_hash: &str,
    new_hash: &str,
    ip: Option<String>,
    now: i64,
) -> diesel::QueryResult<Option<User>> {
    // The user's row first, as every change to a user does (so a change of password and a
    // reset, each deleting the other's link, cannot deadlock on PostgreSQL).
    User::lock(conn, user_id)?;
    if !PasswordResets::claim(conn, user_id, token_hash, now)? {
        return Ok(None);
    }
    let Some(user) = User::find(conn, user_id)? else {
        return Ok(None);
    };
    User::set_password_hash(conn, &user.id, new_hash)?;
    end_sessions_of_user(conn, &user.id)?;
    Event::against_user(Kind::PasswordReset, &user, ip)
        .with_detail("with a link mailed to the account's address; every session signed out")
        .record(conn)?;
    mail::enqueue(conn, &Mail::PasswordReset { to: &user.email })?;
    Ok(Some(user))
}
