//! Passwords from the web: changing one's own, asking for a reset link by mail (to a real
//! SMTP server), and using it — which never signs anyone in and never touches 2FA.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::{mail_outbox, password_resets, users};

use crate::helpers::{
    Client, PASSWORD, Page, TestApp, TestUser, enrolled_admin, enrolled_user, spawn_app_with,
};
use crate::smtp::SmtpServer;

const PUBLIC_URL: &str = "http://tessera.test";
const NEW_PASSWORD: &str = "violet tram pocket lantern";

/// An app whose mail goes to `smtp`, with links under [`PUBLIC_URL`].
async fn app_mailing_to(smtp: &SmtpServer, extra: &[(&str, &str)]) -> TestApp {
    let url = smtp.url();
    let mut overrides = vec![
        ("SMTP_URL", url.as_str()),
        ("MAIL_FROM", "Tessera <security@tessera.test>"),
        ("PUBLIC_URL", PUBLIC_URL),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides).await
}

async fn forgot(client: &Client, email: &str) -> Page {
    client
        .post("/login/forgot", "/login/forgot", &[("email", email)])
        .await
}

/// Sends the outbox and returns the newest reset link mailed to `email`, as a path.
async fn mailed_link(app: &TestApp, smtp: &SmtpServer, email: &str) -> String {
    app.dispatch_mail().await;
    smtp.wait_for_where(email, is_reset_link).await;
    let mail = smtp
        .received()
        .await
        .into_iter()
        .rev()
        .find(|m| m.to.iter().any(|t| t == email) && is_reset_link(m))
        .unwrap();
    link_in(&mail.text())
        .strip_prefix(PUBLIC_URL)
        .expect("the link is under PUBLIC_URL")
        .to_owned()
}

fn is_reset_link(m: &crate::smtp::Received) -> bool {
    m.header("Subject")
        .is_some_and(|s| s.contains("Reset your Tessera password"))
}

fn link_in(text: &str) -> String {
    let start = text.find("http").expect("the mail has a link");
    text[start..].split_whitespace().next().unwrap().to_owned()
}

async fn reset(client: &Client, link: &str, password: &str) -> Page {
    client.post(link, link, &[("new_password", password)]).await
}

/// Posts the reset form of `link` with a CSRF token taken from the sign-in page (the link's
/// own page may no longer work).
async fn reset_anyway(client: &Client, link: &str, password: &str) -> Page {
    client
        .post("/login", link, &[("new_password", password)])
        .await
}

async fn change(client: &Client, current: &str, new: &str) -> Page {
    client
        .post(
            "/account/password",
            "/account/password",
            &[("current_password", current), ("new_password", new)],
        )
        .await
}

fn stored_hash(app: &TestApp, user_id: &str) -> String {
    users::table
        .find(user_id)
        .select(users::password_hash)
        .get_result(&mut *app.conn())
        .unwrap()
}

fn outbox_kinds(app: &TestApp, to: &str) -> Vec<String> {
    mail_outbox::table
        .filter(mail_outbox::recipient.eq(to))
        .order(mail_outbox::created_at)
        .select(mail_outbox::kind)
        .load(&mut *app.conn())
        .unwrap()
}

fn with_password(user: &TestUser, password: &str) -> TestUser {
    TestUser {
        id: user.id.clone(),
        email: user.email.clone(),
        password: password.to_owned(),
        secret: user.secret.clone(),
        recovery_codes: user.recovery_codes.clone(),
        last_step: user.last_step,
    }
}

fn assert_dead_link_page(page: &Page) {
    assert_eq!(page.status, StatusCode::GONE, "{}", page.body);
    let alert = page.alert().expect("the page says why in role=alert");
    assert!(alert.contains("expired or has already been"), "{alert}");
    assert!(
        page.body.contains("href=\"/login/forgot\""),
        "{}",
        page.body
    );
}

