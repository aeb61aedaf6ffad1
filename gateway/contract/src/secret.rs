//! Secret material: private keys and credentials, in types that cannot leak.
//!
//! [`SecretBytes`] has no `Display`, no `Serialize`, and a `Debug` that prints only its
//! length; the bytes are reachable only through [`SecretBytes::expose`], whose callers are the
//! few places that hand them to TLS or to an upstream. Anything that holds one —
//! [`TlsCertificate`], [`Credential`] — inherits that: deriving `Debug` on a type that holds
//! secrets is safe, and serialising one does not compile.

use std::{fmt, sync::Arc};

use crate::ids::NamespacedName;

/// Bytes that must never be shown.
///
/// ```
/// use weir_contract::SecretBytes;
/// let key = SecretBytes::new(b"hunter2".to_vec());
/// assert_eq!(format!("{key:?}"), "SecretBytes(<redacted, 7 bytes>)");
/// assert_eq!(key.expose(), b"hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Arc<[u8]>);

impl SecretBytes {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        Self(bytes.into())
    }

    /// The secret itself, for the code that must use it (a TLS handshake, an upstream header).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<redacted, {} bytes>)", self.0.len())
    }
}

/// A certificate chain and its private key, for the hosts it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    /// The Secret it came from.
    pub source: NamespacedName,
    /// Lowercase host names it is served for; `*.example.com` for a wildcard.
    pub hosts: Vec<String>,
    /// The chain, leaf first, as PEM. Public, but kept whole for the data plane to parse.
    pub chain_pem: Vec<u8>,
    /// The private key, as PEM.
    pub key_pem: SecretBytes,
}

/// A credential an upstream expects (an API key), and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The Secret and key it came from, for operators.
    pub source: NamespacedName,
    pub value: SecretBytes,
}
