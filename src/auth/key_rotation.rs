//! Key rotation: which key protects each stored TOTP secret (`tessera check-keys`), and
//! re-encrypting them all under the current key (`tessera rotate-key`).
//!
//! Invariants:
//! - Nothing is changed unless every stored secret opens with a configured key: all are
//!   checked first, and a rotation that would leave a secret nobody can open is refused.
//! - Rows are re-encrypted in batches, one write transaction each, and every row by one
//!   compare-and-set statement (`… WHERE user_id = ? AND key_id = ? AND secret_ciphertext = ?`).
//!   A secret that a serving instance changed meanwhile (2FA turned off, setup restarted) is
//!   never overwritten with the older one: it is counted as skipped and looked at again.
//! - Only rows not under the current key are selected, so an interrupted rotation resumes
//!   where it stopped and a second run changes nothing.
//! - The database's recorded key id (`app_secrets.encryption_key_id`, see
//!   `startup::check_keys`) moves to the current key only when no secret is left under
//!   another one; from then on a start without the new key is refused.
//! - Key ids and user ids are printed, never a key or a secret.
//!
//! The queries live here rather than in `db::models`: they are the only ones that treat
//! both secret tables alike, and they serve this one operation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::auth::secret_box::{IfNoKey, Keyring, Sealed};
use crate::config::Settings;
use crate::db::models::AppSecrets;
use crate::db::schema::{pending_enrolments, totp_credentials};
use crate::db::{AnyConnection, Db, write_transaction};

/// Rows per transaction unless `--batch-size` says otherwise: big enough to be quick, small
/// enough that a serving instance never waits long for SQLite's write lock.
pub const DEFAULT_BATCH: u32 = 500;
/// Passes over the tables while rows keep changing under the rotation.
const MAX_PASSES: u32 = 3;
/// Undecryptable secrets listed by name; the rest are only counted.
const MAX_LISTED: usize = 20;
/// Where `startup::check_keys` records the database's key.
const RECORDED_KEY: &str = "encryption_key_id";

/// The two tables that hold sealed secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Authenticators,
    PendingEnrolments,
}

impl Store {
    pub const ALL: [Store; 2] = [Store::Authenticators, Store::PendingEnrolments];

    pub fn table(self) -> &'static str {
        match self {
            Store::Authenticators => "totp_credentials",
            Store::PendingEnrolments => "pending_enrolments",
        }
    }
}

/// `(user_id, secret_ciphertext, key_id)` as stored.
type Row = (String, String, String);

/// Up to `limit` rows of `store` with a user id after `after`, in user id order; with
/// `not_under`, only rows sealed by another key.
fn page(
    conn: &mut AnyConnection,
    store: Store,
    after: &str,
    not_under: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Row>> {
    macro_rules! page_of {
        ($t:ident) => {{
            let columns = ($t::user_id, $t::secret_ciphertext, $t::key_id);
            match not_under {
                Some(key) => $t::table
                    .filter($t::user_id.gt(after))
                    .filter($t::key_id.ne(key))
                    .order($t::user_id)
                    .limit(limit)
                    .select(columns)
                    .load(conn),
                None => $t::table
                    .filter($t::user_id.gt(after))
                    .order($t::user_id)
                    .limit(limit)
                    .select(columns)
                    .load(conn),
            }
        }};
    }
    match store {
        Store::Authenticators => page_of!(totp_credentials),
        Store::PendingEnrolments => page_of!(pending_enrolments),
    }
}

/// Replaces `user_id`'s secret `old` by `new` if the row still holds exactly `old`: `false`
/// means it changed (or went) since it was read, and nothing was written.
pub fn replace_if_unchanged(
    conn: &mut AnyConnection,
    store: Store,
    user_id: &str,
    old: &Sealed,
    new: &Sealed,
) -> QueryResult<bool> {
    macro_rules! replace_in {
        ($t:ident) => {
            diesel::update(
                $t::table
                    .filter($t::user_id.eq(user_id))
                    .filter($t::key_id.eq(&old.key_id))
                    .filter($t::secret_ciphertext.eq(&old.ciphertext)),
            )
            .set((
                $t::secret_ciphertext.eq(&new.ciphertext),
                $t::key_id.eq(&new.key_id),
            ))
            .execute(conn)
        };
    }
    let updated = match store {
        Store::Authenticators => replace_in!(totp_credentials)?,
        Store::PendingEnrolments => replace_in!(pending_enrolments)?,
    };
    Ok(updated == 1)
}

/// Rows of both tables not sealed by `key_id`.
fn count_not_under(conn: &mut AnyConnection, key_id: &str) -> QueryResult<i64> {
    let credentials: i64 = totp_credentials::table
        .filter(totp_credentials::key_id.ne(key_id))
        .count()
        .get_result(conn)?;
    let pending: i64 = pending_enrolments::table
        .filter(pending_enrolments::key_id.ne(key_id))
        .count()
        .get_result(conn)?;
    Ok(credentials + pending)
}

/// How a key id relates to the configured keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Current,
    Previous,
    Unknown,
}

