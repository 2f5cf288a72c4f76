//! The SSRF guard: by default we refuse to deliver to addresses inside the
//! operator's network (loopback, private ranges, link-local and cloud
//! metadata, CGNAT, multicast, unspecified, and their IPv6 forms).
//!
//! IP literals are checked when a job is accepted. Names are checked at
//! delivery time by our DNS resolver, on the very addresses the connection
//! will use, so a name that resolves to a public address for the check and a
//! private one for the connection (DNS rebinding) gains nothing.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which destination addresses may be delivered to.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    allow_private: bool,
    allowed: Vec<IpNet>,
}

/// A destination the policy refuses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "destination {addr} is a {kind} address; such destinations are refused \
     (set ALLOW_PRIVATE_DESTINATIONS=true or ALLOWED_DESTINATION_CIDRS to allow them)"
)]
pub struct Blocked {
    /// The refused address.
    pub addr: IpAddr,
    /// Which kind of address it is.
    pub kind: &'static str,
}

impl DestinationPolicy {
    /// `allow_private` opens every address; `allowed` opens these ranges only.
    pub fn new(allow_private: bool, allowed: Vec<IpNet>) -> Self {
        Self { allow_private, allowed }
    }

    /// Checks one address.
    pub fn check(&self, addr: IpAddr) -> Result<(), Blocked> {
        let addr = canonical(addr);
        if self.allow_private || self.allowed.iter().any(|net| net.contains(&addr)) {
            return Ok(());
        }
        match special_kind(addr) {
            Some(kind) => Err(Blocked { addr, kind }),
            None => Ok(()),
        }
    }

    /// Checks a URL host when it is an IP literal (names pass here and are
    /// checked when resolved).
    pub fn check_host(&self, host: &url::Host<&str>) -> Result<(), Blocked> {
        match host {
            url::Host::Ipv4(v4) => self.check(IpAddr::V4(*v4)),
            url::Host::Ipv6(v6) => self.check(IpAddr::V6(*v6)),
            url::Host::Domain(_) => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is the IPv4 address it maps.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

fn special_kind(addr: IpAddr) -> Option<&'static str> {
    let in_net = |net: &str| net.parse::<IpNet>().is_ok_and(|n| n.contains(&addr));
    match addr {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_private() => Some("private (RFC 1918)"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local (cloud metadata)"),
        IpAddr::V4(_) if in_net("100.64.0.0/10") => Some("carrier-grade NAT"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_unspecified() || in_net("0.0.0.0/8") => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        IpAddr::V6(_) if in_net("fc00::/7") => Some("unique-local (private)"),
        IpAddr::V6(_) if in_net("fe80::/10") => Some("link-local"),
        // NAT64 and 6to4 embed IPv4 addresses that may be internal.
        IpAddr::V6(_) if in_net("64:ff9b::/96") || in_net("64:ff9b:1::/48") || in_net("2002::/16") => {
            Some("IPv4-embedding")
        }
        _ => SPECIAL_PURPOSE.iter().find(|(net, _)| in_net(net)).map(|(_, kind)| *kind),
    }
}

/// The rest of IANA's special-purpose address registries (IPv4 and IPv6)
/// that no webhook receiver on the public internet can have: documentation,
/// benchmarking, reserved and protocol-assignment blocks.
const SPECIAL_PURPOSE: &[(&str, &str)] = &[
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("240.0.0.0/4", "reserved"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (Teredo, benchmarking, ORCHID)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6)"),
];

/// A reqwest resolver that drops refused addresses, so the connection can
/// only go to addresses the policy allows.
#[derive(Debug, Clone)]
pub(super) struct GuardedResolver {
    pub(super) policy: Arc<DestinationPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(b) => {
                        refused = Some(b);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some(b) => Box::new(b),
                    None => format!("{host} did not resolve").into(),
                };
                return Err(err);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        DestinationPolicy::default().check(s.parse().unwrap()).is_err()
    }

    #[test]
    fn refuses_internal_addresses_by_default() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2002:a00:1::1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.254",
            "198.51.100.7",
            "203.0.113.9",
            "240.0.0.1",
            "250.1.2.3",
            "100::1",
            "2001::1",
            "2001:db8::1",
        ] {
            assert!(blocked(a), "{a} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "198.20.0.1", "192.0.3.1"] {
            assert!(!blocked(a), "{a} should pass");
        }
    }

    #[test]
    fn allow_lists_open_exactly_what_they_name() {
        let p = DestinationPolicy::new(false, vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(DestinationPolicy::new(true, vec![]).check("10.0.0.1".parse().unwrap()).is_ok());
    }
}
