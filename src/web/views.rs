//! One askama struct per page. Templates live in `templates/`; every page extends
//! `base.html`, which reads the page's `layout`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use askama::Template;

use crate::auth::session::Flash;
use crate::web::error::AppError;

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
#[template(path = "admin/users.html")]
pub struct MembersPage {
    pub layout: Layout,
    pub workspace: String,
    pub q: String,
    pub not_enrolled: bool,
    pub members: Vec<MemberEntry>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub csv_href: String,
}

pub struct MemberEntry {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub enrolled: bool,
    /// Enrolled since … / Exempt until … / Not enrolled.
    pub status: String,
    pub codes_left: i64,
    pub last_sign_in: Option<String>,
    pub resettable: bool,
}

#[derive(Template)]
#[template(path = "admin/workspace.html")]
pub struct WorkspacePage {
    pub layout: Layout,
    pub name: String,
    pub enforced: bool,
    pub since: Option<String>,
    pub deadline: Option<String>,
    pub deadline_passed: bool,
    pub grace_days: i64,
    pub members: i64,
    pub not_enrolled: i64,
    pub exemptions: Vec<ExemptionEntry>,
    /// Today (policy time) for the date input's minimum.
    pub today: String,
    /// The settings this form shows, sent back to detect a concurrent change.
    pub version: String,
    pub error: Option<String>,
    /// The id of the input the error is about.
    pub error_field: &'static str,
}

pub struct ExemptionEntry {
    pub user_id: String,
    pub email: String,
    pub last_day: String,
    pub reason: String,
    pub granted_by: String,
    pub granted_on: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    /// Every kind: (value, words), for the filter.
    pub kinds: Vec<(&'static str, &'static str)>,
    pub kind: String,
    pub member: String,
    pub entries: Vec<AuditEntry>,
    pub page: i64,
    pub previous: Option<String>,
    pub next: Option<String>,
}

pub struct AuditEntry {
    pub when: String,
    pub actor: String,
    pub by_staff: bool,
    pub by_cli: bool,
    pub kind: String,
    pub what: String,
    pub subject: String,
    pub ip: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "support/users.html")]
pub struct SupportPage {
    pub layout: Layout,
    pub q: String,
    pub searched: bool,
    pub hint: Option<String>,
    pub users: Vec<SupportUserEntry>,
}

pub struct SupportUserEntry {
    pub id: String,
    pub email: String,
    pub workspace: String,
    pub role: String,
    pub status: String,
    pub resettable: bool,
}
