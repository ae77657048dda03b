//! Encryption at rest for TOTP secrets: XChaCha20-Poly1305 under a server key.
//!
//! Invariants:
//! - Every ciphertext is `base64(nonce ‖ ciphertext ‖ tag)` with a fresh 192-bit random
//!   nonce, and is stored beside the id of the key that sealed it.
//! - The owner's user id is the associated data: a ciphertext copied onto another user's
//!   row does not decrypt.
//! - A key id is derived from the key itself, so ids never collide or need choosing, and
//!   rotation (several keys, one current) needs no schema change.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 24;
const KEY_FILE: &str = "encryption.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("ENCRYPTION_KEY is not valid base64; generate one with `openssl rand -base64 32`")]
    NotBase64,
    #[error(
        "ENCRYPTION_KEY must decode to exactly 32 bytes (it decodes to {0}); generate one with `openssl rand -base64 32`"
    )]
    WrongLength(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no configured key has the id {0}")]
    UnknownKey(String),
    #[error("the stored secret is damaged or does not belong to this user")]
    Inauthentic,
}

struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys this server may use. The first is the current one: everything new is sealed
/// with it; the others (rotation) may only open.
pub struct Keyring {
    keys: Vec<SealingKey>,
}

/// A sealed secret as stored in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: String,
}

impl Keyring {
    /// A keyring with one key, from its base64 form.
    pub fn from_base64(encoded: &str) -> Result<Keyring, KeyError> {
        let bytes = Zeroizing::new(
            B64.decode(encoded.trim())
                .map_err(|_| KeyError::NotBase64)?,
        );
        if bytes.len() != 32 {
            return Err(KeyError::WrongLength(bytes.len()));
        }
        let key =
            Key::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Keyring {
            keys: vec![SealingKey {
                id: key_id(&bytes),
                cipher: XChaCha20Poly1305::new(&key),
            }],
        })
    }

    /// `ENCRYPTION_KEY` if set; otherwise the key file in the data folder, created with
    /// mode 0600 on first start (with a loud warning to back it up).
    pub fn load(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Keyring> {
        if let Some(encoded) = configured {
            return Ok(Keyring::from_base64(encoded)?);
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(encoded) => Keyring::from_base64(&encoded)
                .with_context(|| format!("the key file {} is not a valid key", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keyring = create_key_file(&path)?;
                tracing::warn!(
                    path = %path.display(),
                    key_id = keyring.current_id(),
                    "ENCRYPTION_KEY is not set, so a new encryption key was generated and written to \
                     this file. BACK IT UP: without it no one can sign in with 2FA. In production, \
                     set ENCRYPTION_KEY instead (every instance needs the same key)."
                );
                Ok(keyring)
            }
            Err(e) => {
                Err(e).with_context(|| format!("could not read the key file {}", path.display()))
            }
        }
    }

    pub fn current_id(&self) -> &str {
        &self.current().id
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    fn current(&self) -> &SealingKey {
        // `keys` is never empty: every constructor puts the current key first.
        &self.keys[0]
    }

    pub fn seal(&self, owner_id: &str, plaintext: &[u8]) -> anyhow::Result<Sealed> {
        let key = self.current();
        let nonce_bytes: [u8; NONCE_LEN] = crate::random::bytes()?;
        let nonce = XNonce::from(nonce_bytes);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: owner_id.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(Sealed {
            key_id: key.id.clone(),
            ciphertext: B64.encode(out),
        })
    }

    pub fn open(&self, owner_id: &str, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let raw = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| OpenError::Inauthentic)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError::Inauthentic);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Inauthentic)?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: owner_id.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Inauthentic)
    }
}

/// `k` + 8 hex digits of SHA-256 over a label and the key: names the key without
/// revealing anything usable about it.
fn key_id(key: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"tessera encryption key id\0");
    h.update(key);
    format!("k{}", &crate::random::hex(&h.finalize())[..8])
}

fn create_key_file(path: &Path) -> anyhow::Result<Keyring> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let key: Zeroizing<[u8; 32]> = Zeroizing::new(crate::random::bytes()?);
    let encoded = Zeroizing::new(B64.encode(*key));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("could not create the key file {}", path.display()))?;
    file.write_all(format!("{}\n", *encoded).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("could not write the key file {}", path.display()))?;
    Ok(Keyring::from_base64(&encoded)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::from_base64(&B64.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_for_its_owner() {
        let k = keyring();
        let sealed = k.seal("user-1", b"twenty bytes secret!").unwrap();
        assert_eq!(sealed.key_id, k.current_id());
        assert_eq!(
            k.open("user-1", &sealed).unwrap().as_slice(),
            b"twenty bytes secret!"
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let k = keyring();
        assert_ne!(k.seal("u", b"same").unwrap(), k.seal("u", b"same").unwrap());
    }

    #[test]
    fn another_users_id_does_not_open_it() {
        let k = keyring();
        let sealed = k.seal("user-1", b"secret").unwrap();
        assert!(matches!(
            k.open("user-2", &sealed),
            Err(OpenError::Inauthentic)
        ));
    }

    #[test]
    fn a_tampered_ciphertext_does_not_open() {
        let k = keyring();
        let sealed = k.seal("user-1", b"secret").unwrap();
        let mut raw = B64.decode(&sealed.ciphertext).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let tampered = Sealed {
                ciphertext: B64.encode(&raw),
                ..sealed.clone()
            };
            assert!(matches!(
                k.open("user-1", &tampered),
                Err(OpenError::Inauthentic)
            ));
            raw[i] ^= 1;
        }
        let truncated = Sealed {
            ciphertext: B64.encode(&raw[..10]),
            ..sealed.clone()
        };
        assert!(k.open("user-1", &truncated).is_err());
    }

    #[test]
    fn another_key_does_not_open_it() {
        let other = Keyring::from_base64(&B64.encode([8u8; 32])).unwrap();
        let sealed = keyring().seal("u", b"secret").unwrap();
        assert_ne!(other.current_id(), keyring().current_id());
        assert!(matches!(
            other.open("u", &sealed),
            Err(OpenError::UnknownKey(_))
        ));
        let relabelled = Sealed {
            key_id: other.current_id().to_owned(),
            ..sealed
        };
        assert!(matches!(
            other.open("u", &relabelled),
            Err(OpenError::Inauthentic)
        ));
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        assert!(matches!(
            Keyring::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        ));
        assert!(matches!(
            Keyring::from_base64(&B64.encode([1u8; 16])),
            Err(KeyError::WrongLength(16))
        ));
    }

    #[test]
    fn a_key_file_is_created_once_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "tessera-key-{}",
            crate::random::token::<8>().unwrap()
        ));
        let first = Keyring::load(None, &dir).unwrap();
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Keyring::load(None, &dir).unwrap();
        assert_eq!(first.current_id(), second.current_id());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
