use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::pending_enrolments;

use crate::helpers::{self, base32_decode, spawn_app, totp, unix_now, wait_clear_of_step_boundary};

#[tokio::test]
async fn the_setup_page_shows_a_qr_code_and_a_key_for_the_same_secret() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;

    let page = client.get("/account/2fa/setup").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store, max-age=0");
    let key = page.totp_secret();
    assert_eq!(base32_decode(&key).len(), 20, "160 bits");
    let shown = page.body.split("id=\"totp-secret\"").nth(1).unwrap();
    assert!(
        shown
            .split('<')
            .next()
            .unwrap()
            .contains(&format!("{} {}", &key[..4], &key[4..8])),
        "grouped in fours"
    );

    let uri = page.qr_payload();
    assert_eq!(
        uri,
        format!("otpauth://totp/Tessera:ada%40example.com?secret={key}&issuer=Tessera"),
        "the QR payload is a standard otpauth URI without padding"
    );
    // Reloading shows the same secret: someone who scanned it is not left behind.
    assert_eq!(client.get("/account/2fa/setup").await.totp_secret(), key);
    // Nothing is enabled yet.
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);
    assert!(
        client
            .get("/account/security")
            .await
            .body
            .contains("Two-factor sign-in is off")
    );
}

#[tokio::test]
async fn the_issuer_is_configurable() {
    let app = crate::helpers::spawn_app_with(&[("ISSUER", "Acme Login")]).await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let uri = client.get("/account/2fa/setup").await.qr_payload();
    assert!(
        uri.starts_with("otpauth://totp/Acme%20Login:ada%40example.com?"),
        "{uri}"
    );
    assert!(uri.ends_with("&issuer=Acme%20Login"), "{uri}");
}

#[tokio::test]
async fn a_wrong_code_enables_nothing() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let page = client.get("/account/2fa/setup").await;
    let secret = base32_decode(&page.totp_secret());
    wait_clear_of_step_boundary().await;
    let wrong = totp(&secret, unix_now() + 120);

    let refused = client
        .post_raw(
            "/account/2fa/setup",
            &[("csrf_token", &page.csrf()), ("code", &wrong)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.alert().unwrap().contains("not accepted"));
    assert_eq!(
        refused.totp_secret(),
        page.totp_secret(),
        "the same key is shown again"
    );
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);
    assert_eq!(app.count_rows("recovery_codes", &user.id), 0);

    let malformed = client
        .post_raw(
            "/account/2fa/setup",
            &[("csrf_token", &page.csrf()), ("code", "12345")],
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);
}

#[tokio::test]
async fn confirming_with_a_code_enables_2fa_and_shows_ten_recovery_codes_once() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let other_session = app.client();
    other_session.sign_in(&mut user).await;

    let page = client.enrol(&mut user).await;
    assert_eq!(page.headers["cache-control"], "no-store, max-age=0");
    for code in &user.recovery_codes {
        assert_eq!(code.len(), 14);
        assert!(code.chars().enumerate().all(|(i, c)| if i == 4 || i == 9 {
            c == '-'
        } else {
            c.is_ascii_alphanumeric()
        }));
    }
    assert!(
        page.body
            .contains("download=\"tessera-recovery-codes.txt\"")
    );
    assert!(
        page.body
            .contains(&format!("{}%0A", user.recovery_codes[0])),
        "the .txt link carries the codes"
    );
    assert!(
        client
            .get("/account/security")
            .await
            .body
            .contains("Two-factor sign-in is on")
    );
    assert_eq!(app.count_rows("recovery_codes", &user.id), 10);
    assert!(
        app.audit_kinds(&user.id)
            .contains(&"two_factor_enabled".to_owned())
    );
    // The session that enabled it goes on; the other session was signed out.
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    assert_eq!(
        other_session.get("/home").await.status,
        StatusCode::SEE_OTHER
    );
    // The setup page is no longer offered.
    let again = client.get("/account/2fa/setup").await;
    assert_eq!(again.location(), "/account/security");
    app.assert_counts_agree();
}

#[tokio::test]
async fn the_recovery_codes_page_prints_and_asks_that_the_codes_were_saved() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let page = client.enrol(&mut user).await;

    // A Print button from a same-origin script (the CSP allows no inline script).
    assert!(
        page.body
            .contains("<script src=\"/static/print.js\" defer></script>")
    );
    assert!(page.body.contains("id=\"print-codes\""));
    let script = client.get("/static/print.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.body.contains("window.print()"));
    // The printed sheet says whose codes they are and when they were made.
    let sheet = helpers::between(&page.body, "class=\"print-only\">", "</p>").unwrap();
    assert!(
        sheet.contains("ada@example.com") && sheet.contains("UTC"),
        "{sheet}"
    );
    // Moving on says the codes are not shown again, and leads to the security page itself
    // (a bare link: a form without fields would add an empty `?`).
    let onwards = helpers::between(
        &page.body,
        "<a class=\"button primary\" id=\"codes-saved\"",
        "</a>",
    )
    .expect("a link leads on to the security page");
    assert!(onwards.contains("href=\"/account/security\">"), "{onwards}");
    assert!(onwards.contains("I have saved them"), "{onwards}");
    assert!(page.body.contains("they are not shown again"));
}

