//! Static files, compiled into the binary so it runs from anywhere.

use actix_web::HttpResponse;
use actix_web::http::header;

const STYLE: &str = include_str!("../../static/style.css");
/// The recovery codes page's Print button (the CSP allows only same-origin scripts).
const PRINT: &str = include_str!("../../static/print.js");
/// Security keys and passkeys: one script for the three pages with a ceremony (adding a key,
/// the second step, passwordless sign-in); the browser API has no form-only equivalent.
const WEBAUTHN: &str = include_str!("../../static/webauthn.js");
/// Four tiles, in the accent colour. Pages link it; `/favicon.ico` answers it too, for the
/// clients that ask there without reading the page.
const FAVICON: &str = include_str!("../../static/favicon.svg");

pub async fn style_get() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

pub async fn print_get() -> HttpResponse {
    asset("text/javascript; charset=utf-8", PRINT)
}

pub async fn webauthn_get() -> HttpResponse {
    asset("text/javascript; charset=utf-8", WEBAUTHN)
}

pub async fn favicon_get() -> HttpResponse {
    asset("image/svg+xml", FAVICON)
}

/// The same for every user and moment, so caches may keep it for an hour.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}
