//! Opening an HTTP/1.1 connection to addresses that already passed the policy.
//!
//! Nothing here resolves names: the connector only dials the addresses it is handed,
//! and the hostname is used solely for TLS (SNI and certificate checks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::url::{Host, Url};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::fetch::error::FetchError;
use crate::fetch::resolve::host_label;

/// A request sender plus the task driving its connection. Dropping it aborts the
/// task, which closes the socket: that is how an over-limit or timed-out download
/// stops the server from sending more.
pub(crate) struct Connection {
    pub(crate) sender: SendRequest<Empty<Bytes>>,
    _driver: AbortOnDrop,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone)]
pub(crate) struct Connector {
    /// `None` only if rustls rejected our static configuration; https then fails cleanly.
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
}

impl Connector {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let tls = match tls_config() {
            Ok(config) => Some(TlsConnector::from(Arc::new(config))),
            Err(error) => {
                tracing::error!(%error, "TLS client configuration failed; https downloads will fail");
                None
            }
        };
        Self {
            tls,
            connect_timeout,
        }
    }

    /// Connects to the first of `addresses` that answers and performs the TLS and
    /// HTTP/1.1 handshakes for `url`.
    pub(crate) async fn open(
        &self,
        url: &Url,
        addresses: &[SocketAddr],
    ) -> Result<Connection, FetchError> {
        let stream = self.connect_tcp(url, addresses).await?;
        if url.scheme() == "https" {
            let tls_stream = self.handshake_tls(url, stream).await?;
            http_handshake(url, tls_stream).await
        } else {
            http_handshake(url, stream).await
        }
    }

    async fn connect_tcp(
        &self,
        url: &Url,
        addresses: &[SocketAddr],
    ) -> Result<TcpStream, FetchError> {
        let mut last_cause: Option<crate::fetch::error::Cause> = None;
        for address in addresses {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    // Small request, then we read: Nagle would only add latency.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "could not disable Nagle's algorithm");
                    }
                    return Ok(stream);
                }
                Ok(Err(error)) => {
                    tracing::debug!(%address, %error, "connection attempt failed");
                    last_cause = Some(error.into());
                }
                Err(elapsed) => {
                    tracing::debug!(%address, "connection attempt timed out");
                    last_cause = Some(elapsed.into());
                }
            }
        }
        Err(FetchError::Connect {
            host: host_label(url),
            cause: last_cause,
        })
    }

    async fn handshake_tls(
        &self,
        url: &Url,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, FetchError> {
        let tls_error = |cause: Option<crate::fetch::error::Cause>| FetchError::Tls {
            host: host_label(url),
            cause,
        };
        let connector = self.tls.as_ref().ok_or_else(|| tls_error(None))?;
        let server_name = server_name(url).ok_or_else(|| tls_error(None))?;
        match tokio::time::timeout(self.connect_timeout, connector.connect(server_name, stream))
            .await
        {
            Ok(Ok(tls_stream)) => Ok(tls_stream),
            // rustls reports certificate and protocol failures as InvalidData; other
            // kinds are the network failing underneath, which may well recover.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
                Err(tls_error(Some(error.into())))
            }
            Ok(Err(error)) => Err(FetchError::Connect {
                host: host_label(url),
                cause: Some(error.into()),
            }),
            Err(elapsed) => Err(FetchError::Connect {
                host: host_label(url),
                cause: Some(elapsed.into()),
            }),
        }
    }
}

fn tls_config() -> Result<ClientConfig, rustls::Error> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // An explicit provider: relying on the process default would panic if another
    // crate in the build also enabled aws-lc-rs.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// SNI and certificate name: the hostname from the URL, never the resolved address.
fn server_name(url: &Url) -> Option<ServerName<'static>> {
    match url.host()? {
        Host::Domain(domain) => ServerName::try_from(domain.to_owned()).ok(),
        Host::Ipv4(ip) => Some(ServerName::IpAddress(std::net::IpAddr::V4(ip).into())),
        Host::Ipv6(ip) => Some(ServerName::IpAddress(std::net::IpAddr::V6(ip).into())),
    }
}

async fn http_handshake<S>(url: &Url, stream: S) -> Result<Connection, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|cause| FetchError::Connect {
            host: host_label(url),
            cause: Some(cause.into()),
        })?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "download connection ended with an error");
        }
    });
    Ok(Connection {
        sender,
        _driver: AbortOnDrop(driver.abort_handle()),
    })
}
