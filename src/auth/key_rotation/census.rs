//! Which key protects how many stored secrets, and whether they all open: every secret for
//! `tessera check-keys` and before a rotation, one per key and table at start-up.

use std::collections::BTreeMap;

use diesel::QueryResult;

use super::{RECORDED_KEY, Role, Store, page};
use crate::auth::secret_box::{Keyring, Sealed};
use crate::db::AnyConnection;
use crate::db::models::{AppSecrets, SealedSecrets};

/// Undecryptable secrets listed by name; the rest are only counted.
const MAX_LISTED: usize = 20;

/// The secrets under one key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCount {
    pub authenticators: u64,
    pub pending_enrolments: u64,
    /// Of those tried, how many did not open.
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
    /// The first few secrets that did not open, in the order they were tried.
    pub failures: Vec<Failure>,
}

impl Census {
    /// Reads and tries to open every stored secret, `batch` rows at a time.
    pub fn take(conn: &mut AnyConnection, keyring: &Keyring, batch: i64) -> QueryResult<Census> {
        let mut census = Census::empty(keyring);
        for store in Store::ALL {
            let mut after = String::new();
            loop {
                let rows = page(conn, store, &after, None, batch)?;
                for (user_id, ciphertext, key_id) in &rows {
                    census.count(keyring, store, key_id, 1);
                    census.try_open(keyring, store, user_id, key_id, ciphertext);
                }
                match rows.last() {
                    Some((user_id, _, _)) if rows.len() as i64 == batch => after = user_id.clone(),
                    _ => break,
                }
            }
        }
        census.read_recorded(conn, keyring)?;
        Ok(census)
    }

    /// Counts every stored secret but opens only one per key id and table (the first by
    /// user id): enough to tell a wrong or altered key, and cheap with many users.
    pub fn sample(conn: &mut AnyConnection, keyring: &Keyring) -> QueryResult<Census> {
        let mut census = Census::empty(keyring);
        for store in Store::ALL {
            let keys = SealedSecrets::count_by_key(conn, store.sealed_table())?;
            for (key_id, n, first) in keys {
                census.count(keyring, store, &key_id, n.unsigned_abs());
                let Some(user_id) = first else { continue };
                // Gone since it was counted (2FA turned off meanwhile): nothing to try.
                let found =
                    SealedSecrets::ciphertext(conn, store.sealed_table(), &user_id, &key_id)?;
                if let Some(ciphertext) = found {
                    census.try_open(keyring, store, &user_id, &key_id, &ciphertext);
                }
            }
        }
        census.read_recorded(conn, keyring)?;
        Ok(census)
    }

    /// The configured keys, each protecting nothing yet.
    fn empty(keyring: &Keyring) -> Census {
        let keys = std::iter::once(keyring.current_id())
            .chain(keyring.previous_ids())
            .map(|id| (id.to_owned(), (Role::of(keyring, id), KeyCount::default())))
            .collect();
        Census {
            current: keyring.current_id().to_owned(),
            keys,
            recorded: None,
            failures: Vec::new(),
        }
    }

    fn entry(&mut self, keyring: &Keyring, key_id: &str) -> &mut KeyCount {
        &mut self
            .keys
            .entry(key_id.to_owned())
            .or_insert_with(|| (Role::of(keyring, key_id), KeyCount::default()))
            .1
    }

    fn count(&mut self, keyring: &Keyring, store: Store, key_id: &str, n: u64) {
        let count = self.entry(keyring, key_id);
        match store {
            Store::Authenticators => count.authenticators += n,
            Store::PendingEnrolments => count.pending_enrolments += n,
        }
    }

    fn try_open(
        &mut self,
        keyring: &Keyring,
        store: Store,
        user_id: &str,
        key_id: &str,
        ciphertext: &str,
    ) {
        let sealed = Sealed {
            key_id: key_id.to_owned(),
            ciphertext: ciphertext.to_owned(),
        };
        if let Err(e) = keyring.open(user_id, &sealed) {
            self.entry(keyring, key_id).undecryptable += 1;
            if self.failures.len() < MAX_LISTED {
                self.failures.push(Failure {
                    store,
                    user_id: user_id.to_owned(),
                    key_id: key_id.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }

    fn read_recorded(&mut self, conn: &mut AnyConnection, keyring: &Keyring) -> QueryResult<()> {
        self.recorded = AppSecrets::get(conn, RECORDED_KEY)?.map(|id| {
            let role = Role::of(keyring, &id);
            (id, role)
        });
        Ok(())
    }

    /// How `key_id` relates to the keyring the census was taken with.
    pub fn role(&self, key_id: &str) -> Role {
        self.keys
            .get(key_id)
            .map_or(Role::Unknown, |(role, _)| *role)
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
