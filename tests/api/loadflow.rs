//! The load tool's core (`examples/loadflow/flow.rs`) against a spawned app: it completes
//! real flows, and counts a refused code as a failure rather than a flow.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{PASSWORD, TestApp, spawn_app};
use crate::import::import;

#[path = "../../examples/loadflow/flow.rs"]
mod flow;

/// `count` users of `app` with TOTP secrets, seeded through `tessera import`.
fn seed(app: &TestApp, count: usize) -> Vec<flow::LoadUser> {
    let hash = app.hasher.hash_blocking(PASSWORD).unwrap();
    let users: Vec<flow::LoadUser> = (0..count)
        .map(|i| flow::LoadUser {
            email: format!("user{i}@load.example"),
            password: PASSWORD.to_owned(),
            secret: tessera::random::bytes::<20>().unwrap().to_vec(),
        })
        .collect();
    let lines: Vec<String> = users
        .iter()
        .map(|u| flow::import_line(u, "load", &hash))
        .collect();
    let output = import(app, &lines, &[]);
    assert!(output.status.success(), "{output:?}");
    users
}

fn sign_ins(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use tessera::db::schema::audit_events::dsl::*;
    audit_events
        .filter(kind.eq("sign_in_succeeded"))
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

#[tokio::test]
async fn the_load_tool_completes_flows_and_never_reuses_a_time_step() {
    let app = spawn_app().await;
    let users = Arc::new(seed(&app, 6));
    let browser = flow::Browser::new(&app.address).unwrap();

    let outcome = flow::full_flows(&browser, users, 3, Duration::from_secs(2)).await;

    assert_eq!(outcome.failed, 0, "{:?}", outcome.failures);
    // Each user signs in once per 30 s step: 6 flows, 12 if the run crossed a step.
    assert!(
        outcome.completed == 6 || outcome.completed == 12,
        "{outcome:?}"
    );
    assert_eq!(outcome.latencies.len(), outcome.completed);
    assert_eq!(sign_ins(&app), outcome.completed as i64);
    assert!(outcome.quantile(0.5) <= outcome.quantile(0.99));
}

#[tokio::test]
async fn the_load_tool_counts_refused_codes_as_failures() {
    let app = spawn_app().await;
    let mut users = seed(&app, 4);
    // The tool now holds other secrets than the server: every code is wrong.
    for user in &mut users {
        user.secret = tessera::random::bytes::<20>().unwrap().to_vec();
    }
    let browser = flow::Browser::new(&app.address).unwrap();

    let outcome = flow::full_flows(&browser, Arc::new(users), 2, Duration::from_secs(1)).await;

    assert_eq!(outcome.completed, 0, "{outcome:?}");
    assert!(outcome.failed >= 4, "{outcome:?}");
    assert_eq!(
        outcome.failures.keys().collect::<Vec<_>>(),
        ["POST /login/2fa: 401"]
    );
    assert_eq!(sign_ins(&app), 0);
}

#[tokio::test]
async fn the_second_step_mode_measures_prepared_sessions_once_each() {
    let app = spawn_app().await;
    let users = Arc::new(seed(&app, 5));
    let browser = flow::Browser::new(&app.address).unwrap();

    let (sessions, prepared) = flow::prepare_second_steps(&browser, users.clone(), 5, 2).await;
    assert_eq!((sessions.len(), prepared.failed), (5, 0));
    assert_eq!(sign_ins(&app), 0);

    let outcome = flow::second_steps(
        &browser,
        users,
        sessions,
        4,
        Duration::from_secs(10),
        Duration::from_millis(10),
    )
    .await;
    assert_eq!((outcome.completed, outcome.failed), (5, 0), "{outcome:?}");
    assert_eq!(sign_ins(&app), 5);
}