impl Role {
    fn of(keyring: &Keyring, key_id: &str) -> Role {
        if key_id == keyring.current_id() {
            Role::Current
        } else if keyring.knows(key_id) {
            Role::Previous
        } else {
            Role::Unknown
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Role::Current => "current, ENCRYPTION_KEY",
            Role::Previous => "previous, ENCRYPTION_KEYS_PREVIOUS",
            Role::Unknown => "unknown: not configured",
        }
    }
}

/// The secrets under one key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCount {
    pub authenticators: u64,
    pub pending_enrolments: u64,
    /// Of those, how many did not open.
    pub undecryptable: u64,
}

impl KeyCount {
    pub fn secrets(&self) -> u64 {
        self.authenticators + self.pending_enrolments
    }
}

/// A secret that no configured key opens.
#[derive(Debug, Clone)]
pub struct Failure {
    pub store: Store,
    pub user_id: String,
    pub key_id: String,
    pub reason: String,
}

/// Every stored secret, counted by key id and tried with the keyring.
#[derive(Debug, Clone)]
pub struct Census {
    pub current: String,
    /// Every configured key with what it protects (zero for a key nothing uses), plus any
    /// key id found in the database that is not configured.
    pub keys: BTreeMap<String, (Role, KeyCount)>,
    /// The key id the database records (`None` before the first server start).
    pub recorded: Option<(String, Role)>,
    /// The first few secrets that did not open.
    pub failures: Vec<Failure>,
}