fn deactivate(app: &TestApp, user_id: &str) {
    diesel::update(users::table.find(user_id))
        .set(users::deactivated_at.eq(Some(tessera::db::now())))
        .execute(&mut *app.conn())
        .unwrap();
}

#[tokio::test]
async fn a_change_ends_the_other_sessions_and_keeps_this_one() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let other = app.client();
    other.sign_in(&mut user).await;
    assert_eq!(other.get("/home").await.status, StatusCode::OK);

    let security = client.get("/account/security").await;
    assert!(security.body.contains("href=\"/account/password\""));
    let form = client.get("/account/password").await;
    assert_eq!(form.status, StatusCode::OK);
    let page = change(&client, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/account/security");

    let security = client.get("/account/security").await;
    assert_eq!(security.status, StatusCode::OK);
    assert!(
        security.body.contains("Your password is changed"),
        "{}",
        security.body
    );
    assert!(other.get("/home").await.location().starts_with("/login"));
    assert!(
        app.audit_kinds(&user.id)
            .contains(&"password_changed".to_owned())
    );
    assert!(stored_hash(&app, &user.id).starts_with("$argon2id$"));

    app.dispatch_mail().await;
    let mail = smtp
        .wait_for_where(&user.email, |m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("Your password was changed"))
        })
        .await;
    assert!(!mail.data.contains("http://") && !mail.data.contains("https://"));

    // The old password no longer works; the new one still asks for the code.
    let fresh = app.client();
    assert_eq!(
        fresh.password_step(&user).await.status,
        StatusCode::UNAUTHORIZED
    );
    let mut renewed = with_password(&user, NEW_PASSWORD);
    let page = fresh.password_step(&renewed).await;
    assert_eq!(page.location(), "/login/2fa");
    let code = renewed.fresh_code().await;
    let page = fresh
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(fresh.get("/home").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_current_password_is_refused_audited_and_counted_until_429() {
    let app = spawn_app_with(&[("RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT", "3")]).await;
    let mut user = app.user("bob@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let before = stored_hash(&app, &user.id);

    for _ in 0..3 {
        let page = change(&client, "not my password at all", NEW_PASSWORD).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
        let alert = page.alert().unwrap();
        assert!(alert.contains("not your current password"), "{alert}");
    }
    let page = change(&client, "not my password at all", NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
    // The limit is the sign-in page's: the right password is held back too.
    let page = change(&client, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    let sign_in = app.client().password_step(&user).await;
    assert_eq!(sign_in.status, StatusCode::TOO_MANY_REQUESTS);

    let failures = app
        .audit_kinds(&user.id)
        .iter()
        .filter(|k| *k == "password_check_failed")
        .count();
    assert_eq!(failures, 3);
    assert_eq!(stored_hash(&app, &user.id), before);
    assert!(
        !app.audit_kinds(&user.id)
            .contains(&"password_changed".to_owned())
    );
}

#[tokio::test]
async fn new_passwords_that_break_the_rules_are_refused_with_the_reason_and_nothing_changes() {
    let app = spawn_app_with(&[]).await;
    let mut user = app.user("ada.lovelace@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let other = app.client();
    other.sign_in(&mut user).await;
    let before = stored_hash(&app, &user.id);

    for (new, reason) in [
        ("password1234", "too common"),
        ("AdaLovelace violet tram", "email address"),
        ("acme violet tram pocket", "workspace"),
        ("short one", "at least 12"),
    ] {
        let page = change(&client, PASSWORD, new).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{new}: {}", page.body);
        let alert = page.alert().unwrap();
        assert!(alert.contains(reason), "{new}: {alert}");
        assert!(page.body.contains("aria-invalid=\"true\""));
    }
    assert_eq!(stored_hash(&app, &user.id), before);
    assert_eq!(other.get("/home").await.status, StatusCode::OK);
    assert!(
        !app.audit_kinds(&user.id)
            .contains(&"password_changed".to_owned())
    );
}

#[tokio::test]
async fn forgot_answers_alike_for_known_unknown_deactivated_and_demo_addresses() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let known = app.user("known@example.com");
    let gone = app.user("gone@example.com");
    deactivate(&app, &gone.id);

    let login = app.client().get("/login").await;
    assert!(login.body.contains("href=\"/login/forgot\""));
    let form = app.client().get("/login/forgot").await;
    assert_eq!(form.status, StatusCode::OK);

    // The answer has no form (so not even a CSRF token differs).
    let answer = |page: Page| (page.status, page.body);
    // Each answer also waits for the same floor, which hides the link's extra work.
    let timed = async |email: &str| {
        let started = std::time::Instant::now();
        let page = forgot(&app.client(), email).await;
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        answer(page)
    };
    let for_known = timed("Known@Example.com ").await;
    let for_unknown = timed("nobody@example.com").await;
    let for_gone = timed("gone@example.com").await;
    assert_eq!(for_known.0, StatusCode::OK);
    assert!(
        for_known
            .1
            .contains("If an account exists for that address"),
        "{}",
        for_known.1
    );
    assert_eq!(for_known, for_unknown);
    assert_eq!(for_known, for_gone);

    assert_eq!(
        outbox_kinds(&app, "known@example.com"),
        ["password_reset_link"]
    );
    assert!(outbox_kinds(&app, "nobody@example.com").is_empty());
    assert!(outbox_kinds(&app, "gone@example.com").is_empty());
    assert_eq!(
        app.audit_kinds(&known.id),
        ["password_reset_requested".to_owned()]
    );
    assert!(app.audit_events("password_reset_requested").len() == 1);
    assert!(app.audit_kinds(&gone.id).is_empty());

    // A malformed address is told so (that reveals nothing about accounts).
    let page = forgot(&app.client(), "not an address").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.alert().is_some());
}

#[tokio::test]
async fn the_mail_reaches_the_smtp_server_with_an_absolute_link_and_only_a_hash_is_stored() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let user = app.user("mia@example.com");
    forgot(&app.client(), &user.email).await;

    // Before it is sent, the outbox holds the link; once sent, no longer.
    app.dispatch_mail().await;
    let mail = smtp.wait_for_where(&user.email, is_reset_link).await;
    let text = mail.text();
    let link = link_in(&text);
    assert!(
        link.starts_with(&format!("{PUBLIC_URL}/login/reset/")),
        "{link}"
    );
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 43, "256 bits: {token}");
    assert!(text.contains("30 minutes"), "{text}");
    assert!(text.contains("UTC"), "{text}");
    assert!(text.contains("If you did not ask for this"), "{text}");
    assert!(mail.part("text/html").contains(&format!("href=\"{link}\"")));

    let stored: Vec<String> = password_resets::table
        .select(password_resets::token_hash)
        .load(&mut *app.conn())
        .unwrap();
    assert_eq!(stored, [tessera::random::sha256_hex(&token)]);
    let bodies: Vec<(String, String)> = mail_outbox::table
        .select((mail_outbox::body_text, mail_outbox::body_html))
        .load(&mut *app.conn())
        .unwrap();
    assert!(
        bodies
            .iter()
            .all(|(text, html)| !text.contains(&token) && !html.contains(&token)),
        "{bodies:?}"
    );
    let details: Vec<String> = tessera::db::schema::audit_events::table
        .select(tessera::db::schema::audit_events::detail)
        .load(&mut *app.conn())
        .unwrap();
    assert!(details.iter().all(|d| !d.contains(&token)));

    // The link works from the mail.
    let path = link.strip_prefix(PUBLIC_URL).unwrap();
    let page = app.client().get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("mia@example.com"));
}

