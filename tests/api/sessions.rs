use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::sessions;

use crate::helpers::{enrolled_user, session_cookie, spawn_app};

#[tokio::test]
async fn a_session_idle_for_thirty_minutes_is_over() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    diesel::update(sessions::table.filter(sessions::user_id.eq(&user.id)))
        .set(sessions::last_seen_at.eq(tessera::db::now() - 30 * 60))
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
