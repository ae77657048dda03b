//! Members from the admin's page: roles, deactivation and reactivation (a deactivated
//! member's sessions end at once and sign-in is refused), the last-admin rule (also when
//! two admins act on each other at once), own-workspace only, CSRF on every new form, and
//! support creating a workspace whose first admin accepts the invitation.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::{invites, password_resets, users, workspaces};
use tessera::domain::Role;

use crate::helpers::{Client, Page, TestApp, enrol_as, enrolled_admin, enrolled_user, spawn_app};
use crate::invites::{NEW_PASSWORD, accept, app_mailing_to, invite, link_to};
use crate::smtp::SmtpServer;

async fn act(admin: &Client, target_id: &str, action: &str, fields: &[(&str, &str)]) -> Page {
    admin
        .post(
            "/home",
            &format!("/admin/users/{target_id}/{action}"),
            fields,
        )
        .await
}

async fn deactivate(admin: &Client, target_id: &str) -> Page {
    act(admin, target_id, "deactivate", &[("confirm", "yes")]).await
}

async fn set_role(admin: &Client, target_id: &str, role: &str) -> Page {
    act(admin, target_id, "role", &[("role", role)]).await
}

/// `(role, deactivated)` of the user with `id`.
fn standing(app: &TestApp, id: &str) -> (String, bool) {
    let (role, deactivated_at): (String, Option<i64>) = users::table
        .find(id)
        .select((users::role, users::deactivated_at))
        .get_result(&mut *app.conn())
        .unwrap();
    (role, deactivated_at.is_some())
}

fn active_admins(app: &TestApp, workspace_slug: &str) -> i64 {
    users::table
        .inner_join(workspaces::table)
        .filter(workspaces::slug.eq(workspace_slug))
        .filter(users::role.eq("admin"))
        .filter(users::deactivated_at.is_null())
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

#[tokio::test]
async fn a_deactivated_members_open_session_ends_at_once_and_only_the_right_password_hears_why() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (mut ann, ann_client) = enrolled_user(&app, "ann@acme.test").await;
    diesel::insert_into(password_resets::table)
        .values((
            password_resets::user_id.eq(&ann.id),
            password_resets::token_hash.eq("h"),
            password_resets::created_at.eq(0),
            password_resets::expires_at.eq(i64::MAX),
        ))
        .execute(&mut *app.conn())
        .unwrap();
    assert_eq!(ann_client.get("/home").await.status, StatusCode::OK);

    let done = deactivate(&admin, &ann.id).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(standing(&app, &ann.id), ("member".into(), true));
    assert_eq!(app.count_rows("password_resets", &ann.id), 0);
    assert_eq!(app.count_rows("sessions", &ann.id), 0);

    let ended = ann_client.get("/home").await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert!(
        ended.location().starts_with("/login"),
        "{}",
        ended.location()
    );
    assert_eq!(
        ann_client.get("/account/security").await.status,
        StatusCode::SEE_OTHER
    );

    let other = app.client();
    let wrong = other
        .post(
            "/login",
            "/login",
            &[
                ("email", &ann.email),
                ("password", "not the password at all"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.alert().unwrap().contains("deactivated"));
    let right = other.password_step(&ann).await;
    assert_eq!(right.status, StatusCode::FORBIDDEN, "{}", right.body);
    let alert = right.alert().unwrap();
    assert!(
        alert.contains("deactivated") && alert.contains("Ask an admin"),
        "{alert}"
    );
    assert_eq!(
        other.get("/login/2fa").await.location(),
        "/login",
        "no step up"
    );
    assert_eq!(other.get("/home").await.status, StatusCode::SEE_OTHER);

    let event = app.audit_events("user_deactivated");
    assert_eq!(event.len(), 1);
    assert_eq!(event[0].actor_label, "boss@acme.test");
    assert_eq!(event[0].subject_label.as_deref(), Some("ann@acme.test"));
    app.dispatch_mail().await;
    let mail = smtp
        .wait_for_where("ann@acme.test", |m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("deactivated"))
        })
        .await;
    assert!(mail.text().contains("by boss@acme.test"), "{}", mail.text());

    // Reactivated: the password and the same authenticator work again.
    let back = act(&admin, &ann.id, "reactivate", &[]).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let again = app.client();
    let step = again.password_step(&ann).await;
    assert_eq!(step.location(), "/login/2fa", "still asked for the code");
    let code = ann.fresh_code().await;
    let page = again
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(again.get("/home").await.status, StatusCode::OK);
    assert_eq!(app.audit_events("user_reactivated").len(), 1);
    app.dispatch_mail().await;
    smtp.wait_for_where("ann@acme.test", |m| {
        m.header("Subject")
            .is_some_and(|s| s.contains("reactivated"))
    })
    .await;
    app.assert_counts_agree();
}

