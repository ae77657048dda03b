use std::process::{Command, Stdio};

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::{totp_credentials, users};
use tessera::startup::Application;

use crate::helpers::{
    Client, PASSWORD, enrolled_user, random_key, spawn_app, tessera_command, tessera_ok,
    test_settings,
};

#[tokio::test]
async fn sessions_survive_a_restart_and_are_shared_by_instances() {
    let app = spawn_app().await;
    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    let restarted = app.sibling().await;
    // The same browser (cookie jar) talking to the other instance.
    let same_browser = Client {
        http: client.http.clone(),
        base: restarted.address.clone(),
    };
    let page = same_browser.get("/home").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("ada@example.com"));
}

#[tokio::test]
async fn totp_secrets_are_stored_encrypted() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let (ciphertext, key_id): (String, String) = totp_credentials::table
        .find(&user.id)
        .select((
            totp_credentials::secret_ciphertext,
            totp_credentials::key_id,
        ))
        .first(&mut *app.conn())
        .unwrap();
    let secret = user.secret.unwrap();
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &ciphertext).unwrap();
    assert_eq!(raw.len(), 24 + 20 + 16, "nonce, secret, tag");
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_slice()));
    assert!(key_id.starts_with('k'));
}

#[tokio::test]
async fn a_wrong_encryption_key_stops_the_start_with_a_clear_message() {
    let app = spawn_app().await;
    enrolled_user(&app, "ada@example.com").await;
    let wrong = test_settings(&app.database, &random_key(), &[]);
    let err = match Application::build(wrong) {
        Ok(_) => panic!("the app started with the wrong key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("ENCRYPTION_KEY"), "{err}");
    assert!(err.contains("belongs to encryption key k"), "{err}");

    let malformed = test_settings(&app.database, "not-a-key", &[]);
    let err = match Application::build(malformed) {
        Ok(_) => panic!("the app started with a malformed key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("ENCRYPTION_KEY is not valid base64"), "{err}");
}

#[tokio::test]
async fn a_second_instance_with_another_key_is_refused_before_any_secret_exists() {
    let app = spawn_app().await;
    let other_key = test_settings(&app.database, &random_key(), &[]);
    let err = match Application::build(other_key) {
        Ok(_) => panic!("an instance with another key started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("Every instance must use the same ENCRYPTION_KEY"),
        "{err}"
    );
}

#[tokio::test]
async fn a_damaged_secret_stops_the_start() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let other = app.user("bob@example.com");
    // Ada's secret moved onto Bob's row no longer authenticates (the user id is the AAD).
    diesel::update(totp_credentials::table.find(&user.id))
        .set(totp_credentials::user_id.eq(&other.id))
        .execute(&mut *app.conn())
        .unwrap();
    let err = match Application::build(app.settings.clone()) {
        Ok(_) => panic!("the app started with a damaged secret"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot be decrypted"), "{err}");
}

#[tokio::test]
async fn a_secret_under_a_key_nobody_configured_stops_the_start_naming_that_key() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    diesel::update(totp_credentials::table.find(&user.id))
        .set(totp_credentials::key_id.eq("kforeign"))
        .execute(&mut *app.conn())
        .unwrap();
    let err = match Application::build(app.settings.clone()) {
        Ok(_) => panic!("the app started with a secret under an unknown key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("stored TOTP secrets were encrypted with key kforeign"),
        "{err}"
    );
    assert!(err.contains("ENCRYPTION_KEYS_PREVIOUS"), "{err}");
}

#[tokio::test]
async fn audit_events_cannot_be_changed_or_deleted() {
    let app = spawn_app().await;
    let (_, _) = enrolled_user(&app, "ada@example.com").await;
    let update =
        diesel::sql_query("UPDATE audit_events SET kind = 'nothing'").execute(&mut *app.conn());
    assert!(update.is_err(), "an UPDATE of the audit log succeeded");
    let delete = diesel::sql_query("DELETE FROM audit_events").execute(&mut *app.conn());
    assert!(delete.is_err(), "a DELETE of the audit log succeeded");
}

#[tokio::test]
async fn the_command_line_creates_workspaces_and_users_who_can_sign_in() {
    let app = spawn_app().await;
    let password = format!("{PASSWORD}\n");
    tessera_ok(
        &app,
        &["create-workspace", "--name", "Globex", "--slug", "globex"],
        "",
    );
    let printed = tessera_ok(
        &app,
        &[
            "create-user",
            "--workspace",
            "globex",
            "--email",
            "Hank@Globex.example",
            "--role",
            "admin",
        ],
        &password,
    );
    assert!(
        printed.contains("Created admin hank@globex.example in globex"),
        "{printed}"
    );
    let staff = ["--email", "sam@globex.example", "--staff", "--name", "Sam"];
    tessera_ok(
        &app,
        &[&["create-user", "--workspace", "globex"][..], &staff].concat(),
        &password,
    );
    let (role, is_staff, name): (String, bool, String) = users::table
        .filter(users::email.eq("sam@globex.example"))
        .select((users::role, users::is_staff, users::name))
        .first(&mut *app.conn())
        .unwrap();
    assert_eq!(
        (role.as_str(), is_staff, name.as_str()),
        ("member", true, "Sam")
    );

    let client = app.client();
    let page = client
        .post(
            "/login",
            "/login",
            &[("email", "hank@globex.example"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.location(), "/home");

    // Mistakes are explained, and change nothing.
    let duplicate = tessera_command(
        &app,
        &[
            "create-user",
            "--workspace",
            "globex",
            "--email",
            "hank@globex.example",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));
    let weak = tessera_command(
        &app,
        &[
            "create-user",
            "--workspace",
            "globex",
            "--email",
            "w@globex.example",
        ],
        "short\n",
    );
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 12 characters"));
    let nowhere = tessera_command(
        &app,
        &[
            "create-user",
            "--workspace",
            "nope",
            "--email",
            "n@x.example",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("no workspace"));
    assert!(tessera_ok(&app, &["migrate"], "").contains("up to date"));
}

#[tokio::test]
async fn sqlite_connections_use_wal_a_busy_timeout_and_foreign_keys() {
    let app = spawn_app().await;
    let mut conn = app.conn();
    let tessera::db::AnyConnection::Sqlite(sqlite) = &mut *conn else {
        return; // PostgreSQL run: nothing to check.
    };
    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let pragma = |conn: &mut diesel::SqliteConnection, name: &str, column: &str| {
        diesel::sql_query(format!(
            "SELECT CAST({column} AS TEXT) AS value FROM pragma_{name}"
        ))
        .get_result::<Value>(conn)
        .unwrap()
        .value
    };
    assert_eq!(pragma(sqlite, "journal_mode", "journal_mode"), "wal");
    assert_eq!(pragma(sqlite, "foreign_keys", "foreign_keys"), "1");
    assert_eq!(pragma(sqlite, "busy_timeout", "timeout"), "5000");
}

#[tokio::test]
async fn a_failure_inside_is_a_plain_500_page_with_a_request_id() {
    let app = spawn_app().await;
    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    diesel::sql_query("DROP TABLE recovery_codes")
        .execute(&mut *app.conn())
        .unwrap();
    let page = client.get("/account/security").await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        page.alert()
            .unwrap()
            .contains("Something went wrong on our side")
    );
    assert!(page.body.contains("request id"));
    assert!(!page.body.contains("recovery_codes"), "no internals leak");
    assert_eq!(page.headers["x-frame-options"], "DENY");
}

/// A connection still being opened by the pool's background thread while the process
/// exited once crashed `tessera` (SIGSEGV in OpenSSL's exit handlers, about one run in
/// eight on PostgreSQL). Twenty runs catch that with high probability.
#[tokio::test]
async fn commands_exit_cleanly_every_time() {
    let app = spawn_app().await;
    for _ in 0..20 {
        assert!(tessera_ok(&app, &["migrate"], "").contains("up to date"));
    }
}

/// `tessera serve` on SIGTERM finishes what is in flight, closes its database connections
/// and exits 0 — several times over, because a crash at exit (a libpq connection closed on a
/// worker thread during OpenSSL's clean-up) only shows up now and then.
#[tokio::test]
async fn the_server_stops_cleanly_when_told_to() {
    let database = crate::helpers::TestDatabase::create();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("serve")
            .env("DATABASE_URL", &database.url)
            .env("DATA_DIR", &database.data_dir)
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut up = false;
        for _ in 0..200 {
            if let Ok(response) = http.get(format!("{base}/healthz")).send().await
                && response.status() == StatusCode::OK
            {
                up = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(up, "the server did not start");
        // Work that opens connections and writes (a session row for the sign-in form).
        for _ in 0..5 {
            let page = http.get(format!("{base}/login")).send().await.unwrap();
            assert_eq!(page.status(), StatusCode::OK);
        }
        let killed = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut status = None;
        for _ in 0..200 {
            status = server.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let Some(status) = status else {
            server.kill().unwrap();
            panic!("the server did not stop within 10 seconds of SIGTERM");
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            status.success(),
            "the server exited with {status:?}: {stderr}"
        );
    }
}
