//! The members list with each member's 2FA status, its CSV export, and resetting a
//! locked-out member's 2FA.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;

use super::{Pager, lock_as_admin, member_of, reset_error, revoke_invites_of};
use crate::audit::{Actor, Event, Kind};
use crate::auth::reset::{ResetBy, reset_second_factor};
use crate::auth::session::TypedSession;
use crate::auth::session::end_sessions_of_user;
use crate::db::Db;
use crate::db::directory::{self, Cursor, MemberFilter, MemberRow};
use crate::db::models::{Account, Invites, PasswordResets, User};
use crate::domain::{Role, UserId, WorkspaceId};
use crate::mail::{self, Mail, MembershipChange};
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
    /// A search matched more than `total` (searches are counted that far).
    pub more_than_total: bool,
    pub pager: Pager,
    pub csv_href: String,
    pub invites: Vec<InviteEntry>,
    /// Why the invitation form was refused (`role="alert"`), with what was typed.
    pub invite_error: Option<String>,
    pub invite_email: String,
    pub invite_admin: bool,
    /// The admin's own id: they cannot deactivate themselves.
    pub own_id: UserId,
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
    /// "Deactivated on …", or `None` while active.
    pub deactivated: Option<String>,
    /// Whether the admin may change this member's role or (de)activate them here.
    pub manageable: bool,
    pub is_admin: bool,
}

/// A pending invitation as the members page lists it.
pub struct InviteEntry {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub invited_by: String,
    pub expires: String,
    pub expired: bool,
}

#[derive(Deserialize, Default)]
pub struct MembersQuery {
    #[serde(default)]
    q: String,
    /// `not_enrolled` lists only members without 2FA.
    #[serde(default)]
    status: String,
    /// The page after this email (the "Next page" link).
    after: Option<String>,
    /// The page before this email (the "Previous page" link).
    before: Option<String>,
    /// `yes`: the last page.
    #[serde(default)]
    last: String,
}

impl MembersQuery {
    fn filter(&self) -> MemberFilter {
        MemberFilter {
            q: Some(self.q.clone()).filter(|q| !q.trim().is_empty()),
            not_enrolled: self.status == "not_enrolled",
        }
    }

    fn cursor(&self) -> Cursor {
        match (&self.after, &self.before) {
            (Some(after), _) => Cursor::After(after.clone()),
            (None, Some(before)) => Cursor::Before(before.clone()),
            (None, None) if self.last == "yes" => Cursor::Last,
            (None, None) => Cursor::First,
        }
    }
}

pub async fn users_get(
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    members_page(
        &state,
        &session,
        &admin,
        query.into_inner(),
        None,
        StatusCode::OK,
    )
    .await
}

/// The members page with `status`; `invite_error` is a refused invitation: why, and the
/// email and role that were typed.
pub async fn members_page(
    state: &AppState,
    session: &TypedSession,
    admin: &Account,
    query: MembersQuery,
    invite_error: Option<(String, String, String)>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let (filter, cursor) = (query.filter(), query.cursor());
    let searched = filter.q.is_some();
    let workspace_id = admin.workspace.id.clone();
    let (page, total, invites) = state
        .db
        .run(move |conn| {
            let page = directory::members(conn, &workspace_id, &filter, &cursor, MEMBERS_PER_PAGE)?;
            // The whole list fits on its first page: that is the count.
            let total = if cursor == Cursor::First && !page.more_after {
                page.rows.len() as i64
            } else {
                directory::count_members(conn, &workspace_id, &filter)?
            };
            let invites = Invites::of_workspace(conn, &workspace_id)?;
            Ok::<_, AppError>((page, total, invites))
        })
        .await?;
    let now = state.settings.clock.now();
    let link = |cursor: (&str, &str)| {
        url_with(
            "/admin/users",
            &[
                ("q", query.q.as_str()),
                ("status", query.status.as_str()),
                cursor,
            ],
        )
    };
    let pager = Pager::around(
        page.more_before,
        page.more_after,
        page.rows.first().map(|m| m.email.clone()),
        page.rows.last().map(|m| m.email.clone()),
        link,
        ("before", "after"),
    );
    let (invite_error, invite_email, invite_role) = match invite_error {
        Some((message, email, role)) => (Some(message), email, role),
        None => (None, String::new(), String::new()),
    };
    let page_view = MembersPage {
        layout: layout(session, "Members", Some(admin))?,
        workspace: admin.workspace.name.clone(),
        q: query.q.clone(),
        not_enrolled: query.status == "not_enrolled",
        members: page
            .rows
            .iter()
            .map(|m| member_entry(m, admin, now))
            .collect(),
        total: if searched {
            total.min(directory::SEARCH_CANDIDATES)
        } else {
            total
        },
        more_than_total: searched && total > directory::SEARCH_CANDIDATES,
        pager,
        csv_href: url_with(
            "/admin/users.csv",
            &[("q", query.q.as_str()), ("status", query.status.as_str())],
        ),
        invites: invites
            .into_iter()
            .map(|i| InviteEntry {
                expired: i.expires_at <= now,
                expires: date_time(i.expires_at),
                id: i.id,
                email: i.email,
                role: i.role.as_str(),
                invited_by: i.invited_by_label,
            })
            .collect(),
        invite_error,
        invite_email,
        invite_admin: invite_role == "admin",
        own_id: admin.user.id.clone(),
    };
    render(&page_view, status)
}

