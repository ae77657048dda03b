//! The command line: `tessera serve` (the default) and the admin commands.
//!
//! Passwords are read from standard input (without echo on a terminal), never from
//! arguments, which other users of the machine can see in the process list.

use std::fmt;
use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::{Actor, Event, Kind};
use crate::auth::key_rotation::{
    Census, DEFAULT_BATCH, Role as KeyRole, Rotation, RotationError, rotate,
};
use crate::auth::password::PasswordHasher;
use crate::auth::reset::{ResetBy, ResetError, reset_second_factor};
use crate::auth::secret_box::{IfNoKey, Keyring};
use crate::config::Settings;
use crate::db::models::{NewUser, User, Workspace, is_unique_violation};
use crate::db::{Db, now, write_transaction};
use crate::domain::{
    DisplayName, Email, NewPassword, PasswordOwner, Reason, Role, Slug, WorkspaceName,
};

#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about = "Sign-in with a password and a second factor."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a workspace.
    CreateWorkspace {
        /// The name people see, e.g. "Acme Ltd".
        #[arg(long)]
        name: String,
        /// The short name: lower-case letters, digits and dashes, e.g. "acme".
        #[arg(long)]
        slug: String,
    },
    /// Create a user; the password is read from standard input.
    CreateUser {
        /// The workspace's short name.
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        /// member or admin.
        #[arg(long, default_value = "member")]
        role: String,
        /// Make the user support staff (2FA always required).
        #[arg(long)]
        staff: bool,
        /// The person's name (optional).
        #[arg(long, default_value = "")]
        name: String,
        /// A public demo account: it signs in, but its password, second factors and
        /// recovery codes cannot be changed (nor reset by mail), and no workspace policy
        /// holds it at enrolment. Cannot be support staff.
        #[arg(long, conflicts_with = "staff")]
        demo: bool,
    },
    /// Remove a user's 2FA (authenticator, security keys and recovery codes) and end all of their
    /// sessions: the runbook for a locked-out admin. Audited as "cli" with the reason.
    #[command(name = "reset-2fa")]
    ResetTwoFactor {
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// Why, for the workspace's audit log (e.g. a ticket number).
        #[arg(long)]
        reason: String,
    },
    /// Re-encrypt every stored TOTP secret under ENCRYPTION_KEY, opening them with the keys
    /// of ENCRYPTION_KEYS_PREVIOUS. Safe while servers run; run it again if interrupted.
    /// Changes nothing if any secret cannot be decrypted.
    RotateKey {
        /// Secrets re-encrypted per transaction.
        #[arg(long, default_value_t = DEFAULT_BATCH,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
    /// Report how many stored secrets each encryption key protects and whether all
    /// decrypt; exits non-zero if any does not.
    CheckKeys,
    /// Import users from a JSON Lines file (one user per line; see the README).
    Import {
        #[arg(long)]
        file: std::path::PathBuf,
        /// What to do with an email that already has an account.
        #[arg(long, value_enum, default_value = "fail")]
        on_conflict: crate::import::OnConflict,
    },
}

