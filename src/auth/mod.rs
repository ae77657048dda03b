//! Authentication: passwords, TOTP, recovery codes, encryption of secrets, the login state
//! machine and the guard that enforces it.

pub mod key_rotation;
pub mod password;
pub mod policy;
pub mod recovery;
pub mod reset;
pub mod second_factor;
pub mod secret_box;
pub mod session;
pub mod totp;
