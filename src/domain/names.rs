use super::Invalid;

/// A workspace's short name in URLs and commands: lower-case letters, digits and dashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Slug, Invalid> {
        let slug = input.trim().to_ascii_lowercase();
        if slug.len() < 2 || slug.len() > 40 {
            return Err(Invalid("The short name needs 2 to 40 characters."));
        }
        if !slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || slug.starts_with('-')
            || slug.ends_with('-')
        {
            return Err(Invalid(
                "The short name may use letters, digits and dashes, and must not start or end with a dash.",
            ));
        }
        Ok(Slug(slug))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A human-readable name, trimmed, 1 to 100 characters, no control characters.
fn parse_name(input: &str, empty: &'static str) -> Result<String, Invalid> {
    let name = input.trim();
    if name.is_empty() {
        return Err(Invalid(empty));
    }
    if name.chars().count() > 100 {
        return Err(Invalid("That name is too long (100 characters at most)."));
    }
    if name.chars().any(super::is_hidden_or_control) {
        return Err(Invalid(
            "That name contains characters that cannot be shown.",
        ));
    }
    Ok(name.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceName(String);

impl WorkspaceName {
    pub fn parse(input: &str) -> Result<WorkspaceName, Invalid> {
        parse_name(input, "Enter a name for the workspace.").map(WorkspaceName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's name; may be left empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(input: &str) -> Result<DisplayName, Invalid> {
        if input.trim().is_empty() {
            return Ok(DisplayName::default());
        }
        parse_name(input, "").map(DisplayName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name a user gives one of their security keys ("YubiKey on my keyring"), so they can
/// tell them apart on their security page and in mails: 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    pub fn parse(input: &str) -> Result<KeyName, Invalid> {
        let name = parse_name(
            input,
            "Give the key a name, so you can tell your keys apart.",
        )?;
        if name.chars().count() > 64 {
            return Err(Invalid("That name is too long (64 characters at most)."));
        }
        Ok(KeyName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_name_is_trimmed_and_short() {
        assert_eq!(
            KeyName::parse("  YubiKey on my keyring ").unwrap().as_str(),
            "YubiKey on my keyring"
        );
        assert!(KeyName::parse("   ").is_err());
        assert!(KeyName::parse(&"k".repeat(65)).is_err());
        assert!(KeyName::parse(&"k".repeat(64)).is_ok());
        assert!(KeyName::parse("bad\u{7}name").is_err());
    }

    #[test]
    fn slugs_are_lower_case_letters_digits_and_dashes() {
        assert_eq!(Slug::parse(" Acme-2 ").unwrap().as_str(), "acme-2");
        for bad in [
            "a",
            "-acme",
            "acme-",
            "ac me",
            "acme_corp",
            "äcme",
            &"a".repeat(41),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            WorkspaceName::parse("  Acme Ltd ").unwrap().as_str(),
            "Acme Ltd"
        );
        assert!(WorkspaceName::parse("   ").is_err());
        assert!(WorkspaceName::parse(&"x".repeat(101)).is_err());
        assert!(WorkspaceName::parse("bad\u{7}name").is_err());
        assert_eq!(DisplayName::parse("  ").unwrap().as_str(), "");
        assert_eq!(DisplayName::parse(" Ada ").unwrap().as_str(), "Ada");
    }
}
