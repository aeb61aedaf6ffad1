//! Certificates for TLS tests, made by the `openssl` command: a CA, leaves it signs for any
//! set of host names, and broken material for negative tests.
//!
//! Everything is PEM text, for Kubernetes Secrets (`tls.crt`, `tls.key`) and manifests, and
//! also a file (kept in a temporary directory as long as its [`Ca`] or [`Leaf`] lives) for
//! curl's `--cacert`, the Python clients' `--cafile`/`--tls-ca` and the servers' `--tls-cert`.
//!
//! The certificates are what a strict verifier (rustls/webpki, `openssl verify -x509_strict`)
//! accepts: X.509 v3, a CA with `CA:TRUE` and `keyCertSign`, leaves with `CA:FALSE`,
//! `serverAuth` and the host names as subject alternative names (DNS names, wildcards such
//! as `*.shop.example.com`, or IP addresses), the first one also the subject's CN. Every
//! certificate gets a random serial, so a test rotating a certificate for the same host can
//! tell which of the two a server presented.

use std::{
    fs,
    io::Read,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use tempfile::TempDir;

/// A PEM block that is no certificate: its base64 decodes to the text "not a certificate,
/// just text".
pub const GARBAGE_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
                               bm90IGEgY2VydGlmaWNhdGUsIGp1c3QgdGV4dA==\n\
                               -----END CERTIFICATE-----\n";

/// A PEM block that is no private key.
pub const GARBAGE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
                                   bm90IGEga2V5LCBqdXN0IHRleHQ=\n\
                                   -----END PRIVATE KEY-----\n";

/// The algorithm of a leaf's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Rsa2048,
    EcdsaP256,
}

/// A self-signed certificate authority (ECDSA P-256), valid for ten years.
pub struct Ca {
    name: String,
    cert_pem: String,
    /// Holds `ca.pem` and `ca.key`.
    dir: TempDir,
}

impl Ca {
    /// A new CA whose subject is `CN=<name>`.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let config = dir.path().join("ca.cnf");
        write(
            &config,
            "[req]\n\
             distinguished_name = dn\n\
             [dn]\n\
             [ca]\n\
             basicConstraints = critical, CA:TRUE\n\
             keyUsage = critical, keyCertSign, cRLSign, digitalSignature\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid:always\n",
        );
        let key = dir.path().join("ca.key");
        let cert = dir.path().join("ca.pem");
        generate_key(&key, KeyType::EcdsaP256);
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-sha256", "-days", "3650"])
                .arg("-key")
                .arg(&key)
                .args(["-subj", &subject(name)])
                .args(["-set_serial", &format!("0x{}", random_serial())])
                .arg("-config")
                .arg(&config)
                .args(["-extensions", "ca"])
                .arg("-out")
                .arg(&cert),
        );
        Self {
            name: name.to_owned(),
            cert_pem: read(&cert),
            dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA's certificate, for clients to trust.
    pub fn pem(&self) -> &str {
        &self.cert_pem
    }

    /// A file holding [`Ca::pem`], as long as the CA lives.
    pub fn pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes [`Ca::pem`] to `path`.
    pub fn write_pem(&self, path: &Path) {
        write(path, &self.cert_pem);
    }

    /// A leaf for `hosts` (DNS names, wildcards, IP addresses; at least one) with a key of
    /// type `key`, signed by this CA, valid for 825 days; its CN is the first host.
    pub fn leaf(&self, hosts: &[&str], key: KeyType) -> Leaf {
        let first = hosts.first().expect("a leaf names at least one host");
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let alt_names: Vec<String> = hosts
            .iter()
            .map(|host| match host.parse::<IpAddr>() {
                Ok(_) => format!("IP:{host}"),
                Err(_) => format!("DNS:{host}"),
            })
            .collect();
        let key_usage = match key {
            // RSA key exchange (TLS 1.2) also encrypts with the certificate's key.
            KeyType::Rsa2048 => "digitalSignature, keyEncipherment",
            KeyType::EcdsaP256 => "digitalSignature",
        };
        let config = dir.path().join("leaf.cnf");
        write(
            &config,
            &format!(
                "[req]\n\
                 distinguished_name = dn\n\
                 [dn]\n\
                 [leaf]\n\
                 basicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, {key_usage}\n\
                 extendedKeyUsage = serverAuth, clientAuth\n\
                 subjectAltName = {}\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n",
                alt_names.join(", ")
            ),
        );
        let key_path = dir.path().join("key.pem");
        let request = dir.path().join("leaf.csr");
        let cert = dir.path().join("cert.pem");
        generate_key(&key_path, key);
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-sha256"])
                .arg("-key")
                .arg(&key_path)
                .args(["-subj", &subject(first)])
                .arg("-config")
                .arg(&config)
                .arg("-out")
                .arg(&request),
        );
        let serial = random_serial();
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-sha256", "-days", "825"])
                .arg("-in")
                .arg(&request)
                .arg("-CA")
                .arg(self.pem_path())
                .arg("-CAkey")
                .arg(self.dir.path().join("ca.key"))
                .args(["-set_serial", &format!("0x{serial}")])
                .arg("-extfile")
                .arg(&config)
                .args(["-extensions", "leaf"])
                .arg("-out")
                .arg(&cert),
        );
        let key_pem_traditional = openssl(
            Command::new("openssl")
                .args(["pkey", "-traditional", "-in"])
                .arg(&key_path),
        );
        let leaf = Leaf {
            cert_pem: read(&cert),
            key_pem: read(&key_path),
            key_pem_traditional: String::from_utf8(key_pem_traditional.stdout)
                .expect("PEM is ASCII"),
            ca_pem: self.cert_pem.clone(),
            serial,
            subject_cn: (*first).to_owned(),
            hosts: hosts.iter().map(|host| (*host).to_owned()).collect(),
            key_type: key,
            dir,
        };
        write(&leaf.with_ca_path(), &leaf.with_ca_pem());
        leaf
    }

    /// A certificate for `hosts` and the private key of *another* certificate (of the same
    /// key type): each valid PEM, useless together.
    pub fn mismatched_pair(&self, hosts: &[&str], key: KeyType) -> (String, String) {
        let cert = self.leaf(hosts, key);
        let other = self.leaf(hosts, key);
        (cert.cert_pem, other.key_pem)
    }
}

