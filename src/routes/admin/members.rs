//! The members list with each member's 2FA status, its CSV export, and resetting a
//! locked-out member's 2FA.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{member_of, page_number, reset_error};
use crate::auth::guard::{WorkspaceAdmin, see_other};
use crate::auth::reset::{ResetBy, reset_second_factor};
use crate::auth::session::TypedSession;
use crate::db::directory::{self, MemberFilter, MemberRow};
use crate::db::models::Account;
use crate::error::AppError;
use crate::routes::{client_ip, layout, url_with};
use crate::state::AppState;
use crate::views::{Layout, render};
use crate::words::{date, date_time};

const MEMBERS_PER_PAGE: i64 = 50;

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

#[derive(Deserialize)]
pub struct MembersQuery {
    #[serde(default)]
    q: String,
    /// `not_enrolled` lists only members without 2FA.
    #[serde(default)]
    status: String,
    page: Option<i64>,
}

impl MembersQuery {
    fn filter(&self) -> MemberFilter {
        MemberFilter {
            q: Some(self.q.clone()).filter(|q| !q.trim().is_empty()),
            not_enrolled: self.status == "not_enrolled",
        }
    }
}

pub async fn users_get(
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let page = page_number(query.page);
    let filter = query.filter();
    let workspace_id = admin.workspace.id.clone();
    let (rows, total) = state
        .db
        .run(move |conn| {
            directory::members(
                conn,
                &workspace_id,
                &filter,
                (page - 1) * MEMBERS_PER_PAGE,
                Some(MEMBERS_PER_PAGE),
            )
            .map_err(AppError::from)
        })
        .await?;
    let now = state.settings.clock.now();
    let pages = ((total + MEMBERS_PER_PAGE - 1) / MEMBERS_PER_PAGE).max(1);
    let link = |page: i64| {
        url_with(
            "/admin/users",
            &[
                ("q", query.q.as_str()),
                ("status", query.status.as_str()),
                ("page", &page.to_string()),
            ],
        )
    };
    let page_view = MembersPage {
        layout: layout(&session, "Members", Some(&admin))?,
        workspace: admin.workspace.name.clone(),
        q: query.q.clone(),
        not_enrolled: query.status == "not_enrolled",
        members: rows.iter().map(|m| member_entry(m, &admin, now)).collect(),
        total,
        page,
        pages,
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        csv_href: url_with(
            "/admin/users.csv",
            &[("q", query.q.as_str()), ("status", query.status.as_str())],
        ),
    };
    render(&page_view, StatusCode::OK)
}

/// 2FA status in words: enrolled since / exempt until / not enrolled.
fn status_of(member: &MemberRow, now: i64) -> String {
    match (member.enabled_at, member.exempt_until) {
        (Some(since), _) => format!("Enrolled since {}", date(since)),
        (None, Some(until)) if until > now => format!("Exempt until {}", date(until - 1)),
        (None, _) => "Not enrolled".to_owned(),
    }
}

fn member_entry(member: &MemberRow, admin: &Account, now: i64) -> MemberEntry {
    MemberEntry {
        id: member.id.clone(),
        email: member.email.clone(),
        name: member.name.clone(),
        role: if member.is_staff {
            format!("{} (support staff)", member.role)
        } else {
            member.role.clone()
        },
        enrolled: member.enabled_at.is_some(),
        status: status_of(member, now),
        codes_left: member.codes_left,
        last_sign_in: member.last_sign_in_at.map(date_time),
        // Admins reset members, not themselves (they use their own recovery path) and
        // not support staff (whose accounts can reset anyone's: support handles them).
        resettable: member.enabled_at.is_some() && member.id != admin.user.id && !member.is_staff,
    }
}

/// The members list as CSV, with the same filters (all pages).
pub async fn users_csv_get(
    state: web::Data<AppState>,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    let filter = query.filter();
    let workspace_id = admin.workspace.id.clone();
    let (rows, _) = state
        .db
        .run(move |conn| {
            directory::members(conn, &workspace_id, &filter, 0, None).map_err(AppError::from)
        })
        .await?;
    let now = state.settings.clock.now();
    let mut csv = String::from(
        "email,name,role,support_staff,two_factor,enrolled_since,exempt_until,recovery_codes_left,last_sign_in\r\n",
    );
    for m in &rows {
        let exempt = m
            .exempt_until
            .filter(|&until| until > now && m.enabled_at.is_none());
        let fields = [
            m.email.clone(),
            m.name.clone(),
            m.role.clone(),
            if m.is_staff { "yes" } else { "no" }.to_owned(),
            match (m.enabled_at, exempt) {
                (Some(_), _) => "enrolled",
                (None, Some(_)) => "exempt",
                (None, None) => "not_enrolled",
            }
            .to_owned(),
            m.enabled_at.map(rfc3339).unwrap_or_default(),
            exempt.map(rfc3339).unwrap_or_default(),
            if m.enabled_at.is_some() {
                m.codes_left.to_string()
            } else {
                String::new()
            },
            m.last_sign_in_at.map(rfc3339).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push_str("\r\n");
    }
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"members-{}.csv\"",
                admin.workspace.slug
            ),
        ))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(csv))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One CSV field (RFC 4180 quoting). A value a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@`, tab, CR) is prefixed with `'`: names are typed by members.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

pub async fn reset_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, AppError> {
    let target_id = path.into_inner();
    let ip = client_ip(&req);
    let confirmed = form.confirm == "yes";
    let now = state.settings.clock.now();
    let actor = admin.clone();
    let email = state
        .db
        .write(move |conn| {
            let target = member_of(conn, &actor, &target_id)?;
            if target.id == actor.user.id {
                return Err(AppError::Forbidden("You cannot reset your own two-factor sign-in here. Sign in with a recovery code and turn it off on your security page, or ask another admin of your workspace.".into()));
            }
            if target.is_staff {
                return Err(AppError::Forbidden(
                    "This is a support staff account: only support can reset its two-factor sign-in.".into(),
                ));
            }
            if !confirmed {
                return Err(AppError::BadRequest(format!(
                    "Tick “Yes, reset” to confirm. Nothing was changed for {}.",
                    target.email
                )));
            }
            reset_second_factor(conn, &target, ResetBy::Admin(&actor.user), ip, now)
                .map_err(reset_error)?;
            Ok(target.email)
        })
        .await?;
    session.notice(&format!(
        "Two-factor sign-in of {email} was reset and all of their sessions were ended. They can sign in with their password and set it up again."
    ))?;
    Ok(see_other("/admin/users"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("ann@example.com"), "ann@example.com");
        assert_eq!(csv_field("Smith, Ann"), "\"Smith, Ann\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
