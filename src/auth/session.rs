//! The login state machine, kept in the server-side session behind one typed wrapper.
//!
//! ```text
//! Anonymous ──password ok──▶ PasswordVerified{user, at} ──TOTP or recovery code ok──▶ Full
//!     ▲        (no 2FA: straight to Full)     │ expires after LOGIN_STEP_TIMEOUT (5 min)
//!     └──────────────── sign-out, expiry, the user's sessions ended ◀──────────┘
//! ```
//!
//! Every transition and the liveness rule are methods of [`LoginState`] here
//! (`after_password`, `complete`, `signed_up`, `check`, `is_alive`); handlers and the guard
//! ask them and never rebuild the rules. Only this module reads what the session store
//! keeps ([`StoredSession`]).
//!
//! Invariants:
//! - The state is one serialized enum under one key: never a scatter of boolean flags.
//! - Every step up renews the session id (fixation) and the CSRF token.
//! - `USER_ID_KEY` mirrors the state's user so the store can end a user's sessions.
//! - Reading the session never writes it: values are only inserted or removed when they
//!   change, so a page view costs no session write.

use actix_session::Session;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use std::collections::HashMap;
use std::time::Duration;

use crate::client::ClientInfo;
use crate::db::AnyConnection;
use crate::db::models::{Sessions, User};
use crate::domain::UserId;

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
        user_id: UserId,
        /// When the password was verified (Unix seconds).
        at: i64,
        /// Where to go once signed in (already checked to be a same-site path).
        next: Option<String>,
        /// The user's session epoch when the password was checked.
        epoch: i64,
    },
    /// Signed in with every factor the account has.
    Full {
        user_id: UserId,
        /// When this sign-in began (Unix seconds); bounds the session's absolute lifetime.
        authenticated_at: i64,
        /// The user's session epoch this session belongs to; a newer one in the database
        /// means all of the user's sessions were ended since.
        epoch: i64,
    },
}

/// How long each state lives (from the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// From the password to the second factor (`LOGIN_STEP_TIMEOUT_SECONDS`).
    pub step: Duration,
    /// From sign-in, whatever the activity (`SESSION_ABSOLUTE_HOURS`).
    pub absolute: Duration,
}

/// Why a state is no longer alive on the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The second factor was not given in time.
    Step,
    /// The session reached its absolute lifetime.
    Session,
}

impl LoginState {
    /// The password was right. A user with a second factor owes it next; one without is
    /// signed in (and the guard holds them at enrolment if policy requires 2FA).
    /// `epoch` is the user's session epoch as read before the password was checked: if
    /// their sessions are ended meanwhile, this one is already stale.
    pub fn after_password(
        user_id: UserId,
        epoch: i64,
        has_second_factor: bool,
        next: Option<String>,
        now: i64,
    ) -> LoginState {
        if has_second_factor {
            LoginState::PasswordVerified {
                user_id,
                at: now,
                next,
                epoch,
            }
        } else {
            LoginState::signed_up(user_id, epoch, now)
        }
    }

    /// Signed in with a passkey: both steps at once.
    pub fn with_passkey(user_id: UserId, epoch: i64, now: i64) -> LoginState {
        LoginState::Full {
            user_id,
            authenticated_at: now,
            epoch,
        }
    }

    /// A new account signed in at once (first-run setup): it has no second factor yet.
    pub fn signed_up(user_id: UserId, epoch: i64, now: i64) -> LoginState {
        LoginState::Full {
            user_id,
            authenticated_at: now,
            epoch,
        }
    }

    /// The second factor was given: signed in. The session's lifetime counts from the
    /// password step, when the sign-in began. Only a `PasswordVerified` state completes.
    pub fn complete(self) -> Option<LoginState> {
        match self {
            LoginState::PasswordVerified {
                user_id, at, epoch, ..
            } => Some(LoginState::Full {
                user_id,
                authenticated_at: at,
                epoch,
            }),
            _ => None,
        }
    }