#[tokio::test]
async fn after_a_reset_sign_in_still_asks_for_the_second_factor_and_every_session_ended() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (mut user, open_session) = enrolled_user(&app, "lin@example.com").await;
    let secret_before: String = tessera::db::schema::totp_credentials::table
        .find(&user.id)
        .select(tessera::db::schema::totp_credentials::secret_ciphertext)
        .get_result(&mut *app.conn())
        .unwrap();
    let codes_before = app.count_rows("recovery_codes", &user.id);

    let stranger = app.client();
    forgot(&stranger, &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;
    // Opening the link (twice) does not use it.
    for _ in 0..2 {
        let page = stranger.get(&link).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    let page = reset(&stranger, &link, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/login");
    // Nobody was signed in by it.
    assert!(stranger.get("/home").await.location().starts_with("/login"));
    let login = stranger.get("/login").await;
    assert!(
        login.body.contains("Sign in with your new password"),
        "{}",
        login.body
    );
    // The session that was open has ended.
    assert!(
        open_session
            .get("/home")
            .await
            .location()
            .starts_with("/login")
    );

    // The old password is refused; the new one leads to the second factor, not in.
    let fresh = app.client();
    assert_eq!(
        fresh.password_step(&user).await.status,
        StatusCode::UNAUTHORIZED
    );
    user.password = NEW_PASSWORD.to_owned();
    let page = fresh.password_step(&user).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login/2fa");
    assert!(
        fresh
            .get("/home")
            .await
            .location()
            .starts_with("/login/2fa")
    );
    // The authenticator still works…
    let code = user.fresh_code().await;
    let page = fresh
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(fresh.get("/home").await.status, StatusCode::OK);
    // …and so do the recovery codes, untouched.
    let lost_phone = app.client();
    lost_phone.password_step(&user).await;
    let page = lost_phone
        .post(
            "/login/recovery",
            "/login/recovery",
            &[("code", &user.recovery_codes[0])],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let secret_after: String = tessera::db::schema::totp_credentials::table
        .find(&user.id)
        .select(tessera::db::schema::totp_credentials::secret_ciphertext)
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(secret_after, secret_before);
    assert_eq!(app.count_rows("recovery_codes", &user.id), codes_before);

    let kinds = app.audit_kinds(&user.id);
    assert!(kinds.contains(&"password_reset".to_owned()), "{kinds:?}");
    app.dispatch_mail().await;
    let mail = smtp
        .wait_for_where(&user.email, |m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("Your password was reset"))
        })
        .await;
    assert!(!mail.data.contains("http://"), "a notice has no link");

    // The link is used up.
    assert_dead_link_page(&stranger.get(&link).await);
    assert_dead_link_page(&reset_anyway(&stranger, &link, "another fine long phrase").await);
}

#[tokio::test]
async fn an_expired_link_is_refused_and_changes_nothing() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let user = app.user("old@example.com");
    let client = app.client();
    forgot(&client, &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;
    assert_eq!(client.get(&link).await.status, StatusCode::OK);
    let before = stored_hash(&app, &user.id);

    app.clock().advance(29 * 60);
    assert_eq!(client.get(&link).await.status, StatusCode::OK);
    app.clock().advance(60);
    assert_dead_link_page(&client.get(&link).await);
    assert_dead_link_page(&reset_anyway(&client, &link, NEW_PASSWORD).await);
    assert_eq!(stored_hash(&app, &user.id), before);
}

#[tokio::test]
async fn a_newer_request_kills_the_older_link() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let user = app.user("twice@example.com");
    let client = app.client();
    forgot(&client, &user.email).await;
    let first = mailed_link(&app, &smtp, &user.email).await;
    forgot(&client, &user.email).await;
    let second = mailed_link(&app, &smtp, &user.email).await;
    assert_ne!(first, second);

    assert_dead_link_page(&client.get(&first).await);
    assert_dead_link_page(&reset_anyway(&client, &first, NEW_PASSWORD).await);
    assert_eq!(app.count_rows("password_resets", &user.id), 1);
    let page = reset(&client, &second, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn a_password_change_kills_a_pending_reset_link() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let mut user = app.user("kim@example.com");
    forgot(&app.client(), &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;

    let client = app.client();
    client.sign_in(&mut user).await;
    let page = change(&client, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(app.count_rows("password_resets", &user.id), 0);
    let stranger = app.client();
    assert_dead_link_page(&stranger.get(&link).await);
    assert_dead_link_page(&reset_anyway(&stranger, &link, "someone else's phrase here").await);
}

#[tokio::test]
async fn a_refused_new_password_keeps_the_link_working() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let user = app.user("pat@example.com");
    let client = app.client();
    forgot(&client, &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;
    let before = stored_hash(&app, &user.id);

    for (new, reason) in [
        ("password1234", "too common"),
        ("pat violet tram pocket", "email"),
    ] {
        let page = reset(&client, &link, new).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(page.alert().unwrap().contains(reason), "{new}");
    }
    assert_eq!(stored_hash(&app, &user.id), before);
    assert_eq!(client.get(&link).await.status, StatusCode::OK);
    let page = reset(&client, &link, NEW_PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn two_racing_uses_of_one_link_cannot_both_win() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let user = app.user("race@example.com");
    forgot(&app.client(), &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;
    let (one, two) = (app.client(), app.client());
    let (csrf_one, csrf_two) = (one.get(&link).await.csrf(), two.get(&link).await.csrf());
    let (a, b) = tokio::join!(
        one.post_raw(
            &link,
            &[("csrf_token", &csrf_one), ("new_password", NEW_PASSWORD)]
        ),
        two.post_raw(
            &link,
            &[
                ("csrf_token", &csrf_two),
                ("new_password", "another fine long phrase")
            ]
        ),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::GONE]);
    let resets = app
        .audit_kinds(&user.id)
        .iter()
        .filter(|k| *k == "password_reset")
        .count();
    assert_eq!(resets, 1);
}

#[tokio::test]
async fn a_deactivated_account_gets_no_link_and_its_live_link_stops_working() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let user = app.user("leaver@example.com");
    let client = app.client();
    forgot(&client, &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;
    deactivate(&app, &user.id);
    let before = stored_hash(&app, &user.id);

    assert_dead_link_page(&client.get(&link).await);
    assert_dead_link_page(&reset_anyway(&client, &link, NEW_PASSWORD).await);
    assert_eq!(stored_hash(&app, &user.id), before);
    forgot(&client, &user.email).await;
    assert_eq!(outbox_kinds(&app, &user.email), ["password_reset_link"]);
}

#[tokio::test]
async fn an_admin_deactivating_the_account_kills_its_pending_link() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@example.com").await;
    let user = app.user("leaving@example.com");
    let stranger = app.client();
    forgot(&stranger, &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;

    let page = admin
        .post(
            "/home",
            &format!("/admin/users/{}/deactivate", user.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(app.count_rows("password_resets", &user.id), 0);
    assert_dead_link_page(&stranger.get(&link).await);
}

#[tokio::test]
async fn unknown_and_malformed_links_get_the_same_page() {
    let app = spawn_app_with(&[]).await;
    let client = app.client();
    let unknown = format!("/login/reset/{}", tessera::random::token::<32>().unwrap());
    for path in [
        unknown.as_str(),
        "/login/reset/short",
        "/login/reset/%3Cscript%3E",
    ] {
        let page = client.get(path).await;
        assert_dead_link_page(&page);
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    assert_dead_link_page(&reset_anyway(&client, &unknown, NEW_PASSWORD).await);
}

#[tokio::test]
async fn forgot_is_limited_per_address_and_per_network_with_429_and_retry_after() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_PASSWORD_RESET_PER_ADDRESS", "2"),
        ("RATE_LIMIT_PASSWORD_RESET_PER_IP", "5"),
    ])
    .await;
    app.user("busy@example.com");
    let client = app.client();
    // Known and unknown addresses are limited alike.
    for email in ["busy@example.com", "ghost@example.com"] {
        for _ in 0..2 {
            assert_eq!(forgot(&client, email).await.status, StatusCode::OK);
        }
        let page = forgot(&client, email).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
        let wait: i64 = page.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=15 * 60).contains(&wait), "{wait}");
        assert!(page.alert().unwrap().contains("this address"));
    }
    // Four allowed from this network so far (refusals are not counted): one more.
    assert_eq!(
        forgot(&client, "third@example.com").await.status,
        StatusCode::OK
    );
    let page = forgot(&client, "fourth@example.com").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.alert().unwrap().contains("your network"));
    assert_eq!(outbox_kinds(&app, "busy@example.com").len(), 2);
}

#[tokio::test]
async fn every_new_post_without_its_csrf_token_is_refused() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let mut user = app.user("csrf@example.com");
    let anonymous = app.client();
    anonymous.get("/login/forgot").await;
    let page = anonymous
        .post_raw("/login/forgot", &[("email", &user.email)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(outbox_kinds(&app, &user.email).is_empty());

    forgot(&anonymous, &user.email).await;
    let link = mailed_link(&app, &smtp, &user.email).await;
    anonymous.get(&link).await;
    let before = stored_hash(&app, &user.id);
    for fields in [
        vec![("new_password", NEW_PASSWORD)],
        vec![("csrf_token", "forged"), ("new_password", NEW_PASSWORD)],
    ] {
        let page = anonymous.post_raw(&link, &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(stored_hash(&app, &user.id), before);
    assert_eq!(anonymous.get(&link).await.status, StatusCode::OK);

    let client = app.client();
    client.sign_in(&mut user).await;
    let page = client
        .post_raw(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(stored_hash(&app, &user.id), before);
}

#[tokio::test]
async fn the_password_page_needs_a_full_sign_in() {
    let app = spawn_app_with(&[]).await;
    let anonymous = app.client();
    let page = anonymous.get("/account/password").await;
    assert_eq!(page.location(), "/login?next=%2Faccount%2Fpassword");
    let (user, _) = enrolled_user(&app, "half@example.com").await;
    let half = app.client();
    half.password_step(&user).await;
    assert_eq!(half.get("/account/password").await.location(), "/login/2fa");
}

#[tokio::test]
async fn a_password_change_already_under_way_cannot_undo_a_reset_or_outlive_its_session() {
    use tessera::auth::passwords::change_password;
    use tessera::auth::session::end_sessions_of_user;
    use tessera::db::models::User;
    use tessera::db::write_transaction;

    let app = crate::helpers::spawn_app().await;
    let (user, _client) = enrolled_user(&app, "ada@example.com").await;
    let mut conn = app.conn();
    // What a change request read before it began hashing: the user as the guard loaded
    // them, and the stored hash the current password was checked against.
    let seen = User::find(&mut conn, &user.id).unwrap().unwrap();
    let verified = User::password_hash(&mut conn, &user.id).unwrap().unwrap();

    // Meanwhile the owner resets the password: a new hash, every session ended.
    write_transaction(&mut conn, |conn| {
        User::set_password_hash(conn, &user.id, "$argon2id$the-owners-new-hash")?;
        end_sessions_of_user(conn, &user.id).map(|_| ())
    })
    .unwrap();
    let epoch_after_reset = User::session_epoch(&mut conn, &user.id).unwrap();

    // The change then reaches its transaction: it changes nothing.
    let outcome = write_transaction(&mut conn, |conn| {
        change_password(conn, &seen, &verified, "$argon2id$the-attackers-hash", None)
    })
    .unwrap();
    assert_eq!(outcome, None);
    assert_eq!(
        User::password_hash(&mut conn, &user.id).unwrap().as_deref(),
        Some("$argon2id$the-owners-new-hash")
    );
    assert_eq!(
        User::session_epoch(&mut conn, &user.id).unwrap(),
        epoch_after_reset
    );

    // A change that read what is still there goes through.
    let seen = User::find(&mut conn, &user.id).unwrap().unwrap();
    let outcome = write_transaction(&mut conn, |conn| {
        change_password(
            conn,
            &seen,
            "$argon2id$the-owners-new-hash",
            "$argon2id$next",
            None,
        )
    })
    .unwrap();
    assert!(outcome.is_some());
}
