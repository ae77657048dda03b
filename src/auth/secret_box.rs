//! Encryption at rest for TOTP secrets: XChaCha20-Poly1305 under a server key.
//!
//! Invariants:
//! - Every ciphertext is `base64(nonce ‖ ciphertext ‖ tag)` with a fresh 192-bit random
//!   nonce, and is stored beside the id of the key that sealed it.
//! - The owner's user id is the associated data: a ciphertext copied onto another user's
//!   row does not decrypt.
//! - A key id is derived from the key itself, so ids never collide or need choosing, and
//!   rotation (several keys, one current) needs no schema change.
//! - A keyring holds the current key (`ENCRYPTION_KEY`, or the key file) first and then the
//!   previous keys (`ENCRYPTION_KEYS_PREVIOUS`), each once: only the current key seals, any
//!   of them opens what it sealed (see `auth::key_rotation`).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

pub use crate::db::models::Sealed;

const NONCE_LEN: usize = 24;
const KEY_FILE: &str = "encryption.key";
const CURRENT_KEY: &str = "ENCRYPTION_KEY";
const PREVIOUS_KEYS: &str = "ENCRYPTION_KEYS_PREVIOUS";

/// What is wrong with a configured key. `name` says which setting (and which entry of a
/// list) it came from; the key itself is never part of a message.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{name} is not valid base64; generate a key with `openssl rand -base64 32`")]
    NotBase64 { name: String },
    #[error(
        "{name} must decode to exactly 32 bytes (it decodes to {len}); generate a key with `openssl rand -base64 32`"
    )]
    WrongLength { name: String, len: usize },
    #[error("{name} is empty (entries are separated by commas)")]
    Empty { name: String },
    #[error("{name} is the same key as {first}; list each key once")]
    Repeated { name: String, first: String },
}

/// A key as configured: 32 bytes, zeroed when dropped. Parsed once at start, so a bad key
/// is a start-up error naming the setting, never a panic later.
#[derive(Clone)]
pub struct KeyMaterial(Zeroizing<[u8; 32]>);

/// Shows the key's id only.
impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({})", self.id())
    }
}

impl KeyMaterial {
    /// One key from its base64 form; `name` is the setting it came from, for the message.
    pub fn parse(encoded: &str, name: &str) -> Result<KeyMaterial, KeyError> {
        let decoded = B64
            .decode(encoded.trim())
            .map_err(|_| KeyError::NotBase64 {
                name: name.to_owned(),
            })?;
        let bytes = Zeroizing::new(decoded);
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength {
                name: name.to_owned(),
                len: bytes.len(),
            })?;
        Ok(KeyMaterial(Zeroizing::new(key)))
    }

    pub fn id(&self) -> String {
        key_id(self.0.as_slice())
    }

    fn sealing_key(&self) -> SealingKey {
        SealingKey {
            id: self.id(),
            cipher: XChaCha20Poly1305::new(&Key::from(*self.0)),
        }
    }
}

/// `ENCRYPTION_KEYS_PREVIOUS`: comma-separated base64 keys. Every bad entry is reported, by
/// its position ("entry 2 of 3"), so the operator knows which one to fix.
pub fn parse_previous_keys(value: &str) -> Result<Vec<KeyMaterial>, Vec<KeyError>> {
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    let total = entries.len();
    let name = |i: usize| format!("{PREVIOUS_KEYS} entry {} of {total}", i + 1);
    let mut keys: Vec<(usize, KeyMaterial)> = Vec::new();
    let mut problems = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            problems.push(KeyError::Empty { name: name(i) });
            continue;
        }
        match KeyMaterial::parse(entry, &name(i)) {
            Ok(key) => match keys.iter().find(|(_, k)| *k.0 == *key.0) {
                Some((first, _)) => problems.push(KeyError::Repeated {
                    name: name(i),
                    first: format!("entry {}", first + 1),
                }),
                None => keys.push((i, key)),
            },
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(keys.into_iter().map(|(_, k)| k).collect())
    } else {
        Err(problems)
    }
}

/// What to do when neither `ENCRYPTION_KEY` nor the key file exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfNoKey {
    /// The server's first start: make the key file.
    Generate,
    /// Admin commands: a new key would open nothing stored, so say so instead.
    Refuse,
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

impl Keyring {
    /// A keyring with one key, from its base64 form (`ENCRYPTION_KEY`).
    pub fn from_base64(encoded: &str) -> Result<Keyring, KeyError> {
        Keyring::new(&KeyMaterial::parse(encoded, CURRENT_KEY)?, &[])
    }

    /// `current` seals and opens; `previous` (in the order given) only open. The current key
    /// listed again among the previous ones is refused: it is almost always a deployment
    /// that meant to put the *new* key in `ENCRYPTION_KEY`.
    pub fn new(current: &KeyMaterial, previous: &[KeyMaterial]) -> Result<Keyring, KeyError> {
        let mut keys = vec![current.sealing_key()];
        for (i, key) in previous.iter().enumerate() {
            if *key.0 == *current.0 {
                return Err(KeyError::Repeated {
                    name: format!("{PREVIOUS_KEYS} entry {} of {}", i + 1, previous.len()),
                    first: format!("the current key ({CURRENT_KEY} or the key file)"),
                });
            }
            keys.push(key.sealing_key());
        }
        Ok(Keyring { keys })
    }

