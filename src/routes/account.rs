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
use serde::Deserialize;

use super::{CodeForm, client_ip, layout, rate_limit};
use crate::audit::{Event, Kind};
use crate::auth::recovery::{RecoverySet, generate_set};
use crate::auth::second_factor::{
    CODE_REFUSED, Purpose, RECOVERY_CODE_REFUSED, Spent, TotpCheck, spend_recovery_code,
    verify_totp,
};
use crate::auth::session::TypedSession;
use crate::auth::totp::{TotpSecret, qr_svg};
use crate::client::rate_limit_network;
use crate::db::models::{
    Account, PendingEnrolment, RecoveryCodes, TotpCredential, User, is_unique_violation,
};
use crate::db::now;
use crate::domain::{Password, RecoveryCode, TotpCode};
use crate::limits::Bucket;
use crate::mail::Mail;
use crate::session_store::end_sessions_of_user;
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{Enrolling, SignedIn, see_other};
use crate::web::views::{RecoveryCodesPage, SecurityPage, SetupPage, render, render_secret};

use crate::words::{date, date_time};
/// How long a shown-but-unconfirmed secret stays usable.
const ENROLMENT_SECONDS: i64 = 15 * 60;

const NOT_ENROLLED: &str = "Two-factor sign-in is not on for your account.";

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
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    None,
    Regenerate,
    Disable,
}

async fn security_page(
    state: &AppState,
    session: &TypedSession,
    account: &Account,
    status: StatusCode,
    form: Form,
    error: Option<&str>,
    letters: bool,
) -> Result<HttpResponse, AppError> {
    let user_id = account.user.id.clone();
    let (credential, codes_left) = state
        .db
        .run(move |conn| {
            let credential = TotpCredential::find(conn, &user_id)?;
            let left = RecoveryCodes::count_unused(conn, &user_id)?;
            Ok::<_, AppError>((credential, left))
        })
        .await?;
    let page = SecurityPage {
        layout: layout(session, "Security", Some(account))?,
        totp_enabled: credential.is_some(),
        enabled_since: credential.map(|c| date(c.enabled_at)),
        codes_left,
        error_form: match form {
            Form::None => "",
            Form::Regenerate => "regenerate",
            Form::Disable => "disable",
        },
        error: error.map(str::to_owned),
        letters,
        must_stay: why_2fa_must_stay(account),
    };
    render(&page, status)
}

pub async fn setup_get(
    state: web::Data<AppState>,
    session: TypedSession,
    Enrolling { account, held }: Enrolling,
) -> Result<HttpResponse, AppError> {
    if account.totp_enabled {
        session.notice("Two-factor sign-in is already on. To move it to a new device, turn it off and set it up again.")?;
        return Ok(see_other("/account/security"));
    }
    let shared = state.clone();
    let user_id = account.user.id.clone();
    let binding = session.enrolment_binding()?;
    let pending = state
        .db
        .write(move |conn| {
            // Two page loads at once must not both insert (PostgreSQL would refuse one).
            User::lock(conn, &user_id)?;
            let now = now();
            if let Some(pending) = PendingEnrolment::find_valid(conn, &user_id, &binding, now)? {
                return Ok::<_, AppError>(pending);
            }
            let secret = TotpSecret::generate()?;
            let sealed = shared.keyring.seal(&user_id, secret.as_bytes())?;
            let pending = PendingEnrolment {
                user_id,
                secret_ciphertext: sealed.ciphertext,
                key_id: sealed.key_id,
                created_at: now,
                expires_at: now + ENROLMENT_SECONDS,
                session_binding: binding,
            };
            PendingEnrolment::replace(conn, &pending)?;
            Ok(pending)
        })
        .await?;
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
    let already_on = || AppError::Conflict("Two-factor sign-in is already on.".into());
    if account.totp_enabled {
        return Err(already_on());
    }
    let user_id = account.user.id.clone();
    let binding = session.enrolment_binding()?;
    let (pending, enabled_meanwhile) = state
        .db
        .run(move |conn| {
            let pending = PendingEnrolment::find_valid(conn, &user_id, &binding, now())?;
            // A twin request may have enabled 2FA (taking the enrolment) since the guard
            // loaded the account: that is "already on", not "expired".
            let enabled = pending.is_none() && TotpCredential::find(conn, &user_id)?.is_some();
            Ok::<_, AppError>((pending, enabled))
        })
        .await?;
    if enabled_meanwhile {
        return Err(already_on());
    }
    let Some(pending) = pending else {
        session.alert("That setup key is no longer valid: it expired after 15 minutes, or setup was started again in another window. Here is a new one: scan it and enter the code.")?;
        return Ok(see_other("/account/2fa/setup"));
    };
    let code = match TotpCode::parse(&form.code) {
        Ok(code) => code,
        Err(e) => {
            let mut response = setup_page(&state, &session, &account, held, &pending, Some(e.0))?;
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(response);
        }
    };
    let secret = TotpSecret::unseal(&state.keyring, &pending.user_id, &pending.sealed())?;
    let ip = client_ip(&req)?;
    let Some(step) = secret.matching_step(&code, now())? else {
        let event = Event::by_user(Kind::SecondFactorFailed, &account.user, ip)
            .with_detail("authenticator code, for enrolment");
        state
            .db
            .run(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
        return setup_page(
            &state,
            &session,
            &account,
            held,
            &pending,
            Some(CODE_REFUSED),
        );
    };

    let set = new_recovery_set(&state).await?;
    let user = account.user.clone();
    let hashes = set.hashes.clone();
    // Losing a race is an error, so the transaction is rolled back as a whole.
    let already = || {
        AppError::Conflict(
            "This setup was already completed or has expired. Check your security page.".into(),
        )
    };
    let epoch = state
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            // Only one confirmation of this enrolment can take it...
            if !pending.take(conn, now())? {
                return Err(already());
            }
            // ...and only one enrolment can enable 2FA.
            TotpCredential::insert(conn, &user.id, &pending.sealed(), step, now()).map_err(
                |e| {
                    if is_unique_violation(&e) {
                        already()
                    } else {
                        e.into()
                    }
                },
            )?;
            RecoveryCodes::replace_all(conn, &user.id, &hashes, now())?;
            let epoch = end_sessions_of_user(conn, &user.id)?;
            Event::by_user(Kind::TwoFactorEnabled, &user, ip.clone()).record(conn)?;
            crate::mail::enqueue(conn, &Mail::TwoFactorEnabled { to: &user.email })?;
            if held {
                // Held at enrolment after the password, this user is only now signed in.
                User::record_sign_in(conn, &user.id, now())?;
                Event::by_user(Kind::SignInSucceeded, &user, ip)
                    .with_detail("password, then enrolment in 2FA")
                    .record(conn)?;
            }
            Ok(epoch)
        })
        .await?;
    session.rejoin(epoch)?;
    recovery_codes_page(&session, &account, &set, true)
}

