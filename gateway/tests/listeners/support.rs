//! The harness: Weir's data plane wired through the crate's public API as the `weir` binary
//! wires it (snapshots → `apply_snapshots` → table and listener sockets → proxy threads),
//! backends that answer with their name, clients in the clear and over TLS, and small builders
//! for snapshots.
//!
//! The test certificates (`certs/`) are self-signed ECDSA P-256 pairs valid for a century,
//! made once with `openssl req -x509`: a test-only key, so that no test needs a certificate
//! generator. The TLS client accepts any certificate and reports which one it was shown.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, header::HOST};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use rustls_pki_types::pem::PemObject;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use weir_contract::{
    Backend as BackendRef, Endpoint, Listener, ListenerProtocol, NamespacedName, Protocol, Route,
    RouteId, RouteKind, RouteMatch, Rule, RuleBackend, RulePolicy, SecretBytes, ServiceBackend,
    Snapshot, TlsCertificate,
};
use weir_gateway::{
    apply_snapshots,
    listener::{ListenerSettings, Listeners, serve_on_threads, snapshot_sockets::SnapshotSockets},
    metrics::{Metrics, encode_registry},
    proxy::{Proxy, ProxySettings},
    table::TableCompiler,
};

/// How long anything a test waits for may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The data plane on two proxy threads, with a plain command-line socket on 127.0.0.1.
pub struct Gateway {
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    generation: u64,
    /// The command line's plain socket.
    pub command_line: SocketAddr,
    registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<io::Result<bool>>,
}

impl Gateway {
    pub async fn start() -> Self {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("weir");
        metrics.register(&mut registry);
        let sockets = SnapshotSockets::new(metrics.clone());
        let socket_set = sockets.subscribe();
        let compiler = TableCompiler::new(metrics);
        let table = Arc::new(ArcSwap::from_pointee(compiler.empty()));
        let (snapshots, published) = watch::channel(None);
        tokio::spawn(apply_snapshots(
            published,
            table.clone(),
            compiler,
            None,
            sockets,
        ));
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let command_line = plain.local_addr().unwrap();
        let listeners = Listeners {
            plain,
            tls: None,
            snapshot_sockets: socket_set,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = ListenerSettings {
            drain: Duration::from_secs(5),
            ..ListenerSettings::default()
        };
        let serving = tokio::spawn(serve_on_threads(
            listeners,
            NonZeroUsize::new(2).unwrap(),
            Arc::new(Proxy::new(table, ProxySettings::default())),
            async move {
                let _ = stopped.await;
            },
            settings,
        ));
        Self {
            snapshots,
            generation: 0,
            command_line,
            registry,
            stop: Some(stop),
            serving,
        }
    }

    /// Publishes the next snapshot: `listeners` and `routes`, in that order of precedence.
    pub fn publish(&mut self, listeners: Vec<Listener>, routes: Vec<Arc<Route>>) {
        self.generation += 1;
        self.snapshots.send_replace(Some(Arc::new(Snapshot {
            generation: self.generation,
            listeners,
            routes,
            ..Snapshot::default()
        })));
    }

    /// The metrics as a scrape shows them.
    pub fn metrics(&self) -> String {
        encode_registry(&self.registry)
    }

    /// Stops accepting and drains; whether everything finished within the drain.
    pub async fn shutdown(mut self) -> bool {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, &mut self.serving)
            .await
            .expect("the gateway drains in time")
            .unwrap()
            .unwrap()
    }
}

