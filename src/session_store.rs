//! actix-session's `SessionStore` over our database, so sessions survive restarts, are
//! shared by every instance, and can be ended per user.
//!
//! Invariants:
//! - The cookie carries a 256-bit key from the OS RNG; the table stores only its SHA-256,
//!   so reading the table does not let anyone present a session.
//! - A session ends when idle for `idle` (see [`IdleRule`]), checked at every load. A row older than
//!   `absolute` is dropped too, but a row's age restarts when its id is renewed: the limit
//!   that counts from sign-in is the guard's, on the login state's `authenticated_at`.
//! - An update never brings back a session that was ended meanwhile (by sign-out, an admin
//!   reset, or "end my other sessions"): it only touches an existing row. The one exception
//!   is a session that ended all of its user's sessions itself and carries on
//!   (`Renewal::Rejoin`): its row is written anew.
//! - `last_seen_at` is written lazily, at most every tenth of `idle` (and at least once a
//!   minute) per session, not on every request; the idle rule allows for that lag, so a
//!   session that keeps making requests never reaches its idle timeout.
//! - A new session id (`TypedSession`'s renewals, marked with `RENEW_KEY`) moves the row to
//!   the new id in one update, so the old id stops working in the same statement; the mark
//!   is never stored. (actix-session's own `renew` would delete and insert: two trips.)
//! - A session whose whole state is a CSRF token (a visitor who has only seen the sign-in
//!   form) has no row: its key is `anon.<token>`, and the signed cookie carries it. Showing
//!   the form thus writes nothing, and `POST /login` has no row to load or delete. The
//!   token is checked as before: the form's must equal the one in this browser's signed,
//!   HttpOnly, SameSite cookie, which another site can neither read nor forge. Any other
//!   state (a notice, a login step) gets a row and a random key, as before.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use diesel::prelude::*;

use crate::auth::session::{CSRF_KEY, RENEW_KEY, Renewal};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::db::models::{AccountRecord, SessionRow, Sessions};
use crate::db::{AnyConnection, Db, DbError, now};
use crate::random;

/// When a session is over for being idle, given that `last_seen_at` is written lazily.
///
/// A request refreshes `last_seen_at` only once it is `touch_interval` old, so the row can
/// lag the latest request by up to that much. Counting `idle` from the row alone would end
/// a session that keeps making requests (with a one-minute timeout and a request every 50
/// seconds, the row would say 100 seconds idle). So a session is over once `idle` has
/// passed since the latest moment its last request could have been: `last_seen_at +
/// touch_interval + idle`. It never ends early; an idle one ends at most `touch_interval`
/// late, which is a tenth of `idle` and never more than a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleRule {
    idle: i64,
}

impl IdleRule {
    pub fn new(idle: Duration) -> IdleRule {
        IdleRule {
            idle: idle.as_secs() as i64,
        }
    }

    fn touch_interval(self) -> i64 {
        (self.idle / 10).clamp(1, 60)
    }

    /// Whether a request at `now` should write `last_seen_at` anew.
    fn needs_touch(self, last_seen_at: i64, now: i64) -> bool {
        now - last_seen_at >= self.touch_interval()
    }

    /// Sessions last seen at or before this are over at `now`.
    pub fn last_seen_cutoff(self, now: i64) -> i64 {
        now - self.idle - self.touch_interval()
    }

    fn is_over(self, last_seen_at: i64, now: i64) -> bool {
        last_seen_at <= self.last_seen_cutoff(now)
    }
}

tokio::task_local! {
    /// The account read with this request's session row (see [`loaded_account`]).
    static LOADED_ACCOUNT: RefCell<Option<AccountRecord>>;
}

/// Middleware, outside the session's: gives each request a slot for the account that its
/// session's load reads in the same query, so that the guard need not read it again.
pub async fn account_slot(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    LOADED_ACCOUNT
        .scope(RefCell::new(None), next.call(req))
        .await
}

/// The account of the user this request's session row belongs to, as its load read it
/// (taken: at most once per request). `None` when the session has no row or no user, or
/// outside a request.
pub fn loaded_account() -> Option<AccountRecord> {
    LOADED_ACCOUNT
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
}

/// The key prefix of a session kept wholly in its cookie (see the module's invariants).
const ANONYMOUS_PREFIX: &str = "anon.";

pub type State = HashMap<String, String>;

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    idle: IdleRule,
    absolute: i64,
}

