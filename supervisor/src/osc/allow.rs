//! `[osc] allow_from`: which senders may reach the visualizations at all.

use std::net::IpAddr;

use vitrine_policy::NetRule;

/// True when `ip` is allowed by any of `rules`.
pub fn allowed(rules: &[NetRule], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    rules.iter().any(|rule| match *rule {
        NetRule::Local => is_local(ip),
        NetRule::Cidr { addr, prefix } => in_cidr(ip, canonical(addr), prefix),
    })
}

/// An IPv4 address received on a dual-stack socket arrives as `::ffff:a.b.c.d`; rules are
/// written for the IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, RFC 1918, link-local and unique local (ULA) addresses.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xffc0) == 0xfe80 || (first & 0xfe00) == 0xfc00
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            masked_eq(u128::from(a.to_bits()), u128::from(n.to_bits()), 32, prefix)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => masked_eq(a.to_bits(), n.to_bits(), 128, prefix),
        _ => false,
    }
}

fn masked_eq(a: u128, n: u128, bits: u32, prefix: u8) -> bool {
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn local_covers_private_ranges_only() {
        let local = [NetRule::Local];
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.7",
            "169.254.1.1",
            "::1",
            "fe80::1",
            "fd00::5",
            "::ffff:192.168.1.1",
        ] {
            assert!(allowed(&local, ip(a)), "{a}");
        }
        for a in ["8.8.8.8", "172.32.0.1", "100.64.0.1", "2001:db8::1", "::ffff:8.8.8.8"] {
            assert!(!allowed(&local, ip(a)), "{a}");
        }
    }

    #[test]
    fn cidr_rules() {
        let rules = [
            NetRule::Cidr { addr: ip("203.0.113.0"), prefix: 24 },
            NetRule::Cidr { addr: ip("2001:db8::"), prefix: 32 },
        ];
        assert!(allowed(&rules, ip("203.0.113.77")));
        assert!(allowed(&rules, ip("::ffff:203.0.113.77")));
        assert!(!allowed(&rules, ip("203.0.114.1")));
        assert!(allowed(&rules, ip("2001:db8:1::1")));
        assert!(!allowed(&rules, ip("2001:db9::1")));
        assert!(allowed(&[NetRule::Cidr { addr: ip("0.0.0.0"), prefix: 0 }], ip("1.2.3.4")));
        assert!(!allowed(&[], ip("127.0.0.1")));
    }
}
