//! Second factors: one file per kind (`totp`: an authenticator app; `recovery`: the
//! single-use codes that back it up), behind what they share here — the per-account
//! attempt limit, the audit of every outcome, and what a successful check is for
//! ([`Purpose`]). Which factors a user has is [`crate::domain::Factors`], loaded with the
//! account. A new kind (security keys, email codes) is a new file here that checks its
//! proof through [`Attempt`] and [`Purpose::on_success`], and a field in `Factors`.
//!
//! Invariants:
//! - A TOTP step is accepted at most once per user, by `TotpCredential::accept_step`'s
//!   atomic update; a matching code whose step was already used is a replay.
//! - A recovery code is spent by `RecoveryCodes::spend`'s atomic update; of two requests
//!   with the same code exactly one succeeds.
//! - Every outcome is audited in the same transaction as the step or code it consumes, and
//!   a success is carried out there too (the sign-in time, turning 2FA off): a proof is
//!   never spent for a change that then did not happen.
//! - Every check first claims an attempt from the per-account limit (`limits`), under the
//!   user's row lock; while the second step is locked nothing is checked or consumed, and
//!   the answer is the one a wrong proof gets.
//! - A per-IP bucket handed to a check is charged first, in the same transaction (one
//!   transaction per sign-in step instead of two); when it refuses, the transaction is
//!   rolled back: nothing is claimed, checked or consumed.

pub mod recovery;
pub mod security_key;
pub mod totp;

use std::sync::Arc;

use crate::audit::{Event, Kind};
use crate::auth::password::PasswordHasher;
use crate::auth::secret_box::Keyring;
use crate::auth::session::{ENDED_MEANWHILE, end_sessions_of_user, still_current};
use crate::db::models::{Account, RecoveryCodes, SecurityKeys, TotpCredential, User};
use crate::db::{AnyConnection, Db, DbError, now};
use crate::domain::FactorKind;
use crate::limits::{self, Bucket, Limits, RetryAfter, lock_seconds};
use crate::mail::Mail;

/// What checking and changing second factors needs from the server, handed in by the HTTP
/// layer (cheap to clone: handles and small settings).
#[derive(Clone)]
pub struct FactorContext {
    pub db: Db,
    pub keyring: Arc<Keyring>,
    pub limits: Limits,
    /// The bounded hashing pool (bcrypt for recovery codes).
    pub hasher: PasswordHasher,
    /// bcrypt cost for new recovery codes.
    pub recovery_code_cost: u32,
    /// The WebAuthn relying party; `None` when `PUBLIC_URL` cannot be one (an IP address).
    pub webauthn: Option<Arc<crate::auth::webauthn::RelyingParty>>,
}

/// Why a factor operation did not complete, apart from a proof that was not accepted
/// (which is an answer, not an error).
#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    /// The per-IP bucket charged first refused: nothing was checked.
    #[error("{message}")]
    RateLimited {
        wait: RetryAfter,
        message: &'static str,
    },
    /// Policy forbids the change (turning 2FA off while it is required).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Another request did it first, or what it acted on is gone.
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for FactorError {
    fn from(e: diesel::result::Error) -> FactorError {
        FactorError::Unexpected(e.into())
    }
}

impl From<DbError> for FactorError {
    fn from(e: DbError) -> FactorError {
        FactorError::Unexpected(e.into())
    }
}

impl From<getrandom::Error> for FactorError {
    fn from(e: getrandom::Error) -> FactorError {
        FactorError::Unexpected(anyhow::anyhow!("the OS RNG failed: {e}"))
    }
}

/// What a second factor is being checked for: named in the audit log, and on success
/// carried out in the same transaction that consumed the proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Records the sign-in time.
    SignIn,
    /// Only proves presence; the caller then makes the new set (bcrypt takes a while, and
    /// must not run inside a transaction), re-checking that 2FA is still on.
    NewRecoveryCodes,
    /// Removes the authenticator app and ends all the user's sessions; with it, their whole
    /// second factor if they have no security key.
    TurnOff,
}

/// Policy keeps this user's 2FA on (decided again under the user's lock).
pub const MUST_STAY_ON: &str =
    "Two-factor sign-in is required for your account, so it cannot be turned off.";

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign-in",
            Purpose::NewRecoveryCodes => "new recovery codes",
            Purpose::TurnOff => "turning off two-factor sign-in",
        }
    }

    /// The audit detail of a check of `kind` for this purpose.
    fn detail(self, kind: FactorKind) -> String {
        format!("{}, for {}", kind.proof(), self.as_str())
    }

    /// Carries out the purpose; returns the user's new session epoch if it ended all of
    /// their sessions.
    fn on_success(
        self,
        conn: &mut AnyConnection,
        user: &User,
        ip: Option<String>,
    ) -> Result<Option<i64>, FactorError> {
        Ok(match self {
            Purpose::SignIn => {
                User::record_sign_in(conn, &user.id, now())?;
                signed_in_event(user, ip).record(conn)?;
                None
            }
            Purpose::NewRecoveryCodes => None,
            Purpose::TurnOff => {
                if !still_current(conn, user)? {
                    return Err(FactorError::Conflict(ENDED_MEANWHILE));
                }
                // With a security key left, only the app goes: the account keeps a second
                // factor (and its recovery codes), which policy allows.
                if SecurityKeys::count_for(conn, &user.id)? > 0 {
                    TotpCredential::remove_app(conn, &user.id)?;
                    let epoch = end_sessions_of_user(conn, &user.id)?;
                    Event::by_user(Kind::AuthenticatorRemoved, user, ip).record(conn)?;
                    crate::mail::enqueue(conn, &Mail::AuthenticatorRemoved { to: &user.email })?;
                    return Ok(Some(epoch));
                }
                // Policy may have changed since the request began (an admin turning on
                // "Require 2FA" a moment ago): decided again under the user's lock.
                if let Some(account) = Account::load(conn, &user.id, now())?
                    && account.two_factor_enforced()
                {
                    return Err(FactorError::Forbidden(MUST_STAY_ON));
                }
                remove_all(conn, &user.id)?;
                let epoch = end_sessions_of_user(conn, &user.id)?;
                Event::by_user(Kind::TwoFactorDisabled, user, ip).record(conn)?;
                crate::mail::enqueue(conn, &Mail::TwoFactorDisabled { to: &user.email })?;
                Some(epoch)
            }
        })
    }
}

