//! A signed-in user's security keys and passkeys: registering one (also while held at
//! enrolment), renaming and removing. The ceremonies are `auth::factors::security_key`'s;
//! this turns their answers into pages.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::account::{Form, check_own_password, recovery_codes_page, security_page};
use super::{client_ip, layout};
use crate::auth::factors::security_key::{self, KEY_MUST_STAY, NewKey, Registration, UNAVAILABLE};
use crate::auth::factors::{FactorError, MUST_STAY_ON};
use crate::auth::session::TypedSession;
use crate::db::models::Account;
use crate::db::now;
use crate::domain::{KeyName, Password};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{Enrolling, OwnCredentials, refuse_demo, see_other};
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "account/security_key_new.html")]
pub struct NewKeyPage {
    pub layout: Layout,
    /// The registration options for the page's script; `None` when keys are unavailable.
    pub options: Option<String>,
    pub unavailable: &'static str,
    pub name: String,
    pub passwordless: bool,
    pub error: Option<String>,
    /// Held at enrolment: a second factor is required before anything else.
    pub held: bool,
    /// Held because the workspace requires a key (rather than any second factor).
    pub held_for_key: bool,
    /// The password is asked too (see [`needs_password`]).
    pub ask_password: bool,
}

/// How recent a sign-in must be to add a key to an account without the password again.
const RECENT_SIGN_IN_SECONDS: i64 = 10 * 60;

/// Whether adding a key here needs the password as well: the account already has a second
/// factor and this sign-in is older than [`RECENT_SIGN_IN_SECONDS`]. A key (a passkey above
/// all) outlives a password reset, so a stolen or forgotten session must not be enough to
/// plant one. A first factor needs no more than enrolling the app does.
fn needs_password(session: &TypedSession, account: &Account) -> bool {
    account.factors.any()
        && session
            .state()
            .started_at()
            .is_none_or(|at| now() - at > RECENT_SIGN_IN_SECONDS)
}

const PASSWORD_NEEDED: &str =
    "You signed in more than 10 minutes ago: enter your password to add a key.";

pub async fn new_get(
    state: web::Data<AppState>,
    session: TypedSession,
    Enrolling { account, held }: Enrolling,
) -> Result<HttpResponse, AppError> {
    refuse_demo(&account)?;
    new_page(
        &state,
        &session,
        &account,
        held,
        StatusCode::OK,
        None,
        String::new(),
        false,
    )
    .await
}

/// The registration page with a fresh challenge (each load replaces the last).
#[allow(clippy::too_many_arguments)]
async fn new_page(
    state: &AppState,
    session: &TypedSession,
    account: &Account,
    held: bool,
    status: StatusCode,
    error: Option<&str>,
    name: String,
    passwordless: bool,
) -> Result<HttpResponse, AppError> {
    let options = if state.webauthn.is_some() {
        let binding = session.ceremony_binding()?;
        Some(security_key::start_registration(&state.factors(), &account.user, binding).await?)
    } else {
        None
    };
    let status = if options.is_none() && status == StatusCode::OK {
        StatusCode::CONFLICT
    } else {
        status
    };
    let page = NewKeyPage {
        layout: layout(session, "Add a security key", Some(account))?,
        options,
        unavailable: UNAVAILABLE,
        name,
        passwordless,
        error: error.map(str::to_owned),
        held,
        held_for_key: account.must_add_key(),
        ask_password: needs_password(session, account),
    };
    render(&page, status)
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    name: String,
    passwordless: Option<String>,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    password: String,
}

