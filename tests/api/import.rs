//! `tessera import`, run as the real binary against the test app's database, and the
//! imported users signing in through the running app.

use std::process::Output;

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::users;
use tessera::domain::RecoveryCode;

use crate::helpers::{PASSWORD, TestApp, TestUser, spawn_app};

/// Runs `tessera import` over `lines` with the app's database and key.
pub fn import(app: &TestApp, lines: &[String], extra: &[&str]) -> Output {
    let name = format!(
        "import-{}.jsonl",
        tessera::random::hex(&tessera::random::bytes::<4>().unwrap())
    );
    let path = app.database.data_dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("import")
        .arg("--file")
        .arg(&path)
        .args(extra)
        .env("DATABASE_URL", &app.database.url)
        .env("DATA_DIR", &app.database.data_dir)
        .env(
            "ENCRYPTION_KEY",
            app.settings.encryption_key.as_ref().unwrap(),
        )
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn user_line(email: &str, hash: &str, extra: &str) -> String {
    format!(r#"{{"email":"{email}","workspace":"acme","password_hash":"{hash}"{extra}}}"#)
}

fn stored_hash(app: &TestApp, email: &str) -> String {
    users::table
        .filter(users::email.eq(email))
        .select(users::password_hash)
        .first(&mut *app.conn())
        .unwrap()
}

fn user_count(app: &TestApp) -> i64 {
    users::table.count().get_result(&mut *app.conn()).unwrap()
}

fn imported(app: &TestApp, email: &str) -> TestUser {
    let id: String = users::table
        .filter(users::email.eq(email))
        .select(users::id)
        .first(&mut *app.conn())
        .unwrap();
    TestUser {
        id,
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
        secret: None,
        recovery_codes: Vec::new(),
        last_step: 0,
    }
}

#[tokio::test]
async fn imported_users_sign_in_with_their_password_totp_secret_and_recovery_codes() {
    let app = spawn_app().await;
    let hash = app.hasher.hash_blocking(PASSWORD).unwrap();
    let secret = b"0123456789abcdefghij".to_vec();
    let base32 = "GAYTEMZUGU3DOOBZMFRGGZDFMZTWQ2LK";
    let code = RecoveryCode::generate().unwrap();
    let code_hash = bcrypt::hash(code.canonical(), 4).unwrap();
    let lines = [
        user_line(
            "Ada@Example.com",
            &hash,
            &format!(
                r#","role":"admin","name":"Ada","totp_secret":"{base32}","recovery_code_hashes":["{code_hash}"]"#
            ),
        ),
        user_line("bob@example.com", &hash, "").replace("acme", "globex"),
    ];
    let output = import(&app, &lines, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let said = text(&output.stdout);
    assert!(
        said.contains("Imported 2 user(s), 1 with two-factor"),
        "{said}"
    );
    assert!(said.contains("globex"), "{said}");

    let mut ada = imported(&app, "ada@example.com");
    ada.secret = Some(secret);
    assert_eq!(app.audit_kinds(&ada.id), ["user_imported"]);
    // Stored encrypted, never as the base32 the file carried.
    assert_eq!(app.count_rows("totp_credentials", &ada.id), 1);
    let sealed: String = tessera::db::schema::totp_credentials::table
        .find(&ada.id)
        .select(tessera::db::schema::totp_credentials::secret_ciphertext)
        .first(&mut *app.conn())
        .unwrap();
    assert!(!sealed.contains(base32));

    let client = app.client();
    let page = client.sign_in(&mut ada).await;
    assert_eq!(page.location(), "/home");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);

    let recovering = app.client();
    assert_eq!(
        recovering.password_step(&ada).await.location(),
        "/login/2fa"
    );
    let page = recovering
        .post(
            "/login/recovery",
            "/login/recovery",
            &[("code", &code.formatted())],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/account/security");

    let bob = imported(&app, "bob@example.com");
    let page = app.client().password_step(&bob).await;
    assert_eq!(page.location(), "/home");
    app.assert_counts_agree();
}

#[tokio::test]
async fn every_kind_of_bad_line_is_reported_by_number_and_nothing_is_imported() {
    let app = spawn_app().await;
    let hash = app.hasher.hash_blocking(PASSWORD).unwrap();
    let lines = [
        user_line("good@example.com", &hash, ""),
        "{\"email\": \"broken@example.com\",".to_owned(),
        user_line("not an email", &hash, ""),
        user_line("role@example.com", &hash, r#","role":"owner""#),
        user_line(
            "md5@example.com",
            "$pbkdf2-sha256$i=29000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "",
        ),
        user_line(
            "secret@example.com",
            &hash,
            r#","totp_secret":"NOT-BASE32!""#,
        ),
        user_line("GOOD@example.com ", &hash, ""),
    ];
    let output = import(&app, &lines, &[]);
    assert!(!output.status.success());
    let said = text(&output.stderr);
    for expected in [
        "6 bad line(s); nothing was imported",
        "line 2: not a valid user object",
        "line 3: email",
        "line 4: role \"owner\"",
        "line 5: password_hash: unsupported hash algorithm",
        "line 6: totp_secret",
        "line 7: the email good@example.com is also on line 1",
    ] {
        assert!(
            said.contains(expected),
            "{expected:?} missing from:\n{said}"
        );
    }
    assert!(!said.contains("line 1:"), "{said}");
    assert_eq!(user_count(&app), 0);
}

#[tokio::test]
async fn existing_users_stop_the_import_or_are_skipped_so_it_can_run_twice() {
    let app = spawn_app().await;
    app.user("ada@example.com");
    let hash = app.hasher.hash_blocking(PASSWORD).unwrap();
    let lines = [
        user_line("ada@example.com", &hash, ""),
        user_line("new@example.com", &hash, ""),
    ];

    let output = import(&app, &lines, &[]);
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(
        said.contains("line 1: a user with the email ada@example.com already exists"),
        "{said}"
    );
    assert_eq!(user_count(&app), 1);

    let output = import(&app, &lines, &["--on-conflict", "skip"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let said = text(&output.stdout);
    assert!(
        said.contains("Imported 1 user(s)") && said.contains("1 skipped"),
        "{said}"
    );
    assert_eq!(user_count(&app), 2);

    let output = import(&app, &lines, &["--on-conflict", "skip"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let said = text(&output.stdout);
    assert!(
        said.contains("Imported 0 user(s)") && said.contains("2 skipped"),
        "{said}"
    );
    assert_eq!(user_count(&app), 2);
    app.assert_counts_agree();
}

#[tokio::test]
async fn bcrypt_and_argon2i_hashes_sign_in_and_are_upgraded_to_argon2id() {
    use argon2::password_hash::PasswordHasher as _;
    let app = spawn_app().await;
    let bcrypt_hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let argon2i_hash = argon2::Argon2::new(
        argon2::Algorithm::Argon2i,
        argon2::Version::V0x13,
        argon2::Params::new(256, 2, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes())
    .unwrap()
    .to_string();
    let lines = [
        user_line(
            "laravel@example.com",
            &bcrypt_hash.replace("$2b$", "$2y$"),
            "",
        ),
        user_line("django@example.com", &argon2i_hash, ""),
    ];
    let output = import(&app, &lines, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("2 password hash(es) will be upgraded"));

    let current = "$argon2id$v=19$m=1024,t=1,p=1$";
    for email in ["laravel@example.com", "django@example.com"] {
        let mut user = imported(&app, email);
        let before = stored_hash(&app, email);

        user.password = "not the password".into();
        let page = app.client().password_step(&user).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{email}");
        assert_eq!(stored_hash(&app, email), before, "{email}");

        user.password = PASSWORD.into();
        let page = app.client().password_step(&user).await;
        assert_eq!(page.location(), "/home", "{email}");
        let after = stored_hash(&app, email);
        assert!(after.starts_with(current), "{email}: {after}");

        // And the new hash works.
        let page = app.client().password_step(&user).await;
        assert_eq!(page.location(), "/home", "{email}");
        assert_eq!(stored_hash(&app, email), after, "{email}");
    }
}
