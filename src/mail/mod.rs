//! Security emails, through a durable outbox.
//!
//! A change that users must hear about calls [`enqueue`] with the connection of the write
//! transaction that makes the change: the mail is rendered (askama, `templates/email/`,
//! text and HTML) and stored in `mail_outbox` then, so it exists exactly when the change
//! does. Nothing is sent inside a request; the request never waits for, or fails because
//! of, a mail server.
//!
//! ```ignore
//! // Inside the write transaction that records, say, the fifth failed second step:
//! mail::enqueue(conn, &Mail::SecondFactorFailures { to: &user.email, failures: 5 })?;
//! ```
//!
//! [`dispatch_due`] sends what is due, once: over SMTP (`SMTP_URL`) or as `.eml` files in
//! `DATA_DIR/mail/` (without `SMTP_URL`), through a [`Sender`]. The [`Worker`], started by
//! `Application`, calls it every `MAIL_POLL_INTERVAL_MS`; tests call it directly.
//! Invariants:
//! - A row is claimed before it is sent, by one atomic `UPDATE … WHERE claimed_until IS NULL
//!   OR claimed_until < now`; so with several instances on one database exactly one sends a
//!   given mail. The claim lasts [`CLAIM_SECONDS`], far longer than a send may take
//!   ([`SEND_TIMEOUT`]); an instance that dies mid-send leaves the row to be retried by
//!   another after the claim lapses (the one case where a mail can arrive twice, with the
//!   same Message-ID).
//! - A failed attempt is retried after `MAIL_RETRY_BASE_SECONDS × 2^(attempts-1)`, at most
//!   [`RETRY_CAP_SECONDS`]; after `MAIL_MAX_ATTEMPTS` attempts the row is marked failed
//!   (`failed_at`, `last_error`) and logged as an error; it is kept for an operator.
//! - The worker stops when told to (shut-down): it starts no new send after that, finishes
//!   the one in hand, and returns, so no database or network work outlives the server.
//! - Mails carry no secrets, codes or links: a link in a security email is what phishing
//!   imitates, so ours teach users never to follow one. The exceptions are mails the reader
//!   expects and cannot act on otherwise, whose link is the single-use token itself: the
//!   invitation (`Mail::Invite`) and the password-reset link someone asked for on
//!   `/login/forgot` (`Mail::PasswordResetLink`). Each says what the link is for, when it
//!   expires and what to do if it was not expected; its token is stored only as a hash,
//!   and the outbox keeps the rendered mail only until it is sent ([`carries_link`]).
//! - This module owns the data its mails need ([`ResetAuthor`], not the auth module's
//!   types): the auth and route modules call it, never the other way round.
//!
//! Inside: `message` renders a [`Mail`], `outbox` says how long claims and rows last (its
//! queries are `db::models::MailOutbox`),
//! `transport` reaches the SMTP server or the folder, `worker` sends.

mod message;
mod outbox;
mod transport;
mod worker;

use std::time::Duration;

use diesel::QueryResult;
use lettre::message::Mailbox;

use crate::db::models::User;
use crate::db::{AnyConnection, now};
use crate::domain::policy::RequirementKind;

pub use outbox::{CLAIM_SECONDS, prune};
pub use transport::{SEND_TIMEOUT, Security, Sender, SmtpTarget};
pub use worker::{Worker, dispatch_due};

/// The longest wait between two attempts of one mail.
pub const RETRY_CAP_SECONDS: i64 = 60 * 60;

