//! Who is asking, read from the request: the client's IP address (for rate limits and the
//! audit log) and user agent (for the sessions page).
//!
//! The proxies to believe are the `TrustedProxies` registered as app data at start
//! (`startup`). A request without them is an error, never a quiet fall-back to the socket
//! peer: behind a proxy that would put every client in one rate-limit bucket.

use actix_web::{HttpRequest, web};

use crate::client::{ClientInfo, TrustedProxies};
use crate::web::error::AppError;

/// The request's client IP as text (see `crate::client`), if the peer is known.
pub fn client_ip(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("TrustedProxies is not registered")))?;
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return Ok(None);
    };
    let forwarded = req.headers().get_all("x-forwarded-for");
    let ip = trusted.client_ip(peer, forwarded.map(|v| v.as_bytes()));
    Ok(Some(ip.to_string()))
}

/// Where a session starts from: kept in it for the "your sessions" page.
pub fn client_info(req: &HttpRequest) -> Result<ClientInfo, AppError> {
    Ok(ClientInfo {
        ip: client_ip(req)?,
        user_agent: user_agent(req),
    })
}

/// The browser's user agent, shortened for display.
fn user_agent(req: &HttpRequest) -> Option<String> {
    let agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)?
        .to_str()
        .ok()?
        .trim();
    (!agent.is_empty()).then(|| agent.chars().take(200).collect())
}
