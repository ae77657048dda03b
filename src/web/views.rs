//! The page frame and the renderers. Each page's askama struct stands beside its handler
//! in `routes`; templates live in `templates/`, and every page extends `base.html`, which
//! reads the page's `layout`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use askama::Template;

use crate::auth::policy::Requirement;
use crate::auth::session::Flash;
use crate::db::models::Account;
use crate::web::error::AppError;
use crate::words::date_time;

/// What every page's frame needs.
pub struct Layout {
    pub title: String,
    /// For the sign-out form in the header (present when signed in).
    pub csrf_token: String,
    /// The signed-in user's email, shown in the header.
    pub user_email: Option<String>,
    /// A one-time message carried over a redirect.
    pub flash: Option<Flash>,
    /// The grace-period reminder, on every page until the member enrols.
    pub grace: Option<GraceBanner>,
    /// Links to the admin and support pages in the header.
    pub is_admin: bool,
    pub is_staff: bool,
}

/// The session's CSRF token, left by the guard for a signed-in request, so that a page drawn
/// after the handler (an error page, once the session middleware has stored the session)
/// can still offer the header's sign-out form.
#[derive(Clone)]
pub struct FrameToken(pub String);

/// "Your workspace requires 2FA from <date>: <n> days left."
pub struct GraceBanner {
    pub days_left: i64,
    pub deadline: String,
    /// The reminder is about adding a security key, not 2FA in general.
    pub key: bool,
}

impl Layout {
    /// The frame for `account` signed in (or for nobody), with `csrf_token` for the sign-out
    /// form and no notice.
    pub fn for_account(title: &str, csrf_token: String, account: Option<&Account>) -> Layout {
        let grace = account.and_then(grace_banner);
        Layout {
            title: title.to_owned(),
            csrf_token,
            user_email: account.map(|a| a.user.email.clone()),
            flash: None,
            grace,
            // The admin pages need the admin to use 2FA (see `WorkspaceAdmin`).
            is_admin: account.is_some_and(|a| a.is_admin() && a.factors.any()),
            // Staff always need 2FA: without it they are held at enrolment.
            is_staff: account.is_some_and(|a| a.user.is_staff && a.factors.any()),
        }
    }

    /// A frame without a signed-in user or a notice (error pages, first-run setup).
    pub fn bare(title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            csrf_token: String::new(),
            user_email: None,
            flash: None,
            grace: None,
            is_admin: false,
            is_staff: false,
        }
    }
}

/// The reminder of the nearest deadline `account` still has to meet: 2FA, or a security
/// key (a key meets both, so on the same day the key's reminder is shown).
fn grace_banner(account: &Account) -> Option<GraceBanner> {
    let pending = |requirement, met: bool, key| match requirement {
        Requirement::Grace {
            deadline,
            days_left,
        } if !met => Some((deadline, days_left, key)),
        _ => None,
    };
    let two_factor = pending(account.requirement, account.factors.any(), false);
    let keys = pending(account.key_requirement, account.factors.security_keys, true);
    let (deadline, days_left, key) = match (two_factor, keys) {
        (Some(a), Some(b)) => {
            if a.0 < b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some(GraceBanner {
        days_left,
        deadline: date_time(deadline),
        key,
    })
}

/// Renders `page` as an HTML response with `status`.
pub fn render(page: &impl Template, status: StatusCode) -> Result<HttpResponse, AppError> {
    let html = page
        .render()
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("template rendering failed: {e}")))?;
    Ok(HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .body(html))
}

/// Pages that show a secret (the TOTP key, recovery codes) must never be stored.
pub fn render_secret(page: &impl Template) -> Result<HttpResponse, AppError> {
    let mut response = render(page, StatusCode::OK)?;
    response.headers_mut().insert(
        CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store, max-age=0"),
    );
    Ok(response)
}
