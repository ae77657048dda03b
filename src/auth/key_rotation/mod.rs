//! Key rotation: which key protects each stored TOTP secret (`census`, for
//! `tessera check-keys` and the start-up check), and re-encrypting them all under the
//! current key (`rotation`, for `tessera rotate-key`). What those commands print is
//! worded in `cli`; this module returns data.
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
//! The queries are `db::models::SealedSecrets` (beside the two tables' other queries); this
//! module keeps the crypto, the batching and the order of the steps.

mod census;
mod rotation;

pub use census::{Census, Failure, KeyCount};
pub use rotation::{Rotation, RotationError, rotate};

use diesel::QueryResult;

use crate::auth::secret_box::{Keyring, Sealed};
use crate::db::AnyConnection;
use crate::db::models::{SealedRow, SealedSecrets, SealedTable};

/// Rows per transaction unless `--batch-size` says otherwise: big enough to be quick, small
/// enough that a serving instance never waits long for SQLite's write lock.
pub const DEFAULT_BATCH: u32 = 500;
/// The `app_secrets` entry that records the database's key (see `startup::check_keys`).
pub const RECORDED_KEY: &str = "encryption_key_id";

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

    fn sealed_table(self) -> SealedTable {
        match self {
            Store::Authenticators => SealedTable::TotpCredentials,
            Store::PendingEnrolments => SealedTable::PendingEnrolments,
        }
    }
}

/// Up to `limit` rows of `store` with a user id after `after`, in user id order; with
/// `not_under`, only rows sealed by another key.
fn page(
    conn: &mut AnyConnection,
    store: Store,
    after: &str,
    not_under: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<SealedRow>> {
    SealedSecrets::page(conn, store.sealed_table(), after, not_under, limit)
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
    SealedSecrets::replace_if_unchanged(conn, store.sealed_table(), user_id, old, new)
}

/// How a key id relates to the configured keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Current,
    Previous,
    Unknown,
}

impl Role {
    pub fn of(keyring: &Keyring, key_id: &str) -> Role {
        if key_id == keyring.current_id() {
            Role::Current
        } else if keyring.knows(key_id) {
            Role::Previous
        } else {
            Role::Unknown
        }
    }
}
