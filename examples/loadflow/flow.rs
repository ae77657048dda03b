//! The load tool's core: complete sign-in flows over HTTP in a closed loop, as a browser
//! would make them, checked at every step. Shared with the integration suite
//! (`tests/api/loadflow.rs`), which runs it against an app it spawned.
//!
//! Invariants:
//! - A user's TOTP time step is used at most once: a user goes back in the queue with the
//!   step it used and is not taken again before a later step. (The server accepts each
//!   step once per user; reusing one would be a replay, refused.)
//! - A flow counts as completed only if every response was the expected one and `/home`
//!   answered 200 with the user's email on it; anything else is a failure, by reason.
// Both the example and the test suite compile this file; each uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

const STEP_SECONDS: u64 = 30;

/// A user the tool signs in as.
#[derive(Clone)]
pub struct LoadUser {
    pub email: String,
    pub password: String,
    pub secret: Vec<u8>,
}

/// What a run measured, client side.
#[derive(Debug, Default)]
pub struct Outcome {
    pub completed: usize,
    pub failed: usize,
    pub failures: BTreeMap<String, usize>,
    /// Of each completed flow (or pair, in second-step mode).
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Outcome {
    /// The `q` quantile (0–1) of the latencies, nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn merge(&mut self, other: Outcome) {
        self.completed += other.completed;
        self.failed += other.failed;
        for (reason, n) in other.failures {
            *self.failures.entry(reason).or_default() += n;
        }
        self.latencies.extend(other.latencies);
    }

    fn fail(&mut self, reason: String) {
        self.failed += 1;
        *self.failures.entry(reason).or_default() += 1;
    }
}

/// An HTTP client for one server, without a cookie jar: each flow carries its own session
/// cookie, so one connection pool serves every simulated browser.
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    base: String,
}

/// A response as the flow needs it.
struct Reply {
    status: StatusCode,
    location: String,
    cookie: Option<String>,
    body: String,
}

impl Browser {
    pub fn new(base: &str) -> Result<Browser, reqwest::Error> {
        Ok(Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(1024)
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder, cookie: &str) -> Result<Reply, String> {
        let request = if cookie.is_empty() {
            request
        } else {
            request.header(COOKIE, cookie)
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(LOCATION).unwrap_or_default();
        let cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("tessera=") || v.starts_with("__Host-tessera="))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned());
        let body = response
            .text()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        Ok(Reply {
            status,
            location,
            cookie,
            body,
        })
    }

    async fn get(&self, path: &str, cookie: &str) -> Result<Reply, String> {
        self.send(self.http.get(format!("{}{path}", self.base)), cookie)
            .await
    }

    /// A form post from `from` (sent as `X-Forwarded-For`, which a server started by this
    /// tool trusts from 127.0.0.1): each simulated user has its own address, as real users
    /// do, so the per-IP limits count them apart instead of all as one.
    async fn post(
        &self,
        path: &str,
        cookie: &str,
        form: &[(&str, &str)],
        from: &str,
    ) -> Result<Reply, String> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("x-forwarded-for", from)
                .form(form),
            cookie,
        )
        .await
    }
}

/// The address simulated user `index` comes from (198.18.0.0/15 is for benchmarks).
pub fn client_address(index: usize) -> String {
    format!("198.18.{}.{}", (index / 250) % 256, index % 250 + 1)
}

/// Checks a reply, naming the step and what came back otherwise.
fn expect(step: &str, reply: &Reply, status: StatusCode, location: &str) -> Result<(), String> {
    if reply.status == status && reply.location == location {
        Ok(())
    } else if reply.location.is_empty() {
        Err(format!("{step}: {}", reply.status.as_u16()))
    } else {
        Err(format!(
            "{step}: {} to {}",
            reply.status.as_u16(),
            reply.location
        ))
    }
}

fn csrf(step: &str, reply: &Reply) -> Result<String, String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = reply
        .body
        .find(marker)
        .ok_or_else(|| format!("{step}: no CSRF token on the page"))?
        + marker.len();
    let end = reply.body[start..]
        .find('"')
        .ok_or_else(|| format!("{step}: no CSRF token on the page"))?;
    Ok(reply.body[start..start + end].to_owned())
}

