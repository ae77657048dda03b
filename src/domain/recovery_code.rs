use super::Invalid;

/// Crockford's base32 alphabet: no I, L, O or U, so nothing reads as something else.
/// 32 symbols = exactly 5 bits each, so picking one from a random byte has no bias.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LEN: usize = 12;

/// A recovery code: 12 symbols (60 bits), shown as `XXXX-XXXX-XXXX`.
///
/// Input ignores case, spaces and dashes, and reads the letters people confuse with
/// digits (O as 0, I and L as 1) the way Crockford's decoding does.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn parse(input: &str) -> Result<RecoveryCode, Invalid> {
        let mut code = String::with_capacity(LEN);
        for c in input.chars() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(Invalid(
                    "A recovery code has 12 letters and digits, like ABCD-EFGH-JKMN.",
                ));
            }
            code.push(c);
            if code.len() > LEN {
                break;
            }
        }
        if code.is_empty() {
            return Err(Invalid("Enter one of your recovery codes."));
        }
        if code.len() != LEN {
            return Err(Invalid(
                "A recovery code has 12 letters and digits, like ABCD-EFGH-JKMN.",
            ));
        }
        Ok(RecoveryCode(code))
    }

    /// A fresh code from the OS RNG.
    pub fn generate() -> Result<RecoveryCode, getrandom::Error> {
        let bytes: [u8; LEN] = crate::random::bytes()?;
        Ok(RecoveryCode(
            bytes
                .iter()
                .map(|b| ALPHABET[usize::from(b & 31)] as char)
                .collect(),
        ))
    }

    /// The canonical form that is hashed: 12 symbols, no dashes.
    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// The form shown to people: `XXXX-XXXX-XXXX`.
    pub fn formatted(&self) -> String {
        format!("{}-{}-{}", &self.0[0..4], &self.0[4..8], &self.0[8..12])
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_round_trip_through_parsing() {
        for _ in 0..100 {
            let code = RecoveryCode::generate().unwrap();
            let shown = code.formatted();
            assert_eq!(shown.len(), 14);
            assert_eq!(&shown[4..5], "-");
            assert_eq!(RecoveryCode::parse(&shown).unwrap(), code);
        }
    }

    #[test]
    fn input_ignores_case_spaces_and_dashes() {
        let code = RecoveryCode::parse("ABCD-EFGH-JKMN").unwrap();
        for variant in [
            "abcd-efgh-jkmn",
            "ABCDEFGHJKMN",
            " abcd efgh jkmn ",
            "ab-cd-ef-gh-jk-mn",
        ] {
            assert_eq!(RecoveryCode::parse(variant).unwrap(), code, "{variant:?}");
        }
    }

    #[test]
    fn look_alike_letters_read_as_digits() {
        assert_eq!(
            RecoveryCode::parse("O0IL-1111-0000").unwrap(),
            RecoveryCode::parse("0011-1111-0000").unwrap()
        );
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            " - ",
            "ABCD-EFGH-JKM",
            "ABCD-EFGH-JKMNP",
            "ABCD-EFGH-JKMU",
            "ABCD_EFGH_JKMN",
            "ÄBCD-EFGH-JKMN",
        ] {
            assert!(RecoveryCode::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(RecoveryCode::parse(&"A".repeat(10_000)).is_err());
    }

    #[test]
    fn every_symbol_of_the_alphabet_appears() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.extend(RecoveryCode::generate().unwrap().canonical().chars());
        }
        assert_eq!(seen.len(), 32);
    }
}