impl DbSessionStore {
    pub fn new(db: Db, idle: Duration, absolute: Duration) -> DbSessionStore {
        DbSessionStore {
            db,
            idle: IdleRule::new(idle),
            absolute: absolute.as_secs() as i64,
        }
    }
}

/// A stored session of a user, for the "your sessions" page.
#[derive(Debug, Clone)]
pub struct UserSession {
    /// The row id (a hash of the cookie's key): used here, never shown.
    pub id: String,
    pub state: State,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// The sessions of `user_id` that are still alive at `now`, most recently used first.
pub fn sessions_of_user(
    conn: &mut AnyConnection,
    user_id: &str,
    idle: Duration,
) -> QueryResult<Vec<UserSession>> {
    let cutoff = IdleRule::new(idle).last_seen_cutoff(now());
    let rows = Sessions::of_user_seen_after(conn, user_id, cutoff)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, state, created_at, last_seen_at)| {
            Some(UserSession {
                id,
                state: serde_json::from_str(&state).ok()?,
                created_at,
                last_seen_at,
            })
        })
        .collect())
}

/// Deletes one session of `user_id` (another user's id deletes nothing).
pub fn delete_session_of_user(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
) -> QueryResult<bool> {
    Sessions::delete_one_of_user(conn, user_id, id)
}

/// Deletes up to `limit` sessions that can no longer be used at `now` (the sweeper's part
/// of the store).
pub fn delete_expired(
    conn: &mut AnyConnection,
    idle: Duration,
    absolute: Duration,
    now: i64,
    limit: i64,
) -> QueryResult<usize> {
    Sessions::delete_stale(
        conn,
        IdleRule::new(idle).last_seen_cutoff(now),
        now - absolute.as_secs() as i64,
        limit,
    )
}

fn row_id(key: &SessionKey) -> String {
    random::sha256_hex(key.as_ref())
}

/// The user a session belongs to, as the typed session layer records it.
fn user_of(state: &State) -> Option<String> {
    state
        .get(crate::auth::session::USER_ID_KEY)
        .and_then(|v| serde_json::from_str::<String>(v).ok())
}

/// A CSRF token as `TypedSession` makes them: 32 random bytes, URL-safe base64.
fn is_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token, if `state` holds nothing else.
fn anonymous_token(state: &State) -> Option<String> {
    if state.len() != 1 {
        return None;
    }
    let token = serde_json::from_str::<String>(state.get(CSRF_KEY)?).ok()?;
    is_token(&token).then_some(token)
}

/// The state an anonymous key stands for (`None` for any other key).
fn anonymous_state(key: &SessionKey) -> Option<Option<State>> {
    let token = key.as_ref().strip_prefix(ANONYMOUS_PREFIX)?;
    // Only keys this server made get here (the cookie is signed); a malformed one is
    // treated as no session at all.
    Some(is_token(token).then(|| {
        State::from([(
            CSRF_KEY.to_owned(),
            serde_json::Value::from(token).to_string(),
        )])
    }))
}

fn anonymous_key(token: &str) -> Result<SessionKey, anyhow::Error> {
    format!("{ANONYMOUS_PREFIX}{token}")
        .try_into()
        .map_err(other)
}

/// A fresh key for a session with a row: 256 bits from the OS RNG.
fn random_key() -> Result<SessionKey, anyhow::Error> {
    random::token::<32>()
        .map_err(|e| anyhow::anyhow!("the OS RNG failed: {e}"))?
        .try_into()
        .map_err(other)
}

fn insert_row(
    conn: &mut AnyConnection,
    id: &str,
    user_id: Option<&str>,
    state: &str,
    now: i64,
) -> Result<(), DbError> {
    Ok(Sessions::insert(conn, id, user_id, state, now)?)
}

fn is_anonymous(key: &SessionKey) -> bool {
    key.as_ref().starts_with(ANONYMOUS_PREFIX)
}

fn other(e: impl Into<anyhow::Error>) -> anyhow::Error {
    e.into()
}

/// Marks, in the error's chain, a store failure caused by the database being unavailable.
/// actix-session turns a store's error into an opaque 500 whose cause can only be read
/// through its `Debug` output, so the error page looks for this text there (see
/// `web::error::is_session_store_unavailable`).
pub const STORE_UNAVAILABLE: &str = "the session store cannot reach the database";

