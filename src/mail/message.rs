//! Building a mail: its kind, recipient and subject, and its text and HTML bodies from
//! `templates/email/`. Each mail has its own facts struct holding exactly what its
//! templates show, so a template that names a fact its mail lacks does not compile. Both
//! templates of a mail read the same struct, as `f`; `base.html` and `footer.txt` read the
//! fields every struct has (`subject`, `to`).

use askama::Template;

use super::{KeyChange, Mail, MembershipChange, ResetAuthor};
use crate::domain::policy::RequirementKind;
use crate::words::date_time;

/// A mail ready for the outbox.
pub(super) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail<'_> {
    /// Stored with the row, for logs and operators.
    pub fn kind(&self) -> &'static str {
        match self {
            Mail::TwoFactorEnabled { .. } => "two_factor_enabled",
            Mail::TwoFactorDisabled { .. } => "two_factor_disabled",
            Mail::AuthenticatorRemoved { .. } => "authenticator_removed",
            Mail::TwoFactorReset { .. } => "two_factor_reset",
            Mail::RecoveryCodeUsed { .. } => "recovery_code_used",
            Mail::RecoveryCodesRegenerated { .. } => "recovery_codes_regenerated",
            Mail::EnforcementOn { .. } => "enforcement_on",
            Mail::SecondFactorFailures { .. } => "second_factor_failures",
            Mail::Invite { .. } => "invite",
            Mail::Membership {
                change: MembershipChange::Role(_),
                ..
            } => "role_changed",
            Mail::Membership {
                change: MembershipChange::Deactivated,
                ..
            } => "deactivated",
            Mail::Membership {
                change: MembershipChange::Reactivated,
                ..
            } => "reactivated",
            Mail::SecurityKey {
                change: KeyChange::Added { .. },
                ..
            } => "security_key_added",
            Mail::SecurityKey {
                change: KeyChange::Removed,
                ..
            } => "security_key_removed",
            Mail::SecurityKey {
                change: KeyChange::CounterRegression,
                ..
            } => "security_key_copied",
            Mail::PasswordChanged { .. } => "password_changed",
            Mail::PasswordReset { .. } => "password_reset",
            Mail::PasswordResetLink { .. } => "password_reset_link",
        }
    }

    pub(super) fn to(&self) -> &str {
        match self {
            Mail::TwoFactorEnabled { to }
            | Mail::TwoFactorDisabled { to }
            | Mail::AuthenticatorRemoved { to }
            | Mail::TwoFactorReset { to, .. }
            | Mail::RecoveryCodeUsed { to, .. }
            | Mail::RecoveryCodesRegenerated { to }
            | Mail::EnforcementOn { to, .. }
            | Mail::SecondFactorFailures { to, .. }
            | Mail::Invite { to, .. }
            | Mail::Membership { to, .. }
            | Mail::SecurityKey { to, .. } => to,
            Mail::PasswordChanged { to }
            | Mail::PasswordReset { to }
            | Mail::PasswordResetLink { to, .. } => to,
        }
    }

    fn subject(&self) -> String {
        match self {
            Mail::TwoFactorEnabled { .. } => "Two-factor sign-in was turned on".into(),
            Mail::TwoFactorDisabled { .. } => "Two-factor sign-in was turned off".into(),
            Mail::AuthenticatorRemoved { .. } => {
                "The authenticator app was removed from your account".into()
            }
            Mail::TwoFactorReset { .. } => "Your two-factor sign-in was reset".into(),
            Mail::RecoveryCodeUsed { remaining, .. } => {
                format!("A recovery code was used ({remaining} left)")
            }
            Mail::RecoveryCodesRegenerated { .. } => "You have new recovery codes".into(),
            Mail::EnforcementOn {
                workspace,
                requirement: RequirementKind::TwoFactor,
                ..
            } => format!("{workspace} now requires two-factor sign-in"),
            Mail::EnforcementOn {
                workspace,
                requirement: RequirementKind::SecurityKey,
                ..
            } => format!("{workspace} now requires a security key or passkey"),
            Mail::SecondFactorFailures { .. } => {
                "Your password was used, then the second step failed".into()
            }
            Mail::Invite { workspace, .. } => format!("You are invited to {workspace} on Tessera"),
            Mail::Membership {
                workspace, change, ..
            } => match change {
                MembershipChange::Role(role) => {
                    format!("Your role in {workspace} is now {}", role.as_str())
                }
                MembershipChange::Deactivated => {
                    format!("Your account in {workspace} was deactivated")
                }
                MembershipChange::Reactivated => {
                    format!("Your account in {workspace} was reactivated")
                }
            },
            Mail::SecurityKey { change, .. } => match change {
                KeyChange::Added { passkey: true } => "A passkey was added to your account".into(),
                KeyChange::Added { passkey: false } => {
                    "A security key was added to your account".into()
                }
                KeyChange::Removed => "A security key was removed from your account".into(),
                KeyChange::CounterRegression => {
                    "One of your security keys may have been copied".into()
                }
            },
            Mail::PasswordChanged { .. } => "Your password was changed".into(),
            Mail::PasswordReset { .. } => "Your password was reset".into(),
            Mail::PasswordResetLink { .. } => "Reset your Tessera password".into(),
        }
    }

    /// Renders the mail as of `now` (Unix seconds), the time it states the change happened.
    pub(super) fn render(&self, now: i64) -> askama::Result<Rendered> {
        let subject = self.subject();
        let to = self.to();
        let at = date_time(now);
        /// Both bodies of one mail, from its facts.
        macro_rules! bodies {
            ($text:ident, $html:ident, $facts:expr) => {{
                let f = &$facts;
                ($text { f }.render()?, $html { f }.render()?)
            }};
        }
        let (text, html) = match *self {
            Mail::TwoFactorEnabled { .. } => {
                let facts = Plain {
                    subject: &subject,
                    to,
                    at,
                };
                bodies!(EnabledText, EnabledHtml, facts)
            }
            Mail::TwoFactorDisabled { .. } => {
                let facts = Plain {
                    subject: &subject,
                    to,
                    at,
                };
                bodies!(DisabledText, DisabledHtml, facts)
            }
            Mail::AuthenticatorRemoved { .. } => {
                let facts = Plain {
                    subject: &subject,
                    to,
                    at,
                };
                bodies!(AppRemovedText, AppRemovedHtml, facts)
            }
            Mail::TwoFactorReset { by, removed, .. } => {
                let (who, reason) = match by {
                    ResetAuthor::Admin { email } => {
                        (format!("by {email}, an admin of your workspace"), None)
                    }
                    ResetAuthor::Staff { email, reason } => {
                        (format!("by {email}, of Tessera support"), Some(reason))
                    }
                    ResetAuthor::Cli { reason } => (
                        "by an operator of this Tessera installation, from the command line"
                            .to_owned(),
                        Some(reason),
                    ),
                };
                let facts = Reset {
                    subject: &subject,
                    to,
                    at,
                    who,
                    reason,
                    removed,
                };
                bodies!(ResetText, ResetHtml, facts)
            }
            Mail::RecoveryCodeUsed { remaining, .. } => {
                let facts = CodeUsed {
                    subject: &subject,
                    to,
                    at,
                    remaining,
                };
                bodies!(CodeUsedText, CodeUsedHtml, facts)
            }
            Mail::RecoveryCodesRegenerated { .. } => {
                let facts = Plain {
                    subject: &subject,
                    to,
                    at,
                };
                bodies!(RegeneratedText, RegeneratedHtml, facts)
            }
            Mail::EnforcementOn {
                workspace,
                deadline,
                requirement,
                ..
            } => {
                let facts = Enforcement {
                    subject: &subject,
                    to,
                    workspace,
                    deadline: date_time(deadline),
                    key: requirement == RequirementKind::SecurityKey,
                };
                bodies!(EnforcementText, EnforcementHtml, facts)
            }
            Mail::SecondFactorFailures { failures, .. } => {
                let facts = Failures {
                    subject: &subject,
                    to,
                    at,
                    failures,
                };
                bodies!(FailuresText, FailuresHtml, facts)
            }
            Mail::Invite {
                workspace,
                role,
                invited_by,
                link,
                expires_at,
                ..
            } => {
                let facts = Invitation {
                    subject: &subject,
                    to,
                    workspace,
                    role: if role == "admin" {
                        "an admin"
                    } else {
                        "a member"
                    },
                    invited_by,
                    link,
                    expires: date_time(expires_at),
                };
                bodies!(InviteText, InviteHtml, facts)
            }
            Mail::Membership {
                workspace,
                by,
                change,
                ..
            } => {
                let (what, then) = match change {
                    MembershipChange::Role(role) => (
                        format!(
                            "Your account {to} is now {} of the workspace {workspace}.",
                            if role == crate::domain::Role::Admin {
                                "an admin"
                            } else {
                                "a member (not an admin)"
                            }
                        ),
                        "Nothing else about your account changed: your password and two-factor sign-in are as before.",
                    ),
                    MembershipChange::Deactivated => (
                        format!("Your account {to} in the workspace {workspace} was deactivated."),
                        "You were signed out everywhere, and you cannot sign in until an admin reactivates the account.",
                    ),
                    MembershipChange::Reactivated => (
                        format!("Your account {to} in the workspace {workspace} was reactivated."),
                        "You can sign in again with your password and your two-factor sign-in, as before.",
                    ),
                };
                let facts = Membership {
                    subject: &subject,
                    to,
                    at,
                    workspace,
                    by,
                    what,
                    then,
                };
                bodies!(MembershipText, MembershipHtml, facts)
            }
            Mail::SecurityKey { name, change, .. } => {
                let (what, then) = match change {
                    // Not named: whoever added it chose the name, and could make the
                    // warning read as routine.
                    KeyChange::Added { passkey } => (
                        if passkey {
                            format!(
                                "A passkey was added to your account {to}. It can sign you in without your password."
                            )
                        } else {
                            format!(
                                "A security key was added to your account {to}. After your password, touching it signs you in."
                            )
                        },
                        "If this was not you, someone signed in to your account has added a key of their own: contact an admin of your workspace straight away and ask them to reset your two-factor sign-in. Your security page lists your keys.",
                    ),
                    KeyChange::Removed => (
                        format!(
                            "The security key “{name}” was removed from your account {to}. It can no longer sign you in."
                        ),
                        "If this was not you, contact an admin of your workspace straight away.",
                    ),
                    KeyChange::CounterRegression => (
                        format!(
                            "A sign-in with your security key “{name}” was refused: the key's counter went backwards, which is what a copy of a key does."
                        ),
                        "If you did not just use this key, remove it from your security page and contact an admin of your workspace.",
                    ),
                };
                let facts = KeyMail {
                    subject: &subject,
                    to,
                    at,
                    what,
                    then,
                };
                bodies!(KeyText, KeyHtml, facts)
            }
            Mail::PasswordChanged { .. } => {
                let facts = Plain {
                    subject: &subject,
                    to,
                    at,
                };
                bodies!(ChangedText, ChangedHtml, facts)
            }
            Mail::PasswordReset { .. } => {
                let facts = Plain {
                    subject: &subject,
                    to,
                    at,
                };
                bodies!(PasswordResetText, PasswordResetHtml, facts)
            }
            Mail::PasswordResetLink {
                link,
                expires_at,
                minutes,
                ..
            } => {
                let facts = ResetLink {
                    subject: &subject,
                    to,
                    at,
                    link,
                    minutes,
                    expires: date_time(expires_at),
                };
                bodies!(ResetLinkText, ResetLinkHtml, facts)
            }
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// A change to one of the user's security keys, in words, and what to do if it was not them.
struct KeyMail<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
    what: String,
    then: &'static str,
}

#[derive(Template)]
#[template(path = "email/security_key.txt")]
struct KeyText<'a> {
    f: &'a KeyMail<'a>,
}

