//! The processes under test: the echo backend, and Weir, nginx, HAProxy and Envoy configured
//! alike (plus, when asked, a baseline Weir binary with exactly Weir's configuration).
//!
//! Every proxy gets the same job: requests for host `bench.local`, any path (prefix `/`), go
//! to the one backend over pooled keep-alive HTTP/1.1 connections, with `X-Forwarded-For`,
//! `-Proto` and `-Host` added and no access log. A "10k routes" table adds 9,999 other
//! hosts (`r1.bench.local` …) pointing at the same backend: Weir gets 10,000 Routes, nginx
//! 10,000 `server` blocks, HAProxy a 10,000-line host map (its idiomatic host routing), Envoy
//! 10,000 virtual hosts in its route configuration.
//!
//! Two variations, each only in the scenarios that ask for it (the others' configurations are
//! exactly as above): a **TLS listener** beside the plain one, serving the one certificate of
//! the run (tls.rs) with ALPN `h2` and `http/1.1` and session resumption as each proxy does it
//! by default (tickets, and a session cache where the proxy keeps one), still proxying to the
//! plain HTTP/1.1 backend; and **h2c to the backend** instead of HTTP/1.1 (Weir by the
//! Service port's `appProtocol`, HAProxy `proto h2`, Envoy `http2_protocol_options`; nginx
//! cannot, see [`NGINX_NO_H2C_UPSTREAM`]).

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{load::Load, tls::Certificate};

/// The host every benchmark request is for.
pub const HOST: &str = "bench.local";

/// What a run sends its load to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The backend itself, no proxy: the baseline for added latency.
    Direct,
    Weir,
    /// Another Weir binary (`--baseline`), run with exactly Weir's configuration.
    WeirBaseline,
    Nginx,
    Haproxy,
    Envoy,
}

impl Target {
    pub fn key(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Weir => "weir",
            Target::WeirBaseline => "weir-baseline",
            Target::Nginx => "nginx",
            Target::Haproxy => "haproxy",
            Target::Envoy => "envoy",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "backend direct",
            Target::Weir => "Weir",
            Target::WeirBaseline => "Weir (baseline)",
            Target::Nginx => "nginx",
            Target::Haproxy => "HAProxy",
            Target::Envoy => "Envoy",
        }
    }
}

/// Where processes run: per core (proxy alone on CPU 1, load generator and backend on CPU 0),
/// all on one core (for latency: no wake-up crosses CPUs), or on all cores, unpinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    PerCore,
    /// Proxy, load generator and backend all on CPU 0. In this VM, waking a process on an
    /// idle other CPU takes ~25 µs (an inter-processor interrupt through the hypervisor), and
    /// a proxied request crosses CPUs four times where a direct one crosses none: pinned
    /// apart, the "added latency" of one connection measures the hypervisor, not the proxy.
    OneCore,
    AllCores,
}

impl Placement {
    pub fn key(self) -> &'static str {
        match self {
            Placement::PerCore => "per-core",
            Placement::OneCore => "one-core",
            Placement::AllCores => "all-cores",
        }
    }

    /// The CPU list for the proxy, if pinned.
    pub fn proxy_cpus(self) -> Option<&'static str> {
        match self {
            Placement::PerCore => Some("1"),
            Placement::OneCore => Some("0"),
            Placement::AllCores => None,
        }
    }

    /// The CPU list for the load generator and the backend, if pinned.
    pub fn client_cpus(self) -> Option<&'static str> {
        match self {
            Placement::PerCore | Placement::OneCore => Some("0"),
            Placement::AllCores => None,
        }
    }

    /// Worker threads or processes each proxy gets.
    pub fn workers(self) -> usize {
        match self {
            Placement::PerCore | Placement::OneCore => 1,
            Placement::AllCores => std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The protocol the proxies speak to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// Pooled keep-alive HTTP/1.1 connections.
    Http1,
    /// HTTP/2 without TLS (prior knowledge), streams multiplexed on few connections.
    H2c,
}

impl Upstream {
    pub fn key(self) -> &'static str {
        match self {
            Upstream::Http1 => "http1",
            Upstream::H2c => "h2c",
        }
    }
}

/// Why nginx sits out the h2c-upstream scenario.
pub const NGINX_NO_H2C_UPSTREAM: &str = "nginx cannot proxy plain HTTP to an h2c upstream \
                                         (proxy_pass speaks HTTP/1.x only; HTTP/2 upstream is \
                                         grpc_pass, for gRPC)";

