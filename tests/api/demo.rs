//! Demo accounts (`tessera create-user … --demo`): they sign in like anyone, but their
//! password, second factors and recovery codes stay as they were made.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::{mail_outbox, pending_enrolments, users, workspaces};

use crate::helpers::{PASSWORD, Page, TestApp, TestUser, spawn_app, tessera_command, tessera_ok};

const DEMO_MESSAGE: &str = "This is a demo account";

/// A demo account made the way operators make one.
pub(crate) fn demo_user(app: &TestApp, email: &str) -> TestUser {
    app.workspace("acme");
    let printed = tessera_ok(
        app,
        &[
            "create-user",
            "--workspace",
            "acme",
            "--email",
            email,
            "--demo",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(printed.contains("(demo account)"), "{printed}");
    let id: String = users::table
        .filter(users::email.eq(email))
        .select(users::id)
        .get_result(&mut *app.conn())
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

fn assert_demo_refusal(page: &Page, what: &str) {
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.body);
    let alert = page.alert().unwrap_or_default();
    assert!(alert.contains(DEMO_MESSAGE), "{what}: {alert}");
}

fn stored_hash(app: &TestApp, user_id: &str) -> String {
    users::table
        .find(user_id)
        .select(users::password_hash)
        .get_result(&mut *app.conn())
        .unwrap()
}

#[tokio::test]
async fn a_demo_account_signs_in_but_its_password_and_factors_cannot_be_changed() {
    let app = spawn_app().await;
    let mut demo = demo_user(&app, "demo@example.com");
    let client = app.client();
    let page = client.sign_in(&mut demo).await;
    assert_eq!(page.location(), "/home");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    let before = stored_hash(&app, &demo.id);

    let security = client.get("/account/security").await;
    assert_eq!(security.status, StatusCode::OK);
    assert!(
        security.body.contains("id=\"demo-account\""),
        "{}",
        security.body
    );
    assert!(security.body.contains(DEMO_MESSAGE));
    for action in [
        "/account/password\"",
        "/account/2fa/setup\"",
        "/account/2fa/recovery-codes\"",
        "/account/2fa/disable\"",
    ] {
        assert!(!security.body.contains(action), "offers {action}");
    }

    for path in ["/account/password", "/account/2fa/setup"] {
        assert_demo_refusal(&client.get(path).await, path);
    }
    for (path, fields) in [
        (
            "/account/password",
            vec![
                ("current_password", PASSWORD),
                ("new_password", "violet tram pocket lantern"),
            ],
        ),
        ("/account/2fa/setup", vec![("code", "123456")]),
        ("/account/2fa/recovery-codes", vec![("code", "123456")]),
        (
            "/account/2fa/disable",
            vec![("password", PASSWORD), ("code", "123456")],
        ),
    ] {
        let page = client.post("/account/security", path, &fields).await;
        assert_demo_refusal(&page, path);
    }

    assert_eq!(stored_hash(&app, &demo.id), before);
    let pending: i64 = pending_enrolments::table
        .filter(pending_enrolments::user_id.eq(&demo.id))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(pending, 0, "no enrolment was started");
    // Still signed in, nothing else ended.
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    let kinds = app.audit_kinds(&demo.id);
    assert!(
        !kinds
            .iter()
            .any(|k| k == "password_changed" || k == "two_factor_enabled"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_demo_account_gets_the_neutral_answer_but_no_reset_link() {
    let app = spawn_app().await;
    let demo = demo_user(&app, "demo@example.com");
    let client = app.client();
    let page = client
        .post("/login/forgot", "/login/forgot", &[("email", &demo.email)])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("If an account exists for that address"));
    let mails: i64 = mail_outbox::table
        .filter(mail_outbox::recipient.eq(&demo.email))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(mails, 0);
    assert_eq!(app.count_rows("password_resets", &demo.id), 0);
}

#[tokio::test]
async fn a_demo_account_is_not_held_at_enrolment_by_its_workspace() {
    let app = spawn_app().await;
    let mut demo = demo_user(&app, "demo@example.com");
    let mut member = app.user("member@example.com");
    let past = tessera::db::now() - 86_400;
    diesel::update(workspaces::table.filter(workspaces::slug.eq("acme")))
        .set((
            workspaces::require_2fa_since.eq(Some(past - 86_400)),
            workspaces::require_2fa_deadline.eq(Some(past)),
        ))
        .execute(&mut *app.conn())
        .unwrap();

    let client = app.client();
    assert_eq!(
        client.sign_in(&mut member).await.location(),
        "/account/2fa/setup"
    );
    let client = app.client();
    assert_eq!(client.sign_in(&mut demo).await.location(), "/home");
    let home = client.get("/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(!home.body.contains("grace-banner"));
}

#[tokio::test]
async fn the_command_line_refuses_a_demo_account_that_is_support_staff() {
    let app = spawn_app().await;
    app.workspace("acme");
    let out = tessera_command(
        &app,
        &[
            "create-user",
            "--workspace",
            "acme",
            "--email",
            "demo@example.com",
            "--demo",
            "--staff",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--demo") && stderr.contains("--staff"),
        "{stderr}"
    );
    let count: i64 = users::table.count().get_result(&mut *app.conn()).unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn the_command_line_refuses_a_demo_account_that_is_an_admin() {
    let app = spawn_app().await;
    app.workspace("acme");
    let out = tessera_command(
        &app,
        &[
            "create-user",
            "--workspace",
            "acme",
            "--email",
            "demo@example.com",
            "--demo",
            "--role",
            "admin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be an admin"), "{stderr}");
    let count: i64 = users::table.count().get_result(&mut *app.conn()).unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn demo_visitors_see_only_their_own_session_and_cannot_sign_each_other_out() {
    let app = spawn_app().await;
    let mut demo = demo_user(&app, "demo@example.com");
    let (first, second) = (app.client(), app.client());
    first.sign_in(&mut demo).await;
    second.sign_in(&mut demo).await;
    let page = first.get("/account/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.body.matches("<li class=\"session").count(),
        1,
        "{}",
        page.body
    );
    assert!(page.body.contains("shared demo account"), "{}", page.body);
    assert!(!page.body.contains("/account/sessions/end-others"));

    let others = first
        .post("/account/sessions", "/account/sessions/end-others", &[])
        .await;
    assert_demo_refusal(&others, "end the other sessions");
    let one = first
        .post(
            "/account/sessions",
            "/account/sessions/end",
            &[("session", "x")],
        )
        .await;
    assert_demo_refusal(&one, "end one session");
    assert_eq!(
        second.get("/home").await.status,
        StatusCode::OK,
        "the other visitor is still in"
    );
}
