//! Test harness, shared by the integration suite (`tests/api`, as `helpers`) and the
//! browser suite (`tests/e2e`): every test gets the real application on a random port,
//! over its own database — a fresh SQLite file, or, when `TEST_DATABASE_URL` is set, a
//! fresh PostgreSQL database that is dropped afterwards — and talks to it over HTTP.
//!
//! TOTP codes are computed here independently of the application (HMAC-SHA1 per RFC 4226/
//! 6238, as an authenticator app or `oathtool` would), from the secret the setup page shows.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use diesel::prelude::*;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tessera::auth::password::PasswordHasher;
use tessera::config::Settings;
use tessera::db::models::{NewUser, User, Workspace};
use tessera::db::{AnyConnection, Db, now};
use tessera::domain::{DisplayName, Email, Role, Slug, WorkspaceName};
use tessera::startup::Application;

pub const PASSWORD: &str = "correct horse battery staple";

/// Light argon2 parameters for speed, set through the same knobs production reads.
fn light_hashing() -> Vec<(&'static str, String)> {
    vec![
        ("ARGON2_MEMORY_KIB", "1024".into()),
        ("ARGON2_ITERATIONS", "1".into()),
        ("RECOVERY_CODE_BCRYPT_COST", "4".into()),
    ]
}

/// Where a test's database lives, and how to get rid of it.
pub struct TestDatabase {
    pub url: String,
    pub data_dir: std::path::PathBuf,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let name = format!(
            "tessera_test_{}",
            tessera::random::hex(&tessera::random::bytes::<8>().unwrap())
        );
        let data_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&data_dir).unwrap();
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(given) => {
                let (without_query, query) = given.split_once('?').unwrap_or((&given, ""));
                let (base, _) = without_query
                    .rsplit_once('/')
                    .expect("TEST_DATABASE_URL has no database name");
                // Without TLS unless the URL asks for it. libpq keeps OpenSSL state per
                // thread, freed when the thread ends; a test thread (or a stopped test
                // server's thread) ending while the test binary exits races OpenSSL's own
                // exit clean-up and crashes the binary after every test passed ("double
                // free", SIGSEGV). The local server needs no TLS; production URLs are used
                // as given.
                let query = if query.contains("sslmode=") {
                    query.to_owned()
                } else if query.is_empty() {
                    "sslmode=disable".to_owned()
                } else {
                    format!("{query}&sslmode=disable")
                };
                let admin_url = format!("{without_query}?{query}");
                let mut admin = diesel::PgConnection::establish(&admin_url)
                    .expect("TEST_DATABASE_URL is set but PostgreSQL cannot be reached");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut admin)
                    .unwrap();
                TestDatabase {
                    url: format!("{base}/{name}?{query}"),
                    data_dir,
                    postgres: Some((admin_url, name)),
                }
            }
            None => TestDatabase {
                url: data_dir.join("tessera.db").to_string_lossy().into_owned(),
                data_dir,
                postgres: None,
            },
        }
    }
}

/// The database made unavailable to the app until this is dropped: PostgreSQL refuses new
/// connections and ends the open ones; SQLite's write lock is held by another connection,
/// so every write waits out the busy timeout and fails ("database is locked").
pub enum Outage {
    Postgres { admin_url: String, name: String },
    Sqlite(diesel::SqliteConnection),
}

