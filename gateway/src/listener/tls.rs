//! TLS termination: the certificates served by SNI, swapped atomically when configuration
//! changes, and the rustls server configuration of a TLS socket — the command line's TLS
//! listener, and each HTTPS socket of the snapshot's listeners, each with a
//! [`CertificateResolver`] of its own.
//!
//! A client's SNI picks the certificate: an exact host first, then wildcards, longest suffix
//! first (`*.b.example.com` before `*.example.com`), as routes are matched. A client that
//! names no host, or one no certificate is for, gets the socket's default certificate if it
//! has one (`--default-certificate` on the command line's; a listener certificate without
//! hosts on a snapshot listener's); otherwise the handshake fails with an alert, and no
//! certificate of another host is revealed. A new certificate set serves the next handshake;
//! established connections keep the one they negotiated.

use std::{collections::HashMap, fmt, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use weir_contract::{Snapshot, TlsCertificate};

/// Certificates by the host names they serve, and the default.
#[derive(Default)]
pub struct CertificateSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By suffix with its leading dot: `*.example.com` → `.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// What each was parsed from, so the next set reuses unchanged certificates.
    parsed: Vec<(Arc<TlsCertificate>, Arc<CertifiedKey>)>,
}

impl fmt::Debug for CertificateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSet")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .field("default", &self.default.is_some())
            .finish()
    }
}

impl CertificateSet {
    /// The set a snapshot asks for the command line's TLS listener. Certificates already
    /// parsed for `previous` (the same `Arc`) are reused; one that cannot be loaded is logged
    /// and skipped, which the control plane's checks should make impossible.
    pub fn build(snapshot: &Snapshot, previous: &CertificateSet) -> Self {
        Self::of(
            &snapshot.certificates,
            snapshot.default_certificate.as_ref(),
            previous,
        )
    }

    /// The set of `by_host` (each served for its hosts; the first for a host wins) and
    /// `default`, reusing what `previous` parsed.
    pub fn of(
        by_host: &[Arc<TlsCertificate>],
        default: Option<&Arc<TlsCertificate>>,
        previous: &CertificateSet,
    ) -> Self {
        let mut set = CertificateSet::default();
        let mut load = |certificate: &Arc<TlsCertificate>| -> Option<Arc<CertifiedKey>> {
            let reused = previous
                .parsed
                .iter()
                .chain(&set.parsed)
                .find(|(source, _)| Arc::ptr_eq(source, certificate))
                .map(|(_, key)| key.clone());
            let key = match reused {
                Some(key) => key,
                None => match certified_key(certificate) {
                    Ok(key) => Arc::new(key),
                    Err(error) => {
                        tracing::error!(secret = %certificate.source, %error, "certificate not loaded");
                        return None;
                    }
                },
            };
            set.parsed.push((certificate.clone(), key.clone()));
            Some(key)
        };
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for certificate in by_host {
            let Some(key) = load(certificate) else {
                continue;
            };
            for host in &certificate.hosts {
                // The first certificate for a host wins, in route order.
                match host.strip_prefix('*') {
                    Some(suffix) => {
                        wildcard
                            .entry(suffix.to_owned())
                            .or_insert_with(|| key.clone());
                    }
                    None => {
                        exact.entry(host.clone()).or_insert_with(|| key.clone());
                    }
                }
            }
        }
        let default = default.and_then(&mut load);
        set.exact = exact;
        set.wildcard = wildcard;
        set.default = default;
        set
    }

    /// The certificate for a client that asked for `server_name` (or named none).
    pub fn find(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let Some(name) = server_name else {
            return self.default.as_ref();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key);
        }
        for (dot, _) in name.match_indices('.') {
            if let Some(key) = self.wildcard.get(&name[dot..]) {
                return Some(key);
            }
        }
        self.default.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }
}

fn certified_key(certificate: &TlsCertificate) -> Result<CertifiedKey, rustls::Error> {
    let chain = CertificateDer::pem_slice_iter(&certificate.chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| rustls::Error::General("tls.crt is not PEM".into()))?;
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.expose())
        .map_err(|_| rustls::Error::General("tls.key is not a PEM private key".into()))?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
}

/// The live certificate set, read by every handshake.
#[derive(Debug, Default)]
pub struct CertificateResolver {
    current: ArcSwap<CertificateSet>,
}

impl CertificateResolver {
    /// Makes the snapshot's certificates for the command line's TLS listener the ones new
    /// handshakes get.
    pub fn update(&self, snapshot: &Snapshot) {
        if self.serve(
            &snapshot.certificates,
            snapshot.default_certificate.as_ref(),
        ) {
            let certificates = self.current.load().parsed.len();
            tracing::info!(certificates, "TLS certificates live");
        }
    }

    /// Makes `by_host` and `default` (see [`CertificateSet::of`]) the certificates new
    /// handshakes get. Returns whether they changed: the same certificates (by pointer, as the
    /// control plane hands unchanged ones over) are kept as they are, unparsed again.
    pub fn serve(
        &self,
        by_host: &[Arc<TlsCertificate>],
        default: Option<&Arc<TlsCertificate>>,
    ) -> bool {
        let previous = self.current.load();
        let unchanged = previous.parsed.len() == by_host.len() + usize::from(default.is_some())
            && previous
                .parsed
                .iter()
                .zip(by_host.iter().chain(default))
                .all(|((a, _), b)| Arc::ptr_eq(a, b));
        if unchanged {
            return false;
        }
        let next = CertificateSet::of(by_host, default, &previous);
        self.current.store(Arc::new(next));
        true
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        let found = set.find(client_hello.server_name()).cloned();
        if found.is_none() {
            tracing::debug!(
                server_name = client_hello.server_name(),
                "no certificate for this name; handshake refused"
            );
        }
        found
    }
}

/// A TLS socket's configuration: certificates from `resolver`, ALPN `h2` then `http/1.1`, and
/// session resumption both by tickets and by a session cache.
pub fn server_config(resolver: Arc<CertificateResolver>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(error) => {
            tracing::warn!(%error, "no TLS session tickets: resumption by session cache only")
        }
    }
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(exact: &[&str], wildcard: &[&str], default: bool) -> CertificateSet {
        // The keys are never used to sign here; any CertifiedKey tells the entries apart.
        let key = |_: &str| -> Arc<CertifiedKey> {
            let signing = rustls::crypto::ring::sign::any_supported_type(
                &PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap(),
            )
            .unwrap();
            Arc::new(CertifiedKey::new(Vec::new(), signing))
        };
        let mut set = CertificateSet::default();
        for host in exact {
            set.exact.insert(host.to_string(), key(host));
        }
        for host in wildcard {
            set.wildcard
                .insert(host.trim_start_matches('*').to_string(), key(host));
        }
        if default {
            set.default = Some(key("default"));
        }
        set
    }

    /// A throwaway P-256 key, for building entries only.
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPCG2qwbbnZmWhbxR
+9AZlQ2uqtv5eS9kjYHRUsMUJbKhRANCAAROxdHeT/hQrLrg+xT6uc+DkrIdZmoV
mQMcfT1xrgBMtl9Ssj1h+48j1vn4Cw67j0stCALaBI6LxnVugiowlpow
-----END PRIVATE KEY-----
";

    #[test]
    fn sni_picks_exact_then_the_longest_wildcard_then_the_default() {
        let certs = set(
            &["shop.example.com"],
            &["*.example.com", "*.b.example.com"],
            true,
        );
        let exact = certs.find(Some("Shop.Example.com")).unwrap();
        assert!(Arc::ptr_eq(exact, &certs.exact["shop.example.com"]));
        let deep = certs.find(Some("a.b.example.com")).unwrap();
        assert!(Arc::ptr_eq(deep, &certs.wildcard[".b.example.com"]));
        let shallow = certs.find(Some("a.example.com")).unwrap();
        assert!(Arc::ptr_eq(shallow, &certs.wildcard[".example.com"]));
        let default = certs.default.as_ref().unwrap();
        assert!(Arc::ptr_eq(certs.find(Some("other.org")).unwrap(), default));
        assert!(Arc::ptr_eq(certs.find(None).unwrap(), default));
    }

    #[test]
    fn without_a_default_an_unknown_or_absent_name_gets_nothing() {
        let certs = set(&["shop.example.com"], &[], false);
        assert!(certs.find(Some("other.org")).is_none());
        assert!(certs.find(None).is_none());
        assert!(certs.find(Some("example.com")).is_none());
    }
}
