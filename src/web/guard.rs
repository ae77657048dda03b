//! The guard: the one place that decides where a request may go.
//!
//! For every request it
//! 1. resolves the session's login state against the database (expired steps, deleted or
//!    deactivated users and sessions older than the user's session epoch fall back to
//!    anonymous);
//! 2. compares that stage with what the route requires (`access_for`) and, if it falls
//!    short, answers 303 to the right step — 401/403 JSON for clients that ask for JSON —
//!    without running anything. Workspace policy is applied here on every request, so a
//!    session opened before a deadline is held as soon as it passes: at adding a key
//!    (`Stage::MustAddKey`) when the workspace requires keys and the user has none, else
//!    at enrolment (`Stage::MustEnrol`) when it requires 2FA and the user has no factor;
//! 3. refuses any state-changing request (every method but GET/HEAD) whose form lacks this
//!    session's CSRF token (403), reading the body once and handing it on unchanged;
//! 4. lets the request through, with the signed-in `Identity` in its extensions.
//!
//! Routes are protected by default: a path not listed as public needs the full state.
//! Handlers take the extractors below, which only read what the guard decided.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};

use crate::auth::session::{Expired, LoginState, TypedSession};
use crate::db::models::Account;
use crate::db::now;
use crate::state::AppState;
use crate::web::error::{AppError, wants_json};
use crate::web::views::FrameToken;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the sign-in pages, first-run setup, health, static files).
    Public,
    /// The password step done, the second factor owed.
    SecondFactor,
    /// Signed in, including a user held at enrolment (`Stage::MustEnrol`).
    Enrol,
    /// Adding a security key or passkey: signed in, including a user held at enrolment
    /// (`Stage::MustEnrol`: a key is a second factor) or at adding a key
    /// (`Stage::MustAddKey`).
    EnrolKey,
    /// Fully signed in. The default for every path not listed.
    Full,
}

pub fn access_for(path: &str) -> Access {
    match path {
        "/" | "/login" | "/logout" | "/setup" | "/healthz" | "/favicon.ico" => Access::Public,
        "/login/forgot" => Access::Public,
        p if p.starts_with("/login/reset/") => Access::Public,
        "/login/2fa" | "/login/recovery" | "/login/security-key" => Access::SecondFactor,
        // Signing in with a passkey: both steps at once, from the sign-in page.
        "/login/passkey" => Access::Public,
        "/account/2fa/setup" => Access::Enrol,
        // A security key is a second factor: adding one is enrolment too, and the only
        // page open to a member held for a key.
        "/account/security-keys/new" | "/account/security-keys" => Access::EnrolKey,
        p if p.starts_with("/static/") => Access::Public,
        // Accepting an invitation: the link is the credential (see `routes::invite`).
        p if p.starts_with("/invite/") => Access::Public,
        _ => Access::Full,
    }
}

/// How far the session's owner has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    PasswordVerified,
    /// Signed in with the password, but 2FA is required now and the user has none: only
    /// enrolment, signing out and static files are open.
    MustEnrol,
    /// Signed in, but the workspace requires a security key or passkey now and the user
    /// has none: only adding a key (`Access::EnrolKey`), signing out and static files are
    /// open. Comes before `MustEnrol`: a key satisfies both requirements.
    MustAddKey,
    Full,
}

/// The user behind the request, as the guard resolved it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: Account,
    pub stage: Stage,
    /// Where to go after the second factor (`PasswordVerified` only).
    pub next: Option<String>,
}

pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path().to_owned();
    if path.starts_with("/static/") || path == "/healthz" || path == "/favicon.ico" {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        let err = AppError::Unexpected(anyhow::anyhow!("application state is missing"));
        return Ok(req.error_response(err).map_into_right_body());
    };
    let session = TypedSession::of(actix_session::SessionExt::get_session(&req));

    let identity = match resolve(&state, &session).await {
        Ok(identity) => identity,
        Err(e) => return Ok(req.error_response(e).map_into_right_body()),
    };
    let stage = identity.as_ref().map(|i| i.stage);
    let refusal = match (access_for(&path), stage) {
        (Access::Public, _)
        | (Access::SecondFactor, Some(Stage::PasswordVerified))
        | (Access::Enrol, Some(Stage::Full | Stage::MustEnrol))
        | (Access::EnrolKey, Some(Stage::Full | Stage::MustEnrol | Stage::MustAddKey))
        | (Access::Full, Some(Stage::Full)) => None,
        (Access::SecondFactor, Some(Stage::Full)) => Some(see_other("/home")),
        (Access::SecondFactor | Access::Full, Some(Stage::MustEnrol)) => {
            Some(to_enrolment(req.request()))
        }
        (Access::SecondFactor | Access::Enrol | Access::Full, Some(Stage::MustAddKey)) => {
            Some(to_key_enrolment(req.request()))
        }
        (_, None) => Some(to_sign_in(req.request())),
        (Access::Enrol | Access::EnrolKey | Access::Full, Some(Stage::PasswordVerified)) => {
            Some(to_second_factor(req.request()))
        }
    };
    // A request in the wrong state is sent to the right step before its form is looked
    // at: nothing runs for it, and a form from a session that has since ended (a stale
    // tab) leads to sign-in rather than to an "expired form" error.
    if let Some(response) = refusal {
        return Ok(req.into_response(response).map_into_right_body());
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        // Signing out of a session that is already anonymous changes nothing, so there is
        // nothing for a forged request to achieve: send the user to sign in instead of
        // showing an "expired form" error for a stale tab.
        if path == "/logout" && identity.is_none() {
            return Ok(req.into_response(see_other("/login")).map_into_right_body());
        }
        if let Err(e) = check_csrf(&mut req, &session).await {
            return Ok(req.error_response(e).map_into_right_body());
        }
    }
    if let Some(identity) = identity {
        // Error pages show the signed-in header too, with the token every page has. Only
        // read here: making one on every request would write the session.
        if identity.stage != Stage::PasswordVerified
            && let Some(token) = session.existing_csrf_token()
        {
            req.extensions_mut().insert(FrameToken(token));
        }
        req.extensions_mut().insert(identity);
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Reads the form, checks its `csrf_token`, and puts the body back for the handler.
async fn check_csrf(req: &mut ServiceRequest, session: &TypedSession) -> Result<(), AppError> {
    let body = req.extract::<web::Bytes>().await.map_err(|e| {
        if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest("The form could not be read. Nothing was changed.".into())
        }
    })?;
    let submitted = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .ok()
        .and_then(|fields| {
            let mut tokens = fields
                .into_iter()
                .filter(|(k, _)| k == "csrf_token")
                .map(|(_, v)| v);
            match (tokens.next(), tokens.next()) {
                (Some(token), None) => Some(token),
                _ => None,
            }
        });
    req.set_payload(Payload::from(body));
    match submitted {
        Some(token) if session.csrf_matches(&token) => Ok(()),
        _ => Err(AppError::Csrf),
    }
}

/// The session's state checked against the clock and the database.
async fn resolve(state: &AppState, session: &TypedSession) -> Result<Option<Identity>, AppError> {
    let login = session.state();
    let Some(user_id) = login.user_id().cloned() else {
        return Ok(None);
    };
    if let Err(expired) = login.check(now(), state.settings.login_lifetimes()) {
        session.reset()?;
        session.alert(match expired {
            Expired::Step => "Your sign-in took too long, so it was cancelled. Please sign in again.",
            Expired::Session => "You were signed out because your session reached its time limit. Please sign in again.",
        })?;
        return Ok(None);
    }
    let policy_now = state.settings.clock.now();
    // Read with the session's row when it has one for this user; otherwise (a session
    // kept in its cookie, a row whose user changed) read now.
    let account = match crate::session_store::loaded_account()
        .filter(|loaded| loaded.user_id() == user_id.as_str())
    {
        Some(loaded) => Some(loaded.at(policy_now)),
        None => {
            state
                .db
                .run(move |conn| Account::load(conn, &user_id, policy_now).map_err(AppError::from))
                .await?
        }
    };
    let Some(account) = account else {
        session.reset()?;
        return Ok(None);
    };
    // Deactivation also ends every session (the epoch below), but a session is refused
    // here in any case, and told why.
    if account.user.is_deactivated() {
        session.reset()?;
        session.alert(DEACTIVATED)?;
        return Ok(None);
    }
    // All of the user's sessions were ended after this one was made (its row may have
    // been written by a request that raced the ending).
    if login.epoch() != Some(account.user.session_epoch) {
        session.reset()?;
        session.alert("You were signed out because the security settings of your account changed. Please sign in again.")?;
        return Ok(None);
    }
    let (stage, next) = match login {
        LoginState::PasswordVerified { next, .. } => (Stage::PasswordVerified, next),
        _ if account.must_add_key() => (Stage::MustAddKey, None),
        _ if account.must_enrol() => (Stage::MustEnrol, None),
        _ => (Stage::Full, None),
    };
    Ok(Some(Identity {
        account,
        stage,
        next,
    }))
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn json_refusal(status: StatusCode, error: &str, location: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(serde_json::json!({ "error": error, "location": location }).to_string())
}

fn to_sign_in(req: &HttpRequest) -> HttpResponse {
    if wants_json(req) {
        return json_refusal(StatusCode::UNAUTHORIZED, "unauthenticated", "/login");
    }
    // Only a page someone asked to see is worth coming back to: not a form post, and not
    // a step of signing in.
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && matches!(
            access_for(req.path()),
            Access::Full | Access::Enrol | Access::EnrolKey
        )
    {
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(query) = serde_urlencoded::to_string([("next", target)]) {
            return see_other(&format!("/login?{query}"));
        }
    }
    see_other("/login")
}

fn to_second_factor(req: &HttpRequest) -> HttpResponse {
    if wants_json(req) {
        return json_refusal(
            StatusCode::UNAUTHORIZED,
            "second_factor_required",
            "/login/2fa",
        );
    }
    see_other("/login/2fa")
}

/// Where a user held at enrolment is sent (`Stage::MustEnrol`).
pub const ENROLMENT_PATH: &str = "/account/2fa/setup";

/// Where a user held at adding a key is sent (`Stage::MustAddKey`).
pub const KEY_ENROLMENT_PATH: &str = "/account/security-keys/new";

/// Where policy holds `account` now, if it does: adding a key comes first (a key also
/// satisfies "Require 2FA"), as in the guard's stages.
pub fn held_at(account: &Account) -> Option<&'static str> {
    if account.must_add_key() {
        Some(KEY_ENROLMENT_PATH)
    } else if account.must_enrol() {
        Some(ENROLMENT_PATH)
    } else {
        None
    }
}

