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
//! [`Outbox::run`], started by `Application`, is the worker: every `MAIL_POLL_INTERVAL_MS`
//! it sends the due rows over SMTP (`SMTP_URL`) or writes them as `.eml` files into
//! `DATA_DIR/mail/` (the default), and marks them sent. Invariants:
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
//!   imitates, so ours teach users never to follow one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use askama::Template;
use diesel::prelude::*;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::auth::reset::ResetBy;
use crate::db::schema::{mail_outbox, totp_credentials, users};
use crate::db::{AnyConnection, Db, DbError, PoolError, now};
use crate::words::date_time;

/// How long a claimed row belongs to the instance that claimed it.
pub const CLAIM_SECONDS: i64 = 5 * 60;
/// The longest one send may take, connection to QUIT.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait between two attempts of one mail.
pub const RETRY_CAP_SECONDS: i64 = 60 * 60;
/// Rows taken per query; the worker keeps going until nothing is due.
const BATCH: i64 = 20;
/// Sent mail is deleted after a week, given-up mail after 30 days: the rows hold personal
/// data (addresses, reasons), and the audit log is the lasting record.
const KEEP_SENT_SECONDS: i64 = 7 * 24 * 3600;
const KEEP_FAILED_SECONDS: i64 = 30 * 24 * 3600;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A security email to send. `to` is the account's email address.
pub enum Mail<'a> {
    /// The user turned two-factor sign-in on.
    TwoFactorEnabled { to: &'a str },
    /// The user turned two-factor sign-in off.
    TwoFactorDisabled { to: &'a str },
    /// An admin, support staff or the command line removed the user's second factor.
    TwoFactorReset { to: &'a str, by: &'a ResetBy<'a> },
    /// A recovery code was spent; `remaining` unused ones are left.
    RecoveryCodeUsed { to: &'a str, remaining: i64 },
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesRegenerated { to: &'a str },
    /// The member's workspace now requires 2FA and they have none; `deadline` is when
    /// they will be held at enrolment (Unix seconds).
    EnforcementOn {
        to: &'a str,
        workspace: &'a str,
        deadline: i64,
    },
    /// The right password was followed by `failures` failed second-factor attempts in a
    /// row: the password may be compromised. For the per-account lockout to send.
    SecondFactorFailures { to: &'a str, failures: i64 },
}

impl Mail<'_> {
    /// Stored with the row, for logs and operators.
    pub fn kind(&self) -> &'static str {
        match self {
            Mail::TwoFactorEnabled { .. } => "two_factor_enabled",
            Mail::TwoFactorDisabled { .. } => "two_factor_disabled",
            Mail::TwoFactorReset { .. } => "two_factor_reset",
            Mail::RecoveryCodeUsed { .. } => "recovery_code_used",
            Mail::RecoveryCodesRegenerated { .. } => "recovery_codes_regenerated",
            Mail::EnforcementOn { .. } => "enforcement_on",
            Mail::SecondFactorFailures { .. } => "second_factor_failures",
        }
    }

    fn to(&self) -> &str {
        match self {
            Mail::TwoFactorEnabled { to }
            | Mail::TwoFactorDisabled { to }
            | Mail::TwoFactorReset { to, .. }
            | Mail::RecoveryCodeUsed { to, .. }
            | Mail::RecoveryCodesRegenerated { to }
            | Mail::EnforcementOn { to, .. }
            | Mail::SecondFactorFailures { to, .. } => to,
        }
    }

    fn subject(&self) -> String {
        match self {
            Mail::TwoFactorEnabled { .. } => "Two-factor sign-in was turned on".into(),
            Mail::TwoFactorDisabled { .. } => "Two-factor sign-in was turned off".into(),
            Mail::TwoFactorReset { .. } => "Your two-factor sign-in was reset".into(),
            Mail::RecoveryCodeUsed { remaining, .. } => {
                format!("A recovery code was used ({remaining} left)")
            }
            Mail::RecoveryCodesRegenerated { .. } => "You have new recovery codes".into(),
            Mail::EnforcementOn { workspace, .. } => {
                format!("{workspace} now requires two-factor sign-in")
            }
            Mail::SecondFactorFailures { .. } => {
                "Your password was used, then the second step failed".into()
            }
        }
    }

    /// What the templates show.
    fn facts(&self) -> Facts {
        let mut facts = Facts {
            subject: self.subject(),
            to: self.to().to_owned(),
            at: date_time(now()),
            ..Facts::default()
        };
        match self {
            Mail::TwoFactorReset { by, .. } => {
                let (who, reason) = match by {
                    ResetBy::Admin(admin) => (
                        format!("by {}, an admin of your workspace", admin.email),
                        None,
                    ),
                    ResetBy::Staff { staff, reason } => (
                        format!("by {}, of Tessera support", staff.email),
                        Some(*reason),
                    ),
                    ResetBy::Cli { reason } => (
                        "by an operator of this Tessera installation, from the command line"
                            .to_owned(),
                        Some(*reason),
                    ),
                };
                facts.who = who;
                facts.reason = reason.map(str::to_owned);
            }
            Mail::RecoveryCodeUsed { remaining, .. } => facts.remaining = *remaining,
            Mail::EnforcementOn {
                workspace,
                deadline,
                ..
            } => {
                facts.workspace = (*workspace).to_owned();
                facts.deadline = date_time(*deadline);
            }
            Mail::SecondFactorFailures { failures, .. } => facts.failures = *failures,
            Mail::TwoFactorEnabled { .. }
            | Mail::TwoFactorDisabled { .. }
            | Mail::RecoveryCodesRegenerated { .. } => {}
        }
        facts
    }

    /// `(text, html)`.
    fn render(&self) -> askama::Result<(String, String)> {
        let f = &self.facts();
        Ok(match self {
            Mail::TwoFactorEnabled { .. } => {
                (EnabledText { f }.render()?, EnabledHtml { f }.render()?)
            }
            Mail::TwoFactorDisabled { .. } => {
                (DisabledText { f }.render()?, DisabledHtml { f }.render()?)
            }
            Mail::TwoFactorReset { .. } => (ResetText { f }.render()?, ResetHtml { f }.render()?),
            Mail::RecoveryCodeUsed { .. } => {
                (CodeUsedText { f }.render()?, CodeUsedHtml { f }.render()?)
            }
            Mail::RecoveryCodesRegenerated { .. } => (
                RegeneratedText { f }.render()?,
                RegeneratedHtml { f }.render()?,
            ),
            Mail::EnforcementOn { .. } => (
                EnforcementText { f }.render()?,
                EnforcementHtml { f }.render()?,
            ),
            Mail::SecondFactorFailures { .. } => {
                (FailuresText { f }.render()?, FailuresHtml { f }.render()?)
            }
        })
    }
}

#[derive(Default)]
struct Facts {
    subject: String,
    to: String,
    /// When it happened, in words (UTC).
    at: String,
    who: String,
    reason: Option<String>,
    remaining: i64,
    workspace: String,
    deadline: String,
    failures: i64,
}

#[derive(Template)]
#[template(path = "email/two_factor_enabled.txt")]
struct EnabledText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/two_factor_enabled.html")]
struct EnabledHtml<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/two_factor_disabled.txt")]
struct DisabledText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/two_factor_disabled.html")]
struct DisabledHtml<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/two_factor_reset.txt")]
struct ResetText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/two_factor_reset.html")]
struct ResetHtml<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/recovery_code_used.txt")]
struct CodeUsedText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/recovery_code_used.html")]
struct CodeUsedHtml<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/recovery_codes_regenerated.txt")]
struct RegeneratedText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/recovery_codes_regenerated.html")]
struct RegeneratedHtml<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/enforcement_on.txt")]
struct EnforcementText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/enforcement_on.html")]
struct EnforcementHtml<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/second_factor_failures.txt")]
struct FailuresText<'a> {
    f: &'a Facts,
}
#[derive(Template)]
#[template(path = "email/second_factor_failures.html")]
struct FailuresHtml<'a> {
    f: &'a Facts,
}

/// Renders `mail` and stores it in the outbox. Call it inside the write transaction that
/// makes the change the mail reports: if that rolls back, no mail exists.
///
/// (A template that fails to render is reported as a diesel serialization error so that
/// every transaction's own error type takes it as is; askama only fails on a broken
/// `Display`, never on data.)
pub fn enqueue(conn: &mut AnyConnection, mail: &Mail<'_>) -> QueryResult<()> {
    let (text, html) = mail
        .render()
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let id =
        crate::db::new_id().map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let created = now();
    diesel::insert_into(mail_outbox::table)
        .values((
            mail_outbox::id.eq(id),
            mail_outbox::kind.eq(mail.kind()),
            mail_outbox::recipient.eq(mail.to()),
            mail_outbox::subject.eq(mail.subject()),
            mail_outbox::body_text.eq(text),
            mail_outbox::body_html.eq(html),
            mail_outbox::created_at.eq(created),
            mail_outbox::next_attempt_at.eq(created),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Tells every member of `workspace_id` without 2FA that it is now required, with the
/// deadline. Call in the transaction that turns enforcement on.
pub fn enqueue_enforcement_on(
    conn: &mut AnyConnection,
    workspace_id: &str,
    workspace_name: &str,
    deadline: i64,
) -> QueryResult<usize> {
    let without: Vec<String> = users::table
        .left_join(totp_credentials::table)
        .filter(users::workspace_id.eq(workspace_id))
        .filter(totp_credentials::user_id.nullable().is_null())
        .order(users::email)
        .select(users::email)
        .load(conn)?;
    for to in &without {
        enqueue(
            conn,
            &Mail::EnforcementOn {
                to,
                workspace: workspace_name,
                deadline,
            },
        )?;
    }
    Ok(without.len())
}

// ---------------------------------------------------------------------------------------
// Settings

/// How to reach the SMTP server, from `SMTP_URL`.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    password: Option<SecretString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Tls,
    /// `smtp://…?tls=starttls`: plain connection upgraded with STARTTLS, which the server
    /// must offer (port 587 by default).
    StartTls,
    /// `smtp://`: no encryption, for a relay on this host or a trusted network (port 25).
    Plain,
}

/// Written by hand: the password must never be printed.
impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl SmtpTarget {
    /// Parses `SMTP_URL`. Errors never repeat the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<SmtpTarget, String> {
        let url = url::Url::parse(text).map_err(|e| {
            format!("SMTP_URL is not a URL ({e}); expected smtp://[user:password@]host[:port][?tls=starttls] or smtps://[user:password@]host[:port]")
        })?;
        let mut security = match url.scheme() {
            "smtps" => Security::Tls,
            "smtp" => Security::Plain,
            other => {
                return Err(format!(
                    "SMTP_URL must start with smtp:// or smtps:// (got {other}://)"
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("SMTP_URL names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), security) {
                ("tls", "starttls", Security::Plain) => security = Security::StartTls,
                ("tls", "none", Security::Plain) => {}
                ("tls", _, Security::Tls) => {
                    return Err(
                        "SMTP_URL: smtps:// is TLS already; tls= applies to smtp:// only".into(),
                    );
                }
                ("tls", other, _) => {
                    return Err(format!(
                        "SMTP_URL: tls must be starttls or none (got {other:?})"
                    ));
                }
                (other, _, _) => {
                    return Err(format!(
                        "SMTP_URL: unknown parameter {other:?} (only tls= is understood)"
                    ));
                }
            }
        }
        let port = url.port().unwrap_or(match security {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::Plain => 25,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| {
                    "SMTP_URL: the user name or password is not valid UTF-8 once decoded".to_owned()
                })
        };
        let username = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(decode)
            .transpose()?;
        let password = url
            .password()
            .map(decode)
            .transpose()?
            .map(SecretString::from);
        if password.is_some() && username.is_none() {
            return Err("SMTP_URL has a password but no user name".into());
        }
        if security == Security::Plain && username.is_some() && !is_loopback(&host) {
            return Err(
                "SMTP_URL would send the SMTP password unencrypted to another host: use smtps:// or add ?tls=starttls"
                    .into(),
            );
        }
        Ok(SmtpTarget {
            host,
            port,
            security,
            username,
            password,
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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

// ---------------------------------------------------------------------------------------
// The worker

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// The sending side: built at start (a bad setting stops the start), run by `Application`.
pub struct Outbox {
    transport: Transport,
    settings: MailSettings,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mail_outbox)]
struct Row {
    id: String,
    kind: String,
    recipient: String,
    subject: String,
    body_text: String,
    body_html: String,
    created_at: i64,
    attempts: i64,
}

/// Why one attempt did not deliver.
struct Failure {
    message: String,
    /// Trying again cannot help (the stored mail cannot be made into a message).
    permanent: bool,
}

impl Outbox {
    /// Prepares the transport and says where mail goes. `hello_name` is how this server
    /// introduces itself to the SMTP server (the PUBLIC_URL host, or `localhost`).
    pub fn new(
        settings: &MailSettings,
        data_dir: &std::path::Path,
        hello_name: &str,
    ) -> anyhow::Result<Outbox> {
        use anyhow::Context;
        let transport = match &settings.smtp {
            Some(target) => {
                let builder = match target.security {
                    Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&target.host)?,
                    Security::StartTls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&target.host)?
                    }
                    Security::Plain => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.host)
                    }
                };
                let mut builder = builder
                    .port(target.port)
                    .timeout(Some(SEND_TIMEOUT / 2))
                    .hello_name(ClientId::Domain(hello_name.to_owned()));
                if let (Some(user), Some(password)) = (&target.username, &target.password) {
                    builder = builder.credentials(Credentials::new(
                        user.clone(),
                        password.expose_secret().to_owned(),
                    ));
                }
                tracing::info!(
                    host = %target.host,
                    port = target.port,
                    security = ?target.security,
                    authenticated = target.username.is_some(),
                    from = %settings.from,
                    "security emails are sent over SMTP (SMTP_URL)"
                );
                Transport::Smtp(builder.build())
            }
            None => {
                let dir = data_dir.join("mail");
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("could not create {}, where mail is written", dir.display())
                })?;
                tracing::info!(
                    folder = %dir.display(),
                    "SMTP_URL is not set: security emails are written as .eml files to this folder instead of being sent"
                );
                Transport::Files(dir)
            }
        };
        Ok(Outbox {
            transport,
            settings: settings.clone(),
        })
    }

    /// Sends due mail until `stop` turns true (or its sender is gone), then returns
    /// without starting another send.
    pub async fn run(self, db: Db, mut stop: watch::Receiver<bool>) {
        let mut pruned = Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            match self.deliver_due(&db, &stop).await {
                Ok(()) => {}
                // Shut-down closed the pool under us: nothing more to do.
                Err(DbError::Pool(PoolError::Closed)) => return,
                Err(e) => tracing::warn!(error = %e, "the mail outbox could not be read"),
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                if let Err(e) = db.run(prune).await {
                    tracing::warn!(error = %e, "old outbox rows could not be removed");
                }
            }
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    async fn deliver_due(&self, db: &Db, stop: &watch::Receiver<bool>) -> Result<(), DbError> {
        loop {
            let due = db
                .run(|conn| {
                    let now = now();
                    mail_outbox::table
                        .filter(mail_outbox::sent_at.is_null())
                        .filter(mail_outbox::failed_at.is_null())
                        .filter(mail_outbox::next_attempt_at.le(now))
                        .filter(
                            mail_outbox::claimed_until
                                .is_null()
                                .or(mail_outbox::claimed_until.lt(now)),
                        )
                        .order((mail_outbox::next_attempt_at, mail_outbox::id))
                        .select(mail_outbox::id)
                        .limit(BATCH)
                        .load::<String>(conn)
                        .map_err(DbError::from)
                })
                .await?;
            let full = due.len() as i64 == BATCH;
            for id in due {
                if *stop.borrow() {
                    return Ok(());
                }
                let Some((row, lease)) = db.run(move |conn| claim(conn, &id)).await? else {
                    continue; // another instance has it
                };
                let outcome = self.send(&row).await;
                self.record(db, row, lease, outcome).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn send(&self, row: &Row) -> Result<(), Failure> {
        let message = self.message(row).map_err(|message| Failure {
            message,
            permanent: true,
        })?;
        let temporary = |message: String| Failure {
            message,
            permanent: false,
        };
        match &self.transport {
            Transport::Smtp(smtp) => {
                match tokio::time::timeout(SEND_TIMEOUT, smtp.send(message)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(temporary(format!("SMTP: {e}"))),
                    Err(_) => Err(temporary(format!(
                        "SMTP: no answer within {SEND_TIMEOUT:?}"
                    ))),
                }
            }
            Transport::Files(dir) => {
                let bytes = message.formatted();
                let path = dir.join(format!("{}.eml", row.id));
                let partial = dir.join(format!(".{}.eml.partial", row.id));
                // Written aside, then renamed: a reader never sees half a message.
                actix_web::web::block(move || {
                    std::fs::write(&partial, bytes)?;
                    std::fs::rename(&partial, &path)
                })
                .await
                .map_err(|e| temporary(e.to_string()))?
                .map_err(|e| temporary(format!("writing the .eml file: {e}")))
            }
        }
    }

    fn message(&self, row: &Row) -> Result<Message, String> {
        let to: Mailbox = row
            .recipient
            .parse()
            .map_err(|e| format!("the recipient is not a usable address: {e}"))?;
        Message::builder()
            .from(self.settings.from.clone())
            .to(to)
            .subject(row.subject.clone())
            // Fixed per outbox row, so a mail delivered twice (an instance died between
            // sending and recording) is recognisably the same message.
            .message_id(Some(format!(
                "<{}@{}>",
                row.id,
                self.settings.from.email.domain()
            )))
            .date(std::time::UNIX_EPOCH + Duration::from_secs(row.created_at.max(0) as u64))
            .multipart(MultiPart::alternative_plain_html(
                row.body_text.clone(),
                row.body_html.clone(),
            ))
            .map_err(|e| format!("the message could not be built: {e}"))
    }

    async fn record(
        &self,
        db: &Db,
        row: Row,
        lease: i64,
        outcome: Result<(), Failure>,
    ) -> Result<(), DbError> {
        let attempts = row.attempts + 1;
        let kind = row.kind.clone();
        let id = row.id.clone();
        let now = now();
        /// What this attempt leaves the row as.
        enum Then {
            Sent,
            GivenUp(String),
            Retry { delay: i64, error: String },
        }
        let then = match outcome {
            Ok(()) => Then::Sent,
            Err(f) if f.permanent || attempts >= self.settings.max_attempts => {
                Then::GivenUp(f.message)
            }
            Err(f) => Then::Retry {
                delay: self.settings.retry_delay(attempts),
                error: f.message,
            },
        };
        // One update for every outcome: a pending row has neither time set, so setting
        // the one that applies (and NULL for the other) is exact.
        let (sent_at, failed_at, next_attempt_at, error) = match &then {
            Then::Sent => (Some(now), None, now, None),
            Then::GivenUp(error) => (None, Some(now), now, Some(error.clone())),
            Then::Retry { delay, error } => (None, None, now + delay, Some(error.clone())),
        };
        db.run(move |conn| {
            diesel::update(owned(&id, lease))
                .set((
                    mail_outbox::sent_at.eq(sent_at),
                    mail_outbox::failed_at.eq(failed_at),
                    mail_outbox::next_attempt_at.eq(next_attempt_at),
                    mail_outbox::attempts.eq(attempts),
                    mail_outbox::claimed_until.eq(None::<i64>),
                    mail_outbox::last_error.eq(error),
                ))
                .execute(conn)
                .map_err(DbError::from)
        })
        .await?;
        match then {
            Then::Sent => tracing::info!(mail = %row.id, %kind, attempts, "security email sent"),
            Then::GivenUp(error) => tracing::error!(
                mail = %row.id,
                %kind,
                attempts,
                %error,
                "gave up on a security email; it stays in mail_outbox marked failed"
            ),
            Then::Retry { delay, error } => tracing::warn!(
                mail = %row.id,
                %kind,
                attempts,
                retry_in_seconds = delay,
                %error,
                "a security email was not delivered; it will be retried"
            ),
        }
        Ok(())
    }
}

type OwnedRow<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<mail_outbox::table, diesel::dsl::Eq<mail_outbox::id, &'a str>>,
    diesel::dsl::Eq<mail_outbox::claimed_until, Option<i64>>,
>;

/// The row `id` while this worker's claim (`lease`) on it holds.
fn owned(id: &str, lease: i64) -> OwnedRow<'_> {
    mail_outbox::table
        .filter(mail_outbox::id.eq(id))
        .filter(mail_outbox::claimed_until.eq(Some(lease)))
}

/// Claims the row for this worker if it is still pending, due and unclaimed: of several
/// instances, exactly one gets it. Returns it with the claim's expiry.
fn claim(conn: &mut AnyConnection, id: &str) -> Result<Option<(Row, i64)>, DbError> {
    let now = now();
    let lease = now + CLAIM_SECONDS;
    let claimed = diesel::update(
        mail_outbox::table
            .filter(mail_outbox::id.eq(id))
            .filter(mail_outbox::sent_at.is_null())
            .filter(mail_outbox::failed_at.is_null())
            .filter(mail_outbox::next_attempt_at.le(now))
            .filter(
                mail_outbox::claimed_until
                    .is_null()
                    .or(mail_outbox::claimed_until.lt(now)),
            ),
    )
    .set(mail_outbox::claimed_until.eq(lease))
    .execute(conn)?;
    if claimed != 1 {
        return Ok(None);
    }
    let row = mail_outbox::table
        .find(id)
        .select(Row::as_select())
        .first(conn)?;
    Ok(Some((row, lease)))
}

fn prune(conn: &mut AnyConnection) -> Result<usize, DbError> {
    let now = now();
    let sent =
        diesel::delete(mail_outbox::table.filter(mail_outbox::sent_at.lt(now - KEEP_SENT_SECONDS)))
            .execute(conn)?;
    let failed = diesel::delete(
        mail_outbox::table.filter(mail_outbox::failed_at.lt(now - KEEP_FAILED_SECONDS)),
    )
    .execute(conn)?;
    Ok(sent + failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: Option<&str>, from: Option<&str>) -> (MailSettings, Vec<String>) {
        MailSettings::from_parts(url.map(Into::into), from.map(Into::into), 5000, 60, 10)
    }

    #[test]
    fn smtp_urls_choose_security_and_default_ports() {
        let t = SmtpTarget::parse("smtps://mailer:s%40cret@mail.example.com").unwrap();
        assert_eq!((t.security, t.port), (Security::Tls, 465));
        assert_eq!(t.username.as_deref(), Some("mailer"));
        assert_eq!(t.password.as_ref().unwrap().expose_secret(), "s@cret");
        let t = SmtpTarget::parse("smtp://u:p@mail.example.com?tls=starttls").unwrap();
        assert_eq!((t.security, t.port), (Security::StartTls, 587));
        let t = SmtpTarget::parse("smtp://localhost:2525").unwrap();
        assert_eq!(
            (t.security, t.port, t.host.as_str()),
            (Security::Plain, 2525, "localhost")
        );
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_the_password() {
        for url in [
            "http://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com?tls=maybe",
            "smtps://u:hunter2@mail.example.com?tls=starttls",
            "smtp://u:hunter2@mail.example.com?tsl=starttls",
        ] {
            let err = SmtpTarget::parse(url).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        // Plain with a password is fine to this host only.
        assert!(SmtpTarget::parse("smtp://u:p@127.0.0.1:25").is_ok());
        let printed = format!("{:?}", SmtpTarget::parse("smtps://u:hunter2@h").unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
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

    #[test]
    fn every_mail_renders_in_text_and_html_without_links() {
        let admin = crate::db::models::User {
            id: "a".into(),
            workspace_id: "w".into(),
            email: "boss@example.com".into(),
            name: String::new(),
            role: "admin".into(),
            is_staff: false,
            password_hash: String::new(),
            created_at: 0,
            last_sign_in_at: None,
            session_epoch: 0,
            two_factor_reset_at: None,
            second_factor_failures: 0,
            second_factor_locked_until: None,
        };
        let by = ResetBy::Admin(&admin);
        let to = "ada@example.com";
        let mails = [
            Mail::TwoFactorEnabled { to },
            Mail::TwoFactorDisabled { to },
            Mail::TwoFactorReset { to, by: &by },
            Mail::RecoveryCodeUsed { to, remaining: 1 },
            Mail::RecoveryCodesRegenerated { to },
            Mail::EnforcementOn {
                to,
                workspace: "Acme <Ltd>",
                deadline: 1_795_305_600,
            },
            Mail::SecondFactorFailures { to, failures: 5 },
        ];
        for mail in &mails {
            let (text, html) = mail.render().unwrap();
            for body in [&text, &html] {
                assert!(body.contains(to), "{}: {body}", mail.kind());
                assert!(!body.contains("http"), "{}: {body}", mail.kind());
                assert!(!body.contains("href"), "{}: {body}", mail.kind());
            }
        }
        let (text, html) = mails[2].render().unwrap();
        assert!(
            text.contains("boss@example.com, an admin of your workspace"),
            "{text}"
        );
        assert!(html.contains("boss@example.com"));
        let (text, _) = mails[3].render().unwrap();
        assert!(text.contains("1 unused code is left"), "{text}");
        let (text, html) = mails[5].render().unwrap();
        assert!(
            text.contains("Acme <Ltd>") && text.contains("22 November 2026"),
            "{text}"
        );
        assert!(
            html.contains("Acme &#60;Ltd&#62;") || html.contains("Acme &lt;Ltd&gt;"),
            "{html}"
        );
    }
}
