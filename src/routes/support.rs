//! Support staff's pages: find a user in any workspace and reset their 2FA, with a reason
//! that the user's workspace admins then read in their audit log; create a workspace and
//! invite its first admin (what operators did with `tessera create-workspace`).
//!
//! Invariants: every handler takes `SupportStaff` (fully signed in, staff flag checked on
//! the server); a reset needs a non-empty reason; staff cannot reset themselves.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::admin::invites::{InviteError, Inviter, Sending, issue};
use super::admin::reset_error;
use super::{client_ip, layout, public_url, url_with};
use crate::audit::{Actor, Event, Kind};
use crate::auth::reset::{ResetBy, reset_second_factor};
use crate::auth::session::TypedSession;
use crate::db::DbError;
use crate::db::directory;
use crate::db::models::{User, Workspace, is_unique_violation};
use crate::domain::{Email, Reason, Role, Slug, UserId, WorkspaceName};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{SupportStaff, see_other};
use crate::web::views::{Layout, render};
use crate::words::date;

/// More than this many matches: ask for a more precise search.
const MAX_RESULTS: i64 = 50;
/// Searching needs a few characters: a search for "a" would list everyone.
const MIN_QUERY_CHARS: usize = 3;

#[derive(Template)]
#[template(path = "support/users.html")]
pub struct SupportPage {
    pub layout: Layout,
    pub q: String,
    pub searched: bool,
    pub hint: Option<String>,
    pub users: Vec<SupportUserEntry>,
    /// The new-workspace form: why it was refused (`role="alert"`), and what was typed.
    pub create_error: Option<String>,
    pub create: WorkspaceForm,
}

pub struct SupportUserEntry {
    pub id: UserId,
    pub email: String,
    pub workspace: String,
    pub role: String,
    pub status: String,
    pub resettable: bool,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn users_get(
    state: web::Data<AppState>,
    session: TypedSession,
    SupportStaff(staff): SupportStaff,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let q = query.into_inner().q.trim().to_lowercase();
    let (results, hint) = if q.chars().count() < MIN_QUERY_CHARS {
        let hint = (!q.is_empty())
            .then(|| format!("Type at least {MIN_QUERY_CHARS} characters of an email address."));
        (Vec::new(), hint)
    } else {
        let search = q.clone();
        let rows = state
            .db
            .run(move |conn| {
                directory::search_all(conn, &search, MAX_RESULTS + 1).map_err(AppError::from)
            })
            .await?;
        let hint = (rows.len() as i64 > MAX_RESULTS).then(|| {
            format!("Only the first {MAX_RESULTS} matches are shown: type more of the address.")
        });
        (rows, hint)
    };
    let searched = !q.is_empty() && q.chars().count() >= MIN_QUERY_CHARS;
    let page = SupportPage {
        layout: layout(&session, "Support", Some(&staff))?,
        q,
        searched,
        hint,
        create_error: None,
        create: WorkspaceForm::default(),
        users: results
            .into_iter()
            .take(MAX_RESULTS as usize)
            .map(|u| SupportUserEntry {
                resettable: u.factors().any() && u.id != staff.user.id,
                status: {
                    let kinds = u.factors().kinds().unwrap_or_default();
                    match (u.deactivated_at, u.factors().any(), u.enabled_at) {
                        (Some(at), _, _) => format!("Deactivated on {}", date(at)),
                        (None, true, Some(since)) => {
                            format!("Enrolled since {} ({kinds})", date(since))
                        }
                        (None, true, None) => format!("Enrolled ({kinds})"),
                        (None, false, _) => "Not enrolled".to_owned(),
                    }
                },
                id: u.id,
                email: u.email,
                workspace: format!("{} ({})", u.workspace_name, u.workspace_slug),
                role: if u.is_staff {
                    format!("{} (support staff)", u.role)
                } else {
                    u.role
                },
            })
            .collect(),
    };
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    reason: String,
}

pub async fn reset_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    SupportStaff(staff): SupportStaff,
    path: web::Path<String>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, AppError> {
    let target_id = path.into_inner();
    let reason = Reason::parse(&form.reason)?;
    let ip = client_ip(&req)?;
    let now = state.settings.clock.now();
    let actor = staff.user.clone();
    let (email, removed) = state
        .db
        .write(move |conn| {
            let target = User::find(conn, &target_id)?.ok_or(AppError::NotFound)?;
            if target.id == actor.id {
                return Err(AppError::Forbidden(
                    "You cannot reset your own two-factor sign-in: ask another member of staff."
                        .into(),
                ));
            }
            let by = ResetBy::Staff {
                staff: &actor,
                reason: reason.as_str(),
            };
            let removed = reset_second_factor(conn, &target, by, ip, now).map_err(reset_error)?;
            Ok((target.email, removed))
        })
        .await?;
    session.notice(&format!(
        "Two-factor sign-in of {email} was reset (removed: {removed}) and all of their sessions were ended. The workspace's admins can read your reason in their audit log."
    ))?;
    Ok(see_other(&url_with(
        "/support/users",
        &[("q", email.as_str())],
    )))
}

#[derive(Deserialize, Default)]
pub struct WorkspaceForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub admin_email: String,
}

