//! Which IP addresses the fetcher may connect to.
//!
//! The fetcher downloads from user-supplied URLs, so every address it is about to
//! connect to passes through [`check_address`] first. Anything that is not ordinary
//! public unicast is refused unless the operator allowlisted it explicitly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is not a public destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedRange {
    Unspecified,
    Loopback,
    /// RFC 1918 networks, IPv6 unique-local (fc00::/7) and local-use NAT64.
    Private,
    /// Includes 169.254.169.254, where cloud providers serve instance metadata.
    LinkLocal,
    /// Carrier-grade NAT, 100.64.0.0/10.
    SharedAddressSpace,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Everything else that is not routable public unicast.
    Reserved,
}

impl BlockedRange {
    /// Phrase for user-facing messages: "destination X is {description} and not allowed".
    pub fn description(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "a broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address",
        }
    }
}

/// An address the policy refused, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("destination {address} is {} and not allowed", .range.description())]
pub struct BlockedAddress {
    pub address: IpAddr,
    pub range: BlockedRange,
}

/// Accepts `address` if it is public unicast or inside one of the operator's `allow` networks.
pub fn check_address(address: IpAddr, allow: &[IpNet]) -> Result<(), BlockedAddress> {
    if is_allowlisted(address, allow) {
        return Ok(());
    }
    match blocked_range(address) {
        Some(range) => Err(BlockedAddress { address, range }),
        None => Ok(()),
    }
}

/// Classifies `address` without looking at any allowlist; `None` means public.
pub fn blocked_range(address: IpAddr) -> Option<BlockedRange> {
    match address {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn is_allowlisted(address: IpAddr, allow: &[IpNet]) -> bool {
    // An operator who allows 127.0.0.0/8 also means ::ffff:127.0.0.1: the kernel
    // delivers both to the same IPv4 socket.
    let embedded = match address {
        IpAddr::V6(v6) => v4_mapped_or_compatible(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    allow
        .iter()
        .any(|net| net.contains(&address) || embedded.is_some_and(|v4| net.contains(&v4)))
}

/// IPv4 networks that are not public unicast; the first match wins, so narrower
/// entries come before the networks that contain them.
const BLOCKED_V4: &[(Ipv4Addr, u8, BlockedRange)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 32, BlockedRange::Unspecified),
    (Ipv4Addr::new(0, 0, 0, 0), 8, BlockedRange::Reserved),
    (Ipv4Addr::new(10, 0, 0, 0), 8, BlockedRange::Private),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        BlockedRange::SharedAddressSpace,
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, BlockedRange::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, BlockedRange::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0), 12, BlockedRange::Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, BlockedRange::Reserved),
    (Ipv4Addr::new(192, 0, 2, 0), 24, BlockedRange::Documentation),
    // Deprecated 6to4 relay anycast (RFC 7526).
    (Ipv4Addr::new(192, 88, 99, 0), 24, BlockedRange::Reserved),
    (Ipv4Addr::new(192, 168, 0, 0), 16, BlockedRange::Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, BlockedRange::Benchmarking),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        BlockedRange::Documentation,
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        BlockedRange::Documentation,
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, BlockedRange::Multicast),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        BlockedRange::Broadcast,
    ),
    (Ipv4Addr::new(240, 0, 0, 0), 4, BlockedRange::Reserved),
];

fn blocked_v4(address: Ipv4Addr) -> Option<BlockedRange> {
    let bits = u32::from(address);
    BLOCKED_V4
        .iter()
        .find(|(network, prefix, _)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
            bits & mask == u32::from(*network)
        })
        .map(|(_, _, range)| *range)
}

