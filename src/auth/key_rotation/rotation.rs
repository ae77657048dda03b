//! Re-encrypting every secret not under the current key, in batches, each row by one
//! compare-and-set statement (see the invariants of `key_rotation`).

use std::time::{Duration, Instant};

use super::{Census, RECORDED_KEY, Store, page, replace_if_unchanged};
use crate::auth::secret_box::{Keyring, Sealed};
use crate::db::models::{AppSecrets, SealedSecrets};
use crate::db::{AnyConnection, write_transaction};

/// Passes over the tables while rows keep changing under the rotation.
const MAX_PASSES: u32 = 3;

/// Why a rotation did not run (or stopped); `cli` says what to do about each.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The database records a key the keyring lacks: a finished rotation could not move
    /// the record, and a server with this keyring would not start.
    #[error("this database records encryption key {recorded}, which is not configured")]
    UnknownRecordedKey { recorded: String },
    /// Some secrets do not open: re-encrypting the others would strand them. Nothing was
    /// changed.
    #[error(
        "{} of the stored secrets cannot be decrypted with the configured keys",
        census.undecryptable()
    )]
    Undecryptable { census: Box<Census> },
    /// Batches committed before it stay re-encrypted.
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
        report.remaining = SealedSecrets::count_not_under(conn, &current)?;
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