/// Why a new workspace was not created.
enum NotCreated {
    SlugTaken,
    Invite(InviteError),
    App(AppError),
}

impl From<diesel::result::Error> for NotCreated {
    fn from(e: diesel::result::Error) -> NotCreated {
        NotCreated::App(e.into())
    }
}

impl From<DbError> for NotCreated {
    fn from(e: DbError) -> NotCreated {
        NotCreated::App(e.into())
    }
}

pub async fn workspaces_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    SupportStaff(staff): SupportStaff,
    form: web::Form<WorkspaceForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let refuse = |message: String, status: StatusCode, form: WorkspaceForm| {
        let page = SupportPage {
            layout: layout(&session, "Support", Some(&staff))?,
            q: String::new(),
            searched: false,
            hint: None,
            users: Vec::new(),
            create_error: Some(message),
            create: form,
        };
        render(&page, status)
    };
    let parsed = WorkspaceName::parse(&form.name).and_then(|name| {
        let slug = Slug::parse(&form.slug)?;
        let email = Email::parse(&form.admin_email)?;
        Ok((name, slug, email))
    });
    let (name, slug, email) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return refuse(e.0.to_owned(), StatusCode::BAD_REQUEST, form),
    };
    let ip = client_ip(&req)?;
    let base = public_url(&state).to_owned();
    let now = state.settings.clock.now();
    let actor = staff.user.clone();
    let created = state
        .db
        .write(move |conn| {
            if Workspace::find_by_slug(conn, &slug)?.is_some() {
                return Err(NotCreated::SlugTaken);
            }
            let workspace = Workspace::insert(conn, &name, &slug, now).map_err(|e| {
                if is_unique_violation(&e) {
                    NotCreated::SlugTaken
                } else {
                    e.into()
                }
            })?;
            let staff_actor = Actor::Staff {
                id: actor.id.clone(),
                email: actor.email.clone(),
            };
            Event {
                kind: Kind::WorkspaceCreated,
                workspace_id: Some(workspace.id.clone()),
                actor: staff_actor,
                subject: None,
                ip: ip.clone(),
                detail: format!("{} ({}), by support", workspace.name, workspace.slug),
            }
            .record(conn)?;
            let sending = Sending {
                by: Inviter::Staff(&actor),
                ip,
                base: &base,
                now,
            };
            issue(conn, &workspace, &email, Role::Admin, sending).map_err(|e| match e {
                InviteError::Database(e) => e.into(),
                other => NotCreated::Invite(other),
            })?;
            Ok((workspace, email))
        })
        .await;
    match created {
        Ok((workspace, email)) => {
            tracing::info!(workspace = %workspace.slug, "support created a workspace");
            session.notice(&format!(
                "The workspace {} ({}) was created, and {} was invited as its first admin. The link works for 7 days.",
                workspace.name,
                workspace.slug,
                email.as_str()
            ))?;
            Ok(see_other("/support/users"))
        }
        Err(NotCreated::SlugTaken) => refuse(
            "That short name is taken by another workspace. Choose another one.".into(),
            StatusCode::CONFLICT,
            form,
        ),
        Err(NotCreated::Invite(e)) => refuse(e.to_string(), StatusCode::CONFLICT, form),
        Err(NotCreated::App(e)) => Err(e),
    }
}
