//! Security keys and passkeys (WebAuthn): registering one, using it as the second step,
//! signing in with a passkey alone, renaming and removing.
//!
//! Invariants:
//! - A challenge is kept server-side (`webauthn_ceremonies`), bound to the session that
//!   asked for it (a hash of its CSRF token, renewed at every step up), lives
//!   [`CEREMONY_SECONDS`], and is taken once, by one `DELETE … RETURNING`: of two answers to
//!   it, one is judged and the other finds nothing. A failed answer has spent its challenge.
//! - A key's signature counter only goes up, by an atomic check-and-set in the statement
//!   that records its use (`SecurityKeys::record_use`): a copied key, or two answers with
//!   one counter on two instances, cannot both be accepted. A refusal for that is audited
//!   and mailed.
//! - Key answers at the second step count against the same per-account attempt limit as
//!   codes ([`Attempt`]), claimed under the user's lock before anything is looked at, and a
//!   bucket handed in is charged first in the same transaction. Passkey sign-in, where the
//!   key names its own user, is bounded by the network's sign-in bucket only (see
//!   [`sign_in_with_passkey`]).
//! - Only a key registered as a passkey (user verification required) signs in without the
//!   password, and only with user verification.
//! - The first factor of any kind comes with the recovery codes and ends the user's other
//!   sessions, as enrolling the app does; removing a key ends them too.
//! - Nothing about a credential, challenge or answer is logged; refusals are audited in
//!   fixed words (`webauthn::refusal`).

use diesel::Connection;
use webauthn_rs::prelude::{
    Credential, DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, SecurityKey, SecurityKeyAuthentication, SecurityKeyRegistration,
    WebauthnError,
};

use super::recovery::{self, RecoverySet};
use super::{Attempt, FactorContext, FactorError, MUST_STAY_ON, Purpose};
use crate::audit::{Actor, Event, Kind};
use crate::auth::session::{ENDED_MEANWHILE, end_sessions_of_user, still_current};
use crate::auth::webauthn::{
    self, CEREMONY_SECONDS, RelyingParty, credential_id_text, decode_credential, encode_credential,
    user_handle,
};
use crate::db::models::{
    Account, Ceremonies, CeremonyPurpose, NewSecurityKey, RecoveryCodes, SecurityKeyRow,
    SecurityKeys, TakenCeremony, TotpCredential, User, is_unique_violation,
};
use crate::db::{AnyConnection, now};
use crate::domain::{FactorKind, KeyName};
use crate::limits::Bucket;
use crate::mail::{KeyChange, Mail};

/// The server was started with a `PUBLIC_URL` that WebAuthn cannot use.
pub const UNAVAILABLE: &str = "Security keys and passkeys are not available on this server: its address (PUBLIC_URL) is an IP address, and they need a name. Ask whoever runs it to set PUBLIC_URL to the name people use.";

/// What the user is told when a key's answer is not accepted: one message whatever the
/// reason (the audit log has the reason).
pub const KEY_REFUSED: &str = "That key was not accepted. Use a key registered to your account, touch it when it blinks, or choose another way to sign in.";

/// The page was open too long, or the answer was already used: a new challenge is on the
/// page shown with this.
pub const CEREMONY_GONE: &str =
    "That request expired or was already used. Try again: the page has a new one.";

pub const ALREADY_REGISTERED: &str =
    "This key is already registered. Each key can be registered to one account, once.";

/// Why an answer found no challenge, for the audit log.
const NO_LIVE_CHALLENGE: &str = "no live challenge (expired, used, or another session's)";

const NOT_READABLE: &str = "Your browser's answer could not be read. Try again.";

impl FactorContext {
    fn relying_party(&self) -> Result<&RelyingParty, FactorError> {
        self.webauthn
            .as_deref()
            .ok_or(FactorError::Conflict(UNAVAILABLE))
    }
}

fn state_json<T: serde::Serialize>(state: &T) -> Result<String, FactorError> {
    serde_json::to_string(state).map_err(|e| FactorError::Unexpected(e.into()))
}

fn read_state<T: serde::de::DeserializeOwned>(taken: &TakenCeremony) -> Result<T, FactorError> {
    serde_json::from_str(&taken.state).map_err(|e| {
        FactorError::Unexpected(anyhow::anyhow!("a stored ceremony is unreadable: {e}"))
    })
}

