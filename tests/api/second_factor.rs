use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::totp_credentials;

use crate::helpers::{
    enrolled_user, session_cookie, spawn_app, spawn_app_with, totp, unix_now,
    wait_clear_of_step_boundary,
};

#[tokio::test]
async fn an_enrolled_user_signs_in_with_password_and_code() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();

    let password = client.password_step(&user).await;
    assert_eq!(password.location(), "/login/2fa");
    let before = session_cookie(&password.headers).unwrap();
    // Half signed in: protected pages send us to the second step.
    assert_eq!(client.get("/home").await.location(), "/login/2fa");
    let challenge = client.get("/login/2fa").await;
    assert!(challenge.body.contains("autocomplete=\"one-time-code\""));
    assert!(challenge.body.contains("inputmode=\"numeric\""));

    let code = user.fresh_code().await;
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    let page = client
        .post_raw(
            "/login/2fa",
            &[("csrf_token", &challenge.csrf()), ("code", &spaced)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/home");
    assert_ne!(
        session_cookie(&page.headers).unwrap(),
        before,
        "the session id changes at the step up"
    );
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    let kinds = app.audit_kinds(&user.id);
    assert!(
        kinds.ends_with(&[
            "password_verified".to_owned(),
            "second_factor_succeeded".to_owned(),
            "sign_in_succeeded".to_owned(),
        ]),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_same_code_twice_is_refused() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let code = user.fresh_code().await;

    let first = app.client();
    first.password_step(&user).await;
    assert_eq!(
        first
            .post("/login/2fa", "/login/2fa", &[("code", &code)])
            .await
            .location(),
        "/home"
    );

    let second = app.client();
    second.password_step(&user).await;
    let page = second
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.alert().unwrap().contains("not accepted"));
    assert_eq!(second.get("/home").await.location(), "/login/2fa");
    assert_eq!(app.audit_kinds(&user.id).last().unwrap(), "replay_refused");
}

#[tokio::test]
async fn a_code_is_refused_on_another_instance_too() {
    let app = spawn_app().await;
    let other_instance = app.sibling().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let code = user.fresh_code().await;

    let (a, b) = (app.client(), other_instance.client());
    a.password_step(&user).await;
    b.password_step(&user).await;
    let (csrf_a, csrf_b) = (
        a.get("/login/2fa").await.csrf(),
        b.get("/login/2fa").await.csrf(),
    );
    let (ra, rb) = tokio::join!(
        a.post_raw("/login/2fa", &[("csrf_token", &csrf_a), ("code", &code)]),
        b.post_raw("/login/2fa", &[("csrf_token", &csrf_b), ("code", &code)]),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED],
        "exactly one wins"
    );
}

