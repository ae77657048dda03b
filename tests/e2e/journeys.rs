//! The journeys, each a person's path through the real app in a real browser, by keyboard.
//! Every page reached is checked and photographed (`Browser::check_page`).

use tessera::db::models::SetupTokens;
use tessera::random::sha256_hex;

use crate::Journey;
use crate::browser::{Browser, Outcome};
use crate::common::{
    PASSWORD, TestApp, TestUser, base32_decode, enrol_as, enrolled_admin, enrolled_user, totp,
    unix_now, wait_clear_of_step_boundary,
};

pub(crate) type Spec = (
    &'static str,
    &'static [(&'static str, &'static str)],
    crate::JourneyFn,
);

pub const ALL: &[Spec] = &[
    (
        "a_new_admin_sets_up_tessera_and_uses_every_second_factor_path",
        &[],
        first_run_and_every_second_factor_path,
    ),
    (
        "required_2fa_shows_a_banner_then_holds_the_member_at_enrolment",
        &[],
        enforcement_with_grace,
    ),
    (
        "an_admin_and_support_staff_reset_members_and_the_reason_is_audited",
        &[],
        resets_by_admin_and_support,
    ),
    (
        "too_many_sign_in_attempts_show_the_rate_limit_page",
        &[("RATE_LIMIT_LOGIN_PER_IP", "3")],
        rate_limit_page,
    ),
    (
        "back_and_reload_never_resubmit_a_code_or_reopen_a_closed_session",
        &[],
        back_and_reload,
    ),
];

