//! The workspace admin's pages: members and their 2FA, "Require 2FA" with a grace period
//! and exemptions, resets of a locked-out member's 2FA, and the audit log.
//!
//! Invariants:
//! - Every handler takes `WorkspaceAdmin`: fully signed in (2FA verified where the admin
//!   has it) and an admin, checked on the server for every request.
//! - Every id in a path or form is looked up within the admin's own workspace; an id of
//!   another workspace answers exactly like one that does not exist (404).
//! - Every change is written with its audit event in one transaction.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{client_ip, layout, url_with};
use crate::audit::{self, Actor, Event, Kind};
use crate::auth::policy::DAY;
use crate::auth::reset::{ResetBy, ResetError, reset_second_factor};
use crate::auth::session::TypedSession;
use crate::db::directory::{self, MemberFilter, MemberRow};
use crate::db::models::{Account, User, Workspace};
use crate::domain::{Email, GraceDays, Invalid, LastDay, Reason};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{WorkspaceAdmin, see_other};
use crate::web::views::{AuditEntry, AuditPage, MemberEntry, MembersPage, WorkspacePage, render};
use crate::words::{date, date_time};

const MEMBERS_PER_PAGE: i64 = 50;
const EVENTS_PER_PAGE: i64 = 50;
/// An exemption is a stopgap (a shared kiosk account), not a permanent opt-out.
const LONGEST_EXEMPTION_DAYS: i64 = 366;

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

/// A page number from the query string: 1 or more.
fn page_number(page: Option<i64>) -> i64 {
    page.unwrap_or(1).clamp(1, i64::MAX / 1_000)
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

/// A member of the admin's own workspace, or 404 (also for another workspace's ids).
fn member_of(
    conn: &mut crate::db::AnyConnection,
    admin: &Account,
    id: &str,
) -> Result<User, AppError> {
    match User::find(conn, id)? {
        Some(user) if user.workspace_id == admin.workspace.id => Ok(user),
        _ => Err(AppError::NotFound),
    }
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

pub fn reset_error(e: ResetError) -> AppError {
    match e {
        ResetError::NotEnrolled(_) => AppError::Conflict(e.to_string()),
        ResetError::Database(e) => e.into(),
    }
}

pub async fn workspace_get(
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
) -> Result<HttpResponse, AppError> {
    workspace_page(&state, &session, &admin, StatusCode::OK, None).await
}

async fn workspace_page(
    state: &AppState,
    session: &TypedSession,
    admin: &Account,
    status: StatusCode,
    error: Option<FieldError>,
) -> Result<HttpResponse, AppError> {
    let workspace_id = admin.workspace.id.clone();
    let now = state.settings.clock.now();
    let ((total, without), exemptions) = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>((
                directory::member_counts(conn, &workspace_id)?,
                directory::active_exemptions(conn, &workspace_id, now)?,
            ))
        })
        .await?;
    let ws = &admin.workspace;
    let page = WorkspacePage {
        layout: layout(session, "Workspace", Some(admin))?,
        name: ws.name.clone(),
        enforced: ws.require_2fa_since.is_some(),
        since: ws.require_2fa_since.map(date_time),
        deadline: ws.require_2fa_deadline.map(date_time),
        deadline_passed: ws.require_2fa_deadline.is_some_and(|d| d <= now),
        grace_days: ws.grace_days,
        members: total,
        not_enrolled: without,
        exemptions: exemptions
            .into_iter()
            .map(|e| crate::web::views::ExemptionEntry {
                user_id: e.user_id,
                email: e.email,
                last_day: date(e.until - 1),
                reason: e.reason,
                granted_by: e.granted_by,
                granted_on: date(e.created_at),
            })
            .collect(),
        today: date_input(now),
        version: settings_version(ws),
        error_field: error.as_ref().map_or("", |e| e.0),
        error: error.map(|e| e.1),
    };
    render(&page, status)
}

