//! `cargo run --release --example loadflow -- [--mode full|second-step|csv-export|admin-pages]
//!  [--concurrency N] [--duration SECONDS] [--users N] [--members N] [--repeat N] [--analyze]
//!  [--audit-events N] [--sessions N] [--keep] [--database-url postgres://…] [--json FILE]`
//!
//! Measures what a sign-in costs the server. It seeds users through `tessera import` (one
//! argon2id hash, made here at the server's parameters, shared by every user: seeding
//! thousands costs one hash), starts `target/release/tessera serve` as a child process
//! over a fresh database, runs complete flows in a closed loop (see `flow.rs`), and reads
//! the server's CPU time and peak memory from `/proc/<pid>`. In the same run it times one
//! argon2id verification at the same parameters, in this process, as CPU time, so the
//! result is a ratio that holds on any machine:
//!
//! - `full`: GET /login → POST /login → GET /login/2fa → POST /login/2fa → GET /home,
//!   reported as server CPU per flow ÷ one argon2id verification;
//! - `second-step`: the password step is done for every session first (not measured, with
//!   light argon2 parameters since it is not the subject), then POST /login/2fa + GET /home
//!   are measured, per pair;
//! - `csv-export`: one workspace of `--members` members (a third with TOTP) and its admin;
//!   the admin downloads `/admin/users.csv` `--repeat` times, and the tool reports the time
//!   to the first byte and to the last, and the server's RSS before, at its peak and after
//!   (see `csv_export.rs`);
//! - `admin-pages`: the same workspace with `--audit-events` audit events and `--sessions`
//!   session rows; `--concurrency` admins (default 4) open the admin pages, and a support
//!   staff member the support search, in a closed loop; each page's p50 and p99 (see
//!   `admin_pages.rs`).
//!
//! With `--url` it targets a server already running instead (give `--server-pid` for CPU
//! and memory, and `--database-url` plus `ENCRYPTION_KEY` of that server for seeding).

mod admin_pages;
mod csv_export;
mod flow;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use diesel::{Connection, RunQueryDsl};
use flow::{Browser, LoadUser, Outcome};
use tessera::auth::password::Argon2Settings;
use tessera::auth::password::PasswordHasher;
use tessera::config::Settings;

const PASSWORD: &str = "load test password, long enough";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Complete sign-in flows.
    Full,
    /// POST /login/2fa + GET /home only.
    SecondStep,
    /// One admin downloading the members CSV of a large workspace.
    CsvExport,
    /// Admins browsing the admin pages of a large workspace at once.
    AdminPages,
}

