//! Resolving references to what serves them: a Service port to its protocol and ready
//! endpoints, a Secret to a certificate and its key, or to CA certificates.
//!
//! Every lookup goes through a [`Lookup`], which records what was asked for — found or not — so
//! the reconciler can file it in the dependency index: a Route that names a Service or Secret
//! that does not exist yet is translated again the moment it appears.
//!
//! Certificates are checked here, in the control plane, so a bad one is a condition on the
//! object that named it: the PEM must parse, the key must be one TLS can use, and it must
//! match the leaf certificate. The last good certificate read from each Secret is kept
//! ([`Certificates`]) and served while a newer version is unusable or gone.

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::{
    api::{
        core::v1::{Secret, ServicePort},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use weir_contract::{Endpoint, NamespacedName, Protocol, SecretBytes, Unresolved};

use crate::{
    kinds::{Kind, Object, ObjectKey},
    store::Store,
};

/// Reads the store on behalf of one translation, remembering every object it asked for.
pub struct Lookup<'a> {
    store: &'a Store,
    certificates: &'a mut Certificates,
    asked_for: BTreeSet<ObjectKey>,
}

/// A certificate chain and its key, read from a Secret and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePair {
    pub chain_pem: Vec<u8>,
    pub key_pem: SecretBytes,
}

/// Why a Secret does not give a usable certificate (or CA bundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    SecretNotFound,
    /// The Secret lacks this key.
    MissingKey(&'static str),
    /// This key holds no PEM certificate.
    NotCertificates(&'static str),
    /// `tls.key` holds no PEM private key.
    NotAPrivateKey,
    /// A key TLS cannot use (or that does not parse).
    UnusableKey,
    /// `tls.key` is not the key of the leaf certificate in `tls.crt`.
    KeyMismatch,
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SecretNotFound => f.write_str(
                "not found (in a cluster, Weir reads only Secrets of type kubernetes.io/tls)",
            ),
            Self::MissingKey(key) => write!(f, "has no {key}"),
            Self::NotCertificates(key) => write!(f, "{key} holds no PEM certificate"),
            Self::NotAPrivateKey => f.write_str("tls.key holds no PEM private key"),
            Self::UnusableKey => {
                f.write_str("tls.key is not an RSA, ECDSA or Ed25519 key TLS can use")
            }
            Self::KeyMismatch => f.write_str("tls.key does not match the certificate in tls.crt"),
        }
    }
}

/// The last good certificate read from each Secret.
#[derive(Debug, Default)]
pub struct Certificates {
    last_good: HashMap<NamespacedName, CertificatePair>,
}

impl Certificates {
    /// Forgets the Secrets nothing refers to any more.
    pub fn retain(&mut self, mut referred: impl FnMut(&NamespacedName) -> bool) {
        self.last_good.retain(|secret, _| referred(secret));
    }
}

impl<'a> Lookup<'a> {
    pub fn new(store: &'a Store, certificates: &'a mut Certificates) -> Self {
        Self {
            store,
            certificates,
            asked_for: BTreeSet::new(),
        }
    }

    /// Everything looked up, found or not.
    pub fn into_references(self) -> BTreeSet<ObjectKey> {
        self.asked_for
    }

    /// A Secret's key, as bytes (`stringData` over `data`, as the API server merges them).
    fn secret_value(&mut self, secret_id: &NamespacedName, key: &str) -> Option<Option<Vec<u8>>> {
        let secret_key = ObjectKey::new(Kind::Secret, secret_id.clone());
        self.asked_for.insert(secret_key.clone());
        let Object::Secret(secret) = &self.store.get(&secret_key)?.object else {
            return None;
        };
        Some(secret_bytes(secret, key))
    }

    /// The certificate in a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`), checked.
    ///
    /// Returns what to serve — this version if good, else the last good one, if any — and
    /// the problem with this version, if any.
    pub fn tls_certificate(
        &mut self,
        secret_id: &NamespacedName,
    ) -> (Option<CertificatePair>, Option<CertificateProblem>) {
        let checked = match (
            self.secret_value(secret_id, "tls.crt"),
            self.secret_value(secret_id, "tls.key"),
        ) {
            (None, _) | (_, None) => Err(CertificateProblem::SecretNotFound),
            (Some(None), _) => Err(CertificateProblem::MissingKey("tls.crt")),
            (_, Some(None)) => Err(CertificateProblem::MissingKey("tls.key")),
            (Some(Some(chain)), Some(Some(key))) => check_certificate(chain, key),
        };
        match checked {
            Ok(pair) => {
                self.certificates
                    .last_good
                    .insert(secret_id.clone(), pair.clone());
                (Some(pair), None)
            }
            Err(problem) => (
                self.certificates.last_good.get(secret_id).cloned(),
                Some(problem),
            ),
        }
    }

