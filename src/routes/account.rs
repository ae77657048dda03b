//! A signed-in user's own 2FA: status, enrolment, new recovery codes, turning it off.
//!
//! Invariants:
//! - Nothing is enabled until a code from the new secret is confirmed; the pending secret
//!   expires after 15 minutes.
//! - The code that confirms enrolment consumes its time step: it cannot sign anyone in.
//! - Enabling or disabling 2FA ends every other session of the user (ours moves to a new id).
//! - A failed step changes nothing but the audit log (and, for a right code, its time step).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{CodeForm, client_ip, layout, rate_limit};
use crate::audit::{Event, Kind};
use crate::auth::factors::recovery::{self, RecoverySet, Spent};
use crate::auth::factors::totp::{self, Confirmation, Enrolment, TotpCheck, TotpSecret, qr_svg};
use crate::auth::factors::{self, CODE_REFUSED, Purpose, RECOVERY_CODE_REFUSED, security_key};
use crate::auth::session::TypedSession;
use crate::client::rate_limit_network;
use crate::db::models::{Account, PendingEnrolment, User};
use crate::db::now;
use crate::domain::{Password, RecoveryCode, TotpCode};
use crate::limits::Bucket;
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{
    DEMO_ACCOUNT, Enrolling, OwnCredentials, SignedIn, refuse_demo, see_other,
};
use crate::web::views::{Layout, render, render_secret};

use crate::words::{date, date_time};

#[derive(Template)]
#[template(path = "account/security.html")]
pub struct SecurityPage {
    pub layout: Layout,
    pub totp_enabled: bool,
    pub enabled_since: Option<String>,
    pub codes_left: i64,
    /// The user's security keys and passkeys, oldest first.
    pub keys: Vec<KeyView>,
    /// Whether this server can register keys (`PUBLIC_URL` is a name).
    pub keys_available: bool,
    /// A key challenge for confirming new recovery codes, when the user has keys.
    pub key_options: Option<String>,
    /// Which form an error belongs to: "regenerate", "disable" or "key".
    pub error_form: &'static str,
    /// With `error_form == "key"`: the id of the key whose form it is.
    pub error_key: String,
    pub error: Option<String>,
    /// Show the disable form's code field with a letters keyboard (for recovery codes).
    pub letters: bool,
    /// Why 2FA cannot be turned off (workspace policy, staff); the form is then not shown.
    pub must_stay: Option<&'static str>,
    /// A demo account: the page says so instead of offering any change.
    pub demo: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "account/setup.html")]
pub struct SetupPage {
    pub layout: Layout,
    pub qr_svg: String,
    pub otpauth_uri: String,
    pub secret_grouped: String,
    pub issuer: String,
    pub account: String,
    pub expires_minutes: i64,
    pub error: Option<String>,
    /// Held at enrolment: 2FA is required before anything else.
    pub held: bool,
}

#[derive(Template)]
#[template(path = "account/recovery_codes.html")]
pub struct RecoveryCodesPage {
    pub layout: Layout,
    pub codes: Vec<String>,
    /// The codes as a `data:` URL, for the .txt download link.
    pub download_href: String,
    pub just_enabled: bool,
    /// Whose codes and when they were made, for the printed sheet.
    pub account: String,
    pub made: String,
}
/// A security key as the security page lists it.
pub struct KeyView {
    pub id: String,
    pub name: String,
    /// "Security key" or "Passkey".
    pub kind: &'static str,
    pub added: String,
    pub last_used: Option<String>,
}

const NOT_ENROLLED: &str = "Two-factor sign-in is not on for your account.";
const NO_APP: &str = "The authenticator app is not on for your account.";

/// Why policy keeps this account's 2FA on, if it does.
fn why_2fa_must_stay(account: &Account) -> Option<&'static str> {
    if account.user.is_staff {
        Some(
            "Support staff must always use two-factor sign-in, so it cannot be turned off. To move it to a new device, ask another member of staff to reset it.",
        )
    } else if account.two_factor_enforced() {
        Some(
            "Your workspace requires two-factor sign-in, so it cannot be turned off. To move it to a new device, ask an admin of your workspace to reset it, then set it up again.",
        )
    } else {
        None
    }
}

#[derive(Deserialize)]
pub struct SecurityQuery {
    with: Option<String>,
}

