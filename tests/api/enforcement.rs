//! "Require 2FA": turning it on and off, the grace period and its banner, the deadline that
//! holds members at enrolment (also in sessions already open), exemptions, and staff.

use reqwest::StatusCode;
use tessera::auth::policy::DAY;
use tessera::db::models::Workspace;
use tessera::domain::{Role, Slug};

use crate::helpers::{
    Client, Page, TestApp, enrol_as, enrolled_admin, enrolled_user, policy_day, spawn_app,
};

/// Posts the workspace form as `admin`.
async fn set_workspace(admin: &Client, require: bool, grace_days: &str, confirm: bool) -> Page {
    let mut fields = vec![("grace_days", grace_days)];
    if require {
        fields.push(("require_2fa", "on"));
    }
    if confirm {
        fields.push(("confirm", "yes"));
    }
    // The token comes from /home: an admin without 2FA may not load the admin page.
    admin.post("/home", "/admin/workspace", &fields).await
}

fn workspace(app: &TestApp, slug: &str) -> Workspace {
    Workspace::find_by_slug(&mut app.conn(), &Slug::parse(slug).unwrap())
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn turning_enforcement_on_needs_the_admin_to_have_2fa_themself() {
    let app = spawn_app().await;
    let mut admin = app.user_in("acme", "boss@acme.test", Role::Admin);
    let client = app.client();
    client.sign_in(&mut admin).await;

    let refused = set_workspace(&client, true, "7", false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.alert().unwrap().contains("your own account first"));
    assert_eq!(workspace(&app, "acme").require_2fa_since, None);
    assert!(app.audit_events("enforcement_enabled").is_empty());

    client.enrol(&mut admin).await;
    let before = app.clock().now();
    let done = set_workspace(&client, true, "7", false).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let ws = workspace(&app, "acme");
    let since = ws.require_2fa_since.unwrap();
    assert!(since >= before);
    assert_eq!(ws.require_2fa_deadline, Some(since + 7 * DAY));
    let events = app.audit_events("enforcement_enabled");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_label, "boss@acme.test");
    assert_eq!(events[0].workspace_id.as_deref(), Some(ws.id.as_str()));
    assert!(
        events[0].detail.contains("grace period 7 days"),
        "{}",
        events[0].detail
    );
}

#[tokio::test]
async fn turning_enforcement_off_needs_confirmation_and_says_how_many_it_affects() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    app.user("ann@acme.test");
    app.user("bob@acme.test");
    set_workspace(&client, true, "7", false).await;

    let refused = set_workspace(&client, false, "7", false).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let alert = refused.alert().unwrap();
    assert!(alert.contains("all 3 members"), "{alert}");
    assert!(alert.contains("the 2 who have not set it up"), "{alert}");
    assert!(workspace(&app, "acme").require_2fa_since.is_some());
    assert!(app.audit_events("enforcement_disabled").is_empty());

    let done = set_workspace(&client, false, "7", true).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let ws = workspace(&app, "acme");
    assert_eq!(
        (ws.require_2fa_since, ws.require_2fa_deadline),
        (None, None)
    );
    assert_eq!(app.audit_events("enforcement_disabled").len(), 1);
}

#[tokio::test]
async fn a_grace_period_outside_0_to_90_days_is_refused() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    for bad in ["91", "-1", "seven", "", "1e3"] {
        let page = set_workspace(&client, true, bad, false).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(page.alert().unwrap().contains("0 to 90"), "{bad}");
    }
    assert_eq!(workspace(&app, "acme").require_2fa_since, None);
}

#[tokio::test]
async fn changing_the_grace_period_moves_the_deadline_for_everyone_and_is_audited() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    set_workspace(&client, true, "7", false).await;
    let since = workspace(&app, "acme").require_2fa_since.unwrap();
    app.clock().advance(3 * DAY);

    let page = set_workspace(&client, true, "14", false).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let ws = workspace(&app, "acme");
    // Counted from when enforcement was turned on, not from now.
    assert_eq!(ws.require_2fa_since, Some(since));
    assert_eq!(ws.require_2fa_deadline, Some(since + 14 * DAY));
    let events = app.audit_events("enforcement_deadline_changed");
    assert_eq!(events.len(), 1);
    assert!(
        events[0].detail.contains("7 → 14 days"),
        "{}",
        events[0].detail
    );
}

#[tokio::test]
async fn members_in_the_grace_period_see_the_days_and_date_left_on_every_page() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_enrolled, enrolled_client) = enrolled_user(&app, "eve@acme.test").await;
    set_workspace(&admin_client, true, "7", false).await;

    let mut ann = app.user("ann@acme.test");
    let client = app.client();
    let signed_in = client.sign_in(&mut ann).await;
    assert_eq!(
        signed_in.location(),
        "/home",
        "not held during the grace period"
    );
    for path in ["/home", "/account/security"] {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("id=\"grace-banner\""), "{path}");
        assert!(
            page.body.contains("id=\"grace-days-left\">7<"),
            "{}",
            page.body
        );
        assert!(page.body.contains("href=\"/account/2fa/setup\""));
    }
    let deadline = workspace(&app, "acme").require_2fa_deadline.unwrap();
    let date = tessera::words::date_time(deadline);
    assert!(client.get("/home").await.body.contains(&date), "{date}");

    app.clock().advance(2 * DAY + 1);
    assert!(
        client
            .get("/home")
            .await
            .body
            .contains("id=\"grace-days-left\">5<")
    );
    // Members who have 2FA see no banner.
    assert!(
        !enrolled_client
            .get("/home")
            .await
            .body
            .contains("grace-banner")
    );
}

