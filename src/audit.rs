//! The audit trail: one append-only row per security event.
//!
//! Events are written in the same transaction as the change they describe, so the trail
//! never claims something that did not happen, nor misses something that did. Rows are
//! never updated or deleted (the database refuses it too: see the migration's triggers).
//! Nothing secret goes in: no codes, passwords, secrets or session ids.

use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The password was right and the second factor is still owed.
    PasswordVerified,
    /// Signed in with every factor the account has.
    SignInSucceeded,
    SignInFailed,
    SecondFactorSucceeded,
    SecondFactorFailed,
    ReplayRefused,
    /// A signed-in user's password was wrong when re-checked for a sensitive change.
    PasswordCheckFailed,
    RecoveryCodeUsed,
    TwoFactorEnabled,
    TwoFactorDisabled,
    RecoveryCodesRegenerated,
    SignedOut,
    WorkspaceCreated,
    UserCreated,
    /// Created by `tessera import` from another system's data.
    UserImported,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PasswordVerified => "password_verified",
            Kind::SignInSucceeded => "sign_in_succeeded",
            Kind::SignInFailed => "sign_in_failed",
            Kind::SecondFactorSucceeded => "second_factor_succeeded",
            Kind::SecondFactorFailed => "second_factor_failed",
            Kind::ReplayRefused => "replay_refused",
            Kind::PasswordCheckFailed => "password_check_failed",
            Kind::RecoveryCodeUsed => "recovery_code_used",
            Kind::TwoFactorEnabled => "two_factor_enabled",
            Kind::TwoFactorDisabled => "two_factor_disabled",
            Kind::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Kind::SignedOut => "signed_out",
            Kind::WorkspaceCreated => "workspace_created",
            Kind::UserCreated => "user_created",
            Kind::UserImported => "user_imported",
        }
    }
}

/// Who did it.
#[derive(Debug, Clone)]
pub enum Actor {
    User {
        id: String,
        email: String,
    },
    /// Someone not (yet) signed in, e.g. a failed sign-in.
    Anonymous,
    /// An operator at the command line.
    Cli,
}

/// An event about to be written.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub workspace_id: Option<String>,
    pub actor: Actor,
    /// The account affected: `(id, email)`; the id is absent for an unknown email.
    pub subject: Option<(Option<String>, String)>,
    pub ip: Option<String>,
    pub detail: String,
}

impl Event {
    /// An event a user caused on their own account.
    pub fn by_user(kind: Kind, user: &crate::db::models::User, ip: Option<String>) -> Event {
        Event {
            kind,
            workspace_id: Some(user.workspace_id.clone()),
            actor: Actor::User {
                id: user.id.clone(),
                email: user.email.clone(),
            },
            subject: Some((Some(user.id.clone()), user.email.clone())),
            ip,
            detail: String::new(),
        }
    }

    /// An event on `user`'s account by someone who has not proven to be them.
    pub fn against_user(kind: Kind, user: &crate::db::models::User, ip: Option<String>) -> Event {
        Event {
            actor: Actor::Anonymous,
            ..Event::by_user(kind, user, ip)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = detail.into();
        self
    }

    pub fn record(self, conn: &mut AnyConnection) -> QueryResult<()> {
        let (actor_id, actor_label) = match self.actor {
            Actor::User { id, email } => (Some(id), email),
            Actor::Anonymous => (None, "anonymous".to_owned()),
            Actor::Cli => (None, "cli".to_owned()),
        };
        let (subject_id, subject_label) = match self.subject {
            Some((id, label)) => (id, Some(label)),
            None => (None, None),
        };
        diesel::insert_into(audit_events::table)
            .values((
                audit_events::created_at.eq(now()),
                audit_events::workspace_id.eq(self.workspace_id),
                audit_events::actor_id.eq(actor_id),
                audit_events::actor_label.eq(actor_label),
                audit_events::subject_id.eq(subject_id),
                audit_events::subject_label.eq(subject_label),
                audit_events::kind.eq(self.kind.as_str()),
                audit_events::ip.eq(self.ip),
                audit_events::detail.eq(self.detail),
            ))
            .execute(conn)
            .map(|_| ())
    }
}