#[tokio::test]
async fn the_confirming_code_cannot_be_used_again_to_sign_in() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let setup = client.get("/account/2fa/setup").await;
    let secret = base32_decode(&setup.totp_secret());
    wait_clear_of_step_boundary().await;
    let code = totp(&secret, unix_now());
    let enabled = client
        .post_raw(
            "/account/2fa/setup",
            &[("csrf_token", &setup.csrf()), ("code", &code)],
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK);

    let thief = app.client();
    thief.password_step(&user).await;
    let page = thief
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_setup_key_is_replaced_and_cannot_be_confirmed() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let setup = client.get("/account/2fa/setup").await;
    let old_secret = base32_decode(&setup.totp_secret());

    // Sixteen minutes pass.
    diesel::update(pending_enrolments::table.find(&user.id))
        .set(pending_enrolments::expires_at.eq(tessera::db::now() - 60))
        .execute(&mut *app.conn())
        .unwrap();
    wait_clear_of_step_boundary().await;
    let code = totp(&old_secret, unix_now());
    let page = client
        .post_raw(
            "/account/2fa/setup",
            &[("csrf_token", &setup.csrf()), ("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/account/2fa/setup");
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);

    let fresh = client.get("/account/2fa/setup").await;
    assert!(fresh.body.contains("expired"));
    assert_ne!(base32_decode(&fresh.totp_secret()), old_secret);
}

#[tokio::test]
async fn of_two_racing_confirmations_exactly_one_enables() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let setup = client.get("/account/2fa/setup").await;
    let secret = base32_decode(&setup.totp_secret());
    let csrf = setup.csrf();
    wait_clear_of_step_boundary().await;
    let (a, b) = (totp(&secret, unix_now() - 30), totp(&secret, unix_now()));
    let (first, second) = tokio::join!(
        client.post_raw("/account/2fa/setup", &[("csrf_token", &csrf), ("code", &a)]),
        client.post_raw("/account/2fa/setup", &[("csrf_token", &csrf), ("code", &b)]),
    );
    // The loser is refused whichever way it raced: 409 when it reached the enrolment after
    // the winner took it; and when it arrived after the winner had already ended this
    // session (enabling 2FA ends every session of the user and moves this one to a new id),
    // the guard finds no session and sends it to sign in (303 /login) before reading its
    // form — or, had the session survived without its token, 403.
    let (winner, loser) = if first.status == StatusCode::OK {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert_eq!(winner.status, StatusCode::OK, "{}", winner.body);
    match loser.status {
        StatusCode::CONFLICT | StatusCode::FORBIDDEN => {
            assert!(loser.alert().is_some(), "{}", loser.body)
        }
        StatusCode::SEE_OTHER => assert_eq!(loser.location(), "/login"),
        other => panic!("the loser got {other}: {}", loser.body),
    }
    assert_eq!(winner.recovery_codes().len(), 10);
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
    assert_eq!(app.count_rows("recovery_codes", &user.id), 10);
    app.assert_counts_agree();
}

/// Someone else who knows the password must not get to choose the secret the owner then
/// confirms: each session gets its own setup key, and only that session can confirm it.
#[tokio::test]
async fn a_setup_key_belongs_to_the_session_that_asked_for_it() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let (intruder, owner) = (app.client(), app.client());
    intruder.sign_in(&mut user).await;
    owner.sign_in(&mut user).await;

    let planted = intruder.get("/account/2fa/setup").await;
    let planted_secret = base32_decode(&planted.totp_secret());
    let own = owner.get("/account/2fa/setup").await;
    let own_secret = base32_decode(&own.totp_secret());
    assert_ne!(
        own_secret, planted_secret,
        "the owner is shown a secret of their own"
    );

    // The intruder's key was replaced: confirming it enables nothing.
    wait_clear_of_step_boundary().await;
    let refused = intruder
        .post_raw(
            "/account/2fa/setup",
            &[
                ("csrf_token", &planted.csrf()),
                ("code", &totp(&planted_secret, unix_now())),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(refused.location(), "/account/2fa/setup");
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);

    // The owner confirms their own key, and only codes from it work from then on.
    let enabled = owner
        .post_raw(
            "/account/2fa/setup",
            &[
                ("csrf_token", &own.csrf()),
                ("code", &totp(&own_secret, unix_now())),
            ],
        )
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.body);
    let late = app.client();
    late.password_step(&user).await;
    let challenge = late.get("/login/2fa").await;
    let with_planted = late
        .post_raw(
            "/login/2fa",
            &[
                ("csrf_token", &challenge.csrf()),
                ("code", &totp(&planted_secret, unix_now() + 30)),
            ],
        )
        .await;
    assert_eq!(with_planted.status, StatusCode::UNAUTHORIZED);
    user.secret = Some(own_secret);
    user.last_step = unix_now() / 30;
    app.client().sign_in(&mut user).await;
}

#[tokio::test]
async fn two_setup_pages_loaded_at_once_show_one_key() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let (a, b) = tokio::join!(
        client.get("/account/2fa/setup"),
        client.get("/account/2fa/setup")
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    assert_eq!(a.totp_secret(), b.totp_secret());
    assert_eq!(app.count_rows("pending_enrolments", &user.id), 1);
}
