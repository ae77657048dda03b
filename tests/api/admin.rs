//! The workspace admin's pages: members, CSV, resets, the audit log — and that they are
//! for admins of their own workspace only.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::domain::Role;

use crate::helpers::{
    Client, PASSWORD, TestApp, enrolled_admin, enrolled_user, policy_day, spawn_app,
};

/// Resets `target_id` as `admin`, confirmed.
async fn reset(admin: &Client, target_id: &str) -> crate::helpers::Page {
    admin
        .post(
            "/home",
            &format!("/admin/users/{target_id}/reset-2fa"),
            &[("confirm", "yes")],
        )
        .await
}

#[tokio::test]
async fn the_members_page_shows_2fa_status_and_filters_by_text_and_enrolment() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    enrolled_user(&app, "ann@acme.test").await;
    app.user("bob@acme.test");
    app.user_in("other", "olga@other.test", Role::Member);
    diesel::sql_query("UPDATE users SET name = 'Bob O''Brien' WHERE email = 'bob@acme.test'")
        .execute(&mut *app.conn())
        .unwrap();

    let page = client.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("id=\"member-count\">3 members"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("olga@other.test"));
    let ann = row(&page.body, "ann@acme.test");
    assert!(ann.contains("Enrolled since"), "{ann}");
    assert!(
        ann.contains("<td>10</td>"),
        "ten recovery codes left: {ann}"
    );
    assert!(row(&page.body, "bob@acme.test").contains("Not enrolled"));

    let by_name = client.get("/admin/users?q=BRIEN").await;
    assert!(by_name.body.contains("bob@acme.test"));
    assert!(!by_name.body.contains("ann@acme.test"));
    let wildcard = client.get("/admin/users?q=%25").await;
    assert!(
        wildcard.body.contains("No members match"),
        "a % is a literal %"
    );

    let not_enrolled = client.get("/admin/users?status=not_enrolled").await;
    assert!(not_enrolled.body.contains("bob@acme.test"));
    assert!(!not_enrolled.body.contains("ann@acme.test"));
    assert!(!not_enrolled.body.contains("data-email=\"boss@acme.test\""));
}

/// The table row of `email` on a members page.
fn row(body: &str, email: &str) -> String {
    let start = body
        .find(&format!("data-email=\"{email}\""))
        .unwrap_or_else(|| panic!("{email} is not listed"));
    let end = body[start..].find("</tr>").unwrap() + start;
    body[start..end].to_owned()
}

/// Adds `n` members to `workspace_id` in one statement (hashing is not the point here).
fn many_members(app: &TestApp, workspace_id: &str, n: usize) {
    let hash = app.hasher.hash_blocking(PASSWORD).unwrap();
    let values: Vec<String> = (0..n)
        .map(|i| {
            format!("('m{i:04}', '{workspace_id}', 'member{i:04}@big.test', 'member', '{hash}', 0)")
        })
        .collect();
    diesel::sql_query(format!(
        "INSERT INTO users (id, workspace_id, email, role, password_hash, created_at) VALUES {}",
        values.join(",")
    ))
    .execute(&mut *app.conn())
    .unwrap();
}

