//! The workspace admin's pages: members, their 2FA, roles and deactivation (`members`),
//! invitations (`invites`), "Require 2FA" with a grace period and exemptions
//! (`workspace`), and the audit log (`audit`).
//!
//! Invariants:
//! - Every handler takes `WorkspaceAdmin`: fully signed in (2FA verified where the admin
//!   has it) and an admin, checked on the server for every request.
//! - Every id in a path or form is looked up within the admin's own workspace; an id of
//!   another workspace answers exactly like one that does not exist (404).
//! - Every change is written with its audit event in one transaction.

pub mod audit;
pub mod invites;
pub mod members;
pub mod workspace;

use crate::audit::{Actor, Event, Kind};
use crate::auth::reset::ResetError;
use crate::db::models::{Account, Invite, Invites, User, Workspace};
use crate::domain::Role;
use crate::web::error::AppError;

/// The links between the pages of a long list (keyset pages: each link names the row it
/// continues from, see `directory::Cursor` and `AuditCursor`); `None` where there is no
/// such page.
pub struct Pager {
    pub first: Option<String>,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
}

impl Pager {
    /// The links around a page whose first and last rows are keyed `first` and `last`
    /// (`None` on an empty page): `link` makes a URL with one more parameter (`("", "")`
    /// for none). `previous` names the first row's key with the first of `(before, after)`,
    /// `next` the last row's with the second.
    pub fn around(
        more_before: bool,
        more_after: bool,
        first: Option<String>,
        last: Option<String>,
        link: impl Fn((&str, &str)) -> String,
        (before, after): (&str, &str),
    ) -> Pager {
        Pager {
            first: more_before.then(|| link(("", ""))),
            previous: first
                .filter(|_| more_before)
                .map(|key| link((before, &key))),
            next: last.filter(|_| more_after).map(|key| link((after, &key))),
            last: more_after.then(|| link(("last", "yes"))),
        }
    }

    pub fn is_needed(&self) -> bool {
        self.previous.is_some() || self.next.is_some()
    }
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

/// Locks the admin's workspace and checks again, under that lock, that they are still one
/// of its active admins: a change made by an admin who was demoted or deactivated a moment
/// ago (after the guard looked) is refused, not slipped in after the demotion.
fn lock_as_admin(conn: &mut crate::db::AnyConnection, admin: &Account) -> Result<(), AppError> {
    Workspace::find_for_update(conn, &admin.workspace.id)?;
    let acting = User::find(conn, &admin.user.id)?;
    if !acting.is_some_and(|a| a.role == Role::Admin && !a.is_deactivated()) {
        return Err(AppError::Forbidden(
            "Only the admins of a workspace can use this page.".into(),
        ));
    }
    Ok(())
}

/// Revokes the pending invitations `sender` sent, audited: an invitation is an admin's
/// authority put in a link, and goes when that authority does (`why` says how).
fn revoke_invites_of(
    conn: &mut crate::db::AnyConnection,
    actor: &Account,
    sender: &User,
    why: &str,
    ip: Option<String>,
) -> Result<(), AppError> {
    for invite in Invites::revoke_sent_by(conn, &actor.workspace.id, &sender.id)? {
        let detail = format!(
            "as {}; its sender {} {why}",
            invite.role.as_str(),
            sender.email
        );
        invite_event(
            Kind::InviteRevoked,
            &actor.workspace,
            &invite,
            Actor::user(&actor.user),
            ip.clone(),
        )
        .with_detail(detail)
        .record(conn)?;
    }
    Ok(())
}

/// The audit event of an invitation sent, resent, accepted or revoked.
fn invite_event(
    kind: Kind,
    workspace: &Workspace,
    invite: &Invite,
    actor: Actor,
    ip: Option<String>,
) -> Event {
    Event {
        kind,
        workspace_id: Some(workspace.id.clone()),
        actor,
        subject: Some((None, invite.email.clone())),
        ip,
        detail: match kind {
            Kind::InviteRevoked => format!("as {}", invite.role.as_str()),
            _ => format!(
                "as {}; the link works until {}",
                invite.role.as_str(),
                crate::words::date_time(invite.expires_at)
            ),
        },
    }
}

/// A refused reset as the page says it (the support pages answer the same way).
pub fn reset_error(e: ResetError) -> AppError {
    match e {
        ResetError::NotEnrolled(_) => AppError::Conflict(e.to_string()),
        ResetError::Database(e) => e.into(),
    }
}
