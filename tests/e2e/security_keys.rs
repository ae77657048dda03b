//! Security keys and passkeys in a real browser: Chromium's virtual authenticators (the
//! WebDriver WebAuthn extension) stand in for a USB key and a laptop's fingerprint reader,
//! and answer `static/webauthn.js` as real ones would. By keyboard, every new page checked.
//!
//! One authenticator is attached at a time: two would both answer a request either can
//! satisfy, and one holding an excluded credential can end a `create()` with
//! `InvalidStateError`. Credentials move between them with the get/add credential commands.

use tessera::domain::Role;

use crate::Journey;
use crate::browser::{Authenticator, Browser, Outcome, VirtualCredential};
use crate::common::{PASSWORD, TestApp, enrol_as};
use crate::journeys::{
    Spec, ensure, expect_error_focused, expect_focus, expect_path, password_step,
    save_recovery_codes, sign_in, sign_out,
};

pub const ALL: &[Spec] = &[
    (
        "an_admin_adds_a_security_key_and_a_passkey_signs_in_with_each_and_removes_one",
        &[],
        security_keys_and_passkeys,
    ),
    (
        "required_phishing_resistant_sign_in_holds_a_member_until_they_add_a_key_then_support_resets_them",
        &[],
        keys_required,
    ),
];

const YUBIKEY: &str = "YubiKey on my keyring";
const LAPTOP: &str = "Laptop passkey";

/// The names in the page's list of keys (`.security-key` elements).
async fn listed_keys(b: &Browser) -> Outcome<Vec<String>> {
    b.texts(".security-key").await
}

/// Presses Enter on the focused ceremony button and waits for the script's alert to say
/// `contains` (the browser answers asynchronously; no page follows).
async fn press_for_alert(b: &Browser, contains: &str) -> Outcome {
    b.press_enter().await?;
    let said = serde_json::to_string(contains).map_err(|e| e.to_string())?;
    b.wait_for(
        &format!(
            "const a = document.querySelector('[role=alert]');
             return !!a && a.innerText.includes({said})"
        ),
        &format!("an alert saying “{contains}”"),
    )
    .await?;
    expect_error_focused(b, contains).await
}

/// On the registration page: names a key and adds it as a second factor, by keyboard.
async fn add_security_key(b: &Browser, name: &str) -> Outcome {
    expect_path(b, "/account/security-keys/new").await?;
    expect_focus(b, "#key-name").await?;
    b.keys(name).await?;
    b.tab_to("#register-security-key").await?;
    b.enter().await
}

/// The `id` of the `.security-key` element that names `name`.
async fn key_element(b: &Browser, name: &str) -> Outcome<String> {
    let name = serde_json::to_string(name).map_err(|e| e.to_string())?;
    let id = b
        .js_string(&format!(
            "const k = [...document.querySelectorAll('.security-key')]
                 .find(e => e.innerText.includes({name}));
             return k ? k.id : ''"
        ))
        .await?;
    ensure(!id.is_empty(), || format!("no .security-key names {name}"))?;
    Ok(id)
}

