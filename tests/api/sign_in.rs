use reqwest::StatusCode;

use crate::helpers::{PASSWORD, session_cookie, spawn_app};

#[tokio::test]
async fn a_user_without_2fa_signs_in_with_the_password_alone() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let client = app.client();

    let page = client.password_step(&user).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/home");
    let home = client.get("/home").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("ada@example.com"));
    assert!(home.body.contains("Two-factor sign-in is off"));
    assert_eq!(app.audit_kinds(&user.id), ["sign_in_succeeded"]);
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let client = app.client();

    let wrong_password = client
        .post(
            "/login",
            "/login",
            &[("email", &user.email), ("password", "not the password")],
        )
        .await;
    let unknown_email = client
        .post(
            "/login",
            "/login",
            &[
                ("email", "nobody@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_email.status, wrong_password.status);
    assert_eq!(unknown_email.alert(), wrong_password.alert());
    assert!(wrong_password.alert().unwrap().contains("do not match"));
    // Still anonymous: protected pages send us to sign in.
    assert_eq!(client.get("/home").await.location(), "/login?next=%2Fhome");
    assert_eq!(app.audit_kinds(&user.id), ["sign_in_failed"]);
}

#[tokio::test]
async fn emails_match_whatever_their_case_and_surrounding_spaces() {
    let app = spawn_app().await;
    app.user("ada@example.com");
    let client = app.client();
    let page = client
        .post(
            "/login",
            "/login",
            &[("email", "  ADA@Example.com "), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/home");
}

#[tokio::test]
async fn missing_or_malformed_fields_are_answered_with_a_message() {
    let app = spawn_app().await;
    let client = app.client();
    for (email, password, expected) in [
        ("", "x", "Enter your email address."),
        ("not-an-email", "x", "email address like"),
        ("ada@example.com", "", "Enter your password."),
    ] {
        let page = client
            .post(
                "/login",
                "/login",
                &[("email", email), ("password", password)],
            )
            .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{email:?}/{password:?}"
        );
        assert!(
            page.alert().unwrap().contains(expected),
            "{:?}",
            page.alert()
        );
    }
    let long = "x".repeat(1025);
    let page = client
        .post(
            "/login",
            "/login",
            &[("email", "ada@example.com"), ("password", &long)],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_session_id_changes_at_sign_in_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let client = app.client();

    let login_page = client.get("/login").await;
    let anonymous =
        session_cookie(&login_page.headers).expect("a session for the form's CSRF token");
    let signed_in = client
        .post_raw(
            "/login",
            &[
                ("csrf_token", &login_page.csrf()),
                ("email", &user.email),
                ("password", PASSWORD),
            ],
        )
        .await;
    let renewed = session_cookie(&signed_in.headers).expect("a new session id");
    assert_ne!(anonymous, renewed);

    // An old cookie does not carry the new state.
    let stale = app.client();
    let stale_page = stale
        .http
        .get(format!("{}/home", app.address))
        .header("cookie", &anonymous)
        .send()
        .await
        .unwrap();
    assert_eq!(stale_page.status(), StatusCode::SEE_OTHER);

    let home = client.get("/home").await;
    let out = client
        .post_raw("/logout", &[("csrf_token", &home.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);

    // The signed-in cookie replayed after sign-out is worthless.
    let replay = app
        .client()
        .http
        .get(format!("{}/home", app.address))
        .header("cookie", &renewed)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.audit_kinds(&user.id),
        ["sign_in_succeeded", "signed_out"]
    );
}

#[tokio::test]
async fn signing_out_of_an_expired_session_just_goes_to_sign_in() {
    let app = spawn_app().await;
    let page = app.client().post_raw("/logout", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
}

#[tokio::test]
async fn next_is_honoured_for_same_site_paths_only() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");

    let client = app.client();
    let redirect = client.get("/account/security").await;
    assert_eq!(redirect.location(), "/login?next=%2Faccount%2Fsecurity");
    let form = client.get(redirect.location()).await;
    assert!(
        form.body
            .contains("name=\"next\" value=\"/account/security\"")
    );
    let page = client
        .post_raw(
            "/login",
            &[
                ("csrf_token", &form.csrf()),
                ("email", &user.email),
                ("password", PASSWORD),
                ("next", "/account/security"),
            ],
        )
        .await;
    assert_eq!(page.location(), "/account/security");

    for hostile in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/login",
        "javascript:alert(1)",
    ] {
        let client = app.client();
        let page = client
            .post(
                "/login",
                "/login",
                &[
                    ("email", &user.email),
                    ("password", PASSWORD),
                    ("next", hostile),
                ],
            )
            .await;
        assert_eq!(page.location(), "/home", "{hostile}");
    }
}

#[tokio::test]
async fn the_root_sends_each_state_to_its_page() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let client = app.client();
    assert_eq!(client.get("/").await.location(), "/login");
    client.password_step(&user).await;
    assert_eq!(client.get("/").await.location(), "/home");
    assert_eq!(client.get("/login").await.location(), "/home");
}

#[tokio::test]
async fn a_hash_made_with_older_parameters_is_upgraded_at_sign_in() {
    use diesel::prelude::*;
    use tessera::db::schema::users;
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let old_params = tessera::auth::password::Argon2Settings {
        memory_kib: 512,
        iterations: 1,
        parallelism: 1,
    };
    let old = tessera::auth::password::PasswordHasher::new(old_params, 1)
        .unwrap()
        .hash_blocking(PASSWORD)
        .unwrap();
    diesel::update(users::table.find(&user.id))
        .set(users::password_hash.eq(&old))
        .execute(&mut *app.conn())
        .unwrap();

    assert_eq!(app.client().password_step(&user).await.location(), "/home");
    let stored: String = users::table
        .find(&user.id)
        .select(users::password_hash)
        .first(&mut *app.conn())
        .unwrap();
    assert!(
        stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "{stored}"
    );
    assert_eq!(
        app.client().password_step(&user).await.location(),
        "/home",
        "the new hash works"
    );
}
