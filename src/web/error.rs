//! Errors as users see them, and the one place that turns them into pages.
//!
//! A handler returns `AppError`; its response carries only a status and a plain message.
//! `error_pages` (middleware) then renders every 4xx/5xx response that has no body of its
//! own — ours, actix's (404, 405, payload errors) or a failing middleware's — as the error
//! page, or as JSON for clients that ask for it, with the request id. The cause of a 500 is
//! logged with its chain; users never see it.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use tracing_actix_web::RequestId;

use crate::db::DbError;
use crate::domain::Invalid;
use crate::limits::RetryAfter;
use crate::web::views::{ErrorPage, Layout};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "The form has expired or did not come from this site. Go back, reload the page and try again."
    )]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("There is no page at this address.")]
    NotFound,
    #[error("This address does not accept that kind of request.")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("That form is too large. Nothing was changed.")]
    PayloadTooLarge,
    /// A rate limit: `retry_after` seconds until the next try may succeed.
    #[error("{message}")]
    TooManyRequests { retry_after: i64, message: String },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AppError {
    /// The 429 answer to a rate limit: `Retry-After`, and `message` with how long to wait.
    pub fn too_many_requests(wait: RetryAfter, message: &str) -> AppError {
        let RetryAfter(seconds) = wait;
        AppError::TooManyRequests {
            retry_after: seconds,
            message: format!(
                "{message} Please wait {} and try again.",
                crate::words::duration_words(seconds)
            ),
        }
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        AppError::Unexpected(e.into())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> AppError {
        AppError::Unexpected(e.into())
    }
}

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> AppError {
        AppError::BadRequest(e.0.to_owned())
    }
}

impl From<getrandom::Error> for AppError {
    fn from(e: getrandom::Error) -> AppError {
        AppError::Unexpected(anyhow::anyhow!("the OS RNG failed: {e}"))
    }
}

/// The words a user may see, carried from the error to the page renderer.
#[derive(Clone)]
struct PublicMessage(String);

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            AppError::Unexpected(e) => {
                tracing::error!(error.cause_chain = ?e, "request failed");
                default_message(StatusCode::INTERNAL_SERVER_ERROR).to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::new(self.status_code());
        response.extensions_mut().insert(PublicMessage(message));
        if let AppError::TooManyRequests { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        response
    }
}

fn heading(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "That did not work",
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Page not found",
        405 => "Not allowed here",
        409 => "Already done",
        413 => "Too large",
        429 => "Too many attempts",
        _ if status.is_server_error() => "Something went wrong",
        _ => "That did not work",
    }
}

fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood. Nothing was changed.",
        401 => "You need to sign in to see this page.",
        403 => "You do not have access to this page.",
        404 => "There is no page at this address.",
        405 => "This address does not accept that kind of request.",
        413 => "That form is too large. Nothing was changed.",
        429 => "Too many attempts. Wait a little and try again.",
        _ if status.is_server_error() => {
            "Something went wrong on our side, and nothing was changed. Please try again in a moment."
        }
        _ => "The request could not be completed.",
    }
}

/// The machine-readable name of a status for JSON clients.
fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        429 => "too_many_requests",
        _ => "internal_error",
    }
}

pub fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.to_string())
        .unwrap_or_default()
}

/// Middleware: renders error pages (see the module comment) and gives every response the
/// security headers (HSTS when `https`).
///
/// A failure of an inner middleware (the session store, say) arrives as `Err` without its
/// request — actix forbids holding a copy of the request while it routes — so that page is
/// rendered from what was noted before the call, and handed back as the error's response.
pub async fn error_pages(
    https: bool,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = request_id(req.request());
    let json = wants_json(req.request());
    let mut response = match next.call(req).await {
        Ok(response) => render_if_bare(response.map_into_boxed_body()),
        Err(e) => {
            let status = e.as_response_error().status_code();
            tracing::error!(error = %e, "a middleware failed");
            let mut page = error_body(status, default_message(status), &request_id, json);
            crate::web::security_headers::apply(page.headers_mut(), https);
            return Err(actix_web::error::InternalError::from_response(e, page).into());
        }
    };
    crate::web::security_headers::apply(response.headers_mut(), https);
    Ok(response)
}

/// Gives a 4xx/5xx response that has no body of its own the error page.
fn render_if_bare(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let has_body = !matches!(
        response.response().body().size(),
        actix_web::body::BodySize::None | actix_web::body::BodySize::Sized(0)
    );
    if !(status.is_client_error() || status.is_server_error()) || has_body {
        return response;
    }
    let (req, old) = response.into_parts();
    let message = old
        .extensions()
        .get::<PublicMessage>()
        .map(|m| m.0.clone())
        .unwrap_or_else(|| default_message(status).to_owned());
    let mut new = error_body(status, &message, &request_id(&req), wants_json(&req));
    // Keep what the original response said about itself (Retry-After, Allow, Set-Cookie…).
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(req, new)
}

/// The error page (or JSON body) for `status` with `message`.
pub fn error_body(status: StatusCode, message: &str, request_id: &str, json: bool) -> HttpResponse {
    if json {
        let body = serde_json::json!({
            "error": error_code(status),
            "message": message,
            "request_id": request_id,
        });
        return HttpResponse::build(status)
            .content_type("application/json")
            .body(body.to_string());
    }
    let page = ErrorPage {
        layout: Layout::bare(heading(status)),
        status: status.as_u16(),
        heading: heading(status).to_owned(),
        message: message.to_owned(),
        request_id: request_id.to_owned(),
        sign_in: matches!(status.as_u16(), 401 | 403 | 429),
    };
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ))
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "the error page itself failed to render");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(message.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_is_a_page_of_the_site_with_a_way_back() {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let response = error_body(status, default_message(status), "req-1", false);
        assert_eq!(response.status(), status);
        let body = response.into_body().try_into_bytes().unwrap();
        let html = std::str::from_utf8(&body).unwrap();
        assert!(html.contains("class=\"brand\""), "{html}");
        assert!(html.contains("<h1 id=\"heading\">Something went wrong</h1>"));
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("href=\"/\">Go to the start page</a>"));
        assert!(html.contains("req-1"));
    }
}
