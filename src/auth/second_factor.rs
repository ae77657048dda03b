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
//! - Every check first claims an attempt from the per-account limit (`limits`), under the
//!   user's row lock; while the second step is locked nothing is checked or consumed, and
//!   the answer is the one a wrong code gets.
//! - A per-IP bucket handed to `verify_totp` is charged first, in the same transaction as
//!   the check (one transaction per sign-in step instead of two); when it refuses, the
//!   transaction is rolled back: nothing is claimed, checked or consumed.

use actix_web::web;

use crate::audit::{Event, Kind};
use crate::auth::totp::TotpSecret;
use crate::db::models::{Account, RecoveryCodes, TotpCredential, User};
use crate::db::{AnyConnection, now};
use crate::domain::{RecoveryCode, TotpCode};
use crate::limits::{
    Attempt, Bucket, Limits, claim_second_factor_attempt, clear_second_factor_failures,
    lock_seconds,
};
use crate::mail::Mail;
use crate::session_store::end_sessions_of_user;
use crate::state::AppState;
use crate::web::error::AppError;

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
                // Policy may have changed since the request began (an admin turning on
                // "Require 2FA" a moment ago): decided again under the user's lock.
                if let Some(account) = Account::load(conn, &user.id, now())?
                    && account.two_factor_enforced()
                {
                    return Err(AppError::Forbidden(
                        "Two-factor sign-in is required for your account, so it cannot be turned off.".into(),
                    ));
                }
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
/// `charge`: a rate-limit bucket to take one request from first, with the words of its
/// refusal (429).
pub async fn verify_totp(
    state: &web::Data<AppState>,
    user: &User,
    code: TotpCode,
    purpose: Purpose,
    ip: Option<String>,
    charge: Option<(Bucket, &'static str)>,
) -> Result<TotpCheck, AppError> {
    let shared = state.clone();
    let user = user.clone();
    let now_ms = crate::limits::now_ms();
    state
        .db
        .write(move |conn| {
            if let Some((bucket, message)) = &charge
                && let Err(wait) = bucket.take(conn, now_ms)?
            {
                return Err(AppError::too_many_requests(wait, message));
            }
            let attempt =
                claim_second_factor_attempt(conn, &user.id, now(), &shared.settings.limits)?;
            let detail = format!("authenticator code, for {}", purpose.as_str());
            if let Some(refused) = refused_unchecked(attempt) {
                Event::by_user(Kind::SecondFactorFailed, &user, ip)
                    .with_detail(format!("{detail}; {refused}"))
                    .record(conn)?;
                return Ok(TotpCheck::Wrong);
            }
            let check = check_totp(conn, &shared, &user.id, &code)?;
            let kind = match check {
                TotpCheck::Accepted { .. } => Kind::SecondFactorSucceeded,
                TotpCheck::Wrong | TotpCheck::NotEnrolled => Kind::SecondFactorFailed,
                TotpCheck::Replayed => Kind::ReplayRefused,
            };
            Event::by_user(kind, &user, ip.clone())
                .with_detail(detail)
                .record(conn)?;
            if let TotpCheck::Accepted { .. } = check {
                clear_second_factor_failures(conn, &user.id)?;
                let ended_sessions = purpose.on_success(conn, &user, ip)?;
                return Ok(TotpCheck::Accepted { ended_sessions });
            }
            note_lock(conn, &user, attempt, &shared.settings.limits, ip)?;
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

/// Why an attempt was refused without looking at the code, if it was.
fn refused_unchecked(attempt: Attempt) -> Option<String> {
    match attempt {
        Attempt::Allowed { .. } => None,
        Attempt::Locked { until } => Some(format!(
            "refused unchecked: the second step is locked until {}",
            crate::words::date_time(until)
        )),
        Attempt::Exhausted => Some(
            "refused unchecked: too many failures in a row; locked until 2FA is reset".to_owned(),
        ),
    }
}

/// Audits the lock that a failed attempt set off, if it did, and at the first lock of a
/// streak tells the owner by email.
fn note_lock(
    conn: &mut AnyConnection,
    user: &User,
    attempt: Attempt,
    limits: &Limits,
    ip: Option<String>,
) -> Result<(), AppError> {
    let Attempt::Allowed { failures } = attempt else {
        return Ok(());
    };
    let detail = if failures >= limits.most_failures {
        format!("{failures} failures in a row: locked until 2FA is reset")
    } else if let Some(seconds) = lock_seconds(failures, limits) {
        format!(
            "{failures} failures in a row: locked for {}",
            crate::words::duration_words(seconds)
        )
    } else {
        return Ok(());
    };
    Event::against_user(Kind::SecondFactorLocked, user, ip)
        .with_detail(detail)
        .record(conn)?;
    // Someone who got past the password is failing the second step: the owner should
    // know (once per streak, when the first lock begins) that the password may be known.
    if failures == limits.lock_after {
        crate::mail::enqueue(
            conn,
            &Mail::SecondFactorFailures {
                to: &user.email,
                failures,
            },
        )?;
    }
    Ok(())
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
    // The attempt is claimed before the (slow) comparisons, so parallel guesses are
    // bounded by the limit like authenticator codes are.
    let user_id = user.id.clone();
    let limits = state.settings.limits;
    let detail = format!("recovery code, for {}", purpose.as_str());
    let (attempt, candidates) = state
        .db
        .write(move |conn| {
            let attempt = claim_second_factor_attempt(conn, &user_id, now(), &limits)?;
            let candidates = RecoveryCodes::unused(conn, &user_id)?;
            Ok::<_, AppError>((attempt, candidates))
        })
        .await?;
    // The bcrypt comparisons run outside any transaction, on the bounded hashing pool —
    // also while locked, so that the time of the answer does not tell a lock apart.
    let matched = state
        .hasher
        .run_bounded(move || {
            Ok(crate::auth::recovery::find_match(&code, &candidates).map(str::to_owned))
        })
        .await?;
    if let Some(refused) = refused_unchecked(attempt) {
        let event = Event::by_user(Kind::SecondFactorFailed, user, ip)
            .with_detail(format!("{detail}; {refused}"));
        state
            .db
            .run(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
        return Ok(None);
    }
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
                Event::by_user(Kind::SecondFactorFailed, &user, ip.clone())
                    .with_detail(detail)
                    .record(conn)?;
                note_lock(conn, &user, attempt, &limits, ip)?;
                return Ok(None);
            }
            clear_second_factor_failures(conn, &user.id)?;
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