/// A security email to send. `to` is the account's email address.
pub enum Mail<'a> {
    /// The user turned two-factor sign-in on.
    TwoFactorEnabled { to: &'a str },
    /// The user turned two-factor sign-in off.
    TwoFactorDisabled { to: &'a str },
    /// The user turned the authenticator app off; their security keys keep 2FA on.
    AuthenticatorRemoved { to: &'a str },
    /// An admin, support staff or the command line removed the user's second factor;
    /// `removed` names what ("authenticator app and 2 security keys").
    TwoFactorReset {
        to: &'a str,
        by: ResetAuthor<'a>,
        removed: &'a str,
    },
    /// A recovery code was spent; `remaining` unused ones are left.
    RecoveryCodeUsed { to: &'a str, remaining: i64 },
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesRegenerated { to: &'a str },
    /// The member's workspace now requires `requirement` (2FA, or a security key or
    /// passkey) and they lack it; `deadline` is when they will be held at setting it up
    /// (Unix seconds).
    EnforcementOn {
        to: &'a str,
        workspace: &'a str,
        deadline: i64,
        requirement: RequirementKind,
    },
    /// The right password was followed by `failures` failed second-factor attempts in a
    /// row: the password may be compromised. For the per-account lockout to send.
    SecondFactorFailures { to: &'a str, failures: i64 },
    /// An invitation to join `workspace` as `role`, by `invited_by`: one of the two mails
    /// with a link (`link`, absolute under `PUBLIC_URL`), valid until `expires_at`.
    Invite {
        to: &'a str,
        workspace: &'a str,
        role: &'a str,
        invited_by: &'a str,
        link: &'a str,
        expires_at: i64,
    },
    /// An admin (`by`) changed what the member's account may do in `workspace`.
    Membership {
        to: &'a str,
        workspace: &'a str,
        by: &'a str,
        change: MembershipChange,
    },
    /// One of the user's security keys (`name`) was added or removed, or refused as a
    /// possible copy.
    SecurityKey {
        to: &'a str,
        name: &'a str,
        change: KeyChange,
    },
    /// The user changed their password while signed in.
    PasswordChanged { to: &'a str },
    /// The password was set anew through a reset link.
    PasswordReset { to: &'a str },
    /// The other mail with a link: the reset link someone asked for on `/login/forgot`;
    /// `link` (absolute under `PUBLIC_URL`) works until `expires_at` (Unix seconds),
    /// `minutes` from when it was made.
    PasswordResetLink {
        to: &'a str,
        link: &'a str,
        expires_at: i64,
        minutes: i64,
    },
}

/// What happened to one of the user's security keys, as [`Mail::SecurityKey`] tells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// Registered; `passkey`: it can also sign in without the password.
    Added {
        passkey: bool,
    },
    Removed,
    /// An answer whose signature counter went backwards was refused: the key may have been
    /// copied.
    CounterRegression,
}

/// What an admin changed about a member, as [`Mail::Membership`] tells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// The member's role is now `Role` (member or admin).
    Role(crate::domain::Role),
    Deactivated,
    Reactivated,
}

/// Mail kinds whose body carries a single-use link: their bodies are blanked once the
/// mail is sent or given up on, so the outbox holds the token only while the mail waits.
const LINK_KINDS: [&str; 2] = ["invite", "password_reset_link"];

/// Whether a mail of `kind` carries a link (see [`LINK_KINDS`]).
pub(crate) fn carries_link(kind: &str) -> bool {
    LINK_KINDS.contains(&kind)
}

/// Who reset a user's second factor, as the mail tells them.
#[derive(Debug, Clone, Copy)]
pub enum ResetAuthor<'a> {
    /// An admin of the user's workspace.
    Admin { email: &'a str },
    /// Support staff, who must give a reason.
    Staff { email: &'a str, reason: &'a str },
    /// An operator at the command line, with a reason.
    Cli { reason: &'a str },
}

/// Renders `mail` and stores it in the outbox. Call it inside the write transaction that
/// makes the change the mail reports: if that rolls back, no mail exists.
///
/// (A template that fails to render is reported as a diesel serialization error so that
/// every transaction's own error type takes it as is; askama only fails on a broken
/// `Display`, never on data.)
pub fn enqueue(conn: &mut AnyConnection, mail: &Mail<'_>) -> QueryResult<()> {
    let created = now();
    let rendered = mail
        .render(created)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let id =
        crate::db::new_id().map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    outbox::insert(conn, &id, mail.kind(), mail.to(), rendered, created)
}

/// Tells every member of `workspace_id` who lacks what `requirement` asks (2FA, or a
/// security key) that it is now required, with the deadline. Call in the transaction that
/// turns the requirement on.
pub fn enqueue_enforcement_on(
    conn: &mut AnyConnection,
    workspace_id: &str,
    workspace_name: &str,
    deadline: i64,
    requirement: RequirementKind,
) -> QueryResult<usize> {
    let without = match requirement {
        RequirementKind::TwoFactor => User::emails_without_second_factor(conn, workspace_id)?,
        RequirementKind::SecurityKey => User::emails_without_security_key(conn, workspace_id)?,
    };
    for to in &without {
        enqueue(
            conn,
            &Mail::EnforcementOn {
                to,
                workspace: workspace_name,
                deadline,
                requirement,
            },
        )?;
    }
    Ok(without.len())
}

/// Where mail goes and how hard the worker tries.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `SMTP_URL`; `None`: `.eml` files in `DATA_DIR/mail/`.
    pub smtp: Option<SmtpTarget>,
    /// `MAIL_FROM`.
    pub from: Mailbox,
    /// `MAIL_POLL_INTERVAL_MS`: how often each instance looks for due mail.
    pub poll_interval: Duration,
    /// `MAIL_RETRY_BASE_SECONDS`: the wait after the first failed attempt; it doubles.
    pub retry_base_seconds: i64,
    /// `MAIL_MAX_ATTEMPTS`: attempts before a mail is given up.
    pub max_attempts: i64,
}

impl MailSettings {
    /// Builds the settings from the raw values; problems are returned with the key named,
    /// beside usable fallbacks (the caller refuses to start if there are any).
    pub fn from_parts(
        smtp_url: Option<String>,
        mail_from: Option<String>,
        poll_interval_ms: u64,
        retry_base_seconds: u64,
        max_attempts: u64,
    ) -> (MailSettings, Vec<String>) {
        let mut problems = Vec::new();
        let smtp = smtp_url.and_then(|u| SmtpTarget::parse(&u).map_err(|e| problems.push(e)).ok());
        let fallback = || {
            Mailbox::new(
                Some("Tessera".into()), // A constant known to be valid.
                lettre::Address::new_dangerous("tessera", "localhost"),
            )
        };
        let from = match mail_from {
            Some(text) => text.parse::<Mailbox>().unwrap_or_else(|e| {
                problems.push(format!(
                    "MAIL_FROM must be an address, optionally with a name: \"Tessera <security@example.com>\" ({e})"
                ));
                fallback()
            }),
            None => {
                if smtp.is_some() {
                    problems.push(
                        "MAIL_FROM is required with SMTP_URL, e.g. MAIL_FROM=\"Tessera <security@example.com>\" (an address your mail server may send from)"
                            .into(),
                    );
                }
                fallback()
            }
        };
        (
            MailSettings {
                smtp,
                from,
                poll_interval: Duration::from_millis(poll_interval_ms),
                retry_base_seconds: retry_base_seconds as i64,
                max_attempts: max_attempts as i64,
            },
            problems,
        )
    }

    /// Seconds to wait after the `attempts`-th failure: doubling from the base, capped.
    pub fn retry_delay(&self, attempts: i64) -> i64 {
        let doublings = (attempts - 1).clamp(0, 30) as u32;
        self.retry_base_seconds
            .saturating_mul(1_i64 << doublings)
            .min(RETRY_CAP_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: Option<&str>, from: Option<&str>) -> (MailSettings, Vec<String>) {
        MailSettings::from_parts(url.map(Into::into), from.map(Into::into), 5000, 60, 10)
    }

    #[test]
    fn smtp_needs_a_sender_address() {
        let (_, problems) = settings(Some("smtp://localhost"), None);
        assert!(problems[0].contains("MAIL_FROM"), "{problems:?}");
        let (_, problems) = settings(None, Some("not an address"));
        assert!(problems[0].contains("MAIL_FROM"), "{problems:?}");
        let (s, problems) = settings(Some("smtp://localhost"), Some("Tessera <sec@example.com>"));
        assert!(problems.is_empty());
        assert_eq!(s.from.email.to_string(), "sec@example.com");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let (s, _) = settings(None, None);
        let delays: Vec<i64> = (1..=9).map(|n| s.retry_delay(n)).collect();
        assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(s.retry_delay(1000), RETRY_CAP_SECONDS);
    }
}
