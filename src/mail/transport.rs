//! Where mail goes: an SMTP server (`SMTP_URL`), or `.eml` files in `DATA_DIR/mail/`.
//!
//! lettre parses the URL and builds the connection (`AsyncSmtpTransport::from_url`).
//! [`SmtpTarget::parse`] is a thin check in front of it, for what lettre's parser lets
//! through or spells differently:
//! - a password is never sent unencrypted to another host (`smtp://user:pass@remote`
//!   without `?tls=starttls` is refused); lettre would send it;
//! - our spelling `?tls=starttls` (lettre's `tls=required`) and `?tls=none` stay valid, and
//!   any other parameter is refused rather than ignored, so a typo cannot quietly mean
//!   "unencrypted";
//! - `smtps://` with `tls=` is refused as contradictory, and so is a password without a
//!   user name (lettre would log in with an empty one);
//! - an IPv6 address as the host is handed to lettre's builder without its brackets:
//!   lettre's parser keeps them, and the name then never resolves;
//! - errors and logs never repeat the URL, which may hold a password; the log names the host.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::MailSettings;
use super::outbox::Row;

/// The longest one send may take, connection to QUIT.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach the SMTP server, from `SMTP_URL`: lettre's builder, and what the log says.
#[derive(Clone)]
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The URL names a user (and so, with a password, logs in).
    pub authenticated: bool,
    builder: AsyncSmtpTransportBuilder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Tls,
    /// `smtp://…?tls=starttls`: plain connection upgraded with STARTTLS, which the server
    /// must offer (port 587 by default).
    StartTls,
    /// `smtp://`: no encryption, for a relay on this host or a trusted network (port 25).
    Plain,
}

/// Written by hand: only what the log may show.
impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

impl SmtpTarget {
    /// Parses `SMTP_URL`. Errors never repeat the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<SmtpTarget, String> {
        let url = url::Url::parse(text).map_err(|e| {
            format!("SMTP_URL is not a URL ({e}); expected smtp://[user:password@]host[:port][?tls=starttls] or smtps://[user:password@]host[:port]")
        })?;
        let mut security = match url.scheme() {
            "smtps" => Security::Tls,
            "smtp" => Security::Plain,
            other => {
                return Err(format!(
                    "SMTP_URL must start with smtp:// or smtps:// (got {other}://)"
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) if !host.to_string().is_empty() => host.to_string(),
            _ => return Err("SMTP_URL names no host".into()),
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), security) {
                ("tls", "starttls", Security::Plain) => security = Security::StartTls,
                ("tls", "none", Security::Plain) => {}
                ("tls", _, Security::Tls) => {
                    return Err(
                        "SMTP_URL: smtps:// is TLS already; tls= applies to smtp:// only".into(),
                    );
                }
                ("tls", other, _) => {
                    return Err(format!(
                        "SMTP_URL: tls must be starttls or none (got {other:?})"
                    ));
                }
                (other, _, _) => {
                    return Err(format!(
                        "SMTP_URL: unknown parameter {other:?} (only tls= is understood)"
                    ));
                }
            }
        }
        let authenticated = !url.username().is_empty();
        if url.password().is_some() && !authenticated {
            return Err("SMTP_URL has a password but no user name".into());
        }
        if security == Security::Plain && authenticated && !is_loopback(&host) {
            return Err(
                "SMTP_URL would send the SMTP password unencrypted to another host: use smtps:// or add ?tls=starttls"
                    .into(),
            );
        }
        let port = url.port().unwrap_or(match security {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::Plain => 25,
        });
        let builder = match url.host() {
            Some(url::Host::Ipv6(_)) => ipv6_builder(&url, &host, port, security),
            _ => {
                // The same URL in lettre's words: our port (so the log is right whatever
                // lettre's defaults), and `tls=required` for our `starttls`.
                let mut for_lettre = url.clone();
                for_lettre
                    .set_port(Some(port))
                    .map_err(|()| "SMTP_URL cannot have a port".to_owned())?;
                for_lettre.set_query(None);
                if security == Security::StartTls {
                    for_lettre.query_pairs_mut().append_pair("tls", "required");
                }
                AsyncSmtpTransport::<Tokio1Executor>::from_url(for_lettre.as_str())
                    .map_err(|e| format!("SMTP_URL: {e}"))
            }
        }?;
        Ok(SmtpTarget {
            host,
            port,
            security,
            authenticated,
            builder,
        })
    }
}

/// What lettre's `from_url` would build, for a host lettre's parser leaves in brackets.
fn ipv6_builder(
    url: &url::Url,
    ip: &str,
    port: u16,
    security: Security,
) -> Result<AsyncSmtpTransportBuilder, String> {
    let builder = match security {
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(ip),
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(ip),
        Security::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip)),
    }
    .map_err(|e| format!("SMTP_URL: {e}"))?
    .port(port);
    let Some(password) = url.password() else {
        return Ok(builder);
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                "SMTP_URL: the user name or password is not valid UTF-8 once decoded".to_owned()
            })
    };
    Ok(builder.credentials(Credentials::new(decode(url.username())?, decode(password)?)))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// The sending side: the transport and the settings it sends with. Built at start (a bad
/// setting stops the start); [`super::dispatch_due`] and the worker send through it.
pub struct Sender {
    transport: Transport,
    pub(super) settings: MailSettings,
}

