//! URL validation and the destination policy, without any network: what the fetcher
//! does with a user's URL before it dials anything.
//!
//! Input: the URL text, then optionally a NUL byte and 17-byte records, each an address
//! the host "resolved" to or an allowlisted network (operator CIDR): one byte (bit 0:
//! IPv6, bit 1: allowlist entry, the rest: the prefix length) and 16 address bytes (an
//! IPv4 address uses the first 4).
//!
//! Checked:
//! - an accepted URL is absolute http(s), has a host, carries no credentials, fits
//!   MAX_URL_LEN, and validating its normalised form gives it back unchanged (redirect
//!   targets are validated again after normalisation);
//! - an IP literal host is what the connector would dial, so it goes through the policy
//!   like a resolved address;
//! - the policy refuses every address the standard library knows as non-public
//!   (loopback, private, link-local, unique-local, multicast, documentation...), whatever
//!   IPv6 form carries an IPv4 address (mapped, NAT64, 6to4, compatible), unless the
//!   operator allowlisted it; and it never refuses an allowlisted address.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// Everything this target takes from the service crate.
use profile_image::fetch::{MAX_URL_LEN, blocked_range, check_address, validate_url};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use url::Host;

const RECORD: usize = 17;

fn parse_records(bytes: &[u8]) -> (Vec<IpAddr>, Vec<IpNet>) {
    let (mut addresses, mut allow) = (Vec::new(), Vec::new());
    for record in bytes.chunks_exact(RECORD) {
        let (tag, raw) = (record[0], &record[1..]);
        let address = if tag & 1 == 0 {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            let octets: [u8; 16] = raw.try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        if tag & 2 == 0 {
            addresses.push(address);
        } else {
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = (tag >> 2) % (max + 1);
            allow.push(
                IpNet::new(address, prefix)
                    .expect("prefix within range")
                    .trunc(),
            );
        }
    }
    (addresses, allow)
}

/// Non-public by the standard library's own (stable) classification.
fn std_says_blocked(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4_blocked(v4),
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.to_ipv4_mapped().is_some_and(v4_blocked)
        }
    }
}

fn v4_blocked(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
}

/// Every IPv6 form that carries `v4` and that a host could resolve to.
fn v6_forms(v4: Ipv4Addr) -> [Ipv6Addr; 3] {
    let bits = u32::from(v4);
    [
        v4.to_ipv6_mapped(),
        // NAT64 well-known prefix 64:ff9b::/96.
        Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(bits)),
        // 6to4: 2002:V4ADDR::/48.
        Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(bits) << 80) | 1),
    ]
}

/// The IPv4 address an IPv4-mapped or -compatible IPv6 address reaches: the kernel
/// delivers both to the IPv4 socket, so an allowlisted IPv4 network covers them.
fn same_socket_v4(address: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = address else {
        return None;
    };
    let bits = u128::from(v6);
    let compatible = bits >> 32 == 0 && bits > 1;
    v6.to_ipv4_mapped()
        .or_else(|| compatible.then(|| Ipv4Addr::from(bits as u32)))
}

fn check_policy(address: IpAddr, allow: &[IpNet]) {
    let embedded = same_socket_v4(address).map(IpAddr::V4);
    let allowed = allow
        .iter()
        .any(|net| net.contains(&address) || embedded.is_some_and(|v4| net.contains(&v4)));
    let verdict = check_address(address, allow);
    if allowed {
        assert!(verdict.is_ok(), "{address} is allowlisted but refused");
        return;
    }
    if std_says_blocked(address) {
        assert!(verdict.is_err(), "{address} is not public but was allowed");
    }
    assert_eq!(verdict.is_ok(), blocked_range(address).is_none());
    if let IpAddr::V4(v4) = address {
        let range = blocked_range(address);
        for form in v6_forms(v4) {
            assert_eq!(
                blocked_range(IpAddr::V6(form)),
                range,
                "{form} carries {v4} but is classified differently"
            );
        }
        let compatible = Ipv6Addr::from(u128::from(u32::from(v4)));
        if u32::from(v4) > 1 {
            assert!(
                blocked_range(IpAddr::V6(compatible)).is_some(),
                "deprecated IPv4-compatible {compatible} was allowed"
            );
        }
    }
}

fn check_url(raw: &str, allow: &[IpNet]) {
    let Ok(url) = validate_url(raw) else {
        return;
    };
    assert!(raw.len() <= MAX_URL_LEN);
    assert!(matches!(url.scheme(), "http" | "https"), "{url}");
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{url}"
    );
    assert!(url.as_str().len() <= MAX_URL_LEN, "{url}");
    assert!(url.port_or_known_default().is_some(), "{url}");
    let again = validate_url(url.as_str()).expect("a normalised URL validates again");
    assert_eq!(again.as_str(), url.as_str(), "normalising is idempotent");
    match url.host() {
        Some(Host::Ipv4(v4)) => check_policy(IpAddr::V4(v4), allow),
        Some(Host::Ipv6(v6)) => check_policy(IpAddr::V6(v6), allow),
        Some(Host::Domain(domain)) => {
            // The resolver would take a numeric name as that address (and the policy
            // still checks what it returns), but the parser should have made it one.
            assert!(domain.parse::<IpAddr>().is_err(), "{domain} left as a name");
        }
        None => panic!("accepted without a host: {url}"),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let (text, records) = match bytes.iter().position(|&b| b == 0) {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (bytes, &[][..]),
    };
    let (addresses, allow) = parse_records(records);
    if let Ok(raw) = std::str::from_utf8(text) {
        check_url(raw, &allow);
    }
    for address in addresses {
        check_policy(address, &allow);
    }
});
