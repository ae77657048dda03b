//! Who is asking: the client's IP address (for rate limits and the audit log) and user
//! agent (for the sessions page).
//!
//! The IP is the socket peer — unless the peer is one of `TRUSTED_PROXIES`; then it is the
//! right-most address in `X-Forwarded-For` that is not a trusted proxy. Entries to the left
//! of that were written by the client and are ignored, so a client cannot choose its IP.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// The proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// A comma-separated list such as `10.0.0.0/8, 127.0.0.1, ::1`.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (addr, bits) = match entry.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (entry, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or_else(|| format!("{entry:?} has a prefix length outside 0–{max}"))?,
            };
            // An IPv4-mapped entry (`::ffff:10.0.0.1/128`) is the IPv4 range it maps.
            let (addr, bits) = match canonical(addr) {
                IpAddr::V4(v4) if addr.is_ipv6() && bits >= 96 => (IpAddr::V4(v4), bits - 96),
                _ => (addr, bits),
            };
            ranges.push((addr, bits));
        }
        Ok(TrustedProxies(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|&(net, bits)| in_range(ip, canonical(net), bits))
    }

    /// The client's address, given the socket peer and the `X-Forwarded-For` values.
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.contains(ip) => client = ip,
                Ok(ip) => return canonical(ip),
                // Garbage where an address should be: nothing further left can be trusted.
                Err(_) => return client,
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32_u32.saturating_sub(bits.into()))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128_u32.saturating_sub(bits.into()))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The request's client IP as text (see the module docs), if the peer is known.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map(|state| &state.settings.trusted_proxies);
    let ip = match trusted {
        Some(trusted) => trusted.client_ip(
            peer,
            req.headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok()),
        ),
        None => canonical(peer),
    };
    Some(ip.to_string())
}

/// Where a session was started from, kept in the session for the "your sessions" page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn of(req: &HttpRequest) -> ClientInfo {
        ClientInfo {
            ip: client_ip(req),
            user_agent: user_agent(req),
        }
    }
}

/// The browser's user agent, shortened for display.
pub fn user_agent(req: &HttpRequest) -> Option<String> {
    let agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)?
        .to_str()
        .ok()?
        .trim();
    (!agent.is_empty()).then(|| agent.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("203.0.113.7"), ["1.1.1.1"].into_iter()),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        // The client wrote "6.6.6.6" itself; the proxy appended what it saw.
        let forwarded = ["6.6.6.6, 198.51.100.9", "10.1.2.3"];
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), forwarded.into_iter()),
            ip("198.51.100.9")
        );
        assert_eq!(
            proxies.client_ip(ip("10.9.9.9"), std::iter::empty()),
            ip("10.9.9.9")
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), ["not-an-ip, 10.0.0.1"].into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ranges_match_by_prefix_in_both_families() {
        let proxies =
            TrustedProxies::parse("192.168.0.0/16,2001:db8::/32,::ffff:172.16.0.1").unwrap();
        assert!(proxies.contains(ip("192.168.44.1")));
        assert!(!proxies.contains(ip("192.169.0.1")));
        assert!(proxies.contains(ip("2001:db8:1::5")));
        assert!(proxies.contains(ip("172.16.0.1")));
        assert!(proxies.contains(ip("::ffff:192.168.0.1")));
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(
            TrustedProxies::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("10.0.0.0/33")
        );
        assert!(
            TrustedProxies::parse("proxy.local")
                .unwrap_err()
                .contains("proxy.local")
        );
        assert_eq!(
            TrustedProxies::parse(" , ").unwrap(),
            TrustedProxies::default()
        );
    }
}
