//! "Your sessions": where the user is signed in, and signing out of any of them.
//!
//! Invariants:
//! - Sessions are named by a random handle kept in each session, never by their id (the
//!   page must not hand out anything that could be presented as a session).
//! - Only the signed-in user's own sessions are listed or ended; a handle of someone
//!   else's session finds nothing.
//! - Ending one session deletes its row (an update never recreates a row, see
//!   `session_store`), so its cookie stops working at its next request. "Sign out all
//!   other sessions" also bumps the user's session epoch, so a racing request cannot keep
//!   one alive; this session moves to a new id under the new epoch.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{client_ip, layout};
use crate::audit::{Event, Kind};
use crate::auth::session::{CLIENT_KEY, HANDLE_KEY, LoginState, TypedSession};
use crate::client::ClientInfo;
use crate::db::models::Account;
use crate::db::now;
use crate::session_store::{
    State, UserSession, delete_session_of_user, end_sessions_of_user, sessions_of_user,
};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{SignedIn, see_other};
use crate::web::views::{SessionEntry, SessionsPage, render};
use crate::words::date_time;

/// A value the typed session layer stored (each is JSON).
fn value<T: serde::de::DeserializeOwned>(state: &State, key: &str) -> Option<T> {
    state.get(key).and_then(|v| serde_json::from_str(v).ok())
}

/// The session's handle: the one it carries, or (a session made before handles existed)
/// one derived from its row id, which is itself only a hash of the cookie's key.
fn handle_of(row: &UserSession) -> String {
    value(&row.state, HANDLE_KEY)
        .unwrap_or_else(|| crate::random::sha256_hex(&format!("session-handle:{}", row.id)))
}

/// The user's sessions that the guard would still let in, with their login state.
async fn own_sessions(
    state: &AppState,
    account: &Account,
) -> Result<Vec<(UserSession, LoginState)>, AppError> {
    let user_id = account.user.id.clone();
    let idle = state.settings.session_idle;
    let rows = state
        .db
        .run(move |conn| sessions_of_user(conn, &user_id, idle).map_err(AppError::from))
        .await?;
    let now = now();
    let step_timeout = state.settings.login_step_timeout.as_secs() as i64;
    let absolute = state.settings.session_absolute.as_secs() as i64;
    let epoch = account.user.session_epoch;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let login = value::<LoginState>(&row.state, "login")?;
            let alive = match &login {
                LoginState::PasswordVerified { at, epoch: e, .. } => {
                    now - at < step_timeout && *e == epoch
                }
                LoginState::Full {
                    authenticated_at,
                    epoch: e,
                    ..
                } => now - authenticated_at < absolute && *e == epoch,
                LoginState::Anonymous => false,
            };
            alive.then_some((row, login))
        })
        .collect())
}

pub async fn sessions_get(
    state: web::Data<AppState>,
    session: TypedSession,
    SignedIn(account): SignedIn,
) -> Result<HttpResponse, AppError> {
    let current = session.handle();
    let rows = own_sessions(&state, &account).await?;
    let entries: Vec<SessionEntry> = rows
        .iter()
        .map(|(row, login)| {
            let handle = handle_of(row);
            let client: ClientInfo = value(&row.state, CLIENT_KEY).unwrap_or_default();
            let (started, complete) = match login {
                LoginState::Full {
                    authenticated_at, ..
                } => (*authenticated_at, true),
                LoginState::PasswordVerified { at, .. } => (*at, false),
                LoginState::Anonymous => (row.created_at, false),
            };
            SessionEntry {
                current: current.as_deref() == Some(handle.as_str()),
                handle,
                started: date_time(started),
                last_seen: date_time(row.last_seen_at),
                ip: client.ip.unwrap_or_else(|| "unknown".into()),
                user_agent: client
                    .user_agent
                    .unwrap_or_else(|| "unknown browser".into()),
                complete,
            }
        })
        .collect();
    let others = entries.iter().filter(|e| !e.current).count();
    let page = SessionsPage {
        layout: layout(&session, "Your sessions", Some(&account))?,
        sessions: entries,
        others,
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    session: String,
}

pub async fn end_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    SignedIn(account): SignedIn,
    form: web::Form<EndForm>,
) -> Result<HttpResponse, AppError> {
    if session.handle().as_deref() == Some(form.session.as_str()) {
        return Err(AppError::BadRequest(
            "That is this session: use “Sign out” at the top of the page instead.".into(),
        ));
    }
    let rows = own_sessions(&state, &account).await?;
    let Some((target, _)) = rows
        .into_iter()
        .find(|(row, _)| handle_of(row) == form.session)
    else {
        session.notice("That session had already ended.")?;
        return Ok(see_other("/account/sessions"));
    };
    let user = account.user.clone();
    let ip = client_ip(&req)?;
    state
        .db
        .write(move |conn| {
            if delete_session_of_user(conn, &user.id, &target.id)? {
                Event::by_user(Kind::SessionsEnded, &user, ip)
                    .with_detail("one other session, from the sessions page")
                    .record(conn)?;
            }
            Ok::<_, AppError>(())
        })
        .await?;
    session.notice("That session is signed out.")?;
    Ok(see_other("/account/sessions"))
}

pub async fn end_others_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    SignedIn(account): SignedIn,
) -> Result<HttpResponse, AppError> {
    let user = account.user.clone();
    let ip = client_ip(&req)?;
    let epoch = state
        .db
        .write(move |conn| {
            let epoch = end_sessions_of_user(conn, &user.id)?;
            Event::by_user(Kind::SessionsEnded, &user, ip)
                .with_detail("all other sessions, from the sessions page")
                .record(conn)?;
            Ok::<_, AppError>(epoch)
        })
        .await?;
    session.rejoin(epoch)?;
    session.notice("All your other sessions are signed out.")?;
    Ok(see_other("/account/sessions"))
}