impl Census {
    /// Reads and tries to open every stored secret, `batch` rows at a time.
    pub fn take(conn: &mut AnyConnection, keyring: &Keyring, batch: i64) -> QueryResult<Census> {
        let mut keys: BTreeMap<String, (Role, KeyCount)> = BTreeMap::new();
        for id in std::iter::once(keyring.current_id()).chain(keyring.previous_ids()) {
            keys.insert(id.to_owned(), (Role::of(keyring, id), KeyCount::default()));
        }
        let mut failures = Vec::new();
        for store in Store::ALL {
            let mut after = String::new();
            loop {
                let rows = page(conn, store, &after, None, batch)?;
                for (user_id, ciphertext, key_id) in &rows {
                    let (_, count) = keys
                        .entry(key_id.clone())
                        .or_insert_with(|| (Role::of(keyring, key_id), KeyCount::default()));
                    match store {
                        Store::Authenticators => count.authenticators += 1,
                        Store::PendingEnrolments => count.pending_enrolments += 1,
                    }
                    let sealed = Sealed {
                        key_id: key_id.clone(),
                        ciphertext: ciphertext.clone(),
                    };
                    if let Err(e) = keyring.open(user_id, &sealed) {
                        count.undecryptable += 1;
                        if failures.len() < MAX_LISTED {
                            failures.push(Failure {
                                store,
                                user_id: user_id.clone(),
                                key_id: key_id.clone(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                match rows.last() {
                    Some((user_id, _, _)) if rows.len() as i64 == batch => after = user_id.clone(),
                    _ => break,
                }
            }
        }
        let recorded = AppSecrets::get(conn, RECORDED_KEY)?.map(|id| {
            let role = Role::of(keyring, &id);
            (id, role)
        });
        Ok(Census {
            current: keyring.current_id().to_owned(),
            keys,
            recorded,
            failures,
        })
    }

    pub fn total(&self) -> u64 {
        self.keys.values().map(|(_, c)| c.secrets()).sum()
    }

    pub fn undecryptable(&self) -> u64 {
        self.keys.values().map(|(_, c)| c.undecryptable).sum()
    }

    /// Secrets under any key but the current one.
    pub fn on_old_keys(&self) -> u64 {
        self.keys
            .iter()
            .filter(|(id, _)| **id != self.current)
            .map(|(_, (_, c))| c.secrets())
            .sum()
    }

    /// Whether servers with this keyring start over this database (see `check_keys`).
    pub fn recorded_key_is_configured(&self) -> bool {
        self.recorded
            .as_ref()
            .is_none_or(|(_, role)| *role != Role::Unknown)
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The `check-keys` report: one line per key, then the verdict.
impl fmt::Display for Census {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Stored TOTP secrets by encryption key:")?;
        // The current key first, then the others by id.
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by_key(|(id, (role, _))| (*role != Role::Current, (*id).clone()));
        for (id, (role, count)) in keys {
            write!(
                f,
                "  key {id} ({}): {} ({}, {})",
                role.describe(),
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
            } else if *role == Role::Previous {
                writeln!(f, ", no longer needed: it can be removed")?;
            } else {
                writeln!(f)?;
            }
        }
        match &self.recorded {
            None => writeln!(
                f,
                "The database records no key yet (no server has started on it)."
            )?,
            Some((id, Role::Unknown)) => writeln!(
                f,
                "The database records key {id}, which is not configured: a server with these \
                 keys will refuse to start. Add it to ENCRYPTION_KEYS_PREVIOUS."
            )?,
            Some((id, role)) => {
                writeln!(f, "The database records key {id} ({}).", role.describe())?
            }
        }
        let (total, bad) = (self.total(), self.undecryptable());
        if bad == 0 {
            write!(
                f,
                "All {} decrypt; {} on keys other than the current one.",
                plural(total, "secret", "secrets"),
                self.on_old_keys()
            )?;
        } else {
            write!(
                f,
                "{bad} of {} cannot be decrypted with the configured keys:",
                plural(total, "secret", "secrets")
            )?;
            for failure in &self.failures {
                write!(
                    f,
                    "\n  {} of user {} (key {}): {}",
                    failure.store.table(),
                    failure.user_id,
                    failure.key_id,
                    failure.reason
                )?;
            }
            if bad > self.failures.len() as u64 {
                write!(f, "\n  … and {} more", bad - self.failures.len() as u64)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "this database records encryption key {recorded}, which is not configured. Keep it in \
         ENCRYPTION_KEYS_PREVIOUS (beside the new ENCRYPTION_KEY) until the rotation has \
         finished. Nothing was changed."
    )]
    UnknownRecordedKey { recorded: String },
    #[error(
        "{census}\nNothing was changed: re-encrypting now would leave these secrets unreadable. \
         Add the key they were made with to ENCRYPTION_KEYS_PREVIOUS, or, if a secret is damaged, \
         reset that user's 2FA (`tessera reset-2fa`), then run this again."
    )]
    Undecryptable { census: Box<Census> },
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a rotation did.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    pub current: String,
    /// Secrets found (all opened) before anything was changed.
    pub checked: u64,
    pub rotated_authenticators: u64,
    pub rotated_pending: u64,
    /// Rows that changed between being read and being replaced (left as they were, and
    /// looked at again on the next pass).
    pub skipped: u64,
    /// Rows under a key not configured that appeared after the check (written meanwhile by
    /// an instance with another key); left as they are.
    pub unreadable_meanwhile: u64,
    pub batches: u64,
    pub passes: u32,
    /// Secrets still under another key at the end.
    pub remaining: i64,
    /// Whether the database now records the current key.
    pub recorded_moved: bool,
    pub elapsed: Duration,
}

impl Rotation {
    pub fn rotated(&self) -> u64 {
        self.rotated_authenticators + self.rotated_pending
    }
}

/// Re-encrypts every secret not under the current key; see the module invariants.
pub fn rotate(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    batch: u32,
) -> Result<Rotation, RotationError> {
    let started = Instant::now();
    let batch = i64::from(batch.max(1));
    let current = keyring.current_id().to_owned();
    if let Some(recorded) = AppSecrets::get(conn, RECORDED_KEY)?
        && !keyring.knows(&recorded)
    {
        return Err(RotationError::UnknownRecordedKey { recorded });
    }
    let census = Census::take(conn, keyring, batch)?;
    if census.undecryptable() > 0 {
        return Err(RotationError::Undecryptable {
            census: Box::new(census),
        });
    }
    let mut report = Rotation {
        current: current.clone(),
        checked: census.total(),
        ..Rotation::default()
    };
    while report.passes < MAX_PASSES {
        report.passes += 1;
        let skipped_before = report.skipped;
        for store in Store::ALL {
            let mut after = String::new();
            loop {
                let last = write_transaction(conn, |conn| {
                    rotate_batch(conn, keyring, store, &after, batch, &mut report)
                })?;
                report.batches += 1;
                match last {
                    Some(user_id) => after = user_id,
                    None => break,
                }
            }
        }
        report.remaining = count_not_under(conn, &current)?;
        // Another pass only helps rows that were skipped because they changed.
        if report.remaining == 0 || report.skipped == skipped_before {
            break;
        }
    }
    if report.remaining == 0 {
        AppSecrets::set(conn, RECORDED_KEY, &current)?;
        report.recorded_moved = true;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One batch of rows after `after` not under the current key; returns the last user id
/// seen, or `None` when this was the last batch of `store`.
fn rotate_batch(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    store: Store,
    after: &str,
    batch: i64,
    report: &mut Rotation,
) -> Result<Option<String>, RotationError> {
    let rows = page(conn, store, after, Some(keyring.current_id()), batch)?;
    for (user_id, ciphertext, key_id) in &rows {
        let old = Sealed {
            key_id: key_id.clone(),
            ciphertext: ciphertext.clone(),
        };
        let plaintext = match keyring.open(user_id, &old) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                tracing::warn!(table = store.table(), %user_id, %key_id, error = %e,
                    "a secret written during the rotation does not open; left as it is");
                report.unreadable_meanwhile += 1;
                continue;
            }
        };
        let new = keyring.seal(user_id, &plaintext)?;
        if replace_if_unchanged(conn, store, user_id, &old, &new)? {
            match store {
                Store::Authenticators => report.rotated_authenticators += 1,
                Store::PendingEnrolments => report.rotated_pending += 1,
            }
        } else {
            report.skipped += 1;
        }
    }
    Ok(match rows.last() {
        Some((user_id, _, _)) if rows.len() as i64 == batch => Some(user_id.clone()),
        _ => None,
    })
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Checked {}: all decrypt with the configured keys.",
            plural(self.checked, "stored secret", "stored secrets")
        )?;
        let seconds = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "Re-encrypted {} under key {} ({}, {}) in {}; {seconds:.2} s with the check ({:.0} per second).",
            plural(self.rotated(), "secret", "secrets"),
            self.current,
            plural(
                self.rotated_authenticators,
                "authenticator",
                "authenticators"
            ),
            plural(
                self.rotated_pending,
                "pending enrolment",
                "pending enrolments"
            ),
            plural(self.batches, "batch", "batches"),
            self.rotated() as f64 / seconds.max(1e-6),
        )?;
        if self.skipped > 0 {
            writeln!(
                f,
                "Skipped {} that changed while being re-encrypted (left as written, looked at again).",
                plural(self.skipped, "secret", "secrets")
            )?;
        }
        if self.unreadable_meanwhile > 0 {
            writeln!(
                f,
                "{} written during the rotation under a key that is not configured were left as they are.",
                plural(self.unreadable_meanwhile, "secret", "secrets")
            )?;
        }
        write!(
            f,
            "{} on old keys.",
            plural(self.remaining as u64, "secret remains", "secrets remain")
        )?;
        if self.recorded_moved {
            write!(
                f,
                " The database now records key {}: servers must have it as ENCRYPTION_KEY, and \
                 the old keys can be removed from ENCRYPTION_KEYS_PREVIOUS.",
                self.current
            )?;
        }
        Ok(())
    }
}

/// The keyring an admin command works with: the configured keys, never a new key file.
fn keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    Keyring::load(
        settings.encryption_key.as_deref(),
        &settings.encryption_keys_previous,
        &settings.data_dir,
        IfNoKey::Refuse,
    )
}

/// `tessera check-keys`: prints the census; fails if a secret does not open or servers
/// with these keys would not start.
pub fn check_keys_command(settings: &Settings, db: &Db) -> anyhow::Result<()> {
    let keyring = keyring(settings)?;
    db.migrate()?;
    let census = Census::take(&mut *db.get()?, &keyring, i64::from(DEFAULT_BATCH))?;
    println!("{census}");
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
pub fn rotate_key_command(settings: &Settings, db: &Db, batch: u32) -> anyhow::Result<()> {
    let keyring = keyring(settings)?;
    db.migrate()?;
    let report = rotate(&mut *db.get()?, &keyring, batch).map_err(|e| match e {
        // Batches already committed stay re-encrypted: nothing is lost by stopping here.
        RotationError::Database(e) => anyhow::anyhow!(
            "the rotation stopped on a database error: {e}. Secrets re-encrypted so far stay \
             so (each under a key still configured); run `tessera rotate-key` again to finish."
        ),
        other => other.into(),
    })?;
    println!("{report}");
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