/// A database error as a store error, marked when the database is unavailable.
fn db_failure(e: DbError) -> anyhow::Error {
    if e.is_unavailable() {
        anyhow::Error::new(e).context(STORE_UNAVAILABLE)
    } else {
        e.into()
    }
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        if let Some(state) = anonymous_state(key) {
            return Ok(state);
        }
        let id = row_id(key);
        let (idle, absolute) = (self.idle, self.absolute);
        let row = self
            .db
            .run(move |conn| {
                let now = now();
                let Some((
                    SessionRow {
                        state,
                        created_at,
                        last_seen_at,
                    },
                    account,
                )) = AccountRecord::load_with_session(conn, &id)?
                else {
                    return Ok(None);
                };
                if idle.is_over(last_seen_at, now) || created_at + absolute <= now {
                    Sessions::delete(conn, &id)?;
                    return Ok(None);
                }
                if idle.needs_touch(last_seen_at, now) {
                    Sessions::touch(conn, &id, now)?;
                }
                Ok::<_, DbError>(Some((state, account)))
            })
            .await
            .map_err(|e| LoadError::Other(db_failure(e)))?;
        row.map(|(state, account)| {
            // Outside a request's slot (a test of the store alone) there is no one to hand
            // it to.
            let _ = LOADED_ACCOUNT.try_with(|slot| *slot.borrow_mut() = account);
            serde_json::from_str(&state).map_err(|e| LoadError::Deserialization(other(e)))
        })
        .transpose()
    }

    async fn save(&self, mut state: State, _ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        // A new session has a new id anyway.
        state.remove(RENEW_KEY);
        if let Some(token) = anonymous_token(&state) {
            return anonymous_key(&token).map_err(SaveError::Other);
        }
        let key = random_key().map_err(SaveError::Other)?;
        let id = row_id(&key);
        let user_id = user_of(&state);
        let state =
            serde_json::to_string(&state).map_err(|e| SaveError::Serialization(other(e)))?;
        self.db
            .run_writing(move |conn| insert_row(conn, &id, user_id.as_deref(), &state, now()))
            .await
            .map_err(|e| SaveError::Other(db_failure(e)))?;
        Ok(key)
    }

    async fn update(
        &self,
        key: SessionKey,
        mut state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let renew = state.remove(RENEW_KEY).map(|value| {
            // Anything unreadable is the safer kind: the row must still be there.
            serde_json::from_str(&value).unwrap_or(Renewal::Move)
        });
        if is_anonymous(&key) {
            // No row to update: the state outgrew the cookie (or changed token), so it is
            // saved anew, under a fresh random key if it needs a row.
            return self.save(state, ttl).await.map_err(|e| match e {
                SaveError::Serialization(e) => UpdateError::Serialization(e),
                SaveError::Other(e) => UpdateError::Other(e),
            });
        }
        let id = row_id(&key);
        if renew.is_some()
            && let Some(token) = anonymous_token(&state)
        {
            // Back to a bare CSRF token (signed out but kept): it lives in the cookie.
            self.delete_row(id)
                .await
                .map_err(|e| UpdateError::Other(db_failure(e)))?;
            return anonymous_key(&token).map_err(UpdateError::Other);
        }
        let user_id = user_of(&state);
        let state =
            serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(other(e)))?;
        let Some(renewal) = renew else {
            self.db
                .run_writing(move |conn| {
                    Sessions::update(conn, &id, user_id.as_deref(), &state, now())?;
                    Ok::<_, DbError>(())
                })
                .await
                .map_err(|e| UpdateError::Other(db_failure(e)))?;
            return Ok(key);
        };
        let new_key = random_key().map_err(UpdateError::Other)?;
        let new_id = row_id(&new_key);
        self.db
            .run_writing(move |conn| {
                let now = now();
                let moved = Sessions::renew(conn, &id, &new_id, user_id.as_deref(), &state, now)?;
                if !moved && renewal == Renewal::Rejoin {
                    insert_row(conn, &new_id, user_id.as_deref(), &state, now)?;
                }
                // Otherwise a row that is gone was ended meanwhile (sign-out in another
                // tab, a reset, expiry): the new key opens nothing, so it stays ended.
                Ok::<_, DbError>(())
            })
            .await
            .map_err(|e| UpdateError::Other(db_failure(e)))?;
        Ok(new_key)
    }

    async fn update_ttl(
        &self,
        key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        if is_anonymous(key) {
            return Ok(());
        }
        let id = row_id(key);
        self.db
            .run_writing(move |conn| {
                Sessions::touch(conn, &id, now())?;
                Ok::<_, DbError>(())
            })
            .await
            .map_err(other)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        if is_anonymous(key) {
            return Ok(());
        }
        self.delete_row(row_id(key)).await.map_err(other)
    }
}

