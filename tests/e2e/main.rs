//! The browser suite: each journey runs against a freshly spawned app (its own database, as
//! in `tests/api`) in its own headless Chromium, by keyboard only, with axe-core and
//! screenshots on every page (see `browser.rs`).
//!
//! It needs Debian's `chromium` and `chromium-driver`, and npm to fetch axe-core into
//! `target/e2e` on first use. Without them every journey is reported as ignored, with how to
//! run it — never as passed. `TESSERA_E2E=require` (set by `.ci/run`) turns a missing tool
//! into a failure instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The harness shared with tests/api; this suite uses only part of it.
#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

mod browser;
mod journeys;
mod mailbox;
mod members;
mod passwords;
mod security_keys;
// The api suite's SMTP server and mail parser: to read the invitation the app wrote as an
// .eml file, and to receive the password-reset mail.
#[path = "../api/smtp.rs"]
#[allow(dead_code)]
mod smtp;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;

use futures_util::FutureExt;
use libtest_mimic::{Arguments, Failed, Trial};

use browser::{Browser, Driver, Outcome, Tools, e2e_dir};
use common::{TestApp, spawn_app_with};

pub type Journey<'a> = Pin<Box<dyn Future<Output = Outcome> + 'a>>;
type JourneyFn = for<'a> fn(&'a TestApp, &'a Browser) -> Journey<'a>;

const HOW_TO_RUN: &str = "the browser journeys need Chromium, ChromeDriver and npm: \
    `apt-get install chromium chromium-driver npm`, then `cargo test --test e2e` \
    (axe-core is fetched into target/e2e on first use; .ci/run does all of this)";

fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn from_env_or_path(var: &str, names: &[&str]) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(given) => Some(PathBuf::from(given)).filter(|p| p.is_file()),
        None => find_on_path(names),
    }
}

const AXE_CORE_VERSION: &str = "4.14.1";

/// axe-core from the npm registry, installed into `target/e2e` (never committed).
fn axe_core(dir: &Path) -> Result<String, String> {
    let file = dir.join("node_modules/axe-core/axe.min.js");
    let manifest = dir.join("node_modules/axe-core/package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|m| m["version"] == AXE_CORE_VERSION);
    if !installed || !file.is_file() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let npm = find_on_path(&["npm"]).ok_or("npm is not installed")?;
        let out = Command::new(npm)
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(dir)
            // Pinned: a new release may bring new rules, which should arrive by a commit.
            .arg(format!("axe-core@{AXE_CORE_VERSION}"))
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm install axe-core failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))
}

fn find_tools() -> Result<Tools, String> {
    let chromium = from_env_or_path(
        "TESSERA_E2E_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )
    .ok_or("Chromium is not installed")?;
    let chromedriver = from_env_or_path("TESSERA_E2E_CHROMEDRIVER", &["chromedriver"])
        .ok_or("ChromeDriver is not installed")?;
    let axe_source = axe_core(&e2e_dir())?;
    Ok(Tools {
        chromium,
        chromedriver,
        axe_source,
    })
}

/// The app's address as the browser opens it ([`TestApp::public_url`]): by name, since
/// browsers refuse WebAuthn on an IP address. Chromium resolves `localhost` itself; the app
/// listens on 127.0.0.1.
pub fn public_address(app: &TestApp) -> String {
    app.public_url()
}

/// Runs one journey: a fresh app, a fresh browser, and on failure a screenshot and the
/// page's HTML next to the journey's screenshots.
fn run_journey(
    name: &'static str,
    overrides: &'static [(&'static str, &'static str)],
    journey: JourneyFn,
    tools: Arc<Tools>,
    driver: Arc<Driver>,
) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    runtime.block_on(async move {
        let shots = e2e_dir().join("screenshots").join(name);
        let _ = std::fs::remove_dir_all(&shots);
        let app = spawn_app_with(overrides).await;
        let browser = Browser::open(&tools, &driver, &public_address(&app), shots.clone()).await?;
        let outcome = AssertUnwindSafe(journey(&app, &browser))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "the journey panicked".into()))
            });
        let outcome = match outcome {
            Ok(()) => Ok(()),
            Err(message) => {
                let saved = browser.record_failure().await;
                let saved: Vec<String> = saved.iter().map(|p| p.display().to_string()).collect();
                Err(format!(
                    "{message}\n  page at failure: {}\n  screenshots: {}",
                    saved.join(", "),
                    shots.display()
                ))
            }
        };
        browser.close().await;
        outcome.map_err(Failed::from)
    })
}

fn main() {
    let args = Arguments::from_args();
    let required = std::env::var("TESSERA_E2E").is_ok_and(|v| v == "require");
    let listing = args.list;
    let setup = if listing {
        Err("listing only".to_owned())
    } else {
        find_tools().and_then(|tools| Ok((Arc::new(Driver::start(&tools)?), Arc::new(tools))))
    };
    if let Err(why) = &setup
        && !listing
    {
        if required {
            eprintln!("browser tests required (TESSERA_E2E=require) but {why}; {HOW_TO_RUN}");
            std::process::exit(101);
        }
        eprintln!("note: browser tests ignored: {why}; {HOW_TO_RUN}");
    }
    let trials = journeys::ALL
        .iter()
        .chain(members::ALL)
        .chain(passwords::ALL)
        .chain(security_keys::ALL)
        .map(|&(name, overrides, journey)| match &setup {
            Ok((driver, tools)) => {
                let (driver, tools) = (driver.clone(), tools.clone());
                Trial::test(name, move || {
                    run_journey(name, overrides, journey, tools, driver)
                })
            }
            // Run anyway (`--include-ignored`), it fails and says why: never a pass.
            Err(why) => {
                let why = format!("{why}; {HOW_TO_RUN}");
                Trial::test(name, move || Err(Failed::from(why))).with_ignored_flag(true)
            }
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(setup);
    conclusion.exit();
}