/// A message about one input of the workspace page: its id, and what is wrong.
type FieldError = (&'static str, String);

/// `YYYY-MM-DD` for a date input.
fn date_input(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub struct WorkspaceForm {
    require_2fa: Option<String>,
    #[serde(default)]
    grace_days: String,
    #[serde(default)]
    confirm: String,
    /// The settings the form was loaded with (see [`settings_version`]); a form without it
    /// (a script) is judged against the settings at the time of the request.
    version: Option<String>,
}

/// The workspace's "Require 2FA" settings in one string: a change made from a form loaded
/// before another admin's change is refused instead of silently undoing it.
fn settings_version(ws: &Workspace) -> String {
    format!(
        "{}-{}-{}",
        ws.require_2fa_since.unwrap_or(0),
        ws.require_2fa_deadline.unwrap_or(0),
        ws.grace_days
    )
}

/// What a workspace form asked for, decided against the settings it was loaded with.
enum Change {
    TurnOn { grace: i64 },
    MoveDeadline { since: i64, grace: i64 },
    TurnOff,
    KeepOff { grace: i64 },
    Nothing,
}

pub async fn workspace_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    form: web::Form<WorkspaceForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let refuse = |status, field: &'static str, message: String| {
        workspace_page(&state, &session, &admin, status, Some((field, message)))
    };
    let ws = &admin.workspace;
    if form
        .version
        .as_ref()
        .is_some_and(|v| *v != settings_version(ws))
    {
        return Err(changed_meanwhile());
    }
    let want_on = form.require_2fa.as_deref() == Some("on");
    // Turning it off needs no grace period: a script may send just `confirm=yes`.
    let grace = if !want_on && form.grace_days.trim().is_empty() {
        ws.grace_days
    } else {
        match GraceDays::parse(&form.grace_days) {
            Ok(grace) => grace.days(),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, "grace_days", e.0.to_owned()).await,
        }
    };
    let change = match (ws.require_2fa_since, want_on) {
        (None, true) => Change::TurnOn { grace },
        (Some(since), true) if grace != ws.grace_days => Change::MoveDeadline { since, grace },
        (Some(_), true) => Change::Nothing,
        (Some(_), false) => Change::TurnOff,
        (None, false) if grace != ws.grace_days => Change::KeepOff { grace },
        (None, false) => Change::Nothing,
    };
    if let Change::TurnOff = change
        && form.confirm != "yes"
    {
        let id = ws.id.clone();
        let (total, without) = state
            .db
            .run(move |conn| directory::member_counts(conn, &id).map_err(AppError::from))
            .await?;
        return refuse(
            StatusCode::BAD_REQUEST,
            "confirm",
            format!("Turning off “Require 2FA” affects all {total} members of this workspace: they will be able to turn two-factor sign-in off, and the {without} who have not set it up will no longer be asked to. Tick “Yes, turn it off” to confirm. Nothing was changed."),
        )
        .await;
    }
    if let Change::Nothing = change {
        session.notice("Nothing was changed.")?;
        return Ok(see_other("/admin/workspace"));
    }

    let now = state.settings.clock.now();
    let ip = client_ip(&req)?;
    let actor = admin.user.clone();
    let workspace_id = ws.id.clone();
    let expected = form.version.unwrap_or_else(|| settings_version(ws));
    let notice = state
        .db
        .write(move |conn| {
            // The settings the decision was made on must still hold: a second admin's
            // change in between is not silently overwritten.
            let current =
                Workspace::find_for_update(conn, &workspace_id)?.ok_or(AppError::NotFound)?;
            if settings_version(&current) != expected {
                return Err(changed_meanwhile());
            }
            let event = |kind| Event {
                kind,
                workspace_id: Some(workspace_id.clone()),
                actor: Actor::user(&actor),
                subject: None,
                ip: ip.clone(),
                detail: String::new(),
            };
            let notice = match change {
                Change::TurnOn { grace } => {
                    let deadline = now + grace * DAY;
                    directory::set_enforcement(conn, &workspace_id, Some(now), Some(deadline), grace)?;
                    event(Kind::EnforcementEnabled)
                        .with_detail(format!("grace period {grace} days; members without 2FA are held at enrolment from {}", date_time(deadline)))
                        .record(conn)?;
                    crate::mail::enqueue_enforcement_on(conn, &workspace_id, &current.name, deadline)?;
                    format!("Two-factor sign-in is now required. Members without it must set it up by {}.", date_time(deadline))
                }
                Change::MoveDeadline { since, grace } => {
                    let deadline = since + grace * DAY;
                    directory::set_enforcement(conn, &workspace_id, Some(since), Some(deadline), grace)?;
                    event(Kind::EnforcementDeadlineChanged)
                        .with_detail(format!(
                            "grace period {} → {grace} days; deadline {} → {}",
                            current.grace_days,
                            current.require_2fa_deadline.map(date_time).unwrap_or_default(),
                            date_time(deadline)
                        ))
                        .record(conn)?;
                    format!("The grace period is now {grace} days: the deadline is {}.", date_time(deadline))
                }
                Change::TurnOff => {
                    directory::set_enforcement(conn, &workspace_id, None, None, current.grace_days)?;
                    event(Kind::EnforcementDisabled).record(conn)?;
                    "Two-factor sign-in is no longer required in this workspace.".to_owned()
                }
                Change::KeepOff { grace } => {
                    directory::set_enforcement(conn, &workspace_id, None, None, grace)?;
                    event(Kind::GracePeriodChanged)
                        .with_detail(format!("grace period {} → {grace} days, for when 2FA is required", current.grace_days))
                        .record(conn)?;
                    format!("Saved: when you turn it on, members will have {grace} days to set it up.")
                }
                Change::Nothing => String::new(),
            };
            Ok(notice)
        })
        .await?;
    session.notice(&notice)?;
    Ok(see_other("/admin/workspace"))
}

