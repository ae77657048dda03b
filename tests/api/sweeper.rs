//! The sweeper: dead rows go, live ones stay, in batches, and two instances may sweep at
//! once.

use diesel::prelude::*;
use tessera::sweeper::{BATCH, Rules, Swept, sweep};

use crate::helpers::{TestApp, enrolled_user, spawn_app};

fn execute(app: &TestApp, sql: &str) {
    diesel::sql_query(sql).execute(&mut *app.conn()).unwrap();
}

fn count(app: &TestApp, table: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
        .get_result::<Count>(&mut *app.conn())
        .unwrap()
        .n
}

/// Inserts `n` rows made by `row(i)` into `table (columns)`, a few hundred per statement.
fn insert_rows(app: &TestApp, table: &str, columns: &str, n: usize, row: impl Fn(usize) -> String) {
    let rows: Vec<String> = (0..n).map(row).collect();
    for chunk in rows.chunks(500) {
        execute(
            app,
            &format!(
                "INSERT INTO {table} ({columns}) VALUES {}",
                chunk.join(", ")
            ),
        );
    }
}

#[tokio::test]
async fn the_sweeper_brings_every_table_back_to_its_live_rows_even_when_two_instances_sweep_at_once()
 {
    let app = spawn_app().await;
    let (user, _client) = enrolled_user(&app, "ada@example.com").await;
    let other = app.user("bob@example.com");
    let now = tessera::db::now();
    let (live_sessions, live_buckets, live_mail) = (
        count(&app, "sessions"),
        count(&app, "rate_limits"),
        count(&app, "mail_outbox"),
    );
    let audit = count(&app, "audit_events");
    let live_ceremonies = count(&app, "webauthn_ceremonies");

    // Sessions: more dead ones than one batch, idle for a day or older than the absolute
    // limit, beside one that is alive.
    let dead_sessions = 2 * BATCH as usize + 17;
    insert_rows(
        &app,
        "sessions",
        "id, user_id, state, created_at, last_seen_at",
        dead_sessions,
        |i| {
            let (created, seen) = if i % 2 == 0 {
                (now - 90_000, now - 86_400)
            } else {
                (now - 13 * 3600, now - 10)
            };
            format!("('dead-{i}', '{}', '{{}}', {created}, {seen})", user.id)
        },
    );
    insert_rows(
        &app,
        "sessions",
        "id, user_id, state, created_at, last_seen_at",
        1,
        |_| format!("('alive', '{}', '{{}}', {now}, {now})", user.id),
    );
    // Enrolments: one expired, one still open.
    for (who, expires) in [(&user.id, now - 1), (&other.id, now + 600)] {
        execute(
            &app,
            &format!(
                "INSERT INTO pending_enrolments (user_id, secret_ciphertext, key_id, created_at, expires_at, session_binding) \
             VALUES ('{who}', 'x', 'k', {now}, {expires}, 'b')"
            ),
        );
    }
    // Rate limits: drained and current.
    insert_rows(&app, "rate_limits", "key, hits, until_ms", 1_200, |i| {
        let until = if i == 0 {
            (now + 60) * 1000
        } else {
            (now - 1) * 1000
        };
        format!("('test:{i}', '[]', {until})")
    });
    // Mail: sent 8 days ago and given up 31 days ago (dead); sent yesterday and pending (kept).
    let (eight_days, yesterday, a_month) = (now - 8 * 86_400, now - 86_400, now - 31 * 86_400);
    let mail = [
        ("sent-old", eight_days.to_string(), "NULL".to_owned()),
        ("failed-old", "NULL".to_owned(), a_month.to_string()),
        ("sent-new", yesterday.to_string(), "NULL".to_owned()),
        ("pending", "NULL".to_owned(), "NULL".to_owned()),
    ];
    for (id, sent, failed) in mail {
        execute(
            &app,
            &format!(
                "INSERT INTO mail_outbox (id, kind, recipient, subject, body_text, body_html, created_at, next_attempt_at, sent_at, failed_at) \
             VALUES ('{id}', 'test', 'a@example.com', 's', 't', 'h', {a_month}, {now}, {sent}, {failed})"
            ),
        );
    }

    // Invitations: expired 31 days ago (swept), expired yesterday (still listed), live.
    let workspace = app.workspace("acme");
    for (id, expires) in [
        ("old", now - 31 * 86_400),
        ("recent", now - 86_400),
        ("live", now + 86_400),
    ] {
        execute(
            &app,
            &format!(
                "INSERT INTO invites (id, workspace_id, email, role, token_hash, invited_by_label, created_at, expires_at) \
             VALUES ('{id}', '{workspace}', '{id}@example.com', 'member', 'hash-{id}', 'ada@example.com', {now}, {expires})"
            ),
        );
    }

    // Password-reset links: one expired, one live.
    for (who, expires) in [(&user.id, now - 1), (&other.id, now + 600)] {
        execute(
            &app,
            &format!(
                "INSERT INTO password_resets (user_id, token_hash, created_at, expires_at) \
             VALUES ('{who}', 'hash-{who}', {now}, {expires})"
            ),
        );
    }

    // WebAuthn challenges: more expired ones than one batch (passkey sign-in pages, and a
    // user's second steps), and a live one that shares its session with an expired one.
    let dead_ceremonies = 2 * BATCH as usize + 3;
    insert_rows(
        &app,
        "webauthn_ceremonies",
        "session_binding, purpose, user_id, state, created_at, expires_at",
        dead_ceremonies,
        |i| {
            let (purpose, who) = if i % 2 == 0 {
                ("passwordless", "NULL".to_owned())
            } else {
                ("second_factor", format!("'{}'", user.id))
            };
            format!("('b-{i}', '{purpose}', {who}, '{{}}', {now}, {})", now - 1)
        },
    );
    execute(
        &app,
        &format!(
            "INSERT INTO webauthn_ceremonies (session_binding, purpose, user_id, state, created_at, expires_at) \
             VALUES ('b-0', 'register_key', '{}', '{{}}', {now}, {})",
            user.id,
            now + 300
        ),
    );

    // Two instances sweep at once, each on its own connection.
    let rules = Rules {
        session_idle: app.settings.session_idle,
        session_absolute: app.settings.session_absolute,
    };
    let sweeps: Vec<Swept> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let db = app.db.clone();
                s.spawn(move || sweep(&mut db.get().unwrap(), rules, now).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = |f: fn(&Swept) -> usize| sweeps.iter().map(f).sum::<usize>();
    assert_eq!(total(|s| s.sessions), dead_sessions);
    assert_eq!(total(|s| s.enrolments), 1);
    assert_eq!(total(|s| s.rate_limits), 1_199);
    assert_eq!(total(|s| s.mail), 2);
    assert_eq!(total(|s| s.invites), 1);
    assert_eq!(total(|s| s.password_resets), 1);
    assert_eq!(total(|s| s.ceremonies), dead_ceremonies);

    assert_eq!(count(&app, "sessions"), live_sessions + 1);
    assert_eq!(count(&app, "pending_enrolments"), 1);
    assert_eq!(count(&app, "rate_limits"), live_buckets + 1);
    assert_eq!(count(&app, "mail_outbox"), live_mail + 2);
    assert_eq!(count(&app, "invites"), 2);
    assert_eq!(count(&app, "password_resets"), 1);
    assert_eq!(count(&app, "webauthn_ceremonies"), live_ceremonies + 1);
    assert_eq!(
        count(&app, "audit_events"),
        audit,
        "the audit log is never swept"
    );
    // Nothing is left for a third sweep.
    let again = sweep(&mut app.conn(), rules, now).unwrap();
    assert_eq!(again, Swept::default());
}
