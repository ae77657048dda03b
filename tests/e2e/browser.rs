//! One headless Chromium per journey, driven over WebDriver (Debian's chromedriver), with
//! the checks every page gets: axe-core in light and dark mode, one `h1`, a title, and
//! screenshots at 1280×800 and 375×740.
//!
//! Interaction is by keyboard only: fields and buttons are reached with Tab from wherever
//! the page put the focus, so a journey that passes is one a keyboard user can complete.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// What the browser suite needs from the machine, found once.
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    pub axe_source: String,
}

/// The running chromedriver all journeys share (each opens its own browser through it).
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Driver {
    pub fn start(tools: &Tools) -> Result<Driver, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for chromedriver: {e}"))?
            .port();
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", tools.chromedriver.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chrome DevTools command sent through chromedriver (`goog/cdp/execute`): device
/// metrics and `prefers-color-scheme` emulation, which WebDriver itself lacks.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// A command of the W3C WebAuthn automation extension (`session/{id}/webauthn/…`), which
/// chromedriver implements: virtual authenticators that answer `navigator.credentials`
/// as a real key would, with no prompt and no hardware.
#[derive(Debug)]
struct WebAuthnCmd {
    method: http::Method,
    /// After `webauthn/`, e.g. `authenticator/{id}/credentials`.
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthnCmd {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// The two kinds of virtual authenticator a journey attaches.
#[derive(Debug, Clone, Copy)]
pub enum Authenticator {
    /// A USB key that only tests presence (no PIN): a second factor, no passkeys.
    SecurityKey,
    /// A platform authenticator with user verification that keeps resident credentials:
    /// what a laptop's fingerprint reader or a phone offers.
    Passkey,
}

impl Authenticator {
    fn options(self) -> Value {
        match self {
            Authenticator::SecurityKey => json!({
                "protocol": "ctap2", "transport": "usb",
                "hasResidentKey": false, "hasUserVerification": false,
                "isUserConsenting": true, "isUserVerified": false,
            }),
            Authenticator::Passkey => json!({
                "protocol": "ctap2", "transport": "internal",
                "hasResidentKey": true, "hasUserVerification": true,
                "isUserConsenting": true, "isUserVerified": true,
            }),
        }
    }
}

/// A credential held by a virtual authenticator (the automation extension's Credential
/// Parameters; byte fields are base64url, the private key PKCS#8).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualCredential {
    pub credential_id: String,
    pub is_resident_credential: bool,
    pub rp_id: String,
    pub private_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_handle: Option<String>,
    pub sign_count: u64,
    /// Kept as read: the server refuses a key whose backup eligibility changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_eligibility: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_state: Option<bool>,
}

pub const DESKTOP: (u32, u32) = (1280, 800);
pub const PHONE: (u32, u32) = (375, 740);
const ZOOMED: (u32, u32) = (640, 400);

pub struct Browser {
    client: Client,
    pub base: String,
    shots: PathBuf,
    shot_count: AtomicUsize,
    axe_source: String,
    _profile: TempDir,
}

/// A directory removed on drop (the browser profile).
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub type Outcome<T = ()> = Result<T, String>;

fn wd<T>(what: &str, result: Result<T, fantoccini::error::CmdError>) -> Outcome<T> {
    result.map_err(|e| format!("{what}: {e}"))
}

impl Browser {
    pub async fn open(
        tools: &Tools,
        driver: &Driver,
        base: &str,
        shots: PathBuf,
    ) -> Outcome<Browser> {
        let profile = std::env::temp_dir().join(format!(
            "tessera-e2e-profile-{}",
            tessera::random::hex(&tessera::random::bytes::<8>().map_err(|e| e.to_string())?)
        ));
        std::fs::create_dir_all(&profile).map_err(|e| e.to_string())?;
        let profile = TempDir(profile);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": tools.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-sync",
                    "--disable-component-update", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--lang=en-GB",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }),
        );
        let client = ClientBuilder::native()
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .map_err(|e| format!("cannot open Chromium through chromedriver: {e}"))?;
        std::fs::create_dir_all(&shots).map_err(|e| e.to_string())?;
        let browser = Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            shots,
            shot_count: AtomicUsize::new(0),
            axe_source: tools.axe_source.clone(),
            _profile: profile,
        };
        browser.viewport(DESKTOP, false).await?;
        // Two headless browsers at once compete for "the focused window"; a person's own
        // browser window has the focus, so the page is told it always has.
        browser
            .cdp(
                "Emulation.setFocusEmulationEnabled",
                json!({ "enabled": true }),
            )
            .await?;
        Ok(browser)
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    async fn cdp(&self, cmd: &'static str, params: Value) -> Outcome {
        wd(cmd, self.client.issue_cmd(Cdp { cmd, params }).await).map(|_| ())
    }

    async fn webauthn(
        &self,
        method: http::Method,
        path: String,
        body: Option<Value>,
    ) -> Outcome<Value> {
        let what = format!("webauthn {method} {path}");
        wd(
            &what,
            self.client
                .issue_cmd(WebAuthnCmd { method, path, body })
                .await,
        )
    }

    /// Attaches a virtual authenticator to the browser; returns its id. Keep one attached
    /// at a time: two would both answer a request either can satisfy.
    pub async fn add_authenticator(&self, kind: Authenticator) -> Outcome<String> {
        let id = self
            .webauthn(
                http::Method::POST,
                "authenticator".into(),
                Some(kind.options()),
            )
            .await?;
        id.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("adding an authenticator answered {id}"))
    }

    /// Detaches an authenticator, and with it every credential it holds.
    pub async fn remove_authenticator(&self, id: &str) -> Outcome {
        self.webauthn(http::Method::DELETE, format!("authenticator/{id}"), None)
            .await
            .map(|_| ())
    }

    /// The credentials an authenticator holds (including their private keys).
    pub async fn credentials(&self, id: &str) -> Outcome<Vec<VirtualCredential>> {
        let list = self
            .webauthn(
                http::Method::GET,
                format!("authenticator/{id}/credentials"),
                None,
            )
            .await?;
        serde_json::from_value(list.clone()).map_err(|e| format!("credentials {list}: {e}"))
    }

    /// Puts a credential into an authenticator, as if it had been registered there.
    pub async fn add_credential(&self, id: &str, credential: &VirtualCredential) -> Outcome {
        let body = serde_json::to_value(credential).map_err(|e| e.to_string())?;
        self.webauthn(
            http::Method::POST,
            format!("authenticator/{id}/credential"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// A fresh P-256 private key as PKCS#8 in base64url, made by the page's WebCrypto:
    /// a key no authenticator registered, for a credential that must fail to verify.
    pub async fn new_private_key(&self) -> Outcome<String> {
        let key = wd(
            "generating a P-256 key",
            self.client
                .execute_async(
                    "const done = arguments[arguments.length - 1];
                     crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign'])
                       .then(k => crypto.subtle.exportKey('pkcs8', k.privateKey))
                       .then(der => done(btoa(String.fromCharCode(...new Uint8Array(der)))
                           .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '')))
                       .catch(e => done('error: ' + e));",
                    vec![],
                )
                .await,
        )?;
        match key.as_str() {
            Some(k) if !k.starts_with("error") => Ok(k.to_owned()),
            _ => Err(format!("WebCrypto made no key: {key}")),
        }
    }

    async fn viewport(&self, (width, height): (u32, u32), mobile: bool) -> Outcome {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await
    }

    async fn color_scheme(&self, scheme: &str) -> Outcome {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        )
        .await
    }

    pub async fn js(&self, script: &str) -> Outcome<Value> {
        wd(script, self.client.execute(script, vec![]).await)
    }

    pub async fn js_string(&self, script: &str) -> Outcome<String> {
        Ok(match self.js(script).await? {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }

    /// Opens `path` as a typed address would, and waits for the page.
    pub async fn goto(&self, path: &str) -> Outcome {
        wd(
            path,
            self.client.goto(&format!("{}{path}", self.base)).await,
        )?;
        self.wait_loaded().await
    }

    pub async fn back(&self) -> Outcome {
        self.mark().await?;
        wd("back", self.client.back().await)?;
        self.wait_new_document().await
    }

    pub async fn reload(&self) -> Outcome {
        self.mark().await?;
        wd("reload", self.client.refresh().await)?;
        self.wait_new_document().await
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> Outcome<String> {
        // Everything after the origin, so a stray empty `?` or `#` shows.
        self.js_string("return location.href.slice(location.origin.length)")
            .await
    }

    pub async fn text(&self, selector: &str) -> Outcome<String> {
        let sel = serde_json::to_string(selector).map_err(|e| e.to_string())?;
        self.js_string(&format!(
            "const e = document.querySelector({sel}); return e ? e.innerText : null"
        ))
        .await
    }

    pub async fn texts(&self, selector: &str) -> Outcome<Vec<String>> {
        let sel = serde_json::to_string(selector).map_err(|e| e.to_string())?;
        let v = self
            .js(&format!(
                "return [...document.querySelectorAll({sel})].map(e => e.innerText)"
            ))
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn body_text(&self) -> Outcome<String> {
        self.text("body").await
    }

    /// The text of the page's alert, if it shows one.
    pub async fn alert(&self) -> Outcome<String> {
        self.text("[role=alert]").await
    }

    /// A short description of the focused element, for messages and checks.
    pub async fn focused(&self) -> Outcome<String> {
        self.js_string(
            "const e = document.activeElement; if (!e || e === document.body) return 'body';
             return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                    (e.name ? '[name=' + e.name + ']' : '') +
                    (e.getAttribute('role') ? '[role=' + e.getAttribute('role') + ']' : '') +
                    ' ' + (e.innerText || e.value || '').trim().slice(0, 40)",
        )
        .await
    }

    pub async fn focused_matches(&self, selector: &str) -> Outcome<bool> {
        let sel = serde_json::to_string(selector).map_err(|e| e.to_string())?;
        Ok(self
            .js(&format!(
                "const e = document.activeElement; return !!e && e.matches({sel})"
            ))
            .await?
            == Value::Bool(true))
    }

    /// Presses keys as a keyboard would, on whatever has the focus.
    pub async fn keys(&self, text: &str) -> Outcome {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for c in text.chars() {
            actions = actions
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        wd("keys", self.client.perform_actions(actions).await)
    }

    pub async fn tab(&self) -> Outcome {
        self.keys(&char::from(Key::Tab).to_string()).await
    }

    /// Tabs forward from the current focus until `selector` has it; fails when it cannot
    /// be reached by keyboard within a page's worth of stops.
    pub async fn tab_to(&self, selector: &str) -> Outcome {
        for _ in 0..80 {
            if self.focused_matches(selector).await? {
                return self.assert_visible_focus().await;
            }
            self.tab().await?;
        }
        Err(format!(
            "`{selector}` could not be reached with Tab on {} (focus ended on {})",
            self.path().await?,
            self.focused().await?
        ))
    }

    /// Tabs to a field, clears it with Ctrl+A and Backspace, and types `text`.
    pub async fn fill(&self, selector: &str, text: &str) -> Outcome {
        self.tab_to(selector).await?;
        let ctrl = char::from(Key::Control);
        let clear = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value: ctrl })
            .then(KeyAction::Down { value: 'a' })
            .then(KeyAction::Up { value: 'a' })
            .then(KeyAction::Up { value: ctrl })
            .then(KeyAction::Down {
                value: char::from(Key::Backspace),
            })
            .then(KeyAction::Up {
                value: char::from(Key::Backspace),
            });
        wd("clear", self.client.perform_actions(clear).await)?;
        self.keys(text).await
    }

    /// Tabs to a checkbox and ticks it with Space.
    pub async fn tick(&self, selector: &str) -> Outcome {
        self.tab_to(selector).await?;
        self.keys(" ").await
    }

    /// Presses Enter on the focused element and waits for the page it leads to.
    pub async fn enter(&self) -> Outcome {
        self.mark().await?;
        self.keys(&char::from(Key::Enter).to_string()).await?;
        self.wait_new_document().await
    }

    /// Presses Enter where no new page follows (a `<summary>`, a button the script handles
    /// on the page).
    pub async fn press_enter(&self) -> Outcome {
        self.keys(&char::from(Key::Enter).to_string()).await
    }

    /// Waits up to 10 s for `condition` (a script returning a boolean) to hold on this
    /// page: for what a script does after a key press, with no new page to wait for.
    pub async fn wait_for(&self, condition: &str, what: &str) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.js(condition).await? != Value::Bool(true) {
            if Instant::now() > deadline {
                return Err(format!("{what}: not within 10 s on {}", self.path().await?));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// From the next page on, the browser behaves as one without WebAuthn (no
    /// `PublicKeyCredential`), as older or locked-down browsers are.
    pub async fn without_webauthn(&self) -> Outcome {
        self.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "delete window.PublicKeyCredential;" }),
        )
        .await
    }

    /// Tabs to `selector` (a link or button) and presses Enter on it.
    pub async fn activate(&self, selector: &str) -> Outcome {
        self.tab_to(selector).await?;
        self.enter().await
    }

    /// Moves the focus back to the start of the page, as a fresh page load would leave it.
    pub async fn focus_start(&self) -> Outcome {
        self.js(
            "document.activeElement && document.activeElement.blur(); window.focus(); return null",
        )
        .await
        .map(|_| ())
    }

    async fn mark(&self) -> Outcome {
        // A marked page that comes back from the back-forward cache counts as arrived.
        self.js("window.__e2e_old_document = true;
                 window.addEventListener('pageshow', e => {
                     if (e.persisted) delete window.__e2e_old_document;
                 });
                 return null")
            .await
            .map(|_| ())
    }

    async fn wait_new_document(&self) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let fresh = self
                .js("return document.readyState === 'complete' && !window.__e2e_old_document")
                .await;
            if let Ok(Value::Bool(true)) = fresh {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no new page within 15 s (still on {})",
                    self.path().await.unwrap_or_default()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_loaded(&self) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.js("return document.readyState").await? != json!("complete") {
            if Instant::now() > deadline {
                return Err("the page did not finish loading within 15 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The checks every page of every journey gets, and its screenshots: light and dark
    /// at 1280×800, light at 375×740. `name` names the files.
    pub async fn check_page(&self, name: &str) -> Outcome {
        let path = self.path().await?;
        let context = |e: String| format!("page `{name}` ({path}): {e}");
        let shape = self
            .js(
                "return [document.title, document.querySelectorAll('h1').length,
                         document.documentElement.lang,
                         document.documentElement.scrollWidth > window.innerWidth]",
            )
            .await?;
        if shape[0].as_str().unwrap_or_default().is_empty() {
            return Err(context("the page has no title".into()));
        }
        if shape[1] != json!(1) {
            return Err(context(format!("expected one h1, found {}", shape[1])));
        }
        if shape[2] != json!("en") {
            return Err(context("the page does not say its language".into()));
        }
        if self.scrolls_sideways().await? {
            return Err(context("the page scrolls sideways at 1280 px".into()));
        }
        self.axe("light").await.map_err(context)?;
        self.screenshot(&format!("{name}-desktop")).await?;

        // 200% zoom on a 1280 px screen lays the page out 640 CSS px wide.
        self.viewport(ZOOMED, false).await?;
        let sideways_zoomed = self.scrolls_sideways().await?;
        self.viewport(PHONE, true).await?;
        let sideways_phone = self.scrolls_sideways().await?;
        self.screenshot(&format!("{name}-phone")).await?;
        self.viewport(DESKTOP, false).await?;
        if sideways_zoomed {
            return Err(context("the page scrolls sideways at 200% zoom".into()));
        }
        if sideways_phone {
            return Err(context(
                "the page scrolls sideways on a 375 px phone".into(),
            ));
        }

        self.color_scheme("dark").await?;
        let dark = self.axe("dark").await;
        self.screenshot(&format!("{name}-dark")).await?;
        self.color_scheme("").await?;
        dark.map_err(context)
    }

    async fn scrolls_sideways(&self) -> Outcome<bool> {
        Ok(self
            .js("return document.documentElement.scrollWidth > window.innerWidth")
            .await?
            == json!(true))
    }

    /// Runs axe-core on the page; any serious or critical violation is an error.
    async fn axe(&self, mode: &str) -> Outcome {
        if self.js("return typeof axe").await? != json!("object") {
            self.js(&format!("{};\nreturn null", self.axe_source))
                .await
                .map_err(|e| format!("injecting axe-core: {e}"))?;
        }
        let found = wd(
            "axe.run",
            self.client
                .execute_async(
                    "const done = arguments[arguments.length - 1];
                     axe.run(document, { resultTypes: ['violations'] })
                        .then(r => done(r.violations
                            .filter(v => v.impact === 'serious' || v.impact === 'critical')
                            .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at ' +
                                 v.nodes.map(n => n.target.join(' ')).slice(0, 5).join(', '))))
                        .catch(e => done(['axe failed: ' + e]));",
                    vec![],
                )
                .await,
        )?;
        let found: Vec<String> = serde_json::from_value(found).map_err(|e| e.to_string())?;
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "axe-core ({mode} mode) found:\n  {}",
                found.join("\n  ")
            ))
        }
    }

    /// Tabs to a download link, presses Enter, and returns the file the browser saved.
    pub async fn download(&self, selector: &str) -> Outcome<String> {
        let dir = self.shots.join("downloads");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        self.cdp(
            "Browser.setDownloadBehavior",
            json!({ "behavior": "allow", "downloadPath": dir }),
        )
        .await?;
        self.tab_to(selector).await?;
        self.keys(&char::from(Key::Enter).to_string()).await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let done = std::fs::read_dir(&dir)
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .find(|path| path.extension().is_some_and(|ext| ext != "crdownload"));
            // Chromium may name the file before it has written it: an empty file is not done.
            if let Some(file) = done {
                let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
                if !text.is_empty() {
                    return Ok(text);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("`{selector}` downloaded nothing within 15 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A screenshot of the page as it would print (`@media print`).
    pub async fn print_preview(&self, name: &str) -> Outcome<PathBuf> {
        self.cdp("Emulation.setEmulatedMedia", json!({ "media": "print" }))
            .await?;
        let shot = self.screenshot(&format!("{name}-print")).await;
        self.cdp("Emulation.setEmulatedMedia", json!({ "media": "" }))
            .await?;
        shot
    }

    /// Writes a PNG of the viewport to the journey's folder; returns its path.
    pub async fn screenshot(&self, name: &str) -> Outcome<PathBuf> {
        let n = self.shot_count.fetch_add(1, Ordering::SeqCst);
        let file = self.shots.join(format!("{n:03}-{name}.png"));
        let png = wd("screenshot", self.client.screenshot().await)?;
        std::fs::write(&file, png).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(file)
    }

    /// What a failure leaves behind: a screenshot and the page's HTML.
    pub async fn record_failure(&self) -> Vec<PathBuf> {
        let mut saved = Vec::new();
        if let Ok(file) = self.screenshot("FAILED").await {
            saved.push(file);
        }
        if let Ok(html) = self
            .js_string("return document.documentElement.outerHTML")
            .await
        {
            let file = self.shots.join("FAILED.html");
            if std::fs::write(&file, html).is_ok() {
                saved.push(file);
            }
        }
        saved
    }

    /// The focus ring of the focused element: it must be visible (an outline of at least
    /// 2 px, or a box shadow).
    pub async fn assert_visible_focus(&self) -> Outcome {
        let ring = self
            .js("const s = getComputedStyle(document.activeElement);
                 return [s.outlineStyle, parseFloat(s.outlineWidth), s.boxShadow, document.hasFocus()]")
            .await?;
        let outline = ring[0] != json!("none") && ring[1].as_f64().unwrap_or(0.0) >= 2.0;
        let shadow = ring[2] != json!("none");
        if outline || shadow {
            Ok(())
        } else {
            Err(format!(
                "no visible focus ring on {} ({ring})",
                self.focused().await?
            ))
        }
    }
}

/// `target/e2e`, beside the build (honours `CARGO_TARGET_DIR`).
pub fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("e2e"))
        .unwrap_or_else(|| PathBuf::from("target/e2e"))
}