/// Polls `check` until it gives a value, every 10 ms, for at most [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An address on loopback interface address `ip` (any 127.x.y.z) whose port was free a moment
/// ago.
pub fn free_address(ip: [u8; 4]) -> SocketAddr {
    std::net::TcpListener::bind((IpAddr::from(ip), 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Whether a connection to `address` is refused (nothing listens there).
pub async fn refused(address: SocketAddr) -> bool {
    matches!(
        TcpStream::connect(address).await,
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// An upstream that answers every request `200` with its name. Requests for `/slow` wait
/// until [`Backend::release`], after saying they [`Backend::arrived`].
pub struct Backend {
    pub name: &'static str,
    pub address: SocketAddr,
    arrivals: mpsc::UnboundedReceiver<()>,
    release: watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (arrived, arrivals) = mpsc::unbounded_channel();
        let (release, released) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (arrived, released) = (arrived.clone(), released.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (arrived, mut released) = (arrived.clone(), released.clone());
                    async move {
                        if request.uri().path() == "/slow" {
                            let _ = arrived.send(());
                            let _ = released.wait_for(|released| *released).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            name.as_bytes(),
                        ))))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            name,
            address,
            arrivals,
            release,
        }
    }

    /// Waits for a `/slow` request to arrive.
    pub async fn arrived(&mut self) {
        tokio::time::timeout(DEADLINE, self.arrivals.recv())
            .await
            .expect("a slow request arrives")
            .unwrap();
    }

    /// Lets every `/slow` request be answered.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// One client connection, HTTP/1.1 or HTTP/2.
pub enum HttpClient {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl HttpClient {
    /// HTTP on a new plain connection to `address`; `Err` says why it could not connect.
    pub async fn connect(address: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect to {address}: {e}"))?;
        Ok(Self::handshake(stream, false).await)
    }

    async fn handshake<I>(io: I, http2: bool) -> Self
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let io = TokioIo::new(io);
        if http2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            Self::Http2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            Self::Http1(sender)
        }
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        match self {
            Self::Http1(sender) => sender.is_closed(),
            Self::Http2(sender) => sender.is_closed(),
        }
    }

    /// `GET path` for `host`: the status and body.
    pub async fn get(&mut self, host: &str, path: &str) -> (u16, String) {
        let exchange = async {
            let response = match self {
                Self::Http1(sender) => {
                    let request = Request::get(path)
                        .header(HOST, host)
                        .body(Empty::new())
                        .unwrap();
                    sender.send_request(request).await
                }
                Self::Http2(sender) => {
                    let request = Request::get(format!("https://{host}{path}"))
                        .body(Empty::new())
                        .unwrap();
                    sender.send_request(request).await
                }
            }
            .unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("an answer in time")
    }
}

/// `GET path` for `host` on a new plain connection to `address`.
pub async fn get(address: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    Ok(HttpClient::connect(address).await?.get(host, path).await)
}

/// A TLS client that offers ALPN `h2` and `http/1.1`, accepts any certificate, and never
/// resumes a session (each connection is a full handshake).
pub struct TlsClient {
    connector: TlsConnector,
}

/// An established TLS connection.
pub struct TlsSession {
    stream: TlsStream<TcpStream>,
}

impl TlsClient {
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A handshake with `address` asking for `server_name`; `Err` says why it failed.
    pub async fn connect(
        &self,
        address: SocketAddr,
        server_name: &str,
    ) -> Result<TlsSession, String> {
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        let connecting = async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            self.connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))
        };
        let stream = tokio::time::timeout(DEADLINE, connecting)
            .await
            .map_err(|_| "handshake timed out".to_owned())??;
        Ok(TlsSession { stream })
    }
}