pub async fn security_get(
    state: web::Data<AppState>,
    session: TypedSession,
    SignedIn(account): SignedIn,
    query: web::Query<SecurityQuery>,
) -> Result<HttpResponse, AppError> {
    let letters = query.with.as_deref() == Some("letters");
    security_page(
        &state,
        &session,
        &account,
        StatusCode::OK,
        Form::None,
        None,
        letters,
    )
    .await
}

/// Which form on the security page an error belongs to.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Form {
    None,
    Regenerate,
    Disable,
    /// The forms of the key with this id.
    Key(String),
}

pub(super) async fn security_page(
    state: &AppState,
    session: &TypedSession,
    account: &Account,
    status: StatusCode,
    form: Form,
    error: Option<&str>,
    letters: bool,
) -> Result<HttpResponse, AppError> {
    let ctx = state.factors();
    let factors = factors::overview(&ctx, &account.user.id).await?;
    let keys = security_key::list(&ctx, &account.user.id)
        .await?
        .into_iter()
        .map(|k| KeyView {
            id: k.id,
            name: k.name,
            kind: if k.passwordless {
                "Passkey"
            } else {
                "Security key"
            },
            added: date(k.created_at),
            last_used: k.last_used_at.map(date_time),
        })
        .collect();
    let (error_form, error_key) = match form {
        Form::None => ("", String::new()),
        Form::Regenerate => ("regenerate", String::new()),
        Form::Disable => ("disable", String::new()),
        Form::Key(id) => ("key", id),
    };
    // Users with keys may confirm new recovery codes with one (a demo account changes
    // nothing, so it is not asked).
    let key_options =
        if account.factors.security_keys && !account.is_demo() && state.webauthn.is_some() {
            let binding = session.ceremony_binding()?;
            security_key::start_second_factor(&ctx, &account.user, binding).await?
        } else {
            None
        };
    let page = SecurityPage {
        layout: layout(session, "Security", Some(account))?,
        key_options,
        totp_enabled: factors.authenticator_since.is_some(),
        enabled_since: factors.authenticator_since.map(date),
        codes_left: factors.recovery_codes_left,
        keys,
        keys_available: state.webauthn.is_some(),
        error_form,
        error_key,
        error: error.map(str::to_owned),
        letters,
        must_stay: why_2fa_must_stay(account),
        demo: account.is_demo().then_some(DEMO_ACCOUNT),
    };
    render(&page, status)
}

pub async fn setup_get(
    state: web::Data<AppState>,
    session: TypedSession,
    Enrolling { account, held }: Enrolling,
) -> Result<HttpResponse, AppError> {
    refuse_demo(&account)?;
    if account.factors.authenticator {
        session.notice("Two-factor sign-in is already on. To move it to a new device, turn it off and set it up again.")?;
        return Ok(see_other("/account/security"));
    }
    let binding = session.enrolment_binding()?;
    let pending = totp::start_enrolment(&state.factors(), &account.user.id, binding).await?;
    setup_page(&state, &session, &account, held, &pending, None)
}

fn setup_page(
    state: &AppState,
    session: &TypedSession,
    account: &Account,
    held: bool,
    pending: &PendingEnrolment,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let secret = TotpSecret::unseal(&state.keyring, &pending.user_id, &pending.sealed())?;
    let issuer = &state.settings.issuer;
    let uri = secret.otpauth_uri(issuer, &account.user.email)?;
    let page = SetupPage {
        layout: layout(session, "Set up two-factor sign-in", Some(account))?,
        qr_svg: qr_svg(&uri)?,
        otpauth_uri: uri.to_string(),
        secret_grouped: secret.to_grouped_base32().to_string(),
        issuer: issuer.clone(),
        account: account.user.email.clone(),
        expires_minutes: ((pending.expires_at - now()).max(0) + 59) / 60,
        error: error.map(str::to_owned),
        held,
    };
    let mut response = render_secret(&page)?;
    if error.is_some() {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    Ok(response)
}

pub async fn setup_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    Enrolling { account, held }: Enrolling,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    refuse_demo(&account)?;
    let already_on = || AppError::Conflict("Two-factor sign-in is already on.".into());
    if account.factors.authenticator {
        return Err(already_on());
    }
    let binding = session.enrolment_binding()?;
    let factors = state.factors();
    let pending = match totp::find_enrolment(&factors, &account.user.id, binding).await? {
        Enrolment::Pending(pending) => pending,
        Enrolment::AlreadyOn => return Err(already_on()),
        Enrolment::Gone => {
            session.alert("That setup key is no longer valid: it expired after 15 minutes, or setup was started again in another window. Here is a new one: scan it and enter the code.")?;
            return Ok(see_other("/account/2fa/setup"));
        }
    };
    let code = match TotpCode::parse(&form.code) {
        Ok(code) => code,
        Err(e) => {
            let mut response = setup_page(&state, &session, &account, held, &pending, Some(e.0))?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(response);
        }
    };
    let ip = client_ip(&req)?;
    let confirmed =
        totp::confirm_enrolment(&factors, &account.user, pending.clone(), &code, held, ip);
    match confirmed.await? {
        Confirmation::Enabled { epoch, codes } => {
            session.rejoin(epoch)?;
            recovery_codes_page(&session, &account, &codes, true)
        }
        Confirmation::Refused => setup_page(
            &state,
            &session,
            &account,
            held,
            &pending,
            Some(CODE_REFUSED),
        ),
    }
}