pub async fn create_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    Enrolling { account, held }: Enrolling,
    form: web::Form<NewKeyForm>,
) -> Result<HttpResponse, AppError> {
    refuse_demo(&account)?;
    let NewKeyForm {
        name,
        passwordless,
        credential,
        password,
    } = form.into_inner();
    let passwordless = passwordless.as_deref() == Some("on");
    let again = |status, error: &'static str, name: String| {
        new_page(
            &state,
            &session,
            &account,
            held,
            status,
            Some(error),
            name,
            passwordless,
        )
    };
    if state.webauthn.is_none() {
        return Err(AppError::Conflict(UNAVAILABLE.into()));
    }
    let key_name = match KeyName::parse(&name) {
        Ok(key_name) => key_name,
        Err(e) => return again(StatusCode::BAD_REQUEST, e.0, name).await,
    };
    if credential.trim().is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "Press “Add the key” and touch your key when your browser asks.",
            name,
        )
        .await;
    }
    let ip = client_ip(&req)?;
    if needs_password(&session, &account) {
        let what = "to add a security key";
        let right = match Password::parse(password) {
            Ok(password) => {
                check_own_password(&state, &account, password, ip.clone(), what).await?
            }
            Err(_) => false,
        };
        if !right {
            return again(StatusCode::UNAUTHORIZED, PASSWORD_NEEDED, name).await;
        }
    }
    let binding = session.ceremony_binding()?;
    let key = NewKey {
        name: key_name,
        passwordless,
        answer: credential,
    };
    let factors = state.factors();
    match security_key::finish_registration(&factors, &account, binding, key, held, ip).await? {
        Registration::Refused(message) => {
            again(StatusCode::UNPROCESSABLE_ENTITY, message, name).await
        }
        Registration::Added {
            first: Some((epoch, codes)),
        } => {
            session.rejoin(epoch)?;
            recovery_codes_page(&session, &account, &codes, true)
        }
        Registration::Added { first: None } => {
            session.notice(&format!(
                "“{}” was added. You can use it the next time you sign in.",
                name.trim()
            ))?;
            Ok(see_other("/account/security"))
        }
    }
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

pub async fn rename_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    OwnCredentials(account): OwnCredentials,
    path: web::Path<String>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, AppError> {
    let name = match KeyName::parse(&form.name) {
        Ok(name) => name,
        Err(e) => return Err(AppError::BadRequest(e.0.into())),
    };
    let ip = client_ip(&req)?;
    let id = path.into_inner();
    if !security_key::rename(&state.factors(), &account.user, id, name.clone(), ip).await? {
        return Err(AppError::NotFound);
    }
    session.notice(&format!("The key is now called “{}”.", name.as_str()))?;
    Ok(see_other("/account/security"))
}

const LAST_KEY_STAYS: &str = "This is your last second factor, and your account must keep one: add another key or an authenticator app first.";

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    password: String,
}

pub async fn remove_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    OwnCredentials(account): OwnCredentials,
    path: web::Path<String>,
    form: web::Form<RemoveForm>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let refuse = async |status, message: &str| {
        let form = Form::Key(id.clone());
        security_page(
            &state,
            &session,
            &account,
            status,
            form,
            Some(message),
            false,
        )
        .await
    };
    let password = match Password::parse(form.into_inner().password) {
        Ok(password) => password,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.0).await,
    };
    let ip = client_ip(&req)?;
    let what = "to remove a security key";
    if !check_own_password(&state, &account, password, ip.clone(), what).await? {
        let wrong = "That password is not right. Nothing was changed.";
        return refuse(StatusCode::UNAUTHORIZED, wrong).await;
    }
    let epoch = match security_key::remove(&state.factors(), &account.user, id.clone(), ip).await {
        Ok(Some(epoch)) => epoch,
        Ok(None) => return Err(AppError::NotFound),
        Err(FactorError::Forbidden(MUST_STAY_ON)) => {
            return refuse(StatusCode::FORBIDDEN, LAST_KEY_STAYS).await;
        }
        Err(FactorError::Forbidden(KEY_MUST_STAY)) => {
            return refuse(StatusCode::FORBIDDEN, KEY_MUST_STAY).await;
        }
        Err(e) => return Err(e.into()),
    };
    session.rejoin(epoch)?;
    session.notice("The key was removed, and your other sessions were signed out.")?;
    Ok(see_other("/account/security"))
}
