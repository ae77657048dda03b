//! Accepting an invitation: `GET /invite/{token}` shows the workspace and the email with a
//! form for a name and a password; `POST` creates the account and signs it in.
//!
//! Invariants:
//! - The invitation is claimed by one atomic delete in the transaction that creates the
//!   user: two posts of one link cannot both make an account, and a refused form (a weak
//!   password) leaves the invitation as it was.
//! - The new account is signed in under a new session id (as at first-run setup); from
//!   there the guard applies workspace policy like for any other sign-in, so a workspace
//!   past its 2FA deadline holds the new member at enrolment.
//! - Someone already signed in is asked to sign out first: accepting would otherwise
//!   replace the session they are in with another person's new account, silently.
//! - Every answer is `Cache-Control: no-store` (the page is reached with a secret in its
//!   address); `Referrer-Policy: no-referrer` is sent on every page by
//!   `web::security_headers`, and repeated here so it cannot be lost. The path is logged
//!   as `/invite/…` (`telemetry`).

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, HeaderValue, REFERRER_POLICY};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{client_ip, layout};
use crate::audit::{Event, Kind};
use crate::auth::session::{LoginState, TypedSession};
use crate::db::models::{Account, Invite, Invites, NewUser, User, is_unique_violation};
use crate::db::{DbError, now};
use crate::domain::{DisplayName, Email, Invalid, NewPassword, PasswordOwner};
use crate::random;
use crate::state::AppState;
use crate::web::client::client_info;
use crate::web::error::AppError;
use crate::web::guard::{KEY_ENROLMENT_PATH, MaybeSignedIn, held_at, see_other};
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "auth/invite.html")]
pub struct InvitePage {
    pub layout: Layout,
    pub token: String,
    pub workspace: String,
    pub email: String,
    pub name: String,
    /// Why the form or the link was refused (`role="alert"`).
    pub error: Option<String>,
    /// The input the error is about (`name`, `password`), or empty.
    pub error_field: &'static str,
    /// Whether to show the form (not for a dead link or a signed-in visitor).
    pub form: bool,
    /// The signed-in visitor, who must sign out first.
    pub signed_in_as: Option<String>,
}

const DEAD_LINK: &str = "This invitation link does not work. It may have expired, been replaced by a newer invitation, been revoked, or already been used. Ask the person who invited you to send a new one.";

const EMAIL_TAKEN: &str = "An account cannot be created for this invitation. If you already have an account, sign in with it, or ask the person who invited you or support staff.";

