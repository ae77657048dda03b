//! First-run setup: while no user exists, a one-time link (logged at start) creates the
//! first workspace and its administrator.
//!
//! Invariants:
//! - Only the SHA-256 of a setup token is stored; the token itself is only in the log line.
//! - The link works until setup completes, then every setup token is deleted; once any
//!   user exists `/setup` is a 404, token or not.
//! - Two racing setups cannot both succeed: consuming the token is an atomic delete.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{client_ip, layout};
use crate::audit::{Event, Kind};
use crate::auth::session::{LoginState, TypedSession};
use crate::db::models::{Account, NewUser, SetupTokens, User, Workspace, is_unique_violation};
use crate::db::{Db, now};
use crate::domain::{
    DisplayName, Email, Invalid, NewPassword, PasswordOwner, Role, Slug, WorkspaceName,
};
use crate::random;
use crate::state::AppState;
use crate::web::client::client_info;
use crate::web::error::AppError;
use crate::web::guard::see_other;
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "setup/first_run.html")]
pub struct FirstRunPage {
    pub layout: Layout,
    pub token: String,
    pub workspace_name: String,
    pub workspace_slug: String,
    pub name: String,
    pub email: String,
    pub error: Option<String>,
    /// The id of the input the error is about.
    pub error_field: &'static str,
}

/// If nobody can sign in yet, makes a setup token and logs the link that uses it.
pub fn announce_setup_link(db: &Db, public_url: &str) -> anyhow::Result<()> {
    let mut conn = db.get()?;
    if User::any_exist(&mut conn)? {
        return Ok(());
    }
    let token = random::token::<32>()?;
    SetupTokens::insert(&mut conn, &random::sha256_hex(&token), now())?;
    tracing::warn!(
        "No user exists yet. Open this link to create the first workspace and its administrator \
         (it works until setup is done): {public_url}/setup?token={token}"
    );
    Ok(())
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

async fn token_is_valid(state: &AppState, token: &str) -> Result<bool, AppError> {
    let hash = random::sha256_hex(token);
    state
        .db
        .run(move |conn| {
            Ok::<_, AppError>(!User::any_exist(conn)? && SetupTokens::exists(conn, &hash)?)
        })
        .await
}

pub async fn setup_get(
    state: web::Data<AppState>,
    session: TypedSession,
    query: web::Query<SetupQuery>,
) -> Result<HttpResponse, AppError> {
    let token = query.into_inner().token.unwrap_or_default();
    if token.is_empty() || !token_is_valid(&state, &token).await? {
        return Err(AppError::NotFound);
    }
    let page = FirstRunPage {
        layout: layout(&session, "Set up Tessera", None)?,
        token,
        workspace_name: String::new(),
        workspace_slug: String::new(),
        name: String::new(),
        email: String::new(),
        error: None,
        error_field: "",
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    workspace_name: String,
    workspace_slug: String,
    #[serde(default)]
    name: String,
    email: String,
    password: String,
}

struct Parsed {
    workspace_name: WorkspaceName,
    slug: Slug,
    name: DisplayName,
    email: Email,
    password: NewPassword,
}

/// The form's fields parsed, or the first one that is wrong (its input's id) and why.
fn parse(form: &SetupForm) -> Result<Parsed, (&'static str, Invalid)> {
    fn at<T>(
        field: &'static str,
        parsed: Result<T, Invalid>,
    ) -> Result<T, (&'static str, Invalid)> {
        parsed.map_err(|e| (field, e))
    }
    let workspace_name = at("workspace_name", WorkspaceName::parse(&form.workspace_name))?;
    let slug = at("workspace_slug", Slug::parse(&form.workspace_slug))?;
    let name = at("name", DisplayName::parse(&form.name))?;
    let email = at("email", Email::parse(&form.email))?;
    let owner = PasswordOwner {
        email: &email,
        workspace_name: workspace_name.as_str(),
    };
    let password = at("password", NewPassword::parse(form.password.clone(), owner))?;
    Ok(Parsed {
        workspace_name,
        slug,
        name,
        email,
        password,
    })
}

pub async fn setup_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    if !token_is_valid(&state, &form.token).await? {
        return Err(AppError::NotFound);
    }
    let parsed = match parse(&form) {
        Ok(parsed) => parsed,
        Err((field, e)) => {
            let page = FirstRunPage {
                layout: layout(&session, "Set up Tessera", None)?,
                token: form.token.clone(),
                workspace_name: form.workspace_name.clone(),
                workspace_slug: form.workspace_slug.clone(),
                name: form.name.clone(),
                email: form.email.clone(),
                error: Some(e.0.to_owned()),
                error_field: field,
            };
            return render(&page, StatusCode::BAD_REQUEST);
        }
    };
    let password_hash = state.hasher.hash(parsed.password.expose()).await?;
    let token_hash = random::sha256_hex(&form.token);
    let ip = client_ip(&req)?;
    let admin = state
        .db
        .write(move |conn| {
            if User::any_exist(conn)? || !SetupTokens::consume_all(conn, &token_hash)? {
                return Ok::<_, AppError>(None);
            }
            let now = now();
            let workspace = Workspace::insert(conn, &parsed.workspace_name, &parsed.slug, now)?;
            let new_user = NewUser {
                workspace_id: &workspace.id,
                email: &parsed.email,
                name: &parsed.name,
                role: Role::Admin,
                is_staff: false,
                is_demo: false,
                password_hash: &password_hash,
            };
            let user_id = User::insert(conn, &new_user, now).map_err(|e| {
                if is_unique_violation(&e) {
                    AppError::Conflict("That email address is already in use.".into())
                } else {
                    e.into()
                }
            })?;
            let account = Account::load(conn, &user_id, now)?.ok_or_else(|| {
                AppError::Unexpected(anyhow::anyhow!("the new administrator vanished"))
            })?;
            Event::by_user(Kind::WorkspaceCreated, &account.user, ip.clone())
                .with_detail(format!(
                    "{} ({}), at first-run setup",
                    workspace.name, workspace.slug
                ))
                .record(conn)?;
            Event::by_user(Kind::UserCreated, &account.user, ip)
                .with_detail("administrator, at first-run setup")
                .record(conn)?;
            User::record_sign_in(conn, &user_id, now)?;
            Ok(Some(account))
        })
        .await?;
    let Some(admin) = admin else {
        return Err(AppError::NotFound);
    };
    tracing::info!(workspace = %admin.workspace.slug, "first-run setup completed");
    session.step_up(
        LoginState::signed_up(admin.user.id, admin.user.session_epoch, now()),
        &client_info(&req)?,
    )?;
    session.notice("Your workspace is ready. Now protect your account with two-factor sign-in.")?;
    Ok(see_other("/account/2fa/setup"))
}
