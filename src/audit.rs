//! The audit trail: one append-only row per security event.
//!
//! Events are written in the same transaction as the change they describe, so the trail
//! never claims something that did not happen, nor misses something that did. Rows are
//! never updated or deleted (the database refuses it too: see the migration's triggers).
//! Nothing secret goes in: no codes, passwords, secrets or session ids.

use diesel::QueryResult;

use crate::db::models::{AuditEvents, NewAuditEvent};
use crate::db::{AnyConnection, now};
use crate::domain::{UserId, WorkspaceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The password was right and the second factor is still owed.
    PasswordVerified,
    /// Signed in with every factor the account has.
    SignInSucceeded,
    SignInFailed,
    SecondFactorSucceeded,
    SecondFactorFailed,
    /// Too many failed second-factor attempts in a row: the second step is locked.
    SecondFactorLocked,
    ReplayRefused,
    /// A signed-in user's password was wrong when re-checked for a sensitive change.
    PasswordCheckFailed,
    RecoveryCodeUsed,
    TwoFactorEnabled,
    TwoFactorDisabled,
    RecoveryCodesRegenerated,
    SignedOut,
    /// The user signed out other sessions of theirs from the sessions page.
    SessionsEnded,
    WorkspaceCreated,
    UserCreated,
    /// An admin, support staff or the command line removed a user's 2FA.
    TwoFactorReset,
    EnforcementEnabled,
    EnforcementDisabled,
    /// The grace period was changed while enforcement was on: the deadline moved.
    EnforcementDeadlineChanged,
    /// The grace period was changed while enforcement was off (no deadline yet).
    GracePeriodChanged,
    ExemptionGranted,
    ExemptionEnded,
    /// Created by `tessera import` from another system's data.
    UserImported,
    /// An admin (or support staff, for a new workspace) invited an email.
    InviteSent,
    /// A new link for an invitation; the old one stopped working.
    InviteResent,
    InviteRevoked,
    /// The invitee set a name and password: their account exists now.
    InviteAccepted,
    RoleChanged,
    UserDeactivated,
    UserReactivated,
    /// The user changed their password (knowing the current one).
    PasswordChanged,
    /// A password-reset link was mailed to the account's address.
    PasswordResetRequested,
    /// The password was set anew through a reset link.
    PasswordReset,
    /// A security key or passkey was registered.
    KeyAdded,
    KeyRenamed,
    KeyRemoved,
    /// A key answered with a signature counter that did not go up: possibly a copy.
    KeyCounterRegression,
    /// The authenticator app was turned off while security keys remain: 2FA stays on.
    AuthenticatorRemoved,
    /// "Members must use a security key or passkey" was turned on.
    KeysRequiredEnabled,
    KeysRequiredDisabled,
    /// The grace period was changed while keys were required: their deadline moved.
    KeysRequiredDeadlineChanged,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PasswordVerified => "password_verified",
            Kind::SignInSucceeded => "sign_in_succeeded",
            Kind::SignInFailed => "sign_in_failed",
            Kind::SecondFactorSucceeded => "second_factor_succeeded",
            Kind::SecondFactorFailed => "second_factor_failed",
            Kind::SecondFactorLocked => "second_factor_locked",
            Kind::ReplayRefused => "replay_refused",
            Kind::PasswordCheckFailed => "password_check_failed",
            Kind::RecoveryCodeUsed => "recovery_code_used",
            Kind::TwoFactorEnabled => "two_factor_enabled",
            Kind::TwoFactorDisabled => "two_factor_disabled",
            Kind::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Kind::SignedOut => "signed_out",
            Kind::SessionsEnded => "sessions_ended",
            Kind::WorkspaceCreated => "workspace_created",
            Kind::UserCreated => "user_created",
            Kind::TwoFactorReset => "two_factor_reset",
            Kind::EnforcementEnabled => "enforcement_enabled",
            Kind::EnforcementDisabled => "enforcement_disabled",
            Kind::EnforcementDeadlineChanged => "enforcement_deadline_changed",
            Kind::GracePeriodChanged => "grace_period_changed",
            Kind::ExemptionGranted => "exemption_granted",
            Kind::ExemptionEnded => "exemption_ended",
            Kind::UserImported => "user_imported",
            Kind::InviteSent => "invite_sent",
            Kind::InviteResent => "invite_resent",
            Kind::InviteRevoked => "invite_revoked",
            Kind::InviteAccepted => "invite_accepted",
            Kind::RoleChanged => "role_changed",
            Kind::UserDeactivated => "user_deactivated",
            Kind::UserReactivated => "user_reactivated",
            Kind::PasswordChanged => "password_changed",
            Kind::PasswordResetRequested => "password_reset_requested",
            Kind::PasswordReset => "password_reset",
            Kind::KeyAdded => "key_added",
            Kind::KeyRenamed => "key_renamed",
            Kind::KeyRemoved => "key_removed",
            Kind::KeyCounterRegression => "key_counter_regression",
            Kind::AuthenticatorRemoved => "authenticator_removed",
            Kind::KeysRequiredEnabled => "keys_required_enabled",
            Kind::KeysRequiredDisabled => "keys_required_disabled",
            Kind::KeysRequiredDeadlineChanged => "keys_required_deadline_changed",
        }
    }

    pub const ALL: [Kind; 42] = [
        Kind::PasswordVerified,
        Kind::SignInSucceeded,
        Kind::SignInFailed,
        Kind::SecondFactorSucceeded,
        Kind::SecondFactorFailed,
        Kind::SecondFactorLocked,
        Kind::ReplayRefused,
        Kind::PasswordCheckFailed,
        Kind::RecoveryCodeUsed,
        Kind::TwoFactorEnabled,
        Kind::TwoFactorDisabled,
        Kind::RecoveryCodesRegenerated,
        Kind::SignedOut,
        Kind::SessionsEnded,
        Kind::WorkspaceCreated,
        Kind::UserCreated,
        Kind::TwoFactorReset,
        Kind::EnforcementEnabled,
        Kind::EnforcementDisabled,
        Kind::EnforcementDeadlineChanged,
        Kind::GracePeriodChanged,
        Kind::ExemptionGranted,
        Kind::ExemptionEnded,
        Kind::UserImported,
        Kind::InviteSent,
        Kind::InviteResent,
        Kind::InviteRevoked,
        Kind::InviteAccepted,
        Kind::RoleChanged,
        Kind::UserDeactivated,
        Kind::UserReactivated,
        Kind::PasswordChanged,
        Kind::PasswordResetRequested,
        Kind::PasswordReset,
        Kind::KeyAdded,
        Kind::KeyRenamed,
        Kind::KeyRemoved,
        Kind::KeyCounterRegression,
        Kind::AuthenticatorRemoved,
        Kind::KeysRequiredEnabled,
        Kind::KeysRequiredDisabled,
        Kind::KeysRequiredDeadlineChanged,
    ];

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// What happened, in words, for the audit log page.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::PasswordVerified => "Password accepted, second factor asked",
            Kind::SignInSucceeded => "Signed in",
            Kind::SignInFailed => "Sign-in failed",
            Kind::SecondFactorSucceeded => "Second factor accepted",
            Kind::SecondFactorFailed => "Second factor refused",
            Kind::SecondFactorLocked => "Second step locked after failures",
            Kind::ReplayRefused => "Reused code refused",
            Kind::PasswordCheckFailed => "Wrong password at a security change",
            Kind::RecoveryCodeUsed => "Recovery code used",
            Kind::TwoFactorEnabled => "2FA turned on",
            Kind::TwoFactorDisabled => "2FA turned off",
            Kind::RecoveryCodesRegenerated => "New recovery codes made",
            Kind::SignedOut => "Signed out",
            Kind::SessionsEnded => "Other sessions signed out",
            Kind::WorkspaceCreated => "Workspace created",
            Kind::UserCreated => "User created",
            Kind::TwoFactorReset => "2FA reset",
            Kind::EnforcementEnabled => "Require 2FA turned on",
            Kind::EnforcementDisabled => "Require 2FA turned off",
            Kind::EnforcementDeadlineChanged => "2FA deadline moved",
            Kind::GracePeriodChanged => "Grace period changed",
            Kind::ExemptionGranted => "Exempted from 2FA",
            Kind::ExemptionEnded => "Exemption from 2FA ended",
            Kind::UserImported => "User imported",
            Kind::InviteSent => "Invitation sent",
            Kind::InviteResent => "Invitation sent again",
            Kind::InviteRevoked => "Invitation revoked",
            Kind::InviteAccepted => "Invitation accepted",
            Kind::RoleChanged => "Role changed",
            Kind::UserDeactivated => "Account deactivated",
            Kind::UserReactivated => "Account reactivated",
            Kind::PasswordChanged => "Password changed",
            Kind::PasswordResetRequested => "Password reset link sent",
            Kind::PasswordReset => "Password reset by link",
            Kind::KeyAdded => "Security key added",
            Kind::KeyRenamed => "Security key renamed",
            Kind::KeyRemoved => "Security key removed",
            Kind::KeyCounterRegression => "Possibly copied security key refused",
            Kind::AuthenticatorRemoved => "Authenticator app removed (keys remain)",
            Kind::KeysRequiredEnabled => "Require a security key turned on",
            Kind::KeysRequiredDisabled => "Require a security key turned off",
            Kind::KeysRequiredDeadlineChanged => "Security key deadline moved",
        }
    }
}

