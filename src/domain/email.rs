use super::Invalid;

/// An email address, trimmed and lower-cased: the form in which emails are stored and
/// compared, which makes them unique case-insensitively (the contract's rule).
///
/// Deliberately stricter than RFC 5322: no quoted local parts, no comments, no `:`
/// (authenticator apps split their labels on it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Email, Invalid> {
        let email = input.trim().to_lowercase();
        if email.is_empty() {
            return Err(Invalid("Enter your email address."));
        }
        let invalid = Invalid("Enter an email address like name@example.com.");
        if email.len() > 254 {
            return Err(Invalid("That email address is too long."));
        }
        let (local, domain) = email.rsplit_once('@').ok_or(invalid.clone())?;
        let forbidden =
            |c: char| c.is_whitespace() || c.is_control() || "@:<>()[],;\"\\".contains(c);
        if local.is_empty()
            || local.len() > 64
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || local.chars().any(forbidden)
            || domain.chars().any(forbidden)
        {
            return Err(invalid);
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@.com",
            "ada@example.",
            "a b@example.com",
            "ada@exa mple.com",
            "ada:1@example.com",
            "<ada@example.com>",
            "ada@@example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn ordinary_emails_are_accepted() {
        for good in [
            "ada@example.com",
            "ada.lovelace+2fa@mail.example.co.uk",
            "o'neil@example.ie",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} was refused");
        }
    }
}