#[tokio::test]
async fn after_the_deadline_an_open_session_is_held_at_enrolment_on_its_next_request() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    set_workspace(&admin_client, true, "7", false).await;
    let mut ann = app.user("ann@acme.test");
    let client = app.client();
    client.sign_in(&mut ann).await;
    assert_eq!(client.get("/home").await.status, StatusCode::OK);

    app.clock().advance(7 * DAY);
    for path in ["/home", "/account/security", "/", "/login", "/login/2fa"] {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/account/2fa/setup", "{path}");
    }
    let json = client.get_json("/home").await;
    assert_eq!(json.status, StatusCode::FORBIDDEN);
    let body: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(body["error"], "enrolment_required");
    assert!(body["reason"].as_str().unwrap().contains("required"));
    // Nothing else runs for a held member, not even a form post.
    let csrf = client.get("/account/2fa/setup").await.csrf();
    let post = client
        .post_raw(
            "/account/2fa/recovery-codes",
            &[("csrf_token", &csrf), ("code", "123456")],
        )
        .await;
    assert_eq!(post.location(), "/account/2fa/setup");
    assert_eq!(client.get("/static/style.css").await.status, StatusCode::OK);

    let setup = client.get("/account/2fa/setup").await;
    assert_eq!(setup.status, StatusCode::OK);
    assert!(setup.body.contains("id=\"enrolment-required\""));
    client.enrol(&mut ann).await;
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    let kinds = app.audit_kinds(&ann.id);
    assert!(
        kinds.ends_with(&["two_factor_enabled".into(), "sign_in_succeeded".into()]),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn after_the_deadline_signing_in_leads_to_enrolment_and_sign_out_still_works() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    set_workspace(&admin_client, true, "0", false).await;
    let ann = app.user("ann@acme.test");
    let client = app.client();
    let page = client.password_step(&ann).await;
    assert_eq!(page.location(), "/account/2fa/setup");
    assert_eq!(
        app.audit_kinds(&ann.id).last().map(String::as_str),
        Some("password_verified"),
        "held at enrolment is not a completed sign-in"
    );
    let out = client.post("/account/2fa/setup", "/logout", &[]).await;
    assert_eq!(out.location(), "/login");
    assert_eq!(client.get("/home").await.location(), "/login?next=%2Fhome");
}

#[tokio::test]
async fn a_member_cannot_turn_2fa_off_while_the_workspace_requires_it() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (mut ann, client) = enrolled_user(&app, "ann@acme.test").await;
    set_workspace(&admin_client, true, "7", false).await;

    let security = client.get("/account/security").await;
    assert!(!security.body.contains("action=\"/account/2fa/disable\""));
    assert!(security.body.contains("requires two-factor sign-in"));
    let code = ann.fresh_code().await;
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", &ann.password), ("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.alert()
            .unwrap()
            .contains("requires two-factor sign-in")
    );
    assert_eq!(app.count_rows("totp_credentials", &ann.id), 1);
}

#[tokio::test]
async fn support_staff_are_held_at_enrolment_whatever_their_workspace_says() {
    let app = spawn_app().await;
    let staff = app.staff_in("support", "sam@support.test");
    let client = app.client();
    let page = client.password_step(&staff).await;
    assert_eq!(page.location(), "/account/2fa/setup", "no grace for staff");
    assert_eq!(client.get("/home").await.location(), "/account/2fa/setup");
    assert_eq!(
        client.get("/support/users").await.location(),
        "/account/2fa/setup"
    );

    // Enrolled staff cannot turn it off either.
    let (mut staff, client) = enrol_as(&app, app.staff_in("support", "sue@support.test")).await;
    let code = staff.fresh_code().await;
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", &staff.password), ("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.alert().unwrap().contains("Support staff"));
}

/// Exempts `email` as `admin` through the form.
async fn exempt(admin: &Client, email: &str, last_day: &str, reason: &str) -> Page {
    admin
        .post(
            "/admin/workspace",
            "/admin/workspace/exemptions",
            &[("email", email), ("last_day", last_day), ("reason", reason)],
        )
        .await
}