/// A code the server accepts for at least the next half minute: for the current time step
/// or the next, never the previous one (which may run out while the browser is still
/// typing), and never a step this user has used.
pub(crate) async fn browser_code(user: &mut TestUser) -> String {
    loop {
        wait_clear_of_step_boundary().await;
        let current = unix_now() / 30;
        let step = (user.last_step + 1).max(current);
        if step <= current + 1 {
            user.last_step = step;
            return totp(user.secret.as_ref().expect("enrolled"), step * 30);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The designed error page for `status`.
pub(crate) async fn expect_error_page(b: &Browser, status: u16) -> Outcome {
    let label = b.text(".error-code").await?;
    ensure(
        label.eq_ignore_ascii_case(&format!("Error {status}")),
        || format!("expected the {status} page, the page says {label:?}"),
    )
}

pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(message()) }
}

pub(crate) async fn expect_path(b: &Browser, expected: &str) -> Outcome {
    let path = b.path().await?;
    ensure(path == expected, || {
        format!("expected to be on {expected}, but on {path}")
    })
}

/// The page put the focus where typing should start.
pub(crate) async fn expect_focus(b: &Browser, selector: &str) -> Outcome {
    let ok = b.focused_matches(selector).await?;
    let now = b.focused().await?;
    ensure(ok, || {
        format!("focus should be on `{selector}`, but is on {now}")
    })?;
    b.assert_visible_focus().await
}

/// After a failed submit the focus is on the error message, which names the problem.
pub(crate) async fn expect_error_focused(b: &Browser, contains: &str) -> Outcome {
    let alert = b.alert().await?;
    ensure(alert.contains(contains), || {
        format!("the alert should say “{contains}”, it says “{alert}”")
    })?;
    expect_focus(b, "[role=alert]").await
}

/// Opens the sign-in page and types an email and a password, as a person would.
pub(crate) async fn password_step(b: &Browser, email: &str, password: &str) -> Outcome {
    b.goto("/login").await?;
    expect_focus(b, "#email").await?;
    b.keys(email).await?;
    b.fill("#password", password).await?;
    b.enter().await
}

/// Signs `user` in from the sign-in page, typing as a person would.
pub(crate) async fn sign_in(b: &Browser, user: &mut TestUser) -> Outcome {
    password_step(b, &user.email, &user.password).await?;
    if user.secret.is_some() {
        expect_path(b, "/login/2fa").await?;
        expect_focus(b, "#code").await?;
        let code = browser_code(user).await;
        b.keys(&code).await?;
        b.enter().await?;
    }
    Ok(())
}

pub(crate) async fn sign_out(b: &Browser) -> Outcome {
    b.focus_start().await?;
    b.activate("form[action='/logout'] button").await?;
    expect_path(b, "/login").await
}

/// On the recovery-codes page: reads the codes, confirms they are saved, moves on.
pub(crate) async fn save_recovery_codes(b: &Browser, name: &str) -> Outcome<Vec<String>> {
    let codes = b.texts(".recovery-code").await?;
    ensure(codes.len() == 10, || {
        format!("expected 10 recovery codes, got {codes:?}")
    })?;
    b.check_page(name).await?;
    let file = b.download("a[download]").await?;
    ensure(codes.iter().all(|c| file.contains(c.as_str())), || {
        format!("the downloaded file should hold every code:\n{file}")
    })?;
    b.print_preview(name).await?;
    let print = b
        .js("return !document.getElementById('print-codes').hidden")
        .await?;
    ensure(print == serde_json::json!(true), || {
        "the Print button should show when scripts run".into()
    })?;
    b.activate("#codes-saved").await?;
    expect_path(b, "/account/security").await?;
    Ok(codes)
}

/// Enrols the signed-in user on the setup page: key read from the page, code computed here.
pub(crate) async fn enrol(b: &Browser, user: &mut TestUser, name: &str) -> Outcome<Vec<String>> {
    expect_path(b, "/account/2fa/setup").await?;
    b.check_page(name).await?;
    let qr = b
        .js("const q = document.getElementById('totp-qr');
             return q ? q.getBoundingClientRect().width : 0")
        .await?;
    ensure(qr.as_f64().unwrap_or(0.0) >= 200.0, || {
        format!("the QR code should be at least 200 px wide to scan from a screen ({qr})")
    })?;
    // Read as a person typing it would (it may sit in a closed "type the key" section).
    let key = b
        .js_string("return document.getElementById('totp-secret').textContent")
        .await?;
    user.secret = Some(base32_decode(key.trim()));
    user.last_step = 0;
    // No autofocus here: on a phone it would scroll past the QR code and the key.
    b.fill("#code", "000000").await?;
    b.enter().await?;
    expect_error_focused(b, "not accepted").await?;
    b.check_page(&format!("{name}-wrong-code")).await?;
    let code = browser_code(user).await;
    b.fill("#code", &code).await?;
    b.enter().await?;
    save_recovery_codes(b, &format!("{name}-recovery-codes")).await
}

fn setup_link(app: &TestApp) -> String {
    let token = tessera::random::token::<32>().unwrap();
    SetupTokens::insert(&mut app.conn(), &sha256_hex(&token), tessera::db::now()).unwrap();
    format!("/setup?token={token}")
}

fn first_run_and_every_second_factor_path<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        b.goto(&setup_link(app)).await?;
        b.check_page("setup").await?;
        expect_focus(b, "#workspace_name").await?;
        b.keys("Acme Ltd").await?;
        b.fill("#workspace_slug", "acme").await?;
        b.fill("#name", "Ada Lovelace").await?;
        b.fill("#email", "ada@acme.example").await?;
        b.fill("#password", PASSWORD).await?;
        b.enter().await?;

        let mut ada = TestUser {
            id: String::new(),
            email: "ada@acme.example".into(),
            password: PASSWORD.into(),
            secret: None,
            recovery_codes: Vec::new(),
            last_step: 0,
        };
        let codes = enrol(b, &mut ada, "enrol-first-admin").await?;
        b.check_page("security").await?;
        b.goto("/account/sessions").await?;
        b.check_page("sessions").await?;

        // Sign out, and back in with a code: a wrong one first.
        sign_out(b).await?;
        b.check_page("login").await?;
        password_step(b, &ada.email, PASSWORD).await?;
        expect_path(b, "/login/2fa").await?;
        b.check_page("second-factor").await?;
        expect_focus(b, "#code").await?;
        b.keys("123456").await?;
        b.enter().await?;
        expect_error_focused(b, "not accepted").await?;
        b.check_page("second-factor-wrong-code").await?;
        let code = browser_code(&mut ada).await;
        b.fill("#code", &code).await?;
        b.enter().await?;
        expect_path(b, "/home").await?;
        b.check_page("home").await?;
        let welcome = b.text("h1").await?;
        ensure(welcome.contains("Ada Lovelace"), || {
            format!("home should greet Ada, it says {welcome}")
        })?;

        // Lost phone: a recovery code, typed in lower case with spaces.
        sign_out(b).await?;
        password_step(b, &ada.email, PASSWORD).await?;
        b.activate("a[href='/login/recovery']").await?;
        expect_path(b, "/login/recovery").await?;
        b.check_page("recovery-sign-in").await?;
        expect_focus(b, "#code").await?;
        b.keys(&codes[0].to_lowercase().replace('-', " ")).await?;
        b.enter().await?;
        // Someone using a recovery code has usually lost their phone: they land on the
        // security page, which says how many codes are left.
        expect_path(b, "/account/security").await?;
        let status = b.text("[role=status]").await?;
        ensure(status.contains("9 left"), || {
            format!("the security page should count 9 codes left: {status}")
        })?;
        b.check_page("security-after-recovery-code").await?;

        // New recovery codes: the old set stops working.
        let code = browser_code(&mut ada).await;
        b.fill("#regenerate-code", &code).await?;
        b.enter().await?;
        let fresh = save_recovery_codes(b, "recovery-codes-regenerated").await?;
        ensure(fresh.iter().all(|c| !codes.contains(c)), || {
            "the new codes must all be new".into()
        })?;

        // Turn 2FA off with password and a code.
        b.fill("#disable-password", PASSWORD).await?;
        let code = browser_code(&mut ada).await;
        b.fill("#disable-code", &code).await?;
        b.enter().await?;
        expect_path(b, "/account/security").await?;
        b.check_page("security-2fa-off").await?;
        let status = b.body_text().await?;
        ensure(status.contains("Set up two-factor sign-in"), || {
            format!("2FA should now be off:\n{status}")
        })
    })
}

