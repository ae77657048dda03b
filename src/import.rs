//! `tessera import --file users.jsonl`: moving users in from another system without a
//! password reset, and the fast way to seed a benchmark.
//!
//! One JSON object per line:
//! `{"email": "…", "workspace": "acme", "role": "member", "password_hash": "$argon2id$…",
//!   "name": "…", "totp_secret": "BASE32…", "recovery_code_hashes": ["$2b$…", …]}`
//! (`role` defaults to member; `name`, `totp_secret` and `recovery_code_hashes` are optional).
//!
//! Invariants:
//! - Every line is checked before anything is written; if any line is bad, every bad line
//!   is reported with its number and nothing is imported.
//! - A user is imported whole or not at all: the user, their encrypted TOTP secret, their
//!   recovery codes and the `user_imported` audit event go in together. Users are written
//!   in batches, each one transaction of a few multi-row statements (a round trip per
//!   table, not per row); a batch that meets an email taken meanwhile is written again with
//!   a savepoint per user.
//! - Existing emails are skipped (`--on-conflict skip`, so running the same file twice is
//!   harmless) or stop the import before it starts (`--on-conflict fail`, the default).
//! - Password hashes are stored as given (argon2id, argon2i or bcrypt); the sign-in path
//!   replaces any but current-parameter argon2id at the user's next successful sign-in.
//! - TOTP secrets are encrypted with the current key, bound to the new user's id, exactly
//!   as enrolment does; the file's plaintext never reaches the database.
//! - A workspace named by slug that does not exist is created (name = slug), audited.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use diesel::prelude::*;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::audit::{Actor, Event, Kind};
use crate::auth::factors::recovery::CODES_PER_SET;
use crate::auth::password::StoredHashKind;
use crate::auth::secret_box::Keyring;
use crate::db::models::{
    AppSecrets, NewUser, RecoveryCodes, Sealed, TotpCredential, User, Workspace,
    is_unique_violation,
};
use crate::db::{AnyConnection, Db, now, write_transaction};
use crate::domain::{DisplayName, Email, Role, Slug, UserId, WorkspaceId, WorkspaceName};

/// Users written per transaction (a few multi-row statements): large enough that round trips
/// and commits do not dominate, small enough that a transaction never holds SQLite's write
/// lock for long (about 10 ms).
const BATCH_SIZE: usize = 500;

/// Shortest TOTP secret accepted (RFC 4226: at least 128 bits).
const MIN_SECRET_BYTES: usize = 16;

/// What to do with a line whose email already has an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnConflict {
    /// Leave the existing account alone and go on (re-running a file is harmless).
    Skip,
    /// Import nothing, and list the lines whose email is taken.
    Fail,
}

/// A line as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    email: String,
    workspace: String,
    #[serde(default)]
    role: Option<String>,
    password_hash: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    totp_secret: Option<String>,
    #[serde(default)]
    recovery_code_hashes: Vec<String>,
}

/// A line that passed every check.
pub struct ImportUser {
    /// 1-based line number in the file.
    pub line: usize,
    pub email: Email,
    pub workspace: Slug,
    pub role: Role,
    pub name: DisplayName,
    pub password_hash: String,
    pub hash_kind: StoredHashKind,
    pub totp_secret: Option<Zeroizing<Vec<u8>>>,
    pub recovery_code_hashes: Vec<String>,
}

/// Written by hand: neither the secret nor the hash is printed.
impl std::fmt::Debug for ImportUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportUser")
            .field("line", &self.line)
            .field("email", &self.email.as_str())
            .finish_non_exhaustive()
    }
}

/// Every bad line of a file, as `line N: why`.
#[derive(Debug)]
pub struct BadLines(pub Vec<String>);

impl std::fmt::Display for BadLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bad line(s); nothing was imported:\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        )
    }
}

impl std::error::Error for BadLines {}

