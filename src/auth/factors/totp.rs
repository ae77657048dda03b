//! The authenticator app: TOTP per RFC 6238 (SHA-1, 6 digits, 30-second steps, one step of
//! drift either way), its enrolment, and checking its codes.
//!
//! Invariants:
//! - The replay rule — a step is accepted only if it is greater than every step accepted
//!   before for that user — is one atomic SQL update on the matched step
//!   (`TotpCredential::accept_step`).
//! - Nothing is enabled until a code from the new secret is confirmed; a pending secret
//!   belongs to the session that started it and expires after [`ENROLMENT_SECONDS`].
//! - The code that confirms enrolment consumes its time step: it cannot sign anyone in.
//! - Enabling ends every other session of the user (the caller's rejoins under the new
//!   epoch) and makes the first set of recovery codes in the same transaction.

use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

use super::recovery::{self, RecoverySet};
use super::{Attempt, FactorContext, FactorError, Purpose};
use crate::audit::{Event, Kind};
use crate::auth::secret_box::{Keyring, Sealed};
use crate::auth::session::{ENDED_MEANWHILE, end_sessions_of_user, still_current};
use crate::db::models::{
    PendingEnrolment, RecoveryCodes, SignInCode, TotpCredential, User, is_unique_violation,
};
use crate::db::{AnyConnection, Backend, now};
use crate::domain::{FactorKind, TotpCode};
use crate::limits::Bucket;
use crate::mail::Mail;

/// How long a shown-but-unconfirmed secret stays usable.
pub const ENROLMENT_SECONDS: i64 = 15 * 60;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// `ended_sessions`: the user's new session epoch, when the purpose ended all of their
    /// sessions (the caller's own session rejoins under it).
    Accepted {
        ended_sessions: Option<i64>,
    },
    Wrong,
    /// The code was right but its time step was used already.
    Replayed,
    NotEnrolled,
}