#[tokio::test]
async fn parallel_sign_ins_with_one_code_let_exactly_one_in() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let code = user.fresh_code().await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let client = app.client();
        client.password_step(&user).await;
        let csrf = client.get("/login/2fa").await.csrf();
        clients.push((client, csrf));
    }
    let attempts = clients.iter().map(|(client, csrf)| {
        client.post_raw("/login/2fa", &[("csrf_token", csrf), ("code", &code)])
    });
    let pages = futures_util::future::join_all(attempts).await;
    let winners = pages
        .iter()
        .filter(|p| p.status == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(winners, 1);
    assert!(
        pages
            .iter()
            .all(|p| p.status == StatusCode::SEE_OTHER || p.status == StatusCode::UNAUTHORIZED),
        "{:?}",
        pages
            .iter()
            .map(|p| (p.status, p.alert()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_older_step_after_a_newer_one_is_refused() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let secret = user.secret.clone().unwrap();
    wait_clear_of_step_boundary().await;
    let now = unix_now();
    user.last_step = now / 30 + 1;

    let newer = app.client();
    newer.password_step(&user).await;
    let page = newer
        .post(
            "/login/2fa",
            "/login/2fa",
            &[("code", &totp(&secret, now + 30))],
        )
        .await;
    assert_eq!(page.location(), "/home");

    let older = app.client();
    older.password_step(&user).await;
    let page = older
        .post("/login/2fa", "/login/2fa", &[("code", &totp(&secret, now))])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn one_step_of_clock_drift_is_tolerated_two_are_not() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let secret = user.secret.clone().unwrap();
    let try_code = |offset: i64| {
        let client = app.client();
        let (secret, email) = (secret.clone(), user.email.clone());
        async move {
            client
                .post(
                    "/login",
                    "/login",
                    &[("email", &email), ("password", crate::helpers::PASSWORD)],
                )
                .await;
            let code = totp(&secret, unix_now().checked_add_signed(offset).unwrap());
            client
                .post("/login/2fa", "/login/2fa", &[("code", &code)])
                .await
                .status
        }
    };
    // Forget which steps enrolment used, so only the drift rule can refuse a code here.
    let forget_used_steps = || {
        diesel::update(totp_credentials::table.find(&user.id))
            .set(totp_credentials::last_step.eq(0))
            .execute(&mut *app.conn())
            .unwrap();
    };
    forget_used_steps();
    wait_clear_of_step_boundary().await;
    assert_eq!(
        try_code(-60).await,
        StatusCode::UNAUTHORIZED,
        "two steps behind"
    );
    assert_eq!(
        try_code(60).await,
        StatusCode::UNAUTHORIZED,
        "two steps ahead"
    );
    assert_eq!(
        try_code(-30).await,
        StatusCode::SEE_OTHER,
        "one step behind"
    );
    forget_used_steps();
    wait_clear_of_step_boundary().await;
    assert_eq!(try_code(30).await, StatusCode::SEE_OTHER, "one step ahead");
}

#[tokio::test]
async fn a_wrong_code_changes_nothing() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    client.password_step(&user).await;
    wait_clear_of_step_boundary().await;
    let wrong = totp(user.secret.as_ref().unwrap(), unix_now() + 300);
    let page = client
        .post("/login/2fa", "/login/2fa", &[("code", &wrong)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(
        page.body.contains("name=\"code\""),
        "the form is shown again"
    );
    assert_eq!(
        app.audit_kinds(&user.id).last().unwrap(),
        "second_factor_failed"
    );
    // Still at the second step, and the right code still works.
    let code = user.fresh_code().await;
    assert_eq!(
        client
            .post("/login/2fa", "/login/2fa", &[("code", &code)])
            .await
            .location(),
        "/home"
    );
}

#[tokio::test]
async fn fields_other_than_the_code_are_ignored() {
    let app = spawn_app().await;
    let (mut victim, _) = enrolled_user(&app, "victim@example.com").await;
    let (attacker, _) = enrolled_user(&app, "attacker@example.com").await;
    let client = app.client();
    client.password_step(&attacker).await;
    // The attacker knows the victim's id and current code, not their password.
    let code = victim.fresh_code().await;
    let page = client
        .post(
            "/login/2fa",
            "/login/2fa",
            &[
                ("code", &code),
                ("user_id", &victim.id),
                ("email", &victim.email),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(client.get("/home").await.location(), "/login/2fa");
    let stage = app.audit_kinds(&attacker.id);
    assert_eq!(stage.last().unwrap(), "second_factor_failed");
}

#[tokio::test]
async fn the_password_step_expires() {
    let app = spawn_app_with(&[("LOGIN_STEP_TIMEOUT_SECONDS", "1")]).await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    client.password_step(&user).await;
    let csrf = client.get("/login/2fa").await.csrf();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let code = user.fresh_code().await;
    let page = client
        .post_raw("/login/2fa", &[("csrf_token", &csrf), ("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    let login = client.get("/login").await;
    assert!(login.alert().unwrap().contains("took too long"));
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
}

/// PostgreSQL's one-statement sign-in is given the secret the code was matched with, read
/// before the user's lock: if the app's row holds another one by the time the lock is
/// taken (re-enrolled meanwhile), it writes nothing and the full check decides.
#[tokio::test]
async fn the_one_statement_sign_in_accepts_only_the_secret_it_matched_with() {
    use tessera::db::models::{Charge, SignInCode, TotpCredential};
    use tessera::db::schema::rate_limits;

    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let credential = TotpCredential::find(&mut app.conn(), &user.id)
        .unwrap()
        .unwrap();
    let events = "[]";
    let attempt = |sealed_secret: &str| {
        TotpCredential::accept_sign_in_at_once(
            &mut app.conn(),
            SignInCode {
                user_id: &user.id,
                sealed_secret,
                step: Some(credential.last_step + 1),
                now: unix_now() as i64,
                bucket: Charge {
                    key: "2fa-ip:test",
                    limit: 5,
                    window_ms: 900_000,
                },
                now_ms: unix_now() as i64 * 1000,
                most_failures: 100,
                events,
            },
        )
        .unwrap()
    };
    let last_step = || -> i64 {
        totp_credentials::table
            .find(&user.id)
            .select(totp_credentials::last_step)
            .get_result(&mut *app.conn())
            .unwrap()
    };
    let hits = || -> Vec<String> {
        rate_limits::table
            .filter(rate_limits::key.eq("2fa-ip:test"))
            .select(rate_limits::hits)
            .load(&mut *app.conn())
            .unwrap()
    };
    if !app.database.is_postgres() {
        assert_eq!(
            attempt(&credential.secret_ciphertext),
            None,
            "SQLite has no such statement"
        );
        return;
    }
    assert_eq!(attempt("another secret's ciphertext"), Some(false));
    assert_eq!(last_step(), credential.last_step, "the step is not taken");
    assert!(
        hits().iter().all(String::is_empty),
        "nor the bucket charged"
    );
    assert_eq!(attempt(&credential.secret_ciphertext), Some(true));
    assert_eq!(last_step(), credential.last_step + 1);
    assert_eq!(hits().iter().filter(|log| !log.is_empty()).count(), 1);
    assert_eq!(
        attempt(&credential.secret_ciphertext),
        Some(false),
        "a replay"
    );
}