#[tokio::test]
async fn an_exemption_lets_a_member_in_without_2fa_until_it_lapses() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    set_workspace(&admin_client, true, "0", false).await;
    let kiosk = app.user("kiosk@acme.test");

    let page = exempt(
        &admin_client,
        "kiosk@acme.test",
        &policy_day(&app, 2),
        "front desk tablet",
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let listed = admin_client.get("/admin/workspace").await;
    assert!(listed.body.contains("kiosk@acme.test"));
    assert!(listed.body.contains("front desk tablet"));
    let members = admin_client.get("/admin/users?q=kiosk").await;
    assert!(members.body.contains("Exempt until"), "{}", members.body);
    let events = app.audit_events("exemption_granted");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject_label.as_deref(), Some("kiosk@acme.test"));
    assert!(events[0].detail.contains("front desk tablet"));

    let client = app.client();
    assert_eq!(client.password_step(&kiosk).await.location(), "/home");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    assert!(!client.get("/home").await.body.contains("grace-banner"));

    // The exemption covers the whole last day, then lapses by itself.
    app.clock().advance(2 * DAY);
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    app.clock().advance(DAY);
    assert_eq!(client.get("/home").await.location(), "/account/2fa/setup");
    let listed = admin_client.get("/admin/workspace").await.body;
    assert!(!listed.contains("front desk tablet"), "{listed}");
}

#[tokio::test]
async fn an_exemption_can_be_ended_early_and_bad_ones_are_refused() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let kiosk = app.user("kiosk@acme.test");
    app.staff_in("acme", "sam@acme.test");
    app.user_in("other", "olga@other.test", Role::Member);
    let tomorrow = policy_day(&app, 1);

    for (email, last_day, reason, expected) in [
        (
            "boss@acme.test",
            tomorrow.as_str(),
            "me",
            "cannot exempt yourself",
        ),
        (
            "sam@acme.test",
            tomorrow.as_str(),
            "staff",
            "cannot be exempted",
        ),
        (
            "olga@other.test",
            tomorrow.as_str(),
            "x",
            "No member of this workspace",
        ),
        ("kiosk@acme.test", tomorrow.as_str(), "  ", "Give a reason"),
        ("kiosk@acme.test", "tomorrow", "kiosk", "year-month-day"),
        (
            "kiosk@acme.test",
            &policy_day(&app, -1),
            "kiosk",
            "today or a later day",
        ),
        (
            "kiosk@acme.test",
            &policy_day(&app, 400),
            "kiosk",
            "at most a year",
        ),
    ] {
        let page = exempt(&admin_client, email, last_day, reason).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{email} {last_day}");
        assert!(
            page.alert().unwrap().contains(expected),
            "{email}: {:?}",
            page.alert()
        );
    }
    assert!(app.audit_events("exemption_granted").is_empty());

    exempt(&admin_client, "kiosk@acme.test", &tomorrow, "kiosk").await;
    let end = admin_client
        .post(
            "/admin/workspace",
            &format!("/admin/workspace/exemptions/{}/end", kiosk.id),
            &[],
        )
        .await;
    assert_eq!(end.status, StatusCode::SEE_OTHER);
    assert!(
        !admin_client
            .get("/admin/workspace")
            .await
            .body
            .contains("class=\"exemption\"")
    );
    assert_eq!(app.audit_events("exemption_ended").len(), 1);
}

#[tokio::test]
async fn a_form_loaded_before_another_admins_change_does_not_undo_it() {
    let app = spawn_app().await;
    let (_a, first) = enrolled_admin(&app, "acme", "ann@acme.test").await;
    let (_b, second) = enrolled_admin(&app, "acme", "bob@acme.test").await;
    let stale = first.get("/admin/workspace").await;
    let version = crate::helpers::between(&stale.body, "name=\"version\" value=\"", "\"").unwrap();

    assert_eq!(
        set_workspace(&second, true, "30", false).await.status,
        StatusCode::SEE_OTHER
    );
    let page = first
        .post_raw(
            "/admin/workspace",
            &[
                ("csrf_token", &stale.csrf()),
                ("version", &version),
                ("grace_days", "7"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.alert().unwrap().contains("Another admin changed"));
    let ws = workspace(&app, "acme");
    assert!(ws.require_2fa_since.is_some(), "still on");
    assert_eq!(ws.grace_days, 30);
}

#[tokio::test]
async fn the_grace_period_chosen_while_enforcement_is_off_is_kept_and_audited() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    assert_eq!(
        set_workspace(&client, false, "21", false).await.status,
        StatusCode::SEE_OTHER
    );
    let ws = workspace(&app, "acme");
    assert_eq!((ws.grace_days, ws.require_2fa_since), (21, None));
    assert_eq!(app.audit_events("grace_period_changed").len(), 1);
    // A script turning enforcement off needs to send only the confirmation.
    set_workspace(&client, true, "21", false).await;
    let off = client
        .post(
            "/admin/workspace",
            "/admin/workspace",
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    assert_eq!(workspace(&app, "acme").require_2fa_since, None);
}

#[tokio::test]
async fn a_lapsed_exemption_cannot_be_ended_again() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let kiosk = app.user("kiosk@acme.test");
    exempt(
        &client,
        "kiosk@acme.test",
        &policy_day(&app, 0),
        "front desk",
    )
    .await;
    app.clock().advance(2 * DAY);
    let end = client
        .post(
            "/admin/workspace",
            &format!("/admin/workspace/exemptions/{}/end", kiosk.id),
            &[],
        )
        .await;
    assert_eq!(end.status, StatusCode::CONFLICT);
    assert!(app.audit_events("exemption_ended").is_empty());
}
