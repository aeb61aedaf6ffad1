//! The soak's mixed load: several kinds of clients at once, each at a steady, moderate rate
//! (a soak looks for leaks, not for the most a proxy can serve), counting what succeeded and
//! what failed, by kind, for the sampler (soak.rs) to read every interval.
//!
//! - HTTP/1.1 clients are ai_load's blocking [`Connection`]: keep-alive (one connection for
//!   the whole soak, reopened only if the server closes it), a new connection per request
//!   (`Connection: close`), the same two over TLS (a TLS handshake per request for the
//!   latter, each recording the certificate Weir presented, so that the soak can tell that
//!   rotating the Secret changed what new connections get), keep-alive to a route whose
//!   backend is spoken to in h2c, and keep-alive to the churned routes;
//! - h2c (HTTP/2 with prior knowledge) to Weir is oha, the harness's h2c generator (load.rs),
//!   rate-limited (`-q`) and run in windows one sample interval long, so that its counts
//!   arrive every interval;
//! - WebSocket sessions (websocket.rs): upgrade, a few echoed messages, close, again.
//!
//! Each client paces itself: one request per period, sleeping until the next is due (the
//! sleep is the pacing, nothing waits on it); a client that falls behind skips ahead rather
//! than bursting. A request counts as ok only when the answer is the one expected (200 and a
//! complete body; for WebSocket, every message back unchanged and the close answered);
//! anything else is an error, counted by kind with its message. The churn load is the one
//! exception: a 404 from a route added or removed at about that moment is counted apart
//! ("misses"), not as an error.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{ai_load::Connection, load, servers::HOST, tls, websocket};

/// The host of the stable route, every plain and TLS load's target.
pub const STABLE_HOST: &str = HOST;
/// The host of the route whose backend is spoken to in h2c.
pub const H2C_UPSTREAM_HOST: &str = "h2c.bench.local";
/// The host of the WebSocket route.
pub const WS_HOST: &str = "ws.bench.local";
/// Path and query of every HTTP request: a 128-byte answer.
const PATH: &str = "/?size=128";
/// Messages per WebSocket session.
const WS_MESSAGES: usize = 20;
/// Distinct error messages kept per load; more are counted under one line.
const ERROR_KINDS_KEPT: usize = 20;

/// What a load's clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    KeepAlive,
    NewConnection,
    TlsKeepAlive,
    TlsNewConnection,
    /// HTTP/2 with prior knowledge to Weir, by oha.
    H2c,
    /// Keep-alive HTTP/1.1 to the route whose backend Weir speaks h2c to.
    H2cUpstream,
    WebSocket,
    /// Keep-alive HTTP/1.1 to the routes the config changes keep adding and removing.
    Churn,
}

/// One load of the mix.
#[derive(Clone, Debug)]
pub struct Spec {
    pub key: &'static str,
    pub kind: Kind,
    /// Concurrent clients (connections; for h2c, oha's connections).
    pub clients: u32,
    /// Requests (sessions, for WebSocket) per second, all clients together.
    pub rate: f64,
    /// For h2c: streams in flight per connection.
    pub streams: u32,
}

impl Spec {
    /// What one success counts: requests, or WebSocket sessions.
    pub fn unit(&self) -> &'static str {
        if self.kind == Kind::WebSocket {
            "sessions"
        } else {
            "requests"
        }
    }

    pub fn describe(&self) -> String {
        let what = match self.kind {
            Kind::KeepAlive => format!("HTTP/1.1 keep-alive to {STABLE_HOST}"),
            Kind::NewConnection => {
                format!("HTTP/1.1, a new connection per request, to {STABLE_HOST}")
            }
            Kind::TlsKeepAlive => format!("HTTPS keep-alive to {STABLE_HOST}"),
            Kind::TlsNewConnection => {
                format!("HTTPS, a new connection (full handshake) per request, to {STABLE_HOST}")
            }
            Kind::H2c => format!(
                "h2c (prior knowledge) to {STABLE_HOST}, {} streams per connection (oha)",
                self.streams
            ),
            Kind::H2cUpstream => {
                format!("HTTP/1.1 keep-alive to {H2C_UPSTREAM_HOST}, h2c from Weir to the backend")
            }
            Kind::WebSocket => format!(
                "WebSocket sessions to {WS_HOST}: upgrade, {WS_MESSAGES} echoed messages, close"
            ),
            Kind::Churn => "HTTP/1.1 keep-alive to the churned routes (a 404 is a miss)".into(),
        };
        format!(
            "{}: {} client(s), {} {}/s in all; {what}",
            self.key,
            self.clients,
            self.rate,
            self.unit()
        )
    }
}

