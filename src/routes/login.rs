//! The password step, signing in with a passkey instead, and signing out.
//!
//! An unknown email and a wrong password get the same words, the same status and (thanks
//! to the dummy hash) the same time.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{NetworkLimit, client_ip, layout, network_limit, rate_limit};
use crate::audit::{Actor, Event, Kind};
use crate::auth::factors::security_key::{self, PasskeySignIn};
use crate::auth::session::{LoginState, TypedSession};
use crate::db::models::{Account, User};
use crate::db::now;
use crate::domain::{Email, NextPath, Password};
use crate::limits::Bucket;
use crate::state::AppState;
use crate::web::client::client_info;
use crate::web::error::AppError;
use crate::web::guard::{DEACTIVATED, MaybeSignedIn, Stage, held_at, see_other};
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "auth/login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    /// The options for signing in with a passkey; `None` when keys are unavailable.
    pub passkey_options: Option<String>,
}

/// The sign-in page's passkey challenge for this visitor (a new one at each render).
async fn passkey_options(
    state: &AppState,
    session: &TypedSession,
) -> Result<Option<String>, AppError> {
    if state.webauthn.is_none() {
        return Ok(None);
    }
    let binding = session.ceremony_binding()?;
    Ok(Some(
        security_key::start_passwordless(&state.factors(), binding).await?,
    ))
}

