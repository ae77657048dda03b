//! Invitations: sent by an admin with a mailed absolute link, accepted once by a new person
//! who is signed in at once (and then held by the workspace's 2FA rules like anyone), and
//! a link that is used, expired, revoked or replaced is refused in plain words.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::{invites, mail_outbox, users};
use tessera::domain::Role;

use crate::helpers::{Client, Page, TestApp, enrolled_admin, spawn_app_with};
use crate::smtp::SmtpServer;

/// A password the rules accept for the invitees of these tests.
pub const NEW_PASSWORD: &str = "quiet lantern orbit 42";

/// An app whose outbox sends to `smtp`.
pub async fn app_mailing_to(smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    spawn_app_with(&[
        ("SMTP_URL", url.as_str()),
        ("MAIL_FROM", "Tessera <security@tessera.test>"),
    ])
    .await
}

/// Invites `email` as `role` from the members page of `admin`.
pub async fn invite(admin: &Client, email: &str, role: &str) -> Page {
    admin
        .post(
            "/admin/users",
            "/admin/invites",
            &[("email", email), ("role", role)],
        )
        .await
}

/// Sends the outbox and returns the invitation links `email` received so far, oldest first.
pub async fn links_to(app: &TestApp, smtp: &SmtpServer, email: &str) -> Vec<String> {
    app.dispatch_mail().await;
    smtp.wait_for_where(email, |m| {
        m.header("Subject").is_some_and(|s| s.contains("invited"))
    })
    .await;
    smtp.received()
        .await
        .iter()
        .filter(|m| m.to.iter().any(|t| t == email))
        .filter_map(|m| {
            m.text()
                .split_whitespace()
                .find(|w| w.contains("/invite/"))
                .map(str::to_owned)
        })
        .collect()
}

/// The newest invitation link `email` received, as a path on `app`.
pub async fn link_to(app: &TestApp, smtp: &SmtpServer, email: &str) -> String {
    let link = links_to(app, smtp, email).await.pop().unwrap();
    assert!(
        link.starts_with(&format!("{}/invite/", app.public_url())),
        "an absolute link under PUBLIC_URL: {link}"
    );
    link[app.public_url().len()..].to_owned()
}

