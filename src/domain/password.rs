use secrecy::{ExposeSecret, SecretString};

use super::{Email, Invalid};

/// Longest password we hash. Argon2 copes with more, but nobody types this much and a
/// bound keeps a hostile request cheap.
const MAX_CHARS: usize = 1024;
const MIN_NEW_CHARS: usize = 12;
const MAX_NEW_CHARS: usize = 128;
/// zxcvbn's "safely unguessable" (more than 10^8 guesses), out of 0–4.
const MIN_SCORE: u8 = 3;
const MIN_OWN_WORD_CHARS: usize = 3;

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

/// Whose password is being set: a password that contains their own words is refused.
#[derive(Debug, Clone, Copy)]
pub struct PasswordOwner<'a> {
    pub email: &'a Email,
    pub workspace_name: &'a str,
}

/// A password being set, by the rules of NIST 800-63B: 12 to 128 characters, not only
/// whitespace, not easily guessed (the zxcvbn estimator, with its built-in lists of common
/// and breached passwords, words and names, must rate it at least 3 of 4: more than 10^8
/// guesses), and not containing the owner's email name or workspace name. No composition
/// rules: a long phrase of ordinary words is a good password.
pub struct NewPassword(Password);

impl NewPassword {
    pub fn parse(input: String, owner: PasswordOwner<'_>) -> Result<NewPassword, Invalid> {
        if input.trim().is_empty() {
            return Err(Invalid("Choose a password."));
        }
        let chars = input.chars().count();
        if chars < MIN_NEW_CHARS {
            return Err(Invalid("Choose a password of at least 12 characters."));
        }
        if chars > MAX_NEW_CHARS {
            return Err(Invalid("Choose a password of at most 128 characters."));
        }
        let folded = fold(&input);
        let local_part = owner.email.as_str().split('@').next().unwrap_or_default();
        if contains_word(&folded, local_part) {
            return Err(Invalid(
                "Choose a password that does not contain your email address: it is the first thing an attacker tries.",
            ));
        }
        if contains_word(&folded, owner.workspace_name) {
            return Err(Invalid(
                "Choose a password that does not contain the name of your workspace: it is the first thing an attacker tries.",
            ));
        }
        let inputs = [local_part, owner.workspace_name];
        if u8::from(zxcvbn::zxcvbn(&input, &inputs).score()) < MIN_SCORE {
            return Err(Invalid(
                "That password is too common or too easy to guess: it is on the lists attackers try first. A few unrelated words make a strong password that is easy to remember.",
            ));
        }
        Password::parse(input).map(NewPassword)
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// Lower case, with spaces, dots, dashes and underscores taken out, so "Acme Corp" is found
/// in "acme-corp-2026" and "jane.doe" in "JaneDoe!".
fn fold(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '.' | '-' | '_' | '+'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `password` (folded) contains `word` (folded), for words long enough to mean
/// something: a one- or two-letter email name would refuse half of all passwords.
fn contains_word(folded_password: &str, word: &str) -> bool {
    let word = fold(word);
    word.chars().count() >= MIN_OWN_WORD_CHARS && folded_password.contains(&word)
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

    fn owner(email: &str, workspace: &'static str) -> (Email, &'static str) {
        (Email::parse(email).unwrap(), workspace)
    }

    fn check(password: &str, (email, workspace): &(Email, &str)) -> Result<(), Invalid> {
        let owner = PasswordOwner {
            email,
            workspace_name: workspace,
        };
        NewPassword::parse(password.to_owned(), owner).map(|_| ())
    }

    #[test]
    fn new_passwords_need_twelve_to_128_characters() {
        let o = owner("jane@example.com", "Acme");
        assert!(check("correct horse battery staple", &o).is_ok());
        assert!(check("short", &o).is_err());
        assert!(check(&" ".repeat(20), &o).is_err());
        let long = "violet tram pocket ".repeat(7);
        assert!(check(&long[..128], &o).is_ok());
        let refused = check(&long[..129], &o).unwrap_err();
        assert!(refused.0.contains("at most 128"), "{refused}");
    }

    #[test]
    fn common_and_easily_guessed_passwords_are_refused() {
        let o = owner("jane@example.com", "Acme");
        for common in [
            "password1234",
            "qwertyuiopasdf",
            "123456789012",
            "iloveyou1234",
            "aaaaaaaaaaaaaaaa",
            "Password123!",
            "baseball2024",
        ] {
            let refused = check(common, &o).unwrap_err();
            assert!(refused.0.contains("too common"), "{common}: {refused}");
        }
    }

    #[test]
    fn passwords_with_the_owners_own_words_are_refused() {
        let o = owner("jane.doe@example.com", "Acme Corp");
        let email = check("JaneDoe-violet-tram", &o).unwrap_err();
        assert!(email.0.contains("email address"), "{email}");
        let workspace = check("acme-corp violet tram", &o).unwrap_err();
        assert!(workspace.0.contains("workspace"), "{workspace}");
        // A short email name is too common a string to refuse.
        assert!(check("violet tram pocket al", &owner("al@example.com", "Zq")).is_ok());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let p = Password::parse("hunter2hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter"));
    }
}
