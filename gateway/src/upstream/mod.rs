//! Upstreams: sending a request to a [`Target`] and getting its response back.
//!
//! A target is where an endpoint is (a socket address, or a host name to resolve) and how it
//! is spoken to (the protocol, and the name to present for TLS). Targets are built once per
//! endpoint when a table is compiled, so a request only looks one up. The request body can be
//! of any kind ([`RequestBody`]): the client's own stream, a [`ReplayBody`] that can be sent
//! again, or a body Weir made.
//!
//! Each protocol has its own module; today HTTP/1.1 over TCP ([`h1`]), pooled per worker
//! thread.

mod body;
mod h1;
mod replay;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response, uri::Authority};
use weir_contract::Protocol;

pub use body::{BoxError, RequestBody, UpstreamBody};
pub use replay::ReplayBody;

/// Where an upstream endpoint is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetAddress {
    Socket(SocketAddr),
    /// A name resolved when a connection is opened.
    Host {
        name: Arc<str>,
        port: u16,
    },
}

impl fmt::Display for TargetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddress::Socket(address) => address.fmt(f),
            TargetAddress::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// One upstream endpoint and how to speak to it.
#[derive(Debug, Clone)]
pub struct Target {
    key: TargetKey,
    /// `address:port` as a URI authority, for a request that names no host.
    authority: Authority,
}

/// What distinguishes one target's connections from another's: connections are pooled by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub address: TargetAddress,
    pub protocol: Protocol,
    /// The name presented in TLS (SNI) and checked against the certificate, when TLS is used.
    pub server_name: Option<Arc<str>>,
}

impl Target {
    /// A plain endpoint at a socket address.
    ///
    /// ```
    /// use weir_contract::Protocol;
    /// use weir_gateway::upstream::Target;
    /// let target = Target::socket(([10, 0, 0, 7], 8080).into(), Protocol::Http1);
    /// assert_eq!(target.to_string(), "10.0.0.7:8080");
    /// assert_eq!(target.authority().as_str(), "10.0.0.7:8080");
    /// ```
    pub fn socket(address: SocketAddr, protocol: Protocol) -> Self {
        Self::new(TargetKey {
            address: TargetAddress::Socket(address),
            protocol,
            server_name: None,
        })
    }

    pub fn new(key: TargetKey) -> Self {
        let authority = key
            .address
            .to_string()
            .parse()
            .expect("an address and port make a valid authority");
        Self { key, authority }
    }

    pub fn key(&self) -> &TargetKey {
        &self.key
    }

    pub fn address(&self) -> &TargetAddress {
        &self.key.address
    }

    /// `address:port`, for the Host of a request that had none.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.address.fmt(f)
    }
}

/// How upstream connections are opened and kept.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    /// An idle connection older than this is closed rather than reused.
    pub idle_timeout: Duration,
    /// Idle connections kept per target and thread; a connection beyond that is closed.
    pub max_idle_per_target: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            max_idle_per_target: 1024,
        }
    }
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {target}")]
    Connect {
        target: TargetAddress,
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl UpstreamError {
    /// Whether the endpoint could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }
}

/// Sends requests to upstream targets over pooled connections.
#[derive(Debug, Default)]
pub struct Upstreams {
    settings: PoolSettings,
}

impl Upstreams {
    pub fn new(settings: PoolSettings) -> Self {
        Self { settings }
    }

    /// Sends `request` (origin-form URI, Host set) to `target` and returns the response head;
    /// its body streams from the connection.
    pub async fn send<B: Into<RequestBody>>(
        &self,
        target: &Target,
        request: Request<B>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let request = request.map(Into::into);
        match target.key.protocol {
            Protocol::Http1 => h1::send(&self.settings, target, request).await,
        }
    }
}

/// Opens a TCP connection to `address` within the connect timeout, with Nagle off.
async fn connect_tcp(
    address: &TargetAddress,
    settings: &PoolSettings,
) -> Result<tokio::net::TcpStream, UpstreamError> {
    let connect_error = |source| UpstreamError::Connect {
        target: address.clone(),
        source,
    };
    let connecting = async {
        match address {
            TargetAddress::Socket(socket) => tokio::net::TcpStream::connect(socket).await,
            TargetAddress::Host { name, port } => {
                tokio::net::TcpStream::connect((&**name, *port)).await
            }
        }
    };
    let stream = tokio::time::timeout(settings.connect_timeout, connecting)
        .await
        .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_error)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
