//! The processes under test: the echo backend, and Weir, nginx, HAProxy and Envoy configured
//! alike (plus, when asked, a baseline Weir binary with exactly Weir's configuration).
//!
//! Every proxy gets the same job: requests for host `bench.local`, any path (prefix `/`), go
//! to the one backend over pooled keep-alive HTTP/1.1 connections, with `X-Forwarded-For`,
//! `-Proto` and `-Host` added and no access log. A "10k routes" table adds 9,999 other
//! hosts (`r1.bench.local` …) pointing at the same backend: Weir gets 10,000 Routes, nginx
//! 10,000 `server` blocks, HAProxy a 10,000-line host map (its idiomatic host routing), Envoy
//! 10,000 virtual hosts in its route configuration.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

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
    pub log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
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
    let log = dir.join("echo.log");
    let mut child = pinned(placement.client_cpus(), &programs.echo)
        .args(["--listen", "127.0.0.1:0", "--name", "bench"])
        .args(["--threads", &placement.workers().to_string()])
        .stdout(Stdio::piped())
        .stderr(file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", programs.echo.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the backend's address: {e}"))?;
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("the backend printed {line:?}, not `listening on ADDR`"))?;
    Ok(Running {
        child,
        port,
        h2c_port: port,
        log,
    })
}

/// Writes the proxy's configuration for `routes` routes and starts it.
pub fn start_proxy(
    target: Target,
    programs: &Programs,
    placement: Placement,
    backend_port: u16,
    routes: usize,
    dir: &Path,
) -> Result<Running, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let h2c_port = if target == Target::Nginx {
        free_port().map_err(|e| e.to_string())?
    } else {
        port
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
            for (name, yaml) in weir_config(backend_port, routes) {
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
            command
        }
        Target::Nginx => {
            let conf = dir.join("nginx.conf");
            write(
                &conf,
                &nginx_config(backend_port, port, h2c_port, routes, workers, &dir),
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
            write(&conf, &haproxy_config(backend_port, port, workers, &map))?;
            let mut command = pinned(placement.proxy_cpus(), &programs.haproxy);
            command.arg("-db").arg("-f").arg(&conf);
            command
        }
        Target::Envoy => {
            let envoy = programs.envoy.as_ref().ok_or("Envoy is not installed")?;
            let conf = dir.join("envoy.yaml");
            write(&conf, &envoy_config(backend_port, port, routes))?;
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
        log,
    })
}

/// Polls until `port` answers 200 for the bench host, the process exits, or `limit` passes.
pub fn wait_ready(running: &mut Running, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            let log = fs::read_to_string(&running.log).unwrap_or_default();
            return Err(format!("exited with {status} before it was ready:\n{log}"));
        }
        if get_status(running.port) == Some(200) {
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

fn file(path: &Path) -> Result<fs::File, String> {
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
/// `(file name, YAML)` pairs.
pub fn weir_config(backend_port: u16, routes: usize) -> Vec<(String, String)> {
    let backend = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: echo}}\nspec:\n  ports: [{{name: http, port: 8080}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo\n  \
         labels: {{kubernetes.io/service-name: echo}}\naddressType: IPv4\n\
         endpoints: [{{addresses: [\"127.0.0.1\"]}}]\nports: [{{name: http, port: {backend_port}}}]\n"
    );
    let mut files = vec![("backend.yaml".to_owned(), backend)];
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
        let _ = write!(
            yaml,
            "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n  \
             hosts: [\"{host}\"]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    \
             backends: [{{service: {{name: echo, port: 8080}}}}]\n"
        );
    }
    files
}

/// nginx: one `server` per host, an upstream with keep-alive, no access log.
///
/// Per core it runs as one process (`master_process off`); on all cores, a master and one
/// worker per core, as nginx is deployed.
pub fn nginx_config(
    backend_port: u16,
    port: u16,
    h2c_port: u16,
    routes: usize,
    workers: usize,
    dir: &Path,
) -> String {
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
         proxy_buffers 16 8k;\n  proxy_busy_buffers_size 64k;\n\
         \n  upstream echo {{\n    server 127.0.0.1:{backend_port};\n    keepalive 512;\n    \
         keepalive_requests 1000000;\n  }}\n\
         \n  server {{\n    listen 127.0.0.1:{port} default_server reuseport backlog=4096;\n    \
         listen 127.0.0.1:{h2c_port} default_server http2 reuseport backlog=4096;\n    return 404;\n  }}\n"
    );
    for host in hosts(routes) {
        let _ = write!(
            conf,
            "  server {{\n    listen 127.0.0.1:{port};\n    listen 127.0.0.1:{h2c_port} http2;\n    \
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
pub fn haproxy_config(backend_port: u16, port: u16, threads: usize, map: &Path) -> String {
    let map = map.display();
    format!(
        "global\n  nbthread {threads}\n  maxconn 8192\n\n\
         defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  \
         timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 75s\n\n\
         frontend bench\n  bind 127.0.0.1:{port}\n  option forwardfor\n  \
         http-request set-header X-Forwarded-Proto http\n  \
         http-request set-header X-Forwarded-Host %[req.hdr(host)]\n  \
         use_backend %[req.hdr(host),field(1,:),lower,map({map})]\n  default_backend no_route\n\n\
         backend be_echo\n  http-reuse always\n  server echo 127.0.0.1:{backend_port}\n\n\
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
pub fn envoy_config(backend_port: u16, port: u16, routes: usize) -> String {
    let mut conf = format!(
        "static_resources:\n  listeners:\n  - name: bench\n    \
         address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}\n    \
         filter_chains:\n    - filters:\n      - name: envoy.filters.network.http_connection_manager\n        \
         typed_config:\n          \
         \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n          \
         stat_prefix: bench\n          codec_type: AUTO\n          use_remote_address: true\n          \
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
    let _ = write!(
        conf,
        "  clusters:\n  - name: echo\n    type: STATIC\n    connect_timeout: 5s\n    \
         circuit_breakers: {{thresholds: [{{max_connections: 1000000, max_pending_requests: 1000000, \
         max_requests: 1000000}}]}}\n    load_assignment:\n      cluster_name: echo\n      \
         endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: \
         {{address: 127.0.0.1, port_value: {backend_port}}}}}}}}}]}}]\n"
    );
    conf
}
