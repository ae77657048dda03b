//! "Members must use a security key or passkey": turning it on (only by an admin who has a
//! key) and off, its deadline that holds members without a key at adding one, the
//! exemption and staff; which factors the overview, the export and the support search
//! show; and resets that name the keys they removed. Keys are rows put in the database
//! directly: registering one is the WebAuthn pages' business.

use reqwest::StatusCode;
use tessera::auth::policy::DAY;
use tessera::db::models::{NewSecurityKey, SecurityKeys, Workspace};
use tessera::domain::Slug;

use crate::helpers::{
    Client, Page, TestApp, enrol_as, enrolled_admin, enrolled_user, policy_day, spawn_app,
    spawn_app_with, tessera_ok,
};
use crate::smtp::SmtpServer;

const ADD_KEY: &str = "/account/security-keys/new";

/// Registers a key for `user_id`, as a finished WebAuthn registration would store it.
fn add_key(app: &TestApp, user_id: &str, name: &str) {
    let credential_id = format!("cred-{user_id}-{name}");
    SecurityKeys::insert(
        &mut app.conn(),
        &NewSecurityKey {
            user_id,
            name,
            credential_id: &credential_id,
            credential: "{\"test\":true}",
            passwordless: false,
            sign_count: 0,
            now: app.clock().now(),
        },
    )
    .unwrap();
}

fn workspace(app: &TestApp, slug: &str) -> Workspace {
    Workspace::find_by_slug(&mut app.conn(), &Slug::parse(slug).unwrap())
        .unwrap()
        .unwrap()
}

/// Posts the workspace form as `admin` with `fields` (and the CSRF token from /home).
async fn set_workspace(admin: &Client, fields: &[(&str, &str)]) -> Page {
    admin.post("/home", "/admin/workspace", fields).await
}

/// Requires keys with `grace_days`, 2FA left off.
async fn require_keys(admin: &Client, grace_days: &str) -> Page {
    set_workspace(
        admin,
        &[
            ("require_phishing_resistant", "on"),
            ("grace_days", grace_days),
        ],
    )
    .await
}

