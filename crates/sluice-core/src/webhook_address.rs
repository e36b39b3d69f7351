//! Which addresses a webhook may be sent to. Loopback, private, link-local,
//! shared (CGNAT) and cloud-metadata addresses are refused unless the
//! config's allowlist opens them: a webhook must not become a way into the
//! network Sluice runs in. Checked at submit, and again on every attempt
//! against the address the name resolves to then (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

/// An allowlist entry: a network (`10.0.0.0/8`, `::1/128`, `127.0.0.1`) or
/// a host name (`localhost`, `hooks.internal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    Network(IpAddr, u8),
    Host(String),
}

impl Allowed {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        match addr.parse::<IpAddr>() {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len = match len {
                    None => max,
                    Some(l) => l
                        .parse::<u8>()
                        .ok()
                        .filter(|l| *l <= max)
                        .ok_or_else(|| format!("{text:?}: bad prefix length"))?,
                };
                Ok(Self::Network(ip, len))
            }
            Err(_) if len.is_none() && !text.is_empty() => Ok(Self::Host(text.to_lowercase())),
            Err(_) => Err(format!(
                "{text:?} is neither a network (10.0.0.0/8) nor a host name"
            )),
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::Network(IpAddr::V4(net), len), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), *len)
            }
            (Self::Network(IpAddr::V6(net), len), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), *len)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let (whole, rest) = (usize::from(len / 8), len % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[whole] & mask) == (b[whole] & mask)
}

/// Why `ip` is not a public address, if it is not.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            non_public_v6(v6)
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_unspecified() || a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("not a unicast address")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else {
        None
    }
}

/// The allowlist and the checks against it.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    pub allow: Vec<Allowed>,
}

impl AddressPolicy {
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_lowercase();
        self.allow
            .iter()
            .any(|a| matches!(a, Allowed::Host(h) if *h == host))
    }

    /// `Err(reason)` if `ip` (what `host` resolved to) may not be called.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        let Some(why) = non_public(ip) else {
            return Ok(());
        };
        if self.host_allowed(host) || self.allow.iter().any(|a| a.contains(ip)) {
            return Ok(());
        }
        let what = if host.trim_matches(['[', ']']) == ip.to_string() {
            format!("{ip} is {why}")
        } else {
            format!("{host} resolves to {ip}, {why}")
        };
        Err(format!(
            "{what}; webhooks to such addresses are refused unless [webhooks] allow lists them"
        ))
    }

    /// Checks a URL's shape (http/https with a host) and, for a literal IP
    /// host, the address; a name is resolved by the caller.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the webhook URL must be http:// or https:// (got {:?})",
                url.scheme()
            ));
        }
        match url.host() {
            None => Err("the webhook URL has no host".into()),
            Some(url::Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_are_not_public() {
        for (addr, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "metadata"),
            ("169.254.3.4", "link-local"),
            ("100.64.0.1", "shared"),
            ("0.0.0.0", "unicast"),
            ("::1", "loopback"),
            ("fd00:ec2::254", "metadata"),
            ("fd12::1", "private"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
        ] {
            let reason = non_public(ip(addr)).unwrap_or_else(|| panic!("{addr} passed"));
            assert!(reason.contains(why), "{addr}: {reason}");
        }
        for addr in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(non_public(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn the_allowlist_opens_networks_and_hosts() {
        let policy = AddressPolicy {
            allow: vec![
                Allowed::parse("127.0.0.0/8").unwrap(),
                Allowed::parse("hooks.internal").unwrap(),
            ],
        };
        assert!(policy.check_ip("x", ip("127.0.0.5")).is_ok());
        assert!(policy.check_ip("hooks.internal", ip("10.0.0.1")).is_ok());
        let e = policy
            .check_ip("evil.example", ip("169.254.169.254"))
            .unwrap_err();
        assert!(e.contains("cloud metadata"), "{e}");
        assert!(policy.check_ip("x", ip("::1")).is_err());
        assert!(Allowed::parse("10.0.0.0/33").is_err());
        assert_eq!(
            Allowed::parse("10.0.0.0/12").unwrap(),
            Allowed::Network(ip("10.0.0.0"), 12)
        );
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        let policy = AddressPolicy::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(policy.check_url(&url("https://example.com/h")).is_ok());
        assert!(policy.check_url(&url("ftp://example.com/h")).is_err());
        let e = policy.check_url(&url("http://127.0.0.1:9/h")).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(policy.check_url(&url("http://[::1]/h")).is_err());
    }
}
