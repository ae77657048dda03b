//! The WebAuthn relying party: who we are to a security key (the host of `PUBLIC_URL`),
//! what we store of a key, and what a page is sent. The ceremonies themselves, and every
//! rule about who may answer them, are `auth::factors::security_key`.
//!
//! Invariants:
//! - The relying party id is the host of `PUBLIC_URL` and the only origin accepted is
//!   `PUBLIC_URL` (any port only for `localhost`, for development and tests). An IP address
//!   is not a valid relying party id: keys are then unavailable, and start-up says so.
//! - Nothing here is secret (public keys, challenges), but ceremony state never leaves the
//!   server: a client holding its own challenge could answer it twice.
//! - What goes into a page's `<script type="application/json">` cannot end the element.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{Credential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError};
use webauthn_rs_proto::{
    CreationChallengeResponse, PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions, RequestChallengeResponse, ResidentKeyRequirement,
    UserVerificationPolicy,
};

/// How long a challenge may wait for its answer; the browser is told the same.
pub const CEREMONY_SECONDS: i64 = 5 * 60;

/// Our relying party, built once from the settings.
pub struct RelyingParty {
    webauthn: Webauthn,
}

/// Why security keys cannot be offered with this `PUBLIC_URL`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

impl RelyingParty {
    /// The relying party for `public_url` (origin) and its host (relying party id), named
    /// `name` on the authenticator's prompt.
    pub fn for_public_url(public_url: &str, name: &str) -> Result<RelyingParty, Unavailable> {
        let origin = Url::parse(public_url)
            .map_err(|e| Unavailable(format!("PUBLIC_URL {public_url} is not a URL: {e}")))?;
        let Some(host) = origin.domain() else {
            return Err(Unavailable(format!(
                "PUBLIC_URL {public_url} is an IP address; WebAuthn needs a name \
                 (use http://localhost:PORT for development)"
            )));
        };
        let webauthn = WebauthnBuilder::new(host, &origin)
            .and_then(|b| {
                b.rp_name(name)
                    .timeout(Duration::from_secs(CEREMONY_SECONDS as u64))
                    .allow_any_port(host == "localhost")
                    .allow_subdomains(false)
                    // PIN-less U2F keys must work as a second factor: user presence is
                    // enough for a security key (a passkey still needs verification).
                    .danger_set_user_presence_only_security_keys(true)
                    .build()
            })
            .map_err(|e| Unavailable(format!("PUBLIC_URL {public_url}: {e}")))?;
        Ok(RelyingParty { webauthn })
    }

    pub fn webauthn(&self) -> &Webauthn {
        &self.webauthn
    }
}

/// The user handle a key stores for `user_id` (the `user.id` of registration, returned by
/// a passkey at sign-in). Derived, never looked up by: a passkey's user is found by its
/// credential id, and the handle is then compared.
pub fn user_handle(user_id: &str) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"tessera webauthn user handle v1\0")
        .chain_update(user_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// A credential id as stored and compared: unpadded base64url of the raw bytes.
pub fn credential_id_text(raw: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A key as stored: the library's credential inside an envelope we version, so that a
/// later library type can be told from this one.
#[derive(Serialize, Deserialize)]
struct StoredCredential {
    v: u8,
    credential: Credential,
}

pub fn encode_credential(credential: &Credential) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&StoredCredential {
        v: 1,
        credential: credential.clone(),
    })?)
}

pub fn decode_credential(stored: &str) -> anyhow::Result<Credential> {
    let stored: StoredCredential = serde_json::from_str(stored)
        .map_err(|e| anyhow::anyhow!("a stored security key cannot be read: {e}"))?;
    anyhow::ensure!(
        stored.v == 1,
        "a stored security key has unknown version {}",
        stored.v
    );
    Ok(stored.credential)
}

/// What a registration page is sent: the options for a security key, and for a passkey.
pub fn registration_options(
    key: CreationChallengeResponse,
    passkey: CreationChallengeResponse,
) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Both {
        key: PublicKeyCredentialCreationOptions,
        passkey: PublicKeyCredentialCreationOptions,
    }
    page_json(&Both {
        key: key.public_key,
        passkey: discoverable(passkey).public_key,
    })
}

/// webauthn-rs's passkey asks for user verification but not for a discoverable (resident)
/// credential; a passkey that signs in from an empty sign-in page must be discoverable, so
/// the browser is asked for one. (The server cannot check residency; it checks user
/// verification, which is what makes signing in with the key alone safe.)
fn discoverable(mut passkey: CreationChallengeResponse) -> CreationChallengeResponse {
    if let Some(selection) = passkey.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Required);
        selection.require_resident_key = true;
    }
    passkey
}

