//! Password hashing with argon2id.
//!
//! Invariants:
//! - Hashing runs on the blocking pool and at most `hash_concurrency` hashes run at once
//!   (each takes m KiB of memory); a login storm queues instead of exhausting memory.
//! - An unknown email is verified against a dummy hash made with the same parameters, so
//!   the answer takes as long as for a real account.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::Argon2Settings;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// How a hash made with the current parameters begins.
    current_prefix: Arc<str>,
    dummy_hash: Arc<str>,
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    pub fn new(settings: Argon2Settings, concurrency: usize) -> anyhow::Result<PasswordHasher> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let dummy_password = crate::random::token::<16>()?;
        let dummy_hash = hash_with(&params, &dummy_password)?;
        let current_prefix = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            settings.memory_kib, settings.iterations, settings.parallelism
        );
        Ok(PasswordHasher {
            params,
            current_prefix: current_prefix.into(),
            dummy_hash: dummy_hash.into(),
            permits: Arc::new(Semaphore::new(concurrency)),
        })
    }

    /// Hashes a new password (PHC string).
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let params = self.params.clone();
        let password = zeroize::Zeroizing::new(password.to_owned());
        self.run_bounded(move || hash_with(&params, &password))
            .await
    }

    /// The same, for synchronous callers (the command line).
    pub fn hash_blocking(&self, password: &str) -> anyhow::Result<String> {
        hash_with(&self.params, password)
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no
    /// account, so both cases cost one argon2 computation. A malformed stored hash is an
    /// error, not a "wrong password".
    pub async fn verify(&self, password: &str, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let password = zeroize::Zeroizing::new(password.to_owned());
        let matched = self
            .run_bounded(move || verify_with(&password, &hash))
            .await?;
        Ok(known && matched)
    }

    /// Whether `stored` was made with other parameters than today's. Such hashes are
    /// replaced at the next successful sign-in: otherwise, after the parameters are raised,
    /// old accounts would answer faster than the dummy hash and so reveal that they exist.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        !stored.starts_with(&*self.current_prefix)
    }

    /// Runs CPU-heavy hashing work (argon2, bcrypt) on the blocking pool, at most
    /// `hash_concurrency` at a time.
    pub async fn run_bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        actix_web::web::block(work).await?
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("password hashing failed: {e}"))
}

fn verify_with(password: &str, stored: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(stored)
        .map_err(|e| anyhow::anyhow!("a stored password hash is malformed: {e}"))?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("password verification failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn light() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn hashes_are_argon2id_with_the_configured_parameters() {
        let hasher = PasswordHasher::new(light(), 1).unwrap();
        let hash = hasher.hash_blocking("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(verify_with("correct horse battery", &hash).unwrap());
        assert!(!verify_with("wrong horse battery", &hash).unwrap());
    }

    #[test]
    fn hashes_with_other_parameters_need_rehashing() {
        let hasher = PasswordHasher::new(light(), 1).unwrap();
        let current = hasher.hash_blocking("pw").unwrap();
        assert!(!hasher.needs_rehash(&current));
        let stronger = PasswordHasher::new(
            Argon2Settings {
                memory_kib: 128,
                ..light()
            },
            1,
        )
        .unwrap();
        assert!(stronger.needs_rehash(&current));
        assert!(hasher.needs_rehash("$2b$12$abcdefghijklmnopqrstuv"));
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
        assert!(verify_with("x", "not a hash").is_err());
    }

    #[test]
    fn the_default_parameters_are_owasp_s() {
        let hasher = PasswordHasher::new(Argon2Settings::default(), 1).unwrap();
        assert!(
            hasher
                .dummy_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
    }
}
