//! The headers every response carries, error pages and failures included.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

const ALWAYS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    // Pages are per user and per moment: none may be kept by a cache, or shown again by
    // the back button after sign-out. Static files set their own policy.
    ("cache-control", "no-store"),
];

const HSTS: (&str, &str) = (
    "strict-transport-security",
    "max-age=63072000; includeSubDomains",
);

/// Adds each header the response does not set itself.
pub fn apply(headers: &mut HeaderMap, https: bool) {
    let hsts = https.then_some(HSTS);
    for (name, value) in ALWAYS.into_iter().chain(hsts) {
        let name = HeaderName::from_static(name);
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}