/// Reads and checks every line; blank lines are ignored.
pub fn parse(reader: impl BufRead) -> Result<Vec<ImportUser>, BadLines> {
    let mut users = Vec::new();
    let mut bad = Vec::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(bytes) => bytes,
            Err(e) => {
                bad.push(format!("line {number}: could not be read: {e}"));
                break;
            }
        };
        let Ok(text) = std::str::from_utf8(&line) else {
            bad.push(format!("line {number}: is not UTF-8 text"));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text, number) {
            Ok(user) => match first_line_of.get(user.email.as_str()) {
                Some(first) => bad.push(format!(
                    "line {number}: the email {} is also on line {first}",
                    user.email.as_str()
                )),
                None => {
                    first_line_of.insert(user.email.as_str().to_owned(), number);
                    users.push(user);
                }
            },
            Err(why) => bad.push(format!("line {number}: {why}")),
        }
    }
    if bad.is_empty() {
        Ok(users)
    } else {
        Err(BadLines(bad))
    }
}

fn parse_line(text: &str, line: usize) -> Result<ImportUser, String> {
    let raw: RawLine =
        serde_json::from_str(text).map_err(|e| format!("not a valid user object: {e}"))?;
    let email = Email::parse(&raw.email).map_err(|e| format!("email {:?}: {e}", raw.email))?;
    let workspace =
        Slug::parse(&raw.workspace).map_err(|e| format!("workspace {:?}: {e}", raw.workspace))?;
    let role = match raw.role.as_deref() {
        None => Role::Member,
        Some(role) => Role::parse(role).map_err(|e| format!("role {role:?}: {e}"))?,
    };
    let name =
        DisplayName::parse(raw.name.as_deref().unwrap_or("")).map_err(|e| format!("name: {e}"))?;
    let hash_kind =
        StoredHashKind::of(&raw.password_hash).map_err(|e| format!("password_hash: {e}"))?;
    let typed_secret = raw.totp_secret.map(Zeroizing::new);
    let totp_secret = typed_secret
        .as_deref()
        .map(|s| decode_secret(s).map_err(|e| format!("totp_secret: {e}")))
        .transpose()?;
    if raw.recovery_code_hashes.len() > CODES_PER_SET {
        return Err(format!(
            "recovery_code_hashes: at most {CODES_PER_SET} codes (got {})",
            raw.recovery_code_hashes.len()
        ));
    }
    if !raw.recovery_code_hashes.is_empty() && totp_secret.is_none() {
        return Err(
            "recovery_code_hashes without a totp_secret: recovery codes only \
                    stand in for an authenticator"
                .into(),
        );
    }
    for (i, hash) in raw.recovery_code_hashes.iter().enumerate() {
        if StoredHashKind::of(hash) != Ok(StoredHashKind::Bcrypt) {
            return Err(format!(
                "recovery_code_hashes[{i}] is not a bcrypt hash ($2a$, $2b$ or $2y$)"
            ));
        }
    }
    Ok(ImportUser {
        line,
        email,
        workspace,
        role,
        name,
        password_hash: raw.password_hash,
        hash_kind,
        totp_secret,
        recovery_code_hashes: raw.recovery_code_hashes,
    })
}

/// RFC 4648 base32 as authenticator setups show it: case and spaces ignored, padding
/// optional.
fn decode_secret(text: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .trim_end_matches('=')
            .to_ascii_uppercase(),
    );
    if cleaned.is_empty() {
        return Err("is empty".into());
    }
    if let Some(bad) = cleaned
        .chars()
        .find(|c| !matches!(c, 'A'..='Z' | '2'..='7'))
    {
        return Err(format!(
            "is not base32 (the character {bad:?} is not in A–Z, 2–7)"
        ));
    }
    let bytes = totp_rs::Secret::try_from_base32(cleaned.as_str())
        .map_err(|_| "is not valid base32".to_owned())?;
    let bytes = Zeroizing::new(bytes.as_bytes().to_vec());
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "is {} bits long; at least {} are needed",
            bytes.len() * 8,
            MIN_SECRET_BYTES * 8
        ));
    }
    Ok(bytes)
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub imported: usize,
    pub with_totp: usize,
    pub to_rehash: usize,
    pub skipped: usize,
    pub workspaces_created: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Imported {} user(s), {} with two-factor sign-in; {} skipped (already present).",
            self.imported, self.with_totp, self.skipped
        )?;
        if self.to_rehash > 0 {
            write!(
                f,
                " {} password hash(es) will be upgraded to argon2id at the next sign-in.",
                self.to_rehash
            )?;
        }
        if !self.workspaces_created.is_empty() {
            write!(
                f,
                " Created workspace(s): {}.",
                self.workspaces_created.join(", ")
            )?;
        }
        Ok(())
    }
}