/// The mix the soak runs: about 600 requests and 8 WebSocket sessions a second.
pub fn mix() -> Vec<Spec> {
    let spec = |key, kind, clients, rate| Spec {
        key,
        kind,
        clients,
        rate,
        streams: 1,
    };
    vec![
        spec("keepalive", Kind::KeepAlive, 8, 200.0),
        spec("new-conn", Kind::NewConnection, 4, 40.0),
        spec("tls-keepalive", Kind::TlsKeepAlive, 4, 40.0),
        spec("tls-new-conn", Kind::TlsNewConnection, 2, 10.0),
        Spec {
            streams: 4,
            ..spec("h2c", Kind::H2c, 2, 100.0)
        },
        spec("h2c-upstream", Kind::H2cUpstream, 4, 80.0),
        spec("websocket", Kind::WebSocket, 4, 8.0),
        spec("churn", Kind::Churn, 2, 20.0),
    ]
}

/// What one load has counted so far.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    /// Churn only: 404s from routes added or removed at about that moment.
    pub misses: AtomicU64,
    /// Error messages and how often each came.
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn success(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    fn failure(&self, message: String) {
        self.failures(1, message);
    }

    fn failures(&self, count: u64, message: String) {
        self.errors.fetch_add(count, Ordering::Relaxed);
        let mut kinds = self.kinds.lock().expect("no panic holds the lock");
        let key = if kinds.len() < ERROR_KINDS_KEPT || kinds.contains_key(&message) {
            message
        } else {
            "(other errors)".into()
        };
        *kinds.entry(key).or_default() += count;
    }

    /// The error messages and their counts.
    pub fn error_kinds(&self) -> BTreeMap<String, u64> {
        self.kinds.lock().expect("no panic holds the lock").clone()
    }
}

/// What the loads and the config changes share.
pub struct Shared {
    pub stop: AtomicBool,
    /// When the soak ends: h2c windows are cut to it.
    pub until: Instant,
    /// Hosts of churned routes that are in the config and stay there for the next change.
    pub churn_hosts: Mutex<Vec<String>>,
    /// Every distinct certificate (DER) Weir presented to a new TLS connection.
    pub certificates: Mutex<HashSet<Vec<u8>>>,
}

/// Where the loads go.
#[derive(Clone, Debug)]
pub struct Target {
    pub port: u16,
    pub tls_port: u16,
    /// oha, for the h2c load; without it, that load does not run.
    pub oha: Option<PathBuf>,
    /// How long each oha window lasts: the sample interval.
    pub window: Duration,
    /// Where oha's output of a window with errors is kept.
    pub dir: PathBuf,
}

/// Starts every client of `spec`; they run until `shared.stop`.
pub fn start(
    spec: &Spec,
    target: &Target,
    shared: &Arc<Shared>,
    tally: &Arc<Tally>,
) -> Vec<JoinHandle<()>> {
    if spec.kind == Kind::H2c {
        let (spec, target, shared, tally) =
            (spec.clone(), target.clone(), shared.clone(), tally.clone());
        return vec![std::thread::spawn(move || {
            h2c_windows(&spec, &target, &shared, &tally)
        })];
    }
    let period = Duration::from_secs_f64(f64::from(spec.clients) / spec.rate);
    (0..spec.clients)
        .map(|client| {
            let (spec, target, shared, tally) =
                (spec.clone(), target.clone(), shared.clone(), tally.clone());
            std::thread::spawn(move || {
                // Clients of a load start spread over one period, not in step.
                let offset = period.mul_f64(f64::from(client) / f64::from(spec.clients));
                let mut client = Client::new(&spec, &target, client);
                let mut next = Instant::now() + offset;
                while !shared.stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += period;
                    if next < Instant::now() {
                        next = Instant::now() + period;
                    }
                    client.once(&shared, &tally);
                }
            })
        })
        .collect()
}

/// One client of an HTTP/1.1 or WebSocket load.
struct Client {
    kind: Kind,
    connection: Connection,
    request: Vec<u8>,
    port: u16,
    /// Counts this client's requests: picks churn hosts, seeds WebSocket keys.
    count: u64,
    id: u32,
}

