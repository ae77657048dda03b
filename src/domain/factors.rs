//! Which second factors a user has, as every part of the app asks it: enforcement ("has a
//! second factor"), the page frame, the sign-in step, the security page. A leaf type, so
//! the account loaded for every request can carry it.
//!
//! Adding a kind (security keys, passkeys, email or SMS codes) means a variant in
//! [`FactorKind`], a field here, and one file in `auth::factors`; the callers keep asking
//! [`Factors::any`].

/// The kinds of second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    /// An authenticator app (TOTP).
    Authenticator,
    /// A single-use recovery code: a back-up for the others, never a factor on its own.
    RecoveryCode,
    /// A security key used as the second step (user presence is enough).
    SecurityKey,
    /// A passkey: a key registered with user verification, which signs in on its own.
    Passkey,
}

impl FactorKind {
    /// What a proof of this kind is called in the audit log.
    pub const fn proof(self) -> &'static str {
        match self {
            FactorKind::Authenticator => "authenticator code",
            FactorKind::RecoveryCode => "recovery code",
            FactorKind::SecurityKey => "security key",
            FactorKind::Passkey => "passkey",
        }
    }
}

/// The second factors one user has set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    /// An authenticator app is enrolled.
    pub authenticator: bool,
    /// At least one security key or passkey is registered.
    pub security_keys: bool,
}

impl Factors {
    /// Whether the user has a second factor: what "uses 2FA" means everywhere. Recovery
    /// codes do not count: they exist only beside another factor.
    pub const fn any(self) -> bool {
        self.authenticator || self.security_keys
    }

    /// Which factors, in the words of the members overview, its CSV export and the
    /// support search: `app`, `key` or `app and key`; `None` without any.
    pub const fn kinds(self) -> Option<&'static str> {
        match (self.authenticator, self.security_keys) {
            (true, true) => Some("app and key"),
            (true, false) => Some("app"),
            (false, true) => Some("key"),
            (false, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_factor_counts_as_two_factor_sign_in() {
        assert!(!Factors::default().any());
        for (authenticator, security_keys) in [(true, false), (false, true), (true, true)] {
            let factors = Factors {
                authenticator,
                security_keys,
            };
            assert!(factors.any(), "{factors:?}");
        }
        assert_eq!(FactorKind::Authenticator.proof(), "authenticator code");
        assert_eq!(FactorKind::RecoveryCode.proof(), "recovery code");
        assert_eq!(FactorKind::SecurityKey.proof(), "security key");
        assert_eq!(FactorKind::Passkey.proof(), "passkey");
    }

    #[test]
    fn the_kinds_are_named_app_key_or_both() {
        let of = |authenticator, security_keys| {
            Factors {
                authenticator,
                security_keys,
            }
            .kinds()
        };
        assert_eq!(of(false, false), None);
        assert_eq!(of(true, false), Some("app"));
        assert_eq!(of(false, true), Some("key"));
        assert_eq!(of(true, true), Some("app and key"));
    }
}
