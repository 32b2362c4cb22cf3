//! What counts as "one address" for the per-address limits (tunnels per client
//! address, streams and rate per visitor address).
//!
//! An IPv4 peer is its address (an IPv4-mapped IPv6 peer, as a dual-stack listener
//! reports IPv4, counts as the IPv4 address). An IPv6 peer is its /64 network: one
//! subscriber is routinely given a whole /64, so counting single IPv6 addresses would
//! let one host take 2^64 quotas.

use std::net::{IpAddr, Ipv6Addr};

/// The key `ip` is counted under.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
    }
}
