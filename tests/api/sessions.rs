use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::sessions;

use crate::helpers::{enrolled_user, session_cookie, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_session_idle_for_thirty_minutes_is_over() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    // The row's time may lag the last request by up to a minute (it is written lazily),
    // so thirty minutes of idleness is a row last written thirty-one minutes ago.
    diesel::update(sessions::table.filter(sessions::user_id.eq(&user.id)))
        .set(sessions::last_seen_at.eq(tessera::db::now() - 31 * 60))
        .execute(&mut *app.conn())
        .unwrap();
    let page = client.get("/home").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/login"));
    assert_eq!(
        app.count_rows("sessions", &user.id),
        0,
        "the expired row is gone"
    );
}

#[tokio::test]
async fn a_session_making_a_request_every_fifty_seconds_outlives_a_one_minute_idle_timeout() {
    let app = spawn_app_with(&[("SESSION_IDLE_MINUTES", "1")]).await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    // Fifty seconds pass between requests, three times over: each time, the session's
    // stored times are moved fifty seconds into the past, as the clock would have moved.
    for request in 1..=3 {
        diesel::update(sessions::table.filter(sessions::user_id.eq(&user.id)))
            .set((
                sessions::last_seen_at.eq(sessions::last_seen_at - 50),
                sessions::created_at.eq(sessions::created_at - 50),
            ))
            .execute(&mut *app.conn())
            .unwrap();
        let page = client.get("/home").await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "request {request}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn a_busy_session_still_ends_twelve_hours_after_sign_in() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    diesel::update(sessions::table.filter(sessions::user_id.eq(&user.id)))
        .set(sessions::created_at.eq(tessera::db::now() - 12 * 3600))
        .execute(&mut *app.conn())
        .unwrap();
    assert_eq!(client.get("/home").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_database_keeps_only_a_hash_of_the_session_key() {
    let app = spawn_app().await;
    let mut user = app.user("ada@example.com");
    let client = app.client();
    let page = client.sign_in(&mut user).await;
    let cookie = session_cookie(&page.headers).unwrap();
    // A signed cookie is the signature (44 base64 characters, '=' percent-encoded) followed
    // by the value.
    let value = percent_decode(cookie.trim_start_matches("tessera="));
    let key = &value[44..];
    assert_eq!(key.len(), 43, "256 bits, base64: {cookie}");
    let ids: Vec<String> = sessions::table
        .filter(sessions::user_id.eq(&user.id))
        .select(sessions::id)
        .load(&mut *app.conn())
        .unwrap();
    assert_eq!(ids, [tessera::random::sha256_hex(key)]);
}

#[tokio::test]
async fn json_clients_get_json_errors_when_signed_in() {
    let app = spawn_app().await;
    let (_, client) = enrolled_user(&app, "ada@example.com").await;
    let page = client.get_json("/nothing-here").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(body["error"], "not_found");
}

fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                .iter()
                .map(|&c| c as char)
                .collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

/// Ending a user's sessions must also end one that a racing request writes just after the
/// rows were deleted: here that late write is replayed by putting the row back.
#[tokio::test]
async fn a_session_written_back_after_all_were_ended_is_still_refused() {
    let app = spawn_app().await;
    let (mut user, owner) = enrolled_user(&app, "ada@example.com").await;
    let other = app.client();
    other.sign_in(&mut user).await;
    type Row = (String, Option<String>, String, i64, i64);
    let rows: Vec<Row> = sessions::table
        .filter(sessions::user_id.eq(&user.id))
        .select((
            sessions::id,
            sessions::user_id,
            sessions::state,
            sessions::created_at,
            sessions::last_seen_at,
        ))
        .load(&mut *app.conn())
        .unwrap();
    assert_eq!(rows.len(), 2);

    // The owner turns 2FA off, which ends every other session.
    let code = user.fresh_code().await;
    let off = owner
        .post(
            "/account/security",
            "/account/2fa/disable",
            &[("password", crate::helpers::PASSWORD), ("code", &code)],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER);
    assert_eq!(other.get("/home").await.location(), "/login?next=%2Fhome");

    // The racing write: the sessions' rows come back as they were (the owner's own moved
    // to a new id, so nothing collides).
    let mut conn = app.conn();
    for row in &rows {
        diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(&row.0),
                sessions::user_id.eq(&row.1),
                sessions::state.eq(&row.2),
                sessions::created_at.eq(row.3),
                sessions::last_seen_at.eq(row.4),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    drop(conn);
    let page = other.get("/home").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/login"), "{}", page.location());
    // The owner's own session carried on under the new epoch.
    assert_eq!(owner.get("/home").await.status, StatusCode::OK);
}

fn session_rows(app: &crate::helpers::TestApp) -> i64 {
    sessions::table
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

#[tokio::test]
async fn showing_the_sign_in_form_writes_no_session_row() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let client = app.client();
    let form = client.get("/login").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(session_cookie(&form.headers).is_some());
    // Reloading the form keeps the same token, still without a row.
    assert_eq!(client.get("/login").await.csrf(), form.csrf());
    assert_eq!(session_rows(&app), 0);

    let page = client
        .post_raw(
            "/login",
            &[
                ("csrf_token", &form.csrf()),
                ("email", &user.email),
                ("password", &user.password),
            ],
        )
        .await;
    assert_eq!(page.location(), "/home");
    assert_eq!(session_rows(&app), 1);
    assert_eq!(app.count_rows("sessions", &user.id), 1);
}

#[tokio::test]
async fn a_sign_in_form_token_works_only_with_its_own_browsers_cookie() {
    let app = spawn_app().await;
    let user = app.user("ada@example.com");
    let victim_token = app.client().get("/login").await.csrf();
    let fields = |token: &str| {
        vec![
            ("csrf_token", token.to_owned()),
            ("email", user.email.clone()),
            ("password", user.password.clone()),
        ]
    };
    let post = |client: &crate::helpers::Client, token: &str| {
        let fields = fields(token);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        client.post_raw("/login", &fields)
    };

    // No cookie at all, and another visitor's cookie: both refused.
    let stranger = app.client();
    assert_eq!(
        post(&stranger, &victim_token).await.status,
        StatusCode::FORBIDDEN
    );
    let other = app.client();
    other.get("/login").await;
    assert_eq!(
        post(&other, &victim_token).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(session_rows(&app), 0);
    assert!(app.audit_kinds(&user.id).is_empty());

    // A failed attempt re-shows the form with the same token, still without a row.
    let own = other.get("/login").await.csrf();
    let mut wrong = fields(&own);
    wrong[2].1 = "not the password".into();
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = other.post_raw("/login", &wrong).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page.csrf(), own);
    assert_eq!(session_rows(&app), 0);
    assert_eq!(post(&other, &own).await.location(), "/home");
}

#[tokio::test]
async fn a_step_up_moves_the_session_to_a_new_id_and_the_old_id_opens_nothing() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    let half = session_cookie(&client.password_step(&user).await.headers).unwrap();
    let rows = session_rows(&app);
    let code = user.fresh_code().await;
    let full = client
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(full.location(), "/home");
    assert_ne!(session_cookie(&full.headers).unwrap(), half);
    assert_eq!(session_rows(&app), rows, "the row moved; none was added");
    assert_eq!(client.get("/home").await.status, StatusCode::OK);

    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/home", app.address))
        .header("cookie", &half)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::SEE_OTHER);
    assert_eq!(stale.headers()["location"], "/login?next=%2Fhome");
    // The store's mark for a new id is never written down.
    let states: Vec<String> = sessions::table
        .select(sessions::state)
        .load(&mut *app.conn())
        .unwrap();
    assert!(states.iter().all(|s| !s.contains("renew")), "{states:?}");
}