/// A session that has passed the password step, ready for the second.
pub struct HalfSignedIn {
    user: usize,
    cookie: String,
    csrf: String,
}

impl Browser {
    /// GET /login, POST /login, GET /login/2fa.
    async fn password_step(&self, user: &LoadUser, index: usize) -> Result<HalfSignedIn, String> {
        let page = self.get("/login", "").await?;
        expect("GET /login", &page, StatusCode::OK, "")?;
        let token = csrf("GET /login", &page)?;
        let mut cookie = page.cookie.clone().unwrap_or_default();
        let reply = self
            .post(
                "/login",
                &cookie,
                &[
                    ("csrf_token", &token),
                    ("email", &user.email),
                    ("password", &user.password),
                ],
                &client_address(index),
            )
            .await?;
        expect("POST /login", &reply, StatusCode::SEE_OTHER, "/login/2fa")?;
        cookie = reply
            .cookie
            .ok_or("POST /login: the session id was not renewed")?;
        let page = self.get("/login/2fa", &cookie).await?;
        expect("GET /login/2fa", &page, StatusCode::OK, "")?;
        let csrf = csrf("GET /login/2fa", &page)?;
        Ok(HalfSignedIn {
            user: index,
            cookie,
            csrf,
        })
    }

    /// POST /login/2fa with the code for `step`, then GET /home.
    async fn second_step(
        &self,
        user: &LoadUser,
        session: HalfSignedIn,
        step: u64,
    ) -> Result<(), String> {
        let code = totp(&user.secret, step);
        let reply = self
            .post(
                "/login/2fa",
                &session.cookie,
                &[("csrf_token", &session.csrf), ("code", &code)],
                &client_address(session.user),
            )
            .await?;
        expect("POST /login/2fa", &reply, StatusCode::SEE_OTHER, "/home")?;
        let cookie = reply
            .cookie
            .ok_or("POST /login/2fa: the session id was not renewed")?;
        let home = self.get("/home", &cookie).await?;
        expect("GET /home", &home, StatusCode::OK, "")?;
        if !home.body.contains(&user.email) {
            return Err("GET /home: the page is not the user's".into());
        }
        Ok(())
    }
}

impl Browser {
    /// Both steps for `user`, who has no time step in use: the signed-in session's cookie.
    pub async fn sign_in(&self, user: &LoadUser, index: usize) -> Result<String, String> {
        let session = self.password_step(user, index).await?;
        let code = totp(&user.secret, current_step());
        let reply = self
            .post(
                "/login/2fa",
                &session.cookie,
                &[("csrf_token", &session.csrf), ("code", &code)],
                &client_address(index),
            )
            .await?;
        expect("POST /login/2fa", &reply, StatusCode::SEE_OTHER, "/home")?;
        reply
            .cookie
            .ok_or_else(|| "POST /login/2fa: the session id was not renewed".to_owned())
    }
}

/// Users waiting for their next flow, least recently used first, with the last step used.
struct Queue {
    users: Mutex<VecDeque<(usize, u64)>>,
}

impl Queue {
    fn new(count: usize) -> Queue {
        Queue {
            users: Mutex::new((0..count).map(|i| (i, 0)).collect()),
        }
    }