/// IPv6 networks that are not public unicast and carry no IPv4 address worth
/// unwrapping; first match wins.
const BLOCKED_V6: &[(Ipv6Addr, u8, BlockedRange)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, BlockedRange::Unspecified),
    (Ipv6Addr::LOCALHOST, 128, BlockedRange::Loopback),
    // Local-use NAT64 (RFC 8215) translates into the operator's own networks.
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        BlockedRange::Private,
    ),
    // Discard-only (RFC 6666).
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        BlockedRange::Reserved,
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        BlockedRange::Benchmarking,
    ),
    // IETF protocol assignments (ORCHID, AMT, ...); Teredo inside it is checked earlier.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        BlockedRange::Reserved,
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        BlockedRange::Documentation,
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        BlockedRange::Documentation,
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        BlockedRange::Private,
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        BlockedRange::LinkLocal,
    ),
    // Deprecated site-local (RFC 3879).
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        BlockedRange::Reserved,
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        BlockedRange::Multicast,
    ),
];

fn in_v6_network(address: Ipv6Addr, network: Ipv6Addr, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(address) & mask == u128::from(network)
}

fn blocked_v6(address: Ipv6Addr) -> Option<BlockedRange> {
    let embedded = embedded_v4(address);
    if !embedded.is_empty() {
        // Translation prefixes reach whatever IPv4 address they carry.
        return embedded.into_iter().find_map(blocked_v4);
    }
    if let Some(range) = BLOCKED_V6
        .iter()
        .find(|(network, prefix, _)| in_v6_network(address, *network, *prefix))
        .map(|(_, _, range)| *range)
    {
        return Some(range);
    }
    if let Some(v4) = address.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    if let Some(v4) = v4_compatible(address) {
        // Deprecated (RFC 4291) and never routed: report the embedded range when it
        // is a known one so the message is useful, refuse the rest anyway.
        return Some(blocked_v4(v4).unwrap_or(BlockedRange::Reserved));
    }
    // Only 2000::/3 is allocated as global unicast; everything outside it that the
    // table did not name is still not a public destination.
    if !in_v6_network(address, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return Some(BlockedRange::Reserved);
    }
    None
}

fn v4_mapped_or_compatible(address: Ipv6Addr) -> Option<Ipv4Addr> {
    address.to_ipv4_mapped().or_else(|| v4_compatible(address))
}

/// `::a.b.c.d`, excluding `::` and `::1`, which have meanings of their own.
fn v4_compatible(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(address);
    let compatible = bits >> 32 == 0 && bits > 1;
    compatible.then(|| Ipv4Addr::from(low_32_bits(bits)))
}

/// IPv4 addresses carried by NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo
/// (2001::/32: server and obfuscated client) addresses.
fn embedded_v4(address: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bits = u128::from(address);
    if in_v6_network(address, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return vec![Ipv4Addr::from(low_32_bits(bits))];
    }
    if in_v6_network(address, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return vec![Ipv4Addr::from(low_32_bits(bits >> 80))];
    }
    if in_v6_network(address, Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32) {
        let server = Ipv4Addr::from(low_32_bits(bits >> 64));
        let client = Ipv4Addr::from(!low_32_bits(bits));
        return vec![server, client];
    }
    Vec::new()
}

fn low_32_bits(bits: u128) -> u32 {
    (bits & u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().expect("test literal is a valid IPv6 address")
    }

    #[test]
    fn teredo_client_address_is_deobfuscated() {
        // Client 10.0.0.1 is stored inverted: !0x0a000001 = 0xf5fffffe.
        let teredo = v6("2001:0:0808:0808::f5ff:fffe");
        assert_eq!(
            embedded_v4(teredo),
            vec![Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(10, 0, 0, 1)]
        );
    }

    #[test]
    fn six_to_four_carries_bits_16_to_48() {
        assert_eq!(
            embedded_v4(v6("2002:c0a8:0101::1")),
            vec![Ipv4Addr::new(192, 168, 1, 1)]
        );
    }

    #[test]
    fn ipv4_compatible_excludes_unspecified_and_loopback() {
        assert_eq!(v4_compatible(Ipv6Addr::UNSPECIFIED), None);
        assert_eq!(v4_compatible(Ipv6Addr::LOCALHOST), None);
        assert_eq!(
            v4_compatible(v6("::10.1.2.3")),
            Some(Ipv4Addr::new(10, 1, 2, 3))
        );
    }
}