impl DbSessionStore {
    async fn delete_row(&self, id: String) -> Result<(), DbError> {
        self.db
            .run_writing(move |conn| {
                Sessions::delete(conn, &id)?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_making_requests_more_often_than_its_timeout_never_goes_idle() {
        let rule = IdleRule::new(Duration::from_secs(60));
        // A request every 50 seconds, with the lazy write the store does.
        let mut last_seen = 0;
        for now in (50..=3_600).step_by(50) {
            assert!(!rule.is_over(last_seen, now), "ended at {now}");
            if rule.needs_touch(last_seen, now) {
                last_seen = now;
            }
        }
        // Each request more than a tenth of the timeout after the last write writes anew.
        assert!(!rule.needs_touch(0, 5));
        assert!(rule.needs_touch(0, 6));
    }

    #[test]
    fn an_idle_session_ends_at_most_a_tenth_of_its_timeout_late_and_never_early() {
        let minute = IdleRule::new(Duration::from_secs(60));
        assert!(!minute.is_over(0, 65));
        assert!(minute.is_over(0, 66));
        let half_hour = IdleRule::new(Duration::from_secs(30 * 60));
        assert!(!half_hour.is_over(0, 30 * 60 + 59));
        assert!(
            half_hour.is_over(0, 31 * 60),
            "the lag is capped at a minute"
        );
    }

    /// A store over a fresh SQLite file, and the file's folder (removed by the caller).
    fn store() -> (DbSessionStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tessera-sessions-{}",
            crate::random::hex(&crate::random::bytes::<6>().unwrap())
        ));
        let db = Db::connect(&dir.join("t.db").to_string_lossy(), 2).unwrap();
        db.migrate().unwrap();
        let hour = Duration::from_secs(3600);
        (DbSessionStore::new(db, hour, hour), dir)
    }

    fn renewing(state: &State, renewal: Renewal) -> State {
        let mut state = state.clone();
        state.insert(RENEW_KEY.into(), serde_json::to_string(&renewal).unwrap());
        state
    }

    #[tokio::test]
    async fn a_session_ended_meanwhile_stays_ended_unless_it_rejoins() {
        let (store, dir) = store();
        let ttl = CookieDuration::hours(1);
        let state = State::from([
            (CSRF_KEY.to_owned(), "\"token\"".to_owned()),
            ("flash".to_owned(), "\"hello\"".to_owned()),
        ]);

        // Moved while its row exists: the old id opens nothing, the new one the state.
        let first = store.save(state.clone(), &ttl).await.unwrap();
        let old = key(first.as_ref());
        let moved = store
            .update(first, renewing(&state, Renewal::Move), &ttl)
            .await
            .unwrap();
        assert_eq!(store.load(&old).await.unwrap(), None);
        assert_eq!(store.load(&moved).await.unwrap(), Some(state.clone()));

        // Ended (signed out in another tab) before the write-back: it stays ended.
        store.delete(&moved).await.unwrap();
        let after_end = store
            .update(moved, renewing(&state, Renewal::Move), &ttl)
            .await
            .unwrap();
        assert_eq!(store.load(&after_end).await.unwrap(), None);

        // Ended on purpose with all of the user's sessions, and carrying on: written anew.
        let second = store.save(state.clone(), &ttl).await.unwrap();
        store.delete(&second).await.unwrap();
        let rejoined = store
            .update(second, renewing(&state, Renewal::Rejoin), &ttl)
            .await
            .unwrap();
        assert_eq!(store.load(&rejoined).await.unwrap(), Some(state));

        store.db.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    fn key(text: &str) -> SessionKey {
        text.to_owned().try_into().unwrap()
    }

    #[test]
    fn a_state_of_only_a_csrf_token_lives_in_the_key() {
        let token = crate::random::token::<32>().unwrap();
        let state = State::from([(CSRF_KEY.to_owned(), format!("\"{token}\""))]);
        assert_eq!(anonymous_token(&state).as_deref(), Some(token.as_str()));
        let anonymous = key(&format!("{ANONYMOUS_PREFIX}{token}"));
        assert_eq!(anonymous_state(&anonymous), Some(Some(state.clone())));

        let mut more = state;
        more.insert("flash".into(), "{}".into());
        assert_eq!(anonymous_token(&more), None);
        let not_a_token = State::from([(CSRF_KEY.to_owned(), "\"short\"".to_owned())]);
        assert_eq!(anonymous_token(&not_a_token), None);
        assert_eq!(anonymous_state(&key("anon.short")), Some(None));
        assert_eq!(anonymous_state(&key(&token)), None);
    }
}
