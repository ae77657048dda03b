//! Logs: one line per request (method, path without its query, status, time) and every
//! event inside a request carries that request's id. Nothing secret is ever logged: no
//! query strings (the setup link carries a token), no form bodies, no cookies.

use std::io::IsTerminal;

use actix_web::Error;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Ignore the error when a subscriber is already installed (tests start many apps).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// A request's path as the log shows it: a password-reset link's token is a credential
/// (whoever reads the log could use it), so that path is logged without it.
pub fn loggable_path(path: &str) -> &str {
    if path.starts_with("/login/reset/") {
        "/login/reset/{token}"
    } else {
        path
    }
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
    fn reset_link_tokens_are_not_logged_and_other_paths_are_as_they_are() {
        assert_eq!(
            loggable_path("/login/reset/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
            "/login/reset/{token}"
        );
        assert_eq!(loggable_path("/login/forgot"), "/login/forgot");
        assert_eq!(loggable_path("/account/security"), "/account/security");
    }
}