/// Takes this session's ceremony for `purpose` if it is alive and, when `user_id` is given,
/// was started for that user.
fn take_live(
    conn: &mut AnyConnection,
    binding: &str,
    purpose: CeremonyPurpose,
    user_id: Option<&str>,
) -> Result<Option<TakenCeremony>, FactorError> {
    let taken = Ceremonies::take(conn, binding, purpose)?;
    Ok(taken
        .filter(|t| t.expires_at > now() && (user_id.is_none() || t.user_id.as_deref() == user_id)))
}

fn put(
    conn: &mut AnyConnection,
    binding: &str,
    purpose: CeremonyPurpose,
    user_id: Option<&str>,
    state: &str,
) -> Result<(), FactorError> {
    let now = now();
    Ceremonies::put(
        conn,
        binding,
        purpose,
        user_id,
        state,
        now,
        now + CEREMONY_SECONDS,
    )?;
    Ok(())
}

/// What a key is, as the audit log names it: a passkey signs in alone.
fn key_kind(passwordless: bool) -> FactorKind {
    if passwordless {
        FactorKind::Passkey
    } else {
        FactorKind::SecurityKey
    }
}

/// How a key row is named in the audit log and mails.
fn described(row: &SecurityKeyRow) -> String {
    let kind = key_kind(row.passwordless);
    format!("{} “{}”", kind.proof(), row.name)
}

