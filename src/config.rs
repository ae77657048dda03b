//! One `Settings` struct, read from the environment (and an optional `.env`), validated
//! once at start. Every problem is reported at once, with the variable's name and what
//! it accepts, so a bad deployment fails before it serves anything.
//!
//! `.env.example` documents every key; keep the two in step.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::password::Argon2Settings;

#[derive(Clone)]
pub struct Settings {
    /// Address to listen on (`BIND`). Port 0 picks a free port (tests).
    pub bind: String,
    /// `DATABASE_URL`: a SQLite file path (default) or a `postgres://` URL. Never logged.
    pub database_url: String,
    /// `DATA_DIR`: where the default SQLite file and a generated key file live.
    pub data_dir: PathBuf,
    /// `PUBLIC_URL`: how users reach this server; `https://` turns on Secure cookies and HSTS.
    /// `None` means "derive from the bound address" (development).
    pub public_url: Option<String>,
    /// `ENCRYPTION_KEY`: base64 of 32 bytes. `None`: a key file in `DATA_DIR` is used or created.
    pub encryption_key: Option<String>,
    /// `ENCRYPTION_KEYS_PREVIOUS`: older keys that may still decrypt (key rotation), parsed.
    pub encryption_keys_previous: Vec<crate::auth::secret_box::KeyMaterial>,
    /// `ISSUER`: the name authenticator apps show.
    pub issuer: String,
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// How long the password step stays valid while the second factor is asked for.
    pub login_step_timeout: Duration,
    pub argon2: Argon2Settings,
    pub recovery_code_bcrypt_cost: u32,
    /// Password hashes allowed to run at once; more wait their turn (memory is m KiB each).
    pub hash_concurrency: usize,
    pub database_pool_size: u32,
    pub workers: usize,
    /// The time that workspace policy runs on (2FA deadlines, exemptions). Always the
    /// system clock in production; tests move it forward instead of sleeping for days.
    pub clock: crate::clock::Clock,
    /// Rate limits and lockouts (`RATE_LIMIT_*`, `SECOND_FACTOR_*`).
    pub limits: crate::limits::Limits,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::client::TrustedProxies,
    /// Security emails: `SMTP_URL`, `MAIL_FROM`, and the outbox worker's pace.
    pub mail: crate::mail::MailSettings,
}