impl TlsSession {
    /// The leaf certificate the server presented, DER.
    pub fn presented(&self) -> Vec<u8> {
        self.stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    /// The protocol ALPN settled on.
    pub fn alpn(&self) -> Option<String> {
        let protocol = self.stream.get_ref().1.alpn_protocol()?;
        Some(String::from_utf8_lossy(protocol).into_owned())
    }

    /// HTTP inside the connection, in the protocol ALPN chose.
    pub async fn http(self) -> HttpClient {
        let http2 = self.alpn().as_deref() == Some("h2");
        HttpClient::handshake(self.stream, http2).await
    }
}

/// Accepts whatever certificate the server presents, checking only that its signatures are
/// sound: these tests look at which certificate was chosen, not at trust.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A test certificate pair from `certs/`: `shop`, `shop-rotated` (both for
/// shop.example.com), `wildcard` (*.example.com) or `default`.
fn pem(name: &str) -> (&'static str, &'static str) {
    match name {
        "shop" => (
            include_str!("certs/shop.crt"),
            include_str!("certs/shop.key"),
        ),
        "shop-rotated" => (
            include_str!("certs/shop-rotated.crt"),
            include_str!("certs/shop-rotated.key"),
        ),
        "wildcard" => (
            include_str!("certs/wildcard.crt"),
            include_str!("certs/wildcard.key"),
        ),
        "default" => (
            include_str!("certs/default.crt"),
            include_str!("certs/default.key"),
        ),
        other => panic!("no test certificate {other}"),
    }
}

/// Test certificate `name`, served for `hosts` (none: a socket's default).
pub fn certificate(name: &str, hosts: &[&str]) -> Arc<TlsCertificate> {
    let (chain, key) = pem(name);
    Arc::new(TlsCertificate {
        source: NamespacedName::new("web", format!("{name}-tls")),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        chain_pem: chain.as_bytes().to_vec(),
        key_pem: SecretBytes::new(key.as_bytes().to_vec()),
    })
}

/// Test certificate `name` as a server presents it, DER.
pub fn der(name: &str) -> Vec<u8> {
    let (chain, _) = pem(name);
    CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// A plain HTTP listener for every host.
pub fn http_listener(name: &str, address: SocketAddr) -> Listener {
    Listener {
        name: name.into(),
        address,
        protocol: ListenerProtocol::Http,
        hostname: None,
        certificates: Vec::new(),
    }
}

/// An HTTP listener for `hostname`.
pub fn http_listener_for(name: &str, address: SocketAddr, hostname: &str) -> Listener {
    Listener {
        hostname: Some(hostname.into()),
        ..http_listener(name, address)
    }
}

/// An HTTPS listener for `hostname` (`None`: every host) with `certificates`.
pub fn https_listener(
    name: &str,
    address: SocketAddr,
    hostname: Option<&str>,
    certificates: Vec<Arc<TlsCertificate>>,
) -> Listener {
    Listener {
        name: name.into(),
        address,
        protocol: ListenerProtocol::Https,
        hostname: hostname.map(str::to_owned),
        certificates,
    }
}

/// A route `name` for `hosts` (none: every host), all paths, to `backends`, served on
/// `listeners` (none: the command line's sockets).
pub fn route(
    name: &str,
    listeners: &[&str],
    hosts: &[&str],
    backends: Vec<RuleBackend>,
) -> Arc<Route> {
    let object = NamespacedName::new("web", name);
    Arc::new(Route {
        id: if listeners.is_empty() {
            RouteId::new(RouteKind::Route, object)
        } else {
            RouteId::http_route(object, &listeners.join(","))
        },
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        rules: vec![Rule {
            matches: vec![RouteMatch::any()],
            filters: Vec::new(),
            backends,
            policy: RulePolicy::default(),
        }],
        listeners: listeners.iter().map(|l| Arc::from(*l)).collect(),
    })
}

/// `backend` as a route's Service backend of weight `weight`.
pub fn service(backend: &Backend, weight: u32) -> RuleBackend {
    RuleBackend {
        weight,
        filters: Vec::new(),
        backend: BackendRef::Service(ServiceBackend {
            service: NamespacedName::new("web", backend.name),
            protocol: Protocol::Http1,
            tls: None,
            endpoints: vec![Endpoint {
                address: backend.address,
            }],
            unresolved: None,
        }),
    }
}

/// A backend reference the control plane could not accept, of weight `weight`.
pub fn invalid(reason: &str, weight: u32) -> RuleBackend {
    RuleBackend {
        weight,
        filters: Vec::new(),
        backend: BackendRef::Invalid(reason.into()),
    }
}
