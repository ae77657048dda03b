//! One module per page or area; handlers are named `<page>_get` / `<page>_post`.
//! Which state a route needs is decided by `auth::guard`, not here.

mod account;
mod admin;
mod assets;
mod first_run;
mod home;
mod invite;
pub mod login;
mod passwords;
mod second_factor;
mod security_keys;
mod sessions;
mod support;

use actix_web::{HttpResponse, guard, web};
use serde::Deserialize;

use crate::auth::session::TypedSession;
use crate::db::models::Account;
use crate::limits::Bucket;
use crate::state::AppState;
use crate::web::client::client_ip;
use crate::web::error::AppError;
use crate::web::views::Layout;

pub use first_run::announce_setup_link;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(path("/").route(read().to(home::index_get)))
        .service(path("/healthz").route(read().to(home::healthz_get)))
        .service(path("/static/style.css").route(read().to(assets::style_get)))
        .service(path("/static/print.js").route(read().to(assets::print_get)))
        .service(path("/static/webauthn.js").route(read().to(assets::webauthn_get)))
        .service(path("/static/favicon.svg").route(read().to(assets::favicon_get)))
        .service(path("/favicon.ico").route(read().to(assets::favicon_get)))
        .service(
            path("/setup")
                .route(read().to(first_run::setup_get))
                .post(first_run::setup_post),
        )
        .service(
            path("/login")
                .route(read().to(login::login_get))
                .post(login::login_post),
        )
        .service(path("/logout").post(login::logout_post))
        .service(
            path("/login/forgot")
                .route(read().to(passwords::forgot_get))
                .post(passwords::forgot_post),
        )
        .service(
            path("/login/reset/{token}")
                .route(read().to(passwords::reset_get))
                .post(passwords::reset_post),
        )
        .service(
            path("/login/2fa")
                .route(read().to(second_factor::challenge_get))
                .post(second_factor::challenge_post),
        )
        .service(path("/login/security-key").post(second_factor::security_key_post))
        .service(path("/login/passkey").post(login::passkey_post))
        .service(
            path("/login/recovery")
                .route(read().to(second_factor::recovery_get))
                .post(second_factor::recovery_post),
        )
        .service(path("/home").route(read().to(home::home_get)))
        .service(path("/account/security").route(read().to(account::security_get)))
        .service(
            path("/account/2fa/setup")
                .route(read().to(account::setup_get))
                .post(account::setup_post),
        )
        .service(path("/account/security-keys/new").route(read().to(security_keys::new_get)))
        .service(path("/account/security-keys").post(security_keys::create_post))
        .service(path("/account/security-keys/{id}/rename").post(security_keys::rename_post))
        .service(path("/account/security-keys/{id}/remove").post(security_keys::remove_post))
        .service(path("/account/2fa/recovery-codes").post(account::recovery_codes_post))
        .service(path("/account/2fa/disable").post(account::disable_post))
        .service(
            path("/account/password")
                .route(read().to(passwords::change_get))
                .post(passwords::change_post),
        )
        .service(path("/account/sessions").route(read().to(sessions::sessions_get)))
        .service(path("/account/sessions/end").post(sessions::end_post))
        .service(path("/account/sessions/end-others").post(sessions::end_others_post))
        .service(path("/admin/users").route(read().to(admin::members::users_get)))
        .service(path("/admin/users.csv").route(read().to(admin::members::users_csv_get)))
        .service(path("/admin/users/{id}/reset-2fa").post(admin::members::reset_post))
        .service(path("/admin/users/{id}/role").post(admin::members::role_post))
        .service(path("/admin/users/{id}/deactivate").post(admin::members::deactivate_post))
        .service(path("/admin/users/{id}/reactivate").post(admin::members::reactivate_post))
        .service(path("/admin/invites").post(admin::invites::invite_post))
        .service(path("/admin/invites/{id}/resend").post(admin::invites::resend_post))
        .service(path("/admin/invites/{id}/revoke").post(admin::invites::revoke_post))
        .service(
            path("/invite/{token}")
                .route(read().to(invite::invite_get))
                .post(invite::invite_post),
        )
        .service(
            path("/admin/workspace")
                .route(read().to(admin::workspace::workspace_get))
                .post(admin::workspace::workspace_post),
        )
        .service(path("/admin/workspace/exemptions").post(admin::workspace::exemption_post))
        .service(
            path("/admin/workspace/exemptions/{id}/end").post(admin::workspace::exemption_end_post),
        )
        .service(path("/admin/audit").route(read().to(admin::audit::audit_get)))
        .service(path("/support/users").route(read().to(support::users_get)))
        .service(path("/support/users/{id}/reset-2fa").post(support::reset_post))
        .service(path("/support/workspaces").post(support::workspaces_post));
}

/// A route whose other methods get 405 (instead of the app's 404).
fn path(path: &'static str) -> actix_web::Resource {
    #[cfg(test)]
    tests::REGISTERED.with(|paths| paths.borrow_mut().push(path));
    web::resource(path).default_service(web::to(|| async {
        Err::<HttpResponse, _>(AppError::MethodNotAllowed)
    }))
}

/// GET, and HEAD answered the same way without a body (uptime monitors and link checkers
/// use HEAD).
fn read() -> actix_web::Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A form with one field, `code`.
#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

