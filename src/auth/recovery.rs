//! Recovery codes: ten single-use codes, stored only as bcrypt hashes.
//!
//! Cost: a recovery attempt may have to compare against every unused code, so the bcrypt
//! cost is kept low (`RECOVERY_CODE_BCRYPT_COST`, default 6: 3.5 ms a comparison on the
//! 2-core build machine, so ten take 35 ms against 20 ms for one argon2id check at the
//! default parameters — under two password hashes). That is safe because each code carries
//! 60 random bits: a stolen hash list cannot be searched whatever the cost factor, and
//! online guessing is a matter for request limits, not for bcrypt.

use crate::domain::RecoveryCode;

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
