//! The members list with each member's 2FA status, its CSV export, and resetting a
//! locked-out member's 2FA.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{member_of, page_number, reset_error};
use crate::auth::reset::{ResetBy, reset_second_factor};
use crate::auth::session::TypedSession;
use crate::db::directory::{self, MemberFilter, MemberRow};
use crate::db::models::Account;
use crate::domain::UserId;
use crate::routes::{client_ip, layout, url_with};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{WorkspaceAdmin, see_other};
use crate::web::views::{Layout, render};
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
    pub id: UserId,
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
    match (member.has_second_factor, member.exempt_until) {
        (true, _) => match member.enabled_at {
            Some(since) => format!("Enrolled since {}", date(since)),
            None => "Enrolled".to_owned(),
        },
        (false, Some(until)) if until > now => format!("Exempt until {}", date(until - 1)),
        (false, _) => "Not enrolled".to_owned(),
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
        enrolled: member.has_second_factor,
        status: status_of(member, now),
        codes_left: member.codes_left,
        last_sign_in: member.last_sign_in_at.map(date_time),
        // Admins reset members, not themselves (they use their own recovery path) and
        // not support staff (whose accounts can reset anyone's: support handles them).
        resettable: member.has_second_factor && member.id != admin.user.id && !member.is_staff,
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
    let csv = members_csv(&rows, now)
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("writing the members CSV: {e}")))?;
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

const CSV_HEADER: [&str; 9] = [
    "email",
    "name",
    "role",
    "support_staff",
    "two_factor",
    "enrolled_since",
    "exempt_until",
    "recovery_codes_left",
    "last_sign_in",
];

/// The export: RFC 4180 (CRLF line ends, a field quoted only when it holds a comma, a quote
/// or a line break), every field defused.
fn members_csv(rows: &[MemberRow], now: i64) -> Result<Vec<u8>, csv::Error> {
    let mut csv = csv_writer();
    csv.write_record(CSV_HEADER)?;
    for m in rows {
        write_defused(&mut csv, &member_record(m, now))?;
    }
    csv.into_inner().map_err(|e| e.into_error().into())
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// One member's line, as [`CSV_HEADER`] names the columns.
fn member_record(m: &MemberRow, now: i64) -> [String; 9] {
    let exempt = m
        .exempt_until
        .filter(|&until| until > now && !m.has_second_factor);
    [
        m.email.clone(),
        m.name.clone(),
        m.role.clone(),
        if m.is_staff { "yes" } else { "no" }.to_owned(),
        match (m.has_second_factor, exempt) {
            (true, _) => "enrolled",
            (false, Some(_)) => "exempt",
            (false, None) => "not_enrolled",
        }
        .to_owned(),
        m.enabled_at.map(rfc3339).unwrap_or_default(),
        exempt.map(rfc3339).unwrap_or_default(),
        if m.has_second_factor {
            m.codes_left.to_string()
        } else {
            String::new()
        },
        m.last_sign_in_at.map(rfc3339).unwrap_or_default(),
    ]
}

fn write_defused(csv: &mut csv::Writer<Vec<u8>>, fields: &[String]) -> Result<(), csv::Error> {
    let fields: Vec<Cow<'_, str>> = fields.iter().map(|f| defuse(f)).collect();
    csv.write_record(fields.iter().map(|f| f.as_bytes()))
}

/// A value a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) is prefixed
/// with `'`: names are typed by members.
fn defuse(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
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
    let ip = client_ip(&req)?;
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

    /// One record of `fields`, as the export writes it.
    fn line(fields: &[&str]) -> String {
        let mut csv = csv_writer();
        let fields: Vec<String> = fields.iter().map(|&f| f.to_owned()).collect();
        write_defused(&mut csv, &fields).unwrap();
        String::from_utf8(csv.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(line(&["ann@example.com", ""]), "ann@example.com,\r\n");
        assert_eq!(line(&["Smith, Ann", "x"]), "\"Smith, Ann\",x\r\n");
        assert_eq!(line(&["say \"hi\"", "x"]), "\"say \"\"hi\"\"\",x\r\n");
        assert_eq!(
            line(&["=HYPERLINK(\"x\")", "x"]),
            "\"'=HYPERLINK(\"\"x\"\")\",x\r\n"
        );
        assert_eq!(line(&["@SUM(A1)", "x"]), "'@SUM(A1),x\r\n");
        assert_eq!(line(&["-1", "x"]), "'-1,x\r\n");
        assert_eq!(line(&["+1", "\tx"]), "'+1,'\tx\r\n");
        assert_eq!(line(&["\rx", "a\nb"]), "\"'\rx\",\"a\nb\"\r\n");
    }

    #[test]
    fn the_header_and_each_line_end_in_crlf() {
        let csv = String::from_utf8(members_csv(&[], 0).unwrap()).unwrap();
        assert_eq!(
            csv,
            "email,name,role,support_staff,two_factor,enrolled_since,exempt_until,recovery_codes_left,last_sign_in\r\n"
        );
    }
}