/// Runs one admin command to completion.
pub fn run(settings: &Settings, command: Command) -> anyhow::Result<()> {
    let db = Db::connect(&settings.database_url, 2)?;
    match command {
        Command::Serve => unreachable_serve(),
        Command::Migrate => {
            let applied = db.migrate()?;
            if applied.is_empty() {
                println!("The database is up to date.");
            } else {
                println!(
                    "Applied {} migration(s): {}",
                    applied.len(),
                    applied.join(", ")
                );
            }
            Ok(())
        }
        Command::ResetTwoFactor { email, reason } => reset_two_factor(&db, &email, &reason),
        Command::RotateKey { batch_size } => rotate_key(settings, &db, batch_size),
        Command::CheckKeys => check_keys(settings, &db),
        Command::CreateWorkspace { name, slug } => {
            db.migrate()?;
            let name = WorkspaceName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let slug = Slug::parse(&slug).map_err(|e| anyhow::anyhow!("--slug: {e}"))?;
            let mut conn = db.get()?;
            let workspace = write_transaction(&mut conn, |conn| {
                let workspace = Workspace::insert(conn, &name, &slug, now())?;
                Event {
                    kind: Kind::WorkspaceCreated,
                    workspace_id: Some(workspace.id.clone()),
                    actor: Actor::Cli,
                    subject: None,
                    ip: None,
                    detail: format!("{} ({})", workspace.name, workspace.slug),
                }
                .record(conn)?;
                Ok::<_, diesel::result::Error>(workspace)
            })
            .map_err(|e| {
                if is_unique_violation(&e) {
                    anyhow::anyhow!(
                        "a workspace with the short name {} already exists",
                        slug.as_str()
                    )
                } else {
                    e.into()
                }
            })?;
            println!("Created workspace {} ({}).", workspace.name, workspace.slug);
            Ok(())
        }
        Command::CreateUser {
            workspace,
            email,
            role,
            staff,
            name,
            demo,
        } => {
            db.migrate()?;
            let slug = Slug::parse(&workspace).map_err(|e| anyhow::anyhow!("--workspace: {e}"))?;
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            if demo && role == Role::Admin {
                anyhow::bail!(
                    "--demo: a demo account cannot be an admin: the admin pages need two-factor \
                     sign-in, which a demo account cannot set up"
                );
            }
            let name = DisplayName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let mut conn = db.get()?;
            let ws = Workspace::find_by_slug(&mut conn, &slug)?.with_context(|| {
                format!(
                    "there is no workspace with the short name {}",
                    slug.as_str()
                )
            })?;
            let owner = PasswordOwner {
                email: &email,
                workspace_name: &ws.name,
            };
            let password = NewPassword::parse(read_password()?, owner)
                .map_err(|e| anyhow::anyhow!("password: {e}"))?;
            let hasher = PasswordHasher::new(settings.argon2, 1)?;
            let password_hash = hasher.hash_blocking(password.expose())?;
            write_transaction(&mut conn, |conn| {
                let new_user = NewUser {
                    workspace_id: &ws.id,
                    email: &email,
                    name: &name,
                    role,
                    is_staff: staff,
                    is_demo: demo,
                    password_hash: &password_hash,
                };
                let user_id = User::insert(conn, &new_user, now())?;
                Event {
                    kind: Kind::UserCreated,
                    workspace_id: Some(ws.id.clone()),
                    actor: Actor::Cli,
                    subject: Some((Some(user_id), email.as_str().to_owned())),
                    ip: None,
                    detail: format!(
                        "{}{}{}",
                        role.as_str(),
                        if staff { ", support staff" } else { "" },
                        if demo { ", demo account" } else { "" }
                    ),
                }
                .record(conn)
            })
            .map_err(|e| {
                if is_unique_violation(&e) {
                    anyhow::anyhow!("a user with the email {email} already exists")
                } else {
                    e.into()
                }
            })?;
            println!(
                "Created {} {email} in {}{}{}.",
                role.as_str(),
                ws.slug,
                if staff { " (support staff)" } else { "" },
                if demo { " (demo account)" } else { "" }
            );
            Ok(())
        }
        Command::Import { file, on_conflict } => {
            db.migrate()?;
            // The server's keys, checked against this database's exactly as a start does
            // (a fresh install gets its key here, as its first start would).
            let keyring = crate::auth::secret_box::Keyring::load(
                settings.encryption_key.as_deref(),
                &settings.encryption_keys_previous,
                &settings.data_dir,
                crate::auth::secret_box::IfNoKey::Generate,
            )?;
            crate::startup::check_keys(&db, &keyring)?;
            let summary = crate::import::run(
                &db,
                &keyring,
                &file,
                on_conflict,
                std::io::stderr().is_terminal(),
            )?;
            println!("{summary}");
            Ok(())
        }
    }
}

fn reset_two_factor(db: &Db, email: &str, reason: &str) -> anyhow::Result<()> {
    db.migrate()?;
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let reason = Reason::parse(reason).map_err(|e| anyhow::anyhow!("--reason: {e}"))?;
    let mut conn = db.get()?;
    let user = User::find_by_email(&mut conn, &email)?
        .with_context(|| format!("there is no user with the email {email}"))?;
    let removed = write_transaction(&mut conn, |conn| {
        let by = ResetBy::Cli {
            reason: reason.as_str(),
        };
        reset_second_factor(conn, &user, by, None, now())
    })
    .map_err(|e| match e {
        ResetError::NotEnrolled(_) => anyhow::anyhow!("{e} Nothing was changed."),
        ResetError::Database(e) => e.into(),
    })?;
    println!(
        "Reset two-factor sign-in of {email} (removed: {removed}) and ended all of their sessions. They can sign in with their password and set it up again."
    );
    Ok(())
}

