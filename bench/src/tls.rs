//! TLS for the `tls-*` scenarios: the one certificate every proxy serves, a readiness probe of
//! a TLS listener, and `weir-bench handshakes`, the load generator of the handshake scenarios.
//!
//! **The certificate**: one self-signed ECDSA P-256 certificate for `bench.local` (SHA-256
//! signature, 30 days), made with `openssl req` into the run's work directory; every proxy
//! serves it (HAProxy from one PEM file holding both certificate and key).
//!
//! **`weir-bench handshakes`** (why not `openssl s_time`: see BENCHMARKS.md): N threads, each
//! one connection at a time, back to back until the time is up: TCP connect, a TLS handshake
//! naming `bench.local` (SNI) and offering ALPN `http/1.1`, one `GET` with `Connection: close`,
//! the response read until the proxy closes. With `--resume`, each thread keeps the session
//! tickets its connections receive (rustls's in-memory store, one per thread, as independent
//! clients would: a store shared by 16 threads holds at most 8 tickets per server and runs dry
//! in bursts), so every connection after a thread's first offers a ticket from its previous
//! one; each connection reports whether the server resumed it. The
//! client checks neither the certificate nor the handshake signature: the server signs either
//! way, and the client side's CPU (shared with the backend on CPU 0) is kept for load.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
    StreamOwned,
    client::{
        Resumption,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use crate::servers::HOST;

/// The certificate and key every proxy serves, as files and as PEM text.
#[derive(Clone, Debug)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate then key in one file, as HAProxy's `crt` takes them.
    pub combined: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What the certificate is, for the report.
pub const CERTIFICATE_KIND: &str =
    "ECDSA P-256 (prime256v1), self-signed, SHA-256 signature, SAN DNS:bench.local";

impl Certificate {
    /// Makes the certificate with `openssl req` into `dir`.
    pub fn generate(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-sha256", "-nodes"])
            .args(["-days", "30", "-subj", &format!("/CN={HOST}")])
            .args(["-addext", &format!("subjectAltName=DNS:{HOST}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .map_err(|e| format!("cannot run openssl (needed for the TLS scenarios): {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "openssl req failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
        let combined = dir.join("bench.pem");
        std::fs::write(&combined, format!("{cert_pem}{key_pem}"))
            .map_err(|e| format!("{}: {e}", combined.display()))?;
        Ok(Self {
            cert,
            key,
            combined,
            cert_pem,
            key_pem,
        })
    }
}

/// Accepts any certificate and handshake signature: the load generator measures the server.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration: rustls's defaults (TLS 1.3 and 1.2, X25519 first), ALPN
/// `http/1.1`, session resumption on or off.
pub fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        Resumption::in_memory_sessions(1024)
    } else {
        Resumption::disabled()
    };
    Arc::new(config)
}

/// What one connection did.
struct Exchange {
    status: u16,
    resumed: bool,
    /// Protocol version, cipher suite, key exchange group and ALPN, e.g.
    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519 http/1.1`.
    negotiated: String,
}

/// One connection: handshake, one request, the response read until the server closes.
fn exchange(
    config: &Arc<ClientConfig>,
    port: u16,
    request: &[u8],
    timeout: Duration,
) -> Result<Exchange, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(timeout));
    let name = ServerName::try_from(HOST).expect("the bench host is a DNS name");
    let connection =
        ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS client: {e}"))?;
    let mut stream = StreamOwned::new(connection, tcp);
    // rustls completes the handshake before it writes.
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("handshake or write: {e}"))?;
    let mut response = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            // Closed without close_notify: fine once the response is complete (checked below).
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let status = complete_response_status(&response)
        .ok_or_else(|| format!("incomplete response ({} bytes)", response.len()))?;
    let connection = &stream.conn;
    let negotiated = format!(
        "{} {} {} {}",
        connection
            .protocol_version()
            .map_or("?".into(), |v| format!("{v:?}")),
        connection
            .negotiated_cipher_suite()
            .map_or("?".into(), |s| format!("{:?}", s.suite())),
        connection
            .negotiated_key_exchange_group()
            .map_or("?".into(), |g| format!("{:?}", g.name())),
        connection.alpn_protocol().map_or("(no ALPN)".into(), |p| {
            String::from_utf8_lossy(p).into_owned()
        }),
    );
    Ok(Exchange {
        status,
        resumed: connection.handshake_kind() == Some(HandshakeKind::Resumed),
        negotiated,
    })
}

/// The status of a complete HTTP/1.1 response (head, and a body as long as `Content-Length`
/// says or up to the close), `None` if it is cut short.
fn complete_response_status(response: &[u8]) -> Option<u16> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(length) if response.len() - end < length => None,
        _ => Some(status),
    }
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// One HTTPS request for the bench host on `port`; the response status, if any.
pub fn get_status(port: u16) -> Option<u16> {
    exchange(
        &client_config(false),
        port,
        &request("/?size=1"),
        Duration::from_secs(2),
    )
    .ok()
    .map(|e| e.status)
}

const HANDSHAKES_USAGE: &str = "usage: weir-bench handshakes --port PORT [--connections N] \
                                [--millis MS] [--path PATH] [--resume]";

/// `weir-bench handshakes`: prints one JSON line (`ok`, `errors`, `resumed`, `duration_us`,
/// `p50`, `p99`, `p999` in µs per connection, `negotiated`, `first_error`).
pub fn run_handshakes(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut port, mut connections, mut millis) = (None, 16usize, 10_000u64);
    let mut path = "/?size=128".to_owned();
    let mut resume = false;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| HANDSHAKES_USAGE.to_owned());
        let number = |text: String| text.parse::<u64>().map_err(|_| HANDSHAKES_USAGE.to_owned());
        match arg.as_str() {
            "--port" => port = Some(number(value()?)? as u16),
            "--connections" => connections = number(value()?)?.max(1) as usize,
            "--millis" => millis = number(value()?)?,
            "--path" => path = value()?,
            "--resume" => resume = true,
            _ => return Err(HANDSHAKES_USAGE.into()),
        }
    }
    let port = port.ok_or(HANDSHAKES_USAGE)?;
    let request = Arc::new(request(&path));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(millis);

    struct Tally {
        ok: u64,
        errors: u64,
        resumed: u64,
        latencies_us: Vec<u32>,
        negotiated: Option<String>,
        first_error: Option<String>,
    }
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (config, request) = (client_config(resume), request.clone());
            std::thread::spawn(move || {
                let mut tally = Tally {
                    ok: 0,
                    errors: 0,
                    resumed: 0,
                    latencies_us: Vec::with_capacity(1 << 16),
                    negotiated: None,
                    first_error: None,
                };
                while Instant::now() < deadline {
                    let began = Instant::now();
                    match exchange(&config, port, &request, Duration::from_secs(5)) {
                        Ok(done) if (200..300).contains(&done.status) => {
                            tally.ok += 1;
                            tally.resumed += u64::from(done.resumed);
                            let us = began.elapsed().as_micros();
                            tally.latencies_us.push(us.min(u32::MAX as u128) as u32);
                            tally.negotiated.get_or_insert(done.negotiated);
                        }
                        Ok(done) => {
                            tally.errors += 1;
                            tally
                                .first_error
                                .get_or_insert(format!("status {}", done.status));
                        }
                        Err(error) => {
                            tally.errors += 1;
                            tally.first_error.get_or_insert(error);
                            // A refused connection would otherwise spin.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally {
        ok: 0,
        errors: 0,
        resumed: 0,
        latencies_us: Vec::new(),
        negotiated: None,
        first_error: None,
    };
    for worker in workers {
        let tally = worker.join().map_err(|_| "a load thread panicked")?;
        all.ok += tally.ok;
        all.errors += tally.errors;
        all.resumed += tally.resumed;
        all.latencies_us.extend(tally.latencies_us);
        all.negotiated = all.negotiated.or(tally.negotiated);
        all.first_error = all.first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed();
    all.latencies_us.sort_unstable();
    let percentile = |p: f64| {
        let n = all.latencies_us.len();
        if n == 0 {
            return 0;
        }
        all.latencies_us[((n as f64 * p / 100.0).ceil() as usize).clamp(1, n) - 1]
    };
    println!(
        "{}",
        serde_json::json!({
            "ok": all.ok,
            "errors": all.errors,
            "resumed": all.resumed,
            "duration_us": elapsed.as_micros() as u64,
            "p50": percentile(50.0),
            "p99": percentile(99.0),
            "p999": percentile(99.9),
            "negotiated": all.negotiated,
            "first_error": all.first_error,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::complete_response_status;

    #[test]
    fn a_response_is_complete_when_its_body_is() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(complete_response_status(head), None);
        assert_eq!(
            complete_response_status(&[&head[..], b"abc"].concat()),
            Some(200)
        );
        assert_eq!(
            complete_response_status(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Some(404)
        );
        assert_eq!(complete_response_status(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
