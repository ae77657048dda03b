use super::Invalid;

/// A six-digit one-time code as typed: spaces (and tabs) are tolerated, nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(input: &str) -> Result<TotpCode, Invalid> {
        let code: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if code.is_empty() {
            return Err(Invalid(
                "Enter the 6-digit code from your authenticator app.",
            ));
        }
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid("The code is 6 digits, like 123 456."));
        }
        Ok(TotpCode(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Codes are short-lived secrets: keep them out of logs.
impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_digits_with_spaces_are_accepted() {
        assert_eq!(TotpCode::parse("123456").unwrap().as_str(), "123456");
        assert_eq!(TotpCode::parse(" 123 456 ").unwrap().as_str(), "123456");
        assert_eq!(TotpCode::parse("12 34\t56").unwrap().as_str(), "123456");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "   ",
            "12345",
            "1234567",
            "12345a",
            "123-456",
            "١٢٣٤٥٦",
            "+12345",
            "12345\u{0}",
        ] {
            assert!(TotpCode::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn debug_output_hides_the_code() {
        assert!(!format!("{:?}", TotpCode::parse("123456").unwrap()).contains("123"));
    }
}