#[derive(Parser, Debug)]
#[command(about = "Load test of Tessera's sign-in flow")]
struct Args {
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Simulated browsers, each in a closed loop (default: 16 full, 64 second-step).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Measured seconds.
    #[arg(long, default_value = "20")]
    duration: u64,
    /// Users to seed (default: enough that none repeats a 30 s TOTP step: 3000 full,
    /// 8000 second-step, where each prepared session is one user).
    #[arg(long)]
    users: Option<usize>,
    /// A PostgreSQL server URL: a fresh database is created beside the one named and dropped
    /// at the end. Without it, a SQLite file in a temporary folder.
    #[arg(long)]
    database_url: Option<String>,
    /// Target this running server instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// The targeted server's process id, for its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server binary to start (default: `tessera` beside this example's folder, i.e.
    /// target/release/tessera).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Write the JSON report here (default: print it after the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// second-step mode: each client pauses this long between pairs (think time), so the
    /// latency is measured at a given number of clients rather than at saturation.
    #[arg(long, default_value = "0")]
    pace_ms: u64,
    /// csv-export and admin-pages modes: members of the workspace.
    #[arg(long, default_value = "100000")]
    members: usize,
    /// csv-export mode: run ANALYZE after seeding, as autovacuum (PostgreSQL) would within
    /// a minute or so. Without it PostgreSQL plans the first page on the statistics of an
    /// empty table.
    #[arg(long)]
    analyze: bool,
    /// csv-export mode: exports measured, one after another (the median is reported).
    #[arg(long, default_value = "3")]
    repeat: usize,
    /// admin-pages mode: audit events of the workspace.
    #[arg(long, default_value = "1000000")]
    audit_events: usize,
    /// admin-pages mode: session rows (of members).
    #[arg(long, default_value = "200000")]
    sessions: usize,
    /// Leave the run's database (and its folder) in place, to inspect or `EXPLAIN` on it.
    #[arg(long)]
    keep: bool,
    /// argon2id verifications timed for the reference cost.
    #[arg(long, default_value = "20")]
    argon2_samples: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("loadflow: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Where the run's database and files live, removed at the end.
struct Scratch {
    dir: PathBuf,
    database_url: String,
    /// `(admin URL, database name)` of a database this run created.
    postgres: Option<(String, String)>,
    /// `--keep`: not removed at the end.
    keep: bool,
}

impl Scratch {
    fn create(database_url: Option<&str>) -> anyhow::Result<Scratch> {
        let id = tessera::random::hex(&tessera::random::bytes::<6>()?);
        let dir = std::env::temp_dir().join(format!("loadflow-{id}"));
        std::fs::create_dir_all(&dir)?;
        if let Some(url) = database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("--database-url must be a postgres:// URL (SQLite is the default)");
        }
        let Some(given) = database_url else {
            return Ok(Scratch {
                database_url: dir.join("tessera.db").to_string_lossy().into_owned(),
                dir,
                postgres: None,
                keep: false,
            });
        };
        let (without_query, query) = given.split_once('?').unwrap_or((given, ""));
        let (base, _) = without_query
            .rsplit_once('/')
            .context("--database-url has no database name")?;
        // As in the test suite: no TLS to a local server unless asked for.
        let query = if query.contains("sslmode=") {
            query.to_owned()
        } else if query.is_empty() {
            "sslmode=disable".to_owned()
        } else {
            format!("{query}&sslmode=disable")
        };
        let admin_url = format!("{without_query}?{query}");
        let name = format!("loadflow_{id}");
        let mut admin = diesel::PgConnection::establish(&admin_url)
            .context("could not connect to --database-url")?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin)?;
        Ok(Scratch {
            dir,
            database_url: format!("{base}/{name}?{query}"),
            postgres: Some((admin_url, name)),
            keep: false,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "loadflow: kept {} ({})",
                self.database_url,
                self.dir.display()
            );
            return;
        }
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(mut admin) = diesel::PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server child process; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let settings = Settings::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let concurrency = args.concurrency.unwrap_or(match args.mode {
        Mode::Full => 16,
        Mode::SecondStep | Mode::CsvExport => 64,
        Mode::AdminPages => 4,
    });
    let user_count = match args.mode {
        Mode::Full => args.users.unwrap_or(3000),
        Mode::SecondStep => args.users.unwrap_or(8000),
        // The admin who exports; the members are seeded apart.
        Mode::CsvExport => 1,
        // The admins, and the support staff member last.
        Mode::AdminPages => concurrency + 1,
    };
    // The password step is not what second-step mode measures: prepare it cheaply.
    let server_argon2 = match args.mode {
        Mode::Full => settings.argon2,
        Mode::SecondStep | Mode::CsvExport | Mode::AdminPages => Argon2Settings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
    };
    let key = match &settings.encryption_key {
        Some(key) => key.clone(),
        None => base64_key()?,
    };
    // With --url the database is the running server's, named by --database-url.
    let mut scratch = Scratch::create(match &args.url {
        Some(_) => None,
        None => args.database_url.as_deref(),
    })?;
    scratch.keep = args.keep;
    let bin = server_binary(args.server_bin.as_deref())?;

    // Seed through the import path, with one hash at the server's parameters.
    let hasher = PasswordHasher::new(server_argon2, 1)?;
    let hash = hasher.hash_blocking(PASSWORD)?;
    let run_id = tessera::random::hex(&tessera::random::bytes::<3>()?);
    let users: Vec<LoadUser> = (0..user_count)
        .map(|i| {
            Ok(LoadUser {
                email: format!("user{i}.{run_id}@load.example"),
                password: PASSWORD.to_owned(),
                secret: tessera::random::bytes::<20>()?.to_vec(),
            })
        })
        .collect::<Result<_, getrandom::Error>>()?;
    let database_url = if args.url.is_some() {
        args.database_url
            .clone()
            .context("--url needs --database-url (and ENCRYPTION_KEY) of that server, to seed")?
    } else {
        scratch.database_url.clone()
    };
    let seed_file = scratch.dir.join("users.jsonl");
    let lines: Vec<String> = match args.mode {
        Mode::CsvExport => admin_pages::seed_lines(&users[..1], None, args.members, &run_id, &hash),
        Mode::AdminPages => admin_pages::seed_lines(
            &users[..concurrency],
            Some(&users[concurrency]),
            args.members,
            &run_id,
            &hash,
        ),
        Mode::Full | Mode::SecondStep => users
            .iter()
            .map(|u| flow::import_line(u, "load", &hash))
            .collect(),
    };
    std::fs::write(&seed_file, lines.join("\n") + "\n")?;
    let env = |cmd: &mut Command| {
        // Each simulated user posts from its own address (X-Forwarded-For, trusted from
        // this machine), so the abuse limits count them apart as they would real users.
        // A user signs in many times in a run, so the limits are raised out of its reach;
        // they still count every request, so their cost is in the measurement.
        cmd.env("TRUSTED_PROXIES", "127.0.0.1");
        for key in [
            "RATE_LIMIT_LOGIN_PER_IP",
            "RATE_LIMIT_SECOND_FACTOR_PER_IP",
            "RATE_LIMIT_PASSWORD_FAILURES_PER_ACCOUNT",
        ] {
            cmd.env(key, "10000");
        }
        cmd.env("DATABASE_URL", &database_url)
            .env("DATA_DIR", &scratch.dir)
            .env("ENCRYPTION_KEY", &key)
            .env("ARGON2_MEMORY_KIB", server_argon2.memory_kib.to_string())
            .env("ARGON2_ITERATIONS", server_argon2.iterations.to_string())
            .env("ARGON2_PARALLELISM", server_argon2.parallelism.to_string());
    };
    let seeding = Instant::now();
    let mut import = Command::new(&bin);
    import.arg("import").arg("--file").arg(&seed_file);
    env(&mut import);
    let output = import.output().context("could not run tessera import")?;
    if !output.status.success() {
        bail!(
            "tessera import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let seed_seconds = seeding.elapsed().as_secs_f64();
    if args.analyze {
        analyze(&database_url)?;
    }
    let bulk_seconds = if args.mode == Mode::AdminPages {
        let started = Instant::now();
        admin_pages::bulk_insert(
            &database_url,
            &admin_pages::Bulk {
                run_id: &run_id,
                members: args.members,
                audit_events: args.audit_events,
                sessions: args.sessions,
                staff_email: &users[concurrency].email,
            },
        )?;
        started.elapsed().as_secs_f64()
    } else {
        0.0
    };

    let (base, _server, pid) = match &args.url {
        Some(url) => (url.clone(), None, args.server_pid),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log = std::fs::File::create(scratch.dir.join("server.log"))?;
            let mut serve = Command::new(&bin);
            serve
                .arg("serve")
                .env("BIND", format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            env(&mut serve);
            let server = Server {
                child: serve.spawn().context("could not start the server")?,
            };
            let pid = server.child.id();
            (format!("http://127.0.0.1:{port}"), Some(server), Some(pid))
        }
    };
    let browser = Browser::new(&base)?;
    wait_until_up(&base, &scratch.dir).await?;
    let idle_rss = pid.and_then(|p| status_kib(p, "VmRSS"));

    if args.mode == Mode::AdminPages {
        let mut cookies = Vec::new();
        for (i, user) in users.iter().enumerate() {
            cookies.push(
                browser
                    .sign_in(user, i)
                    .await
                    .map_err(|e| anyhow::anyhow!("{} could not sign in: {e}", user.email))?,
            );
        }
        let staff_cookie = cookies.pop().context("no support staff member")?;
        let started = Instant::now();
        let pages = admin_pages::measure(
            &base,
            cookies,
            staff_cookie,
            admin_pages::pages(args.members, &run_id),
            Duration::from_secs(args.duration),
        )
        .await?;
        let report = serde_json::json!({
            "mode": "admin-pages",
            "database": if database_url.starts_with("postgres") { "postgresql" } else { "sqlite" },
            "members": args.members,
            "audit_events": args.audit_events,
            "sessions": args.sessions,
            "admins": concurrency,
            "duration_s": started.elapsed().as_secs_f64(),
            "import_seconds": seed_seconds,
            "bulk_seconds": bulk_seconds,
            "rss_idle_mib": idle_rss.map(mib),
            "rss_peak_mib": pid.and_then(|p| status_kib(p, "VmHWM")).map(mib),
            "pages": pages,
        });
        admin_pages::print_table(&report);
        write_report(&report, args.json.as_deref())?;
        return Ok(true);
    }
    if args.mode == Mode::CsvExport {
        let cookie = browser
            .sign_in(&users[0], 0)
            .await
            .map_err(|e| anyhow::anyhow!("the admin could not sign in: {e}"))?;
        let export = csv_export::measure(&base, &cookie, pid, args.repeat, args.members).await?;
        let report = serde_json::json!({
            "mode": "csv-export",
            "database": if database_url.starts_with("postgres") { "postgresql" } else { "sqlite" },
            "members": args.members,
            "analyzed": args.analyze,
            "seed_seconds": seed_seconds,
            "rss_idle_mib": idle_rss.map(mib),
            "export": export,
        });
        csv_export::print_table(&report);
        write_report(&report, args.json.as_deref())?;
        return Ok(true);
    }

    // The reference: one argon2id verification at the server's parameters, CPU time.
    let reference = {
        let samples = args.argon2_samples.max(1);
        let argon2 = settings.argon2;
        tokio::task::spawn_blocking(move || argon2_cpu(argon2, samples)).await??
    };
    // The same, with one verification per core running at once: what each hash costs in a
    // saturated server, where the hashes share memory bandwidth and cache.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parallel_reference = {
        let samples = args.argon2_samples.max(1);
        let argon2 = settings.argon2;
        let threads: Vec<_> = (0..cores)
            .map(|_| std::thread::spawn(move || argon2_cpu(argon2, samples)))
            .collect();
        let mut each = Vec::new();
        for thread in threads {
            each.push(
                thread
                    .join()
                    .map_err(|_| anyhow::anyhow!("an argon2 reference thread failed"))??,
            );
        }
        median(&mut each)
    };

    let users = Arc::new(users);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Not in second-step mode: its bursts would show in the latency measured there.
    let sampler = (args.mode == Mode::Full).then(|| {
        let (argon2, stop) = (settings.argon2, stop.clone());
        std::thread::spawn(move || argon2_under_load(argon2, stop))
    });
    let (outcome, prepared) = match args.mode {
        Mode::Full => {
            let before = pid.map(cpu_ticks).transpose()?;
            let own_before = cpu_ticks_self()?;
            let outcome = flow::full_flows(
                &browser,
                users.clone(),
                concurrency,
                Duration::from_secs(args.duration),
            )
            .await;
            (
                Measured::new(outcome, pid, before, own_before)?,
                Outcome::default(),
            )
        }
        Mode::SecondStep => {
            let (sessions, prepared) =
                flow::prepare_second_steps(&browser, users.clone(), user_count, 8).await;
            let before = pid.map(cpu_ticks).transpose()?;
            let own_before = cpu_ticks_self()?;
            let outcome = flow::second_steps(
                &browser,
                users.clone(),
                sessions,
                concurrency,
                Duration::from_secs(args.duration),
                Duration::from_millis(args.pace_ms),
            )
            .await;
            (Measured::new(outcome, pid, before, own_before)?, prepared)
        }
        Mode::CsvExport | Mode::AdminPages => bail!("this mode has returned above"),
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (loaded_reference, sampler_cpu_ms) = match sampler {
        Some(sampler) => sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the argon2 sampler failed"))??,
        None => (None, 0.0),
    };
    let peak_rss = pid.and_then(|p| status_kib(p, "VmHWM"));
    let rss_after = pid.and_then(|p| status_kib(p, "VmRSS"));

    let o = &outcome.outcome;
    let flows_per_second = o.completed as f64 / o.elapsed.as_secs_f64();
    let cpu_ms = outcome
        .server_cpu_ms
        .map(|ms| ms / o.completed.max(1) as f64);
    let throughput_target = 0.9 * cores as f64 / (reference / 1000.0);
    let a = settings.argon2;
    let report = serde_json::json!({
        "mode": match args.mode {
            Mode::Full => "full",
            Mode::SecondStep => "second-step",
            Mode::CsvExport => "csv-export",
            Mode::AdminPages => "admin-pages",
        },
        "database": if database_url.starts_with("postgres") { "postgresql" } else { "sqlite" },
        "cores": cores,
        "concurrency": concurrency,
        "pace_ms": args.pace_ms,
        "duration_s": o.elapsed.as_secs_f64(),
        "users_seeded": user_count,
        "seed_seconds": seed_seconds,
        "completed": o.completed,
        "failed": o.failed,
        "failures": o.failures,
        "prepare_failed": prepared.failed,
        "per_second": flows_per_second,
        "latency_ms": {
            "p50": ms(o.quantile(0.50)),
            "p95": ms(o.quantile(0.95)),
            "p99": ms(o.quantile(0.99)),
        },
        "server_cpu_ms_per_op": cpu_ms,
        "client_cpu_ms_per_op": (outcome.client_cpu_ms - sampler_cpu_ms).max(0.0)
            / o.completed.max(1) as f64,
        "argon2id": {
            "m_kib": a.memory_kib, "t": a.iterations, "p": a.parallelism,
            "cpu_ms": reference,
            "cpu_ms_under_load": loaded_reference,
            "cpu_ms_one_per_core_at_once": parallel_reference,
        },
        "ratio_to_argon2id": match args.mode {
            Mode::Full => cpu_ms.map(|c| c / reference),
            Mode::SecondStep | Mode::CsvExport | Mode::AdminPages => None,
        },
        "ratio_to_argon2id_one_per_core_at_once": match args.mode {
            Mode::Full => cpu_ms.map(|c| c / parallel_reference),
            Mode::SecondStep | Mode::CsvExport | Mode::AdminPages => None,
        },
        "ratio_to_argon2id_under_load": match args.mode {
            Mode::Full => cpu_ms.zip(loaded_reference).map(|(c, r)| c / r),
            Mode::SecondStep | Mode::CsvExport | Mode::AdminPages => None,
        },
        "throughput_target_per_second": match args.mode {
            Mode::Full => Some(throughput_target),
            Mode::SecondStep | Mode::CsvExport | Mode::AdminPages => None,
        },
        "rss_mib": {
            "idle": idle_rss.map(mib),
            "after": rss_after.map(mib),
            "peak": peak_rss.map(mib),
        },
        "live_sessions_at_end": o.completed,
    });

    print_table(args.mode, &report);
    write_report(&report, args.json.as_deref())?;
    Ok(o.failed == 0 && prepared.failed == 0 && o.completed > 0)
}

/// The JSON report, to `path` or after the table.
fn write_report(report: &serde_json::Value, path: Option<&Path>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    match path {
        Some(path) => std::fs::write(path, json + "\n")?,
        None => println!("{json}"),
    }
    Ok(())
}

/// A run's client-side outcome with the CPU time it cost.
struct Measured {
    outcome: Outcome,
    server_cpu_ms: Option<f64>,
    client_cpu_ms: f64,
}

impl Measured {
    fn new(
        outcome: Outcome,
        pid: Option<u32>,
        before: Option<u64>,
        own_before: u64,
    ) -> anyhow::Result<Measured> {
        let tick_ms = 1000.0 / clock_ticks_per_second() as f64;
        let server_cpu_ms = match (pid, before) {
            (Some(pid), Some(before)) => Some((cpu_ticks(pid)? - before) as f64 * tick_ms),
            _ => None,
        };
        let client_cpu_ms = (cpu_ticks_self()? - own_before) as f64 * tick_ms;
        Ok(Measured {
            outcome,
            server_cpu_ms,
            client_cpu_ms,
        })
    }
}

fn print_table(mode: Mode, r: &serde_json::Value) {
    // A pair is POST /login/2fa + GET /home.
    let unit = match mode {
        Mode::Full => "flow",
        Mode::SecondStep => "pair",
        Mode::CsvExport | Mode::AdminPages => "request",
    };
    let num = |v: &serde_json::Value| v.as_f64().map_or("n/a".to_owned(), |n| format!("{n:.2}"));
    println!();
    println!(
        "loadflow: {}{} on {}, {} cores, {} clients, {:.1} s",
        r["mode"].as_str().unwrap_or(""),
        match mode {
            Mode::Full => "",
            Mode::SecondStep => " (pairs of POST /login/2fa + GET /home)",
            Mode::CsvExport | Mode::AdminPages => "",
        },
        r["database"].as_str().unwrap_or(""),
        r["cores"],
        r["concurrency"],
        r["duration_s"].as_f64().unwrap_or(0.0)
    );
    let rows = [
        (format!("completed {unit}s"), r["completed"].to_string()),
        ("failed".to_owned(), r["failed"].to_string()),
        (format!("{unit}s per second"), num(&r["per_second"])),
        (
            "latency p50 / p95 / p99 (ms)".to_owned(),
            format!(
                "{} / {} / {}",
                num(&r["latency_ms"]["p50"]),
                num(&r["latency_ms"]["p95"]),
                num(&r["latency_ms"]["p99"])
            ),
        ),
        (
            format!("server CPU per {unit} (ms)"),
            num(&r["server_cpu_ms_per_op"]),
        ),
        (
            format!("client CPU per {unit} (ms)"),
            num(&r["client_cpu_ms_per_op"]),
        ),
        (
            format!(
                "argon2id verify, m={} t={} p={} (CPU ms)",
                r["argon2id"]["m_kib"], r["argon2id"]["t"], r["argon2id"]["p"]
            ),
            num(&r["argon2id"]["cpu_ms"]),
        ),
        (
            "argon2id verify, one per core at once (CPU ms)".to_owned(),
            num(&r["argon2id"]["cpu_ms_one_per_core_at_once"]),
        ),
        (
            "argon2id verify during the load (CPU ms)".to_owned(),
            num(&r["argon2id"]["cpu_ms_under_load"]),
        ),
        (
            "ratio server CPU / argon2id".to_owned(),
            num(&r["ratio_to_argon2id"]),
        ),
        (
            "ratio server CPU / argon2id one per core at once".to_owned(),
            num(&r["ratio_to_argon2id_one_per_core_at_once"]),
        ),
        (
            "ratio server CPU / argon2id during the load".to_owned(),
            num(&r["ratio_to_argon2id_under_load"]),
        ),
        (
            "throughput target (0.9 × cores ÷ argon2id)".to_owned(),
            num(&r["throughput_target_per_second"]),
        ),
        (
            "RSS idle / after / peak (MiB)".to_owned(),
            format!(
                "{} / {} / {}",
                num(&r["rss_mib"]["idle"]),
                num(&r["rss_mib"]["after"]),
                num(&r["rss_mib"]["peak"])
            ),
        ),
        (
            "users seeded (import seconds)".to_owned(),
            format!("{} ({})", r["users_seeded"], num(&r["seed_seconds"])),
        ),
    ];
    for (label, value) in rows {
        println!("  {label:<48} {value}");
    }
    if let Some(failures) = r["failures"].as_object()
        && !failures.is_empty()
    {
        println!("  failures by reason:");
        for (reason, n) in failures {
            println!("    {n:>6}  {reason}");
        }
    }
    println!();
}

/// Brings the planner's statistics up to date with what was seeded.
fn analyze(database_url: &str) -> anyhow::Result<()> {
    use diesel::connection::SimpleConnection;
    if database_url.starts_with("postgres") {
        diesel::PgConnection::establish(database_url)?.batch_execute("ANALYZE")?;
    } else {
        diesel::SqliteConnection::establish(database_url)?.batch_execute("ANALYZE")?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn base64_key() -> anyhow::Result<String> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.encode(tessera::random::bytes::<32>()?))
}

fn server_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("cannot locate the target folder")?
            .join("tessera"),
    };
    if !bin.exists() {
        bail!(
            "{} does not exist: build the server first (cargo build --release)",
            bin.display()
        );
    }
    Ok(bin)
}

async fn wait_until_up(base: &str, dir: &Path) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(response) = http.get(format!("{base}/healthz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    bail!("the server did not come up within 30 s; its log:\n{log}")
}

/// CPU time (ms) of one argon2id verification, the median of `samples`, each measured on
/// this thread with its CPU-time clock.
fn argon2_cpu(argon2: Argon2Settings, samples: u32) -> anyhow::Result<f64> {
    let hasher = PasswordHasher::new(argon2, 1)?;
    let stored = hasher.hash_blocking(PASSWORD)?;
    hasher.verify_blocking(PASSWORD, &stored)?;
    let mut times = Vec::new();
    for _ in 0..samples {
        times.push(one_verification_ms(&hasher, &stored)?);
    }
    Ok(median(&mut times))
}

fn one_verification_ms(hasher: &PasswordHasher, stored: &str) -> anyhow::Result<f64> {
    let before = thread_cpu()?;
    if !hasher.verify_blocking(PASSWORD, stored)? {
        bail!("the reference hash did not verify");
    }
    Ok((thread_cpu()? - before).as_secs_f64() * 1e3)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The same verification timed every half second while the load runs: under load, two
/// hashes share the memory bandwidth and caches, and each may cost more CPU than alone.
/// Returns the median and this thread's whole CPU time (ms), which is not the client's.
fn argon2_under_load(
    argon2: Argon2Settings,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(Option<f64>, f64)> {
    let started = thread_cpu()?;
    let hasher = PasswordHasher::new(argon2, 1)?;
    let stored = hasher.hash_blocking(PASSWORD)?;
    let mut times = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        times.push(one_verification_ms(&hasher, &stored)?);
    }
    let own = (thread_cpu()? - started).as_secs_f64() * 1e3;
    Ok(((!times.is_empty()).then(|| median(&mut times)), own))
}

/// This thread's CPU time. `/proc/thread-self/schedstat` will not do: a running thread's
/// figure there is only brought up to date at a scheduler tick (4 ms on some kernels), so a
/// 14 ms hash read as 12 or 16; the clock adds the time since.
fn thread_cpu() -> anyhow::Result<Duration> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::try_from(now).context("the thread CPU clock went below zero")
}

/// utime + stime of a process, in clock ticks (includes its finished threads).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

fn cpu_ticks_self() -> anyhow::Result<u64> {
    stat_ticks("/proc/self/stat")
}

fn stat_ticks(path: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .context("unexpected stat format")
    };
    Ok(field(14)? + field(15)?)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
