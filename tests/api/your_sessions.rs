//! "Your sessions": listing where one is signed in, and signing out of the others.

use diesel::prelude::*;
use reqwest::StatusCode;

use crate::helpers::{Client, enrolled_user, session_cookie, spawn_app};

/// The handles of the sessions listed on `client`'s sessions page that are not its own.
async fn other_handles(client: &Client) -> Vec<String> {
    let page = client.get("/account/sessions").await;
    page.body
        .split("name=\"session\" value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_page_lists_every_session_with_where_and_when_but_never_an_id() {
    let app = spawn_app().await;
    let (mut ann, laptop) = enrolled_user(&app, "ann@acme.test").await;
    let phone = app.client();
    let signed_in = phone.sign_in(&mut ann).await;
    let phone_cookie = session_cookie(&signed_in.headers).unwrap();

    let page = laptop.get("/account/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.body.matches("<li class=\"session").count(),
        2,
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("id=\"current-session\"").count(), 1);
    assert!(page.body.contains("From 127.0.0.1"));
    let key = phone_cookie.split_once('=').unwrap().1;
    assert!(!page.body.contains(key), "a cookie value is on the page");
    let ids: Vec<String> = tessera::db::schema::sessions::table
        .select(tessera::db::schema::sessions::id)
        .load(&mut *app.conn())
        .unwrap();
    for id in ids {
        assert!(!page.body.contains(&id), "a session id is on the page");
    }
}

#[tokio::test]
async fn signing_out_one_session_from_the_page_stops_that_cookie_at_once() {
    let app = spawn_app().await;
    let (mut ann, laptop) = enrolled_user(&app, "ann@acme.test").await;
    let phone = app.client();
    phone.sign_in(&mut ann).await;
    let tablet = app.client();
    tablet.sign_in(&mut ann).await;
    let handles = other_handles(&laptop).await;
    assert_eq!(handles.len(), 2);

    // Which handle is the phone's: the one the phone marks as its own.
    let phone_page = phone.get("/account/sessions").await;
    let phone_handle = handles
        .iter()
        .find(|h| !phone_page.body.contains(&format!("value=\"{h}\"")))
        .unwrap()
        .clone();
    let page = laptop
        .post(
            "/account/sessions",
            "/account/sessions/end",
            &[("session", &phone_handle)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(phone.get("/home").await.location(), "/login?next=%2Fhome");
    assert_eq!(tablet.get("/home").await.status, StatusCode::OK);
    assert_eq!(laptop.get("/home").await.status, StatusCode::OK);
    assert!(
        app.audit_kinds(&ann.id)
            .contains(&"sessions_ended".to_owned())
    );
}

#[tokio::test]
async fn signing_out_all_other_sessions_keeps_only_this_one() {
    let app = spawn_app().await;
    let (mut ann, laptop) = enrolled_user(&app, "ann@acme.test").await;
    let phone = app.client();
    phone.sign_in(&mut ann).await;
    let half = app.client();
    half.password_step(&ann).await;

    let listed = laptop.get("/account/sessions").await;
    assert!(
        listed.body.contains("second step not done"),
        "a half sign-in is shown"
    );
    let page = laptop
        .post("/account/sessions", "/account/sessions/end-others", &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(phone.get("/home").await.location(), "/login?next=%2Fhome");
    assert_eq!(half.get("/login/2fa").await.location(), "/login");
    assert_eq!(laptop.get("/home").await.status, StatusCode::OK);
    assert!(other_handles(&laptop).await.is_empty());
    assert!(
        laptop
            .get("/account/sessions")
            .await
            .body
            .contains("not signed in anywhere else")
    );
}

#[tokio::test]
async fn nobody_can_sign_out_someone_elses_session() {
    let app = spawn_app().await;
    let (_ann, ann_laptop) = enrolled_user(&app, "ann@acme.test").await;
    let (mut bob, bob_laptop) = enrolled_user(&app, "bob@acme.test").await;
    let bob_phone = app.client();
    bob_phone.sign_in(&mut bob).await;
    let bobs = other_handles(&bob_laptop).await;
    assert_eq!(bobs.len(), 1);
    let page = ann_laptop
        .post(
            "/account/sessions",
            "/account/sessions/end",
            &[("session", &bobs[0])],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(
        ann_laptop
            .get("/account/sessions")
            .await
            .body
            .contains("already ended")
    );
    assert_eq!(bob_phone.get("/home").await.status, StatusCode::OK);

    // And without the form's token nothing is ended either.
    for path in ["/account/sessions/end", "/account/sessions/end-others"] {
        let page = bob_laptop
            .post_raw(path, &[("session", bobs[0].as_str())])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(bob_phone.get("/home").await.status, StatusCode::OK);
}