fn security_keys_and_passkeys<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let admin = app.user_in("acme", "keys@acme.example", Role::Admin);
        let usb = b.add_authenticator(Authenticator::SecurityKey).await?;

        // 1. An admin without 2FA adds a USB key from the security page.
        password_step(b, &admin.email, PASSWORD).await?;
        expect_path(b, "/home").await?;
        b.goto("/account/security").await?;
        b.focus_start().await?;
        b.activate("a[href='/account/security-keys/new']").await?;
        expect_path(b, "/account/security-keys/new").await?;
        b.check_page("security-key-new").await?;
        expect_focus(b, "#key-name").await?;
        // The button before a name: the script asks for one and starts nothing.
        b.tab_to("#register-security-key").await?;
        press_for_alert(b, "Give the key a name first.").await?;
        b.check_page("security-key-new-no-name").await?;
        b.fill("#key-name", YUBIKEY).await?;
        // This key has no PIN: as a passkey the browser refuses it, without saying why,
        // and the page suggests what to change.
        b.tick("#passwordless").await?;
        b.tab_to("#register-security-key").await?;
        press_for_alert(b, "may not work as a passkey").await?;
        b.check_page("security-key-new-not-a-passkey").await?;
        // Unticked: a second factor.
        b.tick("#passwordless").await?;
        b.tab_to("#register-security-key").await?;
        b.enter().await?;
        // The first factor comes with recovery codes.
        save_recovery_codes(b, "security-key-recovery-codes").await?;
        let keys = listed_keys(b).await?;
        ensure(keys.len() == 1 && keys[0].contains(YUBIKEY), || {
            format!("the security page should list the key: {keys:?}")
        })?;
        b.check_page("security-with-key").await?;

        // 2. Password, then the key.
        sign_out(b).await?;
        password_step(b, &admin.email, PASSWORD).await?;
        expect_path(b, "/login/2fa").await?;
        b.check_page("second-factor-key").await?;
        b.focus_start().await?;
        b.activate("#use-security-key").await?;
        expect_path(b, "/home").await?;

        // 3. The USB key goes in a drawer (its credential kept), the laptop's own
        // authenticator registers a passkey, through the script's fallback conversion
        // (browsers before 2025 have neither parseCreationOptionsFromJSON nor toJSON).
        let held = b.credentials(&usb).await?;
        ensure(held.len() == 1, || {
            format!("the USB key should hold one credential: {held:?}")
        })?;
        let yubikey = held[0].clone();
        b.remove_authenticator(&usb).await?;
        let laptop = b.add_authenticator(Authenticator::Passkey).await?;
        b.goto("/account/security-keys/new").await?;
        b.js("delete PublicKeyCredential.parseCreationOptionsFromJSON;
              delete PublicKeyCredential.prototype.toJSON;
              return null")
            .await?;
        expect_focus(b, "#key-name").await?;
        b.keys(LAPTOP).await?;
        b.tick("#passwordless").await?;
        b.activate("#register-security-key").await?;
        expect_path(b, "/account/security").await?;
        let keys = listed_keys(b).await?;
        ensure(
            keys.len() == 2 && keys.iter().any(|k| k.contains(LAPTOP)),
            || format!("the security page should list both keys: {keys:?}"),
        )?;
        b.check_page("security-with-two-keys").await?;
        let passkey = b.credentials(&laptop).await?;
        ensure(
            passkey.len() == 1
                && passkey[0].is_resident_credential
                && passkey[0].rp_id == "localhost",
            || {
                format!(
                    "the laptop should hold one discoverable credential for localhost: {passkey:?}"
                )
            },
        )?;

        // 4. A passkey alone signs in: no email, no password. Through the fallback again,
        // for the answer's userHandle (encoded by the script, never sent as "").
        sign_out(b).await?;
        b.check_page("login-with-passkey").await?;
        b.js("delete PublicKeyCredential.parseRequestOptionsFromJSON;
              delete PublicKeyCredential.prototype.toJSON;
              return null")
            .await?;
        b.focus_start().await?;
        b.activate("#sign-in-with-passkey").await?;
        expect_path(b, "/home").await?;
        let who = b.text(".who").await?;
        ensure(who == admin.email, || {
            format!(
                "the passkey should sign in {}, the page says {who:?}",
                admin.email
            )
        })?;

        // 5. A key with the right credential id but another private key is refused (the
        // signature fails on the server), and the real key still works afterwards.
        sign_out(b).await?;
        b.remove_authenticator(&laptop).await?;
        let impostor = b.add_authenticator(Authenticator::SecurityKey).await?;
        let forged = VirtualCredential {
            private_key: b.new_private_key().await?,
            ..yubikey.clone()
        };
        b.add_credential(&impostor, &forged).await?;
        password_step(b, &admin.email, PASSWORD).await?;
        expect_path(b, "/login/2fa").await?;
        b.focus_start().await?;
        b.activate("#use-security-key").await?;
        expect_error_focused(b, "not accepted").await?;
        b.check_page("second-factor-key-refused").await?;
        b.remove_authenticator(&impostor).await?;
        let usb = b.add_authenticator(Authenticator::SecurityKey).await?;
        b.add_credential(&usb, &yubikey).await?;
        b.focus_start().await?;
        b.activate("#use-security-key").await?;
        expect_path(b, "/home").await?;

        // With keys only, new recovery codes are confirmed with a key too.
        b.goto("/account/security").await?;
        b.focus_start().await?;
        b.activate("#confirm-with-security-key").await?;
        save_recovery_codes(b, "recovery-codes-by-key").await?;

        // 6. The USB key is removed, with the password.
        let element = key_element(b, YUBIKEY).await?;
        b.focus_start().await?;
        b.tab_to(&format!("#{element} summary")).await?;
        b.press_enter().await?;
        b.fill(&format!("#{element} input[name=password]"), PASSWORD)
            .await?;
        b.enter().await?;
        expect_path(b, "/account/security").await?;
        let keys = listed_keys(b).await?;
        ensure(keys.len() == 1 && keys[0].contains(LAPTOP), || {
            format!("only the passkey should be left: {keys:?}")
        })?;
        b.check_page("security-key-removed").await?;
        let kinds = app.audit_kinds(&admin.id);
        for kind in [
            "key_added",
            "second_factor_succeeded",
            "second_factor_failed",
            "key_removed",
        ] {
            ensure(kinds.iter().any(|k| k == kind), || {
                format!("the audit log should have {kind}: {kinds:?}")
            })?;
        }
        b.goto("/admin/audit").await?;
        let log = b.body_text().await?;
        for said in [
            "Security key added",
            "Second factor accepted",
            "Second factor refused",
            "Security key removed",
        ] {
            ensure(log.contains(said), || {
                format!("the audit page should say “{said}”:\n{log}")
            })?;
        }
        b.check_page("audit-with-keys").await?;

        // A browser without WebAuthn keeps the button hidden and says why.
        sign_out(b).await?;
        b.without_webauthn().await?;
        b.reload().await?;
        let shown = b
            .js(
                "return [document.getElementById('sign-in-with-passkey').hidden,
                         document.querySelector('.webauthn-unsupported').hidden,
                         document.querySelector('.webauthn-unsupported').innerText]",
            )
            .await?;
        ensure(shown[0] == true && shown[1] == false, || {
            format!("without WebAuthn the button stays hidden and the reason shows: {shown}")
        })?;
        ensure(
            shown[2].as_str().is_some_and(|t| {
                t.contains("cannot use security keys") && t.contains("password above")
            }),
            || {
                format!(
                    "the page should say this browser cannot use keys, and what else works: {shown}"
                )
            },
        )?;
        b.check_page("login-without-webauthn").await
    })
}

