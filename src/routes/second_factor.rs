//! The second step of signing in: a security key, an authenticator code, or a recovery
//! code.
//!
//! Only the fields named here are read: a posted `user_id` or `email` is ignored, the
//! user is always the one the session's password step verified.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{CodeForm, layout, network_limit, rate_limit};
use crate::auth::factors::recovery::{self, Spent};
use crate::auth::factors::security_key::{self, KEY_REFUSED, KeyCheck};
use crate::auth::factors::totp::{self, TotpCheck};
use crate::auth::factors::{CODE_REFUSED, Purpose, RECOVERY_CODE_REFUSED};
use crate::auth::session::TypedSession;
use crate::domain::{RecoveryCode, TotpCode};
use crate::limits::Bucket;
use crate::state::AppState;
use crate::web::client::client_info;
use crate::web::error::AppError;
use crate::web::guard::{PasswordVerified, see_other};
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "auth/second_factor.html")]
pub struct SecondFactorPage {
    pub layout: Layout,
    pub error: Option<String>,
    /// The options for the page's script when the user has security keys.
    pub key_options: Option<String>,
    /// The user has an authenticator app.
    pub app: bool,
}

#[derive(Template)]
#[template(path = "auth/recovery.html")]
pub struct RecoveryPage {
    pub layout: Layout,
    pub error: Option<String>,
}

pub async fn challenge_get(
    state: web::Data<AppState>,
    session: TypedSession,
    pending: PasswordVerified,
) -> Result<HttpResponse, AppError> {
    challenge_page(&state, &session, &pending, StatusCode::OK, None).await
}

/// The second step's page; with a fresh key challenge (replacing any before) when the user
/// has keys.
async fn challenge_page(
    state: &AppState,
    session: &TypedSession,
    pending: &PasswordVerified,
    status: StatusCode,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let factors = pending.account.factors;
    let key_options = if factors.security_keys && state.webauthn.is_some() {
        let binding = session.ceremony_binding()?;
        let user = &pending.account.user;
        security_key::start_second_factor(&state.factors(), user, binding).await?
    } else {
        None
    };
    let title = if key_options.is_some() {
        "Use your security key"
    } else {
        "Enter your code"
    };
    let page = SecondFactorPage {
        layout: layout(session, title, None)?,
        error: error.map(str::to_owned),
        key_options,
        app: factors.authenticator,
    };
    render(&page, status)
}

pub async fn challenge_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    pending: PasswordVerified,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let (ip, per_network) = second_factor_limit(&req, &state)?;
    let code = match TotpCode::parse(&form.code) {
        Ok(code) => code,
        Err(e) => {
            // A malformed code is an attempt too: it counts against the network's limit.
            rate_limit(&state, [per_network]).await?;
            return challenge_page(
                &state,
                &session,
                &pending,
                StatusCode::BAD_REQUEST,
                Some(e.0),
            )
            .await;
        }
    };
    // The network's limit is charged in the transaction that checks the code.
    let user = &pending.account.user;
    let charge = Some(per_network);
    let check = totp::verify(&state.factors(), user, code, Purpose::SignIn, ip, charge).await?;
    if !matches!(check, TotpCheck::Accepted { .. }) {
        return challenge_page(
            &state,
            &session,
            &pending,
            StatusCode::UNAUTHORIZED,
            Some(CODE_REFUSED),
        )
        .await;
    }
    finish_sign_in(&req, &session, pending, "/home")
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    credential: String,
}

pub async fn security_key_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    pending: PasswordVerified,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, AppError> {
    let (ip, per_network) = second_factor_limit(&req, &state)?;
    if state.webauthn.is_none() {
        return Err(AppError::Conflict(security_key::UNAVAILABLE.into()));
    }
    let binding = session.ceremony_binding()?;
    let answer = form.into_inner().credential;
    let user = &pending.account.user;
    let charge = Some(per_network);
    let ctx = state.factors();
    let check =
        security_key::verify(&ctx, user, binding, answer, Purpose::SignIn, ip, charge).await?;
    if check != KeyCheck::Accepted {
        return challenge_page(
            &state,
            &session,
            &pending,
            StatusCode::UNAUTHORIZED,
            Some(KEY_REFUSED),
        )
        .await;
    }
    finish_sign_in(&req, &session, pending, "/home")
}

/// The client's IP (for the audit log) and the second step's per-IP bucket (codes and
/// recovery codes share it), with the words of its refusal.
fn second_factor_limit(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(Option<String>, (Bucket, &'static str)), AppError> {
    const TOO_MANY: &str = "Too many codes were tried from your network.";
    let limit = network_limit(req, state, Bucket::second_factor_ip, TOO_MANY)?;
    Ok((limit.ip, limit.bucket))
}

/// The second factor is done: step up to the full state under a new session id, and go
/// where the user was headed (or to `default`).
fn finish_sign_in(
    req: &HttpRequest,
    session: &TypedSession,
    pending: PasswordVerified,
    default: &str,
) -> Result<HttpResponse, AppError> {
    // The guard checked that this session is the password step of this user, alive and
    // of their current epoch.
    let signed_in = session.state().complete().ok_or_else(|| {
        AppError::Unexpected(anyhow::anyhow!("a second step without a password step"))
    })?;
    session.step_up(signed_in, &client_info(req)?)?;
    let next = pending.next;
    Ok(see_other(next.as_deref().unwrap_or(default)))
}

pub async fn recovery_get(session: TypedSession) -> Result<HttpResponse, AppError> {
    recovery_page(&session, StatusCode::OK, None)
}

fn recovery_page(
    session: &TypedSession,
    status: StatusCode,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let page = RecoveryPage {
        layout: layout(session, "Use a recovery code", None)?,
        error: error.map(str::to_owned),
    };
    render(&page, status)
}

pub async fn recovery_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    pending: PasswordVerified,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let (ip, per_network) = second_factor_limit(&req, &state)?;
    rate_limit(&state, [per_network]).await?;
    let code = match RecoveryCode::parse(&form.code) {
        Ok(code) => code,
        Err(e) => return recovery_page(&session, StatusCode::BAD_REQUEST, Some(e.0)),
    };
    let user = &pending.account.user;
    let spent = recovery::spend(&state.factors(), user, code, Purpose::SignIn, ip).await?;
    let Some(Spent { remaining, .. }) = spent else {
        return recovery_page(
            &session,
            StatusCode::UNAUTHORIZED,
            Some(RECOVERY_CODE_REFUSED),
        );
    };
    let notice = match remaining {
        0 => "You signed in with your last recovery code. Make a new set now.".to_owned(),
        1 => "You signed in with a recovery code. You have 1 left: make a new set soon.".to_owned(),
        n => format!("You signed in with a recovery code. You have {n} left."),
    };
    // Someone using a recovery code has usually lost their device: the security page is
    // where they can turn 2FA off and set it up again, or make new codes.
    let response = finish_sign_in(&req, &session, pending, "/account/security")?;
    session.notice(&notice)?;
    Ok(response)
}
