//! TLS to upstreams: a connector per distinct (server name, trust, protocol), built when a
//! table is compiled and shared by every target that uses it.
//!
//! Trust is the system's roots (read once, on first use) or the CA certificates the backend
//! names; the server name is sent in SNI and checked against the upstream's certificate. ALPN
//! offers exactly the protocol the backend speaks, so an HTTP/2 backend is spoken to in h2.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, OnceLock},
};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};
use weir_contract::{Protocol, UpstreamTls};

/// Why a TLS connector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("no CA certificate could be loaded")]
    NoRoots,
}

/// How to open TLS to one kind of upstream.
#[derive(Clone)]
pub struct TlsConnectorConfig {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// Tells connectors apart in pool keys without comparing CA bundles per request.
    pub(super) fingerprint: u64,
}

impl std::fmt::Debug for TlsConnectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnectorConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnectorConfig {
    /// A connector for `tls`, offering `protocol` by ALPN.
    pub fn new(tls: &UpstreamTls, protocol: Protocol) -> Result<Self, UpstreamTlsError> {
        let roots = match &tls.ca_pem {
            None => system_roots(),
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(pem).flatten() {
                    let _ = roots.add(certificate);
                }
                if roots.is_empty() {
                    return Err(UpstreamTlsError::NoRoots);
                }
                Arc::new(roots)
            }
        };
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }];
        let server_name = ServerName::try_from(tls.server_name.clone())
            .map_err(|_| UpstreamTlsError::ServerName(tls.server_name.clone()))?;
        let mut hasher = DefaultHasher::new();
        (tls, protocol).hash(&mut hasher);
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            fingerprint: hasher.finish(),
        })
    }

    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// Runs the TLS handshake over `stream`.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// The system's trusted roots, read once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            for error in &loaded.errors {
                tracing::warn!(%error, "a system root certificate could not be read");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
            tracing::debug!(added, ignored, "system roots loaded for upstream TLS");
            Arc::new(roots)
        })
        .clone()
}
