//! While the database is unavailable, pages answer 503 with `Retry-After` and a page that
//! says so; service resumes by itself when it is back.

use diesel::prelude::*;
use reqwest::StatusCode;
use tessera::db::schema::sessions;

use crate::helpers::{enrolled_user, spawn_app};

#[tokio::test]
async fn while_the_database_is_unavailable_pages_answer_503_and_service_resumes_by_itself() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    // The next request will write the session's "last seen" (SQLite's outage blocks writes).
    diesel::update(sessions::table.filter(sessions::user_id.eq(&user.id)))
        .set(sessions::last_seen_at.eq(sessions::last_seen_at - 120))
        .execute(&mut *app.conn())
        .unwrap();

    let outage = app.database.outage();
    let page = client.get("/home").await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(page.headers["retry-after"], "5");
    assert!(page.body.contains("Briefly unavailable"), "{}", page.body);
    let alert = page.alert().unwrap();
    assert!(alert.contains("try again in a few seconds"), "{alert}");
    let json = client.get_json("/home").await;
    assert_eq!(json.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        json.body.contains("\"error\":\"unavailable\""),
        "{}",
        json.body
    );
    if app.database.is_postgres() {
        assert_eq!(
            client.get("/healthz").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    drop(outage);
    let page = client.get("/home").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
}