#[derive(Template)]
#[template(path = "email/security_key.html")]
struct KeyHtml<'a> {
    f: &'a KeyMail<'a>,
}

#[derive(Template)]
#[template(path = "email/authenticator_removed.txt")]
struct AppRemovedText<'a> {
    f: &'a Plain<'a>,
}

#[derive(Template)]
#[template(path = "email/authenticator_removed.html")]
struct AppRemovedHtml<'a> {
    f: &'a Plain<'a>,
}

/// A change to the account, and when (UTC, in words): 2FA turned on or off, new codes.
struct Plain<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
}

/// Someone else removed the account's second factor; `who` in words, with their reason
/// when they had to give one.
struct Reset<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
    who: String,
    reason: Option<&'a str>,
    /// What was removed, in words ("authenticator app and 2 security keys").
    removed: &'a str,
}

struct CodeUsed<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
    remaining: i64,
}

/// `deadline` in words (UTC); `key`: the requirement is a security key or passkey, not
/// any second factor.
struct Enforcement<'a> {
    subject: &'a str,
    to: &'a str,
    workspace: &'a str,
    deadline: String,
    key: bool,
}

struct Failures<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
    failures: i64,
}

/// An invitation: who invited whom to which workspace, the link and its expiry in words.
struct Invitation<'a> {
    subject: &'a str,
    to: &'a str,
    workspace: &'a str,
    role: &'a str,
    invited_by: &'a str,
    link: &'a str,
    expires: String,
}

