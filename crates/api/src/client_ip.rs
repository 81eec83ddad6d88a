//! The client's address. `X-Forwarded-For` is believed only when the connection comes from a
//! configured trusted proxy, and then only up to the first hop that is not itself trusted
//! (read from the right), so a client cannot choose the address it is counted under.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// An address range (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0..={max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client address of a request: the peer, or, behind trusted proxies, the nearest
/// untrusted address in `X-Forwarded-For`.
pub fn client_ip(parts: &Parts, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    Some(client_of(&parts.headers, peer, trusted))
}

/// [`client_ip`] for a request that came from `peer`: the peer itself unless it is a trusted
/// proxy; then the `X-Forwarded-For` hops are read from the right (the hop each proxy
/// appended) up to the first one that is not trusted. A hop may carry a port (`1.2.3.4:80`,
/// `[::1]:80`), as some load balancers write it. A hop that is no address at all ends the walk
/// at the last trusted one: passing over it would let a client name the address it is counted
/// under.
pub fn client_of(headers: &HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("?").rsplit(','))
        .map(|h| hop_address(h.trim()));
    for hop in hops {
        let Some(hop) = hop else {
            break;
        };
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

/// The address of one `X-Forwarded-For` hop, with or without a port.
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    fn parts(peer: &str, xff: Option<&str>) -> Parts {
        let mut req = axum::http::Request::builder().uri("/");
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        parts
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |p, x| client_ip(&parts(p, x), &trusted).unwrap().to_string();
        assert_eq!(ip("203.0.113.9:1", Some("1.2.3.4")), "203.0.113.9");
        assert_eq!(ip("10.0.0.2:1", Some("1.2.3.4")), "1.2.3.4");
        // A client-supplied first hop is not believed past the nearest untrusted one.
        assert_eq!(
            ip("10.0.0.2:1", Some("6.6.6.6, 1.2.3.4, 10.0.0.7")),
            "1.2.3.4"
        );
        assert_eq!(ip("10.0.0.2:1", None), "10.0.0.2");
        // Hops in several header lines are read as one list, the last line last.
        let mut p = parts("10.0.0.2:1", Some("6.6.6.6, 1.2.3.4"));
        p.headers
            .append("x-forwarded-for", "10.0.0.8, 10.0.0.7".parse().unwrap());
        assert_eq!(client_ip(&p, &trusted).unwrap().to_string(), "1.2.3.4");
        // Only trusted hops: the farthest one.
        assert_eq!(ip("10.0.0.2:1", Some("10.0.0.9, 10.0.0.7")), "10.0.0.9");
        // A hop with a port, as some load balancers write it.
        assert_eq!(ip("10.0.0.2:1", Some("6.6.6.6, 1.2.3.4:5678")), "1.2.3.4");
        assert_eq!(
            ip("10.0.0.2:1", Some("6.6.6.6, [2001:db8::1]:443")),
            "2001:db8::1"
        );
        // Something that is no address ends the walk at the last trusted hop: it is not
        // passed over to an address further left, which the client may have written.
        assert_eq!(ip("10.0.0.2:1", Some("1.2.3.4, unknown")), "10.0.0.2");
        assert_eq!(ip("10.0.0.2:1", Some("1.2.3.4, ")), "10.0.0.2");
        assert_eq!(
            ip("10.0.0.2:1", Some("1.2.3.4, unknown, 10.0.0.7")),
            "10.0.0.7"
        );
    }
}