/// What the second step's page is sent. `any_passkey`: among the keys offered is one
/// registered with user verification, which the browser must then ask for (the library
/// says "discouraged" for PIN-less keys; each key's own policy is enforced at the finish).
pub fn second_factor_options(
    request: RequestChallengeResponse,
    any_passkey: bool,
) -> anyhow::Result<String> {
    let mut options = request.public_key;
    if any_passkey {
        options.user_verification = UserVerificationPolicy::Preferred;
        options.hints = None;
    }
    page_json(&options)
}

/// What the sign-in page is sent for a passkey: only the public-key options, so the
/// browser shows its usual prompt when asked (the library's "conditional" mediation would
/// wait for autofill instead).
pub fn passkey_options(request: RequestChallengeResponse) -> anyhow::Result<String> {
    page_json::<PublicKeyCredentialRequestOptions>(&request.public_key)
}

/// JSON for a `<script type="application/json">` block, rendered unescaped: `<`, `>` and
/// `&` become `\u003c`, `\u003e`, `\u0026`, so nothing in it (a user's name) can close the
/// element or start markup, and the JSON means the same.
pub fn page_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string(value)?
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// Why an answer from a key was refused, for the audit log (never shown; the user gets one
/// message). Fixed words: the library's own messages may quote what was sent.
pub fn refusal(e: &WebauthnError) -> &'static str {
    use WebauthnError as E;
    match e {
        E::MismatchedChallenge => "the challenge does not match (a replay, or another session's)",
        E::InvalidRPOrigin => "made for another origin",
        E::InvalidRPIDHash => "made for another relying party",
        E::UserNotPresent => "the key was not touched",
        E::UserNotVerified => "the user was not verified (no PIN or biometric)",
        E::CredentialNotFound => "a key not registered to this account",
        E::AuthenticationFailure => "the signature does not verify",
        E::CredentialPossibleCompromise => "the key's signature counter went backwards",
        // Also what it answers for a key in the exclude list; the caller checks that first.
        E::CredentialAlteredAlgFromRequest => "the key used an algorithm that was not offered",
        E::CredentialBackupEligibilityInconsistent => "the key's backup eligibility changed",
        E::InvalidUserUniqueId => "no user handle (not a passkey)",
        E::CredentialMayNotBeHardwareBound => "the key says it is backed up but cannot be",
        _ => "the answer could not be verified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_address_cannot_be_a_relying_party() {
        let e = RelyingParty::for_public_url("http://127.0.0.1:8080", "Tessera")
            .err()
            .unwrap();
        assert!(e.0.contains("IP address"), "{e}");
        assert!(RelyingParty::for_public_url("http://localhost:8080", "Tessera").is_ok());
        assert!(RelyingParty::for_public_url("https://login.example.com", "Tessera").is_ok());
    }

    #[test]
    fn user_handles_are_stable_and_distinct() {
        assert_eq!(user_handle("a"), user_handle("a"));
        assert_ne!(user_handle("a"), user_handle("b"));
    }

    #[test]
    fn page_json_cannot_close_its_script_element() {
        let json = page_json(&serde_json::json!({"name": "</script><b>&"})).unwrap();
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["name"], "</script><b>&");
    }

    #[test]
    fn a_passkey_is_asked_to_be_discoverable_and_verified() {
        let rp = RelyingParty::for_public_url("http://localhost", "Tessera").unwrap();
        let handle = user_handle("u1");
        let (key, _) = rp
            .webauthn()
            .start_securitykey_registration(handle, "a@example.com", "A", None, None, None)
            .unwrap();
        let (passkey, _) = rp
            .webauthn()
            .start_passkey_registration(handle, "a@example.com", "A", None)
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&registration_options(key, passkey).unwrap()).unwrap();
        let selection = &json["passkey"]["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required", "{json}");
        assert_eq!(selection["requireResidentKey"], true);
        assert_eq!(selection["userVerification"], "required");
        // A PIN-less key is not asked for verification.
        assert_eq!(
            json["key"]["authenticatorSelection"]["userVerification"],
            "discouraged"
        );
        assert_eq!(json["key"]["rp"]["id"], "localhost");
    }

    #[test]
    fn a_stored_credential_keeps_its_version() {
        assert!(decode_credential(r#"{"v":2,"credential":{}}"#).is_err());
        assert!(decode_credential("not json").is_err());
    }
}
