//! Building and running the server: database, keys, middleware, routes.
//!
//! Middleware, outermost first: request span and id → error pages and security headers →
//! session → guard (CSRF, login state, access) → routes.

use std::net::TcpListener;
use std::sync::Arc;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::error::UrlencodedError;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tracing_actix_web::TracingLogger;

use crate::auth::key_rotation::{Census, Failure, RECORDED_KEY, Role};
use crate::auth::password::PasswordHasher;
use crate::auth::secret_box::{IfNoKey, Keyring};
use crate::auth::webauthn::RelyingParty;
use crate::config::Settings;
use crate::db::models::AppSecrets;
use crate::db::{CHECKPOINT_INTERVAL, Checkpoints, Db};
use crate::session_store::DbSessionStore;
use crate::state::AppState;
use crate::telemetry::RequestSpan;
use crate::web::error::AppError;
use crate::web::error_pages::error_pages;
use crate::web::guard::guard;

/// Largest form body accepted; larger gets 413.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

pub struct Application {
    port: u16,
    server: Server,
    db: Db,
    settings: Settings,
    /// `None` once [`Application::without_mail_worker`] has taken it out.
    mail_worker: Option<crate::mail::Worker>,
}

impl Application {
    /// Opens the database (migrating it), loads and checks the keys, binds the port.
    /// Blocking, and meant to be: nothing is served until all of it has succeeded.
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = Db::connect_with(
            &settings.database_url,
            settings.database_pool_size,
            Checkpoints::Background,
        )?;
        db.migrate()?;
        let keyring = Keyring::load(
            settings.encryption_key.as_deref(),
            &settings.encryption_keys_previous,
            &settings.data_dir,
            IfNoKey::Generate,
        )?;
        check_keys(&db, &keyring)?;
        let cookie_key = cookie_key(&db)?;
        let hasher = PasswordHasher::new(settings.argon2, settings.hash_concurrency)?;

        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("could not listen on {} (BIND)", settings.bind))?;
        let port = listener.local_addr()?.port();
        let public_url = match &settings.public_url {
            Some(url) => url.clone(),
            None => default_public_url(listener.local_addr()?),
        };
        let webauthn = match RelyingParty::for_public_url(&public_url, &settings.issuer) {
            Ok(rp) => Some(Arc::new(rp)),
            Err(why) => {
                tracing::warn!("Security keys and passkeys are unavailable: {why}");
                None
            }
        };
        crate::routes::announce_setup_link(&db, &public_url)?;
        let hello_name = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "localhost".to_owned());
        let mail = crate::mail::Sender::new(&settings.mail, &settings.data_dir, &hello_name)?;
        tracing::info!(
            address = %listener.local_addr()?,
            %public_url,
            database = ?db.backend(),
            key_id = keyring.current_id(),
            previous_key_ids = ?keyring.previous_ids().collect::<Vec<_>>(),
            "Tessera is listening"
        );

        let state = web::Data::new(AppState {
            db: db.clone(),
            keyring: Arc::new(keyring),
            hasher,
            settings: settings.clone(),
            public_url: public_url.clone(),
            webauthn,
        });
        let server = build_server(listener, state, cookie_key, &settings)?;
        Ok(Application {
            port,
            server,
            db,
            settings,
            mail_worker: Some(crate::mail::Worker::new(mail)),
        })
    }

    /// Runs without the mail worker: whoever runs the app sends the outbox with
    /// [`crate::mail::dispatch_due`] (the tests, so they need not wait for a poll).
    pub fn without_mail_worker(mut self) -> Application {
        self.mail_worker = None;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> Db {
        self.db.clone()
    }

    /// Stops the server (as SIGTERM would); `run_until_stopped` then winds down and returns.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until a graceful stop (SIGTERM, SIGINT) has finished the requests in flight,
    /// then lets the outbox finish the mail in hand (it starts no other), then closes the
    /// database connections here, before the process exits.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // Background work: its statements are no request's cost (`Db::statements`).
        let background = self.db.for_background();
        let sweeper = crate::sweeper::run(
            background.clone(),
            crate::sweeper::Rules {
                session_idle: self.settings.session_idle,
                session_absolute: self.settings.session_absolute,
            },
        );
        let checkpointer = checkpointer(background.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = self.mail_worker;
        let outbox = async move {
            if let Some(worker) = worker {
                worker.run(background, stopped).await;
            }
        };
        let serve = async move {
            let result = tokio::select! {
                result = self.server => result,
                () = sweeper => Ok(()),
                () = checkpointer => Ok(()),
            };
            // Ignored error: the outbox has already returned, which is what is asked.
            let _ = stop.send(true);
            result
        };
        let (result, ()) = tokio::join!(serve, outbox);
        self.db.close();
        result
    }
}

