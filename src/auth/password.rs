//! Password hashing with argon2id.
//!
//! Invariants:
//! - Hashing runs on the blocking pool and at most `hash_concurrency` hashes run at once
//!   (each takes m KiB of memory); a login storm queues instead of exhausting memory.
//! - Verification reuses argon2's working memory: at most `hash_concurrency` buffers of
//!   m KiB exist, made once. Allocating m KiB per verification on whichever blocking
//!   thread ran it left a freed buffer in each thread's malloc arena (glibc raises its
//!   mmap threshold after the first free), so the server's RSS grew to hundreds of MiB
//!   under load; and every fresh buffer cost page faults on top of the hash.
//! - An unknown email is verified against a dummy hash made with the same parameters, so
//!   the answer takes as long as for a real account.
//! - Stored hashes may also be argon2i or bcrypt (imported from another system, see
//!   `crate::import`); they verify as usual and are replaced by an argon2id hash at the
//!   current parameters at the next successful sign-in ([`PasswordHasher::needs_rehash`]).

use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    /// OWASP's argon2id recommendation: m=19 MiB, t=2, p=1.
    fn default() -> Self {
        Argon2Settings {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// How a hash made with the current parameters begins.
    current_prefix: Arc<str>,
    dummy_hash: Arc<str>,
    permits: Arc<Semaphore>,
    memory: Arc<MemoryPool>,
}

/// argon2 working memory to reuse, one buffer per hash that may run at once (the
/// semaphore's permits); a buffer of another size (a hash with foreign parameters) is
/// made for the occasion and not kept.
struct MemoryPool {
    blocks: usize,
    free: Mutex<Vec<Vec<Block>>>,
}

impl MemoryPool {
    fn take(&self, blocks: usize) -> Vec<Block> {
        if blocks == self.blocks
            && let Some(buffer) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()
        {
            return buffer;
        }
        vec![Block::default(); blocks]
    }

    fn give_back(&self, buffer: Vec<Block>) {
        if buffer.len() == self.blocks {
            self.free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(buffer);
        }
    }
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
            memory: Arc::new(MemoryPool {
                blocks: params.block_count(),
                free: Mutex::new(Vec::new()),
            }),
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

    /// The check [`Self::verify`] runs, for synchronous callers (benchmarks, the load tool's
    /// same-run reference cost).
    pub fn verify_blocking(&self, password: &str, stored: &str) -> anyhow::Result<bool> {
        verify_with(password, stored, &self.memory)
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
        let memory = self.memory.clone();
        let matched = self
            .run_bounded(move || verify_with(&password, &hash, &memory))
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

fn verify_with(password: &str, stored: &str, memory: &MemoryPool) -> anyhow::Result<bool> {
    match StoredHashKind::of(stored) {
        Ok(StoredHashKind::Bcrypt) => bcrypt::verify(password, stored)
            .map_err(|e| anyhow::anyhow!("a stored bcrypt password hash is malformed: {e}")),
        Ok(StoredHashKind::Argon2id | StoredHashKind::Argon2i) => {
            verify_argon2(password, stored, memory)
        }
        Err(e) => Err(anyhow::anyhow!("a stored password hash is malformed: {e}")),
    }
}

/// What argon2's `verify_password` does (algorithm, version and parameters from the PHC
/// string, constant-time comparison), but in pooled memory.
fn verify_argon2(password: &str, stored: &str, memory: &MemoryPool) -> anyhow::Result<bool> {
    let malformed =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("a stored password hash is malformed: {e}");
    let parsed = PasswordHash::new(stored).map_err(|e| malformed(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| malformed(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| malformed(&e))?
        .unwrap_or(Version::V0x13);
    let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(malformed(&"no salt or no hash"));
    };
    let mut computed = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    let mut blocks = memory.take(params.block_count());
    let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut computed,
        &mut blocks,
    );
    memory.give_back(blocks);
    result.map_err(|e| anyhow::anyhow!("password verification failed: {e}"))?;
    Ok(computed.as_slice().ct_eq(expected.as_bytes()).into())
}

/// The password hash formats Tessera can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredHashKind {
    Argon2id,
    /// Older argon2 variant (e.g. from Django); re-hashed at the next sign-in.
    Argon2i,
    /// `$2a$`, `$2b$` or `$2y$` (GitLab, Laravel, Django's bcrypt hashers); re-hashed at the
    /// next sign-in.
    Bcrypt,
}

/// Largest argon2 memory cost accepted from an imported hash (256 MiB): a hash is computed
/// for every sign-in attempt, so a huge `m` in a foreign hash would be a memory bomb.
const MAX_FOREIGN_ARGON2_KIB: u32 = 256 * 1024;

impl StoredHashKind {
    /// Parses a stored PHC (or bcrypt modular crypt) string far enough to know it can be
    /// verified: algorithm, version, parameters within limits, salt and hash present.
    pub fn of(stored: &str) -> Result<StoredHashKind, String> {
        if stored.starts_with("$2") {
            let parts: bcrypt::HashParts = stored
                .parse()
                .map_err(|e| format!("not a valid bcrypt hash ({e})"))?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err("the bcrypt cost must be from 4 to 31".into());
            }
            return Ok(StoredHashKind::Bcrypt);
        }
        let parsed = PasswordHash::new(stored)
            .map_err(|e| format!("not a PHC-format password hash ({e})"))?;
        let kind = match parsed.algorithm.as_str() {
            "argon2id" => StoredHashKind::Argon2id,
            "argon2i" => StoredHashKind::Argon2i,
            other => {
                return Err(format!(
                    "unsupported hash algorithm {other:?}: use argon2id, argon2i or bcrypt"
                ));
            }
        };
        let params =
            Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters ({e})"))?;
        if params.m_cost() > MAX_FOREIGN_ARGON2_KIB {
            return Err(format!(
                "argon2 memory cost m={} KiB is above the {MAX_FOREIGN_ARGON2_KIB} KiB accepted",
                params.m_cost()
            ));
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err("the argon2 hash has no salt or no hash part".into());
        }
        Ok(kind)
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
        assert!(
            hasher
                .verify_blocking("correct horse battery", &hash)
                .unwrap()
        );
        assert!(
            !hasher
                .verify_blocking("wrong horse battery", &hash)
                .unwrap()
        );
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
    fn pooled_verification_agrees_with_argon2s_own_and_keeps_one_buffer() {
        use argon2::password_hash::PasswordVerifier as _;
        let hasher = PasswordHasher::new(light(), 2).unwrap();
        let own = hasher.hash_blocking("pw one").unwrap();
        // Another algorithm and memory size than the configured ones.
        let foreign = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(128, 2, 1, Some(24)).unwrap(),
        )
        .hash_password(b"pw one")
        .unwrap()
        .to_string();
        for stored in [&own, &foreign] {
            let parsed = PasswordHash::new(stored).unwrap();
            for password in ["pw one", "pw two"] {
                let theirs = Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(hasher.verify_blocking(password, stored).unwrap(), theirs);
            }
        }
        let kept = hasher.memory.free.lock().unwrap();
        assert_eq!(kept.len(), 1, "one buffer, reused");
        assert_eq!(kept[0].len(), 64);
    }

    #[test]
    fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = PasswordHasher::new(light(), 1).unwrap();
        assert!(hasher.verify_blocking("x", "not a hash").is_err());
    }

    #[test]
    fn argon2i_and_bcrypt_hashes_verify_and_need_rehashing() {
        let hasher = PasswordHasher::new(light(), 1).unwrap();
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"legacy password")
        .unwrap()
        .to_string();
        assert!(argon2i.starts_with("$argon2i$"), "{argon2i}");
        let bcrypt = bcrypt::hash("legacy password", 4).unwrap();
        for stored in [&argon2i, &bcrypt] {
            assert!(hasher.verify_blocking("legacy password", stored).unwrap());
            assert!(!hasher.verify_blocking("another password", stored).unwrap());
            assert!(hasher.needs_rehash(stored));
        }
        assert_eq!(StoredHashKind::of(&argon2i), Ok(StoredHashKind::Argon2i));
        assert_eq!(StoredHashKind::of(&bcrypt), Ok(StoredHashKind::Bcrypt));
        let argon2id = hasher.hash_blocking("x").unwrap();
        assert_eq!(StoredHashKind::of(&argon2id), Ok(StoredHashKind::Argon2id));
    }

    #[test]
    fn unsupported_or_damaged_hashes_are_named() {
        for (stored, expected) in [
            ("$2b$12$tooshort", "bcrypt"),
            (
                "$2b$03$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01232",
                "cost",
            ),
            (
                "$argon2d$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "argon2d",
            ),
            (
                "$pbkdf2-sha256$i=29000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "pbkdf2",
            ),
            ("plain text", "PHC"),
            (
                "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "memory",
            ),
        ] {
            let err = StoredHashKind::of(stored).unwrap_err();
            assert!(err.contains(expected), "{stored}: {err}");
        }
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