    /// The same sign-in under the user's new session `epoch`, after all of their sessions
    /// were ended by something this session did itself (turning 2FA on or off…).
    fn under_epoch(self, new_epoch: i64) -> LoginState {
        match self {
            LoginState::Full {
                user_id,
                authenticated_at,
                ..
            } => LoginState::Full {
                user_id,
                authenticated_at,
                epoch: new_epoch,
            },
            other => other,
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            LoginState::Anonymous => None,
            LoginState::PasswordVerified { user_id, .. } | LoginState::Full { user_id, .. } => {
                Some(user_id)
            }
        }
    }

    /// The session epoch this state belongs to (`None` when anonymous).
    pub fn epoch(&self) -> Option<i64> {
        match self {
            LoginState::Anonymous => None,
            LoginState::PasswordVerified { epoch, .. } | LoginState::Full { epoch, .. } => {
                Some(*epoch)
            }
        }
    }

    /// When this sign-in began (`None` when anonymous).
    pub fn started_at(&self) -> Option<i64> {
        match self {
            LoginState::Anonymous => None,
            LoginState::PasswordVerified { at, .. } => Some(*at),
            LoginState::Full {
                authenticated_at, ..
            } => Some(*authenticated_at),
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, LoginState::Full { .. })
    }

    /// Whether the clock has ended this state at `now`. Anonymous never expires.
    pub fn check(&self, now: i64, lifetimes: Lifetimes) -> Result<(), Expired> {
        let (since, lifetime, expired) = match self {
            LoginState::Anonymous => return Ok(()),
            LoginState::PasswordVerified { at, .. } => (*at, lifetimes.step, Expired::Step),
            LoginState::Full {
                authenticated_at, ..
            } => (*authenticated_at, lifetimes.absolute, Expired::Session),
        };
        if now - since >= lifetime.as_secs() as i64 {
            Err(expired)
        } else {
            Ok(())
        }
    }

    /// Whether a session in this state still lets its user in: signed in (at least the
    /// password), not expired, and of the user's current session `epoch` (a newer one means
    /// all of their sessions were ended since).
    pub fn is_alive(&self, now: i64, lifetimes: Lifetimes, epoch: i64) -> bool {
        self.epoch() == Some(epoch) && self.check(now, lifetimes).is_ok()
    }
}

/// What the session store keeps of one session, as the "your sessions" page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub login: LoginState,
    /// The handle that names the session on the page (never its id).
    pub handle: String,
    pub client: ClientInfo,
}

impl StoredSession {
    /// Reads a stored session's values (`state`, as the store keeps them) under its row
    /// `id`; `None` for a session that holds no sign-in.
    pub fn read(id: &str, state: &HashMap<String, String>) -> Option<StoredSession> {
        fn value<T: serde::de::DeserializeOwned>(
            state: &HashMap<String, String>,
            key: &str,
        ) -> Option<T> {
            state.get(key).and_then(|v| serde_json::from_str(v).ok())
        }
        let login = value::<LoginState>(state, STATE_KEY)?;
        Some(StoredSession {
            login,
            // A session made before handles existed: one derived from its row id, which
            // is itself only a hash of the cookie's key.
            handle: value(state, HANDLE_KEY)
                .unwrap_or_else(|| crate::random::sha256_hex(&format!("session-handle:{id}"))),
            client: value(state, CLIENT_KEY).unwrap_or_default(),
        })
    }
}

/// Ends every session of `user_id` at once (2FA turned on, off or reset): deletes their rows
/// and bumps the user's session epoch, so that a session a racing request writes after the
/// delete is refused too (the guard compares epochs). Returns the new epoch, for the one
/// session the caller keeps. Call in a write transaction.
pub fn end_sessions_of_user(conn: &mut AnyConnection, user_id: &str) -> diesel::QueryResult<i64> {
    Sessions::delete_all_of_user(conn, user_id)?;
    User::bump_session_epoch(conn, user_id)
}

/// Whether `user`, as the guard loaded them for this request, still has the session epoch
/// the request's session was checked against. Call under the user's lock, before a change
/// that ends the user's other sessions and keeps this one (`Renewal::Rejoin`): if the
/// epoch moved, the user's sessions were ended meanwhile (a password reset or a 2FA reset
/// elsewhere, between the guard's check and this transaction), this session is one of
/// them, and it must change nothing and must not rejoin.
pub fn still_current(conn: &mut AnyConnection, user: &User) -> diesel::QueryResult<bool> {
    Ok(User::session_epoch(conn, &user.id)? == Some(user.session_epoch))
}