#[tokio::test]
async fn deactivating_needs_confirmation_and_an_admin_cannot_deactivate_themselves() {
    let app = spawn_app().await;
    let (boss, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let ann = app.user("ann@acme.test");
    let unconfirmed = act(&admin, &ann.id, "deactivate", &[]).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    assert!(unconfirmed.alert().unwrap().contains("Yes, deactivate"));
    let own = deactivate(&admin, &boss.id).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert!(own.alert().unwrap().contains("another admin"));
    assert!(!standing(&app, &ann.id).1);
    assert!(!standing(&app, &boss.id).1);
    let not_deactivated = act(&admin, &ann.id, "reactivate", &[]).await;
    assert_eq!(not_deactivated.status, StatusCode::CONFLICT);
    assert!(app.audit_events("user_deactivated").is_empty());
    assert!(app.audit_events("user_reactivated").is_empty());
}

#[tokio::test]
async fn a_role_change_is_audited_mailed_and_takes_effect_on_the_next_request() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (ann, ann_client) = enrolled_user(&app, "ann@acme.test").await;
    assert_eq!(
        ann_client.get("/admin/users").await.status,
        StatusCode::FORBIDDEN
    );

    let up = set_role(&admin, &ann.id, "admin").await;
    assert_eq!(up.status, StatusCode::SEE_OTHER, "{}", up.body);
    assert_eq!(ann_client.get("/admin/users").await.status, StatusCode::OK);
    let events = app.audit_events("role_changed");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_label, "boss@acme.test");
    assert_eq!(events[0].detail, "member → admin");
    app.dispatch_mail().await;
    smtp.wait_for_where("ann@acme.test", |m| {
        m.header("Subject")
            .is_some_and(|s| s.contains("Your role in acme is now admin"))
    })
    .await;

    let down = set_role(&admin, &ann.id, "member").await;
    assert_eq!(down.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ann_client.get("/admin/users").await.status,
        StatusCode::FORBIDDEN
    );
    let same = set_role(&admin, &ann.id, "member").await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.audit_events("role_changed").len(),
        2,
        "no change, no event"
    );
    let bad = set_role(&admin, &ann.id, "owner").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.alert().is_some());
    assert_eq!(standing(&app, &ann.id).0, "member");
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_and_a_deactivated_admin_does_not_count() {
    let app = spawn_app().await;
    let (boss, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let refused = set_role(&admin, &boss.id, "member").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.alert().unwrap().contains("only active admin"));

    let second = app.user_in("acme", "deputy@acme.test", Role::Admin);
    assert_eq!(
        deactivate(&admin, &second.id).await.status,
        StatusCode::SEE_OTHER
    );
    let still = set_role(&admin, &boss.id, "member").await;
    assert_eq!(still.status, StatusCode::CONFLICT);
    assert_eq!(standing(&app, &boss.id).0, "admin");
    assert!(app.audit_events("role_changed").is_empty());

    // With another active admin, stepping down is allowed (and leads away from the
    // admin pages).
    act(&admin, &second.id, "reactivate", &[]).await;
    let down = set_role(&admin, &boss.id, "member").await;
    assert_eq!(down.status, StatusCode::SEE_OTHER, "{}", down.body);
    assert_eq!(down.location(), "/home");
    assert_eq!(active_admins(&app, "acme"), 1);
}

#[tokio::test]
async fn two_admins_demoting_or_deactivating_each_other_at_once_leave_one_admin() {
    let app = spawn_app().await;
    for round in 0..3 {
        let ws = format!("ws{round}");
        let (a, a_client) = enrolled_admin(&app, &ws, &format!("a@{ws}.test")).await;
        let (b, b_client) = enrolled_admin(&app, &ws, &format!("b@{ws}.test")).await;
        let (csrf_a, csrf_b) = (
            a_client.get("/home").await.csrf(),
            b_client.get("/home").await.csrf(),
        );
        let (fields_a, fields_b, action) = if round % 2 == 0 {
            (
                [("csrf_token", csrf_a.as_str()), ("role", "member")],
                [("csrf_token", csrf_b.as_str()), ("role", "member")],
                "role",
            )
        } else {
            (
                [("csrf_token", csrf_a.as_str()), ("confirm", "yes")],
                [("csrf_token", csrf_b.as_str()), ("confirm", "yes")],
                "deactivate",
            )
        };
        let on_b = format!("/admin/users/{}/{action}", b.id);
        let on_a = format!("/admin/users/{}/{action}", a.id);
        let (first, second) = tokio::join!(
            a_client.post_raw(&on_b, &fields_a),
            b_client.post_raw(&on_a, &fields_b)
        );
        assert_eq!(
            active_admins(&app, &ws),
            1,
            "{action}: {} / {}",
            first.status,
            second.status
        );
        let kind = if action == "role" {
            "role_changed"
        } else {
            "user_deactivated"
        };
        assert_eq!(app.audit_events(kind).len(), round / 2 + 1, "{action}");
    }
}

