//! Encryption key rotation, end to end: servers started with the new key current and the
//! old one previous, `tessera rotate-key` and `tessera check-keys` run as the real binary
//! while those servers serve, and starts with only one of the keys afterwards.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use tessera::auth::key_rotation::{Store, replace_if_unchanged};
use tessera::auth::secret_box::Keyring;
use tessera::db::models::{NewUser, TotpCredential, User};
use tessera::db::now;
use tessera::db::schema::{app_secrets, pending_enrolments, totp_credentials};
use tessera::domain::{DisplayName, Email, Role};
use tessera::startup::Application;

use crate::helpers::{
    Client, PASSWORD, TestApp, TestUser, base32_decode, enrol_as, enrolled_user, random_key,
    spawn_app, spawn_on, tessera_command_in, test_settings,
};

fn key_id(key: &str) -> String {
    Keyring::from_base64(key).unwrap().current_id().to_owned()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tessera args…` with `current` as ENCRYPTION_KEY and `previous` as
/// ENCRYPTION_KEYS_PREVIOUS (unset when empty).
fn tessera_keys(app: &TestApp, args: &[&str], current: &str, previous: &str) -> Output {
    let mut env = vec![("ENCRYPTION_KEY", current)];
    if !previous.is_empty() {
        env.push(("ENCRYPTION_KEYS_PREVIOUS", previous));
    }
    tessera_command_in(&app.settings, args, &env)
}

/// `n` users with 2FA on, written straight into the database with secrets sealed by `key`
/// (as a server with that key would have stored them), so that a rotation has many batches.
fn populate(app: &TestApp, key: &str, n: usize) -> Vec<TestUser> {
    let keyring = Keyring::from_base64(key).unwrap();
    let workspace_id = app.workspace("acme");
    let hash = app.hasher.hash_blocking(PASSWORD).unwrap();
    let mut conn = app.conn();
    conn.transaction(|conn| {
        (0..n)
            .map(|i| {
                let email = Email::parse(&format!("bulk{i:04}@example.com")).unwrap();
                let new_user = NewUser {
                    workspace_id: &workspace_id,
                    email: &email,
                    name: &DisplayName::default(),
                    role: Role::Member,
                    is_staff: false,
                    is_demo: false,
                    password_hash: &hash,
                };
                let id = User::insert(conn, &new_user, now())?;
                let secret: [u8; 20] = tessera::random::bytes().unwrap();
                let sealed = keyring.seal(&id, &secret).unwrap();
                TotpCredential::insert(conn, &id, &sealed, 0, now())?;
                Ok(TestUser {
                    id: id.into(),
                    email: email.as_str().to_owned(),
                    password: PASSWORD.to_owned(),
                    secret: Some(secret.to_vec()),
                    recovery_codes: Vec::new(),
                    last_step: 0,
                })
            })
            .collect::<QueryResult<Vec<_>>>()
    })
    .unwrap()
}

/// `(user_id, secret_ciphertext, key_id)` rows.
type Rows = Vec<(String, String, String)>;

/// Every stored secret and the recorded key id, to show that nothing changed.
fn snapshot(app: &TestApp) -> (Rows, Rows, String) {
    let mut conn = app.conn();
    let credentials = totp_credentials::table
        .order(totp_credentials::user_id)
        .select((
            totp_credentials::user_id,
            totp_credentials::secret_ciphertext,
            totp_credentials::key_id,
        ))
        .load(&mut *conn)
        .unwrap();
    let pending = pending_enrolments::table
        .order(pending_enrolments::user_id)
        .select((
            pending_enrolments::user_id,
            pending_enrolments::secret_ciphertext,
            pending_enrolments::key_id,
        ))
        .load(&mut *conn)
        .unwrap();
    (credentials, pending, recorded_key(app))
}

fn recorded_key(app: &TestApp) -> String {
    app_secrets::table
        .find("encryption_key_id")
        .select(app_secrets::value)
        .first(&mut *app.conn())
        .unwrap()
}

/// The key ids of every stored secret, both tables.
fn stored_key_ids(app: &TestApp) -> Vec<String> {
    let (credentials, pending, _) = snapshot(app);
    let mut ids: Vec<String> = credentials
        .into_iter()
        .chain(pending)
        .map(|(_, _, key)| key)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn client_for(base: &str) -> Client {
    Client {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: base.to_owned(),
    }
}

/// Signs `user` in completely on a new browser; it must reach the home page.
async fn signs_in(base: &str, user: &mut TestUser) {
    let page = client_for(base).sign_in(user).await;
    assert_eq!(page.location(), "/home", "{} could not sign in", user.email);
}

#[tokio::test]
async fn a_populated_database_is_rotated_while_users_sign_in() {
    let old_app = spawn_app().await;
    let old_key = old_app.settings.encryption_key.clone().unwrap();
    let new_key = random_key();
    let (old_id, new_id) = (key_id(&old_key), key_id(&new_key));

    // Before: users enrolled through the app, one half-way through setup, and many more,
    // all under the old key.
    let mut enrolled = Vec::new();
    for i in 0..3 {
        enrolled.push(
            enrolled_user(&old_app, &format!("user{i}@example.com"))
                .await
                .0,
        );
    }
    let mut pending_user = old_app.user("pending@example.com");
    let pending_browser = old_app.client();
    pending_browser.sign_in(&mut pending_user).await;
    let shown = pending_browser
        .get("/account/2fa/setup")
        .await
        .totp_secret();
    let mut bulk = populate(&old_app, &old_key, 400);

    // Deployed with the new key as ENCRYPTION_KEY and the old one as previous: it starts on
    // the old key's database, serves old secrets and seals new ones with the new key.
    let both = test_settings(
        &old_app.database,
        &new_key,
        &[("ENCRYPTION_KEYS_PREVIOUS", &old_key)],
    );
    let server = spawn_on(old_app.database.clone(), both).await;
    drop(old_app);
    let (late, _) = enrol_as(&server, server.user("late@example.com")).await;
    enrolled.push(late);
    assert_eq!(stored_key_ids(&server), {
        let mut ids = vec![old_id.clone(), new_id.clone()];
        ids.sort();
        ids
    });
    let check = tessera_keys(&server, &["check-keys"], &new_key, &old_key);
    let (out, err) = text(&check);
    assert!(check.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!(
            "key {old_id} (previous, ENCRYPTION_KEYS_PREVIOUS): 404 secrets (403 authenticators, 1 pending enrolment), all decrypt"
        )),
        "{out}"
    );

    // Sign-ins go on, on the running server, before, during and after the rotation.
    let mut signing_in: Vec<TestUser> = bulk.drain(..30).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let signed_in = Arc::new(AtomicUsize::new(0));
    let sign_in_loop = tokio::spawn({
        let (stop, signed_in, base) = (stop.clone(), signed_in.clone(), server.address.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                for user in signing_in.iter_mut() {
                    signs_in(&base, user).await;
                    signed_in.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    while signed_in.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = signed_in.load(Ordering::SeqCst);
    let rotation = tokio::task::spawn_blocking({
        let (settings, new_key, old_key) =
            (server.settings.clone(), new_key.clone(), old_key.clone());
        move || {
            tessera_command_in(
                &settings,
                &["rotate-key", "--batch-size", "25"],
                &[
                    ("ENCRYPTION_KEY", &new_key),
                    ("ENCRYPTION_KEYS_PREVIOUS", &old_key),
                ],
            )
        }
    })
    .await
    .unwrap();
    let during = signed_in.load(Ordering::SeqCst) - before;
    // Every user of the loop signs in once more after the rotation, then the loop stops.
    let after_rotation = signed_in.load(Ordering::SeqCst);
    while signed_in.load(Ordering::SeqCst) < after_rotation + 30 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    sign_in_loop.await.expect("every sign-in succeeded");

    let (out, err) = text(&rotation);
    println!("{out}\n(sign-ins completed while rotate-key ran: {during})");
    assert!(rotation.status.success(), "{out}{err}");
    assert!(
        out.contains("Checked 405 stored secrets: all decrypt"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Re-encrypted 404 secrets under key {new_id} (403 authenticators, 1 pending enrolment) in "
        )),
        "{out}"
    );
    assert!(out.contains("0 secrets remain on old keys."), "{out}");
    assert_eq!(stored_key_ids(&server), std::slice::from_ref(&new_id));
    assert_eq!(recorded_key(&server), new_id);

    // Idempotent: nothing is left to do.
    let again = tessera_keys(&server, &["rotate-key"], &new_key, &old_key);
    let (out, err) = text(&again);
    assert!(again.status.success(), "{out}{err}");
    assert!(out.contains("Re-encrypted 0 secrets"), "{out}");
    let check = tessera_keys(&server, &["check-keys"], &new_key, &old_key);
    let (out, err) = text(&check);
    assert!(check.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!(
            "key {new_id} (current, ENCRYPTION_KEY): 405 secrets (404 authenticators, 1 pending enrolment), all decrypt"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "key {old_id} (previous, ENCRYPTION_KEYS_PREVIOUS): 0 secrets (0 authenticators, 0 pending enrolments), no longer needed"
        )),
        "{out}"
    );
    assert!(out.contains("All 405 secrets decrypt; 0 on keys other than the current one."));

    // Restarted with the same two keys after the rotation, a server starts and serves.
    let restarted = server.sibling().await;
    signs_in(&restarted.address, &mut enrolled[0]).await;

    // The old key removed: a server with only the new key starts, and everyone signs in —
    // those enrolled through the app, the one enrolled after the switch, the loop's users,
    // others — and the half-finished setup completes with the secret shown before.
    let new_only = spawn_on(
        server.database.clone(),
        test_settings(&server.database, &new_key, &[]),
    )
    .await;
    for user in enrolled.iter_mut().chain(bulk.iter_mut().take(10)) {
        signs_in(&new_only.address, user).await;
    }
    let same_browser = Client {
        http: pending_browser.http.clone(),
        base: new_only.address.clone(),
    };
    same_browser.enrol(&mut pending_user).await;
    assert_eq!(
        pending_user.secret,
        Some(base32_decode(&shown)),
        "the pending setup kept its secret"
    );
    signs_in(&new_only.address, &mut pending_user).await;
    let check = tessera_keys(&new_only, &["check-keys"], &new_key, "");
    assert!(check.status.success(), "{:?}", text(&check));

    // And a start with only the old key is refused, saying which key the database needs.
    let err = match Application::build(test_settings(&new_only.database, &old_key, &[])) {
        Ok(_) => panic!("a server with only the old key started after the rotation"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!("this database belongs to encryption key {new_id}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_rotation_that_would_strand_a_secret_changes_nothing() {
    let app = spawn_app().await;
    let old_key = app.settings.encryption_key.clone().unwrap();
    let new_key = random_key();
    let (mut ada, _) = enrolled_user(&app, "ada@example.com").await;
    let (bob, _) = enrolled_user(&app, "bob@example.com").await;
    // Ada's ciphertext on Bob's row: well-formed, under the old key, but not Bob's.
    let adas: String = totp_credentials::table
        .find(&ada.id)
        .select(totp_credentials::secret_ciphertext)
        .first(&mut *app.conn())
        .unwrap();
    diesel::update(totp_credentials::table.find(&bob.id))
        .set(totp_credentials::secret_ciphertext.eq(&adas))
        .execute(&mut *app.conn())
        .unwrap();
    let before = snapshot(&app);

    let refused = tessera_keys(&app, &["rotate-key"], &new_key, &old_key);
    let (out, err) = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(
        err.contains("1 of 2 secrets cannot be decrypted with the configured keys"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "totp_credentials of user {} (key {})",
            bob.id,
            key_id(&old_key)
        )),
        "{err}"
    );
    assert!(err.contains("Nothing was changed"), "{err}");
    assert_eq!(snapshot(&app), before);

    let check = tessera_keys(&app, &["check-keys"], &new_key, &old_key);
    let (out, err) = text(&check);
    assert!(!check.status.success(), "{out}");
    assert!(out.contains("1 of 2 secrets cannot be decrypted"), "{out}");
    assert!(
        err.contains("1 stored secret cannot be decrypted with the configured keys"),
        "{err}"
    );

    // Without the old key configured, the rotation cannot open anything: refused too.
    let no_old = tessera_keys(&app, &["rotate-key"], &new_key, "");
    let (_, err) = text(&no_old);
    assert!(!no_old.status.success());
    assert!(
        err.contains(&format!(
            "this database records encryption key {}, which is not configured",
            key_id(&old_key)
        )),
        "{err}"
    );
    assert_eq!(snapshot(&app), before);

    // The remedy the message names: reset the damaged user's 2FA, then rotate.
    let reset = tessera_command_in(
        &app.settings,
        &[
            "reset-2fa",
            "--email",
            &bob.email,
            "--reason",
            "damaged secret",
        ],
        &[],
    );
    assert!(reset.status.success(), "{:?}", text(&reset));
    let rotated = tessera_keys(&app, &["rotate-key"], &new_key, &old_key);
    let (out, err) = text(&rotated);
    assert!(rotated.status.success(), "{out}{err}");
    assert!(out.contains("Re-encrypted 1 secret under key"), "{out}");
    let new_only = spawn_on(
        app.database.clone(),
        test_settings(&app.database, &new_key, &[]),
    )
    .await;
    signs_in(&new_only.address, &mut ada).await;
    // Bob signs in with his password alone now, and may set 2FA up again.
    let page = client_for(&new_only.address).password_step(&bob).await;
    assert_eq!(page.location(), "/home");
}

#[tokio::test]
async fn a_secret_changed_during_the_rotation_is_not_overwritten() {
    let app = spawn_app().await;
    let key = app.settings.encryption_key.clone().unwrap();
    let keyring = Keyring::from_base64(&key).unwrap();
    let (ada, _) = enrolled_user(&app, "ada@example.com").await;
    let read_by_rotation = TotpCredential::find(&mut app.conn(), &ada.id)
        .unwrap()
        .unwrap()
        .sealed();
    // Meanwhile a server writes a new secret for her (she set 2FA up again).
    let written_meanwhile = keyring.seal(&ada.id, b"another twenty bytes").unwrap();
    diesel::update(totp_credentials::table.find(&ada.id))
        .set((
            totp_credentials::secret_ciphertext.eq(&written_meanwhile.ciphertext),
            totp_credentials::key_id.eq(&written_meanwhile.key_id),
        ))
        .execute(&mut *app.conn())
        .unwrap();
    let resealed = keyring.seal(&ada.id, ada.secret.as_ref().unwrap()).unwrap();
    let replaced = replace_if_unchanged(
        &mut app.conn(),
        Store::Authenticators,
        &ada.id,
        &read_by_rotation,
        &resealed,
    )
    .unwrap();
    assert!(!replaced);
    let stored = TotpCredential::find(&mut app.conn(), &ada.id)
        .unwrap()
        .unwrap()
        .sealed();
    assert_eq!(stored, written_meanwhile, "the newer secret stays");
    // Against what is stored now, the same statement does replace.
    assert!(
        replace_if_unchanged(
            &mut app.conn(),
            Store::Authenticators,
            &ada.id,
            &written_meanwhile,
            &resealed
        )
        .unwrap()
    );
}

/// Waits up to ten seconds for a command that should stop by itself.
fn finishes(mut child: std::process::Child) -> Output {
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("the command was still running after ten seconds");
}

#[tokio::test]
async fn bad_previous_keys_stop_the_start_naming_each_bad_entry() {
    let app = spawn_app().await;
    let key = app.settings.encryption_key.clone().unwrap();
    let good = random_key();
    let list = format!("{good},not-a-key!,c2hvcnQ=");
    for command in ["serve", "check-keys", "rotate-key"] {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg(command)
            .env("DATABASE_URL", &app.settings.database_url)
            .env("DATA_DIR", &app.settings.data_dir)
            .env("BIND", "127.0.0.1:0")
            .env("ENCRYPTION_KEY", &key)
            .env("ENCRYPTION_KEYS_PREVIOUS", &list)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = finishes(child);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("ENCRYPTION_KEYS_PREVIOUS entry 2 of 3 is not valid base64"),
            "{err}"
        );
        assert!(
            err.contains(
                "ENCRYPTION_KEYS_PREVIOUS entry 3 of 3 must decode to exactly 32 bytes (it decodes to 5)"
            ),
            "{err}"
        );
        assert!(
            !err.contains(&good) && !err.contains(&key),
            "no key is printed"
        );
    }

    // The current key listed as a previous one is a mistake worth stopping for.
    let same = test_settings(&app.database, &key, &[("ENCRYPTION_KEYS_PREVIOUS", &key)]);
    let err = match Application::build(same) {
        Ok(_) => panic!("started with the current key among the previous ones"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("ENCRYPTION_KEYS_PREVIOUS entry 1 of 1 is the same key as the current key"),
        "{err}"
    );
}

#[tokio::test]
async fn commands_need_a_configured_key_and_never_make_one() {
    let app = spawn_app().await;
    let out = tessera_command_in(&app.settings, &["check-keys"], &[]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("no encryption key is configured"), "{err}");
    assert!(!app.settings.data_dir.join("encryption.key").exists());
}