fn changed_meanwhile() -> AppError {
    AppError::Conflict(
        "Another admin changed this setting a moment ago. Reload the page to see it, then try again. Nothing was changed.".into(),
    )
}

#[derive(Deserialize)]
pub struct ExemptionForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    last_day: String,
    #[serde(default)]
    reason: String,
}

pub async fn exemption_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    form: web::Form<ExemptionForm>,
) -> Result<HttpResponse, AppError> {
    let refuse = |status, field: &'static str, message: String| {
        workspace_page(&state, &session, &admin, status, Some((field, message)))
    };
    let at = |field| move |e: Invalid| (field, e);
    let parsed = Email::parse(&form.email)
        .map_err(at("exempt-email"))
        .and_then(|email| {
            Ok((
                email,
                LastDay::parse(&form.last_day).map_err(at("exempt-last-day"))?,
                Reason::parse(&form.reason).map_err(at("exempt-reason"))?,
            ))
        });
    let (email, last_day, reason) = match parsed {
        Ok(parsed) => parsed,
        Err((field, e)) => return refuse(StatusCode::BAD_REQUEST, field, e.0.to_owned()).await,
    };
    let now = state.settings.clock.now();
    let until = last_day.end();
    if until <= now || until > now + LONGEST_EXEMPTION_DAYS * DAY {
        return refuse(
            StatusCode::BAD_REQUEST,
            "exempt-last-day",
            "The last day of an exemption is today or a later day, at most a year from now.".into(),
        )
        .await;
    }
    let ip = client_ip(&req)?;
    let actor = admin.user.clone();
    let workspace_id = admin.workspace.id.clone();
    let outcome = state
        .db
        .write(move |conn| {
            let target = match User::find_by_email(conn, &email)? {
                Some(user) if user.workspace_id == workspace_id => user,
                _ => return Ok(Err("No member of this workspace has that email address.")),
            };
            if target.id == actor.id {
                return Ok(Err(
                    "You cannot exempt yourself: ask another admin of your workspace.",
                ));
            }
            if target.is_staff {
                return Ok(Err(
                    "Support staff must always use two-factor sign-in and cannot be exempted.",
                ));
            }
            directory::grant_exemption(
                conn,
                &target.id,
                until,
                reason.as_str(),
                &actor.email,
                now,
            )?;
            Event::on_user(Kind::ExemptionGranted, Actor::user(&actor), &target, ip)
                .with_detail(format!(
                    "until the end of {}; reason: {}",
                    date(until - 1),
                    reason.as_str()
                ))
                .record(conn)?;
            Ok::<_, AppError>(Ok(target.email))
        })
        .await?;
    match outcome {
        Ok(email) => {
            session.notice(&format!(
                "{email} is exempt from “Require 2FA” until the end of {}.",
                date(until - 1)
            ))?;
            Ok(see_other("/admin/workspace"))
        }
        Err(message) => refuse(StatusCode::BAD_REQUEST, "exempt-email", message.to_owned()).await,
    }
}

