//! A small, real SMTP server (RFC 5321) for the tests: it listens on a random loopback port
//! and keeps every message it accepts, so a test can assert on what Tessera actually sent.
//!
//! It speaks EHLO/HELO, AUTH PLAIN (accepting any user name and password, and keeping
//! them), MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP and QUIT, and can be
//! told to refuse the next transactions with a 4xx reply, as a mail server
//! that is busy or greylisting would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed, lines joined with CRLF.
    pub data: String,
}

impl Received {
    /// A header's value (unfolded), e.g. `header("Subject")`.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The decoded body of the part with this content type (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> String {
        for part in self.data.split("\r\n--") {
            let Some((head, body)) = part.split_once("\r\n\r\n") else {
                continue;
            };
            let head = head.to_ascii_lowercase();
            if !head.contains(&format!("content-type: {content_type}")) {
                continue;
            }
            let body = body.trim_end_matches("\r\n");
            return if head.contains("content-transfer-encoding: quoted-printable") {
                decode_quoted_printable(body)
            } else if head.contains("content-transfer-encoding: base64") {
                let joined: String = body.split_whitespace().collect();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(joined)
                        .unwrap(),
                )
                .unwrap()
            } else {
                body.to_owned()
            };
        }
        panic!("no {content_type} part in:\n{}", self.data)
    }

    /// The plain-text body with line breaks turned into spaces, for phrase checks.
    pub fn text(&self) -> String {
        self.part("text/plain")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    /// Transactions still to be refused with 451 at MAIL FROM.
    refuse: AtomicUsize,
    /// Transactions refused so far.
    refused: AtomicUsize,
    /// The (user name, password) of every AUTH PLAIN, in order.
    logins: std::sync::Mutex<Vec<(String, String)>>,
}

pub struct SmtpServer {
    pub port: u16,
    shared: Arc<Shared>,
}

impl SmtpServer {
    /// Starts listening on 127.0.0.1 on a free port.
    pub async fn start() -> SmtpServer {
        Self::start_on("127.0.0.1:0").await.unwrap()
    }

    /// Starts listening on `address` (`[::1]:0`: IPv6 loopback, a free port), if it can.
    pub async fn start_on(address: &str) -> std::io::Result<SmtpServer> {
        let listener = TcpListener::bind(address).await?;
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, serving.clone()));
            }
        });
        Ok(SmtpServer { port, shared })
    }

    /// The `SMTP_URL` that reaches this server (plain SMTP, loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` transactions with "451 try again later".
    pub fn refuse_next(&self, n: usize) {
        self.shared.refuse.store(n, Ordering::SeqCst);
    }

    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    pub fn logins(&self) -> Vec<(String, String)> {
        self.shared.logins.lock().unwrap().clone()
    }

    pub async fn received(&self) -> Vec<Received> {
        self.shared.received.lock().await.clone()
    }

    /// Waits (up to 10 s) until a message to `recipient` has arrived, and returns it.
    pub async fn wait_for(&self, recipient: &str) -> Received {
        self.wait_for_where(recipient, |_| true).await
    }

    /// Waits (up to 10 s) for a message to `recipient` that satisfies `test`.
    pub async fn wait_for_where(
        &self,
        recipient: &str,
        test: impl Fn(&Received) -> bool,
    ) -> Received {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.shared.arrived.notified();
            if let Some(found) = self
                .received()
                .await
                .into_iter()
                .find(|m| m.to.iter().any(|t| t == recipient) && test(m))
            {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "no matching mail to {recipient} within 10 s; received: {:#?}",
                    self.received().await
                );
            }
        }
    }
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut reply = async |text: &str| write.write_all(format!("{text}\r\n").as_bytes()).await;
    if reply("220 test.invalid ESMTP ready").await.is_err() {
        return;
    }
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        let answer = if upper.starts_with("EHLO ") {
            from = None;
            to.clear();
            "250-test.invalid greets you\r\n250-8BITMIME\r\n250 AUTH PLAIN".to_owned()
        } else if upper.starts_with("HELO ") {
            "250 test.invalid".to_owned()
        } else if upper.starts_with("AUTH PLAIN") {
            // RFC 4616: base64 of "authzid NUL user NUL password", on the line or asked for.
            let mut given = command["AUTH PLAIN".len()..].trim().to_owned();
            if given.is_empty() {
                if reply("334 ").await.is_err() {
                    return;
                }
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                given = line.trim().to_owned();
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(given)
                .unwrap_or_default();
            let mut parts = decoded.split(|b| *b == 0).skip(1);
            let mut text =
                || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let login = (text(), text());
            shared.logins.lock().unwrap().push(login);
            "235 2.7.0 authenticated".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            let refuse = shared
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                "451 4.3.0 try again later".to_owned()
            } else {
                from = Some(address(&command["MAIL FROM:".len()..]));
                to.clear();
                "250 2.1.0 ok".to_owned()
            }
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                "503 5.5.1 MAIL first".to_owned()
            } else {
                to.push(address(&command["RCPT TO:".len()..]));
                "250 2.1.5 ok".to_owned()
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                "503 5.5.1 RCPT first".to_owned()
            } else {
                if reply("354 end with <CRLF>.<CRLF>").await.is_err() {
                    return;
                }
                let mut data: Vec<String> = Vec::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let text = line.trim_end_matches(['\r', '\n']);
                    if text == "." {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 §4.5.2).
                    data.push(text.strip_prefix('.').unwrap_or(text).to_owned());
                }
                let message = Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data: data.join("\r\n"),
                };
                shared.received.lock().await.push(message);
                shared.arrived.notify_waiters();
                "250 2.0.0 queued".to_owned()
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            "250 2.0.0 ok".to_owned()
        } else if upper == "NOOP" {
            "250 2.0.0 ok".to_owned()
        } else if upper == "QUIT" {
            let _ = reply("221 2.0.0 bye").await;
            return;
        } else {
            "500 5.5.2 command not recognised".to_owned()
        };
        if reply(&answer).await.is_err() {
            return;
        }
    }
}

/// `<ada@example.com> BODY=8BITMIME` → `ada@example.com`.
fn address(argument: &str) -> String {
    let argument = argument.trim();
    match (argument.find('<'), argument.find('>')) {
        (Some(start), Some(end)) if start < end => argument[start + 1..end].to_owned(),
        _ => argument
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[tokio::test]
async fn the_test_server_unstuffs_dots_and_can_refuse() {
    let server = SmtpServer::start().await;
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let script = "EHLO me\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nSubject: hi\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
    stream.write_all(script.as_bytes()).await.unwrap();
    let mut answers = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answers)
        .await
        .unwrap();
    assert!(answers.ends_with("221 2.0.0 bye\r\n"), "{answers}");
    let mail = server.wait_for("b@y.test").await;
    assert_eq!(mail.from, "a@x.test");
    assert_eq!(mail.data, "Subject: hi\r\n\r\n.leading dot");

    server.refuse_next(1);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    stream
        .write_all(b"HELO me\r\nMAIL FROM:<a@x.test>\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut answers = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answers)
        .await
        .unwrap();
    assert!(answers.contains("\r\n451 "), "{answers}");
    assert_eq!(server.refused(), 1);
}