/// The whole command: read and check the file, then import it.
pub fn run(
    db: &Db,
    keyring: &Keyring,
    file: &Path,
    on_conflict: OnConflict,
    show_progress: bool,
) -> anyhow::Result<Summary> {
    let reader = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .map_err(|e| anyhow::anyhow!("could not open {}: {e}", file.display()))?;
    let users = parse(reader).map_err(|bad| anyhow::anyhow!("{}: {bad}", file.display()))?;
    import(db, keyring, users, on_conflict, show_progress)
}

/// Writes checked users. With `OnConflict::Fail`, existing emails are looked for first and
/// reported all together before anything is written.
pub fn import(
    db: &Db,
    keyring: &Keyring,
    users: Vec<ImportUser>,
    on_conflict: OnConflict,
    show_progress: bool,
) -> anyhow::Result<Summary> {
    let mut conn = db.get()?;
    check_key(&mut conn, keyring)?;
    let existing = existing_emails(&mut conn, &users)?;
    if on_conflict == OnConflict::Fail && !existing.is_empty() {
        let lines = users
            .iter()
            .filter(|u| existing.contains(u.email.as_str()))
            .map(|u| {
                format!(
                    "line {}: a user with the email {} already exists",
                    u.line,
                    u.email.as_str()
                )
            })
            .collect();
        anyhow::bail!(
            "{}\n(use --on-conflict skip to leave existing users alone and import the rest)",
            BadLines(lines)
        );
    }
    let mut summary = Summary {
        skipped: users
            .iter()
            .filter(|u| existing.contains(u.email.as_str()))
            .count(),
        ..Summary::default()
    };
    let users: Vec<ImportUser> = users
        .into_iter()
        .filter(|u| !existing.contains(u.email.as_str()))
        .collect();

    let workspaces = ensure_workspaces(&mut conn, &users, &mut summary)?;
    let progress = if show_progress {
        indicatif::ProgressBar::new(users.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    for batch in users.chunks(BATCH_SIZE) {
        let prepared = batch
            .iter()
            .map(|user| Prepared::of(user, keyring, &workspaces))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let skipped = write_batch(&mut conn, &prepared, on_conflict)?;
        let imported = prepared.iter().filter(|p| !p.skipped.get());
        for p in imported {
            summary.imported += 1;
            summary.with_totp += usize::from(p.sealed.is_some());
            summary.to_rehash += usize::from(p.hash_kind != StoredHashKind::Argon2id);
        }
        summary.skipped += skipped;
        progress.inc(batch.len() as u64);
    }
    progress.finish_and_clear();
    if summary.imported > 0 {
        crate::db::refresh_planner_statistics(&mut conn)?;
    }
    Ok(summary)
}

/// A user's rows, worked out before anything is written.
struct Prepared<'a> {
    line: usize,
    id: UserId,
    user: NewUser<'a>,
    hash_kind: StoredHashKind,
    sealed: Option<Sealed>,
    recovery_code_hashes: &'a [String],
    event: Event,
    /// Set when the slow path left this user out (their email was taken meanwhile).
    skipped: std::cell::Cell<bool>,
}

impl<'a> Prepared<'a> {
    fn of(
        user: &'a ImportUser,
        keyring: &Keyring,
        workspaces: &'a HashMap<String, WorkspaceId>,
    ) -> anyhow::Result<Prepared<'a>> {
        let workspace_id = workspaces
            .get(user.workspace.as_str())
            .ok_or_else(|| anyhow::anyhow!("workspace {} vanished", user.workspace.as_str()))?;
        let id = UserId::new(crate::db::new_id()?);
        let mut detail = format!("{}, password hash {:?}", user.role.as_str(), user.hash_kind);
        // Secrets are sealed to the new user's id, exactly as enrolment does.
        let sealed = match &user.totp_secret {
            Some(secret) => {
                detail.push_str(", two-factor sign-in on");
                if !user.recovery_code_hashes.is_empty() {
                    detail.push_str(&format!(
                        ", {} recovery code(s)",
                        user.recovery_code_hashes.len()
                    ));
                }
                Some(keyring.seal(&id, secret)?)
            }
            None => None,
        };
        Ok(Prepared {
            line: user.line,
            user: NewUser {
                workspace_id,
                email: &user.email,
                name: &user.name,
                role: user.role,
                is_staff: false,
                is_demo: false,
                password_hash: &user.password_hash,
            },
            hash_kind: user.hash_kind,
            recovery_code_hashes: if sealed.is_some() {
                &user.recovery_code_hashes
            } else {
                &[]
            },
            sealed,
            event: Event {
                kind: Kind::UserImported,
                workspace_id: Some(workspace_id.clone()),
                actor: Actor::Cli,
                subject: Some((Some(id.clone()), user.email.as_str().to_owned())),
                ip: None,
                detail,
            },
            id,
            skipped: std::cell::Cell::new(false),
        })
    }
}