/// Said when [`still_current`] found this session ended meanwhile.
pub const ENDED_MEANWHILE: &str = "Your sessions were ended elsewhere while this was being saved (a password reset, say), so nothing was changed. Please sign in again.";

/// A session value that could not be written, or no randomness for a token.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session error: {0}")]
    Store(String),
    #[error("the OS RNG failed: {0}")]
    Random(#[from] getrandom::Error),
}

pub struct TypedSession(Session);

/// A message carried over a redirect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// An error (`role="alert"`) rather than a notice (`role="status"`).
    pub alert: bool,
    pub text: String,
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
    pub fn step_up(&self, state: LoginState, client: &ClientInfo) -> Result<(), SessionError> {
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
    pub fn reset(&self) -> Result<(), SessionError> {
        self.0.clear();
        self.renew()
    }

    /// A new session id when the session is written back. Not actix-session's `renew`,
    /// which its middleware carries out as a delete and an insert: the store moves the
    /// row to the new id with one update.
    fn renew(&self) -> Result<(), SessionError> {
        self.0.insert(RENEW_KEY, Renewal::Move).map_err(unexpected)
    }

    /// Ends the session: the row is deleted and the cookie removed.
    pub fn end(&self) {
        self.0.purge();
    }

    /// Keeps the user signed in here, under a new session id and the user's new `epoch`,
    /// after all of their sessions were ended (which also deleted this one's row).
    pub fn rejoin(&self, epoch: i64) -> Result<(), SessionError> {
        let state = self.state().under_epoch(epoch);
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
    pub fn enrolment_binding(&self) -> Result<String, SessionError> {
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

    /// Binds a WebAuthn challenge to this session: a hash of its CSRF token (made here if
    /// missing, in the cookie of an anonymous visitor), which every step up renews, so a
    /// challenge from another browser, from before the password step or from before a
    /// sign-out is not this session's.
    pub fn ceremony_binding(&self) -> Result<String, SessionError> {
        Ok(crate::random::sha256_hex(&format!(
            "webauthn:{}",
            self.csrf_token()?
        )))
    }

    fn write_state(&self, state: LoginState) -> Result<(), SessionError> {
        match state.user_id() {
            Some(user_id) => self.0.insert(USER_ID_KEY, user_id).map_err(unexpected)?,
            None => {
                self.0.remove(USER_ID_KEY);
            }
        }
        self.0.insert(STATE_KEY, state).map_err(unexpected)
    }

    /// The synchronizer token for forms, created on first use.
    pub fn csrf_token(&self) -> Result<String, SessionError> {
        if let Some(token) = self.existing_csrf_token() {
            return Ok(token);
        }
        let token = new_csrf_token()?;
        self.0.insert(CSRF_KEY, &token).map_err(unexpected)?;
        Ok(token)
    }

    /// This session's token if it has one, without making one (which would write the
    /// session).
    pub fn existing_csrf_token(&self) -> Option<String> {
        self.0.get::<String>(CSRF_KEY).ok().flatten()
    }

    /// Whether `submitted` is this session's token (constant time).
    pub fn csrf_matches(&self, submitted: &str) -> bool {
        match self.existing_csrf_token() {
            Some(token) => token.as_bytes().ct_eq(submitted.as_bytes()).into(),
            None => false,
        }
    }

    /// A one-time notice for the next page.
    pub fn notice(&self, text: &str) -> Result<(), SessionError> {
        self.flash(Flash {
            alert: false,
            text: text.to_owned(),
        })
    }

    /// A one-time error message for the next page (shown with `role="alert"`).
    pub fn alert(&self, text: &str) -> Result<(), SessionError> {
        self.flash(Flash {
            alert: true,
            text: text.to_owned(),
        })
    }

    fn flash(&self, flash: Flash) -> Result<(), SessionError> {
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

fn new_csrf_token() -> Result<String, SessionError> {
    Ok(crate::random::token::<32>()?)
}

fn unexpected(e: impl std::fmt::Display) -> SessionError {
    SessionError::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_with_a_stage_tag() {
        let state = LoginState::PasswordVerified {
            user_id: UserId::new("u1"),
            at: 5,
            next: None,
            epoch: 3,
        };
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"stage\":\"password_verified\""), "{json}");
        assert_eq!(serde_json::from_str::<LoginState>(&json).unwrap(), state);
        assert_eq!(state.user_id().map(UserId::as_str), Some("u1"));
        assert_eq!(LoginState::Anonymous.user_id(), None);
    }

    const LIFETIMES: Lifetimes = Lifetimes {
        step: Duration::from_secs(300),
        absolute: Duration::from_secs(12 * 3600),
    };

    #[test]
    fn a_password_leads_to_the_second_factor_only_for_users_who_have_one() {
        let owed = LoginState::after_password(UserId::new("u1"), 4, true, Some("/x".into()), 100);
        assert!(matches!(owed, LoginState::PasswordVerified { at: 100, .. }));
        let done = LoginState::after_password(UserId::new("u1"), 4, false, None, 100);
        assert_eq!(done, LoginState::signed_up(UserId::new("u1"), 4, 100));
        assert!(done.is_full());
    }

    #[test]
    fn completing_keeps_the_start_of_the_sign_in_and_only_a_pending_state_completes() {
        let owed = LoginState::after_password(UserId::new("u1"), 4, true, None, 100);
        let full = owed.complete().unwrap();
        assert_eq!(
            full,
            LoginState::Full {
                user_id: UserId::new("u1"),
                authenticated_at: 100,
                epoch: 4
            }
        );
        assert_eq!(full.clone().complete(), None);
        assert_eq!(LoginState::Anonymous.complete(), None);
    }

    #[test]
    fn each_state_expires_on_its_own_lifetime() {
        let owed = LoginState::after_password(UserId::new("u1"), 4, true, None, 1_000);
        assert_eq!(owed.check(1_299, LIFETIMES), Ok(()));
        assert_eq!(owed.check(1_300, LIFETIMES), Err(Expired::Step));
        let full = LoginState::signed_up(UserId::new("u1"), 4, 1_000);
        assert_eq!(full.check(1_000 + 12 * 3600 - 1, LIFETIMES), Ok(()));
        assert_eq!(
            full.check(1_000 + 12 * 3600, LIFETIMES),
            Err(Expired::Session)
        );
        assert_eq!(LoginState::Anonymous.check(i64::MAX, LIFETIMES), Ok(()));
    }

    #[test]
    fn a_session_is_alive_only_in_time_and_under_the_users_current_epoch() {
        let full = LoginState::signed_up(UserId::new("u1"), 4, 1_000);
        assert!(full.is_alive(1_001, LIFETIMES, 4));
        assert!(!full.is_alive(1_001, LIFETIMES, 5));
        assert!(!full.is_alive(1_000 + 12 * 3600, LIFETIMES, 4));
        assert!(!LoginState::Anonymous.is_alive(1_001, LIFETIMES, 4));
        assert_eq!(full.under_epoch(9).epoch(), Some(9));
    }

    #[test]
    fn a_stored_session_is_read_with_its_handle_and_client() {
        let login = LoginState::signed_up(UserId::new("u1"), 4, 1_000);
        let client = ClientInfo {
            ip: Some("192.0.2.1".into()),
            user_agent: None,
        };
        let mut state = HashMap::new();
        state.insert(STATE_KEY.to_owned(), serde_json::to_string(&login).unwrap());
        state.insert(
            CLIENT_KEY.to_owned(),
            serde_json::to_string(&client).unwrap(),
        );
        let stored = StoredSession::read("row", &state).unwrap();
        assert_eq!(stored.login, login);
        assert_eq!(stored.client, client);
        assert_eq!(
            stored.handle,
            crate::random::sha256_hex("session-handle:row")
        );
        state.insert(HANDLE_KEY.to_owned(), "\"h1\"".to_owned());
        assert_eq!(StoredSession::read("row", &state).unwrap().handle, "h1");
        assert_eq!(StoredSession::read("row", &HashMap::new()), None);
    }
}