impl TestDatabase {
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub fn outage(&self) -> Outage {
        match &self.postgres {
            Some((admin_url, name)) => {
                let mut admin = diesel::PgConnection::establish(admin_url).unwrap();
                diesel::sql_query(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"))
                    .execute(&mut admin)
                    .unwrap();
                diesel::sql_query(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                ))
                .execute(&mut admin)
                .unwrap();
                Outage::Postgres {
                    admin_url: admin_url.clone(),
                    name: name.clone(),
                }
            }
            None => {
                let mut locker = diesel::SqliteConnection::establish(&self.url).unwrap();
                diesel::sql_query("BEGIN IMMEDIATE")
                    .execute(&mut locker)
                    .unwrap();
                Outage::Sqlite(locker)
            }
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        match self {
            Outage::Postgres { admin_url, name } => {
                if let Ok(mut admin) = diesel::PgConnection::establish(admin_url) {
                    let _ = diesel::sql_query(format!(
                        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"
                    ))
                    .execute(&mut admin);
                }
            }
            Outage::Sqlite(locker) => {
                let _ = diesel::sql_query("ROLLBACK").execute(locker);
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(mut admin) = diesel::PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin);
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub struct TestApp {
    pub address: String,
    pub db: Db,
    pub settings: Settings,
    pub hasher: PasswordHasher,
    pub database: std::sync::Arc<TestDatabase>,
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        if std::env::var("TEST_LOG").is_ok() {
            tessera::telemetry::init("info");
        }
    });
}

pub fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(tessera::random::bytes::<32>().unwrap())
}

/// Settings for a test app over `database`, with `overrides` on top.
pub fn test_settings(database: &TestDatabase, key: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut values: HashMap<String, String> = HashMap::new();
    values.insert("BIND".into(), "127.0.0.1:0".into());
    values.insert("DATABASE_URL".into(), database.url.clone());
    values.insert(
        "DATA_DIR".into(),
        database.data_dir.to_string_lossy().into_owned(),
    );
    values.insert("ENCRYPTION_KEY".into(), key.into());
    values.insert("WORKERS".into(), "2".into());
    values.insert("DATABASE_POOL_SIZE".into(), "4".into());
    for (k, v) in light_hashing() {
        values.insert(k.into(), v);
    }
    // Every test client is 127.0.0.1: the per-IP and per-email limits are set out of reach
    // here, through the settings production reads, and tested at their real values in
    // `limits.rs`.
    for k in [
        "RATE_LIMIT_LOGIN_PER_IP",
        "RATE_LIMIT_SECOND_FACTOR_PER_IP",
        "RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT",
        "RATE_LIMIT_PASSWORD_RESET_PER_IP",
        "RATE_LIMIT_PASSWORD_RESET_PER_ADDRESS",
    ] {
        values.insert(k.into(), "1000".into());
    }
    for (k, v) in overrides {
        values.insert((*k).into(), (*v).into());
    }
    Settings::from_lookup(|k| values.get(k).cloned()).expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let database = std::sync::Arc::new(TestDatabase::create());
    let settings = test_settings(&database, &random_key(), overrides);
    spawn_on(database, settings).await
}

/// Starts an app over an existing test database (a second instance, or a restart).
pub async fn spawn_on(database: std::sync::Arc<TestDatabase>, settings: Settings) -> TestApp {
    init_logs();
    // Mail is sent when a test says so (`dispatch_mail`), not by a worker it waits for.
    let app = Application::build(settings.clone())
        .expect("the app starts")
        .without_mail_worker();
    let port = app.port();
    let db = app.db();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db,
        hasher: PasswordHasher::new(settings.argon2, 2).unwrap(),
        settings,
        database,
    }
}

impl Drop for TestApp {
    /// Closes the app's connections on the test's thread. The server's workers stop only
    /// after the test, on their own threads; a PostgreSQL connection closed there while the
    /// test binary exits crashes it in OpenSSL's exit handlers.
    fn drop(&mut self) {
        self.db.close();
    }
}

impl TestApp {
    /// How the app names itself (its default public URL for a loopback bind): mailed links
    /// start with it, and browsers and security keys must use it (WebAuthn needs a name).
    pub fn public_url(&self) -> String {
        self.address.replacen("://127.0.0.1:", "://localhost:", 1)
    }

