//! Static files, compiled into the binary so it runs from anywhere.

use actix_web::HttpResponse;
use actix_web::http::header;

const STYLE: &str = include_str!("../../static/style.css");
/// The recovery codes page's Print button (the CSP allows only same-origin scripts).
const PRINT: &str = include_str!("../../static/print.js");

pub async fn style_get() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLE)
}

pub async fn print_get() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(PRINT)
}