/// The event of a sign-in completed by a second factor.
fn signed_in_event(user: &User, ip: Option<String>) -> Event {
    Event::by_user(Kind::SignInSucceeded, user, ip).with_detail("password and second factor")
}

/// Removes every second factor of the user — each kind's credentials, any enrolment in
/// progress, the recovery codes. Call in a write transaction after `User::lock`. `false`:
/// the user had none.
pub fn remove_all(conn: &mut AnyConnection, user_id: &str) -> diesel::QueryResult<bool> {
    let app = TotpCredential::remove_all_for(conn, user_id)?;
    let keys = SecurityKeys::remove_all_for(conn, user_id)?;
    Ok(app + keys > 0)
}

/// A user's second factors as their security page lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overview {
    /// When the authenticator app was enrolled, if it is.
    pub authenticator_since: Option<i64>,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
}

/// Reads what `user_id` has set up, as of now (not as of the account's loading).
pub async fn overview(ctx: &FactorContext, user_id: &str) -> Result<Overview, FactorError> {
    let user_id = user_id.to_owned();
    ctx.db
        .run(move |conn| {
            Ok(Overview {
                authenticator_since: TotpCredential::find(conn, &user_id)?.map(|c| c.enabled_at),
                recovery_codes_left: RecoveryCodes::count_unused(conn, &user_id)?,
            })
        })
        .await
}

/// One attempt at the second step, claimed from the user's limit before any proof is
/// looked at (see `limits::claim_second_factor_attempt`).
#[derive(Debug, Clone, Copy)]
struct Attempt(limits::Attempt);

impl Attempt {
    /// Opens a check of `user`'s proof: charges `charge` (refused: the caller's transaction
    /// rolls back), then claims the attempt. `None`: refused without looking at the proof,
    /// and audited with `detail`.
    fn open(
        conn: &mut AnyConnection,
        charge: &Option<(Bucket, &'static str)>,
        now_ms: i64,
        user: &User,
        limits: &Limits,
        detail: &str,
        ip: &Option<String>,
    ) -> Result<Option<Attempt>, FactorError> {
        if let Some((bucket, message)) = charge
            && let Err(wait) = bucket.take(conn, now_ms)?
        {
            return Err(FactorError::RateLimited { wait, message });
        }
        let attempt = Attempt::claim(conn, &user.id, limits)?;
        if let Some(refused) = attempt.refused_unchecked() {
            Event::by_user(Kind::SecondFactorFailed, user, ip.clone())
                .with_detail(format!("{detail}; {refused}"))
                .record(conn)?;
            return Ok(None);
        }
        Ok(Some(attempt))
    }

    fn claim(
        conn: &mut AnyConnection,
        user_id: &str,
        limits: &Limits,
    ) -> Result<Attempt, FactorError> {
        Ok(Attempt(limits::claim_second_factor_attempt(
            conn,
            user_id,
            now(),
            limits,
        )?))
    }

    /// Why this attempt is refused without looking at the proof, if it is.
    fn refused_unchecked(self) -> Option<String> {
        match self.0 {
            limits::Attempt::Allowed { .. } => None,
            limits::Attempt::Locked { until } => Some(format!(
                "refused unchecked: the second step is locked until {}",
                crate::words::date_time(until)
            )),
            limits::Attempt::Exhausted => Some(
                "refused unchecked: too many failures in a row; locked until 2FA is reset"
                    .to_owned(),
            ),
        }
    }

    /// The proof was accepted: the failure streak ends.
    fn succeeded(conn: &mut AnyConnection, user_id: &str) -> Result<(), FactorError> {
        Ok(limits::clear_second_factor_failures(conn, user_id)?)
    }

    /// Audits the lock that this failed attempt set off, if it did, and at the first lock
    /// of a streak tells the owner by email.
    fn failed(
        self,
        conn: &mut AnyConnection,
        user: &User,
        limits: &Limits,
        ip: Option<String>,
    ) -> Result<(), FactorError> {
        let limits::Attempt::Allowed { failures } = self.0 else {
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
}

/// What the user is told when a code is not accepted. Wrong and replayed codes get the
/// same words: the difference is for the audit log, not for whoever holds the code.
pub const CODE_REFUSED: &str = "That code was not accepted. Codes change every 30 seconds and each works once: wait for the next one and try again.";

pub const RECOVERY_CODE_REFUSED: &str =
    "That recovery code was not accepted. Check it and try again; each code works only once.";
