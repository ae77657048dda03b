use secrecy::{ExposeSecret, SecretString};

use super::Invalid;

/// Longest password we hash. Argon2 copes with more, but nobody types this much and a
/// bound keeps a hostile request cheap.
const MAX_CHARS: usize = 1024;
const MIN_NEW_CHARS: usize = 12;

/// A password as typed at sign-in: never logged, zeroed when dropped.
pub struct Password(SecretString);

impl Password {
    pub fn parse(input: String) -> Result<Password, Invalid> {
        if input.is_empty() {
            return Err(Invalid("Enter your password."));
        }
        if input.chars().count() > MAX_CHARS {
            return Err(Invalid("That password is too long."));
        }
        Ok(Password(SecretString::from(input)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(****)")
    }
}

/// A password being set: at least 12 characters (NIST 800-63B asks for 8 at the least;
/// we want a little more), at most 1024, not only whitespace.
pub struct NewPassword(Password);

impl NewPassword {
    pub fn parse(input: String) -> Result<NewPassword, Invalid> {
        if input.trim().is_empty() {
            return Err(Invalid("Choose a password."));
        }
        if input.chars().count() < MIN_NEW_CHARS {
            return Err(Invalid("Choose a password of at least 12 characters."));
        }
        Password::parse(input).map(NewPassword)
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_passwords_need_only_be_present_and_bounded() {
        assert!(Password::parse("x".into()).is_ok());
        assert!(Password::parse(String::new()).is_err());
        assert!(Password::parse("é".repeat(1024)).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
    }

    #[test]
    fn new_passwords_need_twelve_characters() {
        assert!(NewPassword::parse("correct horse".into()).is_ok());
        assert!(NewPassword::parse("short".into()).is_err());
        assert!(NewPassword::parse(" ".repeat(20)).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let p = Password::parse("hunter2hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter"));
    }
}
