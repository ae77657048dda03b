//! Static files, compiled into the binary so it runs from anywhere.

use actix_web::HttpResponse;
use actix_web::http::header;

const STYLE: &str = include_str!("../../static/style.css");

pub async fn style_get() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLE)
}