async fn new_recovery_set(state: &AppState) -> Result<RecoverySet, AppError> {
    let cost = state.settings.recovery_code_bcrypt_cost;
    Ok(state.hasher.run_bounded(move || generate_set(cost)).await?)
}

fn recovery_codes_page(
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

pub async fn recovery_codes_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    SignedIn(account): SignedIn,
    form: web::Form<CodeForm>,
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
    let code = match TotpCode::parse(&form.code) {
        Ok(code) => code,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.0).await,
    };
    let ip = client_ip(&req)?;
    let check = verify_totp(
        &state,
        &account.user,
        code,
        Purpose::NewRecoveryCodes,
        ip,
        None,
    )
    .await?;
    match check {
        TotpCheck::Accepted { .. } => {}
        TotpCheck::NotEnrolled => return refuse(StatusCode::CONFLICT, NOT_ENROLLED).await,
        TotpCheck::Wrong | TotpCheck::Replayed => {
            return refuse(StatusCode::UNAUTHORIZED, CODE_REFUSED).await;
        }
    }

    let set = new_recovery_set(&state).await?;
    let user = account.user.clone();
    let hashes = set.hashes.clone();
    let ip = client_ip(&req)?;
    let replaced = state
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            // 2FA may have been turned off (in another tab) since the code was checked.
            if TotpCredential::find(conn, &user.id)?.is_none() {
                return Ok::<_, AppError>(false);
            }
            RecoveryCodes::replace_all(conn, &user.id, &hashes, now())?;
            Event::by_user(Kind::RecoveryCodesRegenerated, &user, ip).record(conn)?;
            crate::mail::enqueue(conn, &Mail::RecoveryCodesRegenerated { to: &user.email })?;
            Ok(true)
        })
        .await?;
    if !replaced {
        return refuse(StatusCode::CONFLICT, NOT_ENROLLED).await;
    }
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
    SignedIn(account): SignedIn,
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
    if !account.totp_enabled {
        return refuse(StatusCode::CONFLICT, NOT_ENROLLED).await;
    }
    if let Some(why) = why_2fa_must_stay(&account) {
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

    // The password is guessable here too (by whoever holds a signed-in cookie), so it
    // counts against the same per-email limits as the sign-in page.
    let network = rate_limit_network(ip.as_deref());
    let password_buckets =
        Bucket::password_failures(&account.user.email, &network, &state.settings.limits);
    const TOO_MANY: &str = "Too many wrong passwords were entered for this account.";
    rate_limit(&state, password_buckets.clone().map(|b| (b, TOO_MANY))).await?;
    // The password first: a wrong one must not spend the code.
    let password_ok = state
        .hasher
        .verify(password.expose(), Some(account.user.password_hash.clone()))
        .await?;
    if !password_ok {
        let event = Event::by_user(Kind::PasswordCheckFailed, &account.user, ip)
            .with_detail("to turn off two-factor sign-in");
        state
            .db
            .run(move |conn| event.record(conn).map_err(AppError::from))
            .await?;
        return refuse(
            StatusCode::UNAUTHORIZED,
            "That password is not right. Nothing was changed.",
        )
        .await;
    }
    state
        .db
        .run(move |conn| {
            for bucket in &password_buckets {
                bucket.clear(conn)?;
            }
            Ok::<_, AppError>(())
        })
        .await?;

    let ended_sessions = match proof {
        // Turning off happens in the transaction that consumes the code.
        Proof::Totp(code) => {
            match verify_totp(&state, &account.user, code, Purpose::TurnOff, ip, None).await? {
                TotpCheck::Accepted { ended_sessions } => ended_sessions,
                _ => None,
            }
        }
        Proof::Recovery(code) => {
            spend_recovery_code(&state, &account.user, code, Purpose::TurnOff, ip)
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
    session.notice("Two-factor sign-in is now off, and your other sessions were signed out.")?;
    Ok(see_other("/account/security"))
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
