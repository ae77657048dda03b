//! Inviting people to the admin's workspace, sending an invitation again, revoking it.
//!
//! Invariants:
//! - A token carries 256 random bits and is only ever stored as its SHA-256; it leaves
//!   the server once, in the invitation mail, which goes through the outbox in the
//!   transaction that stores the invitation (no invitation without its mail, and back).
//! - An email that has an account anywhere cannot be invited, and the admin is told so in
//!   words that do not say whether that account is in another workspace.
//! - An invitation id is looked up within the admin's workspace only (another's → 404).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::members::{MembersQuery, members_page};
use super::{invite_event, lock_as_admin};
use crate::audit::{Actor, Kind};
use crate::auth::session::TypedSession;
use crate::db::AnyConnection;
use crate::db::models::{Invite, Invites, NewInvite, User, Workspace, is_unique_violation};
use crate::domain::{Email, Role};
use crate::mail::{self, Mail};
use crate::random;
use crate::routes::{client_ip, public_url};
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{WorkspaceAdmin, see_other};

/// How long an invitation link works.
pub const INVITE_LIFETIME_SECONDS: i64 = 7 * 24 * 60 * 60;

/// The answer for an email that already has an account, wherever it is.
pub const CANNOT_INVITE: &str = "That address cannot be invited. If the person already has an account, ask them or support staff.";

/// Why an invitation was not sent.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("{}", CANNOT_INVITE)]
    HasAccount,
    #[error(
        "{0} is already invited to this workspace. To send them a new link, use “Resend” in the list of pending invitations."
    )]
    AlreadyInvited(String),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Random(#[from] getrandom::Error),
}

impl From<InviteError> for AppError {
    fn from(e: InviteError) -> AppError {
        match e {
            InviteError::HasAccount | InviteError::AlreadyInvited(_) => {
                AppError::Conflict(e.to_string())
            }
            InviteError::Database(e) => e.into(),
            InviteError::Random(e) => e.into(),
        }
    }
}

/// Who sends an invitation: an admin of the workspace, or support staff creating it.
#[derive(Clone, Copy)]
pub enum Inviter<'a> {
    Admin(&'a User),
    Staff(&'a User),
}

impl Inviter<'_> {
    fn user(&self) -> &User {
        match self {
            Inviter::Admin(user) | Inviter::Staff(user) => user,
        }
    }

    fn actor(&self) -> Actor {
        match self {
            Inviter::Admin(user) => Actor::user(user),
            Inviter::Staff(user) => Actor::Staff {
                id: user.id.clone(),
                email: user.email.clone(),
            },
        }
    }

    /// As the invitation mail names them.
    fn label(&self) -> String {
        match self {
            Inviter::Admin(user) => user.email.clone(),
            Inviter::Staff(user) => format!("{} (Tessera support)", user.email),
        }
    }
}

/// A new token: the link's last part, and the hash that is stored.
fn new_token() -> Result<(String, String), getrandom::Error> {
    let token = random::token::<32>()?;
    let hash = random::sha256_hex(&token);
    Ok((token, hash))
}

fn invite_link(base: &str, token: &str) -> String {
    format!("{base}/invite/{token}")
}

fn mail_invite(
    conn: &mut AnyConnection,
    invite: &Invite,
    workspace: &Workspace,
    link: &str,
) -> diesel::QueryResult<()> {
    mail::enqueue(
        conn,
        &Mail::Invite {
            to: &invite.email,
            workspace: &workspace.name,
            role: invite.role.as_str(),
            invited_by: &invite.invited_by_label,
            link,
            expires_at: invite.expires_at,
        },
    )
}

/// Who sends an invitation, from where, and when.
pub struct Sending<'a> {
    pub by: Inviter<'a>,
    pub ip: Option<String>,
    /// `PUBLIC_URL`, which the link starts with.
    pub base: &'a str,
    /// Policy time: the link works for [`INVITE_LIFETIME_SECONDS`] from it.
    pub now: i64,
}