pub(super) fn recovery_codes_page(
    session: &TypedSession,
    account: &Account,
    set: &RecoverySet,
    just_enabled: bool,
) -> Result<HttpResponse, AppError> {
    let codes: Vec<String> = set.codes.iter().map(RecoveryCode::formatted).collect();
    let made = date_time(now());
    let text = format!(
        "Tessera recovery codes for {}, made {made}\nEach code signs you in once. Keep them safe.\n\n{}\n",
        account.user.email,
        codes.join("\n")
    );
    let download_href = format!(
        "data:text/plain;charset=utf-8,{}",
        percent_encode_all(&text)
    );
    let page = RecoveryCodesPage {
        layout: layout(session, "Your recovery codes", Some(account))?,
        codes,
        download_href,
        just_enabled,
        account: account.user.email.clone(),
        made,
    };
    render_secret(&page)
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a `data:` URL.
fn percent_encode_all(text: &str) -> String {
    use std::fmt::Write;
    text.bytes()
        .fold(String::with_capacity(text.len() * 2), |mut out, b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
            out
        })
}

/// New recovery codes are confirmed with an authenticator code, or with a security key's
/// answer to the security page's challenge.
#[derive(Deserialize)]
pub struct RegenerateForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    credential: String,
}

pub async fn recovery_codes_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    OwnCredentials(account): OwnCredentials,
    form: web::Form<RegenerateForm>,
) -> Result<HttpResponse, AppError> {
    let refuse = |status, message: &'static str| {
        security_page(
            &state,
            &session,
            &account,
            status,
            Form::Regenerate,
            Some(message),
            false,
        )
    };
    let ip = client_ip(&req)?;
    let factors = state.factors();
    let purpose = Purpose::NewRecoveryCodes;
    let RegenerateForm { code, credential } = form.into_inner();
    if !credential.is_empty() {
        let binding = session.ceremony_binding()?;
        let (user, proof) = (&account.user, credential);
        let check =
            security_key::verify(&factors, user, binding, proof, purpose, ip.clone(), None).await?;
        if check != security_key::KeyCheck::Accepted {
            return refuse(StatusCode::UNAUTHORIZED, security_key::KEY_REFUSED).await;
        }
    } else {
        let code = match TotpCode::parse(&code) {
            Ok(code) => code,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e.0).await,
        };
        let check = totp::verify(&factors, &account.user, code, purpose, ip.clone(), None).await?;
        match check {
            TotpCheck::Accepted { .. } => {}
            TotpCheck::NotEnrolled => return refuse(StatusCode::CONFLICT, NOT_ENROLLED).await,
            TotpCheck::Wrong | TotpCheck::Replayed => {
                return refuse(StatusCode::UNAUTHORIZED, CODE_REFUSED).await;
            }
        }
    }

    let Some(set) = recovery::replace(&factors, &account.user, ip).await? else {
        return refuse(StatusCode::CONFLICT, NOT_ENROLLED).await;
    };
    recovery_codes_page(&session, &account, &set, false)
}

#[derive(Deserialize)]
pub struct DisableForm {
    password: String,
    code: String,
}

/// The second factor offered to turn 2FA off: normally an authenticator code; a recovery
/// code for someone who lost their device.
enum Proof {
    Totp(TotpCode),
    Recovery(RecoveryCode),
}