const WRONG_CREDENTIALS: &str =
    "That email and password do not match an account. Check them and try again.";

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn login_get(
    state: web::Data<AppState>,
    who: MaybeSignedIn,
    session: TypedSession,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AppError> {
    let next = query.into_inner().next.and_then(|n| NextPath::parse(&n));
    match who.0.map(|i| i.stage) {
        Some(Stage::Full) => return Ok(see_other(next.as_ref().map_or("/home", NextPath::as_str))),
        Some(Stage::PasswordVerified) => return Ok(see_other("/login/2fa")),
        Some(Stage::MustEnrol) => return Ok(see_other("/account/2fa/setup")),
        Some(Stage::MustAddKey) => return Ok(see_other(crate::web::guard::KEY_ENROLMENT_PATH)),
        None => {}
    }
    let page = LoginPage {
        layout: layout(&session, "Sign in", None)?,
        email: String::new(),
        next: next.map(|n| n.as_str().to_owned()).unwrap_or_default(),
        error: None,
        passkey_options: passkey_options(&state, &session).await?,
    };
    render(&page, StatusCode::OK)
}

/// The sign-in's per-network limit: the password step and passkey sign-in share it.
fn sign_in_limit(req: &HttpRequest, state: &AppState) -> Result<NetworkLimit, AppError> {
    const TOO_MANY: &str = "Too many sign-in attempts from your network.";
    network_limit(req, state, Bucket::login_ip, TOO_MANY)
}

/// The sign-in page again, with `message` and the email typed (never the password).
async fn refused_page(
    state: &AppState,
    session: &TypedSession,
    email: &str,
    next: Option<&NextPath>,
    status: StatusCode,
    message: &str,
) -> Result<HttpResponse, AppError> {
    let page = LoginPage {
        layout: layout(session, "Sign in", None)?,
        email: email.to_owned(),
        next: next.map(|n| n.as_str().to_owned()).unwrap_or_default(),
        error: Some(message.to_owned()),
        passkey_options: passkey_options(state, session).await?,
    };
    render(&page, status)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let NetworkLimit {
        ip,
        network,
        bucket: per_network,
    } = sign_in_limit(&req, &state)?;
    let limits = &state.settings.limits;
    let LoginForm {
        email: typed_email,
        password,
        next,
    } = form.into_inner();
    let next = NextPath::parse(&next);
    let refuse = async |status: StatusCode, message: &str| {
        let email = typed_email.trim();
        refused_page(&state, &session, email, next.as_ref(), status, message).await
    };
    let (email, password) = match (Email::parse(&typed_email), Password::parse(password)) {
        (Ok(email), Ok(password)) => (email, password),
        (Err(e), _) | (_, Err(e)) => {
            rate_limit(&state, [per_network]).await?;
            return refuse(StatusCode::BAD_REQUEST, e.0).await;
        }
    };

    // The email's buckets are charged before the hash is checked, whether or not it has an
    // account (so the limit reveals nothing), and emptied again by a successful sign-in.
    // One transaction with the network's bucket.
    let password_buckets = Bucket::password_failures(email.as_str(), &network, limits);
    const TOO_MANY: &str = "Too many failed sign-in attempts for this email address.";
    let [strict, loose] = password_buckets.clone();
    rate_limit(&state, [per_network, (strict, TOO_MANY), (loose, TOO_MANY)]).await?;
    let lookup = email.clone();
    let policy_now = state.settings.clock.now();
    let found = state
        .db
        .run(move |conn| {
            Account::load_for_sign_in(conn, &lookup, policy_now).map_err(AppError::from)
        })
        .await?;
    let verified = state
        .hasher
        .verify(
            password.expose(),
            found.as_ref().map(|(_, hash)| hash.clone()),
        )
        .await?;

    let (account, stored_hash) = match found {
        Some(found) if verified => found,
        found => {
            let event = match &found {
                Some((account, _)) => Event::against_user(Kind::SignInFailed, &account.user, ip),
                None => Event {
                    kind: Kind::SignInFailed,
                    workspace_id: None,
                    actor: Actor::Anonymous,
                    subject: Some((None, email.as_str().to_owned())),
                    ip,
                    detail: String::new(),
                },
            };
            state
                .db
                .run_writing(move |conn| {
                    event
                        .with_detail("wrong password or unknown email")
                        .record(conn)
                        .map_err(AppError::from)
                })
                .await?;
            return refuse(StatusCode::UNAUTHORIZED, WRONG_CREDENTIALS).await;
        }
    };

    // Only after the right password: a wrong one gets the usual words, so this says
    // nothing to someone who does not know it.
    let user = account.user.clone();
    if user.is_deactivated() {
        let event = Event::by_user(Kind::SignInFailed, &user, ip)
            .with_detail("correct password; the account is deactivated");
        state
            .db
            .run_writing(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
        return refuse(StatusCode::FORBIDDEN, DEACTIVATED).await;
    }

    let rehashed = if state.hasher.needs_rehash(&stored_hash) {
        Some(state.hasher.hash(password.expose()).await?)
    } else {
        None
    };
    // Only reaching the full state is a successful sign-in; a user held at enrolment has
    // proven the password and nothing more.
    let (kind, detail) = if account.factors.any() {
        (Kind::PasswordVerified, "password")
    } else if account.must_add_key() {
        (
            Kind::PasswordVerified,
            "password; held at adding a key: a security key is required",
        )
    } else if account.must_enrol() {
        (
            Kind::PasswordVerified,
            "password; held at enrolment: 2FA is required",
        )
    } else {
        (Kind::SignInSucceeded, "password")
    };
    let event = Event::by_user(kind, &user, ip).with_detail(detail);
    let signed_in = user.id.clone();
    // No transaction: each write stands alone, and the account was read with the hash.
    state
        .db
        .run_writing(move |conn| {
            if let Some(hash) = rehashed {
                User::rehash_password(conn, &signed_in, &stored_hash, &hash)?;
            }
            crate::limits::clear_all(conn, &password_buckets)?;
            if kind == Kind::SignInSucceeded {
                User::record_sign_in(conn, &signed_in, now())?;
            }
            event.record(conn)?;
            Ok::<_, AppError>(())
        })
        .await?;

    let login = LoginState::after_password(
        user.id,
        user.session_epoch,
        account.factors.any(),
        next.as_ref().map(|n| n.as_str().to_owned()),
        now(),
    );
    let full = login.is_full();
    session.step_up(login, &client_info(&req)?)?;
    Ok(see_other(if !full {
        "/login/2fa"
    } else if let Some(hold) = held_at(&account) {
        hold
    } else {
        next.as_ref().map_or("/home", NextPath::as_str)
    }))
}

#[derive(Deserialize)]
pub struct PasskeyForm {
    #[serde(default)]
    credential: String,
    #[serde(default)]
    next: String,
}

/// Signing in with a passkey: both steps at once. It replaces the password step, so it is
/// charged to the same per-network limit.
pub async fn passkey_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: MaybeSignedIn,
    session: TypedSession,
    form: web::Form<PasskeyForm>,
) -> Result<HttpResponse, AppError> {
    let PasskeyForm { credential, next } = form.into_inner();
    let next = NextPath::parse(&next);
    if who.0.is_some_and(|i| i.stage == Stage::Full) {
        return Ok(see_other(next.as_ref().map_or("/home", NextPath::as_str)));
    }
    if state.webauthn.is_none() {
        return Err(AppError::Conflict(security_key::UNAVAILABLE.into()));
    }
    let NetworkLimit {
        ip,
        bucket: per_network,
        ..
    } = sign_in_limit(&req, &state)?;
    let binding = session.ceremony_binding()?;
    let ctx = state.factors();
    let refuse = async |status: StatusCode, message: &str| {
        refused_page(&state, &session, "", next.as_ref(), status, message).await
    };
    let (user, epoch) =
        match security_key::sign_in_with_passkey(&ctx, binding, credential, ip, per_network).await?
        {
            PasskeySignIn::SignedIn { user, epoch } => (user, epoch),
            PasskeySignIn::Deactivated => return refuse(StatusCode::FORBIDDEN, DEACTIVATED).await,
            PasskeySignIn::Refused => {
                return refuse(StatusCode::UNAUTHORIZED, PASSKEY_REFUSED).await;
            }
        };
    session.step_up(
        LoginState::with_passkey(user.id.clone(), epoch, now()),
        &client_info(&req)?,
    )?;
    Ok(see_other(next.as_ref().map_or("/home", NextPath::as_str)))
}

const PASSKEY_REFUSED: &str = "That passkey was not accepted. Use a passkey registered to your account here, or sign in with your email and password.";

pub async fn logout_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: MaybeSignedIn,
    session: TypedSession,
) -> Result<HttpResponse, AppError> {
    if let Some(identity) = who.0 {
        let event = Event::by_user(Kind::SignedOut, &identity.account.user, client_ip(&req)?);
        state
            .db
            .run_writing(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
    }
    session.end();
    Ok(see_other("/login"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_users_typed() {
        let page = LoginPage {
            layout: Layout::bare("Sign in"),
            email: "<script>alert(1)</script>@example.com".into(),
            next: "/home\"><script>".into(),
            error: None,
            passkey_options: None,
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
