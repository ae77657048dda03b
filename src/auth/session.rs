//! The login state machine, kept in the server-side session behind one typed wrapper.
//!
//! ```text
//! Anonymous ──password ok──▶ PasswordVerified{user, at} ──TOTP or recovery code ok──▶ Full
//!     ▲        (no 2FA: straight to Full)     │ expires after LOGIN_STEP_TIMEOUT (5 min)
//!     └──────────────── sign-out, expiry, the user's sessions ended ◀──────────┘
//! ```
//!
//! Invariants:
//! - The state is one serialized enum under one key: never a scatter of boolean flags.
//! - Every step up renews the session id (fixation) and the CSRF token.
//! - `USER_ID_KEY` mirrors the state's user so the store can end a user's sessions.
//! - Reading the session never writes it: values are only inserted or removed when they
//!   change, so a page view costs no session write.

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::client::ClientInfo;
use crate::web::error::AppError;

const STATE_KEY: &str = "login";
/// Read by the session store to fill `sessions.user_id`.
pub const USER_ID_KEY: &str = "uid";
/// Read by the session store, which keeps a session holding only this in its cookie.
pub const CSRF_KEY: &str = "csrf";
const FLASH_KEY: &str = "flash";
const ENROLMENT_KEY: &str = "enrol";
/// A random handle naming this session on the "your sessions" page (never the id).
pub const HANDLE_KEY: &str = "handle";
/// Where the session was started from: `ClientInfo`.
pub const CLIENT_KEY: &str = "client";
/// Asks the session store to give the session a new id as it writes it back (a
/// [`Renewal`]); the store removes it, so it is never stored (see `session_store`).
pub const RENEW_KEY: &str = "renew";

/// How the store gives a session its new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Renewal {
    /// Move the row to the new id. A row that is gone stays gone: the session was ended
    /// meanwhile (signed out in another tab, reset, expired), and that wins.
    Move,
    /// The row was deleted on purpose with all of the user's sessions, and this session
    /// carries on: write it anew.
    Rejoin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum LoginState {
    #[default]
    Anonymous,
    /// The password was right; the second factor is still owed.
    PasswordVerified {
        user_id: String,
        /// When the password was verified (Unix seconds).
        at: i64,
        /// Where to go once signed in (already checked to be a same-site path).
        next: Option<String>,
        /// The user's session epoch when the password was checked.
        epoch: i64,
    },
    /// Signed in with every factor the account has.
    Full {
        user_id: String,
        /// When this sign-in began (Unix seconds); bounds the session's absolute lifetime.
        authenticated_at: i64,
        /// The user's session epoch this session belongs to; a newer one in the database
        /// means all of the user's sessions were ended since.
        epoch: i64,
    },
}

impl LoginState {
    pub fn user_id(&self) -> Option<&str> {
        match self {
            LoginState::Anonymous => None,
            LoginState::PasswordVerified { user_id, .. } | LoginState::Full { user_id, .. } => {
                Some(user_id)
            }
        }
    }
}

pub struct TypedSession(Session);

/// A message carried over a redirect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// An error (`role="alert"`) rather than a notice (`role="status"`).
    pub alert: bool,
    pub text: String,
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<TypedSession, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(TypedSession(req.get_session())))
    }
}

impl TypedSession {
    pub fn of(session: Session) -> TypedSession {
        TypedSession(session)
    }

