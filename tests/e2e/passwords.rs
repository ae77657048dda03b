//! Passwords in a browser: a member who uses an authenticator forgets the password, asks
//! for a link, opens it from the mail a real SMTP server received, sets a new password, and
//! signing in still asks for the code. Then the change-password page, signed in.

use crate::Journey;
use crate::browser::Browser;
use crate::common::{TestApp, enrolled_user};
use crate::journeys::{
    Spec, browser_code, ensure, expect_error_focused, expect_focus, expect_path, password_step,
};
use crate::mailbox::mailed_links;
use crate::smtp::SmtpServer;

pub const ALL: &[Spec] = &[(
    "a_member_with_an_authenticator_resets_a_forgotten_password_and_is_still_asked_for_the_code",
    &[],
    forgotten_password,
)];

fn forgotten_password<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let smtp = SmtpServer::start().await;
        let (mut user, _) = enrolled_user(app, "forgetful@acme.example").await;
        let new_password = "lantern violet harbour tram";

        // "Forgot your password?" from the sign-in page.
        b.goto("/login").await?;
        b.activate("a[href='/login/forgot']").await?;
        expect_path(b, "/login/forgot").await?;
        b.check_page("forgot").await?;
        expect_focus(b, "#email").await?;
        b.keys(&user.email).await?;
        b.enter().await?;
        let said = b.text("#forgot-sent").await?;
        ensure(
            said.contains("If an account exists for that address"),
            || format!("the answer should not say whether the account exists: {said}"),
        )?;
        b.check_page("forgot-sent").await?;

        // The link from the mail; a password on the common lists first.
        let link = mailed_links(app, &smtp, &user.email, "Reset your Tessera password")
            .await?
            .pop()
            .ok_or("no reset mail")?;
        b.goto(&link).await?;
        b.check_page("reset").await?;
        expect_focus(b, "#new_password").await?;
        b.keys("password1234").await?;
        b.enter().await?;
        expect_error_focused(b, "too common").await?;
        b.check_page("reset-refused").await?;
        b.fill("#new_password", new_password).await?;
        b.enter().await?;
        expect_path(b, "/login").await?;
        let notice = b.text("[role=status]").await?;
        ensure(notice.contains("Sign in with your new password"), || {
            format!("the sign-in page should say the password changed: {notice}")
        })?;
        b.check_page("login-after-reset").await?;

        // The link is used up.
        b.goto(&link).await?;
        let alert = b.alert().await?;
        ensure(alert.contains("has already been"), || {
            format!("a used link should say so: {alert}")
        })?;
        b.check_page("reset-link-used").await?;

        // The new password leads to the code, not in.
        password_step(b, &user.email, new_password).await?;
        expect_path(b, "/login/2fa").await?;
        expect_focus(b, "#code").await?;
        let code = browser_code(&mut user).await;
        b.keys(&code).await?;
        b.enter().await?;
        expect_path(b, "/home").await?;

        // Changing it again while signed in, from the security page.
        b.goto("/account/security").await?;
        b.activate("a[href='/account/password']").await?;
        expect_path(b, "/account/password").await?;
        b.check_page("change-password").await?;
        expect_focus(b, "#current_password").await?;
        b.keys("not the password").await?;
        b.fill("#new_password", "quiet orchard ferry lamp").await?;
        b.enter().await?;
        expect_error_focused(b, "not your current password").await?;
        b.check_page("change-password-wrong").await?;
        b.fill("#current_password", new_password).await?;
        b.fill("#new_password", "quiet orchard ferry lamp").await?;
        b.enter().await?;
        expect_path(b, "/account/security").await?;
        let notice = b.text("[role=status]").await?;
        ensure(notice.contains("Your password is changed"), || {
            format!("the security page should confirm the change: {notice}")
        })?;
        b.check_page("security-after-change").await
    })
}
