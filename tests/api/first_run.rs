use reqwest::StatusCode;
use tessera::db::models::SetupTokens;
use tessera::random::sha256_hex;

use crate::helpers::{base32_decode, spawn_app, totp, unix_now, wait_clear_of_step_boundary};

/// The app logged a link with its own token; tests add one they know.
fn setup_token(app: &crate::helpers::TestApp) -> String {
    let token = tessera::random::token::<32>().unwrap();
    SetupTokens::insert(&mut app.conn(), &sha256_hex(&token), tessera::db::now()).unwrap();
    token
}

#[tokio::test]
async fn a_fresh_install_offers_a_setup_link_that_creates_the_first_admin() {
    let app = spawn_app().await;
    use diesel::prelude::*;
    let announced: i64 = tessera::db::schema::setup_tokens::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(
        announced, 1,
        "start-up made a setup token for the logged link"
    );

    let token = setup_token(&app);
    let client = app.client();
    let form = client.get(&format!("/setup?token={token}")).await;
    assert_eq!(form.status, StatusCode::OK);
    let fields = [
        ("csrf_token", form.csrf()),
        ("token", token.clone()),
        ("workspace_name", "Acme Ltd".to_owned()),
        ("workspace_slug", "acme".to_owned()),
        ("name", "Ada Lovelace".to_owned()),
        ("email", "Ada@Example.com".to_owned()),
        ("password", "a long enough passphrase".to_owned()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = client.post_raw("/setup", &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/account/2fa/setup");

    // Signed in as the new admin, who enrols right away.
    let setup = client.get("/account/2fa/setup").await;
    assert!(setup.body.contains("Your workspace is ready"));
    let secret = base32_decode(&setup.totp_secret());
    wait_clear_of_step_boundary().await;
    let code = totp(&secret, unix_now());
    let codes = client
        .post_raw(
            "/account/2fa/setup",
            &[("csrf_token", &setup.csrf()), ("code", &code)],
        )
        .await;
    assert_eq!(codes.status, StatusCode::OK);
    let home = client.get("/home").await;
    assert!(home.body.contains("Welcome, Ada Lovelace"));
    assert!(home.body.contains("Acme Ltd"));

    // The link is spent, and so is every other: setup happens once.
    let again = app.client().get(&format!("/setup?token={token}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let replay = app.client();
    let csrf = replay.get("/login").await.csrf();
    let mut fields = fields.clone();
    fields[0] = ("csrf_token", &csrf);
    assert_eq!(
        replay.post_raw("/setup", &fields).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn setup_without_a_valid_token_is_not_found() {
    let app = spawn_app().await;
    let client = app.client();
    for path in ["/setup", "/setup?token=", "/setup?token=guess"] {
        assert_eq!(
            client.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn setup_refuses_bad_input_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let token = setup_token(&app);
    let client = app.client();
    let form = client.get(&format!("/setup?token={token}")).await;
    for (field, value, message) in [
        (
            "workspace_slug",
            "Not A Slug!",
            "letters, digits and dashes",
        ),
        ("email", "nobody", "email address like"),
        ("password", "short", "at least 12 characters"),
        ("workspace_name", "  ", "Enter a name"),
    ] {
        let mut fields = [
            ("csrf_token", form.csrf()),
            ("token", token.clone()),
            ("workspace_name", "Acme Ltd".to_owned()),
            ("workspace_slug", "acme".to_owned()),
            ("email", "ada@example.com".to_owned()),
            ("password", "a long enough passphrase".to_owned()),
        ];
        for f in fields.iter_mut() {
            if f.0 == field {
                f.1 = value.to_owned();
            }
        }
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = client.post_raw("/setup", &fields).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{field}");
        assert!(
            page.alert().unwrap().contains(message),
            "{field}: {:?}",
            page.alert()
        );
        assert!(page.body.contains("value=\"Acme Ltd\"") || field == "workspace_name");
    }
    // Nothing was created; the token still works.
    assert_eq!(
        client.get(&format!("/setup?token={token}")).await.status,
        StatusCode::OK
    );
}