    /// Another instance over the same database and key (a second server behind a balancer).
    pub async fn sibling(&self) -> TestApp {
        let mut settings = self.settings.clone();
        settings.bind = "127.0.0.1:0".into();
        spawn_on(self.database.clone(), settings).await
    }

    /// Sends the outbox once, as the mail worker does at each poll; returns how many mails
    /// were delivered.
    pub async fn dispatch_mail(&self) -> usize {
        self.dispatch_mail_after(0).await
    }

    /// [`TestApp::dispatch_mail`] as if `seconds` later: reaches a retry without waiting.
    pub async fn dispatch_mail_after(&self, seconds: i64) -> usize {
        let sender =
            tessera::mail::Sender::new(&self.settings.mail, &self.settings.data_dir, "localhost")
                .unwrap();
        tessera::mail::dispatch_due(&self.db, &sender, now() + seconds)
            .await
            .unwrap()
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.address.clone(),
        }
    }

    pub fn conn(&self) -> impl std::ops::DerefMut<Target = AnyConnection> {
        self.db.get().unwrap()
    }

    /// What the triggers of migration 000008 keep agrees with what they summarise: each
    /// user's `authenticator_on` and `security_key_count` with the credential tables, and
    /// each workspace's `member_counts` with its members counted now.
    pub fn assert_counts_agree(&self) {
        #[derive(QueryableByName)]
        struct Disagreeing {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let users: Disagreeing = diesel::sql_query(
            "SELECT count(*) AS n FROM users WHERE \
             authenticator_on <> EXISTS (SELECT 1 FROM totp_credentials t WHERE t.user_id = users.id) \
             OR security_key_count <> (SELECT count(*) FROM security_keys k WHERE k.user_id = users.id)",
        )
        .get_result(&mut *self.conn())
        .unwrap();
        assert_eq!(
            users.n, 0,
            "users whose factor columns disagree with their credentials"
        );
        let none = "NOT u.authenticator_on AND u.security_key_count = 0";
        let counted = |condition: &str| {
            format!("(SELECT count(*) FROM users u WHERE u.workspace_id = w.id AND {condition})")
        };
        let workspaces: Disagreeing = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM workspaces w LEFT JOIN member_counts c ON c.workspace_id = w.id \
             WHERE COALESCE(c.members, 0) <> {} OR COALESCE(c.not_enrolled, 0) <> {} \
             OR COALESCE(c.active, 0) <> {} OR COALESCE(c.active_not_enrolled, 0) <> {} \
             OR COALESCE(c.active_without_key, 0) <> {}",
            counted("TRUE"),
            counted(none),
            counted("u.deactivated_at IS NULL"),
            counted(&format!("u.deactivated_at IS NULL AND {none}")),
            counted("u.deactivated_at IS NULL AND u.security_key_count = 0"),
        ))
        .get_result(&mut *self.conn())
        .unwrap();
        assert_eq!(workspaces.n, 0, "workspaces whose member counts are off");
    }

    pub fn workspace(&self, slug: &str) -> String {
        let mut conn = self.conn();
        let slug = Slug::parse(slug).unwrap();
        if let Some(ws) = Workspace::find_by_slug(&mut conn, &slug).unwrap() {
            return ws.id.into();
        }
        Workspace::insert(
            &mut conn,
            &WorkspaceName::parse(slug.as_str()).unwrap(),
            &slug,
            now(),
        )
        .unwrap()
        .id
        .into()
    }

    /// A user with `PASSWORD`, in workspace `acme` unless the email says otherwise.
    pub fn user(&self, email: &str) -> TestUser {
        self.user_in("acme", email, Role::Member)
    }

    pub fn user_in(&self, workspace: &str, email: &str, role: Role) -> TestUser {
        self.insert_user(workspace, email, role, false)
    }

    /// A support staff account (staff belong to a workspace like anyone else).
    pub fn staff_in(&self, workspace: &str, email: &str) -> TestUser {
        self.insert_user(workspace, email, Role::Member, true)
    }

    /// The clock workspace policy runs on, shared with the running server.
    pub fn clock(&self) -> &tessera::clock::Clock {
        &self.settings.clock
    }

    fn insert_user(&self, workspace: &str, email: &str, role: Role, is_staff: bool) -> TestUser {
        let workspace_id = self.workspace(workspace);
        let hash = self.hasher.hash_blocking(PASSWORD).unwrap();
        let email = Email::parse(email).unwrap();
        let id = User::insert(
            &mut self.conn(),
            &NewUser {
                workspace_id: &workspace_id,
                email: &email,
                name: &DisplayName::default(),
                role,
                is_staff,
                is_demo: false,
                password_hash: &hash,
            },
            now(),
        )
        .unwrap();
        TestUser {
            id: id.into(),
            email: email.as_str().to_owned(),
            password: PASSWORD.to_owned(),
            secret: None,
            recovery_codes: Vec::new(),
            last_step: 0,
        }
    }

    /// The kinds of the audit events about `user_id`, oldest first.
    pub fn audit_kinds(&self, user_id: &str) -> Vec<String> {
        use tessera::db::schema::audit_events::dsl::*;
        audit_events
            .filter(subject_id.eq(user_id))
            .order(id)
            .select(kind)
            .load(&mut *self.conn())
            .unwrap()
    }

    /// The kinds of the mails queued for `recipient`, oldest first.
    pub fn outbox_kinds(&self, recipient: &str) -> Vec<String> {
        use tessera::db::schema::mail_outbox;
        mail_outbox::table
            .filter(mail_outbox::recipient.eq(recipient))
            .order(mail_outbox::created_at)
            .select(mail_outbox::kind)
            .load(&mut *self.conn())
            .unwrap()
    }

    pub fn count_rows(&self, sql_table: &str, user: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM {sql_table} WHERE user_id = '{user}'"
        ))
        .get_result::<Count>(&mut *self.conn())
        .unwrap()
        .n
    }
}

pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    /// The TOTP secret, once enrolled.
    pub secret: Option<Vec<u8>>,
    pub recovery_codes: Vec<String>,
    /// The last time step this test used a code for (codes are accepted once).
    pub last_step: u64,
}

impl TestUser {
    /// A code for the earliest time step not used yet that the server will still accept
    /// (the current step or one either side), waiting for the clock when all are used.
    pub async fn fresh_code(&mut self) -> String {
        loop {
            wait_clear_of_step_boundary().await;
            let current = unix_now() / 30;
            let step = (self.last_step + 1).max(current - 1);
            if step <= current + 1 {
                self.last_step = step;
                return totp(
                    self.secret.as_ref().expect("the user is enrolled"),
                    step * 30,
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Codes near the edge of a 30-second step could be judged in the next one; wait it out.
pub async fn wait_clear_of_step_boundary() {
    loop {
        let into_step = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 30_000;
        if (2_000..28_000).contains(&into_step) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) at `unix_time`, computed independently.
pub fn totp(secret: &[u8], unix_time: u64) -> String {
    use hmac::{KeyInit, Mac};
    let counter = (unix_time / 30).to_be_bytes();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&counter);
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

/// RFC 4648 base32 (no padding) decoding, as an authenticator app reads a typed key.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let value = ALPHABET
            .find(c.to_ascii_uppercase())
            .expect("a base32 character") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn csrf(&self) -> String {
        between(&self.body, "name=\"csrf_token\" value=\"", "\"")
            .expect("the page has a form with a CSRF token")
    }

    /// The target of the page's link with `rel` (`next`, `prev`, `first`, `last`), as a
    /// browser would follow it.
    pub fn link(&self, rel: &str) -> Option<String> {
        let at = self.body.find(&format!("rel=\"{rel}\""))?;
        let start = self.body[..at].rfind("href=\"")? + "href=\"".len();
        let end = self.body[start..].find('"')? + start;
        Some(
            self.body[start..end]
                .replace("&#x2f;", "/")
                .replace("&#47;", "/")
                .replace("&#x3d;", "=")
                .replace("&#61;", "=")
                .replace("&#38;", "&")
                .replace("&amp;", "&"),
        )
    }

    pub fn alert(&self) -> Option<String> {
        let start = self.body.find("role=\"alert\"")?;
        between(&self.body[start..], ">", "<").map(|s| s.trim().to_owned())
    }

    pub fn totp_secret(&self) -> String {
        let start = self
            .body
            .find("id=\"totp-secret\"")
            .expect("the page shows the key");
        between(&self.body[start..], ">", "<")
            .unwrap()
            .replace(' ', "")
    }

    pub fn recovery_codes(&self) -> Vec<String> {
        self.body
            .split("class=\"recovery-code\">")
            .skip(1)
            .map(|s| s.split('<').next().unwrap().to_owned())
            .collect()
    }

    /// Decodes the QR code on the page (`#totp-qr`, an SVG of unit squares).
    pub fn qr_payload(&self) -> String {
        let start = self
            .body
            .find("<svg id=\"totp-qr\"")
            .expect("the page has the QR code");
        let svg = &self.body[start..start + self.body[start..].find("</svg>").unwrap()];
        let size: usize = between(svg, "width=\"", "\"").unwrap().parse().unwrap();
        let path = between(svg, " d=\"", "\"").unwrap();
        let scale = 4;
        let mut dark = vec![false; size * size];
        // Squares are drawn as "M{x} {y}h{w}v{h}H{x}V{y}".
        for square in path.split('M').filter(|s| !s.is_empty()) {
            let (x, rest) = square.split_once(' ').unwrap();
            let (y, rest) = rest.split_once('h').unwrap();
            let (w, rest) = rest.split_once('v').unwrap();
            let h = rest.split('H').next().unwrap();
            let (x, y, w, h): (usize, usize, usize, usize) = (
                x.parse().unwrap(),
                y.parse().unwrap(),
                w.parse().unwrap(),
                h.parse().unwrap(),
            );
            for yy in y..y + h {
                for xx in x..x + w {
                    dark[yy * size + xx] = true;
                }
            }
        }
        let mut image =
            rqrr::PreparedImage::prepare_from_greyscale(size * scale, size * scale, |x, y| {
                if dark[(y / scale) * size + x / scale] {
                    0
                } else {
                    255
                }
            });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one QR code is found");
        grids[0].decode().expect("the QR code decodes").1
    }
}

pub fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(text[from..to].to_owned())
}

/// The value of the session cookie the server last set on this client, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("tessera=") || v.starts_with("__Host-tessera="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

impl Client {
    pub async fn get(&self, path: &str) -> Page {
        Self::page(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn head(&self, path: &str) -> Page {
        Self::page(
            self.http
                .head(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn get_json(&self, path: &str) -> Page {
        Self::page(
            self.http
                .get(format!("{}{path}", self.base))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Posts a form exactly as given (no CSRF token added).
    /// The form is encoded before this returns, so the future borrows nothing.
    pub fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> impl std::future::Future<Output = Page> + use<> {
        let request = self.http.post(format!("{}{path}", self.base)).form(fields);
        async move { Self::page(request.send().await.unwrap()).await }
    }

    /// Posts `body` as it is, declared as a form.
    pub async fn post_body(&self, path: &str, body: String) -> Page {
        Self::page(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Posts a form with the CSRF token taken from `form_page`.
    pub async fn post(&self, form_page: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(form_page).await.csrf();
        let mut all: Vec<(&str, &str)> = vec![("csrf_token", &csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    pub async fn page(response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    /// The password step.
    pub async fn password_step(&self, user: &TestUser) -> Page {
        self.post(
            "/login",
            "/login",
            &[("email", &user.email), ("password", &user.password)],
        )
        .await
    }

    /// Signs in completely: password, then (if enrolled) a fresh authenticator code.
    pub async fn sign_in(&self, user: &mut TestUser) -> Page {
        let page = self.password_step(user).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "password step: {}",
            page.body
        );
        if page.location() != "/login/2fa" {
            return page;
        }
        let code = user.fresh_code().await;
        let page = self
            .post("/login/2fa", "/login/2fa", &[("code", &code)])
            .await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "second factor: {}",
            page.body
        );
        page
    }

    /// Enrols the signed-in `user` from the setup page, reading the key as a person would.
    pub async fn enrol(&self, user: &mut TestUser) -> Page {
        let setup = self.get("/account/2fa/setup").await;
        assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
        user.secret = Some(base32_decode(&setup.totp_secret()));
        user.last_step = 0;
        let code = user.fresh_code().await;
        let page = self
            .post_raw(
                "/account/2fa/setup",
                &[("csrf_token", &setup.csrf()), ("code", &code)],
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "enrolment: {}", page.body);
        user.recovery_codes = page.recovery_codes();
        assert_eq!(user.recovery_codes.len(), 10);
        page
    }
}

pub fn tessera_command(app: &TestApp, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("DATABASE_URL", &app.settings.database_url)
        .env("DATA_DIR", &app.settings.data_dir)
        .env("ARGON2_MEMORY_KIB", "1024")
        .env("ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a command that must succeed; returns what it printed.
pub fn tessera_ok(app: &TestApp, args: &[&str], stdin: &str) -> String {
    let out = tessera_command(app, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tessera {args:?} failed ({:?}): {stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `tessera` over the database of `settings` with `env` on top, and no encryption key
/// but what `env` gives (key rotation tests choose the keys each command sees). Takes
/// settings rather than an app, so it can run on a blocking thread while the app serves.
pub fn tessera_command_in(
    settings: &Settings,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args(args)
        .env("DATABASE_URL", &settings.database_url)
        .env("DATA_DIR", &settings.data_dir)
        .env("RUST_LOG", "warn")
        .env_remove("ENCRYPTION_KEY")
        .env_remove("ENCRYPTION_KEYS_PREVIOUS")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// A user of `app` who has signed in and enrolled, with a client signed in as them.
pub async fn enrolled_user(app: &TestApp, email: &str) -> (TestUser, Client) {
    enrol_as(app, app.user(email)).await
}

/// An admin of `workspace` who has signed in and enrolled, with a client signed in as them.
pub async fn enrolled_admin(app: &TestApp, workspace: &str, email: &str) -> (TestUser, Client) {
    enrol_as(app, app.user_in(workspace, email, Role::Admin)).await
}

/// Signs `user` in on a new client and enrols them.
pub async fn enrol_as(app: &TestApp, mut user: TestUser) -> (TestUser, Client) {
    let client = app.client();
    client.sign_in(&mut user).await;
    client.enrol(&mut user).await;
    (user, client)
}

/// A date input's value (`YYYY-MM-DD`) for `days` after today on `app`'s policy clock.
pub fn policy_day(app: &TestApp, days: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(app.clock().now() + days * 86_400).unwrap();
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

/// A stored audit event, as the checks need it.
#[derive(Debug, Queryable)]
pub struct AuditRow {
    pub workspace_id: Option<String>,
    pub actor_label: String,
    pub actor_kind: String,
    pub subject_label: Option<String>,
    pub detail: String,
}

impl TestApp {
    /// Every audit event of `kind`, oldest first.
    pub fn audit_events(&self, of_kind: &str) -> Vec<AuditRow> {
        use tessera::db::schema::audit_events::dsl::*;
        audit_events
            .filter(kind.eq(of_kind))
            .order(id)
            .select((workspace_id, actor_label, actor_kind, subject_label, detail))
            .load(&mut *self.conn())
            .unwrap()
    }
}