/// Writes a batch and returns how many of its users were skipped. The whole batch goes in
/// one transaction of a few multi-row statements, so each user is whole or not at all
/// because the batch is. If an email was taken since the check before the import (a
/// sign-up, or another import), the batch rolls back whole and is written again one user
/// at a time.
fn write_batch(
    conn: &mut AnyConnection,
    users: &[Prepared<'_>],
    on_conflict: OnConflict,
) -> anyhow::Result<usize> {
    match write_transaction(conn, |conn| write_users(conn, users)) {
        Ok(()) => Ok(0),
        Err(e) if is_unique_violation(&e) => one_by_one(conn, users, on_conflict),
        Err(e) => Err(e.into()),
    }
}

/// Writes `users` whole: their rows, their TOTP secrets, recovery codes and audit events,
/// a few multi-row statements in all.
fn write_users(conn: &mut AnyConnection, users: &[Prepared<'_>]) -> QueryResult<()> {
    let now = now();
    let rows: Vec<(UserId, &NewUser<'_>)> = users.iter().map(|p| (p.id.clone(), &p.user)).collect();
    User::insert_many(conn, &rows, now)?;
    let credentials: Vec<(&str, &Sealed)> = users
        .iter()
        .filter_map(|p| Some((p.id.as_str(), p.sealed.as_ref()?)))
        .collect();
    TotpCredential::insert_many(conn, &credentials, 0, now)?;
    let codes: Vec<(&str, &[String])> = users
        .iter()
        .filter(|p| !p.recovery_code_hashes.is_empty())
        .map(|p| (p.id.as_str(), p.recovery_code_hashes))
        .collect();
    RecoveryCodes::insert_many(conn, &codes, now)?;
    Event::record_all(conn, users.iter().map(|p| p.event.clone()).collect())
}

/// The slow path for a batch that met a taken email: one transaction, a savepoint per user,
/// so a user is still whole or not at all and a taken email skips (or stops) only that one.
/// Returns how many were skipped.
fn one_by_one(
    conn: &mut AnyConnection,
    users: &[Prepared<'_>],
    on_conflict: OnConflict,
) -> anyhow::Result<usize> {
    write_transaction(conn, |conn| -> anyhow::Result<usize> {
        let mut skipped = 0;
        for user in users {
            match conn.transaction(|conn| write_users(conn, std::slice::from_ref(user))) {
                Ok(()) => {}
                Err(e) if on_conflict == OnConflict::Skip && is_unique_violation(&e) => {
                    user.skipped.set(true);
                    skipped += 1;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("line {}: could not be imported", user.line)));
                }
            }
        }
        Ok(skipped)
    })
}

/// The database must belong to the configured key, as `serve` requires; otherwise the
/// imported secrets could not be read by the server.
fn check_key(conn: &mut AnyConnection, keyring: &Keyring) -> anyhow::Result<()> {
    let recorded = AppSecrets::get_or_insert(conn, "encryption_key_id", keyring.current_id())?;
    if !keyring.knows(&recorded) {
        anyhow::bail!(
            "this database belongs to encryption key {recorded}, but the configured key is {}: \
             set ENCRYPTION_KEY to the server's key before importing TOTP secrets",
            keyring.current_id()
        );
    }
    Ok(())
}

fn existing_emails(
    conn: &mut AnyConnection,
    users: &[ImportUser],
) -> anyhow::Result<HashSet<String>> {
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    Ok(User::existing_emails(conn, &emails)?)
}

/// Slug → id for every workspace the users name, creating missing ones (name = slug).
fn ensure_workspaces(
    conn: &mut AnyConnection,
    users: &[ImportUser],
    summary: &mut Summary,
) -> anyhow::Result<HashMap<String, WorkspaceId>> {
    let slugs: BTreeMap<&str, &Slug> = users
        .iter()
        .map(|u| (u.workspace.as_str(), &u.workspace))
        .collect();
    let mut ids = HashMap::new();
    write_transaction(conn, |conn| -> anyhow::Result<()> {
        for slug in slugs.into_values() {
            let workspace = match Workspace::find_by_slug(conn, slug)? {
                Some(workspace) => workspace,
                None => {
                    let name = WorkspaceName::parse(slug.as_str())
                        .map_err(|e| anyhow::anyhow!("workspace {}: {e}", slug.as_str()))?;
                    let workspace = Workspace::insert(conn, &name, slug, now())?;
                    Event {
                        kind: Kind::WorkspaceCreated,
                        workspace_id: Some(workspace.id.clone()),
                        actor: Actor::Cli,
                        subject: None,
                        ip: None,
                        detail: format!("{} ({}), by import", workspace.name, workspace.slug),
                    }
                    .record(conn)?;
                    summary.workspaces_created.push(workspace.slug.clone());
                    workspace
                }
            };
            ids.insert(workspace.slug, workspace.id);
        }
        Ok(())
    })?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGON2ID: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    /// A migrated SQLite file with workspace `acme` and the user `taken@acme.example`, a
    /// keyring, and the file's folder (removed by the caller).
    fn database() -> (
        Db,
        Keyring,
        HashMap<String, WorkspaceId>,
        std::path::PathBuf,
    ) {
        let dir = std::env::temp_dir().join(format!(
            "tessera-import-{}",
            crate::random::hex(&crate::random::bytes::<6>().unwrap())
        ));
        let db = Db::connect(&dir.join("t.db").to_string_lossy(), 2).unwrap();
        db.migrate().unwrap();
        let keyring = Keyring::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
        let mut conn = db.get().unwrap();
        let name = WorkspaceName::parse("acme").unwrap();
        let ws = Workspace::insert(&mut conn, &name, &Slug::parse("acme").unwrap(), 0).unwrap();
        let taken = parse(line_for("taken@acme.example", "").as_bytes()).unwrap();
        let workspaces = HashMap::from([("acme".to_owned(), ws.id)]);
        let prepared = Prepared::of(&taken[0], &keyring, &workspaces).unwrap();
        write_users(&mut conn, std::slice::from_ref(&prepared)).unwrap();
        drop(conn);
        (db, keyring, workspaces, dir)
    }

    fn users_and_codes(db: &Db) -> (i64, i64, i64) {
        use crate::db::schema::{recovery_codes, totp_credentials, users};
        let mut conn = db.get().unwrap();
        (
            users::table.count().get_result(&mut *conn).unwrap(),
            totp_credentials::table
                .count()
                .get_result(&mut *conn)
                .unwrap(),
            recovery_codes::table
                .count()
                .get_result(&mut *conn)
                .unwrap(),
        )
    }

    #[test]
    fn a_batch_that_meets_an_email_taken_meanwhile_skips_or_stops_at_that_user_only() {
        let (db, keyring, workspaces, dir) = database();
        let with_2fa = format!(
            r#","totp_secret":"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP","recovery_code_hashes":["{}"]"#,
            "$2b$04$abcdefghijklmnopqrstuuJ0Lk8wqbSfGTGqwexDN3gfZWm8zSX1e"
        );
        let file = [
            line_for("a@acme.example", ""),
            line_for("taken@acme.example", ""),
            line_for("b@acme.example", &with_2fa),
        ]
        .join("\n");
        let users = parse(file.as_bytes()).unwrap();
        let prepared: Vec<_> = users
            .iter()
            .map(|u| Prepared::of(u, &keyring, &workspaces).unwrap())
            .collect();
        let mut conn = db.get().unwrap();

        let refused = write_batch(&mut conn, &prepared, OnConflict::Fail).unwrap_err();
        assert!(format!("{refused:#}").contains("line 2"), "{refused:#}");
        assert_eq!(users_and_codes(&db), (1, 0, 0), "nothing was written");

        assert_eq!(
            write_batch(&mut conn, &prepared, OnConflict::Skip).unwrap(),
            1
        );
        assert!(prepared[1].skipped.get() && !prepared[0].skipped.get());
        assert_eq!(users_and_codes(&db), (3, 1, 1), "the others, whole");
        drop(conn);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn line_for(email: &str, extra: &str) -> String {
        format!(r#"{{"email":"{email}","workspace":"acme","password_hash":"{ARGON2ID}"{extra}}}"#)
    }

    fn line(extra: &str) -> String {
        format!(
            r#"{{"email":"a@example.com","workspace":"acme","password_hash":"{ARGON2ID}"{extra}}}"#
        )
    }

    #[test]
    fn a_minimal_line_is_a_member_without_2fa() {
        let users = parse(line("").as_bytes()).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].role, Role::Member);
        assert!(users[0].totp_secret.is_none());
        assert_eq!(users[0].hash_kind, StoredHashKind::Argon2id);
    }

    #[test]
    fn secrets_are_read_like_authenticator_keys() {
        let users =
            parse(line(r#","totp_secret":"jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp""#).as_bytes())
                .unwrap();
        assert_eq!(
            users[0].totp_secret.as_deref().map(Vec::as_slice),
            Some(b"Hello!\xde\xad\xbe\xefHello!\xde\xad\xbe\xef".as_slice())
        );
        for bad in ["JBSW1Y3D", "JBSWY3DPEHPK3PXP", ""] {
            let err = parse(line(&format!(r#","totp_secret":"{bad}""#)).as_bytes()).unwrap_err();
            assert!(err.0[0].contains("totp_secret"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let file = [
            line(""),
            "{not json".to_owned(),
            line("").replace("a@example.com", "not-an-email"),
            line(r#","role":"owner""#),
            line("").replace(ARGON2ID, "md5$abc"),
            String::new(),
            line(""),
            line(r#","unknown_field":1"#),
        ]
        .join("\n");
        let err = parse(file.as_bytes()).unwrap_err();
        let lines: Vec<&str> = err.0.iter().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            lines,
            ["line 2", "line 3", "line 4", "line 5", "line 7", "line 8"],
            "{err}"
        );
        assert!(err.0[4].contains("also on line 1"), "{err}");
    }
}