pub async fn exemption_end_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let target_id = path.into_inner();
    let ip = client_ip(&req)?;
    let now = state.settings.clock.now();
    let actor = admin.clone();
    let email = state
        .db
        .write(move |conn| {
            let target = member_of(conn, &actor, &target_id)?;
            if !directory::end_exemption(conn, &target.id, now)? {
                return Err(AppError::Conflict(format!(
                    "{} has no exemption to end.",
                    target.email
                )));
            }
            Event::on_user(Kind::ExemptionEnded, Actor::user(&actor.user), &target, ip)
                .record(conn)?;
            Ok(target.email)
        })
        .await?;
    session.notice(&format!("The exemption of {email} has ended."))?;
    Ok(see_other("/admin/workspace"))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    member: String,
    page: Option<i64>,
}

pub async fn audit_get(
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let page = page_number(query.page);
    let kind = audit::Kind::parse(query.kind.trim());
    if kind.is_none() && !query.kind.trim().is_empty() {
        return Err(AppError::BadRequest(
            "There is no event of that kind.".into(),
        ));
    }
    let member = query.member.trim().to_lowercase();
    let filter = audit::Filter {
        kind,
        member: Some(member.clone()).filter(|m| !m.is_empty()),
    };
    let workspace_id = admin.workspace.id.clone();
    let (rows, more) = state
        .db
        .run(move |conn| {
            audit::page(
                conn,
                &workspace_id,
                &filter,
                (page - 1) * EVENTS_PER_PAGE,
                EVENTS_PER_PAGE,
            )
            .map_err(AppError::from)
        })
        .await?;
    let link = |page: i64| {
        url_with(
            "/admin/audit",
            &[
                ("kind", query.kind.as_str()),
                ("member", query.member.as_str()),
                ("page", &page.to_string()),
            ],
        )
    };
    let view = AuditPage {
        layout: layout(&session, "Audit log", Some(&admin))?,
        kinds: audit::Kind::ALL
            .iter()
            .map(|k| (k.as_str(), k.describe()))
            .collect(),
        kind: query.kind.trim().to_owned(),
        member: query.member.trim().to_owned(),
        entries: rows
            .into_iter()
            .map(|row| AuditEntry {
                when: date_time(row.created_at),
                actor: row.actor_label,
                by_staff: row.actor_kind == "staff",
                by_cli: row.actor_kind == "cli",
                what: audit::Kind::parse(&row.kind)
                    .map_or(row.kind.clone(), |k| k.describe().to_owned()),
                kind: row.kind,
                subject: row.subject_label.unwrap_or_default(),
                ip: row.ip.unwrap_or_default(),
                detail: row.detail,
            })
            .collect(),
        page,
        previous: (page > 1).then(|| link(page - 1)),
        next: more.then(|| link(page + 1)),
    };
    render(&view, StatusCode::OK)
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