fn enforcement_with_grace<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let (mut admin, _) = enrolled_admin(app, "acme", "grace@acme.example").await;
        let mut member = app.user("member@acme.example");

        sign_in(b, &mut admin).await?;
        b.goto("/admin/workspace").await?;
        b.check_page("admin-workspace").await?;
        b.tick("#require_2fa").await?;
        b.fill("#grace_days", "7").await?;
        b.activate("form button.primary").await?;
        expect_path(b, "/admin/workspace").await?;
        b.check_page("admin-workspace-required").await?;
        b.goto("/admin/users").await?;
        b.check_page("admin-members").await?;
        b.goto("/admin/audit").await?;
        b.check_page("admin-audit").await?;
        sign_out(b).await?;

        sign_in(b, &mut member).await?;
        expect_path(b, "/home").await?;
        let left = b.text("#grace-days-left").await?;
        ensure(left == "7", || {
            format!("the banner should show 7 days left, shows {left:?}")
        })?;
        b.check_page("home-grace-banner").await?;
        sign_out(b).await?;

        app.clock().advance(8 * 86_400);
        sign_in(b, &mut member).await?;
        expect_path(b, "/account/2fa/setup").await?;
        b.goto("/home").await?;
        expect_path(b, "/account/2fa/setup").await?;
        enrol(b, &mut member, "enrol-required").await?;
        b.goto("/home").await?;
        expect_path(b, "/home").await
    })
}

fn resets_by_admin_and_support<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let (mut admin, _) = enrolled_admin(app, "acme", "admin@acme.example").await;
        let (mut staff, _) = enrol_as(app, app.staff_in("helpdesk", "staff@help.example")).await;
        let (locked_out, member_client) = enrolled_user(app, "lost@acme.example").await;
        let (second, _) = enrolled_user(app, "another@acme.example").await;

        sign_in(b, &mut admin).await?;
        b.goto("/admin/users?q=lost").await?;
        b.check_page("admin-members-search").await?;
        b.focus_start().await?;
        b.tick(&format!("#confirm-{}", locked_out.id)).await?;
        b.activate(&format!(
            "form[action='/admin/users/{}/reset-2fa'] button",
            locked_out.id
        ))
        .await?;
        let notice = b.body_text().await?;
        ensure(notice.contains("lost@acme.example"), || {
            format!("the page should confirm whose 2FA was reset:\n{notice}")
        })?;
        b.check_page("admin-reset-done").await?;
        let home = member_client.get("/home").await;
        ensure(home.location().starts_with("/login"), || {
            "the reset member's session should have ended".into()
        })?;
        sign_out(b).await?;

        sign_in(b, &mut staff).await?;
        b.goto("/support/users").await?;
        b.check_page("support-search").await?;
        expect_focus(b, "#q").await?;
        b.keys("another@").await?;
        b.enter().await?;
        b.check_page("support-results").await?;
        let reason = "Lost phone; identity checked on a video call";
        b.fill(&format!("#reason-{}", second.id), reason).await?;
        b.enter().await?;
        let notice = b.body_text().await?;
        ensure(notice.contains("another@acme.example"), || {
            format!("support should see whose 2FA was reset:\n{notice}")
        })?;
        b.check_page("support-reset-done").await?;
        sign_out(b).await?;

        sign_in(b, &mut admin).await?;
        b.goto("/admin/audit").await?;
        let log = b.body_text().await?;
        ensure(log.contains(reason), || {
            format!("the admin's audit log should show support's reason:\n{log}")
        })?;
        b.check_page("admin-audit-with-support-reset").await
    })
}

