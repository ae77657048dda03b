use reqwest::StatusCode;

use crate::helpers::{Page, between, enrolled_user, spawn_app, spawn_app_with};

fn assert_security_headers(page: &Page, what: &str) {
    let h = &page.headers;
    assert_eq!(
        h["content-security-policy"],
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        "{what}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS over plain http: {what}"
    );
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let client = app.client();
    for path in ["/login", "/home", "/static/style.css", "/healthz", "/setup"] {
        assert_security_headers(&client.get(path).await, path);
    }
    let forbidden = client.post_raw("/login", &[]).await;
    assert_security_headers(&forbidden, "a 403");
    let page = client.get("/login").await;
    assert_eq!(page.headers["cache-control"], "no-store");
    let css = client.get("/static/style.css").await;
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert!(
        css.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
}

#[tokio::test]
async fn pages_link_a_favicon_that_is_served_with_its_type_to_anyone() {
    let app = spawn_app().await;
    let client = app.client();
    // A page, and an error page (GET on a form-only route).
    for page in [client.get("/login").await, client.get("/logout").await] {
        assert!(
            page.body.contains(
                "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">"
            ),
            "{}",
            page.body
        );
    }
    // Browsers also ask for /favicon.ico without reading the page; it is the same icon,
    // never a 404 page or a sign-in redirect.
    for path in ["/static/favicon.svg", "/favicon.ico"] {
        let icon = client.get(path).await;
        assert_eq!(icon.status, StatusCode::OK, "{path}");
        assert_eq!(icon.headers["content-type"], "image/svg+xml", "{path}");
        assert!(icon.body.starts_with("<svg"), "{path}");
    }
}

#[tokio::test]
async fn error_pages_show_the_signed_in_navigation_to_someone_signed_in() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    // A member on an admin page (403), and a page that does not exist (404).
    for (path, status) in [
        ("/admin/users", StatusCode::FORBIDDEN),
        ("/account/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let page = client.get(path).await;
        assert_eq!(page.status, status, "{path}");
        assert!(page.alert().is_some(), "{path}");
        let nav = between(&page.body, "<nav aria-label=\"Account\">", "</nav>")
            .unwrap_or_else(|| panic!("{path}: no navigation in {}", page.body));
        assert!(nav.contains(&user.email), "{nav}");
        assert!(nav.contains("href=\"/account/security\""), "{nav}");
        // Its sign-out form works like any page's.
        if status == StatusCode::NOT_FOUND {
            let out = client
                .post_raw("/logout", &[("csrf_token", &page.csrf())])
                .await;
            assert_eq!(out.status, StatusCode::SEE_OTHER);
            assert_eq!(out.location(), "/login");
            assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
        }
    }
    // Nobody signed in: the bare frame.
    let anonymous = app.client().get("/logout").await;
    assert_eq!(anonymous.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!anonymous.body.contains("<nav aria-label=\"Account\">"));
}

#[tokio::test]
async fn https_deployments_get_hsts_and_a_host_prefixed_secure_cookie() {
    let app = crate::helpers::spawn_app_with(&[("PUBLIC_URL", "https://login.example.com")]).await;
    let page = app.client().get("/login").await;
    assert_eq!(
        page.headers["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-tessera="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing from {cookie}"
        );
    }
    assert!(!cookie.contains("Domain="));
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_lax() {
    let app = spawn_app().await;
    let page = app.client().get("/login").await;
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("tessera="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/")
    );
    // 256 bits of key (43 base64 characters) plus a signature.
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("tessera=");
    assert!(value.len() >= 43, "{value}");
}

#[tokio::test]
async fn oversized_forms_get_413_and_change_nothing() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    let csrf = client.get("/account/security").await.csrf();
    let padding = "x".repeat(17 * 1024);
    let page = client
        .post_raw(
            "/account/2fa/disable",
            &[
                ("csrf_token", &csrf),
                ("password", crate::helpers::PASSWORD),
                ("code", "123456"),
                ("pad", &padding),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.alert().unwrap().contains("too large"));
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
}

/// Every code field, every kind of nonsense: a 4xx with a message, never a 5xx.
#[tokio::test]
async fn fuzzed_code_inputs_get_4xx_never_5xx() {
    let app = spawn_app().await;
    let (user, full) = enrolled_user(&app, "ada@example.com").await;
    let pending = app.client();
    pending.password_step(&user).await;
    let enrolling_user = app.user("bob@example.com");
    let enrolling = app.client();
    enrolling.password_step(&enrolling_user).await;
    enrolling.get("/account/2fa/setup").await;

    let long = "9".repeat(10_000);
    let values: Vec<String> = vec![
        String::new(),
        "12345".into(),
        "1234567".into(),
        "12345a".into(),
        "abcdef".into(),
        "١٢٣٤٥٦".into(),
        "12 34 5".into(),
        "%00%00%00%00%00%00".into(),
        long,
        "' OR 1=1 --".into(),
    ];
    let targets = [
        (&pending, "/login/2fa", "/login/2fa"),
        (&pending, "/login/recovery", "/login/recovery"),
        (&enrolling, "/account/2fa/setup", "/account/2fa/setup"),
        (&full, "/account/security", "/account/2fa/recovery-codes"),
        (&full, "/account/security", "/account/2fa/disable"),
    ];
    for (client, form, path) in targets {
        let csrf = client.get(form).await.csrf();
        for value in &values {
            let page = client
                .post_raw(
                    path,
                    &[
                        ("csrf_token", csrf.as_str()),
                        ("code", value),
                        ("password", "x"),
                    ],
                )
                .await;
            assert!(
                page.status.is_client_error(),
                "{path} {value:?}: {}",
                page.status
            );
            assert!(page.alert().is_some(), "{path} {value:?} has no alert");
        }
        // Shapes a form cannot take: arrays, repeats, missing fields, other encodings.
        for body in [
            format!("csrf_token={csrf}&code[]=123456&code[]=654321&password=x"),
            format!("csrf_token={csrf}&code=123456&code=654321&password=x"),
            format!("csrf_token={csrf}&password=x"),
            format!("csrf_token={csrf}&code=%ff%fe&password=x"),
            format!("csrf_token={csrf}&code"),
        ] {
            let page = client.post_body(path, body.clone()).await;
            assert!(
                page.status.is_client_error(),
                "{path} {body}: {}",
                page.status
            );
        }
        let json = client
            .http
            .post(format!("{}{path}", app.address))
            .header("content-type", "application/json")
            .body(format!("{{\"csrf_token\":\"{csrf}\",\"code\":\"123456\"}}"))
            .send()
            .await
            .unwrap();
        assert!(
            json.status().is_client_error(),
            "{path} as JSON: {}",
            json.status()
        );
    }
    // Nothing was enabled, disabled or spent.
    assert_eq!(app.count_rows("totp_credentials", &enrolling_user.id), 0);
    assert_eq!(app.count_rows("totp_credentials", &user.id), 1);
    let mut conn = app.conn();
    assert_eq!(
        tessera::db::models::RecoveryCodes::count_unused(&mut conn, &user.id).unwrap(),
        10
    );
}

#[tokio::test]
async fn errors_are_pages_with_an_alert_and_a_request_id_or_json() {
    let app = spawn_app().await;
    let client = app.client();
    let page = client.get("/logout").await;
    assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(page.alert().is_some());
    assert!(page.body.contains("request id"));
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");

    let json = client.get_json("/setup?token=nope").await;
    assert_eq!(json.status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(!body["request_id"].as_str().unwrap().is_empty());
}

/// An error page is a page of the site: the brand, one heading, the message in an alert,
/// and a way back (the start page; sign-in where the error may mean the session is over).
fn assert_designed_error_page(page: &Page, status: StatusCode, sign_in: bool) {
    assert_eq!(page.status, status, "{}", page.body);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert!(page.body.contains("<html lang=\"en\">"), "{status}");
    assert!(
        page.body.contains("class=\"brand\""),
        "{status}: the site header"
    );
    assert_eq!(page.body.matches("<h1").count(), 1, "{status}: one heading");
    assert!(page.alert().is_some_and(|a| !a.is_empty()), "{status}");
    assert!(
        page.body
            .contains("<a class=\"button primary\" href=\"/\">Go to the start page</a>"),
        "{status}: a link back"
    );
    assert_eq!(
        page.body.contains("href=\"/login\""),
        sign_in,
        "{status}: a link to sign in"
    );
}

#[tokio::test]
async fn every_error_page_is_a_designed_page_with_a_way_back() {
    let app = spawn_app().await;
    let anonymous = app.client();
    let page = anonymous
        .post_raw("/login", &[("email", "a@b.test"), ("password", "x")])
        .await;
    assert_designed_error_page(&page, StatusCode::FORBIDDEN, true);

    let page = anonymous.get("/logout").await;
    assert_designed_error_page(&page, StatusCode::METHOD_NOT_ALLOWED, false);

    // Strangers are sent to sign in rather than told what exists (kept as designed).
    let page = anonymous.get("/no-such-page").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/login"), "{}", page.location());

    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    let page = client.get("/no-such-page").await;
    assert_designed_error_page(&page, StatusCode::NOT_FOUND, false);

    let csrf = client.get("/account/security").await.csrf();
    let padding = "x".repeat(17 * 1024);
    let page = client
        .post_raw(
            "/account/2fa/disable",
            &[("csrf_token", &csrf), ("code", "123456"), ("pad", &padding)],
        )
        .await;
    assert_designed_error_page(&page, StatusCode::PAYLOAD_TOO_LARGE, false);
}

#[tokio::test]
async fn too_many_requests_is_a_designed_page_saying_when_to_try_again() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_IP", "1")]).await;
    let client = app.client();
    let fields = [("email", "not an email"), ("password", "x")];
    let page = client.post("/login", "/login", &fields).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = client.post("/login", "/login", &fields).await;
    assert_designed_error_page(&page, StatusCode::TOO_MANY_REQUESTS, true);
    assert!(page.headers.contains_key("retry-after"));
    let alert = page.alert().unwrap();
    assert!(alert.contains("wait 15 minutes and try again"), "{alert}");
}

#[tokio::test]
async fn a_form_shown_again_with_an_error_puts_focus_on_the_message() {
    let app = spawn_app().await;
    let client = app.client();
    let first = client.get("/login").await;
    assert_eq!(first.body.matches("autofocus").count(), 1);
    assert!(
        between(&first.body, "id=\"email\"", ">")
            .unwrap()
            .contains("autofocus")
    );

    let page = client
        .post(
            "/login",
            "/login",
            &[
                ("email", "nobody@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page.body.matches("autofocus").count(), 1, "one autofocus");
    let alert = between(&page.body, "<div class=\"alert\"", ">").unwrap();
    assert!(alert.contains("id=\"form-error\""), "{alert}");
    assert!(alert.contains("tabindex=\"-1\""), "{alert}");
    assert!(alert.contains("autofocus"), "{alert}");
    let input = between(&page.body, "id=\"email\"", ">").unwrap();
    assert!(input.contains("aria-invalid=\"true\""), "{input}");
    assert!(input.contains("aria-describedby=\"form-error\""), "{input}");
    assert!(!input.contains("autofocus"), "{input}");
}

#[tokio::test]
async fn health_reports_ok_when_the_database_answers() {
    let app = spawn_app().await;
    let page = app.client().get("/healthz").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body, "ok");
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let app = spawn_app().await;
    let client = app.client();
    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/login", StatusCode::OK),
        ("/static/style.css", StatusCode::OK),
        ("/home", StatusCode::SEE_OTHER),
    ] {
        let response = client
            .http
            .head(format!("{}{path}", client.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "HEAD {path}");
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "HEAD {path}"
        );
        assert!(response.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
    // Only GET and HEAD read: other methods are still refused.
    let put = client
        .http
        .put(format!("{}/healthz", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_account_every_request_carries_never_holds_the_password_hash() {
    let app = spawn_app().await;
    let user = app.user("ada@acme.example");
    let stored: String = {
        use diesel::prelude::*;
        use tessera::db::schema::users;
        users::table
            .find(&user.id)
            .select(users::password_hash)
            .get_result(&mut *app.conn())
            .unwrap()
    };
    let account = tessera::db::models::Account::load(&mut app.conn(), &user.id, 0)
        .unwrap()
        .unwrap();
    let printed = format!("{account:?}");
    assert!(printed.contains(&user.email), "{printed}");
    assert!(!printed.contains(&stored), "{printed}");
    assert!(!printed.contains("$argon2"), "{printed}");
}