#[tokio::test]
async fn a_role_that_is_not_member_or_admin_is_refused_in_words_and_nothing_changes() {
    let app = spawn_app().await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let ann = app.user("ann@acme.test");
    for role in ["owner", "", "Admin ", "staff"] {
        let page = set_role(&admin, &ann.id, role).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{role:?}: {}",
            page.body
        );
        assert!(page.alert().is_some(), "{role:?}");
    }
    let missing = act(&admin, &ann.id, "role", &[]).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(standing(&app, &ann.id), ("member".into(), false));
    assert!(app.audit_events("role_changed").is_empty());
}

#[tokio::test]
async fn another_workspaces_member_ids_are_not_found_and_nothing_changes() {
    let app = spawn_app().await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let olga = app.user_in("other", "olga@other.test", Role::Admin);
    app.user_in("other", "oscar@other.test", Role::Admin);
    for (action, fields) in [
        ("role", &[("role", "member")][..]),
        ("deactivate", &[("confirm", "yes")][..]),
        ("reactivate", &[][..]),
    ] {
        let page = act(&admin, &olga.id, action, fields).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}");
    }
    let unknown = act(&admin, "no-such-id", "role", &[("role", "admin")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(standing(&app, &olga.id), ("admin".into(), false));
    assert!(app.audit_events("role_changed").is_empty());
    assert!(app.audit_events("user_deactivated").is_empty());
}

#[tokio::test]
async fn support_staff_accounts_are_not_changed_from_a_workspace_admin_page() {
    let app = spawn_app().await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let staff = app.staff_in("acme", "helper@acme.test");
    let page = deactivate(&admin, &staff.id).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = set_role(&admin, &staff.id, "admin").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(standing(&app, &staff.id), ("member".into(), false));
}

#[tokio::test]
async fn a_member_gets_403_on_the_new_admin_routes_and_every_new_form_needs_its_csrf_token() {
    let app = spawn_app().await;
    let (_, member) = enrolled_user(&app, "ann@acme.test").await;
    let (target, _) = enrolled_user(&app, "bob@acme.test").await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let staff_user = app.staff_in("hq", "helper@hq.test");
    let (_, staff) = enrol_as(&app, staff_user).await;
    let sent = invite(&admin, "new@acme.test", "member").await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER);
    let invite_id: String = invites::table
        .select(invites::id)
        .get_result(&mut *app.conn())
        .unwrap();
    let admin_posts = [
        "/admin/invites".to_owned(),
        format!("/admin/invites/{invite_id}/resend"),
        format!("/admin/invites/{invite_id}/revoke"),
        format!("/admin/users/{}/role", target.id),
        format!("/admin/users/{}/deactivate", target.id),
        format!("/admin/users/{}/reactivate", target.id),
    ];
    let fields = |csrf: &str| {
        vec![
            ("csrf_token", csrf.to_owned()),
            ("email", "x@acme.test".to_owned()),
            ("role", "admin".to_owned()),
            ("confirm", "yes".to_owned()),
            ("name", "X".to_owned()),
            ("slug", "xx".to_owned()),
            ("admin_email", "x@xx.test".to_owned()),
        ]
    };
    let csrf = member.get("/home").await.csrf();
    let all = fields(&csrf);
    let with_token: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for path in admin_posts
        .iter()
        .map(String::as_str)
        .chain(["/support/workspaces"])
    {
        let page = member.post_raw(path, &with_token).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.alert().is_some(), "{path}");
    }
    let without_token = &with_token[1..];
    for path in &admin_posts {
        let page = admin.post_raw(path, without_token).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        let forged = admin
            .post_raw(
                path,
                &[[("csrf_token", "forged")], [without_token[0]]].concat(),
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{path}");
    }
    let page = staff.post_raw("/support/workspaces", without_token).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let anonymous = app.client();
    let page = anonymous
        .post_raw(
            "/invite/some-token",
            &[("name", "X"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    // Nothing happened.
    assert_eq!(standing(&app, &target.id), ("member".into(), false));
    let invites_left: i64 = invites::table.count().get_result(&mut *app.conn()).unwrap();
    assert_eq!(invites_left, 1);
    let slugs: i64 = workspaces::table
        .filter(workspaces::slug.eq("xx"))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(slugs, 0);
    assert!(app.audit_events("invite_resent").is_empty());
}

#[tokio::test]
async fn support_creates_a_workspace_and_its_first_admin_accepts_the_invitation() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let staff_user = app.staff_in("hq", "helper@hq.test");
    let (_, staff) = enrol_as(&app, staff_user).await;
    app.user("ann@acme.test");

    let landing = staff.get("/support/users").await;
    assert!(landing.body.contains("action=\"/support/workspaces\""));
    let create = |name: &'static str, slug: &'static str, email: &'static str| {
        let staff = &staff;
        async move {
            staff
                .post(
                    "/support/users",
                    "/support/workspaces",
                    &[("name", name), ("slug", slug), ("admin_email", email)],
                )
                .await
        }
    };
    for (name, slug, email, status) in [
        ("", "globex", "hank@globex.test", StatusCode::BAD_REQUEST),
        (
            "Globex",
            "Not a slug!",
            "hank@globex.test",
            StatusCode::BAD_REQUEST,
        ),
        ("Globex", "globex", "not-an-email", StatusCode::BAD_REQUEST),
        ("Hub", "hq", "hank@globex.test", StatusCode::CONFLICT),
        ("Globex", "globex", "ann@acme.test", StatusCode::CONFLICT),
    ] {
        let page = create(name, slug, email).await;
        assert_eq!(page.status, status, "{name} {slug} {email}: {}", page.body);
        assert!(page.alert().is_some(), "{slug}");
        assert!(
            page.body.contains(&format!("value=\"{email}\"")),
            "kept: {email}"
        );
    }
    let globex: i64 = workspaces::table
        .filter(workspaces::slug.eq("globex"))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(globex, 0, "nothing was created");

    let done = create("Globex", "globex", "hank@globex.test").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let created = app.audit_events("workspace_created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].actor_kind, "staff");
    assert_eq!(created[0].actor_label, "helper@hq.test");
    let workspace_id = app.workspace("globex");
    assert_eq!(
        created[0].workspace_id.as_deref(),
        Some(workspace_id.as_str())
    );
    let sent = app.audit_events("invite_sent");
    assert_eq!(sent[0].actor_kind, "staff");
    assert_eq!(sent[0].workspace_id.as_deref(), Some(workspace_id.as_str()));

    let path = link_to(&app, &smtp, "hank@globex.test").await;
    let mail = smtp.wait_for("hank@globex.test").await;
    assert!(
        mail.text()
            .contains("helper@hq.test (Tessera support) invited you to join the workspace Globex"),
        "{}",
        mail.text()
    );
    let hank = app.client();
    let accepted = accept(&hank, &path, "Hank", NEW_PASSWORD).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    let (role, ws): (String, String) = users::table
        .filter(users::email.eq("hank@globex.test"))
        .select((users::role, users::workspace_id))
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(
        (role.as_str(), ws.as_str()),
        ("admin", workspace_id.as_str())
    );
    // The admin pages open once the new admin uses 2FA.
    assert_eq!(hank.get("/admin/users").await.status, StatusCode::FORBIDDEN);
    app.assert_counts_agree();
}

#[tokio::test]
async fn deactivated_members_are_shown_as_such_and_not_asked_to_enrol() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let ann = app.user("ann@acme.test");
    app.user("bob@acme.test");
    deactivate(&admin, &ann.id).await;

    let page = admin.get("/admin/users").await;
    let row = crate::helpers::between(&page.body, "data-email=\"ann@acme.test\"", "</tr>").unwrap();
    assert!(row.contains("Deactivated on"), "{row}");
    assert!(row.contains("Reactivate"), "{row}");
    let csv = admin.get("/admin/users.csv").await.body;
    // The tenth column.
    let deactivated_at = |email: &str| {
        let line = csv.lines().find(|l| l.starts_with(email)).unwrap();
        line.split(',').nth(9).unwrap().to_owned()
    };
    assert!(
        !deactivated_at("ann@").is_empty(),
        "deactivated_at is filled"
    );
    assert_eq!(deactivated_at("bob@"), "");

    let staff_user = app.staff_in("hq", "helper@hq.test");
    let (_, staff) = enrol_as(&app, staff_user).await;
    let found = staff.get("/support/users?q=ann%40acme").await;
    assert!(found.body.contains("Deactivated on"), "{}", found.body);

    let on = admin
        .post(
            "/home",
            "/admin/workspace",
            &[("require_2fa", "on"), ("grace_days", "7")],
        )
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    app.dispatch_mail().await;
    smtp.wait_for("bob@acme.test").await;
    let to_ann = smtp
        .received()
        .await
        .iter()
        .filter(|m| m.to.iter().any(|t| t == "ann@acme.test"))
        .filter(|m| m.header("Subject").is_some_and(|s| s.contains("requires")))
        .count();
    assert_eq!(to_ann, 0);
    app.assert_counts_agree();
}
