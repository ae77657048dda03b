//! What every handler shares, built once at start.

use crate::auth::password::PasswordHasher;
use crate::auth::secret_box::Keyring;
use crate::config::Settings;
use crate::db::Db;

pub struct AppState {
    pub db: Db,
    pub keyring: Keyring,
    pub hasher: PasswordHasher,
    pub settings: Settings,
}