/// Who did it.
#[derive(Debug, Clone)]
pub enum Actor {
    User {
        id: UserId,
        email: String,
    },
    /// Someone not (yet) signed in, e.g. a failed sign-in.
    Anonymous,
    /// Support staff acting on someone else's workspace.
    Staff {
        id: UserId,
        email: String,
    },
    /// An operator at the command line.
    Cli,
}

impl Actor {
    pub fn user(user: &crate::db::models::User) -> Actor {
        Actor::User {
            id: user.id.clone(),
            email: user.email.clone(),
        }
    }
}

/// An event about to be written.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub workspace_id: Option<WorkspaceId>,
    pub actor: Actor,
    /// The account affected: `(id, email)`; the id is absent for an unknown email.
    pub subject: Option<(Option<UserId>, String)>,
    pub ip: Option<String>,
    pub detail: String,
}

impl Event {
    /// An event a user caused on their own account.
    pub fn by_user(kind: Kind, user: &crate::db::models::User, ip: Option<String>) -> Event {
        Event {
            kind,
            workspace_id: Some(user.workspace_id.clone()),
            actor: Actor::user(user),
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

    /// An event on `subject`'s account caused by `actor` (an admin, staff, the CLI); it
    /// belongs to the subject's workspace, whose admins read it in their audit log.
    pub fn on_user(
        kind: Kind,
        actor: Actor,
        subject: &crate::db::models::User,
        ip: Option<String>,
    ) -> Event {
        Event {
            actor,
            ..Event::by_user(kind, subject, ip)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Event {
        self.detail = detail.into();
        self
    }

    pub fn record(self, conn: &mut AnyConnection) -> QueryResult<()> {
        AuditEvents::insert(conn, self.into_row(now()))
    }

    /// Records `events` in order, in as few statements as the backends allow.
    pub fn record_all(conn: &mut AnyConnection, events: Vec<Event>) -> QueryResult<()> {
        let now = now();
        AuditEvents::insert_many(conn, events.into_iter().map(|e| e.into_row(now)).collect())
    }

    /// `events` as a JSON array of rows named by their columns, for a statement that
    /// appends them itself (`TotpCredential::accept_sign_in_at_once`).
    pub fn rows_json(events: Vec<Event>) -> serde_json::Result<String> {
        let now = now();
        let rows: Vec<NewAuditEvent> = events.into_iter().map(|e| e.into_row(now)).collect();
        serde_json::to_string(&rows)
    }

    fn into_row(self, now: i64) -> NewAuditEvent {
        let (actor_id, actor_label, actor_kind) = match self.actor {
            Actor::User { id, email } => (Some(id), email, "user"),
            Actor::Staff { id, email } => (Some(id), email, "staff"),
            Actor::Anonymous => (None, "anonymous".to_owned(), "anonymous"),
            Actor::Cli => (None, "cli".to_owned(), "cli"),
        };
        let (subject_id, subject_label) = match self.subject {
            Some((id, label)) => (id, Some(label)),
            None => (None, None),
        };
        NewAuditEvent {
            created_at: now,
            workspace_id: self.workspace_id,
            actor_id,
            actor_label,
            actor_kind,
            subject_id,
            subject_label,
            kind: self.kind.as_str(),
            ip: self.ip,
            detail: self.detail,
        }
    }
}

/// A stored event, as the audit log page shows it.
pub use crate::db::models::{AuditCursor as Cursor, AuditEventRow as Row, AuditPage as Page};

/// Which of a workspace's events to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<Kind>,
    /// An email: events this member caused or that happened to them.
    pub member: Option<String>,
}

/// The page of `workspace_id`'s events at `cursor`, newest first.
pub fn page(
    conn: &mut AnyConnection,
    workspace_id: &str,
    filter: &Filter,
    cursor: Cursor,
    limit: i64,
) -> QueryResult<Page> {
    AuditEvents::page(
        conn,
        workspace_id,
        filter.kind.map(Kind::as_str),
        filter.member.as_deref(),
        cursor,
        limit,
    )
}