/// 2FA status in words: enrolled since (with which: app, key or app and key) / exempt
/// until / not enrolled.
fn status_of(member: &MemberRow, now: i64) -> String {
    let kinds = member.factors.kinds().unwrap_or_default();
    match (member.has_second_factor, member.exempt_until) {
        (true, _) => match member.enabled_at {
            Some(since) => format!("Enrolled since {} ({kinds})", date(since)),
            None => format!("Enrolled ({kinds})"),
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
        status: if member.deactivated_at.is_some() {
            "Deactivated".to_owned()
        } else {
            status_of(member, now)
        },
        codes_left: member.codes_left,
        last_sign_in: member.last_sign_in_at.map(date_time),
        // Admins reset members, not themselves (they use their own recovery path) and
        // not support staff (whose accounts can reset anyone's: support handles them).
        resettable: member.has_second_factor
            && member.id != admin.user.id
            && !member.is_staff
            && member.deactivated_at.is_none(),
        deactivated: member
            .deactivated_at
            .map(|at| format!("Deactivated on {}", date(at))),
        // Support staff accounts are support's to manage, like their 2FA resets.
        manageable: !member.is_staff,
        is_admin: member.role == Role::Admin.as_str(),
    }
}

/// Members per database round trip of the CSV export: large enough that the round trips
/// cost little next to the rows, small enough that a page's rows and bytes (about 150 KiB)
/// are all the export ever holds.
const CSV_PAGE: i64 = 1000;

/// The members list as CSV, with the same filters (all pages), streamed: the header and
/// the first page go out at once, then one keyset page at a time (see [`CsvExport`]), so
/// memory stays flat and the first byte is early however large the workspace.
pub async fn users_csv_get(
    state: web::Data<AppState>,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    query: web::Query<MembersQuery>,
) -> Result<HttpResponse, AppError> {
    let mut export = CsvExport {
        db: state.db.clone(),
        workspace_id: admin.workspace.id.clone(),
        filter: query.filter(),
        // One clock reading for the whole export, as when it was written in one go: a
        // member's exemption does not end halfway down the file.
        now: state.settings.clock.now(),
        after: None,
        done: false,
    };
    // The first page before answering: should the database be down, the admin gets the
    // error page (503) rather than a download cut off after its header.
    let mut first = csv_header().map_err(csv_failed)?;
    first.extend(export.next_page().await?.unwrap_or_default());
    let rest = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_page().await {
            Ok(Some(bytes)) => Some((Ok(web::Bytes::from(bytes)), Some(export))),
            Ok(None) => None,
            Err(e) => {
                // The status line has gone: all that is left is to cut the download short,
                // which the client sees as an incomplete transfer, and to log why.
                tracing::error!(error = %e, "the members CSV export failed midway");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    let body = futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(
        web::Bytes::from(first),
    )))
    .chain(rest);
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
        .streaming(body))
}

/// Where a streamed export is: the members after `after` (by email, which is unique) are
/// still to come. It holds no connection between pages: each page is its own [`Db::run`].
struct CsvExport {
    db: Db,
    workspace_id: WorkspaceId,
    filter: MemberFilter,
    now: i64,
    /// The last email written.
    after: Option<String>,
    /// The last page was short: there is nothing after it.
    done: bool,
}

impl CsvExport {
    /// The CSV lines of the next page, or `None` at the end.
    async fn next_page(&mut self) -> Result<Option<Vec<u8>>, AppError> {
        if self.done {
            return Ok(None);
        }
        let (workspace_id, filter, after) = (
            self.workspace_id.clone(),
            self.filter.clone(),
            self.after.clone(),
        );
        let rows = self
            .db
            .run(move |conn| {
                directory::members_after(conn, &workspace_id, &filter, after.as_deref(), CSV_PAGE)
                    .map_err(AppError::from)
            })
            .await?;
        self.done = rows.len() < CSV_PAGE as usize;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        self.after = Some(last.email.clone());
        csv_lines(&rows, self.now).map(Some).map_err(csv_failed)
    }
}