/// The workspace requires 2FA now and this user has none.
fn to_enrolment(req: &HttpRequest) -> HttpResponse {
    held(
        req,
        "enrolment_required",
        ENROLMENT_REQUIRED,
        ENROLMENT_PATH,
    )
}

/// The workspace requires a security key or passkey now and this user has none.
fn to_key_enrolment(req: &HttpRequest) -> HttpResponse {
    held(
        req,
        "security_key_required",
        SECURITY_KEY_REQUIRED,
        KEY_ENROLMENT_PATH,
    )
}

/// 303 to `location`, or 403 with a JSON body naming `error` for a client asking for JSON.
fn held(req: &HttpRequest, error: &str, reason: &str, location: &str) -> HttpResponse {
    if wants_json(req) {
        return HttpResponse::Forbidden()
            .content_type("application/json")
            .body(
                serde_json::json!({
                    "error": error,
                    "reason": reason,
                    "location": location,
                })
                .to_string(),
            );
    }
    see_other(location)
}

/// Said to a deactivated user, after their correct password or when their session ends.
pub const DEACTIVATED: &str =
    "This account is deactivated. Ask an admin of your workspace if you need access again.";

pub const ENROLMENT_REQUIRED: &str =
    "Two-factor sign-in is required for your account. Set it up to continue.";

pub const SECURITY_KEY_REQUIRED: &str =
    "Your workspace requires a security key or passkey for your account. Add one to continue.";

/// What a demo account is told where it would change its password, a second factor or its
/// recovery codes.
pub const DEMO_ACCOUNT: &str = "This is a demo account: its password, two-factor sign-in and recovery codes cannot be changed, so that it keeps working for everyone who tries it.";

/// The one check before a page or form that changes the user's own credentials (password,
/// second factors, recovery codes, and the security keys to come): a demo account gets 403
/// with [`DEMO_ACCOUNT`]. Call it first, before the form is read or anything is started.
pub fn refuse_demo(account: &Account) -> Result<(), AppError> {
    if account.is_demo() {
        Err(AppError::Forbidden(DEMO_ACCOUNT.into()))
    } else {
        Ok(())
    }
}

/// A fully signed-in user who may change their own credentials: not a demo account (for
/// whom the extractor answers 403, see [`refuse_demo`]).
pub struct OwnCredentials(pub Account);

impl FromRequest for OwnCredentials {
    type Error = AppError;
    type Future = std::future::Ready<Result<OwnCredentials, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(
            SignedIn::from_request(req, payload)
                .into_inner()
                .and_then(|SignedIn(account)| {
                    refuse_demo(&account).map(|()| OwnCredentials(account))
                }),
        )
    }
}

fn identity_of(req: &HttpRequest) -> Option<Identity> {
    req.extensions().get::<Identity>().cloned()
}

fn guard_bypassed() -> AppError {
    AppError::Unexpected(anyhow::anyhow!(
        "a protected handler ran without the guard's identity"
    ))
}

