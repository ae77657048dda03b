//! What every handler shares, built once at start.

use std::sync::Arc;

use crate::auth::factors::FactorContext;
use crate::auth::password::PasswordHasher;
use crate::auth::secret_box::Keyring;
use crate::config::Settings;
use crate::db::Db;

pub struct AppState {
    pub db: Db,
    pub keyring: Arc<Keyring>,
    pub hasher: PasswordHasher,
    pub settings: Settings,
    /// How users reach this server, without a trailing slash: `PUBLIC_URL`, or the default
    /// start-up chose for it (the links in mails, the relying party).
    pub public_url: String,
    /// The WebAuthn relying party; `None` when `PUBLIC_URL` cannot be one.
    pub webauthn: Option<Arc<crate::auth::webauthn::RelyingParty>>,
}

impl AppState {
    /// What the second-factor use cases need.
    pub fn factors(&self) -> FactorContext {
        FactorContext {
            db: self.db.clone(),
            keyring: self.keyring.clone(),
            limits: self.settings.limits,
            hasher: self.hasher.clone(),
            recovery_code_cost: self.settings.recovery_code_bcrypt_cost,
            webauthn: self.webauthn.clone(),
        }
    }
}