fn csv_failed(e: csv::Error) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("writing the members CSV: {e}"))
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

const CSV_HEADER: [&str; 11] = [
    "email",
    "name",
    "role",
    "support_staff",
    "two_factor",
    "enrolled_since",
    "exempt_until",
    "recovery_codes_left",
    "last_sign_in",
    "deactivated_at",
    // Appended, so that scripts reading the columns by position keep working.
    "second_factors",
];

/// The export: RFC 4180 (CRLF line ends, a field quoted only when it holds a comma, a quote
/// or a line break), every field defused. Written in pieces — the header, then each page's
/// lines with a writer of its own — which join into the same bytes as one writer would
/// make: a record's bytes depend on its fields alone.
fn csv_header() -> Result<Vec<u8>, csv::Error> {
    let mut csv = csv_writer();
    csv.write_record(CSV_HEADER)?;
    csv.into_inner().map_err(|e| e.into_error().into())
}

/// The lines of `rows`, without the header.
fn csv_lines(rows: &[MemberRow], now: i64) -> Result<Vec<u8>, csv::Error> {
    let mut csv = csv_writer();
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
fn member_record(m: &MemberRow, now: i64) -> [String; 11] {
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
        m.deactivated_at.map(rfc3339).unwrap_or_default(),
        // `app`, `key`, `app and key`, or empty without 2FA.
        m.factors.kinds().unwrap_or_default().to_owned(),
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
    let (email, removed) = state
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
            let removed = reset_second_factor(conn, &target, ResetBy::Admin(&actor.user), ip, now)
                .map_err(reset_error)?;
            Ok((target.email, removed))
        })
        .await?;
    session.notice(&format!(
        "Two-factor sign-in of {email} was reset (removed: {removed}) and all of their sessions were ended. They can sign in with their password and set it up again."
    ))?;
    Ok(see_other("/admin/users"))
}

/// The last active admin would be gone: nobody could administer the workspace.
const LAST_ADMIN: &str = "This is the only active admin of the workspace, so they cannot be demoted or deactivated. Make another member an admin first.";

/// The workspace is locked, then `id` is looked up in it (404 for another workspace's
/// ids) and the acting admin is checked again under that lock: two admins acting on each
/// other at once are decided one after the other, each seeing what the other did.
/// Support staff accounts are support's to manage.
fn lock_member(
    conn: &mut crate::db::AnyConnection,
    admin: &Account,
    id: &str,
) -> Result<User, AppError> {
    lock_as_admin(conn, admin)?;
    let target = member_of(conn, admin, id)?;
    if target.is_staff {
        return Err(AppError::Forbidden(
            "This is a support staff account: only support can change it.".into(),
        ));
    }
    Ok(target)
}

/// Refuses to take away the workspace's last active admin (call under [`lock_member`]).
fn keep_an_admin(conn: &mut crate::db::AnyConnection, target: &User) -> Result<(), AppError> {
    if target.role == Role::Admin
        && !target.is_deactivated()
        && User::active_admins(conn, &target.workspace_id)? <= 1
    {
        return Err(AppError::Conflict(LAST_ADMIN.into()));
    }
    Ok(())
}

fn membership_mail(
    conn: &mut crate::db::AnyConnection,
    target: &User,
    admin: &Account,
    change: MembershipChange,
) -> diesel::QueryResult<()> {
    mail::enqueue(
        conn,
        &Mail::Membership {
            to: &target.email,
            workspace: &admin.workspace.name,
            by: &admin.user.email,
            change,
        },
    )
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

pub async fn role_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let target_id = path.into_inner();
    let role = Role::parse(&form.role)?;
    let ip = client_ip(&req)?;
    let actor = admin.clone();
    let (email, changed, own) = state
        .db
        .write(move |conn| {
            let target = lock_member(conn, &actor, &target_id)?;
            if target.role == role {
                return Ok((target.email, false, false));
            }
            if role == Role::Member {
                keep_an_admin(conn, &target)?;
            }
            User::set_role(conn, &target.id, role)?;
            if role == Role::Member {
                revoke_invites_of(conn, &actor, &target, "is no longer an admin", ip.clone())?;
            }
            Event::on_user(Kind::RoleChanged, Actor::user(&actor.user), &target, ip)
                .with_detail(format!("{} → {}", target.role.as_str(), role.as_str()))
                .record(conn)?;
            membership_mail(conn, &target, &actor, MembershipChange::Role(role))?;
            Ok::<_, AppError>((target.email, true, target.id == actor.user.id))
        })
        .await?;
    let role = role.as_str();
    if !changed {
        session.notice(&format!("{email} already is {role}: nothing was changed."))?;
        return Ok(see_other("/admin/users"));
    }
    session.notice(&format!("{email} is now {role}. They were told by email."))?;
    // An admin who made themselves a member can no longer open the admin pages.
    Ok(see_other(if own { "/home" } else { "/admin/users" }))
}