    /// A provider's API key: `key` of a Secret labelled `weir.dev/ai-credentials: "true"`,
    /// a trailing newline dropped. The error never quotes the Secret's data.
    pub fn provider_key(
        &mut self,
        secret_id: &NamespacedName,
        key: &str,
    ) -> Result<Vec<u8>, String> {
        let secret_key = ObjectKey::new(Kind::ProviderKey, secret_id.clone());
        self.asked_for.insert(secret_key.clone());
        let Some(Object::ProviderKey(secret)) = self.store.get(&secret_key).map(|s| &s.object)
        else {
            return Err(format!(
                "Secret {secret_id} not found ({})",
                crate::translate::aimodel::provider_key_hint()
            ));
        };
        let value = secret_bytes(secret, key)
            .ok_or_else(|| format!("Secret {secret_id} has no key {key:?}"))?;
        let value = crate::translate::aimodel::trim_line_end(&value);
        if value.is_empty() {
            return Err(format!("Secret {secret_id} key {key:?} is empty"));
        }
        if value.iter().any(|b| b.is_ascii_control() || *b == b' ') {
            return Err(format!(
                "Secret {secret_id} key {key:?} holds spaces or control characters, which no API key has"
            ));
        }
        Ok(value.to_vec())
    }

    /// CA certificates (PEM) from a Secret's `ca.crt`, checked to parse.
    pub fn ca_bundle(&mut self, secret_id: &NamespacedName) -> Result<Vec<u8>, CertificateProblem> {
        let pem = self
            .secret_value(secret_id, "ca.crt")
            .ok_or(CertificateProblem::SecretNotFound)?
            .ok_or(CertificateProblem::MissingKey("ca.crt"))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CertificateProblem::NotCertificates("ca.crt"))?;
        if certificates.is_empty() {
            return Err(CertificateProblem::NotCertificates("ca.crt"));
        }
        Ok(pem)
    }

    /// The protocol and ready endpoints of a Service port, endpoints sorted and without
    /// duplicates.
    pub fn service_port(
        &mut self,
        service_id: &NamespacedName,
        port: &IntOrString,
    ) -> Result<(Protocol, Vec<Endpoint>), Unresolved> {
        self.asked_for
            .insert(ObjectKey::new(Kind::Service, service_id.clone()));
        let service = self
            .store
            .service(service_id)
            .ok_or(Unresolved::BackendNotFound)?;
        let service_port = service
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.as_ref())
            .into_iter()
            .flatten()
            .find(|p| match port {
                IntOrString::Int(number) => p.port == *number,
                IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
            })
            .ok_or(Unresolved::PortNotFound)?;
        let mut endpoints: Vec<Endpoint> = self
            .store
            .endpoint_slices_of(service_id)
            .flat_map(|slice| ready_addresses(slice, service_port))
            .map(|address| Endpoint { address })
            .collect();
        endpoints.sort_unstable();
        endpoints.dedup();
        Ok((protocol_of(service_port), endpoints))
    }
}

/// The HTTP version a Service port speaks, by its `appProtocol`: HTTP/2 for
/// `kubernetes.io/h2c` (and `h2c`), and for `grpc`, which is HTTP/2; HTTP/1.1 otherwise.
pub fn protocol_of(port: &ServicePort) -> Protocol {
    match port.app_protocol.as_deref() {
        Some("kubernetes.io/h2c" | "h2c" | "grpc" | "kubernetes.io/grpc") => Protocol::Http2,
        _ => Protocol::Http1,
    }
}

pub(crate) fn secret_bytes(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.clone().into_bytes());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|value| value.0.clone())
}

/// Parses and checks a certificate chain and its key.
fn check_certificate(
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
) -> Result<CertificatePair, CertificateProblem> {
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertificateProblem::NotCertificates("tls.crt"))?;
    if chain.is_empty() {
        return Err(CertificateProblem::NotCertificates("tls.crt"));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| CertificateProblem::NotAPrivateKey)?;
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
        Ok(_) => Ok(CertificatePair {
            chain_pem,
            key_pem: SecretBytes::new(key_pem),
        }),
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertificateProblem::KeyMismatch),
        Err(rustls::Error::InvalidCertificate(_)) => {
            Err(CertificateProblem::NotCertificates("tls.crt"))
        }
        Err(_) => Err(CertificateProblem::UnusableKey),
    }
}

/// The ready addresses of one slice, on the slice port named like the Service port.
fn ready_addresses<'a>(
    slice: &'a EndpointSlice,
    service_port: &ServicePort,
) -> impl Iterator<Item = SocketAddr> + 'a {
    let port_name = service_port.name.as_deref().unwrap_or_default();
    let target_port = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok());
    let usable = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
    slice
        .endpoints
        .iter()
        .filter(move |_| usable && target_port.is_some())
        // An endpoint whose readiness is unknown counts as ready, as kube-proxy does.
        .filter(|endpoint| endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|endpoint| endpoint.addresses.iter())
        .filter_map(move |address| {
            let ip: IpAddr = address.parse().ok()?;
            Some(SocketAddr::new(ip, target_port?))
        })
}