fn unreachable_serve() -> anyhow::Result<()> {
    anyhow::bail!("`serve` is started by main, not by cli::run")
}

/// One line from standard input; prompted for, without echo, on a terminal.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        rpassword::prompt_password("Password for the new user: ")?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("could not read the password from standard input")?;
        line
    };
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

// `tessera check-keys` and `tessera rotate-key`: `auth::key_rotation` counts and
// re-encrypts; what the operator reads, and what to do next, is worded here.

/// The keyring an admin command works with: the configured keys, never a new key file.
fn configured_keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    Keyring::load(
        settings.encryption_key.as_deref(),
        &settings.encryption_keys_previous,
        &settings.data_dir,
        IfNoKey::Refuse,
    )
}

/// `tessera check-keys`: prints the census; fails if a secret does not open or servers
/// with these keys would not start.
fn check_keys(settings: &Settings, db: &Db) -> anyhow::Result<()> {
    let keyring = configured_keyring(settings)?;
    db.migrate()?;
    let census = Census::take(&mut *db.get()?, &keyring, i64::from(DEFAULT_BATCH))?;
    println!("{}", CensusReport(&census));
    if census.undecryptable() > 0 {
        anyhow::bail!(
            "{} cannot be decrypted with the configured keys",
            plural(census.undecryptable(), "stored secret", "stored secrets")
        );
    }
    if !census.recorded_key_is_configured() {
        anyhow::bail!("the key this database records is not configured");
    }
    Ok(())
}

/// `tessera rotate-key`: re-encrypts, prints what it did; fails (after printing) if
/// secrets remain on old keys.
fn rotate_key(settings: &Settings, db: &Db, batch: u32) -> anyhow::Result<()> {
    let keyring = configured_keyring(settings)?;
    db.migrate()?;
    let report = rotate(&mut *db.get()?, &keyring, batch).map_err(rotation_refused)?;
    println!("{}", RotationReport(&report));
    if report.remaining > 0 {
        anyhow::bail!(
            "{} still under other keys: they were written during the rotation by an instance \
             that does not use ENCRYPTION_KEY={} yet. Give every instance the new key, then run \
             `tessera rotate-key` again.",
            plural(report.remaining as u64, "secret is", "secrets are"),
            report.current
        );
    }
    Ok(())
}

/// Why `rotate-key` did not finish, and what the operator does next.
fn rotation_refused(e: RotationError) -> anyhow::Error {
    match e {
        RotationError::UnknownRecordedKey { recorded } => anyhow::anyhow!(
            "this database records encryption key {recorded}, which is not configured. Keep it in \
             ENCRYPTION_KEYS_PREVIOUS (beside the new ENCRYPTION_KEY) until the rotation has \
             finished. Nothing was changed."
        ),
        RotationError::Undecryptable { census } => anyhow::anyhow!(
            "{}\nNothing was changed: re-encrypting now would leave these secrets unreadable. \
             Add the key they were made with to ENCRYPTION_KEYS_PREVIOUS, or, if a secret is damaged, \
             reset that user's 2FA (`tessera reset-2fa`), then run this again.",
            CensusReport(&census)
        ),
        // Batches already committed stay re-encrypted: nothing is lost by stopping here.
        RotationError::Database(e) => anyhow::anyhow!(
            "the rotation stopped on a database error: {e}. Secrets re-encrypted so far stay \
             so (each under a key still configured); run `tessera rotate-key` again to finish."
        ),
        RotationError::Unexpected(e) => e,
    }
}

fn role_words(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Current => "current, ENCRYPTION_KEY",
        KeyRole::Previous => "previous, ENCRYPTION_KEYS_PREVIOUS",
        KeyRole::Unknown => "unknown: not configured",
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A census as `check-keys` prints it.
struct CensusReport<'a>(&'a Census);

/// A rotation as `rotate-key` prints it.
struct RotationReport<'a>(&'a Rotation);