/// Checks an authenticator code for `user`; if it is good and fresh, consumes its time
/// step and carries out `purpose`. Audits the outcome. (Cheap: one HMAC per tolerated
/// step, one transaction.) `charge`: a rate-limit bucket to take one request from first,
/// with the words of its refusal.
pub async fn verify(
    ctx: &FactorContext,
    user: &User,
    code: TotpCode,
    purpose: Purpose,
    ip: Option<String>,
    charge: Option<(Bucket, &'static str)>,
) -> Result<TotpCheck, FactorError> {
    let now_ms = crate::limits::now_ms();
    if purpose == Purpose::SignIn
        && let Some((bucket, _)) = &charge
        && let Some(accepted) = sign_in_at_once(ctx, user, &code, &ip, bucket, now_ms).await?
    {
        return Ok(accepted);
    }
    let ctx = ctx.clone();
    let user = user.clone();
    ctx.db
        .clone()
        .write(move |conn| {
            let detail = purpose.detail(FactorKind::Authenticator);
            let opened = Attempt::open(conn, &charge, now_ms, &user, &ctx.limits, &detail, &ip)?;
            let Some(attempt) = opened else {
                return Ok(TotpCheck::Wrong);
            };
            let check = check(conn, &ctx.keyring, &user.id, &code)?;
            let kind = match check {
                TotpCheck::Accepted { .. } => Kind::SecondFactorSucceeded,
                TotpCheck::Wrong | TotpCheck::NotEnrolled => Kind::SecondFactorFailed,
                TotpCheck::Replayed => Kind::ReplayRefused,
            };
            Event::by_user(kind, &user, ip.clone())
                .with_detail(detail)
                .record(conn)?;
            if let TotpCheck::Accepted { .. } = check {
                Attempt::succeeded(conn, &user.id)?;
                let ended_sessions = purpose.on_success(conn, &user, ip)?;
                return Ok(TotpCheck::Accepted { ended_sessions });
            }
            attempt.failed(conn, &user, &ctx.limits, ip)?;
            Ok(check)
        })
        .await
}

/// PostgreSQL's usual sign-in, in two statements where [`verify`]'s transaction takes
/// eleven: the secret is read and the code matched to its step here (or to none), then
/// `TotpCredential::accept_sign_in_at_once` charges the bucket, checks the lock, applies the
/// replay rule and records the success, under the same locks in the same order. `None`:
/// SQLite, or anything else than a right code that nothing refuses. [`verify`] then decides
/// it in full, so a wrong or replayed code is counted and audited as before.
async fn sign_in_at_once(
    ctx: &FactorContext,
    user: &User,
    code: &TotpCode,
    ip: &Option<String>,
    bucket: &Bucket,
    now_ms: i64,
) -> Result<Option<TotpCheck>, FactorError> {
    if ctx.db.backend() != Backend::Postgres {
        return Ok(None);
    }
    let (keyring, limits) = (ctx.keyring.clone(), ctx.limits);
    let (user, code, ip, bucket) = (user.clone(), code.clone(), ip.clone(), bucket.clone());
    ctx.db
        .run(move |conn| {
            let Some(credential) = TotpCredential::find(conn, &user.id)? else {
                return Ok(None);
            };
            let secret = TotpSecret::unseal(&keyring, &user.id, &credential.sealed())?;
            let now = now();
            // A code that matches no step is sent too (as no step): the statement then
            // refuses it where it would refuse a right one (full bucket, lock) or at the
            // step, so how long a refusal takes says nothing about the code.
            let step = secret.matching_step(&code, now)?;
            let events = Event::rows_json(vec![
                Event::by_user(Kind::SecondFactorSucceeded, &user, ip.clone())
                    .with_detail(Purpose::SignIn.detail(FactorKind::Authenticator)),
                super::signed_in_event(&user, ip),
            ])
            .map_err(anyhow::Error::from)?;
            let accepted = TotpCredential::accept_sign_in_at_once(
                conn,
                SignInCode {
                    user_id: &user.id,
                    sealed_secret: &credential.secret_ciphertext,
                    step,
                    now,
                    bucket: bucket.charge(),
                    now_ms,
                    most_failures: limits.most_failures,
                    events: &events,
                },
            )?;
            Ok(accepted
                .filter(|&accepted| accepted)
                .map(|_| TotpCheck::Accepted {
                    ended_sessions: None,
                }))
        })
        .await
}

fn check(
    conn: &mut AnyConnection,
    keyring: &Keyring,
    user_id: &str,
    code: &TotpCode,
) -> Result<TotpCheck, FactorError> {
    let Some(credential) = TotpCredential::find(conn, user_id)? else {
        return Ok(TotpCheck::NotEnrolled);
    };
    let secret = TotpSecret::unseal(keyring, user_id, &credential.sealed())?;
    Ok(match secret.matching_step(code, now())? {
        None => TotpCheck::Wrong,
        Some(step) if TotpCredential::accept_step(conn, user_id, step)? => TotpCheck::Accepted {
            ended_sessions: None,
        },
        Some(_) => TotpCheck::Replayed,
    })
}

/// This session's enrolment in progress (`binding`: see `TypedSession::enrolment_binding`),
/// or a new one with a fresh secret, replacing any other of the user's.
pub async fn start_enrolment(
    ctx: &FactorContext,
    user_id: &str,
    binding: String,
) -> Result<PendingEnrolment, FactorError> {
    let keyring = ctx.keyring.clone();
    let user_id = user_id.to_owned();
    ctx.db
        .write(move |conn| {
            // Two page loads at once must not both insert (PostgreSQL would refuse one).
            User::lock(conn, &user_id)?;
            let now = now();
            if let Some(pending) = PendingEnrolment::find_valid(conn, &user_id, &binding, now)? {
                return Ok(pending);
            }
            let secret = TotpSecret::generate()?;
            let sealed = keyring.seal(&user_id, secret.as_bytes())?;
            let pending = PendingEnrolment {
                user_id,
                secret_ciphertext: sealed.ciphertext,
                key_id: sealed.key_id,
                created_at: now,
                expires_at: now + ENROLMENT_SECONDS,
                session_binding: binding,
            };
            PendingEnrolment::replace(conn, &pending)?;
            Ok(pending)
        })
        .await
}

/// Where an enrolment that a confirmation names stands.
pub enum Enrolment {
    Pending(PendingEnrolment),
    /// A twin request enabled the app (taking the enrolment) since the account was loaded.
    AlreadyOn,
    /// Expired, or started again in another window.
    Gone,
}

pub async fn find_enrolment(
    ctx: &FactorContext,
    user_id: &str,
    binding: String,
) -> Result<Enrolment, FactorError> {
    let user_id = user_id.to_owned();
    ctx.db
        .run(move |conn| {
            Ok(
                match PendingEnrolment::find_valid(conn, &user_id, &binding, now())? {
                    Some(pending) => Enrolment::Pending(pending),
                    None if TotpCredential::find(conn, &user_id)?.is_some() => Enrolment::AlreadyOn,
                    None => Enrolment::Gone,
                },
            )
        })
        .await
}

pub enum Confirmation {
    /// The app is on; `epoch` is the user's new session epoch; `codes` are to show once.
    Enabled { epoch: i64, codes: RecoverySet },
    /// The code does not match the new secret (audited; nothing else changed).
    Refused,
}

/// Lost a race with another confirmation, or the enrolment expired meanwhile.
pub const ENROLMENT_TAKEN: &str =
    "This setup was already completed or has expired. Check your security page.";

/// Confirms `pending` with a code from its secret: enables the app, makes the first
/// recovery codes, ends the user's other sessions. `held`: the user was held at enrolment
/// after the password, so this is also their sign-in.
pub async fn confirm_enrolment(
    ctx: &FactorContext,
    user: &User,
    pending: PendingEnrolment,
    code: &TotpCode,
    held: bool,
    ip: Option<String>,
) -> Result<Confirmation, FactorError> {
    let secret = TotpSecret::unseal(&ctx.keyring, &pending.user_id, &pending.sealed())?;
    let Some(step) = secret.matching_step(code, now())? else {
        let event = Event::by_user(Kind::SecondFactorFailed, user, ip).with_detail(format!(
            "{}, for enrolment",
            FactorKind::Authenticator.proof()
        ));
        ctx.db
            .run_writing(move |conn| event.record(conn).map_err(FactorError::from))
            .await?;
        return Ok(Confirmation::Refused);
    };
    let codes = recovery::new_set(ctx).await?;
    let user = user.clone();
    let hashes = codes.hashes.clone();
    let epoch = ctx
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            if !still_current(conn, &user)? {
                return Err(FactorError::Conflict(ENDED_MEANWHILE));
            }
            // Only one confirmation of this enrolment can take it...
            if !pending.take(conn, now())? {
                return Err(FactorError::Conflict(ENROLMENT_TAKEN));
            }
            // ...and only one enrolment can enable the app.
            TotpCredential::insert(conn, &user.id, &pending.sealed(), step, now()).map_err(
                |e| {
                    if is_unique_violation(&e) {
                        FactorError::Conflict(ENROLMENT_TAKEN)
                    } else {
                        e.into()
                    }
                },
            )?;
            RecoveryCodes::replace_all(conn, &user.id, &hashes, now())?;
            let epoch = end_sessions_of_user(conn, &user.id)?;
            Event::by_user(Kind::TwoFactorEnabled, &user, ip.clone()).record(conn)?;
            crate::mail::enqueue(conn, &Mail::TwoFactorEnabled { to: &user.email })?;
            if held {
                // Held at enrolment after the password, this user is only now signed in.
                User::record_sign_in(conn, &user.id, now())?;
                Event::by_user(Kind::SignInSucceeded, &user, ip)
                    .with_detail("password, then enrolment in 2FA")
                    .record(conn)?;
            }
            Ok(epoch)
        })
        .await?;
    Ok(Confirmation::Enabled { epoch, codes })
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