/// The page frame for `account` (or for nobody), with the session's CSRF token and notice.
fn layout(
    session: &TypedSession,
    title: &str,
    account: Option<&Account>,
) -> Result<Layout, AppError> {
    let mut layout = Layout::for_account(title, session.csrf_token()?, account);
    layout.flash = session.take_flash();
    Ok(layout)
}

/// How users reach this server (`PUBLIC_URL`, or start-up's default for it, without a
/// trailing slash), for the links in mails.
fn public_url(state: &AppState) -> &str {
    state.public_url.trim_end_matches('/')
}

/// The client as the abuse limits see it.
struct NetworkLimit {
    /// Its IP, for the audit log.
    ip: Option<String>,
    /// What the limits count by (an IPv6 client's /64).
    network: String,
    /// The network's bucket, with the words of its refusal.
    bucket: (Bucket, &'static str),
}

fn network_limit(
    req: &actix_web::HttpRequest,
    state: &AppState,
    bucket: fn(&str, &crate::limits::Limits) -> Bucket,
    message: &'static str,
) -> Result<NetworkLimit, AppError> {
    let ip = client_ip(req)?;
    let network = crate::client::rate_limit_network(ip.as_deref());
    let bucket = (bucket(&network, &state.settings.limits), message);
    Ok(NetworkLimit {
        ip,
        network,
        bucket,
    })
}

/// `path?query` with `params` encoded (the links that keep a list's filters and page);
/// those without a value are left out.
fn url_with(path: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<_> = params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    match serde_urlencoded::to_string(params) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

/// Takes one request from each of `buckets` (all or none, see `limits::charge`), or refuses
/// with 429, `Retry-After` and the refusing bucket's message.
async fn rate_limit<const N: usize>(
    state: &AppState,
    buckets: [(Bucket, &'static str); N],
) -> Result<(), AppError> {
    let messages = buckets.each_ref().map(|(_, message)| *message);
    let buckets = buckets.into_iter().map(|(bucket, _)| bucket).collect();
    match crate::limits::charge(&state.db, buckets, crate::limits::now_ms()).await? {
        Ok(()) => Ok(()),
        Err((index, wait)) => Err(AppError::too_many_requests(wait, messages[index])),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use crate::web::guard::{Access, access_for};

    thread_local! {
        /// The paths `configure` registered on this thread.
        pub(super) static REGISTERED: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }

    /// Every route and the access it must have. A new route fails this test until it is
    /// listed here, so its access is decided, not inherited by accident.
    const EXPECTED: &[(&str, Access)] = &[
        ("/", Access::Public),
        ("/healthz", Access::Public),
        ("/static/style.css", Access::Public),
        ("/static/print.js", Access::Public),
        ("/static/webauthn.js", Access::Public),
        ("/static/favicon.svg", Access::Public),
        ("/favicon.ico", Access::Public),
        ("/setup", Access::Public),
        ("/login", Access::Public),
        ("/logout", Access::Public),
        ("/login/forgot", Access::Public),
        ("/login/reset/{token}", Access::Public),
        ("/login/2fa", Access::SecondFactor),
        ("/login/recovery", Access::SecondFactor),
        ("/login/security-key", Access::SecondFactor),
        ("/login/passkey", Access::Public),
        ("/home", Access::Full),
        ("/account/security", Access::Full),
        ("/account/2fa/setup", Access::Enrol),
        ("/account/security-keys/new", Access::EnrolKey),
        ("/account/security-keys", Access::EnrolKey),
        ("/account/security-keys/{id}/rename", Access::Full),
        ("/account/security-keys/{id}/remove", Access::Full),
        ("/account/2fa/recovery-codes", Access::Full),
        ("/account/2fa/disable", Access::Full),
        ("/account/password", Access::Full),
        ("/account/sessions", Access::Full),
        ("/account/sessions/end", Access::Full),
        ("/account/sessions/end-others", Access::Full),
        ("/admin/users", Access::Full),
        ("/admin/users.csv", Access::Full),
        ("/admin/users/{id}/reset-2fa", Access::Full),
        ("/admin/users/{id}/role", Access::Full),
        ("/admin/users/{id}/deactivate", Access::Full),
        ("/admin/users/{id}/reactivate", Access::Full),
        ("/admin/invites", Access::Full),
        ("/admin/invites/{id}/resend", Access::Full),
        ("/admin/invites/{id}/revoke", Access::Full),
        ("/invite/{token}", Access::Public),
        ("/admin/workspace", Access::Full),
        ("/admin/workspace/exemptions", Access::Full),
        ("/admin/workspace/exemptions/{id}/end", Access::Full),
        ("/admin/audit", Access::Full),
        ("/support/users", Access::Full),
        ("/support/users/{id}/reset-2fa", Access::Full),
        ("/support/workspaces", Access::Full),
    ];

    #[test]
    fn every_registered_route_has_the_access_listed_for_it() {
        REGISTERED.with(|paths| paths.borrow_mut().clear());
        let _app = actix_web::App::new().configure(super::configure);
        let registered = REGISTERED.with(|paths| paths.borrow().clone());
        for path in &registered {
            let expected = EXPECTED.iter().find(|(p, _)| p == path).map(|(_, a)| *a);
            assert_eq!(
                expected,
                Some(access_for(path)),
                "{path}: list it in EXPECTED with the access the guard should give it"
            );
        }
        for (path, _) in EXPECTED {
            assert!(
                registered.contains(path),
                "{path} is listed but not registered"
            );
        }
        assert_eq!(
            registered.len(),
            EXPECTED.len(),
            "a path is registered twice"
        );
    }
}