/// Why one attempt did not deliver.
pub(super) struct Failure {
    pub message: String,
    /// Trying again cannot help (the stored mail cannot be made into a message).
    pub permanent: bool,
}

impl Sender {
    /// Prepares the transport and says where mail goes. `hello_name` is how this server
    /// introduces itself to the SMTP server (the PUBLIC_URL host, or `localhost`).
    pub fn new(
        settings: &MailSettings,
        data_dir: &std::path::Path,
        hello_name: &str,
    ) -> anyhow::Result<Sender> {
        use anyhow::Context;
        let transport = match &settings.smtp {
            Some(target) => {
                tracing::info!(
                    host = %target.host,
                    port = target.port,
                    security = ?target.security,
                    authenticated = target.authenticated,
                    from = %settings.from,
                    "security emails are sent over SMTP (SMTP_URL)"
                );
                Transport::Smtp(
                    target
                        .builder
                        .clone()
                        .timeout(Some(SEND_TIMEOUT / 2))
                        .hello_name(ClientId::Domain(hello_name.to_owned()))
                        .build(),
                )
            }
            None => {
                let dir = data_dir.join("mail");
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("could not create {}, where mail is written", dir.display())
                })?;
                tracing::info!(
                    folder = %dir.display(),
                    "SMTP_URL is not set: security emails are written as .eml files to this folder instead of being sent"
                );
                Transport::Files(dir)
            }
        };
        Ok(Sender {
            transport,
            settings: settings.clone(),
        })
    }

    pub(super) async fn send(&self, row: &Row) -> Result<(), Failure> {
        let message = self.message(row).map_err(|message| Failure {
            message,
            permanent: true,
        })?;
        let temporary = |message: String| Failure {
            message,
            permanent: false,
        };
        match &self.transport {
            Transport::Smtp(smtp) => {
                match tokio::time::timeout(SEND_TIMEOUT, smtp.send(message)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(temporary(format!("SMTP: {e}"))),
                    Err(_) => Err(temporary(format!(
                        "SMTP: no answer within {SEND_TIMEOUT:?}"
                    ))),
                }
            }
            Transport::Files(dir) => {
                let bytes = message.formatted();
                let path = dir.join(format!("{}.eml", row.id));
                let partial = dir.join(format!(".{}.eml.partial", row.id));
                // Written aside, then renamed: a reader never sees half a message.
                actix_web::web::block(move || {
                    std::fs::write(&partial, bytes)?;
                    std::fs::rename(&partial, &path)
                })
                .await
                .map_err(|e| temporary(e.to_string()))?
                .map_err(|e| temporary(format!("writing the .eml file: {e}")))
            }
        }
    }

    fn message(&self, row: &Row) -> Result<Message, String> {
        let to: Mailbox = row
            .recipient
            .parse()
            .map_err(|e| format!("the recipient is not a usable address: {e}"))?;
        let from = &self.settings.from;
        Message::builder()
            .from(from.clone())
            .to(to)
            .subject(row.subject.clone())
            // Fixed per outbox row, so a mail delivered twice (an instance died between
            // sending and recording) is recognisably the same message.
            .message_id(Some(format!("<{}@{}>", row.id, from.email.domain())))
            .date(std::time::UNIX_EPOCH + Duration::from_secs(row.created_at.max(0) as u64))
            .multipart(MultiPart::alternative_plain_html(
                row.body_text.clone(),
                row.body_html.clone(),
            ))
            .map_err(|e| format!("the message could not be built: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_choose_security_and_default_ports() {
        let t = SmtpTarget::parse("smtps://mailer:s%40cret@mail.example.com").unwrap();
        assert_eq!((t.security, t.port), (Security::Tls, 465));
        assert!(t.authenticated);
        let t = SmtpTarget::parse("smtp://u:p@mail.example.com?tls=starttls").unwrap();
        assert_eq!((t.security, t.port), (Security::StartTls, 587));
        let t = SmtpTarget::parse("smtp://localhost:2525").unwrap();
        assert_eq!(
            (t.security, t.port, t.host.as_str()),
            (Security::Plain, 2525, "localhost")
        );
        assert!(!t.authenticated);
        let t = SmtpTarget::parse("smtp://relay.internal?tls=none").unwrap();
        assert_eq!((t.security, t.port), (Security::Plain, 25));
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_the_password() {
        for url in [
            "http://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com",
            "smtp://u:hunter2@mail.example.com?tls=maybe",
            "smtps://u:hunter2@mail.example.com?tls=starttls",
            "smtp://u:hunter2@mail.example.com?tsl=starttls",
            "smtp://:hunter2@mail.example.com?tls=starttls",
            "smtp://u:hunter2@[2001:db8::1]:25",
            "smtps://u:%FF%FEhunter2@mail.example.com",
        ] {
            let err = SmtpTarget::parse(url).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        // Plain with a password is fine to this host only.
        assert!(SmtpTarget::parse("smtp://u:p@127.0.0.1:25").is_ok());
        assert!(SmtpTarget::parse("smtp://u:p@localhost").is_ok());
        let t = SmtpTarget::parse("smtp://u:p@[::1]:2525").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 2525));
        let printed = format!("{:?}", SmtpTarget::parse("smtps://u:hunter2@h").unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
