//! The command line: `tessera serve` (the default) and the admin commands.
//!
//! Passwords are read from standard input (without echo on a terminal), never from
//! arguments, which other users of the machine can see in the process list.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::audit::{Actor, Event, Kind};
use crate::auth::password::PasswordHasher;
use crate::auth::reset::{ResetBy, ResetError, reset_second_factor};
use crate::config::Settings;
use crate::db::models::{NewUser, User, Workspace, is_unique_violation};
use crate::db::{Db, now, write_transaction};
use crate::domain::{DisplayName, Email, NewPassword, Reason, Role, Slug, WorkspaceName};

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
    },
    /// Remove a user's 2FA (authenticator and recovery codes) and end all of their
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
        #[arg(long, default_value_t = crate::auth::key_rotation::DEFAULT_BATCH,
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
        Command::RotateKey { batch_size } => {
            crate::auth::key_rotation::rotate_key_command(settings, &db, batch_size)
        }
        Command::CheckKeys => crate::auth::key_rotation::check_keys_command(settings, &db),
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
        } => {
            db.migrate()?;
            let slug = Slug::parse(&workspace).map_err(|e| anyhow::anyhow!("--workspace: {e}"))?;
            let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let name = DisplayName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let password = NewPassword::parse(read_password()?)
                .map_err(|e| anyhow::anyhow!("password: {e}"))?;
            let hasher = PasswordHasher::new(settings.argon2, 1)?;
            let password_hash = hasher.hash_blocking(password.expose())?;
            let mut conn = db.get()?;
            let ws = Workspace::find_by_slug(&mut conn, &slug)?.with_context(|| {
                format!(
                    "there is no workspace with the short name {}",
                    slug.as_str()
                )
            })?;
            write_transaction(&mut conn, |conn| {
                let new_user = NewUser {
                    workspace_id: &ws.id,
                    email: &email,
                    name: &name,
                    role,
                    is_staff: staff,
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
                        "{}{}",
                        role.as_str(),
                        if staff { ", support staff" } else { "" }
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
                "Created {} {email} in {}{}.",
                role.as_str(),
                ws.slug,
                if staff { " (support staff)" } else { "" }
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
    write_transaction(&mut conn, |conn| {
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
        "Reset two-factor sign-in of {email} and ended all of their sessions. They can sign in with their password and set it up again."
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