/// A change an admin made to the member's account: `what` happened, and what it means
/// for them (`then`).
struct Membership<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
    workspace: &'a str,
    by: &'a str,
    what: String,
    then: &'a str,
}

#[derive(Template)]
#[template(path = "email/invite.txt")]
struct InviteText<'a> {
    f: &'a Invitation<'a>,
}
#[derive(Template)]
#[template(path = "email/invite.html")]
struct InviteHtml<'a> {
    f: &'a Invitation<'a>,
}
#[derive(Template)]
#[template(path = "email/membership.txt")]
struct MembershipText<'a> {
    f: &'a Membership<'a>,
}
#[derive(Template)]
#[template(path = "email/membership.html")]
struct MembershipHtml<'a> {
    f: &'a Membership<'a>,
}
/// The reset link, how long it works (`minutes`) and until when (`expires`, in words).
struct ResetLink<'a> {
    subject: &'a str,
    to: &'a str,
    at: String,
    link: &'a str,
    minutes: i64,
    expires: String,
}

#[derive(Template)]
#[template(path = "email/password_changed.txt")]
struct ChangedText<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/password_changed.html")]
struct ChangedHtml<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/password_reset.txt")]
struct PasswordResetText<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/password_reset.html")]
struct PasswordResetHtml<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/password_reset_link.txt")]
struct ResetLinkText<'a> {
    f: &'a ResetLink<'a>,
}
#[derive(Template)]
#[template(path = "email/password_reset_link.html")]
struct ResetLinkHtml<'a> {
    f: &'a ResetLink<'a>,
}
#[derive(Template)]
#[template(path = "email/two_factor_enabled.txt")]
struct EnabledText<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/two_factor_enabled.html")]
struct EnabledHtml<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/two_factor_disabled.txt")]
struct DisabledText<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/two_factor_disabled.html")]
struct DisabledHtml<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/two_factor_reset.txt")]
struct ResetText<'a> {
    f: &'a Reset<'a>,
}
#[derive(Template)]
#[template(path = "email/two_factor_reset.html")]
struct ResetHtml<'a> {
    f: &'a Reset<'a>,
}
#[derive(Template)]
#[template(path = "email/recovery_code_used.txt")]
struct CodeUsedText<'a> {
    f: &'a CodeUsed<'a>,
}
#[derive(Template)]
#[template(path = "email/recovery_code_used.html")]
struct CodeUsedHtml<'a> {
    f: &'a CodeUsed<'a>,
}
#[derive(Template)]
#[template(path = "email/recovery_codes_regenerated.txt")]
struct RegeneratedText<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/recovery_codes_regenerated.html")]
struct RegeneratedHtml<'a> {
    f: &'a Plain<'a>,
}
#[derive(Template)]
#[template(path = "email/enforcement_on.txt")]
struct EnforcementText<'a> {
    f: &'a Enforcement<'a>,
}
#[derive(Template)]
#[template(path = "email/enforcement_on.html")]
struct EnforcementHtml<'a> {
    f: &'a Enforcement<'a>,
}
#[derive(Template)]
#[template(path = "email/second_factor_failures.txt")]
struct FailuresText<'a> {
    f: &'a Failures<'a>,
}
#[derive(Template)]
#[template(path = "email/second_factor_failures.html")]
struct FailuresHtml<'a> {
    f: &'a Failures<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mail_renders_in_text_and_html_without_links() {
        let to = "ada@example.com";
        let mails = [
            Mail::TwoFactorEnabled { to },
            Mail::TwoFactorDisabled { to },
            Mail::TwoFactorReset {
                to,
                by: ResetAuthor::Admin {
                    email: "boss@example.com",
                },
                removed: "authenticator app and 2 security keys",
            },
            Mail::RecoveryCodeUsed { to, remaining: 1 },
            Mail::RecoveryCodesRegenerated { to },
            Mail::EnforcementOn {
                to,
                workspace: "Acme <Ltd>",
                deadline: 1_795_305_600,
                requirement: RequirementKind::TwoFactor,
            },
            Mail::EnforcementOn {
                to,
                workspace: "Acme",
                deadline: 1_795_305_600,
                requirement: RequirementKind::SecurityKey,
            },
            Mail::SecondFactorFailures { to, failures: 5 },
            Mail::Membership {
                to,
                workspace: "Acme",
                by: "boss@example.com",
                change: MembershipChange::Deactivated,
            },
            Mail::Membership {
                to,
                workspace: "Acme",
                by: "boss@example.com",
                change: MembershipChange::Role(crate::domain::Role::Admin),
            },
            Mail::PasswordChanged { to },
            Mail::PasswordReset { to },
            Mail::SecurityKey {
                to,
                name: "routine test, ignore",
                change: KeyChange::Added { passkey: true },
            },
            Mail::SecurityKey {
                to,
                name: "YubiKey <blue>",
                change: KeyChange::Removed,
            },
            Mail::SecurityKey {
                to,
                name: "YubiKey",
                change: KeyChange::CounterRegression,
            },
            Mail::AuthenticatorRemoved { to },
        ];
        let now = crate::db::now();
        for mail in &mails {
            let Rendered { text, html, .. } = mail.render(now).unwrap();
            for body in [&text, &html] {
                assert!(body.contains(to), "{}: {body}", mail.kind());
                assert!(!body.contains("http"), "{}: {body}", mail.kind());
                assert!(!body.contains("href"), "{}: {body}", mail.kind());
            }
        }
        let Rendered { text, html, .. } = mails[2].render(now).unwrap();
        assert!(
            text.contains("boss@example.com, an admin of your workspace"),
            "{text}"
        );
        assert!(html.contains("boss@example.com"));
        let Rendered { text, .. } = mails[3].render(now).unwrap();
        assert!(text.contains("1 unused code is left"), "{text}");
        let Rendered { text, html, .. } = mails[5].render(now).unwrap();
        assert!(
            text.contains("Acme <Ltd>") && text.contains("22 November 2026"),
            "{text}"
        );
        assert!(
            html.contains("Acme &#60;Ltd&#62;") || html.contains("Acme &lt;Ltd&gt;"),
            "{html}"
        );
        let Rendered { text, .. } = mails[2].render(now).unwrap();
        assert!(
            text.contains("authenticator app and 2 security keys"),
            "{text}"
        );
        let Rendered { subject, text, .. } = mails[6].render(now).unwrap();
        assert_eq!(subject, "Acme now requires a security key or passkey");
        assert!(text.contains("security key or passkey"), "{text}");
        assert!(!text.contains("authenticator app on your phone"), "{text}");
        let Rendered { subject, text, .. } = mails[12].render(now).unwrap();
        assert_eq!(subject, "A passkey was added to your account");
        assert!(
            !text.contains("routine"),
            "the adder's name is not in the warning: {text}"
        );
        let Rendered { html, .. } = mails[13].render(now).unwrap();
        assert!(html.contains("YubiKey &#60;blue&#62;") || html.contains("YubiKey &lt;blue&gt;"));
        let Rendered { subject, text, .. } = mails[8].render(now).unwrap();
        assert_eq!(subject, "Your account in Acme was deactivated");
        assert!(
            text.contains("by boss@example.com, an admin of Acme"),
            "{text}"
        );
    }

    #[test]
    fn an_invitation_says_who_invited_whom_where_until_when_and_what_if_unexpected() {
        let link = "https://login.example.com/invite/abc_DEF-123";
        let mail = Mail::Invite {
            to: "new@example.com",
            workspace: "Acme <Ltd>",
            role: "admin",
            invited_by: "boss@example.com",
            link,
            expires_at: 1_795_305_600,
        };
        let Rendered {
            subject,
            text,
            html,
        } = mail.render(crate::db::now()).unwrap();
        assert_eq!(subject, "You are invited to Acme <Ltd> on Tessera");
        for body in [&text, &html] {
            assert!(body.contains(link), "{body}");
            assert!(body.contains("boss@example.com"), "{body}");
            assert!(body.contains("new@example.com"), "{body}");
            assert!(body.contains("22 November 2026"), "{body}");
            assert!(body.contains("did not expect"), "{body}");
            assert!(body.contains("an admin"), "{body}");
        }
        assert!(text.contains("Acme <Ltd>"), "{text}");
        assert!(!html.contains("Acme <Ltd>"), "escaped: {html}");
        assert!(!text.contains("contains no links"), "{text}");
    }

    #[test]
    fn the_reset_link_mail_says_what_the_link_is_for_until_when_and_what_if_not_asked() {
        let link = "https://login.example.com/login/reset/abc_DEF-123";
        let mail = Mail::PasswordResetLink {
            to: "ada@example.com",
            link,
            expires_at: 1_795_307_400,
            minutes: 30,
        };
        let Rendered {
            subject,
            text,
            html,
        } = mail.render(1_795_305_600).unwrap();
        assert!(subject.contains("Reset"), "{subject}");
        for body in [&text, &html] {
            assert!(body.contains(link), "{body}");
            assert!(body.contains("reset the password"), "{body}");
            assert!(body.contains("30 minutes"), "{body}");
            assert!(body.contains("22 November 2026, 00:30 UTC"), "{body}");
            assert!(body.contains("did not ask for this"), "{body}");
            assert!(body.contains("ada@example.com"), "{body}");
        }
        assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
        // Its body leaves the outbox once sent, like the invitation's; a notice has no link.
        assert!(super::super::carries_link(mail.kind()));
        assert!(!super::super::carries_link(
            Mail::PasswordReset { to: "a@b.c" }.kind()
        ));
    }
}
