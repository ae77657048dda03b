//! Logs: one line per request (method, path without its query, status, time) and every
//! event inside a request carries that request's id. Nothing secret is ever logged: no
//! query strings (the setup link carries a token), no form bodies, no cookies, and no
//! token in a path (invitation and password-reset links: [`loggable_path`]).

use std::io::IsTerminal;

use actix_web::Error;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// The WebAuthn library logs credentials (ids, public keys) and ceremony details at debug
/// level, and parser errors quoting what a browser sent at error level. Whatever
/// `RUST_LOG` says it is silenced, so no credential, challenge or answer reaches the logs;
/// why a key was refused is in the audit log instead (`auth::webauthn::refusal`).
const QUIET_CRATES: [&str; 3] = [
    "webauthn_rs=off",
    "webauthn_rs_core=off",
    "webauthn_rs_proto=off",
];

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    for directive in QUIET_CRATES {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Ignore the error when a subscriber is already installed (tests start many apps).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// Paths whose last part is a secret (a link mailed to one person): logged without it.
const SECRET_PATHS: [&str; 2] = ["/invite/", "/login/reset/"];

/// `path` as logged: the token of an invitation or a password-reset link is replaced by
/// `…`, so that log readers cannot use a link that is still live.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in SECRET_PATHS {
        if path.len() > prefix.len() && path.starts_with(prefix) {
            return format!("{prefix}…").into();
        }
    }
    path.into()
}

/// The root span of every request.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            path = %loggable_path(request.path()),
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_link_paths_are_not_logged() {
        assert_eq!(loggable_path("/invite/abcDEF_123"), "/invite/…");
        assert_eq!(loggable_path("/login/reset/abcDEF_123"), "/login/reset/…");
        assert_eq!(loggable_path("/invite/"), "/invite/");
        assert_eq!(
            loggable_path("/admin/invites/x/resend"),
            "/admin/invites/x/resend"
        );
        assert_eq!(loggable_path("/login"), "/login");
    }
}
