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
use askama::Template;
use serde::Deserialize;

use super::{client_ip, layout};
use crate::audit::{Event, Kind};
use crate::auth::session::{ENDED_MEANWHILE, end_sessions_of_user, still_current};
use crate::auth::session::{StoredSession, TypedSession};
use crate::db::models::{Account, User};
use crate::db::now;
use crate::session_store::{UserSession, delete_session_of_user, sessions_of_user};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{SignedIn, refuse_demo, see_other};
use crate::web::views::{Layout, render};
use crate::words::date_time;

#[derive(Template)]
#[template(path = "account/sessions.html")]
pub struct SessionsPage {
    pub layout: Layout,
    pub sessions: Vec<SessionEntry>,
    /// How many of them are not this one.
    pub others: usize,
    /// A shared demo account: only this session is shown (the others are other visitors).
    pub demo: bool,
}

pub struct SessionEntry {
    pub handle: String,
    pub current: bool,
    pub started: String,
    pub last_seen: String,
    pub ip: String,
    pub user_agent: String,
    /// Fully signed in (rather than waiting for the second factor).
    pub complete: bool,
}

/// A session of the user's, as the store keeps it.
struct OwnSession {
    /// The row id (a hash of the cookie's key): used here, never shown.
    id: String,
    last_seen_at: i64,
    stored: StoredSession,
}

/// The user's sessions that the guard would still let in.
async fn own_sessions(state: &AppState, account: &Account) -> Result<Vec<OwnSession>, AppError> {
    let user_id = account.user.id.clone();
    let idle = state.settings.session_idle;
    let rows = state
        .db
        .run(move |conn| sessions_of_user(conn, &user_id, idle).map_err(AppError::from))
        .await?;
    let (now, lifetimes) = (now(), state.settings.login_lifetimes());
    let epoch = account.user.session_epoch;
    Ok(rows
        .into_iter()
        .filter_map(|row: UserSession| {
            let stored = StoredSession::read(&row.id, &row.state)?;
            stored
                .login
                .is_alive(now, lifetimes, epoch)
                .then_some(OwnSession {
                    id: row.id,
                    last_seen_at: row.last_seen_at,
                    stored,
                })
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
    let mut entries: Vec<SessionEntry> = rows
        .iter()
        .map(|own| {
            let StoredSession {
                login,
                handle,
                client,
            } = own.stored.clone();
            SessionEntry {
                current: current.as_deref() == Some(handle.as_str()),
                handle,
                // Alive, so signed in: it has a start.
                started: date_time(login.started_at().unwrap_or_default()),
                last_seen: date_time(own.last_seen_at),
                ip: client.ip.unwrap_or_else(|| "unknown".into()),
                user_agent: client
                    .user_agent
                    .unwrap_or_else(|| "unknown browser".into()),
                complete: login.is_full(),
            }
        })
        .collect();
    // The sessions of a public demo account are other people's: their addresses and
    // browsers are not this visitor's to see, nor their sessions to end.
    let demo = account.is_demo();
    if demo {
        entries.retain(|e| e.current);
    }
    let others = entries.iter().filter(|e| !e.current).count();
    let page = SessionsPage {
        layout: layout(&session, "Your sessions", Some(&account))?,
        sessions: entries,
        others,
        demo,
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
    refuse_demo(&account)?;
    if session.handle().as_deref() == Some(form.session.as_str()) {
        return Err(AppError::BadRequest(
            "That is this session: use “Sign out” at the top of the page instead.".into(),
        ));
    }
    let rows = own_sessions(&state, &account).await?;
    let Some(target) = rows
        .into_iter()
        .find(|own| own.stored.handle == form.session)
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
    refuse_demo(&account)?;
    let user = account.user.clone();
    let ip = client_ip(&req)?;
    let epoch = state
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            if !still_current(conn, &user)? {
                return Err(AppError::Conflict(ENDED_MEANWHILE.into()));
            }
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
