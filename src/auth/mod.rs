//! Authentication, as use cases that return their own data and errors: passwords, the
//! second factors (`factors`, one file per kind), encryption of secrets, the login state
//! machine, resets (of 2FA, and of passwords by link), key rotation, what workspace
//! policy asks, and the WebAuthn relying party. The HTTP layer (`web`, `routes`) turns
//! their answers into pages.

pub mod factors;
pub mod key_rotation;
pub mod password;
pub mod passwords;
pub mod policy;
pub mod reset;
pub mod secret_box;
pub mod session;
pub mod webauthn;