/// Plan §5b step 7: the admin requires a key (grace 0); a member without one is held at
/// adding one, adds it, and reaches home. One USB authenticator serves both accounts (each
/// registration excludes only that account's own keys).
fn keys_required<'a>(app: &'a TestApp, b: &'a Browser) -> Journey<'a> {
    Box::pin(async move {
        let admin = app.user_in("acme", "boss@acme.example", Role::Admin);
        let member = app.user("staffer@acme.example");
        b.add_authenticator(Authenticator::SecurityKey).await?;

        // The admin needs a key of their own to turn the requirement on.
        password_step(b, &admin.email, PASSWORD).await?;
        b.goto("/account/security-keys/new").await?;
        add_security_key(b, "Admin's YubiKey").await?;
        save_recovery_codes(b, "admin-key-recovery-codes").await?;
        b.goto("/admin/workspace").await?;
        b.focus_start().await?;
        b.tick("#require_phishing_resistant").await?;
        b.fill("#grace_days", "0").await?;
        b.activate("form button.primary").await?;
        expect_path(b, "/admin/workspace").await?;
        let status = b.text("#keys-status").await?;
        ensure(status.contains("must use a security key"), || {
            format!("the workspace page should say keys are required: {status}")
        })?;
        b.check_page("admin-workspace-keys-required").await?;
        sign_out(b).await?;

        // The member is held at adding a key, and nowhere else.
        password_step(b, &member.email, PASSWORD).await?;
        expect_path(b, "/account/security-keys/new").await?;
        let why = b.text("#key-required").await?;
        ensure(why.contains("requires a security key"), || {
            format!("the page should say why the member is held here: {why}")
        })?;
        b.check_page("security-key-new-held").await?;
        b.goto("/home").await?;
        expect_path(b, "/account/security-keys/new").await?;
        add_security_key(b, "My key").await?;
        save_recovery_codes(b, "member-key-recovery-codes").await?;
        b.goto("/home").await?;
        expect_path(b, "/home").await?;

        // And the next sign-in asks for the key.
        sign_out(b).await?;
        password_step(b, &member.email, PASSWORD).await?;
        expect_path(b, "/login/2fa").await?;
        b.focus_start().await?;
        b.activate("#use-security-key").await?;
        expect_path(b, "/home").await?;
        sign_out(b).await?;

        // The member's key is lost: support staff reset them, with a reason.
        let (mut staff, _) = enrol_as(app, app.staff_in("helpdesk", "staff@help.example")).await;
        sign_in(b, &mut staff).await?;
        b.goto("/support/users?q=staffer%40").await?;
        let reason = "Lost their key; identity checked in person";
        b.fill(&format!("#reason-{}", member.id), reason).await?;
        b.enter().await?;
        let notice = b.body_text().await?;
        ensure(
            notice.contains("staffer@acme.example") && notice.contains("security key"),
            || format!("support should see whose factors went, keys named:\n{notice}"),
        )?;
        b.check_page("support-reset-key-member").await?;
        sign_out(b).await?;
        ensure(app.count_rows("security_keys", &member.id) == 0, || {
            "the reset should remove the member's key".into()
        })?;

        // Held again at once (a reset under the requirement has no grace).
        password_step(b, &member.email, PASSWORD).await?;
        expect_path(b, "/account/security-keys/new").await?;
        sign_out(b).await?;

        // All audited, all mailed.
        let kinds = app.audit_kinds(&member.id);
        for kind in ["key_added", "second_factor_succeeded", "two_factor_reset"] {
            ensure(kinds.iter().any(|k| k == kind), || {
                format!("the member's audit trail should have {kind}: {kinds:?}")
            })?;
        }
        let reset = app.audit_events("two_factor_reset");
        ensure(
            reset
                .iter()
                .any(|e| e.detail.contains(reason) && e.detail.contains("security key")),
            || "support's reset should be audited with its reason and the key".into(),
        )?;
        let mails = app.outbox_kinds("staffer@acme.example");
        for kind in ["enforcement_on", "security_key_added", "two_factor_reset"] {
            ensure(mails.iter().any(|k| k == kind), || {
                format!("the member should be mailed {kind}: {mails:?}")
            })?;
        }
        Ok(())
    })
}