/// Invites `email` to `workspace` as `role`, mails the link and audits it, all in the
/// caller's write transaction.
pub fn issue(
    conn: &mut AnyConnection,
    workspace: &Workspace,
    email: &Email,
    role: Role,
    sending: Sending<'_>,
) -> Result<Invite, InviteError> {
    let Sending { by, ip, base, now } = sending;
    if User::find_by_email(conn, email)?.is_some() {
        return Err(InviteError::HasAccount);
    }
    if Invites::find_by_email(conn, &workspace.id, email)?.is_some() {
        return Err(InviteError::AlreadyInvited(email.as_str().to_owned()));
    }
    let (token, token_hash) = new_token()?;
    let label = by.label();
    let new = NewInvite {
        workspace_id: &workspace.id,
        email,
        role,
        invited_by: &by.user().id,
        invited_by_label: &label,
        token_hash: &token_hash,
        expires_at: now + INVITE_LIFETIME_SECONDS,
    };
    let invite = Invites::insert(conn, &new, now).map_err(|e| {
        if is_unique_violation(&e) {
            // A racing request invited the same address first.
            InviteError::AlreadyInvited(email.as_str().to_owned())
        } else {
            e.into()
        }
    })?;
    mail_invite(conn, &invite, workspace, &invite_link(base, &token))?;
    invite_event(Kind::InviteSent, workspace, &invite, by.actor(), ip).record(conn)?;
    Ok(invite)
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

pub async fn invite_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let refuse = |message: String, status: StatusCode| {
        members_page(
            &state,
            &session,
            &admin,
            MembersQuery::default(),
            Some((message, form.email.trim().to_owned(), form.role.clone())),
            status,
        )
    };
    let (email, role) = match (Email::parse(&form.email), Role::parse(&form.role)) {
        (Ok(email), Ok(role)) => (email, role),
        (Err(e), _) | (_, Err(e)) => {
            return refuse(e.0.to_owned(), StatusCode::BAD_REQUEST).await;
        }
    };
    let ip = client_ip(&req)?;
    let base = public_url(&state).to_owned();
    let now = state.settings.clock.now();
    let actor = admin.clone();
    let invited = email.clone();
    let sent = state
        .db
        .write(move |conn| {
            lock_as_admin(conn, &actor)?;
            let workspace = actor.workspace.clone();
            let sending = Sending {
                by: Inviter::Admin(&actor.user),
                ip,
                base: &base,
                now,
            };
            match issue(conn, &workspace, &invited, role, sending) {
                Ok(invite) => Ok(Ok(invite)),
                // Nothing was written: the refusal is answered on the page.
                Err(e @ (InviteError::HasAccount | InviteError::AlreadyInvited(_))) => Ok(Err(e)),
                Err(e) => Err(AppError::from(e)),
            }
        })
        .await?;
    match sent {
        Ok(invite) => {
            session.notice(&format!(
                "An invitation was sent to {} (as {}). The link works for 7 days.",
                invite.email,
                invite.role.as_str()
            ))?;
            Ok(see_other("/admin/users"))
        }
        Err(e) => refuse(e.to_string(), StatusCode::CONFLICT).await,
    }
}

pub async fn resend_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let ip = client_ip(&req)?;
    let base = public_url(&state).to_owned();
    let now = state.settings.clock.now();
    let (token, token_hash) = new_token()?;
    let actor = admin.clone();
    let email = state
        .db
        .write(move |conn| {
            lock_as_admin(conn, &actor)?;
            let workspace = &actor.workspace;
            // One statement: the new hash replaces the old, so the old link is dead.
            let invite = Invites::renew(
                conn,
                &workspace.id,
                &id,
                &token_hash,
                now + INVITE_LIFETIME_SECONDS,
            )?
            .ok_or(AppError::NotFound)?;
            mail_invite(conn, &invite, workspace, &invite_link(&base, &token))?;
            invite_event(
                Kind::InviteResent,
                workspace,
                &invite,
                Actor::user(&actor.user),
                ip,
            )
            .record(conn)?;
            Ok::<_, AppError>(invite.email)
        })
        .await?;
    session.notice(&format!(
        "A new invitation link was sent to {email}; the earlier link no longer works."
    ))?;
    Ok(see_other("/admin/users"))
}

pub async fn revoke_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    WorkspaceAdmin(admin): WorkspaceAdmin,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = path.into_inner();
    let ip = client_ip(&req)?;
    let actor = admin.clone();
    let email = state
        .db
        .write(move |conn| {
            lock_as_admin(conn, &actor)?;
            let workspace = &actor.workspace;
            let invite = Invites::revoke(conn, &workspace.id, &id)?.ok_or(AppError::NotFound)?;
            invite_event(
                Kind::InviteRevoked,
                workspace,
                &invite,
                Actor::user(&actor.user),
                ip,
            )
            .record(conn)?;
            Ok::<_, AppError>(invite.email)
        })
        .await?;
    session.notice(&format!(
        "The invitation of {email} was revoked: its link no longer works."
    ))?;
    Ok(see_other("/admin/users"))
}
