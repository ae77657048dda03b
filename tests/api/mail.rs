//! Security emails: each event's mail reaches a real SMTP server (tests/api/smtp.rs) with
//! the right recipient and words; the outbox retries, gives up, survives a restart, sends
//! each mail once with two instances, and never fails the request that caused it.
//!
//! The test apps run without the mail worker: a test sends the outbox when it wants with
//! `app.dispatch_mail()` (the function the worker calls), and reaches a retry by
//! dispatching as if later, never by sleeping. One test runs the worker itself.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::mail_outbox;
use tessera::domain::Role;
use tessera::mail::Mail;
use tessera::startup::Application;

use crate::helpers::{
    PASSWORD, TestApp, TestDatabase, enrol_as, enrolled_admin, enrolled_user, random_key,
    spawn_app, spawn_app_with, tessera_ok, test_settings,
};
use crate::smtp::SmtpServer;

const FROM: &str = "Tessera Security <security@tessera.test>";

/// An app whose outbox sends to `smtp`, a failed mail retried after 1 s, then 2 s….
async fn app_mailing_to(smtp: &SmtpServer, extra: &[(&str, &str)]) -> TestApp {
    let url = smtp.url();
    let mut overrides = vec![
        ("SMTP_URL", url.as_str()),
        ("MAIL_FROM", FROM),
        ("MAIL_RETRY_BASE_SECONDS", "1"),
    ];
    overrides.extend_from_slice(extra);
    spawn_app_with(&overrides).await
}

/// A loopback port with nothing listening on it: a mail server that is down.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[derive(Debug, Queryable)]
struct OutboxRow {
    kind: String,
    recipient: String,
    attempts: i64,
    sent_at: Option<i64>,
    failed_at: Option<i64>,
    last_error: Option<String>,
}

fn outbox(app: &TestApp) -> Vec<OutboxRow> {
    mail_outbox::table
        .order(mail_outbox::created_at)
        .select((
            mail_outbox::kind,
            mail_outbox::recipient,
            mail_outbox::attempts,
            mail_outbox::sent_at,
            mail_outbox::failed_at,
            mail_outbox::last_error,
        ))
        .load(&mut *app.conn())
        .unwrap()
}

/// The outbox, which `done` must hold of.
fn outbox_where(app: &TestApp, done: impl Fn(&[OutboxRow]) -> bool) -> Vec<OutboxRow> {
    let rows = outbox(app);
    assert!(done(&rows), "the outbox is not as expected: {rows:#?}");
    rows
}

fn subject_has(words: &'static str) -> impl Fn(&crate::smtp::Received) -> bool {
    move |m| m.header("Subject").is_some_and(|s| s.contains(words))
}

#[tokio::test]
async fn turning_2fa_on_and_off_and_using_recovery_codes_each_send_an_email() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    app.dispatch_mail().await;

    let on = smtp
        .wait_for_where("ada@example.com", subject_has("turned on"))
        .await;
    assert_eq!(on.from, "security@tessera.test");
    assert_eq!(
        on.header("From").as_deref(),
        Some("\"Tessera Security\" <security@tessera.test>")
    );
    assert!(
        on.text()
            .contains("Two-factor sign-in was turned on for your account ada@example.com")
    );
    assert!(
        on.part("text/html")
            .contains("<strong>ada@example.com</strong>")
    );
    assert!(
        !on.data.contains("http://") && !on.data.contains("https://"),
        "no links"
    );

    let code = user.fresh_code().await;
    let page = client
        .post(
            "/account/security",
            "/account/2fa/recovery-codes",
            &[("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let codes = page.recovery_codes();
    app.dispatch_mail().await;
    let regenerated = smtp
        .wait_for_where("ada@example.com", subject_has("new recovery codes"))
        .await;
    assert!(
        regenerated
            .text()
            .contains("Every older recovery code has stopped working")
    );
    for code in &codes {
        assert!(
            !regenerated.data.contains(code.as_str()),
            "no codes in mail"
        );
    }

    let phone_lost = app.client();
    phone_lost.password_step(&user).await;
    let page = phone_lost
        .post("/login/recovery", "/login/recovery", &[("code", &codes[0])])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.dispatch_mail().await;
    let used = smtp
        .wait_for_where("ada@example.com", subject_has("recovery code was used"))
        .await;
    assert_eq!(
        used.header("Subject").as_deref(),
        Some("A recovery code was used (9 left)")
    );
    assert!(
        used.text().contains("9 unused codes are left"),
        "{}",
        used.text()
    );

    let page = phone_lost
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", &user.fresh_code().await)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.dispatch_mail().await;
    let off = smtp
        .wait_for_where("ada@example.com", subject_has("turned off"))
        .await;
    assert!(
        off.text()
            .contains("every session of the account was signed out")
    );

    let kinds: Vec<String> = outbox_where(&app, |rows| rows.iter().all(|r| r.sent_at.is_some()))
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "two_factor_enabled",
            "recovery_codes_regenerated",
            "recovery_code_used",
            "two_factor_disabled"
        ]
    );
    assert_eq!(smtp.received().await.len(), 4, "each mail once");
}

