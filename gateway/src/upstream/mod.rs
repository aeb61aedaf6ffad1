//! Upstreams: sending a request to a [`Target`] and getting its response back.
//!
//! A target is where an endpoint is (a socket address, or a host name to resolve) and how it
//! is spoken to (the protocol, and the name to present for TLS). Targets are built once per
//! endpoint when a table is compiled, so a request only looks one up. The request body can be
//! of any kind ([`RequestBody`]): the client's own stream, a [`ReplayBody`] that can be sent
//! again, or a body Weir made.
//!
//! Each protocol has its own module: HTTP/1.1 ([`h1`]) over keep-alive connections pooled per
//! worker thread, HTTP/2 ([`h2`]) multiplexed over one connection per target and thread; either
//! in the clear or inside TLS ([`tls`]).

mod body;
mod h1;
mod h2;
mod io;
mod replay;
pub mod tls;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response, uri::Authority};
use weir_contract::Protocol;

pub use body::{BodyLimitError, BoxError, GuardedBody, RequestBody, UpstreamBody};
pub use replay::ReplayBody;
pub use tls::TlsConnectorConfig;

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
    tls: Option<Arc<TlsConnectorConfig>>,
    /// This target's own limit on opening a connection (an AI provider's
    /// `timeouts.connect`); `None`: the pool's.
    connect_timeout: Option<Duration>,
}

/// What distinguishes one target's connections from another's: connections are pooled by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub address: TargetAddress,
    pub protocol: Protocol,
    /// Which TLS connector (server name, trust, ALPN) connections are made with; `None`: none.
    pub tls: Option<u64>,
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
        Self::new(TargetAddress::Socket(address), protocol, None)
    }

    /// A target, spoken to through `tls` when given.
    pub fn new(
        address: TargetAddress,
        protocol: Protocol,
        tls: Option<Arc<TlsConnectorConfig>>,
    ) -> Self {
        let authority = address
            .to_string()
            .parse()
            .expect("an address and port make a valid authority");
        Self {
            key: TargetKey {
                address,
                protocol,
                tls: tls.as_ref().map(|tls| tls.fingerprint),
            },
            authority,
            tls,
            connect_timeout: None,
        }
    }

    /// The same target, opening connections within `timeout` rather than the pool's limit.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    pub fn protocol(&self) -> Protocol {
        self.key.protocol
    }

    /// Whether connections to it are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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
    #[error("TLS handshake with {target} failed")]
    Tls {
        target: TargetAddress,
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// A send that failed, with the request given back when not a byte of it reached the
/// upstream (the connection could not be opened, or closed before the request was written):
/// such a request can go to another endpoint as it is.
#[derive(Debug)]
pub struct SendError {
    pub error: UpstreamError,
    /// Boxed: it is only there on the failure path, and the result of every send would
    /// otherwise be a whole request larger.
    pub unsent: Option<Box<Request<RequestBody>>>,
}

impl SendError {
    fn unsent(error: impl Into<UpstreamError>, request: Request<RequestBody>) -> Self {
        Self {
            error: error.into(),
            unsent: Some(Box::new(request)),
        }
    }
}

/// A request hyper did not send: given back when it never left (the connection was not ready
/// for it), with the error either way.
impl From<hyper::client::conn::TrySendError<Request<RequestBody>>> for SendError {
    fn from(mut error: hyper::client::conn::TrySendError<Request<RequestBody>>) -> Self {
        match error.take_message() {
            Some(unsent) => Self::unsent(error.into_error(), unsent),
            None => error.into_error().into(),
        }
    }
}

impl From<UpstreamError> for SendError {
    fn from(error: UpstreamError) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

impl From<hyper::Error> for SendError {
    fn from(error: hyper::Error) -> Self {
        UpstreamError::from(error).into()
    }
}

impl UpstreamError {
    /// Whether the endpoint could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::Tls { .. }
        )
    }

    /// The request body's own limit, if that is what ended the exchange.
    pub fn body_limit(&self) -> Option<&BodyLimitError> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = source {
            if let Some(limit) = error.downcast_ref::<BodyLimitError>() {
                return Some(limit);
            }
            source = error.source();
        }
        None
    }
}

/// Sends requests to upstream targets over pooled connections (the pools are per thread; this
/// holds only how they are kept, so it is cheap to clone).
#[derive(Debug, Default, Clone)]
pub struct Upstreams {
    settings: PoolSettings,
}

impl Upstreams {
    pub fn new(settings: PoolSettings) -> Self {
        Self { settings }
    }

    /// Closes the idle HTTP/1.1 connections this thread holds that are past the idle timeout;
    /// the proxy thread calls it on a timer, so connections no request comes for close too.
    pub fn sweep_idle(&self) {
        h1::sweep_idle(self.settings.idle_timeout);
    }

    /// Sends `request` (origin-form URI, Host set) to `target` and returns the response head;
    /// its body streams from the connection.
    pub async fn send<B: Into<RequestBody>>(
        &self,
        target: &Target,
        request: Request<B>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        self.send_or_give_back(target, request.map(Into::into))
            .await
            .map_err(|failed| failed.error)
    }

    /// Sends `request` as [`send`](Self::send) does, but gives it back with the error when
    /// none of it was written, so that the caller can send it elsewhere.
    pub async fn send_or_give_back(
        &self,
        target: &Target,
        request: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match target.key.protocol {
            Protocol::Http1 => h1::send(&self.settings, target, request).await,
            Protocol::Http2 => h2::send(&self.settings, target, request).await,
        }
    }
}

/// Opens a connection to `target` within the connect timeout: TCP with Nagle off, then TLS if
/// the target asks for it.
async fn connect(
    target: &Target,
    settings: &PoolSettings,
) -> Result<io::UpstreamIo, UpstreamError> {
    let address = target.address();
    let timeout = target.connect_timeout.unwrap_or(settings.connect_timeout);
    let stream = connect_tcp(address, timeout).await?;
    let Some(tls) = &target.tls else {
        return Ok(io::UpstreamIo::Plain(stream));
    };
    let handshake = tokio::time::timeout(timeout, tls.connect(stream));
    match handshake.await {
        Ok(Ok(stream)) => Ok(io::UpstreamIo::Tls(Box::new(stream))),
        Ok(Err(source)) => Err(UpstreamError::Tls {
            target: address.clone(),
            source,
        }),
        Err(_) => Err(UpstreamError::Tls {
            target: address.clone(),
            source: std::io::ErrorKind::TimedOut.into(),
        }),
    }
}

/// Opens a TCP connection to `address` within `timeout`, with Nagle off.
async fn connect_tcp(
    address: &TargetAddress,
    timeout: Duration,
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
    let stream = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_error)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