/// A certificate signed by a [`Ca`], and its key.
pub struct Leaf {
    cert_pem: String,
    key_pem: String,
    key_pem_traditional: String,
    ca_pem: String,
    serial: String,
    subject_cn: String,
    hosts: Vec<String>,
    key_type: KeyType,
    /// Holds `cert.pem`, `key.pem` and `with-ca.pem`.
    dir: TempDir,
}

impl Leaf {
    /// The certificate chain a server presents: the leaf alone (the CA is its trust anchor,
    /// and there is no intermediate).
    pub fn chain_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The leaf followed by the CA's certificate, as some tools bundle it.
    pub fn with_ca_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.ca_pem)
    }

    /// The private key, PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The same key in its algorithm's own format: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1
    /// (`BEGIN EC PRIVATE KEY`), as cert-manager and older tools write `tls.key`.
    pub fn key_pem_traditional(&self) -> &str {
        &self.key_pem_traditional
    }

    /// The serial number: 32 upper-case hex digits, as `openssl x509 -serial` prints it.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The subject's common name: the first host.
    pub fn subject_cn(&self) -> &str {
        &self.subject_cn
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// A file holding [`Leaf::chain_pem`], as long as the leaf lives.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// A file holding [`Leaf::with_ca_pem`], as long as the leaf lives.
    pub fn with_ca_path(&self) -> PathBuf {
        self.dir.path().join("with-ca.pem")
    }

    /// A file holding [`Leaf::key_pem`], as long as the leaf lives.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

fn generate_key(path: &Path, key: KeyType) {
    let algorithm: &[&str] = match key {
        KeyType::Rsa2048 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        KeyType::EcdsaP256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    openssl(
        Command::new("openssl")
            .arg("genpkey")
            .args(algorithm)
            .arg("-out")
            .arg(path),
    );
}

/// `/CN=<name>`, with the characters `-subj` treats specially escaped.
fn subject(common_name: &str) -> String {
    let mut escaped = String::from("/CN=");
    for c in common_name.chars() {
        if matches!(c, '/' | '\\' | '+' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// 16 random bytes as 32 upper-case hex digits: positive, and with no leading zero byte, so
/// that `openssl x509 -serial` prints it back unchanged.
fn random_serial() -> String {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .expect("/dev/urandom can be read");
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// Runs an `openssl` command; panics with what it said unless it succeeded.
fn openssl(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?} (is openssl installed?): {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn write(path: &Path, text: &str) {
    fs::write(path, text)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl <args>` with `files` written to a temporary directory first and named there
    /// by their `{name}`; returns success and stdout and stderr together.
    fn run(args: &[&str], files: &[(&str, &str)]) -> (bool, String) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = Command::new("openssl");
        for arg in args {
            let mut arg = (*arg).to_owned();
            for (name, content) in files {
                let path = dir.path().join(name);
                if arg.contains(&format!("{{{name}}}")) {
                    write(&path, content);
                    arg = arg.replace(&format!("{{{name}}}"), &path.display().to_string());
                }
            }
            command.arg(arg);
        }
        let output = command.output().expect("openssl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    fn verify(ca: &str, leaf: &str, host: &str) -> (bool, String) {
        run(
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "sslserver",
                "-verify_hostname",
                host,
                "-CAfile",
                "{ca}",
                "{leaf}",
            ],
            &[("ca", ca), ("leaf", leaf)],
        )
    }

    fn public_key(args: &[&str], pem: &str) -> String {
        let (ok, text) = run(args, &[("pem", pem)]);
        assert!(ok, "{args:?}: {text}");
        text
    }

    #[test]
    fn a_leaf_verifies_against_its_ca_for_its_hosts_only() {
        let ca = Ca::new("weir test CA");
        let other_ca = Ca::new("weir test CA");
        for key in [KeyType::Rsa2048, KeyType::EcdsaP256] {
            let leaf = ca.leaf(&["shop.example.com", "*.shop.example.com"], key);
            for host in ["shop.example.com", "a.shop.example.com"] {
                let (ok, text) = verify(ca.pem(), leaf.chain_pem(), host);
                assert!(ok && text.contains(": OK"), "{key:?} for {host}: {text}");
            }
            // A wildcard covers one label, and only below its domain.
            for host in ["a.b.shop.example.com", "example.com", "other.example.com"] {
                let (ok, text) = verify(ca.pem(), leaf.chain_pem(), host);
                assert!(!ok, "{key:?} verified for {host}: {text}");
            }
            let (ok, text) = verify(other_ca.pem(), leaf.chain_pem(), "shop.example.com");
            assert!(
                !ok,
                "{key:?} verified against another CA of the same name: {text}"
            );
        }
    }

    #[test]
    fn a_leaf_names_its_hosts_and_serial() {
        let ca = Ca::new("weir test CA");
        let leaf = ca.leaf(
            &["shop.example.com", "*.shop.example.com", "127.0.0.1"],
            KeyType::EcdsaP256,
        );
        let (ok, text) = run(
            &[
                "x509",
                "-noout",
                "-ext",
                "subjectAltName",
                "-subject",
                "-serial",
                "-in",
                "{cert}",
            ],
            &[("cert", leaf.chain_pem())],
        );
        assert!(ok, "{text}");
        assert!(
            text.contains("DNS:shop.example.com, DNS:*.shop.example.com, IP Address:127.0.0.1"),
            "{text}"
        );
        assert!(text.contains("subject=CN = shop.example.com"), "{text}");
        assert!(
            text.contains(&format!("serial={}", leaf.serial())),
            "{text}"
        );
        assert_eq!(leaf.subject_cn(), "shop.example.com");
        assert_eq!(
            fs::read_to_string(leaf.cert_path()).unwrap(),
            leaf.chain_pem()
        );
        assert_eq!(
            leaf.with_ca_pem(),
            format!("{}{}", leaf.chain_pem(), ca.pem())
        );
        assert_eq!(fs::read_to_string(ca.pem_path()).unwrap(), ca.pem());
    }

    #[test]
    fn every_leaf_has_a_serial_of_its_own() {
        let ca = Ca::new("weir test CA");
        let first = ca.leaf(&["shop.example.com"], KeyType::EcdsaP256);
        let second = ca.leaf(&["shop.example.com"], KeyType::EcdsaP256);
        assert_ne!(first.serial(), second.serial());
        assert_ne!(first.chain_pem(), second.chain_pem());
        assert_eq!(first.serial().len(), 32);
    }

    #[test]
    fn keys_match_their_certificates_in_both_formats() {
        let ca = Ca::new("weir test CA");
        for (key, text, header) in [
            (KeyType::Rsa2048, "2048 bit", "BEGIN RSA PRIVATE KEY"),
            (KeyType::EcdsaP256, "P-256", "BEGIN EC PRIVATE KEY"),
        ] {
            let leaf = ca.leaf(&["shop.example.com"], key);
            let of_cert = public_key(
                &["x509", "-noout", "-pubkey", "-in", "{pem}"],
                leaf.chain_pem(),
            );
            let pubout = ["pkey", "-pubout", "-in", "{pem}"];
            assert_eq!(public_key(&pubout, leaf.key_pem()), of_cert, "{key:?}");
            assert_eq!(
                public_key(&pubout, leaf.key_pem_traditional()),
                of_cert,
                "{key:?}"
            );
            assert!(leaf.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(leaf.key_pem_traditional().contains(header), "{key:?}");
            let details = public_key(&["pkey", "-noout", "-text", "-in", "{pem}"], leaf.key_pem());
            assert!(details.contains(text), "{key:?}: {details}");

            let (cert, other_key) = ca.mismatched_pair(&["shop.example.com"], key);
            let of_cert = public_key(&["x509", "-noout", "-pubkey", "-in", "{pem}"], &cert);
            assert_ne!(public_key(&pubout, &other_key), of_cert, "{key:?}");
        }
    }

    #[test]
    fn garbage_is_neither_certificate_nor_key() {
        let (ok, text) = run(&["x509", "-noout", "-in", "{pem}"], &[("pem", GARBAGE_PEM)]);
        assert!(!ok, "{text}");
        let (ok, text) = run(
            &["pkey", "-noout", "-in", "{pem}"],
            &[("pem", GARBAGE_KEY_PEM)],
        );
        assert!(!ok, "{text}");
    }
}