#[tokio::test]
async fn resets_by_an_admin_by_support_and_from_the_command_line_say_who_and_why() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let page = admin
        .post(
            "/admin/users",
            &format!("/admin/users/{}/reset-2fa", ann.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.dispatch_mail().await;
    let by_admin = smtp
        .wait_for_where("ann@acme.test", subject_has("was reset"))
        .await;
    let text = by_admin.text();
    assert!(
        text.contains("by boss@acme.test, an admin of your workspace"),
        "{text}"
    );
    assert!(!text.contains("reason"), "{text}");

    let staff_user = app.staff_in("hq", "helper@hq.test");
    let (_, staff) = enrol_as(&app, staff_user).await;
    let (bob, _) = enrolled_user(&app, "bob@acme.test").await;
    let page = staff
        .post(
            "/support/users",
            &format!("/support/users/{}/reset-2fa", bob.id),
            &[(
                "reason",
                "Ticket 4711: phone stolen, identity checked by video call",
            )],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.dispatch_mail().await;
    let by_staff = smtp
        .wait_for_where("bob@acme.test", subject_has("was reset"))
        .await;
    let text = by_staff.text();
    assert!(
        text.contains("by helper@hq.test, of Tessera support"),
        "{text}"
    );
    assert!(
        text.contains(
            "The reason given: Ticket 4711: phone stolen, identity checked by video call"
        ),
        "{text}"
    );

    // The command line only writes the mail into the outbox; a server sends it.
    let (cy, _) = enrolled_user(&app, "cy@acme.test").await;
    tessera_ok(
        &app,
        &[
            "reset-2fa",
            "--email",
            &cy.email,
            "--reason",
            "Locked-out admin runbook",
        ],
        "",
    );
    app.dispatch_mail().await;
    let from_cli = smtp
        .wait_for_where("cy@acme.test", subject_has("was reset"))
        .await;
    let text = from_cli.text();
    assert!(text.contains("from the command line"), "{text}");
    assert!(
        text.contains("The reason given: Locked-out admin runbook"),
        "{text}"
    );
}

#[tokio::test]
async fn turning_enforcement_on_tells_each_member_without_2fa_the_deadline() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    enrolled_user(&app, "ann@acme.test").await;
    app.user("bob@acme.test");
    app.user("cy@acme.test");
    app.user_in("other", "olga@other.test", Role::Member);
    let page = admin
        .post(
            "/admin/workspace",
            "/admin/workspace",
            &[("require_2fa", "on"), ("grace_days", "7")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    app.dispatch_mail().await;

    let deadline = tessera::words::date_time(app.clock().now() + 7 * 86_400);
    // Minutes may tick over between the request and here.
    let day = deadline.split(',').next().unwrap().to_owned();
    for member in ["bob@acme.test", "cy@acme.test"] {
        let mail = smtp
            .wait_for_where(member, subject_has("now requires two-factor sign-in"))
            .await;
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some("acme now requires two-factor sign-in")
        );
        assert!(
            mail.text()
                .contains(&format!("Please set it up before {day}")),
            "{}",
            mail.text()
        );
    }
    let rows = outbox_where(&app, |rows| rows.iter().all(|r| r.sent_at.is_some()));
    let mut told: Vec<&str> = rows
        .iter()
        .filter(|r| r.kind == "enforcement_on")
        .map(|r| r.recipient.as_str())
        .collect();
    told.sort();
    assert_eq!(
        told,
        ["bob@acme.test", "cy@acme.test"],
        "not the enrolled, not other workspaces"
    );
}

#[tokio::test]
async fn a_refused_mail_is_retried_with_backoff_until_it_is_accepted() {
    let smtp = SmtpServer::start().await;
    smtp.refuse_next(2);
    let app = app_mailing_to(&smtp, &[]).await;
    enrolled_user(&app, "ada@example.com").await;
    // Refused twice, it waits 1 s, then 2 s (MAIL_RETRY_BASE_SECONDS=1, doubling).
    assert_eq!(app.dispatch_mail().await, 0);
    assert_eq!(app.dispatch_mail_after(1).await, 0);
    assert_eq!(app.dispatch_mail_after(1 + 2).await, 1);
    let rows = outbox_where(&app, |rows| rows[0].sent_at.is_some());
    assert_eq!(smtp.refused(), 2);
    assert_eq!(smtp.received().await.len(), 1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(rows[0].last_error, None);
}

#[tokio::test]
async fn a_mail_server_that_is_down_never_fails_the_request_and_the_mail_is_given_up_after_the_last_attempt()
 {
    let url = format!("smtp://127.0.0.1:{}", dead_port());
    let app = spawn_app_with(&[
        ("SMTP_URL", &url),
        ("MAIL_FROM", FROM),
        ("MAIL_RETRY_BASE_SECONDS", "1"),
        ("MAIL_MAX_ATTEMPTS", "2"),
    ])
    .await;
    // enrolled_user asserts that enrolment answered 200 with the codes.
    enrolled_user(&app, "ada@example.com").await;
    app.dispatch_mail().await;
    app.dispatch_mail_after(1).await;
    let rows = outbox_where(&app, |rows| rows.iter().any(|r| r.failed_at.is_some()));
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(rows[0].sent_at, None);
    assert!(
        rows[0].last_error.as_deref().unwrap().starts_with("SMTP"),
        "{rows:?}"
    );
}

/// Starts an app over `database` and returns it with the means to stop it gracefully;
/// with its mail worker or, like every other test app, without.
async fn start(
    database: Arc<TestDatabase>,
    settings: tessera::config::Settings,
    mail_worker: bool,
) -> (
    TestApp,
    actix_web::dev::ServerHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut app = Application::build(settings.clone()).unwrap();
    if !mail_worker {
        app = app.without_mail_worker();
    }
    let port = app.port();
    let db = app.db();
    let handle = app.server_handle();
    let running = tokio::spawn(app.run_until_stopped());
    let test_app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db,
        hasher: tessera::auth::password::PasswordHasher::new(settings.argon2, 2).unwrap(),
        settings,
        database,
    };
    (test_app, handle, running)
}

#[tokio::test]
async fn mail_waiting_in_the_outbox_survives_a_restart() {
    let database = Arc::new(TestDatabase::create());
    let key = random_key();
    let down = format!("smtp://127.0.0.1:{}", dead_port());
    let fast = [("MAIL_FROM", FROM), ("MAIL_RETRY_BASE_SECONDS", "1")];
    let mut first_settings = fast.to_vec();
    first_settings.push(("SMTP_URL", &down));
    let (first, handle, running) = start(
        database.clone(),
        test_settings(&database, &key, &first_settings),
        false,
    )
    .await;
    enrolled_user(&first, "ada@example.com").await;
    first.dispatch_mail().await;
    outbox_where(&first, |rows| rows.first().is_some_and(|r| r.attempts >= 1));

    handle.stop(true).await;
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the app stops")
        .unwrap()
        .unwrap();
    drop(first);

    let smtp = SmtpServer::start().await;
    let up = smtp.url();
    let mut second_settings = fast.to_vec();
    second_settings.push(("SMTP_URL", &up));
    let (second, _, _) = start(
        database.clone(),
        test_settings(&database, &key, &second_settings),
        false,
    )
    .await;
    // Past the retry delay of the first attempt.
    second.dispatch_mail_after(1).await;
    let mail = smtp.wait_for("ada@example.com").await;
    assert!(mail.text().contains("turned on"));
    let rows = outbox_where(&second, |rows| rows[0].sent_at.is_some());
    assert!(rows[0].attempts >= 2, "{rows:?}");
}

#[tokio::test]
async fn two_instances_share_the_outbox_and_send_each_mail_once() {
    let smtp = SmtpServer::start().await;
    let first = app_mailing_to(&smtp, &[]).await;
    let second = first.sibling().await;
    let recipients: Vec<String> = (0..30).map(|i| format!("user{i}@example.com")).collect();
    // The mail the per-account lockout sends; enqueued here through the public API.
    tessera::db::write_transaction(&mut first.conn(), |conn| {
        for to in &recipients {
            tessera::mail::enqueue(conn, &Mail::SecondFactorFailures { to, failures: 5 })?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .unwrap();
    // Both instances at once: each claims a row before sending it, so no row goes twice.
    let (by_first, by_second) = tokio::join!(first.dispatch_mail(), second.dispatch_mail());
    assert_eq!(by_first + by_second, recipients.len());
    for to in &recipients {
        let mail = smtp.wait_for(to).await;
        assert!(
            mail.text()
                .contains("failed the second step 5 times in a row")
        );
    }
    outbox_where(&second, |rows| rows.iter().all(|r| r.sent_at.is_some()));
    // More passes of both instances: nothing is sent again.
    for _ in 0..3 {
        let (by_first, by_second) = tokio::join!(first.dispatch_mail(), second.dispatch_mail());
        assert_eq!(by_first + by_second, 0);
    }
    let received = smtp.received().await;
    assert_eq!(received.len(), recipients.len(), "{received:#?}");
}

#[tokio::test]
async fn without_smtp_mail_is_written_as_eml_files_in_the_data_folder() {
    let app = spawn_app().await;
    enrolled_user(&app, "ada@example.com").await;
    assert_eq!(app.dispatch_mail().await, 1);
    let folder = app.settings.data_dir.join("mail");
    let found = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".eml"));
    let file = found.expect("an .eml file appears");
    let text = std::fs::read_to_string(file.path()).unwrap();
    assert!(text.contains("To: ada@example.com"), "{text}");
    assert!(
        text.contains("Subject: Two-factor sign-in was turned on"),
        "{text}"
    );
    assert!(outbox(&app)[0].sent_at.is_some());
}

#[tokio::test]
async fn a_right_password_followed_by_failed_codes_warns_the_owner_once() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp, &[]).await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let guesser = app.client();
    guesser.password_step(&ann).await;
    for _ in 0..6 {
        guesser
            .post("/login/2fa", "/login/2fa", &[("code", "000000")])
            .await;
    }
    app.dispatch_mail().await;
    let warning = smtp
        .wait_for_where("ann@acme.test", subject_has("then the second step failed"))
        .await;
    assert!(warning.text().contains("5"), "{}", warning.text());
    let warnings = outbox(&app)
        .into_iter()
        .filter(|row| row.kind == "second_factor_failures" && row.recipient == "ann@acme.test")
        .count();
    assert_eq!(warnings, 1, "once per streak, not at every failure");
}

/// Puts one mail to `to` in the outbox, through the public API.
fn enqueue_enabled(app: &TestApp, to: &str) {
    tessera::db::write_transaction(&mut app.conn(), |conn| {
        tessera::mail::enqueue(conn, &Mail::TwoFactorEnabled { to })
    })
    .unwrap();
}

#[tokio::test]
async fn the_mail_worker_sends_on_its_own_and_stops_with_the_server() {
    let smtp = SmtpServer::start().await;
    let database = Arc::new(TestDatabase::create());
    let url = smtp.url();
    let settings = test_settings(
        &database,
        &random_key(),
        &[
            ("SMTP_URL", &url),
            ("MAIL_FROM", FROM),
            ("MAIL_POLL_INTERVAL_MS", "50"),
        ],
    );
    let (app, handle, running) = start(database, settings, true).await;
    enqueue_enabled(&app, "ada@example.com");
    // The one wait on a worker in this suite: that it works is what is tested.
    let mail = smtp.wait_for("ada@example.com").await;
    assert!(mail.text().contains("turned on"));

    handle.stop(true).await;
    // run_until_stopped returns only once the worker has stopped too.
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the app stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_user_name_and_password_in_smtp_url_are_decoded_to_log_in() {
    let smtp = SmtpServer::start().await;
    // Plain SMTP may carry a password to this host only.
    let url = format!("smtp://mailer:s%40cret@127.0.0.1:{}", smtp.port);
    let app = spawn_app_with(&[("SMTP_URL", &url), ("MAIL_FROM", FROM)]).await;
    enqueue_enabled(&app, "ada@example.com");
    assert_eq!(app.dispatch_mail().await, 1);
    assert_eq!(smtp.logins(), [("mailer".to_owned(), "s@cret".to_owned())]);
}

#[tokio::test]
async fn an_ipv6_address_in_smtp_url_reaches_the_mail_server() {
    let Ok(smtp) = SmtpServer::start_on("[::1]:0").await else {
        eprintln!("no IPv6 loopback here: nothing to test");
        return;
    };
    let url = format!("smtp://[::1]:{}", smtp.port);
    let app = spawn_app_with(&[("SMTP_URL", &url), ("MAIL_FROM", FROM)]).await;
    enqueue_enabled(&app, "ada@example.com");
    assert_eq!(app.dispatch_mail().await, 1);
    let mail = smtp.wait_for("ada@example.com").await;
    assert!(mail.text().contains("turned on"));
}