    /// The current state; anything missing or unreadable counts as anonymous.
    pub fn state(&self) -> LoginState {
        self.0
            .get::<LoginState>(STATE_KEY)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Step up to a new state under a new session id, a new CSRF token and a new
    /// enrolment nonce (made here, not on first use, so two setup pages loaded at once
    /// by one session agree on it).
    pub fn step_up(&self, state: LoginState, client: &ClientInfo) -> Result<(), AppError> {
        self.renew()?;
        self.write_state(state)?;
        self.0
            .insert(HANDLE_KEY, new_csrf_token()?)
            .map_err(unexpected)?;
        self.0.insert(CLIENT_KEY, client).map_err(unexpected)?;
        self.0
            .insert(CSRF_KEY, new_csrf_token()?)
            .map_err(unexpected)?;
        self.0
            .insert(ENROLMENT_KEY, new_csrf_token()?)
            .map_err(unexpected)?;
        Ok(())
    }

    /// Back to anonymous but keep the session (so a message can be shown); new id.
    pub fn reset(&self) -> Result<(), AppError> {
        self.0.clear();
        self.renew()
    }

    /// A new session id when the session is written back. Not actix-session's `renew`,
    /// which its middleware carries out as a delete and an insert: the store moves the
    /// row to the new id with one update.
    fn renew(&self) -> Result<(), AppError> {
        self.0.insert(RENEW_KEY, Renewal::Move).map_err(unexpected)
    }

    /// Ends the session: the row is deleted and the cookie removed.
    pub fn end(&self) {
        self.0.purge();
    }

    /// Keeps the user signed in here, under a new session id and the user's new `epoch`,
    /// after all of their sessions were ended (which also deleted this one's row).
    pub fn rejoin(&self, epoch: i64) -> Result<(), AppError> {
        let state = match self.state() {
            LoginState::Full {
                user_id,
                authenticated_at,
                ..
            } => LoginState::Full {
                user_id,
                authenticated_at,
                epoch,
            },
            other => other,
        };
        self.0
            .insert(RENEW_KEY, Renewal::Rejoin)
            .map_err(unexpected)?;
        self.write_state(state)
    }

    /// This session's handle on the sessions page (set at every step up).
    pub fn handle(&self) -> Option<String> {
        self.0.get::<String>(HANDLE_KEY).ok().flatten()
    }

    /// SHA-256 (hex) of this session's enrolment nonce (see [`Self::step_up`]; made here if
    /// missing): binds a pending enrolment to the session that started it.
    pub fn enrolment_binding(&self) -> Result<String, AppError> {
        let nonce = match self.0.get::<String>(ENROLMENT_KEY).ok().flatten() {
            Some(nonce) => nonce,
            None => {
                let nonce = new_csrf_token()?;
                self.0.insert(ENROLMENT_KEY, &nonce).map_err(unexpected)?;
                nonce
            }
        };
        Ok(crate::random::sha256_hex(&nonce))
    }

    fn write_state(&self, state: LoginState) -> Result<(), AppError> {
        match state.user_id() {
            Some(user_id) => self.0.insert(USER_ID_KEY, user_id).map_err(unexpected)?,
            None => {
                self.0.remove(USER_ID_KEY);
            }
        }
        self.0.insert(STATE_KEY, state).map_err(unexpected)
    }

    /// The synchronizer token for forms, created on first use.
    pub fn csrf_token(&self) -> Result<String, AppError> {
        if let Some(token) = self.0.get::<String>(CSRF_KEY).ok().flatten() {
            return Ok(token);
        }
        let token = new_csrf_token()?;
        self.0.insert(CSRF_KEY, &token).map_err(unexpected)?;
        Ok(token)
    }

    /// Whether `submitted` is this session's token (constant time).
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        match self.0.get::<String>(CSRF_KEY).ok().flatten() {
            Some(token) => token.as_bytes().ct_eq(submitted.as_bytes()).into(),
            None => false,
        }
    }

    /// A one-time notice for the next page.
    pub fn notice(&self, text: &str) -> Result<(), AppError> {
        self.flash(Flash {
            alert: false,
            text: text.to_owned(),
        })
    }

    /// A one-time error message for the next page (shown with `role="alert"`).
    pub fn alert(&self, text: &str) -> Result<(), AppError> {
        self.flash(Flash {
            alert: true,
            text: text.to_owned(),
        })
    }

    fn flash(&self, flash: Flash) -> Result<(), AppError> {
        self.0.insert(FLASH_KEY, flash).map_err(unexpected)
    }

    pub fn take_flash(&self) -> Option<Flash> {
        if !self.0.contains_key(FLASH_KEY) {
            return None;
        }
        self.0
            .remove(FLASH_KEY)
            .and_then(|v| serde_json::from_str(&v).ok())
    }
}

fn new_csrf_token() -> Result<String, AppError> {
    crate::random::token::<32>().map_err(|e| AppError::Unexpected(e.into()))
}

fn unexpected(e: impl std::fmt::Display) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("session error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_with_a_stage_tag() {
        let state = LoginState::PasswordVerified {
            user_id: "u1".into(),
            at: 5,
            next: None,
            epoch: 3,
        };
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"stage\":\"password_verified\""), "{json}");
        assert_eq!(serde_json::from_str::<LoginState>(&json).unwrap(), state);
        assert_eq!(state.user_id(), Some("u1"));
        assert_eq!(LoginState::Anonymous.user_id(), None);
    }
}
