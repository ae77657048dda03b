//! Passwords from the web: changing one's own (`/account/password`), asking for a reset link
//! (`/login/forgot`) and using it (`/login/reset/{token}`). The rules are in
//! `auth::passwords`; this module turns their answers into pages.
//!
//! Invariants:
//! - `/login/forgot` answers with the same page and status whether or not an account exists
//!   for the address, after the same statements up to the last: both rate-limit buckets are
//!   charged and the user row is looked up in one write transaction either way; only a
//!   known, active, non-demo account then gets a link (and its mail and audit event), and
//!   the answer waits for a fixed floor so that this extra work does not show in its time.
//! - A reset link page never uses the link (`GET`); only a `POST` with an acceptable new
//!   password does, atomically. Every dead link — unknown, expired, used, superseded —
//!   gets the same 410 page, so the page says nothing about which it was.
//! - Pages with a token in their address send `Referrer-Policy: no-referrer` and
//!   `Cache-Control: no-store`, and the request log shows that path without the token
//!   (`telemetry::loggable_path`).
//! - Nothing here signs anyone in or touches a second factor.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{client_ip, layout};
use crate::audit::{Event, Kind};
use crate::auth::passwords::{
    RESET_LINK_MINUTES, change_password, may_reset, reset_password, reset_token_hash,
    send_reset_link,
};
use crate::auth::session::{ENDED_MEANWHILE, TypedSession};
use crate::client::rate_limit_network;
use crate::db::models::{PasswordResets, User};
use crate::domain::{Email, NewPassword, Password, PasswordOwner};
use crate::limits::Bucket;
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{OwnCredentials, see_other};
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "account/password.html")]
pub struct ChangePage {
    pub layout: Layout,
    /// Which field the error is about: "current" or "new".
    pub error_field: &'static str,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/forgot.html")]
pub struct ForgotPage {
    pub layout: Layout,
    pub email: String,
    pub error: Option<String>,
}

/// The one answer to a well-formed request, whether or not the account exists.
#[derive(Template)]
#[template(path = "auth/forgot_sent.html")]
pub struct ForgotSentPage {
    pub layout: Layout,
    pub minutes: i64,
}

#[derive(Template)]
#[template(path = "auth/reset.html")]
pub struct ResetPage {
    pub layout: Layout,
    /// The link's token, for the form's action (the page is `no-store`).
    pub token: String,
    pub email: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/reset_dead.html")]
pub struct ResetDeadPage {
    pub layout: Layout,
}

/// The earliest `/login/forgot` answers a well-formed request. Making a link (a row, a
/// rendered mail, an audit event) took about 0.4 ms more than finding no account, measured
/// on SQLite; answering no sooner than this hides that difference, and anything under
/// load, behind the same wait. Nobody notices a quarter of a second on this page.
const FORGOT_ANSWER_FLOOR: std::time::Duration = std::time::Duration::from_millis(250);

const WRONG_CURRENT: &str = "That is not your current password. Nothing was changed.";

fn password_owner_email(user: &User) -> Result<Email, AppError> {
    Email::parse(&user.email)
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("a stored email does not parse: {e}")))
}

fn change_page(
    session: &TypedSession,
    account: &crate::db::models::Account,
    status: StatusCode,
    error_field: &'static str,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let page = ChangePage {
        layout: layout(session, "Change your password", Some(account))?,
        error_field,
        error: error.map(str::to_owned),
    };
    render(&page, status)
}

pub async fn change_get(
    session: TypedSession,
    OwnCredentials(account): OwnCredentials,
) -> Result<HttpResponse, AppError> {
    change_page(&session, &account, StatusCode::OK, "", None)
}

#[derive(Deserialize)]
pub struct ChangeForm {
    current_password: String,
    new_password: String,
}

pub async fn change_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    OwnCredentials(account): OwnCredentials,
    form: web::Form<ChangeForm>,
) -> Result<HttpResponse, AppError> {
    let ChangeForm {
        current_password,
        new_password,
    } = form.into_inner();
    let refuse = |status, field, message: &str| {
        change_page(&session, &account, status, field, Some(message))
    };
    let current = match Password::parse(current_password) {
        Ok(current) => current,
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "current",
                "Enter your current password.",
            );
        }
    };
    // The rules first: they cost no hash, and a refused new password changes nothing.
    let email = password_owner_email(&account.user)?;
    let owner = PasswordOwner {
        email: &email,
        workspace_name: &account.workspace.name,
    };
    let new = match NewPassword::parse(new_password, owner) {
        Ok(new) => new,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "new", e.0),
    };

    // The current password is guessable here by whoever holds a signed-in cookie: it counts
    // against the same per-email limits as the sign-in page.
    let ip = client_ip(&req)?;
    let network = rate_limit_network(ip.as_deref());
    let password_buckets =
        Bucket::password_failures(&account.user.email, &network, &state.settings.limits);
    const TOO_MANY: &str = "Too many wrong passwords were entered for this account.";
    super::rate_limit(&state, password_buckets.clone().map(|b| (b, TOO_MANY))).await?;
    let user_id = account.user.id.clone();
    let stored_hash = state
        .db
        .run(move |conn| User::password_hash(conn, &user_id).map_err(AppError::from))
        .await?;
    let verified_hash = stored_hash.clone();
    if !state.hasher.verify(current.expose(), stored_hash).await? {
        let event = Event::by_user(Kind::PasswordCheckFailed, &account.user, ip)
            .with_detail("to change the password");
        state
            .db
            .run_writing(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
        return refuse(StatusCode::UNAUTHORIZED, "current", WRONG_CURRENT);
    }

    let new_hash = state.hasher.hash(new.expose()).await?;
    let user = account.user.clone();
    let epoch = state
        .db
        .write(move |conn| {
            // Bucket rows before the user's row, the order every transaction keeps.
            crate::limits::clear_all(conn, &password_buckets)?;
            let verified = verified_hash.as_deref().unwrap_or_default();
            Ok::<_, AppError>(change_password(conn, &user, verified, &new_hash, ip)?)
        })
        .await?;
    let Some(epoch) = epoch else {
        return Err(AppError::Conflict(ENDED_MEANWHILE.into()));
    };
    session.rejoin(epoch)?;
    session.notice("Your password is changed, and your other sessions were signed out.")?;
    Ok(see_other("/account/security"))
}

