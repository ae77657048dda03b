//! `--mode admin-pages`: what the admin and support pages cost when a workspace is large.
//! One workspace of `--members` members (a third with TOTP) is seeded through
//! `tessera import`, with `--concurrency` admins and one support staff member; then
//! `--audit-events` audit events and `--sessions` session rows are inserted directly, in
//! bulk, and the statistics are brought up to date (`ANALYZE`). Each admin signs in and
//! walks the list of pages below in a closed loop for `--duration` seconds, the support
//! staff member walking the support search with them; the tool reports each page's p50 and
//! p99 over every request made to it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};

use crate::flow::LoadUser;

/// The audit kinds the seeded events cycle through (each a real kind).
const KINDS: [&str; 8] = [
    "sign_in_succeeded",
    "password_verified",
    "second_factor_succeeded",
    "signed_out",
    "sign_in_failed",
    "second_factor_failed",
    "recovery_code_used",
    "two_factor_enabled",
];

/// The email of seeded member `i`.
pub fn member_email(i: usize, run_id: &str) -> String {
    format!("member{i}.{run_id}@load.example")
}

/// The import lines: the admins (each with a TOTP secret, to sign in), `members` members,
/// a third of them with a secret, and `staff` (made support staff after the import).
pub fn seed_lines(
    admins: &[LoadUser],
    staff: Option<&LoadUser>,
    members: usize,
    run_id: &str,
    hash: &str,
) -> Vec<String> {
    let secret = |bytes: &[u8]| totp_rs::Secret::from(bytes.to_vec()).to_base32();
    let mut lines: Vec<String> = admins
        .iter()
        .enumerate()
        .map(|(i, admin)| {
            serde_json::json!({
                "email": admin.email,
                "workspace": "load",
                "role": "admin",
                "name": format!("Load Admin {i}"),
                "password_hash": hash,
                "totp_secret": secret(&admin.secret),
            })
            .to_string()
        })
        .collect();
    lines.extend(staff.map(|staff| {
        serde_json::json!({
            "email": staff.email,
            "workspace": "support",
            "name": "Load Support",
            "password_hash": hash,
            "totp_secret": secret(&staff.secret),
        })
        .to_string()
    }));
    lines.extend((0..members).map(|i| {
        let mut line = serde_json::json!({
            "email": member_email(i, run_id),
            "workspace": "load",
            "name": format!("Member {i}"),
            "password_hash": hash,
        });
        if i % 3 == 0 {
            line["totp_secret"] = serde_json::Value::String(secret(&[i as u8; 20]));
        }
        line.to_string()
    }));
    lines
}

/// What is inserted beside the import.
pub struct Bulk<'a> {
    pub run_id: &'a str,
    pub members: usize,
    pub audit_events: usize,
    pub sessions: usize,
    pub staff_email: &'a str,
}

/// Makes `staff_email` support staff and inserts the audit events (in the workspace
/// "load", one second apart, each about a member) and the session rows (each a member's,
/// seen just now), in one statement each, then runs `ANALYZE`.
pub fn bulk_insert(database_url: &str, bulk: &Bulk) -> anyhow::Result<()> {
    let postgres = database_url.starts_with("postgres");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let first = now - bulk.audit_events as i64;
    let kinds = KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| format!("WHEN {i} THEN '{k}'"))
        .collect::<Vec<_>>()
        .join(" ");
    // n runs from 1 to the count; `member` is a member's number spread over the list.
    let numbers = if postgres {
        "generate_series(1::bigint, {count}) AS s(n)"
    } else {
        "c"
    };
    let member = format!("((n * 7919) % {})", bulk.members.max(1));
    let email = format!("'member' || {member} || '.{}@load.example'", bulk.run_id);
    let events = format!(
        "INSERT INTO audit_events (created_at, workspace_id, actor_id, actor_label, subject_id, \
         subject_label, kind, ip, detail, actor_kind) \
         SELECT {first} + n, (SELECT id FROM workspaces WHERE slug = 'load'), NULL, {email}, \
         NULL, {email}, CASE n % {len} {kinds} END, '198.18.0.1', '', 'user' FROM {from}",
        len = KINDS.len(),
        from = numbers.replace("{count}", &bulk.audit_events.to_string()),
    );
    let sessions = format!(
        "INSERT INTO sessions (id, user_id, state, created_at, last_seen_at) \
         SELECT 'loadflow-' || n, (SELECT id FROM users WHERE email = {email}), '{{}}', \
         {now}, {now} FROM {from}",
        from = numbers.replace("{count}", &bulk.sessions.to_string()),
    );
    let counter = |count: usize| {
        format!(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {count}) "
        )
    };
    let staff = format!(
        "UPDATE users SET is_staff = TRUE WHERE email = '{}'",
        bulk.staff_email
    );
    if postgres {
        let mut conn = diesel::PgConnection::establish(database_url)?;
        conn.batch_execute(&staff)?;
        diesel::sql_query(events).execute(&mut conn)?;
        diesel::sql_query(sessions).execute(&mut conn)?;
        conn.batch_execute("VACUUM ANALYZE")?;
    } else {
        let mut conn = diesel::SqliteConnection::establish(database_url)?;
        conn.batch_execute(&staff)?;
        diesel::sql_query(counter(bulk.audit_events) + &events).execute(&mut conn)?;
        diesel::sql_query(counter(bulk.sessions) + &sessions).execute(&mut conn)?;
        conn.batch_execute("ANALYZE")?;
    }
    Ok(())
}

/// A page the admins (or the support staff member) open, by label.
pub struct Page {
    pub label: &'static str,
    pub path: String,
    /// Opened by the support staff member rather than an admin.
    pub support: bool,
}

