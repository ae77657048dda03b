//! The workspace's audit log: its security events, newest first, filtered and paged.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::Pager;
use crate::audit;
use crate::auth::session::TypedSession;
use crate::routes::{layout, url_with};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::WorkspaceAdmin;
use crate::web::views::{Layout, render};
use crate::words::date_time;

const EVENTS_PER_PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "admin/audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    /// Every kind: (value, words), for the filter.
    pub kinds: Vec<(&'static str, &'static str)>,
    pub kind: String,
    pub member: String,
    pub entries: Vec<AuditEntry>,
    pub pager: Pager,
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

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    member: String,
    /// The events older than this id (the "Older events" link).
    before: Option<i64>,
    /// The events newer than this id (the "Newer events" link).
    after: Option<i64>,
    /// `yes`: the oldest events.
    #[serde(default)]
    last: String,
}

pub async fn audit_get(
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let cursor = match (query.before, query.after) {
        (Some(id), _) => audit::Cursor::OlderThan(id),
        (None, Some(id)) => audit::Cursor::NewerThan(id),
        (None, None) if query.last == "yes" => audit::Cursor::Oldest,
        (None, None) => audit::Cursor::Newest,
    };
    let kind = audit::Kind::parse(query.kind.trim());
    if kind.is_none() && !query.kind.trim().is_empty() {
        return Err(AppError::BadRequest(
            "There is no event of that kind.".into(),
        ));
    }
    let member = query.member.trim().to_lowercase();
    if member.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "A member is named by their email address, which has no control characters.".into(),
        ));
    }
    let filter = audit::Filter {
        kind,
        member: Some(member.clone()).filter(|m| !m.is_empty()),
    };
    let workspace_id = admin.workspace.id.clone();
    let page = state
        .db
        .run(move |conn| {
            audit::page(conn, &workspace_id, &filter, cursor, EVENTS_PER_PAGE)
                .map_err(AppError::from)
        })
        .await?;
    let link = |cursor: (&str, &str)| {
        url_with(
            "/admin/audit",
            &[
                ("kind", query.kind.as_str()),
                ("member", query.member.as_str()),
                cursor,
            ],
        )
    };
    // Newest first: the page before this one holds newer events (`after=` the first).
    let pager = Pager::around(
        page.more_newer,
        page.more_older,
        page.rows.first().map(|e| e.id.to_string()),
        page.rows.last().map(|e| e.id.to_string()),
        link,
        ("after", "before"),
    );
    let view = AuditPage {
        layout: layout(&session, "Audit log", Some(&admin))?,
        kinds: audit::Kind::ALL
            .iter()
            .map(|k| (k.as_str(), k.describe()))
            .collect(),
        kind: query.kind.trim().to_owned(),
        member: query.member.trim().to_owned(),
        entries: page
            .rows
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
        pager,
    };
    render(&view, StatusCode::OK)
}