fn rate_limit_page<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let user = app.user("tries@acme.example");
        for attempt in 1..=3 {
            password_step(b, &user.email, "not the password at all").await?;
            expect_error_focused(b, "do not match").await?;
            if attempt == 1 {
                b.check_page("login-wrong-password").await?;
            }
        }
        password_step(b, &user.email, PASSWORD).await?;
        let alert = b.alert().await?;
        ensure(alert.to_lowercase().contains("try again"), || {
            format!("the rate-limit page should say when to try again: {alert}")
        })?;
        expect_error_page(b, 429).await?;
        b.check_page("error-429").await?;
        b.focus_start().await?;
        b.activate("main a[href='/']").await?;
        expect_path(b, "/login").await
    })
}

fn back_and_reload<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let (mut user, _) = enrolled_user(app, "history@acme.example").await;

        // Password step, then reload the code page: still asks for the code.
        password_step(b, &user.email, PASSWORD).await?;
        b.reload().await?;
        expect_path(b, "/login/2fa").await?;

        let code = browser_code(&mut user).await;
        b.keys(&code).await?;
        b.enter().await?;
        expect_path(b, "/home").await?;
        // Back to the code form: the server moves a signed-in session on, nothing is posted.
        b.back().await?;
        expect_path(b, "/home").await?;
        b.reload().await?;
        expect_path(b, "/home").await?;
        let successes = app
            .audit_kinds(&user.id)
            .iter()
            .filter(|k| *k == "sign_in_succeeded")
            .count();
        ensure(successes == 2, || {
            format!("one sign-in at enrolment and one here, got {successes}")
        })?;

        // New recovery codes: reloading the page posts the form again, and the used code
        // is refused, so the set just shown stays the one that works.
        b.goto("/account/security").await?;
        let code = browser_code(&mut user).await;
        b.fill("#regenerate-code", &code).await?;
        b.enter().await?;
        let codes = b.texts(".recovery-code").await?;
        ensure(codes.len() == 10, || {
            format!("expected 10 codes: {codes:?}")
        })?;
        b.reload().await?;
        expect_error_focused(b, "not accepted").await?;
        ensure(b.texts(".recovery-code").await?.is_empty(), || {
            "a refused resubmission must not show codes".into()
        })?;
        // Shown once: not again from history.
        b.back().await?;
        let page = b.body_text().await?;
        ensure(codes.iter().all(|c| !page.contains(c.as_str())), || {
            "going back must not show the recovery codes again".into()
        })?;

        // A stale form (its CSRF token no longer valid) gets the 403 page.
        b.goto("/account/security").await?;
        b.js("document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'stale'); return null")
            .await?;
        b.fill("#regenerate-code", "123456").await?;
        b.enter().await?;
        expect_error_page(b, 403).await?;
        b.check_page("error-403").await?;
        // An unknown page while signed in: the 404 page, with a way back.
        b.goto("/no/such/page").await?;
        expect_error_page(b, 404).await?;
        b.check_page("error-404").await?;
        b.focus_start().await?;
        b.activate("main a[href='/']").await?;
        expect_path(b, "/home").await?;

        // After signing out, history must not reopen a protected page.
        b.goto("/account/security").await?;
        sign_out(b).await?;
        b.back().await?;
        let path = b.path().await?;
        ensure(path.starts_with("/login"), || {
            format!("back after sign-out should land on sign-in, landed on {path}")
        })?;
        let page = b.body_text().await?;
        ensure(!page.contains(&user.email), || {
            format!("back after sign-out showed the account:\n{page}")
        })?;

        // The codes shown before the reload are the live set.
        password_step(b, &user.email, PASSWORD).await?;
        b.goto("/login/recovery").await?;
        b.keys(&codes[3]).await?;
        b.enter().await?;
        expect_path(b, "/account/security").await
    })
}