pub async fn disable_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    OwnCredentials(account): OwnCredentials,
    form: web::Form<DisableForm>,
) -> Result<HttpResponse, AppError> {
    let DisableForm { password, code } = form.into_inner();
    let letters = TotpCode::parse(&code).is_err();
    let refuse = |status, message: &'static str| {
        security_page(
            &state,
            &session,
            &account,
            status,
            Form::Disable,
            Some(message),
            letters,
        )
    };
    if !account.factors.authenticator {
        return refuse(StatusCode::CONFLICT, NO_APP).await;
    }
    // With a security key left the account keeps a second factor, so the app may go.
    if !account.factors.security_keys
        && let Some(why) = why_2fa_must_stay(&account)
    {
        return Err(AppError::Forbidden(why.into()));
    }
    let password = match Password::parse(password) {
        Ok(password) => password,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.0).await,
    };
    let proof = match (TotpCode::parse(&code), RecoveryCode::parse(&code)) {
        (Ok(totp), _) => Proof::Totp(totp),
        (_, Ok(recovery)) => Proof::Recovery(recovery),
        (Err(totp), Err(recovery)) => {
            let meant_recovery = code.chars().any(|c| c.is_ascii_alphabetic())
                || code.chars().filter(char::is_ascii_alphanumeric).count() > 6;
            let e = if meant_recovery { recovery } else { totp };
            return refuse(StatusCode::BAD_REQUEST, e.0).await;
        }
    };
    let ip = client_ip(&req)?;

    if !check_own_password(
        &state,
        &account,
        password,
        ip.clone(),
        "to turn off two-factor sign-in",
    )
    .await?
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "That password is not right. Nothing was changed.",
        )
        .await;
    }

    let ended_sessions = match proof {
        // Turning off happens in the transaction that consumes the code.
        Proof::Totp(code) => {
            let factors = state.factors();
            match totp::verify(&factors, &account.user, code, Purpose::TurnOff, ip, None).await? {
                TotpCheck::Accepted { ended_sessions } => ended_sessions,
                _ => None,
            }
        }
        Proof::Recovery(code) => {
            recovery::spend(&state.factors(), &account.user, code, Purpose::TurnOff, ip)
                .await?
                .and_then(|Spent { ended_sessions, .. }| ended_sessions)
        }
    };
    let Some(epoch) = ended_sessions else {
        let message = if letters {
            RECOVERY_CODE_REFUSED
        } else {
            CODE_REFUSED
        };
        return refuse(StatusCode::UNAUTHORIZED, message).await;
    };

    session.rejoin(epoch)?;
    session.notice(if account.factors.security_keys {
        "The authenticator app was removed; your security keys still sign you in. Your other sessions were signed out."
    } else {
        "Two-factor sign-in is now off, and your other sessions were signed out."
    })?;
    Ok(see_other("/account/security"))
}

/// Checks a signed-in user's password again before a sensitive change (`what`, for the
/// audit log). It is guessable here too (by whoever holds a signed-in cookie), so it counts
/// against the same per-email limits as the sign-in page, and a wrong one is audited.
pub(super) async fn check_own_password(
    state: &AppState,
    account: &Account,
    password: Password,
    ip: Option<String>,
    what: &'static str,
) -> Result<bool, AppError> {
    let network = rate_limit_network(ip.as_deref());
    let password_buckets =
        Bucket::password_failures(&account.user.email, &network, &state.settings.limits);
    const TOO_MANY: &str = "Too many wrong passwords were entered for this account.";
    rate_limit(state, password_buckets.clone().map(|b| (b, TOO_MANY))).await?;
    let user_id = account.user.id.clone();
    let stored_hash = state
        .db
        .run(move |conn| User::password_hash(conn, &user_id).map_err(AppError::from))
        .await?;
    if !state.hasher.verify(password.expose(), stored_hash).await? {
        let event = Event::by_user(Kind::PasswordCheckFailed, &account.user, ip).with_detail(what);
        state
            .db
            .run_writing(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
        return Ok(false);
    }
    state
        .db
        .run_writing(move |conn| {
            crate::limits::clear_all(conn, &password_buckets)?;
            Ok::<_, AppError>(())
        })
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_encode_everything_but_unreserved_characters() {
        assert_eq!(percent_encode_all("AB-12 x\n"), "AB-12%20x%0A");
        assert_eq!(percent_encode_all("a#b%c"), "a%23b%25c");
    }
}
