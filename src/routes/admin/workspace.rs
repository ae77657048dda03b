//! The workspace's requirements — "Require 2FA" and "Members must use a security key or
//! passkey" — turning them on or off, their shared grace period, and the exemptions an
//! admin grants (one exemption covers both).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::member_of;
use crate::audit::{Actor, Event, Kind};
use crate::auth::policy::DAY;
use crate::auth::policy::change::{self, Asked, Decision, EnforcementSettings, Refusal};
use crate::auth::session::TypedSession;
use crate::db::directory;
use crate::db::models::{Account, Exemptions, User, Workspace};
use crate::domain::{Email, Invalid, LastDay, Reason};
use crate::routes::{client_ip, layout};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{WorkspaceAdmin, see_other};
use crate::web::views::{Layout, render};
use crate::words::{date, date_time};

/// An exemption is a stopgap (a shared kiosk account), not a permanent opt-out.
const LONGEST_EXEMPTION_DAYS: i64 = 366;

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
    /// "Members must use a security key or passkey", like the fields above.
    pub keys_required: bool,
    pub keys_since: Option<String>,
    pub keys_deadline: Option<String>,
    pub keys_deadline_passed: bool,
    pub members: i64,
    pub not_enrolled: i64,
    /// Active members without a security key or passkey.
    pub without_key: i64,
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
    let (counts, exemptions) = state
        .db
        .run(move |conn| {
            Ok::<_, AppError>((
                directory::member_counts(conn, &workspace_id)?,
                Exemptions::active_in(conn, &workspace_id, now)?,
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
        keys_required: ws.require_keys_since.is_some(),
        keys_since: ws.require_keys_since.map(date_time),
        keys_deadline: ws.require_keys_deadline.map(date_time),
        keys_deadline_passed: ws.require_keys_deadline.is_some_and(|d| d <= now),
        members: counts.total,
        not_enrolled: counts.without_second_factor,
        without_key: counts.without_key,
        exemptions: exemptions
            .into_iter()
            .map(|e| ExemptionEntry {
                user_id: e.user_id,
                email: e.email,
                last_day: date(e.until - 1),
                reason: e.reason,
                granted_by: e.granted_by,
                granted_on: date(e.created_at),
            })
            .collect(),
        today: date_input(now),
        version: EnforcementSettings::of(ws).version(),
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
    require_phishing_resistant: Option<String>,
    #[serde(default)]
    grace_days: String,
    #[serde(default)]
    confirm: String,
    /// The settings the form was loaded with (see [`EnforcementSettings::version`]); a form
    /// without it (a script) is judged against the settings at the time of the request.
    version: Option<String>,
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
    let loaded = EnforcementSettings::of(ws);
    if form
        .version
        .as_ref()
        .is_some_and(|v| *v != loaded.version())
    {
        return Err(changed_meanwhile());
    }
    let asked = Asked {
        require_2fa: form.require_2fa.as_deref() == Some("on"),
        require_keys: form.require_phishing_resistant.as_deref() == Some("on"),
        grace_days: &form.grace_days,
        confirmed: form.confirm == "yes",
    };
    // As "Require 2FA" asks the admin to use 2FA (`WorkspaceAdmin`), requiring keys asks
    // the admin to have one: they see what their members will go through, and they are
    // not the first to be held by their own change.
    if asked.require_keys && loaded.keys_since.is_none() && !admin.factors.security_keys {
        return refuse(
            StatusCode::FORBIDDEN,
            "require_phishing_resistant",
            "Add a security key or passkey to your own account first: only an admin who uses one can require them. Nothing was changed.".into(),
        )
        .await;
    }
    let now = state.settings.clock.now();
    let change = match change::decide(loaded, asked, now) {
        Ok(Decision::Change(change)) => change,
        Ok(Decision::Nothing) => {
            session.notice("Nothing was changed.")?;
            return Ok(see_other("/admin/workspace"));
        }
        Err(Refusal::GraceDays(e)) => {
            return refuse(StatusCode::BAD_REQUEST, "grace_days", e.0.to_owned()).await;
        }
        Err(Refusal::NotConfirmed { two_factor, keys }) => {
            let id = ws.id.clone();
            let counts = state
                .db
                .run(move |conn| directory::member_counts(conn, &id).map_err(AppError::from))
                .await?;
            let warning = change::turn_off_warning(
                two_factor,
                keys,
                counts.total,
                counts.without_second_factor,
                counts.without_key,
            );
            return refuse(StatusCode::BAD_REQUEST, "confirm", warning).await;
        }
    };

    let ip = client_ip(&req)?;
    let actor = admin.user.clone();
    let workspace_id = ws.id.clone();
    let expected = form.version.unwrap_or_else(|| loaded.version());
    state
        .db
        .write(move |conn| {
            // The settings the decision was made on must still hold: a second admin's
            // change in between is not silently overwritten.
            let current =
                Workspace::find_for_update(conn, &workspace_id)?.ok_or(AppError::NotFound)?;
            if EnforcementSettings::of(&current).version() != expected {
                return Err(changed_meanwhile());
            }
            let new = change.settings;
            Workspace::set_requirements(
                conn,
                &workspace_id,
                (new.since, new.deadline),
                (new.keys_since, new.keys_deadline),
                new.grace_days,
            )?;
            for (kind, detail) in change.events {
                Event {
                    kind,
                    workspace_id: Some(workspace_id.clone()),
                    actor: Actor::user(&actor),
                    subject: None,
                    ip: ip.clone(),
                    detail,
                }
                .record(conn)?;
            }
            for (requirement, deadline) in change.mails {
                crate::mail::enqueue_enforcement_on(
                    conn,
                    &workspace_id,
                    &current.name,
                    deadline,
                    requirement,
                )?;
            }
            Ok(())
        })
        .await?;
    session.notice(&change.notice)?;
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
            Exemptions::grant(conn, &target.id, until, reason.as_str(), &actor.email, now)?;
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
                "{email} is exempt from “Require 2FA” and from the security key requirement until the end of {}.",
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
            if !Exemptions::end(conn, &target.id, now)? {
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
