//! TOTP per RFC 6238: SHA-1, 6 digits, 30-second steps, one step of drift either way.
//!
//! This module only computes and compares. The replay rule — a step is accepted only if it
//! is greater than every step accepted before for that user — is enforced by the caller
//! with one atomic SQL update on the returned step (see `db::models::TotpCredential`).

use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

use crate::auth::secret_box::{Keyring, Sealed};
use crate::domain::TotpCode;

pub const STEP_SECONDS: u64 = 30;
const DIGITS: u8 = 6;
const SKEW_STEPS: u16 = 1;
/// 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;

/// A shared secret in memory; zeroed when dropped.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// A fresh secret from the OS RNG.
    pub fn generate() -> Result<TotpSecret, getrandom::Error> {
        let bytes: Zeroizing<[u8; SECRET_BYTES]> = Zeroizing::new(crate::random::bytes()?);
        Ok(TotpSecret(Zeroizing::new(bytes.to_vec())))
    }

    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> TotpSecret {
        TotpSecret(bytes)
    }

    /// Decrypts `owner`'s stored secret. Failing here is unexpected: the start-up check
    /// refuses to serve when secrets do not decrypt.
    pub fn unseal(keyring: &Keyring, owner: &str, sealed: &Sealed) -> anyhow::Result<TotpSecret> {
        keyring.open(owner, sealed).map(TotpSecret).map_err(|e| {
            anyhow::anyhow!("the TOTP secret of user {owner} cannot be decrypted: {e}")
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 without padding, as authenticator apps expect it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(Secret::from(self.0.to_vec()).to_base32())
    }

    /// The manual key as shown: base32 in groups of four (`ABCD EFGH …`).
    pub fn to_grouped_base32(&self) -> Zeroizing<String> {
        let plain = self.to_base32();
        let mut grouped = Zeroizing::new(String::with_capacity(plain.len() * 5 / 4));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        grouped
    }

    fn totp(&self, digits: u8, issuer: Option<&str>, account: &str) -> anyhow::Result<Totp> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(digits)
            .with_skew(SKEW_STEPS)
            .with_step_duration(STEP_SECONDS)
            .with_secret(self.0.to_vec())
            .with_issuer(issuer)
            .with_account_name(account)
            .build()
            .map_err(|e| anyhow::anyhow!("TOTP parameters rejected: {e}"))
    }

    /// `otpauth://totp/Issuer:account?secret=…&issuer=Issuer` (no padding, SHA-1, 6 digits
    /// and 30 s left implicit: every app assumes them).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> anyhow::Result<Zeroizing<String>> {
        self.totp(DIGITS, Some(issuer), account)?
            .to_url()
            .map(Zeroizing::new)
            .map_err(|e| anyhow::anyhow!("could not build the otpauth URI: {e}"))
    }

    /// The step (`unix_time / 30`) whose code matches, trying one step before and after
    /// `unix_time`; `None` if none does. Comparison is over the whole code, every time.
    pub fn matching_step(&self, code: &TotpCode, unix_time: i64) -> anyhow::Result<Option<i64>> {
        let Ok(unix_time) = u64::try_from(unix_time) else {
            return Ok(None);
        };
        let totp = self.totp(DIGITS, None, "")?;
        Ok(totp.check(code.as_str(), unix_time).map(|step| step as i64))
    }

    /// The code for a moment, as an authenticator app would show it.
    #[cfg(test)]
    fn code_at(&self, unix_time: u64) -> anyhow::Result<String> {
        Ok(self.totp(DIGITS, None, "")?.generate(unix_time).to_string())
    }
}

/// The QR code of `uri` as an inline SVG element with `id="totp-qr"`.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    use qrcode::render::svg;
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| anyhow::anyhow!("could not draw the QR code: {e}"))?;
    let drawn = code
        .render::<svg::Color>()
        .module_dimensions(1, 1)
        .quiet_zone(true)
        .build();
    // Drop the XML prolog (meaningless inside HTML) and name the element for tests and
    // assistive technology.
    let start = drawn.find("<svg").unwrap_or(0);
    Ok(drawn[start..].replacen(
        "<svg ",
        "<svg id=\"totp-qr\" role=\"img\" aria-label=\"QR code to scan with your authenticator app\" ",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 rows (secret "12345678901234567890", 8 digits).
    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(Zeroizing::new(b"12345678901234567890".to_vec()))
    }

    #[test]
    fn rfc_6238_sha1_vectors() {
        let secret = rfc_secret();
        let totp = secret.totp(8, None, "").unwrap();
        for (time, expected) in RFC_VECTORS {
            assert_eq!(totp.generate(time).to_string(), expected, "T = {time}");
            // Six digits are the last six of the eight (dynamic truncation mod 10^6).
            assert_eq!(secret.code_at(time).unwrap(), expected[2..], "T = {time}");
        }
    }

    #[test]
    fn a_code_matches_its_own_step_and_one_either_side() {
        let secret = rfc_secret();
        let t: i64 = 1_111_111_111;
        let step = t / STEP_SECONDS as i64;
        let code = TotpCode::parse(&secret.code_at(t as u64).unwrap()).unwrap();
        let period = STEP_SECONDS as i64;
        for (at, expected) in [
            (t, Some(step)),
            (t + period, Some(step)),
            (t - period, Some(step)),
            (t + 2 * period, None),
            (t - 2 * period, None),
            (-1, None),
        ] {
            assert_eq!(
                secret.matching_step(&code, at).unwrap(),
                expected,
                "at {at}"
            );
        }
    }

    #[test]
    fn the_uri_names_issuer_and_account_without_padding() {
        let secret = rfc_secret();
        let uri = secret.otpauth_uri("Tessera", "ada@example.com").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Tessera:ada%40example.com?"),
            "{}",
            *uri
        );
        assert!(uri.contains(&format!("secret={}", *secret.to_base32())));
        assert!(uri.contains("issuer=Tessera"));
        assert!(!uri.contains("=="));
        assert!(!secret.to_base32().contains('='));
    }

    #[test]
    fn generated_secrets_have_160_bits_and_group_in_fours() {
        let secret = TotpSecret::generate().unwrap();
        assert_eq!(secret.as_bytes().len(), 20);
        let grouped = secret.to_grouped_base32();
        assert_eq!(grouped.len(), 32 + 7);
        assert!(grouped.split(' ').all(|g| g.len() == 4));
        assert_eq!(grouped.replace(' ', ""), *secret.to_base32());
        assert_ne!(
            TotpSecret::generate().unwrap().as_bytes(),
            secret.as_bytes()
        );
    }

    #[test]
    fn the_qr_code_is_an_inline_svg_named_totp_qr() {
        let svg =
            qr_svg("otpauth://totp/Tessera:ada%40example.com?secret=ABC&issuer=Tessera").unwrap();
        assert!(svg.starts_with("<svg id=\"totp-qr\""));
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("<?xml"));
    }
}
