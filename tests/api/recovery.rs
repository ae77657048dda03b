use reqwest::StatusCode;

use crate::helpers::{enrolled_user, spawn_app};

#[tokio::test]
async fn a_recovery_code_signs_in_once_and_only_once() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let code = user.recovery_codes[3].clone();

    let client = app.client();
    client.password_step(&user).await;
    let form = client.get("/login/recovery").await;
    assert_eq!(form.status, StatusCode::OK);
    // Typed carelessly: lower case, no dashes, spaces.
    let typed = code.to_lowercase().replace('-', " ");
    let page = client
        .post_raw(
            "/login/recovery",
            &[("csrf_token", &form.csrf()), ("code", &typed)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/account/security");
    let security = client.get("/account/security").await;
    assert!(
        security.body.contains("You have 9 left"),
        "{}",
        security.body
    );
    assert!(security.body.contains("id=\"codes-left\">9<"));
    let kinds = app.audit_kinds(&user.id);
    assert!(kinds.contains(&"recovery_code_used".to_owned()));
    assert_eq!(kinds.last().map(String::as_str), Some("sign_in_succeeded"));

    let again = app.client();
    again.password_step(&user).await;
    let page = again
        .post("/login/recovery", "/login/recovery", &[("code", &code)])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.alert().unwrap().contains("not accepted"));
    assert_eq!(again.get("/home").await.location(), "/login/2fa");
}

#[tokio::test]
async fn of_two_parallel_uses_of_one_code_exactly_one_wins() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let code = user.recovery_codes[0].clone();
    let (a, b) = (app.client(), app.client());
    a.password_step(&user).await;
    b.password_step(&user).await;
    let (csrf_a, csrf_b) = (
        a.get("/login/recovery").await.csrf(),
        b.get("/login/recovery").await.csrf(),
    );
    let (ra, rb) = tokio::join!(
        a.post_raw(
            "/login/recovery",
            &[("csrf_token", &csrf_a), ("code", &code)]
        ),
        b.post_raw(
            "/login/recovery",
            &[("csrf_token", &csrf_b), ("code", &code)]
        ),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED]);
    assert_eq!(app.count_rows("recovery_codes", &user.id), 10);
    let mut conn = app.conn();
    assert_eq!(
        tessera::db::models::RecoveryCodes::count_unused(&mut conn, &user.id).unwrap(),
        9
    );
}

#[tokio::test]
async fn wrong_and_malformed_recovery_codes_are_refused_without_spending_anything() {
    let app = spawn_app().await;
    let (user, _) = enrolled_user(&app, "ada@example.com").await;
    let client = app.client();
    client.password_step(&user).await;

    let wrong = client
        .post(
            "/login/recovery",
            "/login/recovery",
            &[("code", "ABCD-EFGH-JKMN")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.audit_kinds(&user.id).last().unwrap(),
        "second_factor_failed"
    );
    for malformed in [
        "",
        "ABCD",
        "ABCD-EFGH-JKMN-PQRS",
        "ABCD-EFGH-JKMU",
        "<script>",
    ] {
        let page = client
            .post("/login/recovery", "/login/recovery", &[("code", malformed)])
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{malformed:?}");
        assert!(page.alert().is_some());
    }
    let mut conn = app.conn();
    assert_eq!(
        tessera::db::models::RecoveryCodes::count_unused(&mut conn, &user.id).unwrap(),
        10
    );
}

#[tokio::test]
async fn new_recovery_codes_revoke_the_old_set() {
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let old = user.recovery_codes.clone();

    let code = user.fresh_code().await;
    let page = client
        .post(
            "/account/security",
            "/account/2fa/recovery-codes",
            &[("code", &code)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["cache-control"], "no-store, max-age=0");
    let new = page.recovery_codes();
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    assert!(
        app.audit_kinds(&user.id)
            .contains(&"recovery_codes_regenerated".to_owned())
    );

    let with_old = app.client();
    with_old.password_step(&user).await;
    let refused = with_old
        .post("/login/recovery", "/login/recovery", &[("code", &old[0])])
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let accepted = with_old
        .post("/login/recovery", "/login/recovery", &[("code", &new[0])])
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn new_recovery_codes_need_a_current_authenticator_code() {
    let app = spawn_app().await;
    let (user, client) = enrolled_user(&app, "ada@example.com").await;
    for (code, status) in [
        ("000000", StatusCode::UNAUTHORIZED),
        ("", StatusCode::BAD_REQUEST),
        (user.recovery_codes[0].as_str(), StatusCode::BAD_REQUEST),
    ] {
        let page = client
            .post(
                "/account/security",
                "/account/2fa/recovery-codes",
                &[("code", code)],
            )
            .await;
        assert_eq!(page.status, status, "{code:?}");
        assert!(page.alert().is_some());
        assert!(page.recovery_codes().is_empty());
    }
    // The old codes still work.
    let other = app.client();
    other.password_step(&user).await;
    let page = other
        .post(
            "/login/recovery",
            "/login/recovery",
            &[("code", &user.recovery_codes[1])],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

/// Two regenerations at once (two tabs, two fresh codes) leave one set of ten, never both
/// sets: on PostgreSQL each replacement would otherwise delete only the rows it could see.
#[tokio::test]
async fn two_regenerations_at_once_leave_exactly_one_set() {
    let app = spawn_app().await;
    let (mut user, client) = enrolled_user(&app, "ada@example.com").await;
    let csrf = client.get("/account/security").await.csrf();
    let (a, b) = (user.fresh_code().await, user.fresh_code().await);
    let (first, second) = tokio::join!(
        client.post_raw(
            "/account/2fa/recovery-codes",
            &[("csrf_token", &csrf), ("code", &a)]
        ),
        client.post_raw(
            "/account/2fa/recovery-codes",
            &[("csrf_token", &csrf), ("code", &b)]
        ),
    );
    let sets: Vec<Vec<String>> = [&first, &second]
        .into_iter()
        .filter(|page| page.status == StatusCode::OK)
        .map(|page| page.recovery_codes())
        .collect();
    assert!(!sets.is_empty(), "{} / {}", first.body, second.body);
    assert_eq!(app.count_rows("recovery_codes", &user.id), 10);
    // Whichever set was stored last is the one that works.
    let works = |code: String| {
        let app = &app;
        let user = &user;
        async move {
            let c = app.client();
            c.password_step(user).await;
            c.post("/login/recovery", "/login/recovery", &[("code", &code)])
                .await
                .status
                == StatusCode::SEE_OTHER
        }
    };
    let mut working = 0;
    for set in &sets {
        if works(set[0].clone()).await {
            working += 1;
        }
    }
    assert_eq!(working, 1, "exactly one of the shown sets is valid");
}
