//! The members journey: an admin invites two people from the members page; one accepts
//! from the link mailed to a real SMTP server and is held at enrolment (the workspace requires 2FA), the other's
//! invitation is revoked and its link refused; then the admin deactivates a member whose
//! open session (a plain HTTP client with its cookie) ends at once.

use diesel::prelude::*;
use tessera::db::schema::invites;

use crate::Journey;
use crate::browser::{Browser, Outcome};
use crate::common::{PASSWORD, TestApp, TestUser, enrolled_admin, enrolled_user};
use crate::journeys::{Spec, enrol, ensure, expect_path, sign_in, sign_out};
use crate::mailbox::mailed_links;
use crate::smtp::SmtpServer;

pub const ALL: &[Spec] = &[(
    "an_admin_invites_two_people_one_joins_and_enrols_one_is_revoked_and_a_member_is_deactivated",
    &[],
    invite_revoke_deactivate,
)];

fn invite_id(app: &TestApp, email: &str) -> String {
    invites::table
        .filter(invites::email.eq(email))
        .select(invites::id)
        .get_result(&mut *app.conn())
        .unwrap()
}

/// Types `email` into the invitation form of the members page and sends it.
async fn invite(b: &Browser, email: &str) -> Outcome {
    b.goto("/admin/users").await?;
    b.fill("#invite-email", email).await?;
    b.enter().await?;
    expect_path(b, "/admin/users").await?;
    let notice = b.body_text().await?;
    ensure(
        notice.contains(&format!("An invitation was sent to {email}")),
        || format!("the page should confirm the invitation of {email}:\n{notice}"),
    )
}

fn invite_revoke_deactivate<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let smtp = SmtpServer::start().await;
        let (mut admin, admin_client) = enrolled_admin(app, "acme", "admin@acme.example").await;
        let (carl, carl_client) = enrolled_user(app, "carl@acme.example").await;
        // The workspace requires 2FA from now on (no grace period).
        let on = admin_client
            .post(
                "/home",
                "/admin/workspace",
                &[("require_2fa", "on"), ("grace_days", "0")],
            )
            .await;
        ensure(on.status == reqwest::StatusCode::SEE_OTHER, || {
            format!("turning enforcement on: {}", on.body)
        })?;

        sign_in(b, &mut admin).await?;
        b.goto("/admin/users").await?;
        b.check_page("members-invite-form").await?;
        invite(b, "ann@acme.example").await?;
        invite(b, "bob@acme.example").await?;
        let listed = b.texts(".invite").await?;
        ensure(listed.len() == 2, || {
            format!("two pending invitations: {listed:?}")
        })?;
        b.check_page("members-two-invites").await?;

        let bob_invite = invite_id(app, "bob@acme.example");
        b.focus_start().await?;
        b.activate(&format!(
            "form[action='/admin/invites/{bob_invite}/revoke'] button"
        ))
        .await?;
        let listed = b.texts(".invite").await?;
        ensure(
            listed.len() == 1 && listed[0].contains("ann@acme.example"),
            || format!("only Ann's invitation is left: {listed:?}"),
        )?;
        b.check_page("members-invite-revoked").await?;
        sign_out(b).await?;

        let ann_link = mailed_links(app, &smtp, "ann@acme.example", "invited")
            .await?
            .pop()
            .ok_or("Ann's invitation mail has a link")?;
        let bob_link = mailed_links(app, &smtp, "bob@acme.example", "invited")
            .await?
            .pop()
            .ok_or("Bob's invitation mail has a link")?;
        ensure(ann_link.starts_with("/invite/"), || {
            format!("an absolute link under the app's address: {ann_link}")
        })?;

        // Bob's link was revoked: refused in plain words.
        b.goto(&bob_link).await?;
        expect_dead_link(b).await?;
        b.check_page("invite-revoked-link").await?;

        // Ann accepts, and is held at enrolment before anything else opens.
        b.goto(&ann_link).await?;
        b.check_page("invite-accept").await?;
        let page = b.body_text().await?;
        ensure(
            page.contains("ann@acme.example") && page.contains("acme"),
            || format!("the page names the workspace and the address:\n{page}"),
        )?;
        b.fill("#name", "Ann Example").await?;
        b.fill("#password", "short").await?;
        b.enter().await?;
        let alert = b.alert().await?;
        ensure(alert.contains("12"), || {
            format!("a short password is refused: {alert}")
        })?;
        b.check_page("invite-accept-weak-password").await?;
        b.fill("#password", "quiet lantern orbit 42").await?;
        b.enter().await?;
        let mut ann = TestUser {
            id: String::new(),
            email: "ann@acme.example".into(),
            password: "quiet lantern orbit 42".into(),
            secret: None,
            recovery_codes: Vec::new(),
            last_step: 0,
        };
        enrol(b, &mut ann, "invite-enrol").await?;
        b.goto("/home").await?;
        expect_path(b, "/home").await?;
        sign_out(b).await?;

        // The admin deactivates Carl, whose session is open elsewhere.
        ensure(
            carl_client.get("/home").await.status == reqwest::StatusCode::OK,
            || "Carl is signed in".into(),
        )?;
        sign_in(b, &mut admin).await?;
        b.goto("/admin/users").await?;
        b.focus_start().await?;
        b.tick(&format!("#deactivate-{}", carl.id)).await?;
        b.activate(&format!(
            "form[action='/admin/users/{}/deactivate'] button",
            carl.id
        ))
        .await?;
        let notice = b.body_text().await?;
        ensure(notice.contains("carl@acme.example was deactivated"), || {
            format!("the page confirms the deactivation:\n{notice}")
        })?;
        b.check_page("members-deactivated").await?;
        let ended = carl_client.get("/home").await;
        ensure(ended.location().starts_with("/login"), || {
            format!(
                "Carl's session ends at once: {} {}",
                ended.status,
                ended.location()
            )
        })?;
        sign_out(b).await?;

        // Carl's right password now hears that the account is deactivated.
        crate::journeys::password_step(b, "carl@acme.example", PASSWORD).await?;
        let alert = b.alert().await?;
        ensure(alert.contains("deactivated"), || {
            format!("sign-in says the account is deactivated: {alert}")
        })?;
        b.check_page("login-deactivated").await
    })
}

/// The refused-link page: its alert says the link does not work.
async fn expect_dead_link(b: &Browser) -> Outcome {
    let alert = b.alert().await?;
    ensure(alert.contains("does not work"), || {
        format!("a dead invitation link is refused in words: {alert}")
    })?;
    Ok(())
}
