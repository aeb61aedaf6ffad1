//! A TLS client for tests that look at the handshake itself: which certificate the server
//! presented, which protocol ALPN chose, and a request over the connection.
//!
//! Each [`TlsClient::connect`] is a full handshake of its own (no session resumption), so a
//! test under rotation sees the certificate every new connection gets.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode, header::HOST};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// How long a handshake or a request may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// Connects to one TLS address, trusting one CA.
#[derive(Clone)]
pub struct TlsClient {
    address: SocketAddr,
    connector: TlsConnector,
}

/// An established TLS connection, with what its handshake settled.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    server_name: String,
}

impl TlsClient {
    /// Trusts the CA in `ca_pem` and offers ALPN `alpn` (e.g. `["h2", "http/1.1"]`).
    pub fn new(address: SocketAddr, ca_pem: &str, alpn: &[&str]) -> Self {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(certificate.expect("the CA is PEM"))
                .expect("the CA is a certificate");
        }
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("default versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            address,
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A new connection asking for `server_name` by SNI; `Err` says why the handshake failed.
    pub async fn connect(&self, server_name: &str) -> Result<TlsConnection, String> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
        let connecting = async {
            let tcp = TcpStream::connect(self.address)
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
        Ok(TlsConnection {
            stream,
            server_name: server_name.to_owned(),
        })
    }
}

impl TlsConnection {
    /// The leaf certificate the server presented, DER.
    pub fn peer_leaf(&self) -> Vec<u8> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| leaf.as_ref().to_vec())
            .unwrap_or_default()
    }

    /// The protocol ALPN settled on, if any.
    pub fn alpn(&self) -> Option<String> {
        self.stream
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// `GET path` over this connection (HTTP/2 if ALPN chose it, else HTTP/1.1), with the
    /// SNI name as Host; the status and body.
    pub async fn get(self, path: &str) -> Result<(StatusCode, String), String> {
        let http2 = self.alpn().as_deref() == Some("h2");
        let io = TokioIo::new(self.stream);
        let request = Request::builder()
            .uri(format!("https://{}{path}", self.server_name))
            .header(HOST, &self.server_name)
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let exchange = async {
            let response = if http2 {
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                let mut request = request;
                request.headers_mut().remove(HOST);
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?
            } else {
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                let (mut parts, body) = request.into_parts();
                parts.uri = path.parse().expect("a path");
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(|e| e.to_string())?
            };
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .map_err(|_| "request timed out".to_owned())?
    }
}

/// The DER of the first certificate in `pem`.
pub fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .as_ref()
        .to_vec()
}