/// The `check-keys` report: one line per key, then the verdict.
impl fmt::Display for CensusReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let census = self.0;
        writeln!(f, "Stored TOTP secrets by encryption key:")?;
        // The current key first, then the others by id.
        let mut keys: Vec<_> = census.keys.iter().collect();
        keys.sort_by_key(|(id, (role, _))| (*role != KeyRole::Current, (*id).clone()));
        for (id, (role, count)) in keys {
            write!(
                f,
                "  key {id} ({}): {} ({}, {})",
                role_words(*role),
                plural(count.secrets(), "secret", "secrets"),
                plural(count.authenticators, "authenticator", "authenticators"),
                plural(
                    count.pending_enrolments,
                    "pending enrolment",
                    "pending enrolments"
                ),
            )?;
            if count.undecryptable > 0 {
                writeln!(f, ", {} cannot be decrypted", count.undecryptable)?;
            } else if count.secrets() > 0 {
                writeln!(f, ", all decrypt")?;
            } else if *role == KeyRole::Previous {
                writeln!(f, ", no longer needed: it can be removed")?;
            } else {
                writeln!(f)?;
            }
        }
        match &census.recorded {
            None => writeln!(
                f,
                "The database records no key yet (no server has started on it)."
            )?,
            Some((id, KeyRole::Unknown)) => writeln!(
                f,
                "The database records key {id}, which is not configured: a server with these \
                 keys will refuse to start. Add it to ENCRYPTION_KEYS_PREVIOUS."
            )?,
            Some((id, role)) => {
                writeln!(f, "The database records key {id} ({}).", role_words(*role))?
            }
        }
        let (total, bad) = (census.total(), census.undecryptable());
        if bad == 0 {
            write!(
                f,
                "All {} decrypt; {} on keys other than the current one.",
                plural(total, "secret", "secrets"),
                census.on_old_keys()
            )?;
        } else {
            write!(
                f,
                "{bad} of {} cannot be decrypted with the configured keys:",
                plural(total, "secret", "secrets")
            )?;
            for failure in &census.failures {
                write!(
                    f,
                    "\n  {} of user {} (key {}): {}",
                    failure.store.table(),
                    failure.user_id,
                    failure.key_id,
                    failure.reason
                )?;
            }
            if bad > census.failures.len() as u64 {
                write!(f, "\n  … and {} more", bad - census.failures.len() as u64)?;
            }
        }
        Ok(())
    }
}

/// The `rotate-key` report: what was checked, re-encrypted, skipped and left.
impl fmt::Display for RotationReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rotation = self.0;
        writeln!(
            f,
            "Checked {}: all decrypt with the configured keys.",
            plural(rotation.checked, "stored secret", "stored secrets")
        )?;
        let seconds = rotation.elapsed.as_secs_f64();
        writeln!(
            f,
            "Re-encrypted {} under key {} ({}, {}) in {}; {seconds:.2} s with the check ({:.0} per second).",
            plural(rotation.rotated(), "secret", "secrets"),
            rotation.current,
            plural(
                rotation.rotated_authenticators,
                "authenticator",
                "authenticators"
            ),
            plural(
                rotation.rotated_pending,
                "pending enrolment",
                "pending enrolments"
            ),
            plural(rotation.batches, "batch", "batches"),
            rotation.rotated() as f64 / seconds.max(1e-6),
        )?;
        if rotation.skipped > 0 {
            writeln!(
                f,
                "Skipped {} that changed while being re-encrypted (left as written, looked at again).",
                plural(rotation.skipped, "secret", "secrets")
            )?;
        }
        if rotation.unreadable_meanwhile > 0 {
            writeln!(
                f,
                "{} written during the rotation under a key that is not configured were left as they are.",
                plural(rotation.unreadable_meanwhile, "secret", "secrets")
            )?;
        }
        write!(
            f,
            "{} on old keys.",
            plural(
                rotation.remaining as u64,
                "secret remains",
                "secrets remain"
            )
        )?;
        if rotation.recorded_moved {
            write!(
                f,
                " The database now records key {}: servers must have it as ENCRYPTION_KEY, and \
                 the old keys can be removed from ENCRYPTION_KEYS_PREVIOUS.",
                rotation.current
            )?;
        }
        Ok(())
    }
}
