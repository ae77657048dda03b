//! Recovery codes: ten single-use codes, stored only as bcrypt hashes, that back up the
//! other factors (a user who lost their phone signs in with one).
//!
//! Cost: an attempt may have to compare against every unused code, so the bcrypt cost is
//! kept low (`RECOVERY_CODE_BCRYPT_COST`; the measurements behind it are in
//! `docs/decisions.md`). That is safe because each code carries 60 random bits: a stolen
//! hash list cannot be searched whatever the cost factor, and online guessing is a matter
//! for the request limits, not for bcrypt.
//!
//! Invariants: a code is spent by one atomic update (of two requests with one code, one
//! wins); making a new set revokes the old one in the same transaction, under the user's
//! lock; the comparisons run outside any transaction, on the bounded hashing pool, also
//! while the second step is locked, so that the time of the answer does not tell a lock
//! apart.

use super::{Attempt, FactorContext, FactorError, Purpose};
use crate::audit::{Event, Kind};
use crate::db::models::{RecoveryCodes, User};
use crate::db::now;
use crate::domain::{FactorKind, RecoveryCode};
use crate::mail::Mail;

pub const CODES_PER_SET: usize = 10;

/// A fresh set: the codes (to show once) and their hashes (to store).
pub struct RecoverySet {
    pub codes: Vec<RecoveryCode>,
    pub hashes: Vec<String>,
}

/// Generates and hashes a new set. CPU-bound: call from the blocking pool.
pub fn generate_set(cost: u32) -> anyhow::Result<RecoverySet> {
    let mut codes = Vec::with_capacity(CODES_PER_SET);
    while codes.len() < CODES_PER_SET {
        let code = RecoveryCode::generate()?;
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let hashes = codes
        .iter()
        .map(|c| bcrypt::hash(c.canonical(), cost))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecoverySet { codes, hashes })
}

/// The id of the unused code that `code` matches, if any. CPU-bound: blocking pool.
pub fn find_match<'a>(code: &RecoveryCode, candidates: &'a [(String, String)]) -> Option<&'a str> {
    candidates
        .iter()
        .find(|(_, hash)| bcrypt::verify(code.canonical(), hash).unwrap_or(false))
        .map(|(id, _)| id.as_str())
}

/// A fresh set, hashed on the bounded hashing pool.
pub async fn new_set(ctx: &FactorContext) -> Result<RecoverySet, FactorError> {
    let cost = ctx.recovery_code_cost;
    Ok(ctx.hasher.run_bounded(move || generate_set(cost)).await?)
}

/// A recovery code that was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Unused codes left.
    pub remaining: i64,
    /// As in `TotpCheck::Accepted`.
    pub ended_sessions: Option<i64>,
}

/// Spends one of `user`'s recovery codes if `code` matches an unused one, and carries out
/// `purpose`. Audits success and failure.
pub async fn spend(
    ctx: &FactorContext,
    user: &User,
    code: RecoveryCode,
    purpose: Purpose,
    ip: Option<String>,
) -> Result<Option<Spent>, FactorError> {
    // The attempt is claimed before the (slow) comparisons, so parallel guesses are
    // bounded by the limit like authenticator codes are.
    let user_id = user.id.clone();
    let limits = ctx.limits;
    let detail = purpose.detail(FactorKind::RecoveryCode);
    let (attempt, candidates) = ctx
        .db
        .write(move |conn| {
            let attempt = Attempt::claim(conn, &user_id, &limits)?;
            let candidates = RecoveryCodes::unused(conn, &user_id)?;
            Ok::<_, FactorError>((attempt, candidates))
        })
        .await?;
    let matched = ctx
        .hasher
        .run_bounded(move || Ok(find_match(&code, &candidates).map(str::to_owned)))
        .await?;
    if let Some(refused) = attempt.refused_unchecked() {
        let event = Event::by_user(Kind::SecondFactorFailed, user, ip)
            .with_detail(format!("{detail}; {refused}"));
        ctx.db
            .run_writing(move |conn| event.record(conn).map_err(FactorError::from))
            .await?;
        return Ok(None);
    }
    let user = user.clone();
    ctx.db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            let spent = match &matched {
                Some(id) => RecoveryCodes::spend(conn, id, now())?,
                None => false,
            };
            if !spent {
                Event::by_user(Kind::SecondFactorFailed, &user, ip.clone())
                    .with_detail(detail)
                    .record(conn)?;
                attempt.failed(conn, &user, &limits, ip)?;
                return Ok(None);
            }
            Attempt::succeeded(conn, &user.id)?;
            let remaining = RecoveryCodes::count_unused(conn, &user.id)?;
            Event::by_user(Kind::RecoveryCodeUsed, &user, ip.clone())
                .with_detail(format!("for {}; {remaining} left", purpose.as_str()))
                .record(conn)?;
            let to = &user.email;
            crate::mail::enqueue(conn, &Mail::RecoveryCodeUsed { to, remaining })?;
            let ended_sessions = purpose.on_success(conn, &user, ip)?;
            Ok(Some(Spent {
                remaining,
                ended_sessions,
            }))
        })
        .await
}

/// Replaces `user`'s codes with a new set, after they proved presence
/// (`Purpose::NewRecoveryCodes`). `None`: their second factor was turned off meanwhile
/// (in another tab), so there is nothing to back up and nothing changed.
pub async fn replace(
    ctx: &FactorContext,
    user: &User,
    ip: Option<String>,
) -> Result<Option<RecoverySet>, FactorError> {
    let set = new_set(ctx).await?;
    let user = user.clone();
    let hashes = set.hashes.clone();
    let replaced = ctx
        .db
        .write(move |conn| {
            User::lock(conn, &user.id)?;
            if !User::has_second_factor(conn, &user.id)? {
                return Ok::<_, FactorError>(false);
            }
            RecoveryCodes::replace_all(conn, &user.id, &hashes, now())?;
            Event::by_user(Kind::RecoveryCodesRegenerated, &user, ip).record(conn)?;
            crate::mail::enqueue(conn, &Mail::RecoveryCodesRegenerated { to: &user.email })?;
            Ok(true)
        })
        .await?;
    Ok(replaced.then_some(set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_has_ten_distinct_codes_with_matching_hashes() {
        let set = generate_set(4).unwrap();
        assert_eq!(set.codes.len(), CODES_PER_SET);
        assert_eq!(set.hashes.len(), CODES_PER_SET);
        let candidates: Vec<(String, String)> = set
            .hashes
            .iter()
            .enumerate()
            .map(|(i, h)| (i.to_string(), h.clone()))
            .collect();
        for (i, code) in set.codes.iter().enumerate() {
            assert_eq!(find_match(code, &candidates), Some(i.to_string().as_str()));
        }
        let stranger = RecoveryCode::generate().unwrap();
        assert_eq!(find_match(&stranger, &candidates), None);
    }

    #[test]
    fn hashes_use_the_configured_cost() {
        let set = generate_set(5).unwrap();
        assert!(set.hashes.iter().all(|h| h.starts_with("$2b$05$")));
    }
}