#[tokio::test]
async fn a_thousand_members_are_paged_and_exported_whole() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "big", "admin@big.test").await;
    many_members(&app, &app.workspace("big"), 1000);

    let first = client.get("/admin/users").await;
    assert!(
        first.body.contains("1001 members"),
        "{}",
        &first.body[..2000.min(first.body.len())]
    );
    assert_eq!(first.body.matches("class=\"member\"").count(), 50);
    assert!(first.body.contains("admin@big.test"), "sorted by email");
    assert!(first.link("prev").is_none() && first.link("first").is_none());

    // Following "Next page" visits every member once, in order, fifty at a time.
    let (mut page, mut seen, mut pages) = (first, Vec::new(), 1);
    loop {
        seen.extend(
            page.body
                .split("data-email=\"")
                .skip(1)
                .map(|rest| rest[..rest.find('"').unwrap()].to_owned()),
        );
        let Some(next) = page.link("next") else { break };
        assert!(page.link("last").is_some());
        page = client.get(&next).await;
        assert_eq!(page.status, StatusCode::OK);
        pages += 1;
        assert!(pages <= 21, "{next} {:?}", &seen[seen.len() - 3..]);
    }
    assert_eq!(pages, 21);
    assert_eq!(page.body.matches("class=\"member\"").count(), 1);
    assert!(page.body.contains("member0999@big.test"));
    assert!(page.link("prev").is_some() && page.link("last").is_none());
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 1001, "each member once");
    assert_eq!(seen, sorted, "in order of email");

    // "Last page" is the last fifty; "Previous page" from the second page is the first.
    let last = client.get("/admin/users?last=yes").await;
    assert_eq!(last.body.matches("class=\"member\"").count(), 50);
    assert!(last.body.contains("member0999@big.test"));
    assert!(last.body.contains("member0950@big.test"));
    assert!(last.link("next").is_none());
    let second = client.get("/admin/users?after=member0048%40big.test").await;
    assert!(second.body.contains("member0049@big.test"));
    let back = client.get(&second.link("prev").unwrap()).await;
    assert!(back.body.contains("admin@big.test") && back.link("prev").is_none());
    // A page before the first few members is the first page, whole; past the end, the last.
    let early = client
        .get("/admin/users?before=member0003%40big.test")
        .await;
    assert_eq!(early.body.matches("class=\"member\"").count(), 50);
    assert!(early.link("prev").is_none());
    let beyond = client.get("/admin/users?after=zzz").await;
    assert_eq!(beyond.status, StatusCode::OK);
    assert!(beyond.body.contains("member0999@big.test"));
    // The filters stay on every link.
    let filtered = client
        .get("/admin/users?q=member&status=not_enrolled")
        .await;
    assert!(filtered.body.contains("1000 members match"));
    let next = filtered.link("next").unwrap();
    assert!(
        next.contains("q=member") && next.contains("status=not_enrolled"),
        "{next}"
    );

    let csv = client.get("/admin/users.csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("members-big.csv")
    );
    assert_eq!(csv.body.lines().count(), 1002, "a header and every member");
    let filtered = client.get("/admin/users.csv?q=member0999").await;
    assert_eq!(filtered.body.lines().count(), 2);
    app.assert_counts_agree();
}

/// Adds `n` members to `workspace`, ids `{prefix}NNNN`, emails `member{NNNN}{suffix}`, in
/// one statement: every fifth is named "Group A", every third has an authenticator.
fn members_in_bulk(app: &TestApp, workspace: &str, n: usize, prefix: &str, suffix: &str) {
    let workspace_id = app.workspace(workspace);
    let users: Vec<String> = (0..n)
        .map(|i| {
            let name = if i % 5 == 0 { "Group A" } else { "" };
            format!(
                "('{prefix}{i:04}', '{workspace_id}', 'member{i:04}{suffix}', '{name}', 'member', 'not a hash', 0)"
            )
        })
        .collect();
    diesel::sql_query(format!(
        "INSERT INTO users (id, workspace_id, email, name, role, password_hash, created_at) VALUES {}",
        users.join(",")
    ))
    .execute(&mut *app.conn())
    .unwrap();
    let totp: Vec<String> = (0..n)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("('{prefix}{i:04}', 'x', 'k', 0, 1700000000)"))
        .collect();
    diesel::sql_query(format!(
        "INSERT INTO totp_credentials (user_id, secret_ciphertext, key_id, last_step, enabled_at) VALUES {}",
        totp.join(",")
    ))
    .execute(&mut *app.conn())
    .unwrap();
}

