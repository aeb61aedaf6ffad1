//! The gateway under test: a `weir` process reading one [`ConfigDir`] (or a cluster), killed
//! on drop.
//!
//! It runs with `--log-format json` on port 0 for both listeners (unless the test places one
//! itself, e.g. on the port another Weir holds with `--reuse-port`); the harness learns the
//! addresses from the `listening` log line and forwards every log line to the test's stderr,
//! so a failing test shows what the gateway said.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Method, StatusCode};

use crate::{
    ConfigDir, HttpClient, Reply, binaries, eventually_within,
    process::{Process, watch_lines},
};

/// How long the gateway may take to listen and then to become ready.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `weir`.
pub struct Weir {
    process: Process,
    proxy: HttpClient,
    /// The TLS listener, when started with `--listen-tls`.
    tls: Option<SocketAddr>,
    admin: HttpClient,
    /// Every line it logged so far.
    logs: Arc<Mutex<Vec<String>>>,
}

impl Weir {
    /// Starts `weir --config <config>` and waits until `/readyz` answers 200, that is until
    /// the routing table built from the directory as it is now is live.
    pub async fn start(config: &ConfigDir) -> Self {
        Self::start_with_args(config, &[]).await
    }

    /// [`Weir::start`] with more command-line arguments (`--listen-tls 127.0.0.1:0`,
    /// `--header-timeout 1s`, …).
    pub async fn start_with_args(config: &ConfigDir, args: &[&str]) -> Self {
        Self::start_with_env(config, args, &[]).await
    }

    /// [`Weir::start_with_args`] with environment variables set (`RUST_LOG=debug`, …).
    pub async fn start_with_env(config: &ConfigDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(
            Command::new(binaries::weir())
                .arg("--config")
                .arg(config.path())
                .args(args)
                .envs(env.iter().copied()),
        )
        .await
    }

    /// Starts `weir --kubeconfig <kubeconfig> --namespace <namespace>` and waits until it is
    /// ready, that is until its informers have synced and the first table is live.
    pub async fn start_in_cluster(kubeconfig: &Path, namespace: &str) -> Self {
        Self::start_in_cluster_with_args(kubeconfig, namespace, &[]).await
    }

    /// [`Weir::start_in_cluster`] with more command-line arguments.
    pub async fn start_in_cluster_with_args(
        kubeconfig: &Path,
        namespace: &str,
        args: &[&str],
    ) -> Self {
        Self::start_in_cluster_with_env(kubeconfig, namespace, args, &[]).await
    }

    /// [`Weir::start_in_cluster_with_args`] with environment variables set (`RUST_LOG=debug`, …).
    pub async fn start_in_cluster_with_env(
        kubeconfig: &Path,
        namespace: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_with(
            Command::new(binaries::weir())
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["--namespace", namespace])
                .args(args)
                .envs(env.iter().copied()),
        )
        .await
    }

    /// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .expect("weir's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// How many of the lines logged so far contain `text`.
    pub fn log_lines_containing(&self, text: &str) -> usize {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.iter().filter(|line| line.contains(text)).count()
    }

    async fn start_with(command: &mut Command) -> Self {
        // A free port for each listener the caller did not place itself.
        for listener in ["--listen", "--admin"] {
            if !command.get_args().any(|arg| arg == listener) {
                command.args([listener, "127.0.0.1:0"]);
            }
        }
        let mut process = Process::spawn(
            command
                .args(["--log-format", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = logs.clone();
        let listening = watch_lines(process.take_stderr(), move |line| {
            eprintln!("[weir] {line}");
            kept.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.to_owned());
            listening_addresses(line)
        });
        let (proxy, tls, admin) = match tokio::time::timeout(STARTUP_DEADLINE, listening).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(_)) => panic!(
                "weir exited before listening: {:?}",
                process.exit_status(Duration::from_secs(1)).await
            ),
            Err(_) => panic!("weir logged no `listening` line within {STARTUP_DEADLINE:?}"),
        };
        let weir = Self {
            process,
            proxy: HttpClient::new(proxy),
            tls,
            admin: HttpClient::new(admin),
            logs,
        };
        eventually_within(STARTUP_DEADLINE, "weir is ready", async || {
            let reply = weir.admin.request(Method::GET, "admin", "/readyz");
            match reply.try_send().await?.status {
                StatusCode::OK => Ok(()),
                status => Err(format!("/readyz {status}")),
            }
        })
        .await;
        weir
    }

    /// A client for the proxy listener.
    pub fn proxy(&self) -> &HttpClient {
        &self.proxy
    }

    /// The TLS listener's address; panics if Weir was started without `--listen-tls`.
    pub fn tls_address(&self) -> SocketAddr {
        self.tls.expect("weir was started with --listen-tls")
    }

    /// The process id, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Every line logged so far that contains `text`.
    pub fn log_lines_with(&self, text: &str) -> Vec<String> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.iter()
            .filter(|line| line.contains(text))
            .cloned()
            .collect()
    }

    /// A client for the admin listener.
    pub fn admin(&self) -> &HttpClient {
        &self.admin
    }

    /// `GET path` with `Host: host` through the proxy.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.proxy.get(host, path).await
    }

    /// `/debug/routes`: the live snapshot, its Route reports and the sources' problems.
    pub async fn debug_routes(&self) -> serde_json::Value {
        let reply = self.admin.get("admin", "/debug/routes").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "/debug/routes: {}",
            reply.body
        );
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|error| panic!("/debug/routes is not JSON ({error}): {}", reply.body))
    }

    /// The value of one series of `/metrics`, named with its labels as exported (e.g.
    /// `weir_retries_total{route="default/r"}`); 0 when the series is not exported.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.admin.get("admin", "/metrics").await.body;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| {
                value
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{series}: not a number in {value:?}"))
            })
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// Sends SIGKILL: a crash, nothing runs on the way out.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// How the process exited; panics if it is still running after `within`.
    pub async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        self.process
            .exit_status(within)
            .await
            .unwrap_or_else(|| panic!("weir still running {within:?} later"))
    }
}

/// The proxy, TLS proxy (if any) and admin addresses of the `listening` log line, if `line`
/// is it.
fn listening_addresses(line: &str) -> Option<(SocketAddr, Option<SocketAddr>, SocketAddr)> {
    let log: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = log.get("fields")?;
    if fields.get("message")? != "listening" {
        return None;
    }
    let address = |field: &str| fields.get(field)?.as_str()?.parse().ok();
    Some((address("proxy")?, address("proxy_tls"), address("admin")?))
}
