//! Checking a second factor against what is stored: the one place that decrypts a TOTP
//! secret to verify a code, and the one place that spends a recovery code.
//!
//! Invariants:
//! - A TOTP step is accepted at most once per user, by `TotpCredential::accept_step`'s
//!   atomic update; a matching code whose step was already used is a replay.
//! - A recovery code is spent by `RecoveryCodes::spend`'s atomic update; of two requests
//!   with the same code exactly one succeeds.
//! - Every outcome is audited in the same transaction as the step or code it consumes, and
//!   a success for signing in records the sign-in time there too.

use actix_web::web;

use crate::audit::{Event, Kind};
use crate::auth::totp::TotpSecret;
use crate::db::models::{RecoveryCodes, TotpCredential, User};
use crate::db::{AnyConnection, now};
use crate::domain::{RecoveryCode, TotpCode};
use crate::error::AppError;
use crate::mail::Mail;
use crate::session_store::end_sessions_of_user;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// `ended_sessions`: the user's new session epoch, when the purpose ended all of their
    /// sessions (the caller's own session rejoins under it).
    Accepted {
        ended_sessions: Option<i64>,
    },
    Wrong,
    /// The code was right but its time step was used already.
    Replayed,
    NotEnrolled,
}

/// What a second factor is being checked for: named in the audit log, and on success
/// carried out in the same transaction that consumed the code — so a code is never spent
/// for a change that then did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Records the sign-in time.
    SignIn,
    /// Only proves presence; the caller then makes the new set (bcrypt takes a while, and
    /// must not run inside a transaction), re-checking that 2FA is still on.
    NewRecoveryCodes,
    /// Removes the user's whole second factor and ends all their sessions.
    TurnOff,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign-in",
            Purpose::NewRecoveryCodes => "new recovery codes",
            Purpose::TurnOff => "turning off two-factor sign-in",
        }
    }

    /// Carries out the purpose; returns the user's new session epoch if it ended all of
    /// their sessions.
    fn on_success(
        self,
        conn: &mut AnyConnection,
        user: &User,
        ip: Option<String>,
    ) -> Result<Option<i64>, AppError> {
        Ok(match self {
            Purpose::SignIn => {
                User::record_sign_in(conn, &user.id, now())?;
                Event::by_user(Kind::SignInSucceeded, user, ip)
                    .with_detail("password and second factor")
                    .record(conn)?;
                None
            }
            Purpose::NewRecoveryCodes => None,
            Purpose::TurnOff => {
                TotpCredential::remove_all_for(conn, &user.id)?;
                let epoch = end_sessions_of_user(conn, &user.id)?;
                Event::by_user(Kind::TwoFactorDisabled, user, ip).record(conn)?;
                crate::mail::enqueue(conn, &Mail::TwoFactorDisabled { to: &user.email })?;
                Some(epoch)
            }
        })
    }
}

/// What the user is told when a code is not accepted. Wrong and replayed codes get the
/// same words: the difference is for the audit log, not for whoever holds the code.
pub const CODE_REFUSED: &str = "That code was not accepted. Codes change every 30 seconds and each works once: wait for the next one and try again.";

pub const RECOVERY_CODE_REFUSED: &str =
    "That recovery code was not accepted. Check it and try again; each code works only once.";

/// Checks an authenticator code for `user`; if it is good and fresh, consumes its time
/// step. Audits the outcome. (Cheap: one HMAC per tolerated step, one transaction.)
pub async fn verify_totp(
    state: &web::Data<AppState>,
    user: &User,
    code: TotpCode,
    purpose: Purpose,
    ip: Option<String>,
) -> Result<TotpCheck, AppError> {
    let shared = state.clone();
    let user = user.clone();
    state
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            let check = check_totp(conn, &shared, &user.id, &code)?;
            let kind = match check {
                TotpCheck::Accepted { .. } => Kind::SecondFactorSucceeded,
                TotpCheck::Wrong | TotpCheck::NotEnrolled => Kind::SecondFactorFailed,
                TotpCheck::Replayed => Kind::ReplayRefused,
            };
            Event::by_user(kind, &user, ip.clone())
                .with_detail(format!("authenticator code, for {}", purpose.as_str()))
                .record(conn)?;
            if let TotpCheck::Accepted { .. } = check {
                let ended_sessions = purpose.on_success(conn, &user, ip)?;
                return Ok(TotpCheck::Accepted { ended_sessions });
            }
            Ok(check)
        })
        .await
}

fn check_totp(
    conn: &mut AnyConnection,
    state: &AppState,
    user_id: &str,
    code: &TotpCode,
) -> Result<TotpCheck, AppError> {
    let Some(credential) = TotpCredential::find(conn, user_id)? else {
        return Ok(TotpCheck::NotEnrolled);
    };
    let secret = TotpSecret::unseal(&state.keyring, user_id, &credential.sealed())?;
    Ok(match secret.matching_step(code, now())? {
        None => TotpCheck::Wrong,
        Some(step) if TotpCredential::accept_step(conn, user_id, step)? => TotpCheck::Accepted {
            ended_sessions: None,
        },
        Some(_) => TotpCheck::Replayed,
    })
}

/// A recovery code that was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Unused codes left.
    pub remaining: i64,
    /// As in [`TotpCheck::Accepted`].
    pub ended_sessions: Option<i64>,
}

/// Spends one of `user`'s recovery codes if `code` matches an unused one. Audits success
/// and failure.
pub async fn spend_recovery_code(
    state: &AppState,
    user: &User,
    code: RecoveryCode,
    purpose: Purpose,
    ip: Option<String>,
) -> Result<Option<Spent>, AppError> {
    let user_id = user.id.clone();
    let candidates = state
        .db
        .run(move |conn| Ok::<_, AppError>(RecoveryCodes::unused(conn, &user_id)?))
        .await?;
    // The bcrypt comparisons run outside any transaction, on the bounded hashing pool.
    let matched = state
        .hasher
        .run_bounded(move || {
            Ok(crate::auth::recovery::find_match(&code, &candidates).map(str::to_owned))
        })
        .await?;
    let user = user.clone();
    state
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            let spent = match &matched {
                Some(id) => RecoveryCodes::spend(conn, id, now())?,
                None => false,
            };
            if !spent {
                Event::by_user(Kind::SecondFactorFailed, &user, ip)
                    .with_detail(format!("recovery code, for {}", purpose.as_str()))
                    .record(conn)?;
                return Ok(None);
            }
            let remaining = RecoveryCodes::count_unused(conn, &user.id)?;
            Event::by_user(Kind::RecoveryCodeUsed, &user, ip.clone())
                .with_detail(format!("for {}; {remaining} left", purpose.as_str()))
                .record(conn)?;
            let to = &user.email;
            crate::mail::enqueue(conn, &Mail::RecoveryCodeUsed { to, remaining })?;
            let ended_sessions = purpose.on_success(conn, &user, ip)?;
            Ok(Some(Spent {
                remaining,
                ended_sessions,
            }))
        })
        .await
}
