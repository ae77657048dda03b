//! Input becomes one of these types at the edge; past the form struct, handlers never
//! see raw strings. Each parser says in plain words what was wrong.

mod email;
mod factors;
mod ids;
mod names;
mod next_path;
mod password;
pub mod policy;
mod policy_input;
mod recovery_code;
mod role;
mod totp_code;

pub use email::Email;
pub use factors::{FactorKind, Factors};
pub use ids::{UserId, WorkspaceId};
pub use names::{DisplayName, KeyName, Slug, WorkspaceName};
pub use next_path::NextPath;
pub use password::{NewPassword, Password, PasswordOwner};
pub use policy_input::{GraceDays, LastDay, Reason};
pub use recovery_code::RecoveryCode;
pub use role::Role;
pub use totp_code::TotpCode;

/// Why an input was refused, in words fit for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// Characters that must not appear in text shown to others: controls, line and paragraph
/// separators, and invisible formatting (bidi overrides, zero-width characters) that could
/// make an audit entry read differently from what it says.
pub(crate) fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}