fn get(host: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {PATH} HTTP/1.1\r\nHost: {host}\r\n{connection}\r\n").into_bytes()
}

impl Client {
    fn new(spec: &Spec, target: &Target, id: u32) -> Self {
        let tls = matches!(spec.kind, Kind::TlsKeepAlive | Kind::TlsNewConnection);
        let (port, connection) = if tls {
            (
                target.tls_port,
                Connection::tls(target.tls_port, tls::client_config(false)),
            )
        } else {
            (target.port, Connection::new(target.port))
        };
        let request = match spec.kind {
            Kind::NewConnection | Kind::TlsNewConnection => get(STABLE_HOST, true),
            Kind::H2cUpstream => get(H2C_UPSTREAM_HOST, false),
            _ => get(STABLE_HOST, false),
        };
        Self {
            kind: spec.kind,
            connection,
            request,
            port,
            count: 0,
            id,
        }
    }

    fn once(&mut self, shared: &Shared, tally: &Tally) {
        self.count += 1;
        match self.kind {
            Kind::WebSocket => {
                let seed = u64::from(self.id) << 40 | self.count;
                match websocket::session(self.port, WS_HOST, WS_MESSAGES, seed) {
                    Ok(()) => tally.success(),
                    Err(error) => tally.failure(error),
                }
            }
            Kind::Churn => {
                let host = {
                    let hosts = shared.churn_hosts.lock().expect("no panic holds the lock");
                    if hosts.is_empty() {
                        return;
                    }
                    hosts[(self.count as usize + self.id as usize) % hosts.len()].clone()
                };
                match self.connection.exchange(&get(&host, false), false, false) {
                    Ok(answer) if answer.status == 200 => tally.success(),
                    Ok(answer) if answer.status == 404 => {
                        tally.misses.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(answer) => tally.failure(format!("status {}", answer.status)),
                    Err(error) => tally.failure(error),
                }
            }
            _ => {
                let result = self.connection.exchange(&self.request, false, false);
                if matches!(self.kind, Kind::TlsNewConnection)
                    && let Some(certificate) = self.connection.peer_certificate()
                {
                    let mut seen = shared.certificates.lock().expect("no panic holds the lock");
                    if !seen.contains(certificate) {
                        seen.insert(certificate.to_vec());
                    }
                }
                if matches!(self.kind, Kind::NewConnection | Kind::TlsNewConnection) {
                    self.connection.close();
                }
                match result {
                    Ok(answer) if answer.status == 200 => tally.success(),
                    Ok(answer) => tally.failure(format!("status {}", answer.status)),
                    Err(error) => tally.failure(error),
                }
            }
        }
    }
}

/// The h2c load: oha windows of one sample interval each, back to back until the soak ends,
/// each adding its counts when it finishes.
fn h2c_windows(spec: &Spec, target: &Target, shared: &Shared, tally: &Tally) {
    let Some(oha) = &target.oha else {
        return;
    };
    let mut window_index = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let left = shared.until.saturating_duration_since(Instant::now());
        let window = target.window.min(left);
        if window < Duration::from_secs(1) {
            return;
        }
        window_index += 1;
        let output = Command::new(oha)
            .args(["--no-tui", "--output-format", "json", "--no-color"])
            .args(["-z", &format!("{}ms", window.as_millis())])
            .args(["-c", &spec.clients.to_string()])
            .args(["-q", &spec.rate.to_string()])
            .args(["--http2", "-p", &spec.streams.to_string()])
            .args([
                "--connect-to",
                &format!("{STABLE_HOST}:80:127.0.0.1:{}", target.port),
            ])
            .arg(format!("http://{STABLE_HOST}{PATH}"))
            .output();
        let output = match output {
            Ok(output) if output.status.success() => output,
            Ok(output) => {
                tally.failure(format!(
                    "oha failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
                continue;
            }
            Err(error) => {
                tally.failure(format!("cannot run oha: {error}"));
                return;
            }
        };
        match load::parse_oha(&output.stdout) {
            Ok(measured) => {
                tally.ok.fetch_add(measured.ok, Ordering::Relaxed);
                if measured.errors > 0 {
                    let kept = target.dir.join(format!("oha-window-{window_index}.json"));
                    let _ = std::fs::write(&kept, &output.stdout);
                    tally.failures(
                        measured.errors,
                        format!("oha: non-2xx or failed requests, see {}", kept.display()),
                    );
                }
            }
            Err(error) => tally.failure(error),
        }
    }
}