    /// A user who has not used the current step, waiting for the next step when all have
    /// (or `None` at the deadline).
    async fn take(&self, deadline: Instant) -> Option<usize> {
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            let step = current_step();
            {
                let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(&(index, last)) = users.front()
                    && last < step
                {
                    users.pop_front();
                    return Some(index);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn give_back(&self, index: usize, step: u64) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((index, step));
    }
}

/// Complete flows (GET /login → POST /login → GET /login/2fa → POST /login/2fa → GET
/// /home) by `concurrency` clients in a closed loop until `duration` has passed; flows
/// under way then are finished and counted.
pub async fn full_flows(
    browser: &Browser,
    users: Arc<Vec<LoadUser>>,
    concurrency: usize,
    duration: Duration,
) -> Outcome {
    let queue = Arc::new(Queue::new(users.len()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (browser, users, queue) = (browser.clone(), users.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            while let Some(index) = queue.take(deadline).await {
                let user = &users[index];
                let began = Instant::now();
                let mut step = current_step();
                let result = async {
                    let session = browser.password_step(user, index).await?;
                    // The step when the code is typed, not when the flow began.
                    step = current_step();
                    browser.second_step(user, session, step).await
                }
                .await;
                queue.give_back(index, step);
                match result {
                    Ok(()) => {
                        outcome.completed += 1;
                        outcome.latencies.push(began.elapsed());
                    }
                    Err(reason) => outcome.fail(reason),
                }
            }
            outcome
        }));
    }
    collect(workers, start).await
}

/// Puts `count` users (from the first) through the password step, `concurrency` at a time:
/// the preparation of [`second_steps`], not measured.
pub async fn prepare_second_steps(
    browser: &Browser,
    users: Arc<Vec<LoadUser>>,
    count: usize,
    concurrency: usize,
) -> (Vec<HalfSignedIn>, Outcome) {
    let next = Arc::new(Mutex::new(0..count.min(users.len())));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (browser, users, next) = (browser.clone(), users.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut ready = Vec::new();
            let mut outcome = Outcome::default();
            loop {
                let index = next.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some(index) = index else { break };
                match browser.password_step(&users[index], index).await {
                    Ok(session) => ready.push(session),
                    Err(reason) => outcome.fail(reason),
                }
            }
            (ready, outcome)
        }));
    }
    let mut all = Vec::new();
    let mut outcome = Outcome::default();
    for worker in workers {
        if let Ok((ready, part)) = worker.await {
            all.extend(ready);
            outcome.merge(part);
        }
    }
    (all, outcome)
}

/// The second step alone (POST /login/2fa + GET /home) over prepared sessions, each used
/// once, by `concurrency` clients until the sessions or `duration` run out. Each client
/// waits `pace` between pairs (a person reading the page), staggered so they do not
/// start together; zero means back to back.
pub async fn second_steps(
    browser: &Browser,
    users: Arc<Vec<LoadUser>>,
    sessions: Vec<HalfSignedIn>,
    concurrency: usize,
    duration: Duration,
    pace: Duration,
) -> Outcome {
    let sessions = Arc::new(Mutex::new(sessions));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for client in 0..concurrency {
        let (browser, users, sessions) = (browser.clone(), users.clone(), sessions.clone());
        let stagger = pace.mul_f64(client as f64 / concurrency.max(1) as f64);
        workers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            tokio::time::sleep(stagger).await;
            while Instant::now() < deadline {
                let session = sessions.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(session) = session else { break };
                let user = &users[session.user];
                let began = Instant::now();
                match browser.second_step(user, session, current_step()).await {
                    Ok(()) => {
                        outcome.completed += 1;
                        outcome.latencies.push(began.elapsed());
                    }
                    Err(reason) => outcome.fail(reason),
                }
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            outcome
        }));
    }
    collect(workers, start).await
}

async fn collect(workers: Vec<tokio::task::JoinHandle<Outcome>>, start: Instant) -> Outcome {
    let mut outcome = Outcome::default();
    for worker in workers {
        match worker.await {
            Ok(part) => outcome.merge(part),
            Err(e) => outcome.fail(format!("a client task failed: {e}")),
        }
    }
    outcome.elapsed = start.elapsed();
    outcome
}

pub fn current_step() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / STEP_SECONDS)
}

/// RFC 6238 TOTP (HMAC-SHA1, 6 digits) for a time step, as an authenticator app makes it.
pub fn totp(secret: &[u8], step: u64) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length; an error here cannot happen.
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

/// One line of `tessera import` input for `user`, whose password hash is `hash`.
pub fn import_line(user: &LoadUser, workspace: &str, hash: &str) -> String {
    serde_json::json!({
        "email": user.email,
        "workspace": workspace,
        "role": "member",
        "password_hash": hash,
        "totp_secret": totp_rs::Secret::from(user.secret.clone()).to_base32(),
    })
    .to_string()
}