/// What a scenario asks of every proxy's configuration.
#[derive(Clone, Copy, Debug)]
pub struct ProxySetup<'a> {
    pub routes: usize,
    /// A TLS listener serving this certificate, beside the plain one.
    pub tls: Option<&'a Certificate>,
    pub upstream: Upstream,
}

/// The programs the harness starts.
pub struct Programs {
    pub weir: PathBuf,
    /// The Weir binary to compare the current one with, if `--baseline` was given.
    pub weir_baseline: Option<PathBuf>,
    pub echo: PathBuf,
    pub nginx: PathBuf,
    pub haproxy: PathBuf,
    /// Envoy's binary; `None` when it is not installed, and Envoy is skipped.
    pub envoy: Option<PathBuf>,
}

impl Programs {
    /// Whether the target's program is there to be run.
    pub fn has(&self, target: Target) -> bool {
        match target {
            Target::WeirBaseline => self.weir_baseline.is_some(),
            Target::Envoy => self.envoy.is_some(),
            Target::Direct | Target::Weir | Target::Nginx | Target::Haproxy => true,
        }
    }
}

/// A process the harness started; stopped when dropped.
pub struct Running {
    pub child: Child,
    /// HTTP/1.1 port (and h2c too, except for nginx; the others tell h2c by its preface).
    pub port: u16,
    /// h2c port: nginx needs a listener of its own for h2c without TLS.
    pub h2c_port: u16,
    /// The TLS listener's port, if the scenario asked for one.
    pub tls_port: Option<u16>,
    pub log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port a load goes to: the TLS listener, the h2c one, or the plain one.
    pub fn port_for(&self, load: &Load) -> Result<u16, String> {
        if load.tls {
            self.tls_port
                .ok_or_else(|| "the scenario needs a TLS listener and has none".into())
        } else if load.h2c_streams.is_some() {
            Ok(self.h2c_port)
        } else {
            Ok(self.port)
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port (bound and released; the window for a race is tiny on this machine).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Starts the echo backend and learns its port from the line it prints.
pub fn start_backend(
    programs: &Programs,
    placement: Placement,
    dir: &Path,
) -> Result<Running, String> {
    start_echo(
        &programs.echo,
        placement.client_cpus(),
        "bench",
        placement.workers(),
        &dir.join("echo.log"),
    )
}

/// Starts weir-echo `echo` (pinned to `cpus`, if given) as instance `name` with `threads`
/// worker threads, its stderr to `log`, and learns its port from the line it prints.
pub fn start_echo(
    echo: &Path,
    cpus: Option<&str>,
    name: &str,
    threads: usize,
    log: &Path,
) -> Result<Running, String> {
    let mut child = pinned(cpus, echo)
        .args(["--listen", "127.0.0.1:0", "--name", name])
        .args(["--threads", &threads.to_string()])
        .stdout(Stdio::piped())
        .stderr(file(log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", echo.display()))?;
    let port = listening_port(&mut child, "the backend")?;
    Ok(Running {
        child,
        port,
        h2c_port: port,
        tls_port: None,
        log: log.to_path_buf(),
    })
}

/// Writes the proxy's configuration for `setup` and starts it.
pub fn start_proxy(
    target: Target,
    programs: &Programs,
    placement: Placement,
    backend_port: u16,
    setup: &ProxySetup,
    dir: &Path,
) -> Result<Running, String> {
    if target == Target::Nginx && setup.upstream == Upstream::H2c {
        return Err(NGINX_NO_H2C_UPSTREAM.into());
    }
    let routes = setup.routes;
    let port = free_port().map_err(|e| e.to_string())?;
    let h2c_port = if target == Target::Nginx {
        free_port().map_err(|e| e.to_string())?
    } else {
        port
    };
    let tls = match setup.tls {
        Some(certificate) => Some((free_port().map_err(|e| e.to_string())?, certificate)),
        None => None,
    };
    let dir = dir.join(target.key());
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = dir.join("proxy.log");
    let workers = placement.workers();
    let mut command = match target {
        Target::Direct => unreachable!("the backend is started by start_backend"),
        Target::Weir | Target::WeirBaseline => {
            let config = dir.join("config");
            fs::create_dir_all(&config).map_err(|e| e.to_string())?;
            for (name, yaml) in weir_config(backend_port, routes, setup.tls, setup.upstream) {
                write(&config.join(name), &yaml)?;
            }
            let admin = free_port().map_err(|e| e.to_string())?;
            let program = match target {
                Target::WeirBaseline => programs
                    .weir_baseline
                    .as_ref()
                    .ok_or("no baseline Weir binary (--baseline)")?,
                _ => &programs.weir,
            };
            let mut command = pinned(placement.proxy_cpus(), program);
            command
                .arg("--config")
                .arg(&config)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--admin", &format!("127.0.0.1:{admin}")])
                .args(["--threads", &workers.to_string()])
                .args(["--log-format", "json", "--drain-timeout", "1s"]);
            if let Some((tls_port, _)) = tls {
                command.args(["--listen-tls", &format!("127.0.0.1:{tls_port}")]);
            }
            command
        }
        Target::Nginx => {
            let conf = dir.join("nginx.conf");
            write(
                &conf,
                &nginx_config(backend_port, port, h2c_port, tls, routes, workers, &dir),
            )?;
            let mut command = pinned(placement.proxy_cpus(), &programs.nginx);
            command
                .arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf);
            command
        }
        Target::Haproxy => {
            let map = dir.join("hosts.map");
            write(&map, &haproxy_map(routes))?;
            let conf = dir.join("haproxy.cfg");
            write(
                &conf,
                &haproxy_config(backend_port, port, tls, setup.upstream, workers, &map),
            )?;
            let mut command = pinned(placement.proxy_cpus(), &programs.haproxy);
            command.arg("-db").arg("-f").arg(&conf);
            command
        }
        Target::Envoy => {
            let envoy = programs.envoy.as_ref().ok_or("Envoy is not installed")?;
            let conf = dir.join("envoy.yaml");
            write(
                &conf,
                &envoy_config(backend_port, port, tls, setup.upstream, routes),
            )?;
            let mut command = pinned(placement.proxy_cpus(), envoy);
            command
                .arg("-c")
                .arg(&conf)
                .args(["--concurrency", &workers.to_string()])
                // Hot restart keeps shared memory under a fixed base id; a run has no use for
                // it, and an Envoy left over from an interrupted run would block the next.
                .args(["--disable-hot-restart", "--log-level", "warn"]);
            command
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(file(&log)?)
        .stderr(file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", target.label()))?;
    Ok(Running {
        child,
        port,
        h2c_port,
        tls_port: tls.map(|(port, _)| port),
        log,
    })
}

/// Polls until `port` (and the TLS port, if any: certificates may go live after the routes)
/// answers 200 for the bench host, the process exits, or `limit` passes.
pub fn wait_ready(running: &mut Running, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            let log = fs::read_to_string(&running.log).unwrap_or_default();
            return Err(format!("exited with {status} before it was ready:\n{log}"));
        }
        if get_status(running.port) == Some(200)
            && running
                .tls_port
                .is_none_or(|port| crate::tls::get_status(port) == Some(200))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One HTTP/1.1 request for the bench host; the response status, if any.
pub fn get_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /?size=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The HTTP version the backend saw for a request through `port` (weir-echo's JSON answer to
/// a request without `?size`, field `version`, e.g. `HTTP/2.0`).
pub fn backend_version(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    // The proxy closes after the answer; a timeout still leaves what arrived.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let body = &text[text.find("\r\n\r\n")? + 4..];
    // The object, whether the proxy sent it with a length or as one chunk.
    let json: serde_json::Value =
        serde_json::from_str(&body[body.find('{')?..=body.rfind('}')?]).ok()?;
    json["version"].as_str().map(str::to_owned)
}

/// The port a server started with `--listen 127.0.0.1:0` printed in its first stdout line,
/// `listening on ADDR` (`weir-echo`, `weir-mock-llm`).
pub fn listening_port(child: &mut std::process::Child, what: &str) -> Result<u16, String> {
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading {what}'s address: {e}"))?;
    line.trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{what} printed {line:?}, not `listening on ADDR`"))
}

/// A log file, appended to.
pub fn file(path: &Path) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The hosts of a table of `routes` routes: the bench host, then `r1.bench.local`, …
fn hosts(routes: usize) -> impl Iterator<Item = String> {
    std::iter::once(HOST.to_owned()).chain((1..routes).map(|i| format!("r{i}.{HOST}")))
}

/// Routes per file: small files, as people keep them (and the file source once capped a file
/// at 1,024 documents).
const ROUTES_PER_FILE: usize = 500;

/// A Service, its EndpointSlice and one Route per host, as Weir's standalone mode reads them:
/// `(file name, YAML)` pairs. With `tls`, a `kubernetes.io/tls` Secret too, named by the bench
/// host's Route (`tls: [{secretName: bench-tls}]`, for the Route's hosts); with an h2c
/// upstream, the Service port says so (`appProtocol: kubernetes.io/h2c`).
pub fn weir_config(
    backend_port: u16,
    routes: usize,
    tls: Option<&Certificate>,
    upstream: Upstream,
) -> Vec<(String, String)> {
    let app_protocol = match upstream {
        Upstream::Http1 => "",
        Upstream::H2c => ", appProtocol: kubernetes.io/h2c",
    };
    let backend = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: echo}}\nspec:\n  ports: [{{name: http, port: 8080{app_protocol}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo\n  \
         labels: {{kubernetes.io/service-name: echo}}\naddressType: IPv4\n\
         endpoints: [{{addresses: [\"127.0.0.1\"]}}]\nports: [{{name: http, port: {backend_port}}}]\n"
    );
    let mut files = vec![("backend.yaml".to_owned(), backend)];
    if let Some(certificate) = tls {
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        files.push((
            "tls.yaml".to_owned(),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: bench-tls}}\ntype: kubernetes.io/tls\n\
                 stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
                indent(&certificate.cert_pem),
                indent(&certificate.key_pem)
            ),
        ));
    }
    for (index, host) in hosts(routes).enumerate() {
        if index % ROUTES_PER_FILE == 0 {
            files.push((
                format!("routes-{:03}.yaml", index / ROUTES_PER_FILE),
                String::new(),
            ));
        }
        let yaml = &mut files.last_mut().expect("pushed above").1;
        let name = if index == 0 {
            "bench".to_owned()
        } else {
            format!("r{index}")
        };
        let route_tls = if index == 0 && tls.is_some() {
            "  tls: [{secretName: bench-tls}]\n"
        } else {
            ""
        };
        let _ = write!(
            yaml,
            "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n  \
             hosts: [\"{host}\"]\n{route_tls}  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    \
             backends: [{{service: {{name: echo, port: 8080}}}}]\n"
        );
    }
    files
}

/// nginx: one `server` per host, an upstream with keep-alive, no access log.
///
/// Per core it runs as one process (`master_process off`); on all cores, a master and one
/// worker per core, as nginx is deployed.
///
/// With `tls`, every server also listens with `ssl http2` on the TLS port (nginx 1.22's
/// syntax; `http2 on` came in 1.25.1), so ALPN offers `h2` and `http/1.1`; the certificate,
/// a shared session cache and session tickets (nginx's default, keys made by OpenSSL at
/// start) are set for all servers.
pub fn nginx_config(
    backend_port: u16,
    port: u16,
    h2c_port: u16,
    tls: Option<(u16, &Certificate)>,
    routes: usize,
    workers: usize,
    dir: &Path,
) -> String {
    let (tls_settings, tls_default_listen, tls_listen) = match tls {
        Some((tls_port, certificate)) => (
            format!(
                "  ssl_certificate {};\n  ssl_certificate_key {};\n  \
                 ssl_protocols TLSv1.2 TLSv1.3;\n  ssl_session_cache shared:SSL:10m;\n  \
                 ssl_session_timeout 1h;\n  ssl_session_tickets on;\n",
                certificate.cert.display(),
                certificate.key.display()
            ),
            format!(
                "    listen 127.0.0.1:{tls_port} default_server ssl http2 reuseport backlog=4096;\n"
            ),
            format!("    listen 127.0.0.1:{tls_port} ssl http2;\n"),
        ),
        None => (String::new(), String::new(), String::new()),
    };
    let dir = dir.display();
    let master = if workers == 1 { "off" } else { "on" };
    let mut conf = format!(
        "daemon off;\nmaster_process {master};\nworker_processes {workers};\nuser root;\n\
         pid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\nworker_rlimit_nofile 65536;\n\
         events {{\n  worker_connections 16384;\n  use epoll;\n}}\n\
         http {{\n  access_log off;\n  server_tokens off;\n  keepalive_requests 1000000;\n  \
         keepalive_timeout 75s;\n  server_names_hash_max_size 65536;\n  server_names_hash_bucket_size 64;\n  \
         client_body_temp_path {dir}/client_body;\n  proxy_temp_path {dir}/proxy;\n  \
         proxy_http_version 1.1;\n  proxy_set_header Connection \"\";\n  proxy_set_header Host $host;\n  \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n  \
         proxy_set_header X-Forwarded-Proto $scheme;\n  proxy_set_header X-Forwarded-Host $host;\n  \
         proxy_buffers 16 8k;\n  proxy_busy_buffers_size 64k;\n{tls_settings}\
         \n  upstream echo {{\n    server 127.0.0.1:{backend_port};\n    keepalive 512;\n    \
         keepalive_requests 1000000;\n  }}\n\
         \n  server {{\n    listen 127.0.0.1:{port} default_server reuseport backlog=4096;\n    \
         listen 127.0.0.1:{h2c_port} default_server http2 reuseport backlog=4096;\n{tls_default_listen}    \
         return 404;\n  }}\n"
    );
    for host in hosts(routes) {
        let _ = write!(
            conf,
            "  server {{\n    listen 127.0.0.1:{port};\n    listen 127.0.0.1:{h2c_port} http2;\n{tls_listen}    \
             server_name {host};\n    location / {{\n      proxy_pass http://echo;\n    }}\n  }}\n"
        );
    }
    conf.push_str("}\n");
    conf
}

/// HAProxy's host → backend map: every host routes to the one backend.
pub fn haproxy_map(routes: usize) -> String {
    hosts(routes).map(|h| format!("{h} be_echo\n")).collect()
}

/// HAProxy: host routing through a map, connection reuse to the backend, no logging.
///
/// With `tls`, a second frontend with the same rules binds the TLS port (`ssl crt` with
/// certificate and key in one file, `alpn h2,http/1.1`; HAProxy's defaults for resumption: a
/// shared session cache of 20,000 entries, `tune.ssl.cachesize`, and tickets with keys made by
/// OpenSSL at start) and says `X-Forwarded-Proto: https`. With an h2c upstream, the server
/// line has `proto h2`.
pub fn haproxy_config(
    backend_port: u16,
    port: u16,
    tls: Option<(u16, &Certificate)>,
    upstream: Upstream,
    threads: usize,
    map: &Path,
) -> String {
    let map = map.display();
    let tls_frontend = match tls {
        Some((tls_port, certificate)) => format!(
            "frontend bench_tls\n  bind 127.0.0.1:{tls_port} ssl crt {} alpn h2,http/1.1\n  \
             option forwardfor\n  http-request set-header X-Forwarded-Proto https\n  \
             http-request set-header X-Forwarded-Host %[req.hdr(host)]\n  \
             use_backend %[req.hdr(host),field(1,:),lower,map({map})]\n  default_backend no_route\n\n",
            certificate.combined.display()
        ),
        None => String::new(),
    };
    let proto = match upstream {
        Upstream::Http1 => "",
        Upstream::H2c => " proto h2",
    };
    format!(
        "global\n  nbthread {threads}\n  maxconn 8192\n\n\
         defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  \
         timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 75s\n\n\
         frontend bench\n  bind 127.0.0.1:{port}\n  option forwardfor\n  \
         http-request set-header X-Forwarded-Proto http\n  \
         http-request set-header X-Forwarded-Host %[req.hdr(host)]\n  \
         use_backend %[req.hdr(host),field(1,:),lower,map({map})]\n  default_backend no_route\n\n\
         {tls_frontend}\
         backend be_echo\n  http-reuse always\n  server echo 127.0.0.1:{backend_port}{proto}\n\n\
         backend no_route\n  http-request return status 404\n"
    )
}

/// Envoy: a static bootstrap with one listener, an HTTP connection manager with one virtual
/// host per host, and one cluster for the backend; no admin listener, no access log, no stats
/// sink.
///
/// - `codec_type: AUTO` serves HTTP/1.1 and h2c (prior knowledge, told by the preface) on the
///   one port, as Weir and HAProxy do.
/// - `use_remote_address` makes Envoy append the client's address to `X-Forwarded-For` and
///   set `X-Forwarded-Proto` from the connection, as nginx's `$proxy_add_x_forwarded_for` /
///   `$scheme` and HAProxy's `option forwardfor` do (and as Envoy is deployed at the edge).
///   Two differences come with it on loopback: for a loopback client Envoy appends the
///   machine's own address instead of 127.0.0.1, and it adds `x-envoy-external-address`.
///   Envoy has no switch for `X-Forwarded-Host` without a host rewrite, so it is a request
///   header set from `:authority` for every route.
/// - `generate_request_id: false` and the router's `suppress_envoy_headers`: Envoy otherwise
///   adds an `x-request-id` and `x-envoy-*` headers, work the other proxies do not do.
/// - `strip_any_host_port`: a `Host` with a port matches its host, as in nginx and HAProxy.
/// - The cluster's circuit breakers are raised from 1,024 so that they never turn load into
///   503s; upstream connections are HTTP/1.1 and pooled per worker by default.
/// - With `tls`, a second listener with the same connection manager and a
///   `DownstreamTlsContext` (ALPN `h2`, `http/1.1`); with an h2c upstream, the cluster's
///   `HttpProtocolOptions` say `explicit_http_config: {http2_protocol_options: {}}`.
pub fn envoy_config(
    backend_port: u16,
    port: u16,
    tls: Option<(u16, &Certificate)>,
    upstream: Upstream,
    routes: usize,
) -> String {
    let mut conf = String::from("static_resources:\n  listeners:\n");
    envoy_listener(&mut conf, "bench", port, "", routes);
    if let Some((tls_port, certificate)) = tls {
        // Envoy's defaults for resumption: stateless tickets with keys BoringSSL makes at
        // start (no `session_ticket_keys`) and BoringSSL's session cache.
        let transport = format!(
            "transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \
             \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          \
             common_tls_context:\n            alpn_protocols: [h2, http/1.1]\n            tls_certificates:\n            \
             - certificate_chain: {{filename: \"{}\"}}\n              private_key: {{filename: \"{}\"}}\n      ",
            certificate.cert.display(),
            certificate.key.display()
        );
        envoy_listener(&mut conf, "bench_tls", tls_port, &transport, routes);
    }
    let protocol = match upstream {
        Upstream::Http1 => "",
        Upstream::H2c => {
            "    typed_extension_protocol_options:\n      \
             envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \
             \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        \
             explicit_http_config: {http2_protocol_options: {}}\n"
        }
    };
    let _ = write!(
        conf,
        "  clusters:\n  - name: echo\n    type: STATIC\n    connect_timeout: 5s\n    \
         circuit_breakers: {{thresholds: [{{max_connections: 1000000, max_pending_requests: 1000000, \
         max_requests: 1000000}}]}}\n{protocol}    load_assignment:\n      cluster_name: echo\n      \
         endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: \
         {{address: 127.0.0.1, port_value: {backend_port}}}}}}}}}]}}]\n"
    );
    conf
}

/// One Envoy listener with the HTTP connection manager and its route configuration;
/// `transport` is the filter chain's `transport_socket` (TLS), or empty.
fn envoy_listener(conf: &mut String, name: &str, port: u16, transport: &str, routes: usize) {
    let _ = write!(
        conf,
        "  - name: {name}\n    \
         address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n    \
         filter_chains:\n    - {transport}filters:\n      - name: envoy.filters.network.http_connection_manager\n        \
         typed_config:\n          \
         \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          \
         stat_prefix: {name}\n          codec_type: AUTO\n          use_remote_address: true\n          \
         xff_num_trusted_hops: 0\n          generate_request_id: false\n          \
         strip_any_host_port: true\n          http_filters:\n          - name: envoy.filters.http.router\n            \
         typed_config:\n              \
         \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n              \
         suppress_envoy_headers: true\n          route_config:\n            name: bench\n            \
         request_headers_to_add:\n            \
         - header: {{key: x-forwarded-host, value: \"%REQ(:AUTHORITY)%\"}}\n              \
         append_action: OVERWRITE_IF_EXISTS_OR_ADD\n            virtual_hosts:\n"
    );
    for (index, host) in hosts(routes).enumerate() {
        let _ = writeln!(
            conf,
            "            - {{name: h{index}, domains: [\"{host}\"], \
             routes: [{{match: {{prefix: /}}, route: {{cluster: echo}}}}]}}"
        );
    }
}
