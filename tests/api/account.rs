use reqwest::StatusCode;

use crate::helpers::{
    PASSWORD, enrolled_user, spawn_app, totp, unix_now, wait_clear_of_step_boundary,
};

#[tokio::test]
async fn turning_2fa_off_needs_the_password_and_a_code_and_ends_other_sessions() {
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let elsewhere = app.client();
    elsewhere.sign_in(&mut user).await;
    assert_eq!(elsewhere.get("/home").await.status, StatusCode::OK);

    let code = user.fresh_code().await;
    let wrong_password = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", "wrong password!"), ("code", &code)],
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert!(wrong_password.alert().unwrap().contains("password"));
    assert_eq!(
        app.audit_kinds(&user.id).last().unwrap(),
        "password_check_failed"
    );

    wait_clear_of_step_boundary().await;
    let wrong_code = totp(user.secret.as_ref().unwrap(), unix_now() + 600);
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", &wrong_code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
    assert_eq!(
        elsewhere.get("/home").await.status,
        StatusCode::OK,
        "failures end nothing"
    );

    // The code refused with the wrong password was not spent: it still works.
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/account/security");
    let security = client.get("/account/security").await;
    assert!(security.body.contains("Two-factor sign-in is now off"));
    assert!(security.body.contains("Two-factor sign-in is off."));
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);
    assert_eq!(app.count_rows("recovery_codes", &user.id), 0);
    assert_eq!(
        elsewhere.get("/home").await.status,
        StatusCode::SEE_OTHER,
        "the other session was ended"
    );
    assert_eq!(
        client.get("/home").await.status,
        StatusCode::OK,
        "this one goes on"
    );
    assert_eq!(
        app.audit_kinds(&user.id).last().unwrap(),
        "two_factor_disabled"
    );

    // Without 2FA, the password alone signs in again.
    let fresh = app.client();
    assert_eq!(fresh.password_step(&user).await.location(), "/home");
    app.assert_counts_agree();
}

#[tokio::test]
async fn someone_who_lost_their_device_turns_2fa_off_with_a_recovery_code_and_enrols_again() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    client.password_step(&user).await;
    client
        .post(
            "/login/recovery",
            "/login/recovery",
            &[("code", &user.recovery_codes[0])],
        )
        .await;

    let letters = client.get("/account/security?with=letters").await;
    assert!(letters.body.contains("inputmode=\"text\""));
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", &user.recovery_codes[1])],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(app.count_rows("totp_credentials", &user.id), 0);

    let old_secret = user.secret.clone();
    client.enrol(&mut user).await;
    assert_ne!(user.secret, old_secret, "a new device gets a new secret");
}

#[tokio::test]
async fn a_malformed_code_when_turning_off_is_explained_in_the_terms_the_user_meant() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    for (typed, expected) in [("12345", "6 digits"), ("ABCD-EFGH", "recovery code has 12")] {
        let page = client
            .post(
                "/account/security",
                "/account/2fa/disable",
                &[("password", PASSWORD), ("code", typed)],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{typed}");
        assert!(
            page.alert().unwrap().contains(expected),
            "{typed}: {:?}",
            page.alert()
        );
    }
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
}

#[tokio::test]
async fn turning_off_2fa_that_is_not_on_is_refused() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    client.sign_in(&mut user).await;
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", "123456")],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.alert().unwrap().contains("not on"));
    let page = client
        .post(
            "/account/security",
            "/account/2fa/recovery-codes",
            &[("code", "123456")],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_security_page_shows_the_status_and_codes_left() {
    let app = spawn_app().await;
    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    let page = client.get("/account/security").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Two-factor sign-in is on."));
    assert!(page.body.contains("Turned on "));
    assert!(page.body.contains("id=\"codes-left\">10<"));
    assert!(page.body.contains("action=\"/account/2fa/disable\""));
    assert!(page.body.contains("autocomplete=\"current-password\""));
}