/// The emails of a CSV export, checking on the way that it is the header and then whole
/// CRLF-ended lines.
fn exported_emails(csv: &str) -> Vec<String> {
    assert!(csv.ends_with("\r\n"), "the last line is whole");
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert!(lines[0].starts_with("email,name,role,"), "{}", lines[0]);
    lines[1..]
        .iter()
        .map(|line| {
            assert!(!line.contains('\n'), "{line:?}");
            line.split(',').next().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn an_export_of_several_pages_has_every_member_once_in_order_with_the_filters() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "big", "admin@big.test").await;
    members_in_bulk(&app, "big", 2500, "m", "@big.test");
    // Another workspace's members sort between these ones: a page that slipped out of the
    // workspace would show them.
    members_in_bulk(&app, "other", 250, "o", "x@big.test");
    let member = |i: usize| format!("member{i:04}@big.test");

    let csv = client.get("/admin/users.csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["cache-control"], "no-store");
    let mut expected = vec!["admin@big.test".to_owned()];
    expected.extend((0..2500).map(member));
    assert_eq!(
        exported_emails(&csv.body),
        expected,
        "every member once, by email"
    );
    assert!(
        csv.body.contains(
            "\r\nmember0003@big.test,,member,no,enrolled,2023-11-14T22:13:20Z,,0,,,app\r\n"
        )
    );
    assert!(
        csv.body
            .contains("\r\nmember0005@big.test,Group A,member,no,not_enrolled,,,,,,\r\n")
    );

    let not_enrolled = client.get("/admin/users.csv?status=not_enrolled").await;
    let expected: Vec<String> = (0..2500).filter(|i| i % 3 != 0).map(member).collect();
    assert_eq!(expected.len(), 1666, "more than a page");
    assert_eq!(exported_emails(&not_enrolled.body), expected);

    // Exactly one page's worth, so the export ends on an empty page.
    let by_email = client.get("/admin/users.csv?q=MEMBER1").await;
    let expected: Vec<String> = (1000..2000).map(member).collect();
    assert_eq!(exported_emails(&by_email.body), expected);

    let by_name = client
        .get("/admin/users.csv?q=group+a&status=not_enrolled")
        .await;
    let expected: Vec<String> = (0..2500)
        .filter(|i| i % 5 == 0 && i % 3 != 0)
        .map(member)
        .collect();
    assert_eq!(exported_emails(&by_name.body), expected);

    let nobody = client.get("/admin/users.csv?q=nobody").await;
    assert_eq!(
        nobody.body,
        "email,name,role,support_staff,two_factor,enrolled_since,exempt_until,recovery_codes_left,last_sign_in,deactivated_at,second_factors\r\n"
    );
}

#[tokio::test]
async fn the_csv_export_states_each_members_status_and_defuses_formulas() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    app.user("bob@acme.test");
    diesel::sql_query(
        "UPDATE users SET name = '=HYPERLINK(\"http://evil\")' WHERE email = 'bob@acme.test'",
    )
    .execute(&mut *app.conn())
    .unwrap();
    let csv = client.get("/admin/users.csv").await.body;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "email,name,role,support_staff,two_factor,enrolled_since,exempt_until,recovery_codes_left,last_sign_in,deactivated_at,second_factors"
    );
    let bob = csv.lines().find(|l| l.starts_with("bob@")).unwrap();
    assert!(
        bob.starts_with(
            "bob@acme.test,\"'=HYPERLINK(\"\"http://evil\"\")\",member,no,not_enrolled,"
        ),
        "{bob}"
    );
    let boss = csv.lines().find(|l| l.starts_with("boss@")).unwrap();
    assert!(boss.contains(",admin,no,enrolled,20"), "{boss}");
    assert!(boss.contains(",10,"), "{boss}");
}

#[tokio::test]
async fn a_reset_ends_every_session_of_the_member_and_their_old_codes_stop_working() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (mut ann, ann_client) = enrolled_user(&app, "ann@acme.test").await;
    let second = app.client();
    second.sign_in(&mut ann).await;
    assert_eq!(second.get("/home").await.status, StatusCode::OK);
    let old_code = ann.fresh_code().await;
    let old_recovery = ann.recovery_codes[0].clone();

    let page = reset(&admin_client, &ann.id).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/admin/users");
    let notice = admin_client.get("/admin/users").await;
    assert!(notice.body.contains("was reset"), "{}", notice.body);

    for client in [&ann_client, &second] {
        assert_eq!(client.get("/home").await.location(), "/login?next=%2Fhome");
    }
    assert_eq!(app.count_rows("totp_credentials", &ann.id), 0);
    assert_eq!(app.count_rows("recovery_codes", &ann.id), 0);
    assert_eq!(app.count_rows("sessions", &ann.id), 0);

    // The password alone signs in now; the old codes are worth nothing.
    let client = app.client();
    assert_eq!(client.password_step(&ann).await.location(), "/home");
    for code in [old_code.as_str(), old_recovery.as_str()] {
        let page = client.post("/home", "/login/2fa", &[("code", code)]).await;
        assert_eq!(page.location(), "/home", "no second step is open");
    }
    let events = app.audit_events("two_factor_reset");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor_label, "boss@acme.test");
    assert_eq!(events[0].actor_kind, "user");
    assert_eq!(events[0].subject_label.as_deref(), Some("ann@acme.test"));
}