/// The user's keys as the library's credentials, leaving out (and logging) any row that
/// cannot be read, so that one bad row does not shut the user out of every other way in.
fn readable(keys: &[SecurityKeyRow]) -> Vec<Credential> {
    keys.iter()
        .filter_map(|k| match decode_credential(&k.credential) {
            Ok(credential) => Some(credential),
            Err(e) => {
                tracing::error!(key = %k.id, "left out a security key: {e}");
                None
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Registration

/// Starts registering a key for `user` in this session: one challenge for a security key
/// and one for a passkey (the page decides which to answer). Returns the page's options.
pub async fn start_registration(
    ctx: &FactorContext,
    user: &User,
    binding: String,
) -> Result<String, FactorError> {
    let ctx = ctx.clone();
    let user = user.clone();
    ctx.db
        .clone()
        .write(move |conn| {
            let rp = ctx.relying_party()?.webauthn();
            // Two loads at once need no lock: each upsert replaces the challenge whole.
            let exclude: Vec<Vec<u8>> = readable(&SecurityKeys::list_for(conn, &user.id)?)
                .into_iter()
                .map(|c| c.cred_id.to_vec())
                .collect();
            let handle = user_handle(&user.id);
            let shown = if user.name.trim().is_empty() {
                &user.email
            } else {
                &user.name
            };
            let (key, key_state) = rp
                .start_securitykey_registration(
                    handle,
                    &user.email,
                    shown,
                    Some(exclude.clone()),
                    None,
                    None,
                )
                .map_err(|e| anyhow::anyhow!("could not start a key registration: {e}"))?;
            let (passkey, passkey_state) = rp
                .start_passkey_registration(handle, &user.email, shown, Some(exclude))
                .map_err(|e| anyhow::anyhow!("could not start a passkey registration: {e}"))?;
            let user_id = Some(user.id.as_str());
            put(
                conn,
                &binding,
                CeremonyPurpose::RegisterKey,
                user_id,
                &state_json(&key_state)?,
            )?;
            put(
                conn,
                &binding,
                CeremonyPurpose::RegisterPasskey,
                user_id,
                &state_json(&passkey_state)?,
            )?;
            Ok(webauthn::registration_options(key, passkey)?)
        })
        .await
}

/// What a registration came to.
pub enum Registration {
    /// The key is stored. `first`: it is the user's first second factor, so here are the
    /// recovery codes to show once, and the new session epoch (other sessions ended).
    Added { first: Option<(i64, RecoverySet)> },
    /// Nothing was stored; the message says why (the challenge is spent either way).
    Refused(&'static str),
}

/// What the user asked to register.
pub struct NewKey {
    pub name: KeyName,
    /// Registered as a passkey: discoverable, with user verification, signs in alone.
    pub passwordless: bool,
    /// The browser's answer: the JSON of `PublicKeyCredential.toJSON()`.
    pub answer: String,
}

fn registration_refused(user: &User, kind: FactorKind, ip: Option<String>, why: &str) -> Event {
    Event::by_user(Kind::SecondFactorFailed, user, ip)
        .with_detail(format!("{}, for registration; {why}", kind.proof()))
}

/// The workspace requires a key, so the last one stays.
pub const KEY_MUST_STAY: &str = "Your workspace requires a security key or passkey, so your last one cannot be removed. Add another key first.";

/// At most this many keys per user: each is listed in every second-step challenge.
pub const MOST_KEYS: i64 = 20;

pub const TOO_MANY_KEYS: &str = "You have 20 security keys and passkeys, the most an account can have. Remove one you no longer use first.";

/// Finishes this session's registration with the browser's answer. `account`: as loaded
/// for the request; `held`: the user was held at enrolment, so this is also their sign-in.
///
/// Two transactions: the first spends the challenge and verifies the answer (nothing is
/// made for an answer that does not verify); then, for a first factor, the recovery codes
/// are made (bcrypt, outside any transaction); the second stores the key under the user's
/// lock, with every rule decided again there.
pub async fn finish_registration(
    ctx: &FactorContext,
    account: &Account,
    binding: String,
    key: NewKey,
    held: bool,
    ip: Option<String>,
) -> Result<Registration, FactorError> {
    let kind = key_kind(key.passwordless);
    let verified = {
        let ctx = ctx.clone();
        let user = account.user.clone();
        let answer = key.answer.clone();
        let passwordless = key.passwordless;
        let ip = ip.clone();
        ctx.db
            .clone()
            .write(move |conn| {
                let rp = ctx.relying_party()?.webauthn();
                let user_id = Some(user.id.as_str());
                let as_key = take_live(conn, &binding, CeremonyPurpose::RegisterKey, user_id)?;
                let as_passkey =
                    take_live(conn, &binding, CeremonyPurpose::RegisterPasskey, user_id)?;
                type Verified = Result<Credential, &'static str>;
                let refuse = |conn: &mut AnyConnection, why: &str, message| {
                    registration_refused(&user, kind, ip.clone(), why).record(conn)?;
                    Ok::<Verified, FactorError>(Err(message))
                };
                let Some(taken) = (if passwordless { as_passkey } else { as_key }) else {
                    return refuse(conn, NO_LIVE_CHALLENGE, CEREMONY_GONE);
                };
                let Ok(answer) = serde_json::from_str::<RegisterPublicKeyCredential>(&answer)
                else {
                    return refuse(conn, "the answer is not readable", NOT_READABLE);
                };
                // The library answers an excluded key (one of the user's own) with the error
                // it also uses for a wrong algorithm: told apart here.
                let own = SecurityKeys::find_for_user(
                    conn,
                    &user.id,
                    &credential_id_text(&answer.raw_id),
                )?;
                if own.is_some() {
                    return refuse(conn, "a key registered already", ALREADY_REGISTERED);
                }
                let finished: Result<Credential, WebauthnError> = if passwordless {
                    let state: PasskeyRegistration = read_state(&taken)?;
                    rp.finish_passkey_registration(&answer, &state)
                        .map(Credential::from)
                } else {
                    let state: SecurityKeyRegistration = read_state(&taken)?;
                    rp.finish_securitykey_registration(&answer, &state)
                        .map(Credential::from)
                };
                match finished {
                    Ok(credential) => Ok(Ok(credential)),
                    Err(e) => refuse(conn, webauthn::refusal(&e), KEY_REFUSED),
                }
            })
            .await?
    };
    let credential = match verified {
        Ok(credential) => credential,
        Err(message) => return Ok(Registration::Refused(message)),
    };
    // Made only for a verified answer: codes cost about a password hash each set.
    let codes = if account.factors.any() {
        None
    } else {
        Some(recovery::new_set(ctx).await?)
    };
    let user = account.user.clone();
    ctx.db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            if !still_current(conn, &user)? {
                return Err(FactorError::Conflict(ENDED_MEANWHILE));
            }
            let keys_before = SecurityKeys::count_for(conn, &user.id)?;
            if keys_before >= MOST_KEYS {
                return Ok(Registration::Refused(TOO_MANY_KEYS));
            }
            let credential_id = credential_id_text(&credential.cred_id);
            let stored = encode_credential(&credential)?;
            let new = NewSecurityKey {
                user_id: &user.id,
                name: key.name.as_str(),
                credential_id: &credential_id,
                credential: &stored,
                passwordless: key.passwordless,
                sign_count: i64::from(credential.counter),
                now: now(),
            };
            // A savepoint: on PostgreSQL a refused insert would otherwise end the
            // transaction, and the refusal is still to be audited.
            match conn.transaction(|conn| SecurityKeys::insert(conn, &new)) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    let why = "its credential id is registered already";
                    registration_refused(&user, kind, ip, why).record(conn)?;
                    return Ok(Registration::Refused(ALREADY_REGISTERED));
                }
                Err(e) => return Err(e.into()),
            }
            let name = format!("{} “{}”", kind.proof(), key.name.as_str());
            let first = keys_before == 0 && !TotpCredential::exists(conn, &user.id)?;
            Event::by_user(Kind::KeyAdded, &user, ip.clone())
                .with_detail(name.clone())
                .record(conn)?;
            mail_key(
                conn,
                &user,
                key.name.as_str(),
                KeyChange::Added {
                    passkey: key.passwordless,
                },
            )?;
            if !first {
                return Ok(Registration::Added { first: None });
            }
            // The account had no second factor when the request began, so the codes exist
            // (a factor removed since then ended this session: `still_current` above).
            let Some(codes) = codes else {
                return Err(FactorError::Conflict(ENDED_MEANWHILE));
            };
            RecoveryCodes::replace_all(conn, &user.id, &codes.hashes, now())?;
            let epoch = end_sessions_of_user(conn, &user.id)?;
            Event::by_user(Kind::TwoFactorEnabled, &user, ip.clone())
                .with_detail(name)
                .record(conn)?;
            if held {
                User::record_sign_in(conn, &user.id, now())?;
                Event::by_user(Kind::SignInSucceeded, &user, ip)
                    .with_detail(format!("password, then registering a {}", kind.proof()))
                    .record(conn)?;
            }
            Ok(Registration::Added {
                first: Some((epoch, codes)),
            })
        })
        .await
}

// ---------------------------------------------------------------------------------------
// The second step

/// Starts the second step with `user`'s keys in this session; `None` if they have none.
pub async fn start_second_factor(
    ctx: &FactorContext,
    user: &User,
    binding: String,
) -> Result<Option<String>, FactorError> {
    let ctx = ctx.clone();
    let user_id = user.id.clone();
    ctx.db
        .clone()
        .run_writing(move |conn| {
            let rp = ctx.relying_party()?.webauthn();
            let keys = SecurityKeys::list_for(conn, &user_id)?;
            if keys.is_empty() {
                return Ok(None);
            }
            let any_passkey = keys.iter().any(|k| k.passwordless);
            let credentials: Vec<SecurityKey> =
                readable(&keys).into_iter().map(SecurityKey::from).collect();
            if credentials.is_empty() {
                return Ok(None);
            }
            let (request, state) = rp
                .start_securitykey_authentication(&credentials)
                .map_err(|e| anyhow::anyhow!("could not start a key sign-in: {e}"))?;
            put(
                conn,
                &binding,
                CeremonyPurpose::SecondFactor,
                Some(&user_id),
                &state_json(&state)?,
            )?;
            Ok(Some(webauthn::second_factor_options(request, any_passkey)?))
        })
        .await
}

/// Whether a key's answer was accepted as the second step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Accepted,
    Refused,
}