/// Written by hand so that printing settings never shows the key or a database password.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("database", &crate::db::Backend::of_url(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "(set)"),
            )
            // Ids only: they name the keys without revealing them.
            .field("encryption_keys_previous", &self.encryption_keys_previous)
            .field("issuer", &self.issuer)
            .field("session_idle", &self.session_idle)
            .field("session_absolute", &self.session_absolute)
            .field("login_step_timeout", &self.login_step_timeout)
            .field("argon2", &self.argon2)
            .field("recovery_code_bcrypt_cost", &self.recovery_code_bcrypt_cost)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("database_pool_size", &self.database_pool_size)
            .field("workers", &self.workers)
            .field("limits", &self.limits)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("mail", &self.mail)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the configuration has problems:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Reads `.env` (if present) and the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        // A missing .env is normal; a malformed one is worth stopping for.
        if let Err(e) = dotenvy::dotenv()
            && !e.not_found()
        {
            return Err(ConfigError(vec![format!(".env could not be read: {e}")]));
        }
        Settings::from_lookup(|key| std::env::var(key).ok())
    }

    /// Builds settings from any key→value source; tests use this with their own values,
    /// so they go through exactly the parsing production uses.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut r = Reader {
            lookup: &lookup,
            problems: Vec::new(),
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());

        let bind = r.string("BIND", "127.0.0.1:8080");
        if !bind.contains(':') {
            r.problem("BIND must be host:port, e.g. 127.0.0.1:8080");
        }
        let data_dir = PathBuf::from(r.string("DATA_DIR", "./data"));
        let default_db = data_dir.join("tessera.db").to_string_lossy().into_owned();
        let database_url = r.string("DATABASE_URL", &default_db);
        let public_url = r
            .optional("PUBLIC_URL")
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            r.problem("PUBLIC_URL must start with http:// or https://");
        }
        let encryption_key = r.optional("ENCRYPTION_KEY");
        // Key rotation: each bad entry is reported by its position.
        let encryption_keys_previous = match r.optional("ENCRYPTION_KEYS_PREVIOUS") {
            None => Vec::new(),
            Some(list) => {
                crate::auth::secret_box::parse_previous_keys(&list).unwrap_or_else(|bad| {
                    for problem in bad {
                        r.problem(&problem.to_string());
                    }
                    Vec::new()
                })
            }
        };
        let issuer = r.string("ISSUER", "Tessera");
        if issuer.contains(':') || issuer.trim().is_empty() {
            r.problem("ISSUER must be non-empty and must not contain ':' (authenticator apps split on it)");
        }
        let session_idle =
            Duration::from_secs(60 * r.number("SESSION_IDLE_MINUTES", 30, 1, 24 * 60));
        let session_absolute =
            Duration::from_secs(3600 * r.number("SESSION_ABSOLUTE_HOURS", 12, 1, 24 * 30));
        let login_step_timeout =
            Duration::from_secs(r.number("LOGIN_STEP_TIMEOUT_SECONDS", 300, 1, 3600));
        let defaults = Argon2Settings::default();
        let argon2 = Argon2Settings {
            memory_kib: r.number(
                "ARGON2_MEMORY_KIB",
                defaults.memory_kib.into(),
                8,
                4 * 1024 * 1024,
            ) as u32,
            iterations: r.number("ARGON2_ITERATIONS", defaults.iterations.into(), 1, 100) as u32,
            parallelism: r.number("ARGON2_PARALLELISM", defaults.parallelism.into(), 1, 64) as u32,
        };
        if argon2.memory_kib < 8 * argon2.parallelism {
            r.problem("ARGON2_MEMORY_KIB must be at least 8 × ARGON2_PARALLELISM");
        }
        // Above 7, checking ten codes would cost more than about two password hashes (see
        // auth::factors::recovery); the codes' 60 random bits make a higher cost pointless anyway.
        let recovery_code_bcrypt_cost = r.number("RECOVERY_CODE_BCRYPT_COST", 6, 4, 7) as u32;
        let hash_concurrency =
            r.number("PASSWORD_HASH_CONCURRENCY", cores as u64, 1, 1024) as usize;
        let database_pool_size = r.number("DATABASE_POOL_SIZE", 10, 1, 1000) as u32;
        let workers = r.number("WORKERS", cores as u64, 1, 1024) as usize;
        let limit_defaults = crate::limits::Limits::default();
        let limits = crate::limits::Limits {
            window_seconds: 60 * r.number("RATE_LIMIT_WINDOW_MINUTES", 15, 1, 24 * 60) as i64,
            login_per_ip: r.number("RATE_LIMIT_LOGIN_PER_IP", 10, 1, 10_000) as i64,
            second_factor_per_ip: r.number("RATE_LIMIT_SECOND_FACTOR_PER_IP", 5, 1, 10_000) as i64,
            password_failures_per_account: r.number(
                "RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT",
                10,
                1,
                10_000,
            ) as i64,
            reset_per_network: r.number("RATE_LIMIT_PASSWORD_RESET_PER_IP", 10, 1, 10_000) as i64,
            reset_per_address: r.number("RATE_LIMIT_PASSWORD_RESET_PER_ADDRESS", 3, 1, 10_000)
                as i64,
            lock_after: r.number("SECOND_FACTOR_LOCK_AFTER", 5, 1, 100) as i64,
            longest_lock_minutes: r.number("SECOND_FACTOR_LONGEST_LOCK_MINUTES", 60, 1, 24 * 60)
                as i64,
            most_failures: limit_defaults.most_failures,
        };
        let trusted_proxies =
            match crate::client::TrustedProxies::parse(&r.string("TRUSTED_PROXIES", "")) {
                Ok(proxies) => proxies,
                Err(e) => {
                    r.problem(&format!("TRUSTED_PROXIES: {e}"));
                    crate::client::TrustedProxies::default()
                }
            };
        let (mail, mail_problems) = crate::mail::MailSettings::from_parts(
            r.optional("SMTP_URL"),
            r.optional("MAIL_FROM"),
            r.number("MAIL_POLL_INTERVAL_MS", 5_000, 10, 600_000),
            r.number("MAIL_RETRY_BASE_SECONDS", 60, 1, 3_600),
            r.number("MAIL_MAX_ATTEMPTS", 10, 1, 100),
        );
        r.problems.extend(mail_problems);

        if r.problems.is_empty() {
            Ok(Settings {
                bind,
                database_url,
                data_dir,
                public_url,
                encryption_key,
                encryption_keys_previous,
                issuer,
                session_idle,
                session_absolute,
                login_step_timeout,
                argon2,
                recovery_code_bcrypt_cost,
                hash_concurrency,
                database_pool_size,
                workers,
                clock: crate::clock::Clock::default(),
                limits,
                trusted_proxies,
                mail,
            })
        } else {
            Err(ConfigError(r.problems))
        }
    }

    /// How long each login state lives.
    pub fn login_lifetimes(&self) -> crate::auth::session::Lifetimes {
        crate::auth::session::Lifetimes {
            step: self.login_step_timeout,
            absolute: self.session_absolute,
        }
    }

    pub fn is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn optional(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.optional(key).unwrap_or_else(|| default.to_owned())
    }

    fn number(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.optional(key) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    self.problem(&format!(
                        "{key} must be a whole number from {min} to {max} (got {v:?})"
                    ));
                    default
                }
            },
        }
    }

    fn problem(&mut self, message: &str) {
        self.problems.push(message.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert!(s.database_url.ends_with("tessera.db"));
        assert_eq!(s.issuer, "Tessera");
        assert_eq!(s.session_idle, Duration::from_secs(30 * 60));
        assert_eq!(s.session_absolute, Duration::from_secs(12 * 3600));
        assert_eq!(s.login_step_timeout, Duration::from_secs(300));
        assert_eq!(s.argon2, Argon2Settings::default());
        assert!(!s.is_https());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let err = settings(&[
            ("ARGON2_MEMORY_KIB", "lots"),
            ("ISSUER", "Acme:Corp"),
            ("PUBLIC_URL", "example.com"),
            ("SESSION_IDLE_MINUTES", "0"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for key in [
            "ARGON2_MEMORY_KIB",
            "ISSUER",
            "PUBLIC_URL",
            "SESSION_IDLE_MINUTES",
        ] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        assert_eq!(err.0.len(), 4);
    }

    #[test]
    fn printing_settings_shows_no_key_or_database_password() {
        let s = settings(&[
            (
                "ENCRYPTION_KEY",
                "c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcyEhISE=",
            ),
            ("DATABASE_URL", "postgres://tessera:hunter2@db/tessera"),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Postgres"));
    }

    #[test]
    fn previous_encryption_keys_are_parsed_and_bad_entries_named() {
        let (one, two) = (
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",
        );
        let s = settings(&[("ENCRYPTION_KEYS_PREVIOUS", &format!("{one}, {two}"))]).unwrap();
        assert_eq!(s.encryption_keys_previous.len(), 2);
        let printed = format!("{s:?}");
        assert!(!printed.contains("AQEBAQ"), "{printed}");
        assert!(settings(&[]).unwrap().encryption_keys_previous.is_empty());

        let err = settings(&[
            ("ENCRYPTION_KEYS_PREVIOUS", &format!("{one},c2hvcnQ=")),
            ("WORKERS", "0"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.0[0].starts_with(
                "ENCRYPTION_KEYS_PREVIOUS entry 2 of 2 must decode to exactly 32 bytes"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_https_public_url_is_recognised() {
        let s = settings(&[("PUBLIC_URL", "https://login.example.com/")]).unwrap();
        assert!(s.is_https());
        assert_eq!(s.public_url.as_deref(), Some("https://login.example.com"));
    }
}
