//! Support staff: search across workspaces, reset with a reason the workspace's admins can
//! read — and the same runbook from the command line.

use reqwest::StatusCode;
use tessera::domain::Role;

use crate::helpers::{enrol_as, enrolled_admin, spawn_app, tessera_command, tessera_ok};

#[tokio::test]
async fn staff_find_users_of_any_workspace_and_reset_them_with_a_reason_their_admins_read() {
    let app = spawn_app().await;
    let (_staff, staff) = enrol_as(&app, app.staff_in("support", "sam@support.test")).await;
    let (mut locked_out, locked_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_other_admin, other_admin) = enrolled_admin(&app, "acme", "deputy@acme.test").await;

    let short = staff.get("/support/users?q=bo").await;
    assert!(short.body.contains("at least 3 characters"));
    let found = staff.get("/support/users?q=boss%40acme").await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(found.body.contains("boss@acme.test"));
    assert!(found.body.contains("acme (acme)"), "the workspace is shown");
    assert!(found.body.contains("Enrolled since"));

    let path = format!("/support/users/{}/reset-2fa", locked_out.id);
    let page = staff
        .post(
            "/support/users",
            &path,
            &[("reason", "lost phone, ticket #4711")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/support/users?q=boss%40acme.test");
    assert_eq!(
        locked_client.get("/home").await.location(),
        "/login?next=%2Fhome"
    );
    assert_eq!(app.count_rows("totp_credentials", &locked_out.id), 0);
    locked_out.secret = None;
    assert_eq!(
        app.client().sign_in(&mut locked_out).await.location(),
        "/home"
    );

    let events = app.audit_events("two_factor_reset");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_kind, "staff");
    assert_eq!(
        events[0].workspace_id.as_deref(),
        Some(app.workspace("acme").as_str())
    );
    let log = other_admin.get("/admin/audit?kind=two_factor_reset").await;
    assert!(log.body.contains("sam@support.test"));
    assert!(log.body.contains("support staff"));
    assert!(log.body.contains("lost phone, ticket #4711"));
    app.assert_counts_agree();
}

#[tokio::test]
async fn a_support_reset_needs_a_reason_and_someone_else() {
    let app = spawn_app().await;
    let (staff_user, staff) = enrol_as(&app, app.staff_in("support", "sam@support.test")).await;
    let (member, _) = enrol_as(&app, app.user_in("acme", "ann@acme.test", Role::Member)).await;
    for reason in ["", "   ", "two\nlines"] {
        let page = staff
            .post(
                "/support/users",
                &format!("/support/users/{}/reset-2fa", member.id),
                &[("reason", reason)],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{reason:?}");
        assert!(page.alert().is_some());
    }
    let missing_field = staff
        .post(
            "/support/users",
            &format!("/support/users/{}/reset-2fa", member.id),
            &[],
        )
        .await;
    assert_eq!(missing_field.status, StatusCode::BAD_REQUEST);
    let own = staff
        .post(
            "/support/users",
            &format!("/support/users/{}/reset-2fa", staff_user.id),
            &[("reason", "me")],
        )
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let unknown = staff
        .post(
            "/support/users",
            "/support/users/nobody/reset-2fa",
            &[("reason", "x")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(app.count_rows("totp_credentials", &member.id), 1);
    assert!(app.audit_events("two_factor_reset").is_empty());
}

#[tokio::test]
async fn the_command_line_reset_is_the_locked_out_admin_runbook_and_is_audited() {
    let app = spawn_app().await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;

    let no_reason = tessera_command(
        &app,
        &["reset-2fa", "--email", "boss@acme.test", "--reason", " "],
        "",
    );
    assert!(!no_reason.status.success());
    assert!(String::from_utf8_lossy(&no_reason.stderr).contains("--reason"));
    let unknown = tessera_command(
        &app,
        &["reset-2fa", "--email", "nobody@acme.test", "--reason", "x"],
        "",
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user with the email"));
    assert_eq!(app.count_rows("totp_credentials", &admin.id), 1);

    let printed = tessera_ok(
        &app,
        &[
            "reset-2fa",
            "--email",
            "Boss@Acme.test",
            "--reason",
            "locked out, ticket 12",
        ],
        "",
    );
    assert!(
        printed.contains("Reset two-factor sign-in of boss@acme.test"),
        "{printed}"
    );
    assert_eq!(app.count_rows("totp_credentials", &admin.id), 0);
    assert_eq!(client.get("/home").await.location(), "/login?next=%2Fhome");
    let events = app.audit_events("two_factor_reset");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_label, "cli");
    assert_eq!(events[0].actor_kind, "cli");
    assert!(events[0].detail.contains("locked out, ticket 12"));

    let again = tessera_command(
        &app,
        &["reset-2fa", "--email", "boss@acme.test", "--reason", "x"],
        "",
    );
    assert!(!again.status.success(), "nothing left to reset");
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to reset"));
}