pub async fn deactivate_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, AppError> {
    let target_id = path.into_inner();
    let confirmed = form.confirm == "yes";
    let ip = client_ip(&req)?;
    let now = state.settings.clock.now();
    let actor = admin.clone();
    let email = state
        .db
        .write(move |conn| {
            let target = lock_member(conn, &actor, &target_id)?;
            if target.id == actor.user.id {
                return Err(AppError::Forbidden(
                    "You cannot deactivate your own account: ask another admin of your workspace."
                        .into(),
                ));
            }
            if !confirmed {
                return Err(AppError::BadRequest(format!(
                    "Tick “Yes, deactivate” to confirm. Nothing was changed for {}.",
                    target.email
                )));
            }
            if target.is_deactivated() {
                return Err(AppError::Conflict(format!(
                    "{} is already deactivated.",
                    target.email
                )));
            }
            keep_an_admin(conn, &target)?;
            User::deactivate(conn, &target.id, now)?;
            // No link mailed before can bring the account back.
            PasswordResets::delete_of_user(conn, &target.id)?;
            revoke_invites_of(conn, &actor, &target, "was deactivated", ip.clone())?;
            end_sessions_of_user(conn, &target.id)?;
            Event::on_user(Kind::UserDeactivated, Actor::user(&actor.user), &target, ip)
                .with_detail("all sessions ended")
                .record(conn)?;
            membership_mail(conn, &target, &actor, MembershipChange::Deactivated)?;
            Ok(target.email)
        })
        .await?;
    session.notice(&format!(
        "{email} was deactivated and signed out everywhere. They cannot sign in until you reactivate them."
    ))?;
    Ok(see_other("/admin/users"))
}

pub async fn reactivate_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let target_id = path.into_inner();
    let ip = client_ip(&req)?;
    let actor = admin.clone();
    let email = state
        .db
        .write(move |conn| {
            let target = lock_member(conn, &actor, &target_id)?;
            if !User::reactivate(conn, &target.id)? {
                return Err(AppError::Conflict(format!(
                    "{} is not deactivated.",
                    target.email
                )));
            }
            Event::on_user(Kind::UserReactivated, Actor::user(&actor.user), &target, ip)
                .record(conn)?;
            membership_mail(conn, &target, &actor, MembershipChange::Reactivated)?;
            Ok::<_, AppError>(target.email)
        })
        .await?;
    session.notice(&format!(
        "{email} was reactivated: they can sign in again with their password and two-factor sign-in."
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

    fn row(email: &str, name: &str, enrolled: bool) -> MemberRow {
        MemberRow {
            id: UserId::new(format!("id-{email}")),
            email: email.to_owned(),
            name: name.to_owned(),
            role: "member".to_owned(),
            is_staff: false,
            last_sign_in_at: Some(1_700_000_000),
            has_second_factor: enrolled,
            factors: crate::domain::Factors {
                authenticator: enrolled,
                security_keys: false,
            },
            enabled_at: enrolled.then_some(1_600_000_000),
            exempt_until: None,
            codes_left: 3,
            deactivated_at: None,
        }
    }

    #[test]
    fn pages_written_apart_join_into_what_one_writer_makes() {
        let rows = [
            row("a@x.test", "Smith, Ann", true),
            row("b@x.test", "=cmd", false),
            row("c@x.test", "say \"hi\"\nthere", true),
            row("d@x.test", "", false),
        ];
        let mut whole = csv_writer();
        whole.write_record(CSV_HEADER).unwrap();
        for m in &rows {
            write_defused(&mut whole, &member_record(m, 0)).unwrap();
        }
        let whole = whole.into_inner().unwrap();
        let mut pieces = csv_header().unwrap();
        for page in rows.chunks(3) {
            pieces.extend(csv_lines(page, 0).unwrap());
        }
        assert_eq!(
            String::from_utf8(pieces).unwrap(),
            String::from_utf8(whole).unwrap()
        );
    }

    #[test]
    fn the_header_and_each_line_end_in_crlf() {
        let csv = String::from_utf8(csv_header().unwrap()).unwrap();
        assert_eq!(
            csv,
            "email,name,role,support_staff,two_factor,enrolled_since,exempt_until,recovery_codes_left,last_sign_in,deactivated_at,second_factors\r\n"
        );
    }
}