#[tokio::test]
async fn a_reset_member_of_an_enforcing_workspace_is_held_at_enrolment() {
    let app = spawn_app().await;
    let (_admin, admin_client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    admin_client
        .post(
            "/admin/workspace",
            "/admin/workspace",
            &[("require_2fa", "on"), ("grace_days", "7")],
        )
        .await;
    reset(&admin_client, &ann.id).await;
    let client = app.client();
    assert_eq!(
        client.password_step(&ann).await.location(),
        "/account/2fa/setup",
        "a deadline in the future is no grace for someone who had 2FA"
    );
}

#[tokio::test]
async fn resets_need_confirmation_a_member_with_2fa_and_someone_else() {
    let app = spawn_app().await;
    let (admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    let bob = app.user("bob@acme.test");
    let (staff, _) = crate::helpers::enrol_as(&app, app.staff_in("acme", "sam@acme.test")).await;

    let unconfirmed = client
        .post(
            "/admin/users",
            &format!("/admin/users/{}/reset-2fa", ann.id),
            &[],
        )
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    assert!(unconfirmed.alert().unwrap().contains("confirm"));
    let own = reset(&client, &admin.id).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    assert!(own.alert().unwrap().contains("your own"));
    let of_staff = reset(&client, &staff.id).await;
    assert_eq!(of_staff.status, StatusCode::FORBIDDEN);
    let nothing = reset(&client, &bob.id).await;
    assert_eq!(nothing.status, StatusCode::CONFLICT);
    assert!(nothing.alert().unwrap().contains("nothing to reset"));
    for user in [&ann.id, &admin.id, &staff.id] {
        assert_eq!(app.count_rows("totp_credentials", user), 1);
    }
    assert!(app.audit_events("two_factor_reset").is_empty());
}

#[tokio::test]
async fn an_admin_of_one_workspace_can_see_reset_and_export_nothing_of_another() {
    let app = spawn_app().await;
    let (_admin_a, client_a) = enrolled_admin(&app, "alpha", "admin@alpha.test").await;
    let (_admin_b, client_b) = enrolled_admin(&app, "beta", "admin@beta.test").await;
    let (member_b, _) =
        crate::helpers::enrol_as(&app, app.user_in("beta", "member@beta.test", Role::Member)).await;
    let granted = client_b
        .post(
            "/admin/workspace",
            "/admin/workspace/exemptions",
            &[
                ("email", "member@beta.test"),
                ("last_day", &policy_day(&app, 1)),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);

    let missing = reset(&client_a, "no-such-id").await;
    let foreign = reset(&client_a, &member_b.id).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(
        foreign.alert(),
        missing.alert(),
        "no hint that the id exists"
    );
    assert_eq!(app.count_rows("totp_credentials", &member_b.id), 1);
    let end = client_a
        .post(
            "/admin/workspace",
            &format!("/admin/workspace/exemptions/{}/end", member_b.id),
            &[],
        )
        .await;
    assert_eq!(end.status, StatusCode::NOT_FOUND);
    assert_eq!(app.count_rows("exemptions", &member_b.id), 1);
    assert!(
        client_b
            .get("/admin/workspace")
            .await
            .body
            .contains("member@beta.test")
    );

    for path in [
        "/admin/users",
        "/admin/users?q=beta",
        "/admin/users.csv",
        "/admin/audit",
        "/admin/workspace",
    ] {
        let page = client_a.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(
            !page.body.contains("beta.test"),
            "{path} shows another workspace"
        );
    }
    let filtered = client_a.get("/admin/audit?member=member%40beta.test").await;
    assert!(
        !filtered.body.contains("class=\"event\""),
        "{}",
        filtered.body
    );
}

#[tokio::test]
async fn members_get_403_on_every_admin_route_and_non_staff_on_support_routes() {
    let app = spawn_app().await;
    let (_member, member) = enrolled_user(&app, "ann@acme.test").await;
    let (target, _) = enrolled_user(&app, "bob@acme.test").await;
    let (_admin, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let reset_path = format!("/admin/users/{}/reset-2fa", target.id);
    let end_path = format!("/admin/workspace/exemptions/{}/end", target.id);
    let support_reset = format!("/support/users/{}/reset-2fa", target.id);

    for path in [
        "/admin/users",
        "/admin/users.csv",
        "/admin/workspace",
        "/admin/audit",
        "/support/users",
    ] {
        let page = member.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.alert().is_some(), "{path}");
    }
    let csrf = member.get("/home").await.csrf();
    for path in [
        reset_path.as_str(),
        "/admin/workspace",
        "/admin/workspace/exemptions",
        end_path.as_str(),
        support_reset.as_str(),
    ] {
        let page = member
            .post_raw(
                path,
                &[
                    ("csrf_token", &csrf),
                    ("confirm", "yes"),
                    ("reason", "r"),
                    ("require_2fa", "on"),
                    ("grace_days", "0"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        admin.get("/support/users").await.status,
        StatusCode::FORBIDDEN
    );
    let csrf = admin.get("/home").await.csrf();
    let page = admin
        .post_raw(&support_reset, &[("csrf_token", &csrf), ("reason", "r")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count_rows("totp_credentials", &target.id), 1);
    assert!(app.audit_events("enforcement_enabled").is_empty());
}

#[tokio::test]
async fn admin_pages_need_the_second_factor_first() {
    let app = spawn_app().await;
    let (admin, _) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let client = app.client();
    client.password_step(&admin).await;
    for path in ["/admin/users", "/admin/workspace", "/admin/audit"] {
        assert_eq!(client.get(path).await.location(), "/login/2fa", "{path}");
    }
    let anonymous = app.client();
    assert_eq!(
        anonymous.get("/admin/users").await.location(),
        "/login?next=%2Fadmin%2Fusers"
    );
    assert_eq!(
        anonymous.get_json("/admin/users").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn every_admin_and_support_post_without_a_csrf_token_is_refused() {
    let app = spawn_app().await;
    let (_admin, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_staff, staff) =
        crate::helpers::enrol_as(&app, app.staff_in("support", "sam@support.test")).await;
    app.user("bob@acme.test");
    let (target, _) = enrolled_user(&app, "ann@acme.test").await;
    let tomorrow = policy_day(&app, 1);
    // The same form with a token is accepted, so the refusals below are the token's.
    let accepted = admin
        .post(
            "/admin/workspace",
            "/admin/workspace/exemptions",
            &[
                ("email", "bob@acme.test"),
                ("last_day", &tomorrow),
                ("reason", "r"),
            ],
        )
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    let posts = [
        (&admin, format!("/admin/users/{}/reset-2fa", target.id)),
        (&admin, "/admin/workspace".to_owned()),
        (&admin, "/admin/workspace/exemptions".to_owned()),
        (
            &admin,
            format!("/admin/workspace/exemptions/{}/end", target.id),
        ),
        (&staff, format!("/support/users/{}/reset-2fa", target.id)),
    ];
    for (client, path) in &posts {
        for token in [None, Some("forged")] {
            let mut fields = vec![
                ("confirm", "yes"),
                ("reason", "r"),
                ("require_2fa", "on"),
                ("grace_days", "0"),
                ("email", "ann@acme.test"),
                ("last_day", &tomorrow),
            ];
            if let Some(token) = token {
                fields.push(("csrf_token", token));
            }
            let page = client.post_raw(path, &fields).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path} {token:?}");
        }
    }
    assert_eq!(app.count_rows("totp_credentials", &target.id), 1);
    assert_eq!(app.count_rows("exemptions", &target.id), 0);
    for kind in ["enforcement_enabled", "two_factor_reset"] {
        assert!(app.audit_events(kind).is_empty(), "{kind}");
    }
}

#[tokio::test]
async fn the_audit_log_says_who_did_what_to_whom_newest_first_and_filters() {
    let app = spawn_app().await;
    let (_admin, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (ann, _) = enrolled_user(&app, "ann@acme.test").await;
    reset(&admin, &ann.id).await;

    let page = admin.get("/admin/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    let first = page.body.find("class=\"event\"").unwrap();
    let newest = &page.body[first..first + 600];
    assert!(
        newest.contains("data-kind=\"two_factor_reset\""),
        "{newest}"
    );
    assert!(newest.contains("boss@acme.test"));
    assert!(newest.contains("ann@acme.test"));
    assert!(newest.contains("127.0.0.1"));

    let only_resets = admin.get("/admin/audit?kind=two_factor_reset").await;
    assert_eq!(only_resets.body.matches("class=\"event\"").count(), 1);
    let ann_only = admin.get("/admin/audit?member=ann%40acme.test").await;
    assert!(ann_only.body.matches("class=\"event\"").count() >= 3);
    for event in ann_only.body.split("class=\"event\"").skip(1) {
        assert!(event.contains("ann@acme.test"), "{event}");
    }
    let unknown = admin.get("/admin/audit?kind=drop_table").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

/// A text with an `@` finds what any text finds, the emails it is part of (PostgreSQL
/// answers it from the index of the part before the `@`, `db::directory::around_the_at`).
#[tokio::test]
async fn searches_with_an_at_sign_find_the_emails_the_text_is_part_of() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    for email in [
        "ann@acme.test",
        "joann@acme.test",
        "ann@acme.testing.example",
        "an_n@acme.test",
        "ann%@acme.test",
    ] {
        app.user_in("acme", email, Role::Member);
    }
    app.user_in("other", "ann@other.test", Role::Member);
    diesel::sql_query(
        "UPDATE users SET name = 'Ian (ian@home.example)' WHERE email = 'an_n@acme.test'",
    )
    .execute(&mut *app.conn())
    .unwrap();
    let found = |page: &crate::common::Page| {
        let mut emails: Vec<String> = page
            .body
            .split("data-email=\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
            .collect();
        emails.sort();
        emails
    };
    let cases: [(&str, &[&str]); 10] = [
        (
            "ann@acme.test",
            &[
                "ann@acme.test",
                "ann@acme.testing.example",
                "joann@acme.test",
            ],
        ),
        ("ANN@ACME.TESTING", &["ann@acme.testing.example"]),
        ("oann@", &["joann@acme.test"]),
        (
            "n@acme.test",
            &[
                "an_n@acme.test",
                "ann@acme.test",
                "ann@acme.testing.example",
                "joann@acme.test",
            ],
        ),
        // Wildcards are text like any other.
        ("_n@acme", &["an_n@acme.test"]),
        ("%25@acme", &["ann%@acme.test"]),
        ("n%25@", &["ann%@acme.test"]),
        // Another workspace's member, two `@`, or none before it.
        ("ann@other", &[]),
        ("ann@acme@test", &[]),
        ("@acme.testing", &["ann@acme.testing.example"]),
    ];
    for (q, expected) in cases {
        let page = client.get(&format!("/admin/users?q={q}")).await;
        assert_eq!(page.status, StatusCode::OK, "{q}");
        assert_eq!(found(&page), expected, "{q}");
    }
    // A name with an `@` in it is found by its name.
    let by_name = client.get("/admin/users?q=ian%40home").await;
    assert_eq!(found(&by_name), ["an_n@acme.test"]);

    // Support searches every workspace the same way.
    let (_staff, staff) =
        crate::helpers::enrol_as(&app, app.staff_in("support", "sam@support.test")).await;
    let everywhere = staff.get("/support/users?q=ann%40").await;
    assert_eq!(everywhere.status, StatusCode::OK);
    for email in [
        "ann@acme.test",
        "joann@acme.test",
        "ann@acme.testing.example",
        "ann@other.test",
    ] {
        assert!(everywhere.body.contains(email), "{email}");
    }
    assert!(!everywhere.body.contains("an_n@acme.test"));
    assert!(!everywhere.body.contains("ann%@acme.test"));
}

#[tokio::test]
async fn searches_find_parts_of_emails_and_names_and_count_a_thousand_at_most() {
    let app = spawn_app().await;
    let (_admin, client) = enrolled_admin(&app, "big", "admin@big.test").await;
    many_members(&app, &app.workspace("big"), 1100);
    app.user_in("other", "member9999@other.test", Role::Member);
    diesel::sql_query(
        "UPDATE users SET name = 'Zoë \"Zed\" Quinn_50%' WHERE email = 'member0042@big.test'",
    )
    .execute(&mut *app.conn())
    .unwrap();
    let count = |page: &crate::common::Page| {
        crate::common::between(&page.body, "id=\"member-count\">", "</p>").unwrap()
    };

    // A rare text: the members it is in, of this workspace only, counted exactly.
    let one = client.get("/admin/users?q=MEMBER1050").await;
    assert_eq!(count(&one), "1 member match.");
    assert!(one.body.contains("member1050@big.test"));
    let hundred = client.get("/admin/users?q=ber10").await;
    assert_eq!(count(&hundred), "100 members match.");
    assert!(hundred.body.contains("member1099@big.test") || hundred.link("last").is_some());
    let other = client.get("/admin/users?q=member9999").await;
    assert!(count(&other).starts_with("0 members"), "{}", count(&other));
    // Names, quotes and wildcards are text like any other.
    for q in ["zed", "%22zed%22", "quinn_50%25", "Zo%C3%AB"] {
        let found = client.get(&format!("/admin/users?q={q}")).await;
        assert_eq!(count(&found), "1 member match.", "{q}");
    }
    let literal = client.get("/admin/users?q=quinn%2550").await;
    assert!(literal.body.contains("No members match"));
    // A NUL or another control character is in no email or name: no match, no failure.
    for q in ["mem%00ber", "ze%0Ad", "%01%02%03"] {
        let odd = client.get(&format!("/admin/users?q={q}")).await;
        assert_eq!(odd.status, StatusCode::OK, "{q}");
        assert!(odd.body.contains("No members match"), "{q}");
    }

    // A common text, or one shorter than a trigram: counted to a thousand, paged as ever.
    for q in ["member", "me", "big.test"] {
        let many = client.get(&format!("/admin/users?q={q}")).await;
        assert_eq!(
            count(&many),
            "More than 1000 members match: add to the search to narrow it.",
            "{q}"
        );
        assert_eq!(many.body.matches("class=\"member\"").count(), 50);
        let next = client.get(&many.link("next").unwrap()).await;
        assert_eq!(next.body.matches("class=\"member\"").count(), 50, "{q}");
        assert!(next.body.contains("member0050@big.test"), "{q}");
        assert!(
            !next.body.contains("data-email=\"member0048@big.test\""),
            "{q}"
        );
    }

    // Support searches every workspace; a removed or renamed user is found no more.
    let (_staff, staff) =
        crate::helpers::enrol_as(&app, app.staff_in("support", "sam@support.test")).await;
    assert!(
        staff
            .get("/support/users?q=member9999")
            .await
            .body
            .contains("member9999@other.test")
    );
    diesel::sql_query("DELETE FROM users WHERE email = 'member1050@big.test'")
        .execute(&mut *app.conn())
        .unwrap();
    diesel::sql_query(
        "UPDATE users SET email = 'renamed@big.test' WHERE email = 'member1051@big.test'",
    )
    .execute(&mut *app.conn())
    .unwrap();
    assert!(
        client
            .get("/admin/users?q=member1050")
            .await
            .body
            .contains("No members match")
    );
    assert!(
        client
            .get("/admin/users?q=member1051")
            .await
            .body
            .contains("No members match")
    );
    assert_eq!(
        count(&client.get("/admin/users?q=renamed").await),
        "1 member match."
    );
    assert!(
        !staff
            .get("/support/users?q=member1050")
            .await
            .body
            .contains("member1050@")
    );
    app.assert_counts_agree();
}

#[tokio::test]
async fn the_audit_log_is_paged() {
    let app = spawn_app().await;
    let (_admin, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let workspace_id = app.workspace("acme");
    let values: Vec<String> = (0..120)
        .map(|i| format!("({i}, '{workspace_id}', 'x@acme.test', 'signed_out', '')"))
        .collect();
    diesel::sql_query(format!(
        "INSERT INTO audit_events (created_at, workspace_id, actor_label, kind, detail) VALUES {}",
        values.join(",")
    ))
    .execute(&mut *app.conn())
    .unwrap();
    let first = admin.get("/admin/audit").await;
    assert_eq!(first.body.matches("class=\"event\"").count(), 50);
    assert!(first.link("prev").is_none());
    let second = admin.get(&first.link("next").unwrap()).await;
    assert_eq!(second.body.matches("class=\"event\"").count(), 50);
    let third = admin.get(&second.link("next").unwrap()).await;
    let on_third = third.body.matches("class=\"event\"").count();
    assert!(on_third > 20 && on_third < 50, "{on_third}");
    assert!(third.link("next").is_none() && third.link("last").is_none());
    // Back from the third is the second; the oldest page is the last fifty.
    let back = admin.get(&third.link("prev").unwrap()).await;
    assert_eq!(back.body, second.body.replace(&second.csrf(), &back.csrf()));
    let oldest = admin.get(&first.link("last").unwrap()).await;
    assert_eq!(oldest.body.matches("class=\"event\"").count(), 50);
    assert!(oldest.link("next").is_none() && oldest.link("prev").is_some());
    // Newer than the newest few is the newest page, whole.
    let newest = admin.get(&second.link("prev").unwrap()).await;
    assert_eq!(newest.body.matches("class=\"event\"").count(), 50);
    assert!(newest.link("prev").is_none());
    // A filter stays on the links.
    let filtered = admin.get("/admin/audit?kind=signed_out").await;
    assert!(filtered.link("next").unwrap().contains("kind=signed_out"));
}

#[tokio::test]
async fn an_admin_without_2fa_gets_no_admin_page_until_they_set_it_up() {
    let app = spawn_app().await;
    let mut admin = app.user_in("acme", "boss@acme.test", Role::Admin);
    let (member, _) = enrolled_user(&app, "ann@acme.test").await;
    let client = app.client();
    client.sign_in(&mut admin).await;
    for path in [
        "/admin/users",
        "/admin/users.csv",
        "/admin/workspace",
        "/admin/audit",
    ] {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            page.alert().unwrap().contains("Set up two-factor sign-in"),
            "{path}"
        );
    }
    assert_eq!(
        reset(&client, &member.id).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.count_rows("totp_credentials", &member.id), 1);
    assert!(
        !client
            .get("/home")
            .await
            .body
            .contains("href=\"/admin/users\"")
    );

    client.enrol(&mut admin).await;
    assert_eq!(client.get("/admin/users").await.status, StatusCode::OK);
    assert!(
        client
            .get("/home")
            .await
            .body
            .contains("href=\"/admin/users\"")
    );
}

#[tokio::test]
async fn admin_pages_answer_head_and_json_like_the_rest() {
    let app = spawn_app().await;
    let (_admin, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_member, member) = enrolled_user(&app, "ann@acme.test").await;
    for path in [
        "/admin/users",
        "/admin/users.csv",
        "/admin/workspace",
        "/admin/audit",
    ] {
        let head = admin.head(path).await;
        assert_eq!(head.status, StatusCode::OK, "{path}");
        assert!(head.body.is_empty());
        let refused = member.get_json(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        let body: serde_json::Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(body["error"], "forbidden");
    }
}

#[tokio::test]
async fn malformed_query_strings_get_a_400_page_not_a_failure() {
    let app = spawn_app().await;
    let (_admin, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_staff, staff) =
        crate::helpers::enrol_as(&app, app.staff_in("support", "sam@support.test")).await;
    for (client, path) in [
        (&admin, "/admin/audit?before=abc"),
        (&admin, "/admin/audit?before=99999999999999999999"),
        (&admin, "/admin/audit?after=1.5"),
        (&admin, "/admin/audit?member=ann%00%40acme.test"),
    ] {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(page.alert().is_some(), "{path}");
    }
    // Bytes that are not text in a search are read leniently and simply match nothing.
    for q in ["%FF%FEabc", "bo%00ss"] {
        let odd = staff.get(&format!("/support/users?q={q}")).await;
        assert_eq!(odd.status, StatusCode::OK, "{q}");
        assert!(odd.body.contains("No user"), "{q}: {}", odd.body);
    }
    let odd = staff.get("/support/users?q=%FF%FEabc").await;
    assert_eq!(odd.status, StatusCode::OK);
    assert!(odd.body.contains("No user"), "{}", odd.body);
    // A cursor that parses but points nowhere is simply past the end.
    let far = admin.get("/admin/audit?before=-9223372036854775808").await;
    assert_eq!(far.status, StatusCode::OK);
    let far = admin.get("/admin/users?after=%F0%9F%A6%80").await;
    assert_eq!(far.status, StatusCode::OK);
}