/// Every answer of these routes: never stored, never referred.
fn private(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn page(session: &TypedSession, token: &str, title: &str) -> Result<InvitePage, AppError> {
    Ok(InvitePage {
        layout: layout(session, title, None)?,
        token: token.to_owned(),
        workspace: String::new(),
        email: String::new(),
        name: String::new(),
        error: None,
        error_field: "",
        form: false,
        signed_in_as: None,
    })
}

fn dead_link(session: &TypedSession, token: &str) -> Result<HttpResponse, AppError> {
    let view = InvitePage {
        error: Some(DEAD_LINK.to_owned()),
        ..page(session, token, "Invitation")?
    };
    render(&view, StatusCode::NOT_FOUND).map(private)
}

/// The page for a visitor who is signed in already.
fn sign_out_first(
    session: &TypedSession,
    token: &str,
    email: String,
) -> Result<HttpResponse, AppError> {
    let view = InvitePage {
        error: Some(format!(
            "You are signed in as {email}. To accept this invitation with a new account, sign out first, then open the link again."
        )),
        signed_in_as: Some(email),
        ..page(session, token, "Invitation")?
    };
    render(&view, StatusCode::CONFLICT).map(private)
}

async fn live_invite(state: &AppState, token: &str) -> Result<Option<(Invite, String)>, AppError> {
    let hash = random::sha256_hex(token);
    let now = state.settings.clock.now();
    state
        .db
        .run(move |conn| Invites::find_live(conn, &hash, now).map_err(AppError::from))
        .await
}

pub async fn invite_get(
    state: web::Data<AppState>,
    session: TypedSession,
    who: MaybeSignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    if let Some(identity) = who.0 {
        return sign_out_first(&session, &token, identity.account.user.email);
    }
    let Some((invite, workspace)) = live_invite(&state, &token).await? else {
        return dead_link(&session, &token);
    };
    let view = InvitePage {
        workspace,
        email: invite.email,
        form: true,
        ..page(&session, &token, "Accept your invitation")?
    };
    render(&view, StatusCode::OK).map(private)
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// Why an accepted form created no account.
enum Refused {
    /// The link died between the page and the post (used, revoked, resent, expired).
    Gone,
    /// The email got an account meanwhile: the transaction is rolled back.
    EmailTaken,
    App(AppError),
}

impl From<diesel::result::Error> for Refused {
    fn from(e: diesel::result::Error) -> Refused {
        Refused::App(e.into())
    }
}

impl From<DbError> for Refused {
    fn from(e: DbError) -> Refused {
        Refused::App(e.into())
    }
}

pub async fn invite_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    who: MaybeSignedIn,
    path: web::Path<String>,
    form: web::Form<AcceptForm>,
) -> Result<HttpResponse, AppError> {
    let token = path.into_inner();
    if let Some(identity) = who.0 {
        return sign_out_first(&session, &token, identity.account.user.email);
    }
    let Some((invite, workspace)) = live_invite(&state, &token).await? else {
        return dead_link(&session, &token);
    };
    let form = form.into_inner();
    let email = Email::parse(&invite.email)
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("a stored invitation: {}", e.0)))?;
    let parsed = DisplayName::parse(&form.name)
        .map_err(|e| ("name", e))
        .and_then(|name| {
            let owner = PasswordOwner {
                email: &email,
                workspace_name: &workspace,
            };
            NewPassword::parse(form.password.clone(), owner)
                .map(|password| (name, password))
                .map_err(|e: Invalid| ("password", e))
        });
    let (name, password) = match parsed {
        Ok(parsed) => parsed,
        Err((field, e)) => {
            let view = InvitePage {
                workspace,
                email: invite.email,
                name: form.name.clone(),
                error: Some(e.0.to_owned()),
                error_field: field,
                form: true,
                ..page(&session, &token, "Accept your invitation")?
            };
            return render(&view, StatusCode::BAD_REQUEST).map(private);
        }
    };
    let password_hash = state.hasher.hash(password.expose()).await?;
    let token_hash = random::sha256_hex(&token);
    let ip = client_ip(&req)?;
    let policy_now = state.settings.clock.now();
    let created = state
        .db
        .write(move |conn| {
            let Some(invite) = Invites::claim(conn, &token_hash, policy_now)? else {
                return Err(Refused::Gone);
            };
            if User::find_by_email(conn, &email)?.is_some() {
                return Err(Refused::EmailTaken);
            }
            let new_user = NewUser {
                workspace_id: &invite.workspace_id,
                email: &email,
                name: &name,
                role: invite.role,
                is_staff: false,
                is_demo: false,
                password_hash: &password_hash,
            };
            let user_id = User::insert(conn, &new_user, now()).map_err(|e| {
                if is_unique_violation(&e) {
                    Refused::EmailTaken
                } else {
                    e.into()
                }
            })?;
            let account = Account::load(conn, &user_id, policy_now)?.ok_or_else(|| {
                Refused::App(AppError::Unexpected(anyhow::anyhow!(
                    "the invited user vanished"
                )))
            })?;
            Event::by_user(Kind::InviteAccepted, &account.user, ip)
                .with_detail(format!(
                    "as {}, invited by {}",
                    invite.role.as_str(),
                    invite.invited_by_label
                ))
                .record(conn)?;
            if held_at(&account).is_none() {
                User::record_sign_in(conn, &user_id, now())?;
            }
            Ok(account)
        })
        .await;
    let account = match created {
        Ok(account) => account,
        Err(Refused::Gone) => return dead_link(&session, &token),
        Err(Refused::EmailTaken) => {
            let view = InvitePage {
                error: Some(EMAIL_TAKEN.to_owned()),
                ..page(&session, &token, "Invitation")?
            };
            return render(&view, StatusCode::CONFLICT).map(private);
        }
        Err(Refused::App(e)) => return Err(e),
    };
    tracing::info!(workspace = %account.workspace.slug, "an invitation was accepted");
    let held = held_at(&account);
    session.step_up(
        LoginState::signed_up(account.user.id, account.user.session_epoch, now()),
        &client_info(&req)?,
    )?;
    session.notice(&format!(
        "Welcome to {}. Your account is ready{}",
        account.workspace.name,
        if held == Some(KEY_ENROLMENT_PATH) {
            ": your workspace requires a security key or passkey, so add one now."
        } else if held.is_some() {
            ": your workspace requires two-factor sign-in, so set it up now."
        } else {
            ". Protect it with two-factor sign-in from your security page."
        }
    ))?;
    Ok(private(see_other(held.unwrap_or("/home"))))
}
