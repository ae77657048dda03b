//! One askama struct per page. Templates live in `templates/`; every page extends
//! `base.html`, which reads the page's `layout`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use askama::Template;

use crate::auth::session::Flash;
use crate::error::AppError;

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

/// "Your workspace requires 2FA from <date>: <n> days left."
pub struct GraceBanner {
    pub days_left: i64,
    pub deadline: String,
}

impl Layout {
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

#[derive(Template)]
#[template(path = "auth/login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/second_factor.html")]
pub struct SecondFactorPage {
    pub layout: Layout,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "auth/recovery.html")]
pub struct RecoveryPage {
    pub layout: Layout,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "account/home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub name: String,
    pub workspace: String,
    pub totp_enabled: bool,
}

#[derive(Template)]
#[template(path = "account/security.html")]
pub struct SecurityPage {
    pub layout: Layout,
    pub totp_enabled: bool,
    pub enabled_since: Option<String>,
    pub codes_left: i64,
    /// Which form an error belongs to: "regenerate" or "disable".
    pub error_form: &'static str,
    pub error: Option<String>,
    /// Show the disable form's code field with a letters keyboard (for recovery codes).
    pub letters: bool,
    /// Why 2FA cannot be turned off (workspace policy, staff); the form is then not shown.
    pub must_stay: Option<&'static str>,
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

#[derive(Template)]
#[template(path = "errors/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
    pub request_id: String,
    /// Offer the way to sign in (the error may mean the session ended or a wait is over).
    pub sign_in: bool,
}

#[derive(Template)]
#[template(path = "account/sessions.html")]
pub struct SessionsPage {
    pub layout: Layout,
    pub sessions: Vec<SessionEntry>,
    /// How many of them are not this one.
    pub others: usize,
}

pub struct SessionEntry {
    pub handle: String,
    pub current: bool,
    pub started: String,
    pub last_seen: String,
    pub ip: String,
    pub user_agent: String,
    /// Fully signed in (rather than waiting for the second factor).
    pub complete: bool,
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
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
