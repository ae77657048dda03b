//! The HTTP layer's shared parts: error pages, the page frame, the guard and the
//! extractors. Only this layer and `routes` know about requests and responses; the
//! use-case modules below return their own data and errors, which this layer turns into
//! pages.

pub mod client;
pub mod error;
pub mod error_pages;
pub mod guard;
pub mod security_headers;
pub mod views;
