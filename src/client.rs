//! Who is asking, as data: which proxies to believe, the client's address behind them, the
//! network it counts in for rate limits, and what a session keeps about where it began.
//! Reading these from a request is the HTTP layer's part (`web::client`).
//!
//! The IP is the socket peer — unless the peer is one of `TRUSTED_PROXIES`; then it is the
//! right-most address in `X-Forwarded-For` that is not a trusted proxy. Entries to the left
//! of that were written by the client and are ignored, so a client cannot choose its IP.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list such as `10.0.0.0/8, 127.0.0.1, ::1`.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) if entry.contains('/') => {
                    return Err(format!(
                        "{entry:?} is not a CIDR range (an address, a slash and a prefix length within the address's bits)"
                    ));
                }
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))?,
            };
            // An IPv4-mapped entry (`::ffff:10.0.0.1/128`) is the IPv4 range it maps.
            let net = match net {
                IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                    Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
                    None => net,
                },
                other => other,
            };
            ranges.push(net);
        }
        Ok(TrustedProxies(ranges))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the socket peer and the raw `X-Forwarded-For` values
    /// (bytes: one hop with a byte that is not text must not hide the hops after it).
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a [u8]>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&[u8]> = forwarded.flat_map(|v| v.split(|&b| b == b',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.contains(ip) => client = ip,
                Some(ip) => return ip,
                // Garbage where an address should be: what is left of it came from the
                // client, so the last trusted hop is as far as we can see.
                None => {
                    tracing::debug!("an X-Forwarded-For hop is not an address");
                    return client;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` hop: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as proxies write them.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, _port) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (addr, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network a client address stands for in rate limits: IPv4 addresses one by one,
/// IPv6 by /64 — one subscriber usually has a whole /64, so single addresses would give
/// an attacker 2^64 buckets. Anything unparsable (or no peer at all) shares one bucket.
pub fn rate_limit_network(ip: Option<&str>) -> String {
    match ip.and_then(|ip| ip.parse::<IpAddr>().ok()).map(canonical) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            Ipv6Net::new(v6, 64).map_or_else(|_| v6.to_string(), |net| net.trunc().to_string())
        }
        None => "unknown".to_owned(),
    }
}

/// Where a session was started from, kept in the session for the "your sessions" page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn via(proxies: &TrustedProxies, peer: &str, headers: &[&[u8]]) -> IpAddr {
        proxies.client_ip(ip(peer), headers.iter().copied())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(via(&none, "203.0.113.7", &[b"1.1.1.1"]), ip("203.0.113.7"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        // The client wrote "6.6.6.6" itself; the proxies appended what they saw.
        let forwarded: &[&[u8]] = &[b"6.6.6.6, 198.51.100.9", b"10.1.2.3"];
        assert_eq!(via(&proxies, "127.0.0.1", forwarded), ip("198.51.100.9"));
        assert_eq!(via(&proxies, "10.9.9.9", &[]), ip("10.9.9.9"));
        assert_eq!(
            via(&proxies, "127.0.0.1", &[b"not-an-ip, 10.0.0.1"]),
            ip("10.0.0.1")
        );
        assert_eq!(via(&proxies, "127.0.0.1", &[b"unknown"]), ip("127.0.0.1"));
    }

    #[test]
    fn hops_with_ports_brackets_spaces_or_stray_bytes_are_read_as_proxies_write_them() {
        let proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(
            via(&proxies, "127.0.0.1", &[b"198.51.100.9:5678"]),
            ip("198.51.100.9")
        );
        assert_eq!(
            via(&proxies, "127.0.0.1", &[b"[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            via(&proxies, "127.0.0.1", &[b" 2001:db8::2 ,"]),
            ip("127.0.0.1")
        );
        assert_eq!(
            via(&proxies, "127.0.0.1", &[b"  2001:db8::2  "]),
            ip("2001:db8::2")
        );
        // A byte that is not text in the client's part does not hide the proxy's part.
        assert_eq!(
            via(&proxies, "127.0.0.1", &[b"\xff, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            via(&proxies, "::ffff:127.0.0.1", &[b"203.0.113.8"]),
            ip("203.0.113.8")
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_slash_64() {
        assert_eq!(
            rate_limit_network(Some("2001:db8:1:2:aaaa::1")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            rate_limit_network(Some("2001:db8:1:2:bbbb::9")),
            rate_limit_network(Some("2001:db8:1:2::5"))
        );
        assert_eq!(rate_limit_network(Some("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(rate_limit_network(Some("192.0.2.1")), "192.0.2.1");
        assert_eq!(rate_limit_network(None), "unknown");
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
