/// Where to send someone after they sign in: only a path on this site.
///
/// `//evil.example`, `/\evil.example`, absolute URLs, control characters and the sign-in
/// pages themselves are refused (the caller then falls back to `/home`), so `next=` can
/// never become an open redirect or a loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPath(String);

impl NextPath {
    pub fn parse(input: &str) -> Option<NextPath> {
        let bytes = input.as_bytes();
        let same_site = bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && !input.contains('\\')
            && !input.chars().any(|c| c.is_control() || c.is_whitespace())
            && input.len() <= 2048;
        let path = input.split(['?', '#']).next().unwrap_or("");
        let is_sign_in_page = path == "/login" || path.starts_with("/login/") || path == "/logout";
        (same_site && !is_sign_in_page).then(|| NextPath(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_paths_are_kept() {
        for good in [
            "/home",
            "/account/security",
            "/admin/users?q=ada&page=2",
            "/a#b",
        ] {
            assert_eq!(NextPath::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn anything_that_could_leave_the_site_is_refused() {
        for bad in [
            "",
            "home",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/ok\\..\\x",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/a\nb",
            " /home",
            "/login",
            "/login/2fa?x=1",
            "/logout",
        ] {
            assert!(NextPath::parse(bad).is_none(), "{bad:?} was accepted");
        }
        assert!(NextPath::parse(&format!("/{}", "a".repeat(3000))).is_none());
    }
}