/// Checks the answer of one of `user`'s keys to this session's challenge; if it is good,
/// records the key's use and carries out `purpose`. Audits the outcome.
pub async fn verify(
    ctx: &FactorContext,
    user: &User,
    binding: String,
    answer: String,
    purpose: Purpose,
    ip: Option<String>,
    charge: Option<(Bucket, &'static str)>,
) -> Result<KeyCheck, FactorError> {
    let ctx = ctx.clone();
    let user = user.clone();
    let now_ms = crate::limits::now_ms();
    ctx.db
        .clone()
        .write(move |conn| {
            let rp = ctx.relying_party()?.webauthn();
            // Whatever happens next (unless the bucket refuses and all rolls back), this
            // session's challenge is spent.
            let taken = take_live(
                conn,
                &binding,
                CeremonyPurpose::SecondFactor,
                Some(&user.id),
            )?;
            let detail = purpose.detail(FactorKind::SecurityKey);
            let opened = Attempt::open(conn, &charge, now_ms, &user, &ctx.limits, &detail, &ip)?;
            let Some(attempt) = opened else {
                return Ok(KeyCheck::Refused);
            };
            let refuse = |conn: &mut AnyConnection, kind: Kind, why: &str| {
                Event::by_user(kind, &user, ip.clone())
                    .with_detail(format!("{detail}; {why}"))
                    .record(conn)?;
                attempt.failed(conn, &user, &ctx.limits, ip.clone())?;
                Ok(KeyCheck::Refused)
            };
            let Some(taken) = taken else {
                return refuse(conn, Kind::ReplayRefused, NO_LIVE_CHALLENGE);
            };
            let Ok(answer) = serde_json::from_str::<PublicKeyCredential>(&answer) else {
                return refuse(conn, Kind::SecondFactorFailed, "the answer is not readable");
            };
            let state: SecurityKeyAuthentication = read_state(&taken)?;
            let result = match rp.finish_securitykey_authentication(&answer, &state) {
                Ok(result) => result,
                Err(e) => {
                    if matches!(e, WebauthnError::CredentialPossibleCompromise)
                        && let Some(row) = SecurityKeys::find_for_user(
                            conn,
                            &user.id,
                            &credential_id_text(answer.get_credential_id()),
                        )?
                    {
                        counter_went_back(conn, &user, &row, ip.clone())?;
                    }
                    return refuse(conn, Kind::SecondFactorFailed, webauthn::refusal(&e));
                }
            };
            let credential_id = credential_id_text(result.cred_id());
            let Some(row) = SecurityKeys::find_for_user(conn, &user.id, &credential_id)? else {
                return refuse(
                    conn,
                    Kind::SecondFactorFailed,
                    "the key was removed meanwhile",
                );
            };
            let mut key = SecurityKey::from(decode_credential(&row.credential)?);
            key.update_credential(&result);
            let updated = encode_credential(&Credential::from(key))?;
            if !SecurityKeys::record_use(conn, &row, &updated, result.counter(), now())? {
                counter_went_back(conn, &user, &row, ip.clone())?;
                return refuse(
                    conn,
                    Kind::SecondFactorFailed,
                    webauthn::refusal(&WebauthnError::CredentialPossibleCompromise),
                );
            }
            let kind = key_kind(row.passwordless);
            Event::by_user(Kind::SecondFactorSucceeded, &user, ip.clone())
                .with_detail(format!(
                    "{} “{}”, for {}",
                    kind.proof(),
                    row.name,
                    purpose.as_str()
                ))
                .record(conn)?;
            Attempt::succeeded(conn, &user.id)?;
            purpose.on_success(conn, &user, ip)?;
            Ok(KeyCheck::Accepted)
        })
        .await
}

/// Tells the key's owner what happened to it.
fn mail_key(
    conn: &mut AnyConnection,
    user: &User,
    name: &str,
    change: KeyChange,
) -> Result<(), FactorError> {
    let to = &user.email;
    crate::mail::enqueue(conn, &Mail::SecurityKey { to, name, change })?;
    Ok(())
}

/// A key answered with a counter that did not go up: audited and mailed to its owner.
fn counter_went_back(
    conn: &mut AnyConnection,
    user: &User,
    row: &SecurityKeyRow,
    ip: Option<String>,
) -> Result<(), FactorError> {
    Event::against_user(Kind::KeyCounterRegression, user, ip)
        .with_detail(format!(
            "{}: its counter went backwards (stored {}); possibly a copied key",
            described(row),
            row.sign_count
        ))
        .record(conn)?;
    mail_key(conn, user, &row.name, KeyChange::CounterRegression)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Signing in with a passkey alone

/// Starts a passkey sign-in in this (anonymous) session; returns the page's options.
pub async fn start_passwordless(
    ctx: &FactorContext,
    binding: String,
) -> Result<String, FactorError> {
    let ctx = ctx.clone();
    ctx.db
        .clone()
        .run_writing(move |conn| {
            let rp = ctx.relying_party()?.webauthn();
            let (request, state) = rp
                .start_discoverable_authentication()
                .map_err(|e| anyhow::anyhow!("could not start a passkey sign-in: {e}"))?;
            put(
                conn,
                &binding,
                CeremonyPurpose::Passwordless,
                None,
                &state_json(&state)?,
            )?;
            Ok(webauthn::passkey_options(request)?)
        })
        .await
}

/// What a passkey sign-in came to.
pub enum PasskeySignIn {
    /// Both steps at once: `epoch` is the user's session epoch to sign in under.
    SignedIn {
        user: Box<User>,
        epoch: i64,
    },
    /// The passkey was right but the account is deactivated.
    Deactivated,
    Refused,
}

/// Signs in with a passkey's answer to this session's challenge: the key names its user.
pub async fn sign_in_with_passkey(
    ctx: &FactorContext,
    binding: String,
    answer: String,
    ip: Option<String>,
    charge: (Bucket, &'static str),
) -> Result<PasskeySignIn, FactorError> {
    let ctx = ctx.clone();
    let now_ms = crate::limits::now_ms();
    ctx.db
        .clone()
        .write(move |conn| {
            let rp = ctx.relying_party()?.webauthn();
            let (bucket, message) = &charge;
            if let Err(wait) = bucket.take(conn, now_ms)? {
                return Err(FactorError::RateLimited { wait, message });
            }
            let taken = take_live(conn, &binding, CeremonyPurpose::Passwordless, None)?;
            let anonymous = |conn: &mut AnyConnection, kind: Kind, why: &str| {
                Event {
                    kind,
                    workspace_id: None,
                    actor: Actor::Anonymous,
                    subject: None,
                    ip: ip.clone(),
                    detail: format!("passkey sign-in; {why}"),
                }
                .record(conn)?;
                Ok(PasskeySignIn::Refused)
            };
            let Some(taken) = taken else {
                return anonymous(conn, Kind::ReplayRefused, NO_LIVE_CHALLENGE);
            };
            let Ok(answer) = serde_json::from_str::<PublicKeyCredential>(&answer) else {
                return anonymous(conn, Kind::SignInFailed, "the answer is not readable");
            };
            let Ok((handle, raw_id)) = rp.identify_discoverable_authentication(&answer) else {
                return anonymous(conn, Kind::SignInFailed, "no user handle (not a passkey)");
            };
            let credential_id = credential_id_text(raw_id);
            let Some(found) = SecurityKeys::find_by_credential_id(conn, &credential_id)? else {
                return anonymous(conn, Kind::SignInFailed, "a key not registered here");
            };
            // Read again under the user's lock: a key removed meanwhile is not a copy.
            User::lock(conn, &found.user_id)?;
            let (Some(user), Some(row)) = (
                User::find(conn, &found.user_id)?,
                SecurityKeys::find(conn, &found.user_id, &found.id)?,
            ) else {
                return anonymous(conn, Kind::SignInFailed, "a key not registered here");
            };
            // No attempt is counted against the account here: the credential id that names
            // it is no secret (the second step lists it), so counting would let anyone lock
            // the account's second step, and a signature cannot be guessed anyway. The
            // network's bucket, charged above, bounds the tries.
            let detail = format!("{} (both steps)", described(&row));
            let refuse = |conn: &mut AnyConnection, kind: Kind, why: &str| {
                Event::against_user(kind, &user, ip.clone())
                    .with_detail(format!("{detail}; {why}"))
                    .record(conn)?;
                Ok(PasskeySignIn::Refused)
            };
            if handle != user_handle(&user.id) {
                return refuse(
                    conn,
                    Kind::SignInFailed,
                    "the user handle is not this key's user",
                );
            }
            if !row.passwordless {
                return refuse(
                    conn,
                    Kind::SignInFailed,
                    "the key was registered without user verification, so it cannot sign in alone",
                );
            }
            let state: DiscoverableAuthentication = read_state(&taken)?;
            let credential = decode_credential(&row.credential)?;
            let result = match rp.finish_discoverable_authentication_v2(&answer, state, &credential)
            {
                Ok(result) if result.user_verified() => result,
                Ok(_) => {
                    let e = WebauthnError::UserNotVerified;
                    return refuse(conn, Kind::SignInFailed, webauthn::refusal(&e));
                }
                Err(e) => {
                    if matches!(e, WebauthnError::CredentialPossibleCompromise) {
                        counter_went_back(conn, &user, &row, ip.clone())?;
                    }
                    return refuse(conn, Kind::SignInFailed, webauthn::refusal(&e));
                }
            };
            let mut passkey = Passkey::from(credential);
            passkey.update_credential(&result);
            let updated = encode_credential(&Credential::from(passkey))?;
            if !SecurityKeys::record_use(conn, &row, &updated, result.counter(), now())? {
                counter_went_back(conn, &user, &row, ip.clone())?;
                let e = WebauthnError::CredentialPossibleCompromise;
                return refuse(conn, Kind::SignInFailed, webauthn::refusal(&e));
            }
            // Only after the passkey was proven: as after a right password.
            if user.is_deactivated() {
                Event::by_user(Kind::SignInFailed, &user, ip)
                    .with_detail(format!("{detail}; the account is deactivated"))
                    .record(conn)?;
                return Ok(PasskeySignIn::Deactivated);
            }
            User::record_sign_in(conn, &user.id, now())?;
            Event::by_user(Kind::SignInSucceeded, &user, ip)
                .with_detail(detail)
                .record(conn)?;
            let epoch = user.session_epoch;
            Ok(PasskeySignIn::SignedIn {
                user: Box::new(user),
                epoch,
            })
        })
        .await
}

// ---------------------------------------------------------------------------------------
// The security page

/// Renames one of `user`'s keys; `false`: they have no such key.
pub async fn rename(
    ctx: &FactorContext,
    user: &User,
    id: String,
    name: KeyName,
    ip: Option<String>,
) -> Result<bool, FactorError> {
    let user = user.clone();
    ctx.db
        .write(move |conn| {
            let Some(row) = SecurityKeys::find(conn, &user.id, &id)? else {
                return Ok(false);
            };
            if !SecurityKeys::rename(conn, &user.id, &id, name.as_str())? {
                return Ok(false);
            }
            Event::by_user(Kind::KeyRenamed, &user, ip)
                .with_detail(format!("{} is now “{}”", described(&row), name.as_str()))
                .record(conn)?;
            Ok(true)
        })
        .await
}

/// Removes one of `user`'s keys (their password was checked): ends their sessions, and
/// with the last factor the recovery codes go too. Refused when policy needs it kept.
/// Returns the user's new session epoch, or `None` if they have no such key.
pub async fn remove(
    ctx: &FactorContext,
    user: &User,
    id: String,
    ip: Option<String>,
) -> Result<Option<i64>, FactorError> {
    let user = user.clone();
    ctx.db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            if !still_current(conn, &user)? {
                return Err(FactorError::Conflict(ENDED_MEANWHILE));
            }
            let Some(row) = SecurityKeys::find(conn, &user.id, &id)? else {
                return Ok(None);
            };
            // Decided under the user's lock, with factors and policy as they are now.
            let account = Account::load(conn, &user.id, now())?
                .ok_or(FactorError::Conflict(ENDED_MEANWHILE))?;
            let last_key = SecurityKeys::count_for(conn, &user.id)? == 1;
            let last = last_key && !account.factors.authenticator;
            if last_key && account.keys_enforced() {
                return Err(FactorError::Forbidden(KEY_MUST_STAY));
            }
            if last && account.two_factor_enforced() {
                return Err(FactorError::Forbidden(MUST_STAY_ON));
            }
            SecurityKeys::remove(conn, &user.id, &id)?;
            if last {
                RecoveryCodes::remove_all_for(conn, &user.id)?;
            }
            let epoch = end_sessions_of_user(conn, &user.id)?;
            Event::by_user(Kind::KeyRemoved, &user, ip.clone())
                .with_detail(described(&row))
                .record(conn)?;
            if last {
                Event::by_user(Kind::TwoFactorDisabled, &user, ip)
                    .with_detail("its last key was removed")
                    .record(conn)?;
            }
            mail_key(conn, &user, &row.name, KeyChange::Removed)?;
            Ok(Some(epoch))
        })
        .await
}

/// One of the user's keys as their security page lists it.
#[derive(Debug, Clone)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub passwordless: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub async fn list(ctx: &FactorContext, user_id: &str) -> Result<Vec<KeySummary>, FactorError> {
    let user_id = user_id.to_owned();
    ctx.db
        .run(move |conn| {
            Ok(SecurityKeys::list_for(conn, &user_id)?
                .into_iter()
                .map(|k| KeySummary {
                    id: k.id,
                    name: k.name,
                    passwordless: k.passwordless,
                    created_at: k.created_at,
                    last_used_at: k.last_used_at,
                })
                .collect())
        })
        .await
}