#[tokio::test]
async fn requiring_keys_needs_the_admin_to_have_a_key_themself() {
    let app = spawn_app().await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;

    let refused = require_keys(&client, "7").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.alert().unwrap().contains("your own account first"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("id=\"require_phishing_resistant\""));
    assert_eq!(workspace(&app, "acme").require_keys_since, None);
    assert!(app.audit_events("keys_required_enabled").is_empty());

    add_key(&app, &admin.id, "YubiKey");
    let before = app.clock().now();
    let done = require_keys(&client, "7").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let ws = workspace(&app, "acme");
    let since = ws.require_keys_since.unwrap();
    assert!(since >= before);
    assert_eq!(ws.require_keys_deadline, Some(since + 7 * DAY));
    assert_eq!(
        ws.require_2fa_since, None,
        "2FA is a requirement of its own"
    );
    let events = app.audit_events("keys_required_enabled");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_label, "boss@acme.test");
    assert!(
        events[0].detail.contains("grace period 7 days"),
        "{}",
        events[0].detail
    );
    let page = client.get("/admin/workspace").await;
    assert!(
        page.body.contains("id=\"require_phishing_resistant\"") && page.body.contains("checked"),
        "{}",
        page.body
    );
    let deadline = tessera::words::date_time(since + 7 * DAY);
    assert!(
        page.body
            .contains(&format!("id=\"keys-deadline\">{deadline}<")),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn after_the_deadline_a_member_without_a_key_is_held_at_adding_one_until_they_have_one() {
    let app = spawn_app().await;
    let (admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    require_keys(&admin_client, "7").await;
    // A member with an authenticator app has 2FA, but not a key.
    let (ann, client) = enrolled_user(&app, "ann@acme.test").await;

    let home = client.get("/home").await;
    assert_eq!(
        home.status,
        StatusCode::OK,
        "not held during the grace period"
    );
    assert!(home.body.contains("id=\"grace-banner\""), "{}", home.body);
    assert!(home.body.contains("id=\"grace-days-left\">7<"));
    assert!(home.body.contains(&format!("href=\"{ADD_KEY}\"")));

    app.clock().advance(7 * DAY);
    for path in [
        "/home",
        "/account/security",
        "/account/2fa/setup",
        "/",
        "/login",
    ] {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), ADD_KEY, "{path}");
    }
    let json = client.get_json("/home").await;
    assert_eq!(json.status, StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(body["error"], "security_key_required");
    assert_eq!(body["location"], ADD_KEY);
    // The page for adding a key is open to them (the guard lets it through).
    assert_ne!(client.get(ADD_KEY).await.status, StatusCode::SEE_OTHER);
    // Nothing else runs for a held member, not even a form post.
    let csrf = home.csrf();
    let post = client
        .post_raw(
            "/account/2fa/recovery-codes",
            &[("csrf_token", &csrf), ("code", "123456")],
        )
        .await;
    assert_eq!(post.status, StatusCode::SEE_OTHER);
    assert_eq!(post.location(), ADD_KEY);

    add_key(&app, &ann.id, "Phone");
    let home = client.get("/home").await;
    assert_eq!(home.status, StatusCode::OK, "released by the key");
    assert!(!home.body.contains("grace-banner"));
    assert_eq!(client.get("/account/security").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_member_held_at_adding_a_key_can_still_sign_out() {
    let app = spawn_app().await;
    let (admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    require_keys(&admin_client, "0").await;
    let mut bob = app.user("bob@acme.test");
    let client = app.client();
    client.sign_in(&mut bob).await;
    let held = client.get("/home").await;
    assert_eq!(held.location(), ADD_KEY);

    let csrf = client.get("/login").await;
    assert_eq!(csrf.location(), ADD_KEY);
    // The sign-out form's token is the session's; any page of the session carries it, the
    // error page of the missing route included.
    let token = client.get(ADD_KEY).await.csrf();
    let out = client.post_raw("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    let after = client.get("/home").await;
    assert!(
        after.location().starts_with("/login"),
        "{}",
        after.location()
    );
}

#[tokio::test]
async fn with_both_requirements_a_member_without_any_factor_is_sent_to_add_a_key_first() {
    let app = spawn_app().await;
    let (admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    let on = set_workspace(
        &admin_client,
        &[
            ("require_2fa", "on"),
            ("require_phishing_resistant", "on"),
            ("grace_days", "0"),
        ],
    )
    .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    assert_eq!(app.audit_events("enforcement_enabled").len(), 1);
    assert_eq!(app.audit_events("keys_required_enabled").len(), 1);

    let mut cy = app.user("cy@acme.test");
    let client = app.client();
    client.sign_in(&mut cy).await;
    for path in ["/home", "/account/2fa/setup"] {
        let page = client.get(path).await;
        assert_eq!(page.location(), ADD_KEY, "{path}");
    }
    // A key is a second factor: it releases them from both.
    add_key(&app, &cy.id, "Laptop");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_member_held_at_enrolment_may_add_a_key_instead_and_the_steps_before_may_not() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    set_workspace(&admin_client, &[("require_2fa", "on"), ("grace_days", "0")]).await;
    let mut dan = app.user("dan@acme.test");
    let client = app.client();
    client.sign_in(&mut dan).await;
    assert_eq!(client.get("/home").await.location(), "/account/2fa/setup");
    for path in [ADD_KEY, "/account/security-keys"] {
        assert_ne!(
            client.get(path).await.status,
            StatusCode::SEE_OTHER,
            "{path}"
        );
    }
    add_key(&app, &dan.id, "Phone");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);

    // Before the second step, and signed out, the page is not open.
    let (eve, _) = enrolled_user(&app, "eve@acme.test").await;
    let halfway = app.client();
    halfway.password_step(&eve).await;
    assert_eq!(halfway.get(ADD_KEY).await.location(), "/login/2fa");
    let anonymous = app.client();
    let page = anonymous.get(ADD_KEY).await;
    assert_eq!(
        page.location(),
        "/login?next=%2Faccount%2Fsecurity-keys%2Fnew"
    );
}

#[tokio::test]
async fn one_exemption_covers_both_requirements_and_staff_follow_their_workspace() {
    let app = spawn_app().await;
    let (admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    let (_kiosk, kiosk_client) = enrolled_user(&app, "kiosk@acme.test").await;
    let exempt = admin_client
        .post(
            "/admin/workspace",
            "/admin/workspace/exemptions",
            &[
                ("email", "kiosk@acme.test"),
                ("last_day", &policy_day(&app, 30)),
                ("reason", "Shared kiosk"),
            ],
        )
        .await;
    assert_eq!(exempt.status, StatusCode::SEE_OTHER, "{}", exempt.body);
    let staff_user = app.staff_in("acme", "helper@acme.test");
    let (_staff, staff_client) = enrol_as(&app, staff_user).await;
    let outside_user = app.staff_in("hq", "helper@hq.test");
    let (_outside, outside_client) = enrol_as(&app, outside_user).await;
    require_keys(&admin_client, "1").await;
    app.clock().advance(DAY);

    assert_eq!(kiosk_client.get("/home").await.status, StatusCode::OK);
    assert_eq!(
        staff_client.get("/home").await.location(),
        ADD_KEY,
        "staff are held like anyone in a workspace that requires keys"
    );
    assert_eq!(
        outside_client.get("/home").await.status,
        StatusCode::OK,
        "staff elsewhere only need 2FA"
    );
}

#[tokio::test]
async fn turning_keys_off_needs_confirmation_and_the_page_counts_members_without_a_key() {
    let app = spawn_app().await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let bob = app.user("bob@acme.test");
    add_key(&app, &bob.id, "Key one");
    add_key(&app, &bob.id, "Key two");
    app.user("cy@acme.test");
    let _ = ann;

    let page = client.get("/admin/workspace").await;
    // boss and bob have keys (bob two: counted once); ann (app) and cy (nothing) do not.
    assert!(page.body.contains("id=\"without-key\">2<"), "{}", page.body);
    assert!(
        page.body
            .contains("<strong>1</strong> of 4 members have not set it up")
    );

    require_keys(&client, "7").await;
    let refused = set_workspace(&client, &[("grace_days", "7")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let alert = refused.alert().unwrap();
    assert!(alert.contains("all 4 members"), "{alert}");
    assert!(alert.contains("the 2 who have no key"), "{alert}");
    assert!(!alert.contains("Require 2FA"), "{alert}");
    assert!(workspace(&app, "acme").require_keys_since.is_some());

    let moved = require_keys(&client, "10").await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER);
    let ws = workspace(&app, "acme");
    assert_eq!(
        ws.require_keys_deadline,
        Some(ws.require_keys_since.unwrap() + 10 * DAY)
    );
    assert_eq!(app.audit_events("keys_required_deadline_changed").len(), 1);

    let off = set_workspace(&client, &[("grace_days", "10"), ("confirm", "yes")]).await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);
    let ws = workspace(&app, "acme");
    assert_eq!(
        (ws.require_keys_since, ws.require_keys_deadline),
        (None, None)
    );
    assert_eq!(app.audit_events("keys_required_disabled").len(), 1);

    for bad in ["91", "x"] {
        let page = require_keys(&client, bad).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(page.alert().is_some(), "{bad}");
    }
}

#[tokio::test]
async fn members_without_a_key_are_mailed_which_requirement_and_by_when() {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let app = spawn_app_with(&[
        ("SMTP_URL", url.as_str()),
        ("MAIL_FROM", "Tessera Security <security@tessera.test>"),
    ])
    .await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    enrolled_user(&app, "ann@acme.test").await;
    let keyed = app.user("kim@acme.test");
    add_key(&app, &keyed.id, "Phone");
    app.user("cy@acme.test");

    let on = set_workspace(
        &client,
        &[
            ("require_2fa", "on"),
            ("require_phishing_resistant", "on"),
            ("grace_days", "7"),
        ],
    )
    .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    app.dispatch_mail().await;
    let deadline = workspace(&app, "acme").require_keys_deadline.unwrap();
    for to in ["ann@acme.test", "cy@acme.test"] {
        let mail = smtp
            .wait_for_where(to, |m| {
                m.header("Subject")
                    .is_some_and(|s| s.contains("now requires"))
            })
            .await;
        let subject = mail.header("Subject").unwrap();
        assert!(
            subject.contains("now requires a security key or passkey"),
            "{subject}"
        );
        let text = mail.text();
        assert!(
            text.contains(&tessera::words::date_time(deadline)),
            "{text}"
        );
    }
    // Counted in the outbox, which the dispatch above has emptied into the server.
    let mut required: Vec<String> = {
        use diesel::prelude::*;
        use tessera::db::schema::mail_outbox;
        mail_outbox::table
            .filter(mail_outbox::kind.eq("enforcement_on"))
            .select(mail_outbox::recipient)
            .load(&mut *app.conn())
            .unwrap()
    };
    required.sort();
    assert_eq!(
        required,
        ["ann@acme.test", "cy@acme.test"],
        "one mail each (the key's covers 2FA), none to those with a key"
    );
}

/// The members page's row of `email`.
fn row(body: &str, email: &str) -> String {
    crate::helpers::between(body, &format!("data-email=\"{email}\""), "</tr>").unwrap()
}

#[tokio::test]
async fn the_overview_the_export_and_the_support_search_say_app_key_or_both() {
    let app = spawn_app().await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    let (_ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let kim = app.user("kim@acme.test");
    add_key(&app, &kim.id, "Phone");
    add_key(&app, &kim.id, "Laptop");
    app.user("zed@acme.test");

    let page = client.get("/admin/users").await;
    assert!(row(&page.body, "boss@acme.test").contains("(app and key)"));
    assert!(row(&page.body, "ann@acme.test").contains("(app)"));
    let kim_row = row(&page.body, "kim@acme.test");
    assert!(kim_row.contains("Enrolled (key)"), "{kim_row}");
    assert!(
        kim_row.contains("reset-2fa"),
        "a key-only member can be reset: {kim_row}"
    );
    assert!(row(&page.body, "zed@acme.test").contains("Not enrolled"));

    let not_enrolled = client.get("/admin/users?status=not_enrolled").await;
    assert!(not_enrolled.body.contains("data-email=\"zed@acme.test\""));
    assert!(!not_enrolled.body.contains("data-email=\"kim@acme.test\""));
    assert!(
        not_enrolled.body.contains("id=\"member-count\">1 member"),
        "{}",
        not_enrolled.body
    );

    let csv = client.get("/admin/users.csv").await.body;
    let line = |email: &str| {
        csv.lines()
            .find(|l| l.starts_with(email))
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        csv.lines().next().unwrap().split(',').nth(10),
        Some("second_factors")
    );
    assert_eq!(line("kim@")[4], "enrolled");
    assert_eq!(line("kim@")[10], "key");
    assert_eq!(line("ann@")[10], "app");
    assert_eq!(line("boss@")[10], "app and key");
    assert_eq!(
        (line("zed@")[4].as_str(), line("zed@")[10].as_str()),
        ("not_enrolled", "")
    );
    let filtered = client
        .get("/admin/users.csv?status=not_enrolled")
        .await
        .body;
    assert_eq!(filtered.lines().count(), 2, "{filtered}");

    let staff_user = app.staff_in("hq", "helper@hq.test");
    let (_, staff) = enrol_as(&app, staff_user).await;
    let found = staff.get("/support/users?q=kim%40acme").await;
    let user_row =
        crate::helpers::between(&found.body, "data-email=\"kim@acme.test\"", "</tr>").unwrap();
    assert!(user_row.contains("Enrolled (key)"), "{user_row}");
    assert!(user_row.contains("reset-2fa"), "{user_row}");
    let found = staff.get("/support/users?q=boss%40acme").await;
    assert!(found.body.contains("(app and key)"), "{}", found.body);
}

#[tokio::test]
async fn a_reset_removes_the_keys_and_the_audit_and_mail_name_what_went() {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let app = spawn_app_with(&[
        ("SMTP_URL", url.as_str()),
        ("MAIL_FROM", "Tessera Security <security@tessera.test>"),
    ])
    .await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    add_key(&app, &ann.id, "Phone");
    add_key(&app, &ann.id, "YubiKey");

    let page = admin
        .post(
            "/admin/users",
            &format!("/admin/users/{}/reset-2fa", ann.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let notice = admin.get("/admin/users").await;
    assert!(
        notice
            .body
            .contains("(removed: authenticator app and 2 security keys)"),
        "{}",
        notice.body
    );
    assert_eq!(app.count_rows("security_keys", &ann.id), 0);
    assert_eq!(app.count_rows("totp_credentials", &ann.id), 0);
    let events = app.audit_events("two_factor_reset");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].detail,
        "by an admin of the workspace; removed: authenticator app and 2 security keys"
    );
    app.dispatch_mail().await;
    let mail = smtp
        .wait_for_where("ann@acme.test", |m| {
            m.header("Subject").is_some_and(|s| s.contains("was reset"))
        })
        .await;
    let text = mail.text();
    assert!(
        text.contains("authenticator app and 2 security keys"),
        "{text}"
    );

    // Support, on a member with a key only.
    let kim = app.user("kim@acme.test");
    add_key(&app, &kim.id, "Phone");
    let staff_user = app.staff_in("hq", "helper@hq.test");
    let (_, staff) = enrol_as(&app, staff_user).await;
    let page = staff
        .post(
            "/support/users",
            &format!("/support/users/{}/reset-2fa", kim.id),
            &[("reason", "Ticket 12: key lost")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(app.count_rows("security_keys", &kim.id), 0);
    let events = app.audit_events("two_factor_reset");
    assert_eq!(
        events[1].detail,
        "by support staff; reason: Ticket 12: key lost; removed: 1 security key"
    );
    app.dispatch_mail().await;
    let mail = smtp
        .wait_for_where("kim@acme.test", |m| {
            m.header("Subject").is_some_and(|s| s.contains("was reset"))
        })
        .await;
    assert!(
        mail.text().contains("Removed: your 1 security key"),
        "{}",
        mail.text()
    );

    // The command line.
    let lee = app.user("lee@acme.test");
    add_key(&app, &lee.id, "Phone");
    let printed = tessera_ok(
        &app,
        &[
            "reset-2fa",
            "--email",
            "lee@acme.test",
            "--reason",
            "Runbook",
        ],
        "",
    );
    assert!(printed.contains("(removed: 1 security key)"), "{printed}");
    assert_eq!(app.count_rows("security_keys", &lee.id), 0);
    let events = app.audit_events("two_factor_reset");
    assert!(
        events[2].detail.ends_with("; removed: 1 security key"),
        "{}",
        events[2].detail
    );
}

#[tokio::test]
async fn a_workspace_form_with_a_stale_version_changes_nothing() {
    let app = spawn_app().await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    let stale = client.get("/admin/workspace").await;
    let version = crate::helpers::between(&stale.body, "name=\"version\" value=\"", "\"").unwrap();
    require_keys(&client, "7").await;
    let page = client
        .post(
            "/admin/workspace",
            "/admin/workspace",
            &[
                ("grace_days", "7"),
                ("confirm", "yes"),
                ("version", &version),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert!(workspace(&app, "acme").require_keys_since.is_some());
}

#[tokio::test]
async fn an_invitee_past_the_key_deadline_is_sent_to_add_a_key_and_not_counted_as_signed_in() {
    use crate::invites::{NEW_PASSWORD, accept, app_mailing_to, invite, link_to};
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    add_key(&app, &admin.id, "YubiKey");
    require_keys(&client, "0").await;

    invite(&client, "ann@acme.test", "member").await;
    let path = link_to(&app, &smtp, "ann@acme.test").await;
    let ann = app.client();
    let done = accept(&ann, &path, "", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), ADD_KEY);
    assert_eq!(ann.get("/home").await.location(), ADD_KEY);
    let signed_in: Option<i64> = {
        use diesel::prelude::*;
        use tessera::db::schema::users;
        users::table
            .filter(users::email.eq("ann@acme.test"))
            .select(users::last_sign_in_at)
            .first(&mut *app.conn())
            .unwrap()
    };
    assert_eq!(signed_in, None, "held, so not a completed sign-in");
}