/// The public address when `PUBLIC_URL` is not set: the bound address, except that a
/// loopback one is named `localhost`, so security keys work out of the box in development
/// (WebAuthn needs a name; browsers treat `http://localhost` as secure).
fn default_public_url(bound: std::net::SocketAddr) -> String {
    if bound.ip().is_loopback() {
        format!("http://localhost:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

fn build_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    cookie_key: Key,
    settings: &Settings,
) -> anyhow::Result<Server> {
    let https = settings.is_https();
    let trusted_proxies = web::Data::new(settings.trusted_proxies.clone());
    let store = DbSessionStore::new(
        state.db.clone(),
        settings.session_idle,
        settings.session_absolute,
    );
    let idle = actix_web::cookie::time::Duration::seconds(settings.session_idle.as_secs() as i64);
    let server = HttpServer::new(move || {
        let session = SessionMiddleware::builder(store.clone(), cookie_key.clone())
            .cookie_name(if https {
                "__Host-tessera".into()
            } else {
                "tessera".into()
            })
            .cookie_secure(https)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_path("/".into())
            .cookie_domain(None)
            .cookie_content_security(CookieContentSecurity::Signed)
            .session_lifecycle(BrowserSession::default().state_ttl(idle))
            .build();
        App::new()
            .wrap(from_fn(guard))
            .wrap(session)
            .wrap(from_fn(crate::session_store::account_slot))
            .wrap(from_fn(move |req, next| error_pages(https, req, next)))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(state.clone())
            .app_data(trusted_proxies.clone())
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .app_data(
                web::FormConfig::default()
                    .limit(MAX_FORM_BYTES)
                    .error_handler(|e, _| form_error(&e).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|_, _| {
                AppError::BadRequest(
                    "The address has a malformed query. Nothing was changed.".into(),
                )
                .into()
            }))
            .configure(crate::routes::configure)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(AppError::NotFound)
            }))
    })
    .workers(settings.workers)
    .listen(listener)?
    .run();
    Ok(server)
}

fn form_error(e: &UrlencodedError) -> AppError {
    match e {
        UrlencodedError::Overflow { .. } => AppError::PayloadTooLarge,
        _ => AppError::BadRequest(
            "The form was incomplete or malformed. Nothing was changed.".into(),
        ),
    }
}

/// Checkpoints SQLite's write-ahead log many times a second (see `CHECKPOINT_INTERVAL`).
/// Every round, idle or not: with `synchronous = NORMAL` a commit reaches the disk at the
/// next checkpoint, and a round with nothing to copy costs one statement.
async fn checkpointer(db: Db) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Many times a second: say when it starts failing and when it recovers, not each time.
    let mut failing = false;
    loop {
        interval.tick().await;
        match db.checkpoint().await {
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "could not checkpoint the database log; retrying");
            }
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the database log is checkpointed again");
            }
            _ => {}
        }
    }
}

/// Refuses to start with a key that is not this database's, or if any stored secret cannot
/// be decrypted with the configured keys: a wrong key must be a clear start-up error, never
/// "every 2FA sign-in fails". The census opens one secret per key id and table
/// (`Census::sample`), so this stays cheap with many users.
///
/// The recorded key id is the current key of the last completed rotation (the first
/// start's key before any): a keyring must contain it, as its current key or a previous
/// one. So during a rotation both the old and the new configuration start, and after
/// `tessera rotate-key` has moved the record a start with only the old key is refused.
pub fn check_keys(db: &Db, keyring: &Keyring) -> anyhow::Result<()> {
    let mut conn = db.get()?;
    // The first start records its key id, so a second instance with another key is refused
    // even before any secret exists (the case of two instances without ENCRYPTION_KEY,
    // each generating its own key file).
    let recorded = AppSecrets::get_or_insert(&mut conn, RECORDED_KEY, keyring.current_id())?;
    if !keyring.knows(&recorded) {
        anyhow::bail!(
            "this database belongs to encryption key {recorded}, but the configured key is {} \
             and {recorded} is not among ENCRYPTION_KEYS_PREVIOUS either. Every instance must use \
             the same ENCRYPTION_KEY: set it to the key of the instance that first used this \
             database (or restore that data folder's encryption.key) — or, after \
             `tessera rotate-key`, to the key it rotated to.",
            keyring.current_id()
        );
    }
    let census = Census::sample(&mut conn, keyring)?;
    if let Some(Failure {
        user_id,
        key_id,
        reason,
        ..
    }) = census.failures.first()
    {
        if census.role(key_id) == Role::Unknown {
            anyhow::bail!(
                "stored TOTP secrets were encrypted with key {key_id}, but the configured key is {} \
                 and {key_id} is not among ENCRYPTION_KEYS_PREVIOUS either. Set ENCRYPTION_KEY \
                 to the key these secrets were made with, or add it to ENCRYPTION_KEYS_PREVIOUS \
                 (or restore the encryption.key file of the data folder they came from). \
                 Starting anyway would make every two-factor sign-in fail.",
                keyring.current_id()
            );
        }
        anyhow::bail!(
            "a stored TOTP secret (key {key_id}, user {user_id}) cannot be decrypted: {reason}. \
             The database or the key has been altered; restore them from a backup."
        );
    }
    Ok(())
}

/// The key that signs session cookies: random, made once, kept in the database so every
/// instance shares it and it survives restarts and encryption-key rotation.
fn cookie_key(db: &Db) -> anyhow::Result<Key> {
    let fresh = B64.encode(crate::random::bytes::<64>()?);
    let encoded = AppSecrets::get_or_insert(&mut *db.get()?, "cookie_signing_key", &fresh)?;
    let bytes = B64
        .decode(encoded)
        .context("the stored cookie key is not base64")?;
    Key::try_from(bytes.as_slice()).context("the stored cookie key is too short")
}
