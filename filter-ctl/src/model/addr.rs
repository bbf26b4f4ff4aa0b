//! Parsing operator input (addresses, CIDRs) and mapping it to map keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{SourceKey, FAMILY_V4, FAMILY_V6};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{Error, Result};

/// Parses `203.0.113.7`, `198.51.100.0/24`, `2001:db8::1` or `2001:db8::/48`.
/// A bare address is a /32 or /128. Host bits beyond the prefix are an error
/// rather than silently dropped: the operator may have mistyped the prefix.
pub fn parse_net(s: &str) -> Result<IpNet> {
    let s = s.trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|_| Error::BadAddress(s.to_owned()))?
    } else {
        IpNet::from(
            s.parse::<IpAddr>()
                .map_err(|_| Error::BadAddress(s.to_owned()))?,
        )
    };
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            return Err(Error::MappedV4 {
                given: s.to_owned(),
                v4: match v6.prefix_len() {
                    128 => v4.to_string(),
                    p if p >= 96 => format!("{v4}/{}", p - 96),
                    _ => v4.to_string(),
                },
            });
        }
    }
    let trunc = net.trunc();
    if trunc != net {
        return Err(Error::HostBitsSet {
            given: s.to_owned(),
            prefix: net.prefix_len(),
            suggested: trunc.to_string(),
        });
    }
    Ok(net)
}

/// Whether the net names a single address (stored in the exact-match maps).
pub fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// The source key as the XDP program builds it for `addr`.
pub fn source_key(addr: IpAddr, ipv6_prefix: u8) -> SourceKey {
    match addr {
        IpAddr::V4(a) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&a.octets());
            SourceKey {
                family: FAMILY_V4,
                addr: bytes,
            }
        }
        IpAddr::V6(a) => {
            let net = Ipv6Net::new(a, ipv6_prefix.min(128)).expect("prefix clamped to 128");
            SourceKey {
                family: FAMILY_V6,
                addr: net.trunc().addr().octets(),
            }
        }
    }
}

/// The network a source key stands for (`a.b.c.d/32` or `x::/64`).
pub fn source_net(key: &SourceKey, ipv6_prefix: u8) -> IpNet {
    if key.family == FAMILY_V4 {
        let a = Ipv4Addr::new(key.addr[0], key.addr[1], key.addr[2], key.addr[3]);
        IpNet::V4(Ipv4Net::new(a, 32).expect("32 is valid"))
    } else {
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(key.addr), ipv6_prefix.min(128)).expect("clamped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_cidrs() {
        assert_eq!(
            parse_net("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            parse_net(" 198.51.100.0/24 ").unwrap().to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(
            parse_net("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_net("2001:db8::/48").unwrap().to_string(),
            "2001:db8::/48"
        );
        assert!(is_host(&parse_net("10.1.2.3").unwrap()));
        assert!(!is_host(&parse_net("10.1.2.0/31").unwrap()));
    }

    #[test]
    fn rejects_garbage_and_host_bits() {
        for bad in [
            "",
            "10.0.0",
            "300.1.1.1",
            "10.0.0.0/33",
            "2001:db8::/129",
            "eth0",
            "1.2.3.4/",
        ] {
            assert!(matches!(parse_net(bad), Err(Error::BadAddress(_))), "{bad}");
        }
        let err = parse_net("10.0.0.5/24").unwrap_err().to_string();
        assert!(err.contains("did you mean 10.0.0.0/24"), "{err}");
    }

    #[test]
    fn ipv6_sources_aggregate_by_prefix() {
        let a = source_key("2001:db8:1:2:aaaa::1".parse().unwrap(), 64);
        let b = source_key("2001:db8:1:2:bbbb::9".parse().unwrap(), 64);
        let c = source_key("2001:db8:1:3::1".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(source_net(&a, 64).to_string(), "2001:db8:1:2::/64");
        let v4 = source_key("192.0.2.9".parse().unwrap(), 64);
        assert_eq!(source_net(&v4, 64).to_string(), "192.0.2.9/32");
    }
}
