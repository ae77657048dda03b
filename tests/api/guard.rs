use reqwest::StatusCode;

use crate::helpers::{PASSWORD, enrolled_user, spawn_app};

const PROTECTED_GETS: [&str; 3] = ["/home", "/account/security", "/account/2fa/setup"];
const PROTECTED_POSTS: [&str; 3] = [
    "/account/2fa/setup",
    "/account/2fa/recovery-codes",
    "/account/2fa/disable",
];

#[tokio::test]
async fn anonymous_requests_to_protected_routes_go_to_sign_in() {
    let app = spawn_app().await;
    let client = app.client();
    for path in PROTECTED_GETS {
        let page = client.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(
            page.location(),
            format!("/login?next={}", path.replace('/', "%2F")),
            "{path}"
        );

        let json = client.get_json(path).await;
        assert_eq!(json.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(json.headers["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&json.body).unwrap();
        assert_eq!(body["error"], "unauthenticated");
    }
    let csrf = client.get("/login").await.csrf();
    for path in PROTECTED_POSTS {
        let page = client
            .post_raw(
                path,
                &[("csrf_token", &csrf), ("code", "123456"), ("password", "x")],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location(), "/login", "{path}");
    }
    for path in ["/login/2fa", "/login/recovery"] {
        assert_eq!(client.get(path).await.location(), "/login", "{path}");
        let page = client
            .post_raw(path, &[("csrf_token", &csrf), ("code", "123456")])
            .await;
        assert_eq!(page.location(), "/login", "{path}");
    }
}

#[tokio::test]
async fn half_signed_in_requests_go_to_the_second_step() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    client.password_step(&user).await;
    for path in PROTECTED_GETS {
        let page = client.get(path).await;
        assert_eq!(
            (page.status, page.location()),
            (StatusCode::SEE_OTHER, "/login/2fa"),
            "{path}"
        );
        let json = client.get_json(path).await;
        assert_eq!(json.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(json.body.contains("second_factor_required"));
    }
    let csrf = client.get("/login/2fa").await.csrf();
    for path in PROTECTED_POSTS {
        let page = client
            .post_raw(
                path,
                &[
                    ("csrf_token", &csrf),
                    ("code", "123456"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            (page.status, page.location()),
            (StatusCode::SEE_OTHER, "/login/2fa"),
            "{path}"
        );
    }
    assert_eq!(
        app.count_rows("totp_credentials", &user.id),
        1,
        "nothing was turned off"
    );
}

#[tokio::test]
async fn signed_in_users_skip_the_sign_in_steps() {
    let app = spawn_app().await;
    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    for path in ["/login/2fa", "/login/recovery", "/login"] {
        assert_eq!(client.get(path).await.location(), "/home", "{path}");
    }
}

#[tokio::test]
async fn unknown_pages_are_hidden_from_strangers_and_404_for_members() {
    let app = spawn_app().await;
    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    let page = client.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.alert().unwrap().contains("no page"));
    assert_eq!(
        app.client().get("/no/such/page").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_post_without_this_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let foreign = app.client().get("/login").await.csrf();
    let code = user.fresh_code().await;
    let own = client.get("/account/security").await.csrf();

    // The second step's forms, from a session that is half signed in.
    let half = app.client();
    half.password_step(&user).await;
    let half_own = half.get("/login/2fa").await.csrf();
    let cases = PROTECTED_POSTS
        .iter()
        .chain(&["/logout", "/login"])
        .map(|path| (&client, path, own.as_str()))
        .chain(
            ["/login/2fa", "/login/recovery"]
                .iter()
                .map(|path| (&half, path, half_own.as_str())),
        );
    for (client, path, own) in cases {
        let fields = [
            ("password", PASSWORD),
            ("code", code.as_str()),
            ("email", user.email.as_str()),
        ];
        let missing = client.post_raw(path, &fields).await;
        assert_eq!(
            missing.status,
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        assert!(missing.alert().unwrap().contains("expired"), "{path}");
        let mut with_foreign = vec![("csrf_token", foreign.as_str())];
        with_foreign.extend_from_slice(&fields);
        assert_eq!(
            client.post_raw(path, &with_foreign).await.status,
            StatusCode::FORBIDDEN,
            "{path} foreign"
        );
        let mut twice = vec![("csrf_token", own), ("csrf_token", foreign.as_str())];
        twice.extend_from_slice(&fields);
        assert_eq!(
            client.post_raw(path, &twice).await.status,
            StatusCode::FORBIDDEN,
            "{path} two tokens"
        );
    }
    // Still signed in, still enrolled, and the code was not spent.
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
    let page = client
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", PASSWORD), ("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_deleted_user_is_signed_out_at_the_next_request() {
    use diesel::prelude::*;
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    diesel::delete(tessera::db::schema::users::table.find(&user.id))
        .execute(&mut *app.conn())
        .unwrap();
    let page = client.get("/home").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/login"));
}

/// A form sent from a tab whose session has since ended leads to sign-in, not to an
/// "expired form" error — and does nothing.
#[tokio::test]
async fn a_form_from_an_ended_session_goes_to_sign_in_and_does_nothing() {
    use diesel::prelude::*;
    use tessera::db::schema::sessions;
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let csrf = client.get("/account/security").await.csrf();
    diesel::delete(sessions::table.filter(sessions::user_id.eq(&user.id)))
        .execute(&mut *app.conn())
        .unwrap();
    let code = user.fresh_code().await;
    let page = client
        .post_raw(
            "/account/2fa/disable",
            &[
                ("csrf_token", csrf.as_str()),
                ("password", PASSWORD),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
}