/// Accepts the invitation at `path` on `client` with `name` and `password`.
pub async fn accept(client: &Client, path: &str, name: &str, password: &str) -> Page {
    let form = client.get(path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    client
        .post_raw(
            path,
            &[
                ("csrf_token", &form.csrf()),
                ("name", name),
                ("password", password),
            ],
        )
        .await
}

fn invite_id(app: &TestApp, email: &str) -> String {
    invites::table
        .filter(invites::email.eq(email))
        .select(invites::id)
        .get_result(&mut *app.conn())
        .unwrap()
}

fn invite_count(app: &TestApp) -> i64 {
    invites::table.count().get_result(&mut *app.conn()).unwrap()
}

fn user_count(app: &TestApp, email: &str) -> i64 {
    users::table
        .filter(users::email.eq(email))
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

fn assert_dead_link(page: &Page) {
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    let alert = page.alert().unwrap();
    assert!(alert.contains("does not work"), "{alert}");
    assert!(alert.contains("send a new one"), "{alert}");
}

#[tokio::test]
async fn an_invited_person_gets_a_mailed_link_accepts_it_and_is_signed_in_with_that_role() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;

    let sent = invite(&admin, "Ann@Acme.test", "admin").await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let members = admin.get("/admin/users").await;
    let listed = crate::helpers::between(&members.body, "class=\"invite\"", "</li>").unwrap();
    for words in [
        "ann@acme.test",
        "as admin",
        "sent by boss@acme.test",
        "expires on",
    ] {
        assert!(listed.contains(words), "{words}: {listed}");
    }
    assert!(
        listed.contains("Resend") && listed.contains("Revoke"),
        "{listed}"
    );

    app.dispatch_mail().await;
    let mail = smtp.wait_for("ann@acme.test").await;
    let text = mail.text();
    for words in [
        "boss@acme.test invited you to join the workspace acme",
        "as an admin",
        "expires on",
        "If you did not expect this invitation",
    ] {
        assert!(text.contains(words), "{words}: {text}");
    }
    let path = link_to(&app, &smtp, "ann@acme.test").await;

    let ann = app.client();
    let form = ann.get(&path).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Join acme"), "{}", form.body);
    assert!(form.body.contains("ann@acme.test"));
    assert_eq!(form.headers["cache-control"], "no-store");
    assert_eq!(form.headers["referrer-policy"], "no-referrer");

    let done = accept(&ann, &path, "Ann Lee", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/home");
    assert_eq!(done.headers["cache-control"], "no-store");
    assert_eq!(ann.get("/home").await.status, StatusCode::OK);
    let (role, name): (String, String) = users::table
        .filter(users::email.eq("ann@acme.test"))
        .select((users::role, users::name))
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!((role.as_str(), name.as_str()), ("admin", "Ann Lee"));
    assert_eq!(invite_count(&app), 0, "an accepted invitation is gone");

    let sent = app.audit_events("invite_sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].actor_label, "boss@acme.test");
    assert_eq!(sent[0].subject_label.as_deref(), Some("ann@acme.test"));
    let accepted = app.audit_events("invite_accepted");
    assert_eq!(accepted.len(), 1);
    assert!(
        accepted[0].detail.contains("invited by boss@acme.test"),
        "{}",
        accepted[0].detail
    );

    // The new account signs in again with its password like anyone else.
    let again = app.client();
    let page = again
        .post(
            "/login",
            "/login",
            &[("email", "ann@acme.test"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn an_invitee_is_held_at_enrolment_past_the_2fa_deadline_and_sees_the_banner_during_grace() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let on = admin
        .post(
            "/home",
            "/admin/workspace",
            &[("require_2fa", "on"), ("grace_days", "7")],
        )
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);

    invite(&admin, "ann@acme.test", "member").await;
    let path = link_to(&app, &smtp, "ann@acme.test").await;
    let ann = app.client();
    let done = accept(&ann, &path, "", NEW_PASSWORD).await;
    assert_eq!(done.location(), "/home", "in grace: {}", done.body);
    let home = ann.get("/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("id=\"grace-banner\""), "{}", home.body);

    app.clock().advance(8 * 24 * 3600);
    invite(&admin, "bob@acme.test", "member").await;
    let path = link_to(&app, &smtp, "bob@acme.test").await;
    let bob = app.client();
    let done = accept(&bob, &path, "", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/account/2fa/setup");
    let held = bob.get("/home").await;
    assert_eq!(held.status, StatusCode::SEE_OTHER);
    assert_eq!(held.location(), "/account/2fa/setup");
    assert_eq!(
        bob.get("/admin/users").await.location(),
        "/account/2fa/setup"
    );
    assert_eq!(bob.get("/account/2fa/setup").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_invitation_link_works_once_even_when_posted_twice_at_once() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let path = link_to(&app, &smtp, "ann@acme.test").await;

    let (first, second) = (app.client(), app.client());
    let (csrf1, csrf2) = (
        first.get(&path).await.csrf(),
        second.get(&path).await.csrf(),
    );
    let f1 = [
        ("csrf_token", csrf1.as_str()),
        ("name", "One"),
        ("password", NEW_PASSWORD),
    ];
    let f2 = [
        ("csrf_token", csrf2.as_str()),
        ("name", "Two"),
        ("password", NEW_PASSWORD),
    ];
    let (a, b) = tokio::join!(first.post_raw(&path, &f1), second.post_raw(&path, &f2));
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&StatusCode::SEE_OTHER) && statuses.contains(&StatusCode::NOT_FOUND),
        "one wins, one is refused: {statuses:?}"
    );
    assert_dead_link(if a.status == StatusCode::NOT_FOUND {
        &a
    } else {
        &b
    });
    assert_eq!(user_count(&app, "ann@acme.test"), 1);

    // Used: the link is dead for anyone who opens it later.
    assert_dead_link(&app.client().get(&path).await);
    // And someone signed in who opens a link is asked to sign out first.
    let page = admin.get(&path).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.alert().unwrap().contains("sign out first"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn a_bad_password_or_name_is_refused_in_words_and_keeps_the_invitation() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let path = link_to(&app, &smtp, "ann@acme.test").await;
    let ann = app.client();
    for (name, password) in [
        ("", "short"),
        ("", "password1234"),
        ("", "ann likes long passwords"),
        ("", "the acme company rocks"),
        ("<b>\u{0}</b>", NEW_PASSWORD),
    ] {
        let page = accept(&ann, &path, name, password).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{password}: {}",
            page.body
        );
        assert!(page.alert().is_some(), "{password}");
    }
    assert_eq!(user_count(&app, "ann@acme.test"), 0);
    assert_eq!(invite_count(&app), 1);
    let done = accept(&ann, &path, "Ann", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
}

#[tokio::test]
async fn an_expired_invitation_is_refused_listed_as_expired_and_can_be_sent_again() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let old = link_to(&app, &smtp, "ann@acme.test").await;
    let ann = app.client();
    let form = ann.get(&old).await;
    assert_eq!(form.status, StatusCode::OK);

    app.clock().advance(7 * 24 * 3600 + 1);
    assert_dead_link(&ann.get(&old).await);
    let late = ann
        .post_raw(
            &old,
            &[
                ("csrf_token", &form.csrf()),
                ("name", ""),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    assert_dead_link(&late);
    assert_eq!(user_count(&app, "ann@acme.test"), 0);
    let members = admin.get("/admin/users").await;
    assert!(members.body.contains("expired on"), "{}", members.body);

    let id = invite_id(&app, "ann@acme.test");
    let again = admin
        .post("/admin/users", &format!("/admin/invites/{id}/resend"), &[])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    let new = link_to(&app, &smtp, "ann@acme.test").await;
    assert_ne!(new, old);
    let done = accept(&ann, &new, "", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
}

#[tokio::test]
async fn a_resent_invitation_kills_the_old_link_and_the_new_one_works() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let old = link_to(&app, &smtp, "ann@acme.test").await;
    let id = invite_id(&app, "ann@acme.test");
    let again = admin
        .post("/admin/users", &format!("/admin/invites/{id}/resend"), &[])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    let links = links_to(&app, &smtp, "ann@acme.test").await;
    assert_eq!(links.len(), 2, "{links:?}");
    let new = links[1][app.public_url().len()..].to_owned();
    assert_ne!(new, old);

    assert_dead_link(&app.client().get(&old).await);
    let done = accept(&app.client(), &new, "", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let resent = app.audit_events("invite_resent");
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].actor_label, "boss@acme.test");
}

#[tokio::test]
async fn an_admins_pending_invitations_go_when_they_are_deactivated_or_demoted() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (rogue, rogue_client) = enrolled_admin(&app, "acme", "rogue@acme.test").await;
    let (demoted, demoted_client) = enrolled_admin(&app, "acme", "demoted@acme.test").await;
    let (_, boss) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&rogue_client, "friend@elsewhere.test", "admin").await;
    invite(&demoted_client, "pal@elsewhere.test", "member").await;
    invite(&boss, "ann@acme.test", "member").await;
    let friend = link_to(&app, &smtp, "friend@elsewhere.test").await;
    let pal = link_to(&app, &smtp, "pal@elsewhere.test").await;

    let deactivated = boss
        .post(
            "/admin/users",
            &format!("/admin/users/{}/deactivate", rogue.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(
        deactivated.status,
        StatusCode::SEE_OTHER,
        "{}",
        deactivated.body
    );
    let demoted_page = boss
        .post(
            "/admin/users",
            &format!("/admin/users/{}/role", demoted.id),
            &[("role", "member")],
        )
        .await;
    assert_eq!(
        demoted_page.status,
        StatusCode::SEE_OTHER,
        "{}",
        demoted_page.body
    );

    // Their links no longer make accounts; the boss's own invitation stands.
    assert_dead_link(&app.client().get(&friend).await);
    assert_dead_link(&app.client().get(&pal).await);
    assert_eq!(user_count(&app, "friend@elsewhere.test"), 0);
    assert_eq!(invite_count(&app), 1);
    let events = app.audit_events("invite_revoked");
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(events.len(), 2, "{details:?}");
    assert!(
        details
            .iter()
            .any(|d| d.contains("rogue@acme.test was deactivated")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("demoted@acme.test is no longer an admin")),
        "{details:?}"
    );
}

#[tokio::test]
async fn a_revoked_invitation_link_is_refused() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let path = link_to(&app, &smtp, "ann@acme.test").await;
    let id = invite_id(&app, "ann@acme.test");
    let revoked = admin
        .post("/admin/users", &format!("/admin/invites/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_dead_link(&app.client().get(&path).await);
    assert_eq!(invite_count(&app), 0);
    assert!(
        !admin
            .get("/admin/users")
            .await
            .body
            .contains("class=\"invite\"")
    );
    let events = app.audit_events("invite_revoked");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].subject_label.as_deref(), Some("ann@acme.test"));
    // Revoking again: there is nothing left to revoke.
    let again = admin
        .post("/admin/users", &format!("/admin/invites/{id}/revoke"), &[])
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_token_is_stored_only_as_its_hash_and_the_sent_mail_keeps_no_copy() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let path = link_to(&app, &smtp, "ann@acme.test").await;
    let token = path.strip_prefix("/invite/").unwrap();
    assert!(token.len() >= 43, "256 bits: {token}");
    let stored: String = invites::table
        .select(invites::token_hash)
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(stored, tessera::random::sha256_hex(token));
    let bodies: Vec<(String, String)> = mail_outbox::table
        .select((mail_outbox::body_text, mail_outbox::body_html))
        .load(&mut *app.conn())
        .unwrap();
    for (text, html) in &bodies {
        assert!(!text.contains(token) && !html.contains(token));
    }
}

#[tokio::test]
async fn an_email_with_an_account_here_or_elsewhere_gets_the_same_neutral_answer_and_nothing_is_stored()
 {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    app.user("ann@acme.test");
    app.user_in("other", "olga@other.test", Role::Member);
    let here = invite(&admin, "ann@acme.test", "member").await;
    let elsewhere = invite(&admin, " OLGA@other.test ", "member").await;
    for page in [&here, &elsewhere] {
        assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
        assert_eq!(
            page.alert().unwrap(),
            "That address cannot be invited. If the person already has an account, ask them or support staff."
        );
    }
    assert_eq!(invite_count(&app), 0);
    assert!(app.audit_events("invite_sent").is_empty());
    let invitation_mails: i64 = mail_outbox::table
        .filter(mail_outbox::kind.eq("invite"))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(invitation_mails, 0);

    let bad = invite(&admin, "not an email", "member").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.alert().is_some());
    let bad_role = invite(&admin, "new@acme.test", "owner").await;
    assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
    assert_eq!(invite_count(&app), 0);
}

#[tokio::test]
async fn inviting_an_address_twice_says_so_and_offers_resend() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, admin) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    invite(&admin, "ann@acme.test", "member").await;
    let twice = invite(&admin, "ann@acme.test", "admin").await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let alert = twice.alert().unwrap();
    assert!(alert.contains("already invited"), "{alert}");
    assert!(alert.contains("Resend"), "{alert}");
    assert!(twice.body.contains("/resend"), "the page offers it");
    assert_eq!(invite_count(&app), 1);
}

#[tokio::test]
async fn another_workspaces_invitation_ids_are_not_found_and_nothing_changes() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, acme) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_, other) = enrolled_admin(&app, "other", "chief@other.test").await;
    invite(&acme, "ann@acme.test", "member").await;
    let id = invite_id(&app, "ann@acme.test");
    let before: String = invites::table
        .select(invites::token_hash)
        .get_result(&mut *app.conn())
        .unwrap();
    for action in ["resend", "revoke"] {
        let page = other
            .post(
                "/admin/users",
                &format!("/admin/invites/{id}/{action}"),
                &[],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}");
    }
    let after: String = invites::table
        .select(invites::token_hash)
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(before, after);
    assert!(app.audit_events("invite_resent").is_empty());
    assert!(app.audit_events("invite_revoked").is_empty());
    assert!(
        !other
            .get("/admin/users")
            .await
            .body
            .contains("ann@acme.test"),
        "listed only in its own workspace"
    );
}

#[tokio::test]
async fn an_email_that_got_an_account_meanwhile_cannot_accept_and_nothing_is_created() {
    let smtp = SmtpServer::start().await;
    let app = app_mailing_to(&smtp).await;
    let (_, acme) = enrolled_admin(&app, "acme", "boss@acme.test").await;
    let (_, other) = enrolled_admin(&app, "other", "chief@other.test").await;
    invite(&acme, "ann@example.test", "member").await;
    invite(&other, "ann@example.test", "member").await;
    let links = links_to(&app, &smtp, "ann@example.test").await;
    assert_eq!(links.len(), 2);
    let (first, second) = (
        links[0][app.public_url().len()..].to_owned(),
        links[1][app.public_url().len()..].to_owned(),
    );
    let done = accept(&app.client(), &first, "", NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let late = accept(&app.client(), &second, "", NEW_PASSWORD).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert!(late.alert().unwrap().contains("cannot be created"));
    assert_eq!(user_count(&app, "ann@example.test"), 1);
    assert_eq!(app.audit_events("invite_accepted").len(), 1);
}
