//! Turning a URL's host into the socket addresses the policy allows.
//!
//! The addresses returned here are the only ones the connector will use: the host
//! is resolved exactly once per hop, so a DNS answer that changes between the check
//! and the connection (DNS rebinding) cannot redirect us to a refused address.

use std::net::{IpAddr, SocketAddr};

use ::url::{Host, Url};
use ipnet::IpNet;

use crate::fetch::error::FetchError;
use crate::fetch::policy::{BlockedAddress, check_address};
use crate::fetch::url::InvalidUrl;

/// Resolves `url`'s host (literal IPs included) and keeps the addresses that pass
/// the policy, in resolver order. Fails with the first refused address if none pass.
pub(crate) async fn allowed_addresses(
    url: &Url,
    allow: &[IpNet],
) -> Result<Vec<SocketAddr>, FetchError> {
    let port = url.port_or_known_default().ok_or(InvalidUrl::MissingHost)?;
    let candidates = resolve(url, port).await?;
    let mut allowed: Vec<SocketAddr> = Vec::with_capacity(candidates.len());
    let mut first_refused: Option<BlockedAddress> = None;
    for candidate in candidates {
        match check_address(candidate.ip(), allow) {
            Ok(()) if !allowed.contains(&candidate) => allowed.push(candidate),
            Ok(()) => {}
            Err(refused) => {
                tracing::debug!(address = %refused.address, range = ?refused.range, "refusing destination address");
                first_refused.get_or_insert(refused);
            }
        }
    }
    match (allowed.is_empty(), first_refused) {
        (true, Some(refused)) => Err(FetchError::Blocked(refused)),
        (true, None) => Err(FetchError::Resolve {
            host: host_label(url),
            cause: None,
        }),
        (false, _) => Ok(allowed),
    }
}

async fn resolve(url: &Url, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
    match url.host() {
        Some(Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(Host::Domain(domain)) => match tokio::net::lookup_host((domain, port)).await {
            Ok(addresses) => Ok(addresses.collect()),
            Err(cause) => Err(FetchError::Resolve {
                host: domain.to_owned(),
                cause: Some(cause),
            }),
        },
        None => Err(InvalidUrl::MissingHost.into()),
    }
}

/// The host as the user wrote it (normalised), for messages.
pub(crate) fn host_label(url: &Url) -> String {
    url.host_str().unwrap_or_default().to_owned()
}