    /// The current key is `ENCRYPTION_KEY` if set; otherwise the key file in the data
    /// folder, created with mode 0600 on first start (with a loud warning to back it up)
    /// when `if_none` allows. `previous` are the keys of `ENCRYPTION_KEYS_PREVIOUS`.
    pub fn load(
        configured: Option<&str>,
        previous: &[KeyMaterial],
        data_dir: &Path,
        if_none: IfNoKey,
    ) -> anyhow::Result<Keyring> {
        if let Some(encoded) = configured {
            return Ok(Keyring::new(
                &KeyMaterial::parse(encoded, CURRENT_KEY)?,
                previous,
            )?);
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(encoded) => {
                let current = KeyMaterial::parse(&encoded, "the key file").with_context(|| {
                    format!("the key file {} is not a valid key", path.display())
                })?;
                Ok(Keyring::new(&current, previous)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && if_none == IfNoKey::Refuse => {
                anyhow::bail!(
                    "no encryption key is configured: set {CURRENT_KEY} (or run this where the \
                     key file {} exists)",
                    path.display()
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let current = create_key_file(&path)?;
                let keyring = Keyring::new(&current, previous)?;
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

    /// The ids of the keys that only open (`ENCRYPTION_KEYS_PREVIOUS`), in order.
    pub fn previous_ids(&self) -> impl Iterator<Item = &str> {
        self.keys[1..].iter().map(|k| k.id.as_str())
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

fn create_key_file(path: &Path) -> anyhow::Result<KeyMaterial> {
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
    Ok(KeyMaterial(key))
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
            Err(KeyError::NotBase64 { .. })
        ));
        assert!(matches!(
            Keyring::from_base64(&B64.encode([1u8; 16])),
            Err(KeyError::WrongLength { len: 16, .. })
        ));
        let message = Keyring::from_base64("not base64!")
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with("ENCRYPTION_KEY is not valid base64"),
            "{message}"
        );
    }

    fn encoded(byte: u8) -> String {
        B64.encode([byte; 32])
    }

    #[test]
    fn previous_keys_are_read_in_order_with_spaces_allowed() {
        let keys = parse_previous_keys(&format!(" {} ,{}", encoded(1), encoded(2))).unwrap();
        let ids: Vec<String> = keys.iter().map(KeyMaterial::id).collect();
        let expected: Vec<String> = [1, 2]
            .into_iter()
            .map(|b| KeyMaterial::parse(&encoded(b), "k").unwrap().id())
            .collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn every_bad_previous_key_is_named_by_its_position() {
        let value = format!(
            "{},not base64!,{},,{}",
            encoded(1),
            B64.encode([3u8; 5]),
            encoded(1)
        );
        let problems: Vec<String> = parse_previous_keys(&value)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "ENCRYPTION_KEYS_PREVIOUS entry 2 of 5 is not valid base64; generate a key with `openssl rand -base64 32`",
                "ENCRYPTION_KEYS_PREVIOUS entry 3 of 5 must decode to exactly 32 bytes (it decodes to 5); generate a key with `openssl rand -base64 32`",
                "ENCRYPTION_KEYS_PREVIOUS entry 4 of 5 is empty (entries are separated by commas)",
                "ENCRYPTION_KEYS_PREVIOUS entry 5 of 5 is the same key as entry 1; list each key once",
            ]
        );
        assert!(
            problems.iter().all(|p| !p.contains(&encoded(1))),
            "no message shows a key"
        );
    }

    #[test]
    fn the_current_key_is_refused_among_the_previous_ones() {
        let current = KeyMaterial::parse(&encoded(1), "ENCRYPTION_KEY").unwrap();
        let previous = parse_previous_keys(&format!("{},{}", encoded(2), encoded(1))).unwrap();
        let err = Keyring::new(&current, &previous).err().unwrap().to_string();
        assert!(
            err.starts_with(
                "ENCRYPTION_KEYS_PREVIOUS entry 2 of 2 is the same key as the current key"
            ),
            "{err}"
        );
    }

    #[test]
    fn previous_keys_open_but_only_the_current_key_seals() {
        let old = KeyMaterial::parse(&encoded(1), "old").unwrap();
        let new = KeyMaterial::parse(&encoded(2), "new").unwrap();
        let before = Keyring::new(&old, &[]).unwrap();
        let sealed_before = before.seal("u", b"secret").unwrap();

        let during = Keyring::new(&new, std::slice::from_ref(&old)).unwrap();
        assert_eq!(during.current_id(), new.id());
        assert_eq!(during.previous_ids().collect::<Vec<_>>(), [old.id()]);
        assert_eq!(
            during.open("u", &sealed_before).unwrap().as_slice(),
            b"secret"
        );
        let sealed_during = during.seal("u", b"secret").unwrap();
        assert_eq!(sealed_during.key_id, new.id());

        // The old key alone cannot open what the new one sealed, and says which key it needs.
        assert!(matches!(
            before.open("u", &sealed_during),
            Err(OpenError::UnknownKey(id)) if id == new.id()
        ));
    }

    #[test]
    fn commands_do_not_invent_a_key() {
        let dir = std::env::temp_dir().join(format!(
            "tessera-nokey-{}",
            crate::random::token::<8>().unwrap()
        ));
        let err = Keyring::load(None, &[], &dir, IfNoKey::Refuse)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no encryption key is configured"), "{err}");
        assert!(!dir.join(KEY_FILE).exists());
    }

    #[test]
    fn a_key_file_is_created_once_with_private_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "tessera-key-{}",
            crate::random::token::<8>().unwrap()
        ));
        let first = Keyring::load(None, &[], &dir, IfNoKey::Generate).unwrap();
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Keyring::load(None, &[], &dir, IfNoKey::Refuse).unwrap();
        assert_eq!(first.current_id(), second.current_id());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
