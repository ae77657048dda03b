//! Abuse limits at their real values: per client IP (429 + Retry-After), per email for
//! passwords, per account for the second factor — shared by every instance.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::users;

use crate::helpers::{Client, Page, TestApp, TestUser, enrolled_user, spawn_app_with};

/// The contract's numbers (the suite's other tests run with these out of reach).
const CONTRACT_LIMITS: [(&str, &str); 3] = [
    ("RATE_LIMIT_LOGIN_PER_IP", "10"),
    ("RATE_LIMIT_SECOND_FACTOR_PER_IP", "5"),
    ("RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT", "10"),
];

fn retry_after(page: &Page) -> i64 {
    page.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn wrong_password(client: &Client, email: &str) -> Page {
    client
        .post(
            "/login",
            "/login",
            &[("email", email), ("password", "not the password")],
        )
        .await
}

#[tokio::test]
async fn the_password_step_allows_ten_tries_per_ip_in_fifteen_minutes() {
    let app = spawn_app_with(&CONTRACT_LIMITS).await;
    let user = app.user("ann@acme.test");
    let client = app.client();
    for i in 0..10 {
        let email = format!("someone{i}@acme.test");
        assert_eq!(
            wrong_password(&client, &email).await.status,
            StatusCode::UNAUTHORIZED,
            "try {i}"
        );
    }
    let page = client.password_step(&user).await;
    assert_eq!(
        page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    let wait = retry_after(&page);
    assert!(
        (880..=900).contains(&wait),
        "the first try leaves the window then: {wait}"
    );
    assert!(page.alert().unwrap().contains("Too many sign-in attempts"));
    assert!(page.alert().unwrap().contains("15 minutes"));
    assert_eq!(app.count_rows("sessions", &user.id), 0, "nobody signed in");
}

#[tokio::test]
async fn the_second_step_allows_five_tries_per_ip_in_fifteen_minutes() {
    let mut overrides = CONTRACT_LIMITS.to_vec();
    overrides.push(("SECOND_FACTOR_LOCK_AFTER", "100"));
    let app = spawn_app_with(&overrides).await;
    let (mut ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let client = app.client();
    client.password_step(&ann).await;
    for _ in 0..3 {
        let page = client
            .post("/login/2fa", "/login/2fa", &[("code", "000000")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        assert_eq!(
            wrong_recovery_code(&client).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let code = ann.fresh_code().await;
    let page = client
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!((880..=900).contains(&retry_after(&page)));
}

#[tokio::test]
async fn a_replayed_code_is_charged_to_the_network_once_and_a_sign_in_ends_the_streak() {
    let mut overrides = CONTRACT_LIMITS.to_vec();
    overrides.push(("SECOND_FACTOR_LOCK_AFTER", "100"));
    let app = spawn_app_with(&overrides).await;
    let (mut ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let (first, second) = (app.client(), app.client());
    first.password_step(&ann).await;
    second.password_step(&ann).await;
    assert_eq!(
        wrong_code(&second).await.status,
        StatusCode::UNAUTHORIZED,
        "one failure in the streak (the network's first try)"
    );
    let code = ann.fresh_code().await;
    let page = first
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.location(), "/home", "the second try");
    let (failures, signed_in): (i64, Option<i64>) = users::table
        .find(&ann.id)
        .select((users::second_factor_failures, users::last_sign_in_at))
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(failures, 0, "the success ended the streak");
    assert!(signed_in.is_some(), "and was recorded");
    // On PostgreSQL a right code is first tried in one statement, which writes nothing
    // when the code was used already; the full check then charges the network once.
    for try_number in 3..=5 {
        let page = second
            .post("/login/2fa", "/login/2fa", &[("code", &code)])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "try {try_number}");
    }
    let page = second
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "the sixth try");
    let kinds = app.audit_kinds(&ann.id);
    let replays = kinds.iter().filter(|k| *k == "replay_refused").count();
    assert_eq!(replays, 3, "{kinds:?}");
}

#[tokio::test]
async fn malformed_codes_count_against_the_network_at_the_second_step_too() {
    let app = spawn_app_with(&CONTRACT_LIMITS).await;
    let (mut ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let client = app.client();
    client.password_step(&ann).await;
    for malformed in ["12345", "abcdef", "1234567", "", "12-34-56"] {
        let page = client
            .post("/login/2fa", "/login/2fa", &[("code", malformed)])
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{malformed:?}");
    }
    let code = ann.fresh_code().await;
    let page = client
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!((880..=900).contains(&retry_after(&page)));
    // Refused before the code was looked at: no attempt claimed, nothing audited.
    let audited = app.audit_kinds(&ann.id);
    assert_eq!(failures(&app, &ann), (0, None));
    assert!(
        !audited.iter().any(|k| k.starts_with("second_factor")),
        "{audited:?}"
    );
}

#[tokio::test]
async fn a_forwarded_for_header_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_IP", "2")]).await;
    let client = app.client();
    for i in 0..2 {
        let page = forwarded_login(&client, &format!("198.51.100.{i}")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let page = forwarded_login(&client, "198.51.100.99").await;
    assert_eq!(
        page.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the client cannot pick its IP"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_audited() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_PER_IP", "2"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let client = app.client();
    // Each client gets its own bucket; what a client writes to the left is ignored.
    for _ in 0..2 {
        assert_eq!(
            forwarded_login(&client, "6.6.6.6, 198.51.100.7")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        forwarded_login(&client, "7.7.7.7, 198.51.100.7")
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        forwarded_login(&client, "198.51.100.8").await.status,
        StatusCode::UNAUTHORIZED
    );
    let ips: Vec<Option<String>> = tessera::db::schema::audit_events::table
        .filter(tessera::db::schema::audit_events::kind.eq("sign_in_failed"))
        .select(tessera::db::schema::audit_events::ip)
        .load(&mut *app.conn())
        .unwrap();
    assert!(ips.contains(&Some("198.51.100.7".into())), "{ips:?}");
    assert!(!ips.contains(&Some("6.6.6.6".into())));
}

async fn forwarded_login(client: &Client, forwarded: &str) -> Page {
    let csrf = client.get("/login").await.csrf();
    let response = client
        .http
        .post(format!("{}/login", client.base))
        .header("x-forwarded-for", forwarded)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "nobody@acme.test"),
            ("password", "wrong password"),
        ])
        .send()
        .await
        .unwrap();
    Client::page(response).await
}

#[tokio::test]
async fn password_failures_per_email_are_limited_the_same_for_unknown_emails() {
    let app = spawn_app_with(&[("RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT", "3")]).await;
    let ann = app.user("ann@acme.test");
    let client = app.client();
    for email in ["ann@acme.test", "ghost@acme.test"] {
        for _ in 0..3 {
            assert_eq!(
                wrong_password(&client, email).await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        let page = wrong_password(&client, email).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert!(page.alert().unwrap().contains("for this email address"));
    }
    assert_eq!(
        client.password_step(&ann).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another account is not held back by ann's failures.
    let bob = app.user("bob@acme.test");
    assert_eq!(
        client.password_step(&bob).await.status,
        StatusCode::SEE_OTHER
    );
}

fn failures(app: &TestApp, user: &TestUser) -> (i64, Option<i64>) {
    users::table
        .find(&user.id)
        .select((
            users::second_factor_failures,
            users::second_factor_locked_until,
        ))
        .first(&mut *app.conn())
        .unwrap()
}

fn unlock_now(app: &TestApp, user: &TestUser) {
    diesel::update(users::table.find(&user.id))
        .set(users::second_factor_locked_until.eq(Some(0_i64)))
        .execute(&mut *app.conn())
        .unwrap();
}

async fn wrong_recovery_code(client: &Client) -> Page {
    client
        .post(
            "/login/recovery",
            "/login/recovery",
            &[("code", "AAAA-AAAA-AAAA")],
        )
        .await
}

async fn wrong_code(client: &Client) -> Page {
    client
        .post("/login/2fa", "/login/2fa", &[("code", "000000")])
        .await
}

#[tokio::test]
async fn five_failed_codes_lock_the_second_step_even_for_the_right_code() {
    let app = spawn_app_with(&CONTRACT_LIMITS[..0]).await;
    let (mut ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let client = app.client();
    client.password_step(&ann).await;
    let mut refusals = Vec::new();
    for _ in 0..3 {
        refusals.push(wrong_code(&client).await);
    }
    for _ in 0..2 {
        assert_eq!(
            wrong_recovery_code(&client).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let (count, until) = failures(&app, &ann);
    assert_eq!(count, 5, "codes and recovery codes count together");
    let until = until.expect("locked");
    let lock = until - tessera::db::now();
    assert!(
        (55..=60).contains(&lock),
        "the first lock is a minute: {lock}"
    );

    let code = ann.fresh_code().await;
    let locked = client
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(locked.status, refusals[0].status);
    assert_eq!(
        locked.alert(),
        refusals[0].alert(),
        "the same answer as a wrong code"
    );
    assert_eq!(
        failures(&app, &ann).0,
        5,
        "refused attempts are not counted"
    );
    let recovery = ann.recovery_codes[0].clone();
    let locked = client
        .post("/login/recovery", "/login/recovery", &[("code", &recovery)])
        .await;
    assert_eq!(locked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count_rows("recovery_codes", &ann.id), 10);
    assert!(
        app.audit_kinds(&ann.id)
            .contains(&"second_factor_locked".to_owned())
    );

    // Starting over with the password changes nothing.
    let again = app.client();
    again.password_step(&ann).await;
    let code = ann.fresh_code().await;
    assert_eq!(
        again
            .post("/login/2fa", "/login/2fa", &[("code", &code)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // When the lock has passed, the next failure locks for twice as long, and a success
    // starts the count again.
    unlock_now(&app, &ann);
    assert_eq!(wrong_code(&again).await.status, StatusCode::UNAUTHORIZED);
    let (count, until) = failures(&app, &ann);
    assert_eq!(count, 6);
    assert!((115..=120).contains(&(until.unwrap() - tessera::db::now())));
    unlock_now(&app, &ann);
    let code = ann.fresh_code().await;
    let ok = again
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(failures(&app, &ann), (0, None));
}

#[tokio::test]
async fn the_lock_is_shared_by_every_instance() {
    let app = spawn_app_with(&[]).await;
    let other = app.sibling().await;
    let (mut ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let on_first = app.client();
    let on_second = other.client();
    on_first.password_step(&ann).await;
    on_second.password_step(&ann).await;
    for _ in 0..3 {
        wrong_code(&on_first).await;
    }
    for _ in 0..2 {
        wrong_code(&on_second).await;
    }
    let code = ann.fresh_code().await;
    let page = on_first
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(failures(&app, &ann).0, 5);
}

#[tokio::test]
async fn fifty_parallel_wrong_codes_get_no_more_checks_than_the_limit() {
    let app = spawn_app_with(&[]).await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let client = app.client();
    client.password_step(&ann).await;
    let csrf = client.get("/login/2fa").await.csrf();
    let attempts = (0..50).map(|i| {
        let code = format!("{:06}", 100_000 + i);
        client.post_raw(
            "/login/2fa",
            &[("csrf_token", csrf.as_str()), ("code", code.as_str())],
        )
    });
    let pages = futures_util::future::join_all(attempts).await;
    assert!(pages.iter().all(|p| p.status == StatusCode::UNAUTHORIZED));
    assert_eq!(failures(&app, &ann).0, 5);
    let checked = app
        .audit_events("second_factor_failed")
        .into_iter()
        .filter(|e| !e.detail.contains("refused unchecked"))
        .count();
    assert_eq!(checked, 5, "only five codes were ever compared");
}

#[tokio::test]
async fn password_failures_and_second_factor_failures_are_counted_apart() {
    let app = spawn_app_with(&[("RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT", "3")]).await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let client = app.client();
    client.password_step(&ann).await;
    for _ in 0..5 {
        wrong_code(&client).await;
    }
    // A locked second step does not hold back the password step...
    let page = app.client().password_step(&ann).await;
    assert_eq!(page.location(), "/login/2fa");
    // ...and two wrong passwords do not touch the second-factor count.
    unlock_now(&app, &ann);
    diesel::update(users::table.find(&ann.id))
        .set(users::second_factor_failures.eq(0_i64))
        .execute(&mut *app.conn())
        .unwrap();
    let fresh = app.client();
    for _ in 0..2 {
        wrong_password(&fresh, &ann.email).await;
    }
    assert_eq!(failures(&app, &ann), (0, Some(0)));
    // A successful sign-in forgives the password failures.
    fresh.password_step(&ann).await;
    let fresh = app.client();
    for _ in 0..3 {
        assert_eq!(
            wrong_password(&fresh, &ann.email).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn after_a_hundred_failures_only_a_reset_opens_the_second_step() {
    let app = spawn_app_with(&[]).await;
    let (mut ann, _) = enrolled_user(&app, "ann@acme.test").await;
    diesel::update(users::table.find(&ann.id))
        .set(users::second_factor_failures.eq(99_i64))
        .execute(&mut *app.conn())
        .unwrap();
    let client = app.client();
    client.password_step(&ann).await;
    wrong_code(&client).await;
    assert_eq!(failures(&app, &ann).0, 100);
    unlock_now(&app, &ann);
    let code = ann.fresh_code().await;
    let page = client
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNAUTHORIZED,
        "no lock expiry helps now"
    );
    let events = app.audit_events("second_factor_locked");
    assert!(events.last().unwrap().detail.contains("until 2FA is reset"));

    crate::helpers::tessera_ok(
        &app,
        &["reset-2fa", "--email", &ann.email, "--reason", "locked"],
        "",
    );
    assert_eq!(failures(&app, &ann), (0, None));
    ann.secret = None;
    assert_eq!(app.client().password_step(&ann).await.location(), "/home");
}

#[tokio::test]
async fn fifty_parallel_sign_ins_from_one_network_get_exactly_ten_tries_on_every_instance() {
    let app = spawn_app_with(&CONTRACT_LIMITS).await;
    let other = app.sibling().await;
    let mut tries = Vec::new();
    for i in 0..50 {
        let client = if i % 2 == 0 {
            app.client()
        } else {
            other.client()
        };
        let csrf = client.get("/login").await.csrf();
        tries.push((client, csrf, format!("nobody{i}@acme.test")));
    }
    let pages = futures_util::future::join_all(tries.iter().map(|(client, csrf, email)| {
        client.post_raw(
            "/login",
            &[
                ("csrf_token", csrf.as_str()),
                ("email", email.as_str()),
                ("password", "wrong password"),
            ],
        )
    }))
    .await;
    let tried = pages
        .iter()
        .filter(|p| p.status == StatusCode::UNAUTHORIZED)
        .count();
    let limited = pages
        .iter()
        .filter(|p| p.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((tried, limited), (10, 40));
}

#[tokio::test]
async fn someone_elsewhere_guessing_cannot_lock_the_owner_out_of_the_password_step() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT", "3"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let ann = app.user("ann@acme.test");
    let attacker = app.client();
    let mut last = None;
    // More tries than the loose per-email bucket allows (30): a refused try is charged to
    // no bucket, so the ones refused here never reach the owner's loose bucket.
    for _ in 0..40 {
        last =
            Some(forwarded_password(&attacker, &ann.email, "wrong password", "203.0.113.66").await);
    }
    assert_eq!(
        last.unwrap().status,
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser is stopped"
    );
    let owner = forwarded_password(
        &app.client(),
        &ann.email,
        crate::helpers::PASSWORD,
        "198.51.100.20",
    )
    .await;
    assert_eq!(
        owner.status,
        StatusCode::SEE_OTHER,
        "the owner, elsewhere, still signs in"
    );
}

async fn forwarded_password(client: &Client, email: &str, password: &str, from: &str) -> Page {
    let csrf = client.get("/login").await.csrf();
    let response = client
        .http
        .post(format!("{}/login", client.base))
        .header("x-forwarded-for", from)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    Client::page(response).await
}

#[tokio::test]
async fn a_locked_second_step_also_refuses_codes_on_the_account_pages() {
    let app = spawn_app_with(&[]).await;
    let (mut ann, signed_in) = enrolled_user(&app, "ann@acme.test").await;
    let half = app.client();
    half.password_step(&ann).await;
    for _ in 0..5 {
        wrong_code(&half).await;
    }
    let code = ann.fresh_code().await;
    let regenerate = signed_in
        .post(
            "/account/security",
            "/account/2fa/recovery-codes",
            &[("code", &code)],
        )
        .await;
    assert_eq!(regenerate.status, StatusCode::UNAUTHORIZED);
    let code = ann.fresh_code().await;
    let disable = signed_in
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", &ann.password), ("code", &code)],
        )
        .await;
    assert_eq!(disable.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count_rows("totp_credentials", &ann.id), 1);
    assert_eq!(app.count_rows("recovery_codes", &ann.id), 10);
}

#[tokio::test]
async fn malformed_sign_in_forms_count_against_the_network_too() {
    let app = spawn_app_with(&CONTRACT_LIMITS).await;
    let client = app.client();
    for _ in 0..10 {
        let page = wrong_password(&client, "not an email").await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
    }
    let page = wrong_password(&client, "someone@acme.test").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
}
