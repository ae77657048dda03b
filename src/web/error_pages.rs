//! The one place that turns errors into pages: `error_pages` (middleware) renders every
//! 4xx/5xx response that has no body of its own — ours, actix's (404, 405, payload errors)
//! or a failing middleware's — as the error page, or as JSON for clients that ask for it,
//! with the request id.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use askama::Template;

use crate::web::error::{
    PublicMessage, UNAVAILABLE_RETRY_SECONDS, default_message, is_session_store_unavailable,
    request_id, wants_json,
};
use crate::web::guard::{Identity, Stage};
use crate::web::views::{FrameToken, Layout};

#[derive(Template)]
#[template(path = "errors/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: String,
    pub message: String,
    pub request_id: String,
    /// Offer the way to sign in (the error may mean the session ended or a wait is over).
    pub sign_in: bool,
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
        503 => "Briefly unavailable",
        _ if status.is_server_error() => "Something went wrong",
        _ => "That did not work",
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
        503 => "unavailable",
        _ => "internal_error",
    }
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
            // The session store is the first to touch the database on most requests.
            let unavailable = is_session_store_unavailable(&e);
            let status = if unavailable {
                tracing::warn!(error = %e, "the session store cannot reach the database");
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                tracing::error!(error = %e, "a middleware failed");
                e.as_response_error().status_code()
            };
            let mut page = error_body(status, default_message(status), &request_id, json);
            if unavailable {
                page.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_SECONDS),
                );
            }
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
    let layout = signed_in_frame(&req, heading(status));
    let mut new = error_page(
        status,
        &message,
        &request_id(&req),
        wants_json(&req),
        layout,
    );
    // Keep what the original response said about itself (Retry-After, Allow, Set-Cookie…).
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(req, new)
}

/// The frame of a page for whoever the guard found signed in (with the header's navigation
/// and sign-out form), or the bare frame.
fn signed_in_frame(req: &HttpRequest, title: &str) -> Layout {
    let extensions = req.extensions();
    match (extensions.get::<Identity>(), extensions.get::<FrameToken>()) {
        (Some(identity), Some(FrameToken(token))) if identity.stage != Stage::PasswordVerified => {
            Layout::for_account(title, token.clone(), Some(&identity.account))
        }
        _ => Layout::bare(title),
    }
}

/// The error page (or JSON body) for `status` with `message`, in the bare frame.
pub fn error_body(status: StatusCode, message: &str, request_id: &str, json: bool) -> HttpResponse {
    error_page(
        status,
        message,
        request_id,
        json,
        Layout::bare(heading(status)),
    )
}

fn error_page(
    status: StatusCode,
    message: &str,
    request_id: &str,
    json: bool,
    layout: Layout,
) -> HttpResponse {
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
        layout,
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