pub async fn forgot_get(session: TypedSession) -> Result<HttpResponse, AppError> {
    let page = ForgotPage {
        layout: layout(&session, "Forgot your password?", None)?,
        email: String::new(),
        error: None,
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct ForgotForm {
    email: String,
}

pub async fn forgot_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, AppError> {
    let answer_at = tokio::time::Instant::now() + FORGOT_ANSWER_FLOOR;
    let ip = client_ip(&req)?;
    let network = rate_limit_network(ip.as_deref());
    let limits = state.settings.limits;
    const TOO_MANY_HERE: &str = "Too many password reset requests came from your network.";
    const TOO_MANY_FOR: &str = "Too many password reset requests were made for this address.";
    let typed = form.into_inner().email;
    let email = match Email::parse(&typed) {
        Ok(email) => email,
        Err(e) => {
            let [per_network, _] = Bucket::password_reset("", &network, &limits);
            super::rate_limit(&state, [(per_network, TOO_MANY_HERE)]).await?;
            let page = ForgotPage {
                layout: layout(&session, "Forgot your password?", None)?,
                email: typed.trim().to_owned(),
                error: Some(e.0.to_owned()),
            };
            return render(&page, StatusCode::BAD_REQUEST);
        }
    };

    let [per_network, per_address] = Bucket::password_reset(email.as_str(), &network, &limits);
    let public_url = super::public_url(&state).to_owned();
    let now_ms = crate::limits::now_ms();
    let now = state.settings.clock.now();
    // One transaction either way: the buckets are charged and the user looked up whether
    // or not the address has an account, so neither the answer, its status, the limits nor
    // (as far as one insert of a link, a mail and an event allows) its time tell them apart.
    state
        .db
        .write(move |conn| {
            let taken = crate::limits::take_all(conn, &[&per_network, &per_address], now_ms)?;
            if let Err((index, wait)) = taken {
                let message = [TOO_MANY_HERE, TOO_MANY_FOR][index];
                return Err(AppError::too_many_requests(wait, message));
            }
            if let Some(user) = User::find_by_email(conn, &email)?.filter(may_reset) {
                send_reset_link(conn, &user, &public_url, ip, now)?;
            }
            Ok(())
        })
        .await?;
    tokio::time::sleep_until(answer_at).await;
    let page = ForgotSentPage {
        layout: layout(&session, "Check your email", None)?,
        minutes: RESET_LINK_MINUTES,
    };
    render(&page, StatusCode::OK)
}

/// The user whose live link `token` is, and their workspace's name; `None` for any dead
/// link. A token that cannot be one of ours is not looked up.
async fn live_link(state: &AppState, token: &str) -> Result<Option<(User, String)>, AppError> {
    let plausible = token.len() == 43
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !plausible {
        return Ok(None);
    }
    let token_hash = reset_token_hash(token);
    let now = state.settings.clock.now();
    state
        .db
        .run(move |conn| PasswordResets::find_live(conn, &token_hash, now).map_err(AppError::from))
        .await
}

/// A page whose address holds a token: it must not be cached, nor its address sent on.
fn private(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn dead_link(session: &TypedSession) -> Result<HttpResponse, AppError> {
    let page = ResetDeadPage {
        layout: layout(session, "This link does not work", None)?,
    };
    render(&page, StatusCode::GONE).map(private)
}

fn reset_page(
    session: &TypedSession,
    token: String,
    user: &User,
    status: StatusCode,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let page = ResetPage {
        layout: layout(session, "Choose a new password", None)?,
        token,
        email: user.email.clone(),
        error: error.map(str::to_owned),
    };
    render(&page, status).map(private)
}

pub async fn reset_get(
    state: web::Data<AppState>,
    session: TypedSession,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    match live_link(&state, &token).await? {
        Some((user, _)) => reset_page(&session, token, &user, StatusCode::OK, None),
        None => dead_link(&session),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    new_password: String,
}

pub async fn reset_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    token: web::Path<String>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let Some((user, workspace_name)) = live_link(&state, &token).await? else {
        return dead_link(&session);
    };
    let email = password_owner_email(&user)?;
    let owner = PasswordOwner {
        email: &email,
        workspace_name: &workspace_name,
    };
    // A refused password leaves the link as it was: the form comes back to try again.
    let new = match NewPassword::parse(form.into_inner().new_password, owner) {
        Ok(new) => new,
        Err(e) => return reset_page(&session, token, &user, StatusCode::BAD_REQUEST, Some(e.0)),
    };
    let new_hash = state.hasher.hash(new.expose()).await?;
    let ip = client_ip(&req)?;
    let token_hash = reset_token_hash(&token);
    let now = state.settings.clock.now();
    let user_id = user.id.clone();
    let done = state
        .db
        .write(move |conn| {
            reset_password(conn, &user_id, &token_hash, &new_hash, ip, now).map_err(AppError::from)
        })
        .await?;
    if done.is_none() {
        // Used or superseded by a racing request since the lookup.
        return dead_link(&session);
    }
    session.notice(
        "Your password is changed, and every session of your account was signed out. Sign in with your new password.",
    )?;
    Ok(private(see_other("/login")))
}