/// The request's session, typed (see `auth::session`).
impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<TypedSession, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(TypedSession::of(
            actix_session::SessionExt::get_session(req),
        )))
    }
}

/// A fully signed-in user (handlers behind `Access::Full`).
pub struct SignedIn(pub Account);

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = std::future::Ready<Result<SignedIn, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match identity_of(req) {
            Some(Identity {
                account,
                stage: Stage::Full,
                ..
            }) => Ok(SignedIn(account)),
            _ => Err(guard_bypassed()),
        })
    }
}

/// A signed-in user who may be held at enrolment (`Access::Enrol`, `Access::EnrolKey`):
/// `held` says so (held at enrolment or at adding a key: either way, what they set up now
/// completes their sign-in).
pub struct Enrolling {
    pub account: Account,
    pub held: bool,
}

impl FromRequest for Enrolling {
    type Error = AppError;
    type Future = std::future::Ready<Result<Enrolling, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match identity_of(req) {
            Some(Identity { account, stage, .. }) if stage != Stage::PasswordVerified => {
                Ok(Enrolling {
                    account,
                    held: matches!(stage, Stage::MustEnrol | Stage::MustAddKey),
                })
            }
            _ => Err(guard_bypassed()),
        })
    }
}

/// A fully signed-in admin of their workspace who uses 2FA (so the admin pages are always
/// behind two factors, exemption or not); anyone else signed in gets 403.
pub struct WorkspaceAdmin(pub Account);

impl FromRequest for WorkspaceAdmin {
    type Error = AppError;
    type Future = std::future::Ready<Result<WorkspaceAdmin, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(match SignedIn::from_request(req, payload).into_inner() {
            Ok(SignedIn(account)) if account.is_admin() && account.factors.any() => {
                Ok(WorkspaceAdmin(account))
            }
            Ok(SignedIn(account)) if account.is_admin() => Err(AppError::Forbidden(
                "Set up two-factor sign-in for your own account first: the admin pages are only open to admins who use it. Go to your security page to set it up.".into(),
            )),
            Ok(_) => Err(AppError::Forbidden(
                "Only the admins of a workspace can use this page.".into(),
            )),
            Err(e) => Err(e),
        })
    }
}

/// A fully signed-in member of support staff; anyone else signed in gets 403.
pub struct SupportStaff(pub Account);

impl FromRequest for SupportStaff {
    type Error = AppError;
    type Future = std::future::Ready<Result<SupportStaff, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(match SignedIn::from_request(req, payload).into_inner() {
            Ok(SignedIn(account)) if account.user.is_staff => Ok(SupportStaff(account)),
            Ok(_) => Err(AppError::Forbidden(
                "Only support staff can use this page.".into(),
            )),
            Err(e) => Err(e),
        })
    }
}

/// A user between the password and the second factor (`Access::SecondFactor`).
pub struct PasswordVerified {
    pub account: Account,
    pub next: Option<String>,
}

impl FromRequest for PasswordVerified {
    type Error = AppError;
    type Future = std::future::Ready<Result<PasswordVerified, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match identity_of(req) {
            Some(Identity {
                account,
                stage: Stage::PasswordVerified,
                next,
            }) => Ok(PasswordVerified { account, next }),
            _ => Err(guard_bypassed()),
        })
    }
}

/// Whoever it is, on public pages.
pub struct MaybeSignedIn(pub Option<Identity>);

impl FromRequest for MaybeSignedIn {
    type Error = AppError;
    type Future = std::future::Ready<Result<MaybeSignedIn, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(MaybeSignedIn(identity_of(req))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_paths_need_the_full_state() {
        assert_eq!(access_for("/login"), Access::Public);
        assert_eq!(access_for("/static/style.css"), Access::Public);
        assert_eq!(access_for("/login/2fa"), Access::SecondFactor);
        assert_eq!(access_for("/login/recovery"), Access::SecondFactor);
        assert_eq!(access_for("/account/2fa/setup"), Access::Enrol);
        assert_eq!(access_for("/account/security-keys/new"), Access::EnrolKey);
        assert_eq!(access_for("/account/security-keys"), Access::EnrolKey);
        assert_eq!(access_for("/invite/abc"), Access::Public);
        for path in [
            "/invite",
            "/invites/abc",
            "/home",
            "/account/security",
            "/account/2fa/setup/x",
            "/account/2fa/disable",
            "/account/security-keys/x/remove",
            "/admin/users",
            "/anything",
            "/login/2fa/x",
            "/loginx",
        ] {
            assert_eq!(access_for(path), Access::Full, "{path}");
        }
    }
}
