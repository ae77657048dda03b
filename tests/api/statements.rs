//! What a sign-in costs in statements sent to the database (each one a round trip on
//! PostgreSQL, BEGIN and COMMIT included), counted by the server's own connection pool.
//! The README's Performance section reports these counts; the bounds here are today's, so
//! a change that adds a round trip to every sign-in is noticed.

use reqwest::StatusCode;

use crate::helpers::{enrolled_user, spawn_app};

/// Counts on 1 December 2026, the same on both backends (SQLite's background checkpoint may
/// add one). The target is 12 and 6 (issue 14): see the README's Performance section. The
/// full flow's 36th is the sign-in page's passkey challenge (one INSERT), since issue 12.
const FULL_FLOW: u64 = 36;
const SECOND_STEP: u64 = 19;

#[tokio::test]
async fn a_sign_in_sends_no_more_statements_than_it_did() {
    let app = spawn_app().await;
    let (mut user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    // The code is worked out first: waiting for a fresh time step is not the server's cost.
    let code = user.fresh_code().await;

    // The load tool's full flow: the sign-in page, the password, the code page, the code,
    // the home page.
    let start = app.db.statements();
    let page = client.password_step(&user).await;
    assert_eq!(page.location(), "/login/2fa");
    let password_done = app.db.statements();
    let page = client
        .post("/login/2fa", "/login/2fa", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(client.get("/home").await.status, StatusCode::OK);
    let end = app.db.statements();

    let (full, second) = (end - start, end - password_done);
    println!(
        "statements per full sign-in: {full}; per second step (code page, code, home): {second}"
    );
    let slack = u64::from(!app.database.is_postgres());
    assert!(
        full <= FULL_FLOW + slack,
        "a full sign-in sent {full} statements"
    );
    assert!(
        second <= SECOND_STEP + slack,
        "the second step sent {second} statements"
    );
}