/// The pages measured, for a workspace seeded by [`seed_lines`].
pub fn pages(members: usize, run_id: &str) -> Vec<Page> {
    // The members page lists by email: find the middle one the way the database sorts.
    let mut emails: Vec<String> = (0..members).map(|i| member_email(i, run_id)).collect();
    emails.sort();
    let middle = emails.get(members / 2).cloned().unwrap_or_default();
    let one = member_email(members * 7 / 9, run_id);
    let name = format!("Member {}", members * 7 / 9);
    let enc = |s: &str| url_encode(s);
    let admin = |label, path: String| Page {
        label,
        path,
        support: false,
    };
    vec![
        admin("/admin/users (first page)", "/admin/users".into()),
        admin(
            "/admin/users (middle page)",
            format!("/admin/users?after={}", enc(&middle)),
        ),
        admin("/admin/users (last page)", "/admin/users?last=yes".into()),
        admin(
            "/admin/users?q= (an email)",
            format!("/admin/users?q={}", enc(&one)),
        ),
        admin(
            "/admin/users?q= (a name)",
            format!("/admin/users?q={}", enc(&name)),
        ),
        admin(
            "/admin/users?status=not_enrolled",
            "/admin/users?status=not_enrolled".into(),
        ),
        admin("/admin/workspace", "/admin/workspace".into()),
        admin("/admin/audit (first page)", "/admin/audit".into()),
        admin("/admin/audit (last page)", "/admin/audit?last=yes".into()),
        admin(
            "/admin/audit?kind= (1 in 8)",
            "/admin/audit?kind=signed_out".into(),
        ),
        admin(
            "/admin/audit?kind= (none)",
            "/admin/audit?kind=enforcement_enabled".into(),
        ),
        admin(
            "/admin/audit?member=",
            format!("/admin/audit?member={}", enc(&one)),
        ),
        Page {
            label: "/support/users?q=",
            path: format!("/support/users?q={}", enc(&one)),
            support: true,
        },
    ]
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Each of `cookies` (admins, then the support staff member last) walks its pages in a
/// closed loop until `duration` has passed; every page must answer 200.
pub async fn measure(
    base: &str,
    admin_cookies: Vec<String>,
    staff_cookie: String,
    pages: Vec<Page>,
    duration: Duration,
) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let pages = std::sync::Arc::new(pages);
    let deadline = Instant::now() + duration;
    let mut walkers = Vec::new();
    let walkers_count = admin_cookies.len();
    for (n, cookie) in admin_cookies.into_iter().enumerate() {
        let (http, pages, base) = (http.clone(), pages.clone(), base.to_owned());
        // The support staff member walks with the first admin, in turn with its pages.
        let staff = (n == 0).then(|| staff_cookie.clone());
        walkers.push(tokio::spawn(async move {
            let mut times: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
            // Each admin starts at another page, so they do not all ask for the same one.
            let mut i = n * pages.len() / walkers_count.max(1);
            while Instant::now() < deadline {
                let page = &pages[i % pages.len()];
                i += 1;
                let cookie = match (page.support, &staff) {
                    (false, _) => &cookie,
                    (true, Some(staff)) => staff,
                    (true, None) => continue,
                };
                let started = Instant::now();
                let response = http
                    .get(format!("{base}{}", page.path))
                    .header(reqwest::header::COOKIE, cookie)
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                let took = started.elapsed();
                if status != reqwest::StatusCode::OK {
                    bail!("GET {} answered {status}", page.path);
                }
                if body.is_empty() {
                    bail!("GET {} answered an empty page", page.path);
                }
                times.entry(page.label).or_default().push(took);
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut all: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    for walker in walkers {
        for (label, times) in walker.await.context("a walker failed")?? {
            all.entry(label).or_default().extend(times);
        }
    }
    let quantile = |sorted: &[Duration], q: f64| {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        crate::ms(sorted[rank - 1])
    };
    let rows: Vec<serde_json::Value> = pages
        .iter()
        .filter_map(|page| {
            let mut times = all.get(page.label)?.clone();
            times.sort();
            Some(serde_json::json!({
                "page": page.label,
                "path": page.path,
                "requests": times.len(),
                "p50_ms": quantile(&times, 0.50),
                "p99_ms": quantile(&times, 0.99),
            }))
        })
        .collect();
    Ok(serde_json::Value::Array(rows))
}

pub fn print_table(r: &serde_json::Value) {
    println!();
    println!(
        "loadflow: admin-pages on {}, {} members (a third with TOTP), {} audit events, \
         {} sessions, {} admins at once, {:.0} s",
        r["database"].as_str().unwrap_or(""),
        r["members"],
        r["audit_events"],
        r["sessions"],
        r["admins"],
        r["duration_s"].as_f64().unwrap_or(0.0),
    );
    println!(
        "  {:<40} {:>8} {:>9} {:>9}",
        "page", "requests", "p50 (ms)", "p99 (ms)"
    );
    for row in r["pages"].as_array().into_iter().flatten() {
        println!(
            "  {:<40} {:>8} {:>9.1} {:>9.1}",
            row["page"].as_str().unwrap_or(""),
            row["requests"],
            row["p50_ms"].as_f64().unwrap_or(0.0),
            row["p99_ms"].as_f64().unwrap_or(0.0),
        );
    }
    println!(
        "  seeding: import {:.1} s, bulk inserts and ANALYZE {:.1} s",
        r["import_seconds"].as_f64().unwrap_or(0.0),
        r["bulk_seconds"].as_f64().unwrap_or(0.0),
    );
    println!();
}
