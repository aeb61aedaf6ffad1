//! `weir`: the gateway binary. Wires a configuration source to the reconciler, the reconciler
//! to the data plane's table compiler and (in a cluster) to the status writer, and the table to
//! the proxy and admin listeners. In a cluster it also hands the data plane's ejected AI
//! providers to the status writer, the one thing the data plane tells the control plane. It
//! owns the metrics registry every component registers in.
//!
//! In a cluster every replica serves traffic, and the status writer writes only while this
//! replica holds the leader-election Lease (`weir_controlplane::leader`). On SIGTERM the
//! Lease is released at once, before the drain, so another replica takes over status writing
//! without waiting for the Lease to expire.
//!
//! SIGTERM starts the shutdown's two phases (`weir_gateway::shutdown`): leaving at once
//! (/readyz 503, HTTP/1.1 connections closed after their response, still accepting) for
//! `--shutdown-delay`, then the drain (no more accepting, in flight finished within
//! `--drain-timeout`).
//!
//! ```text
//! files | kubernetes --SourceEvent--> reconciler --Snapshot--> apply_snapshots --> ArcSwap<RoutingTable> --> proxy threads
//!                                                          |                 \--> SocketSet (listeners' sockets) --/
//!                                                          \--> status writer (cluster) <--EjectedProviders-- table compiler
//! ```

use std::{
    io::IsTerminal, net::SocketAddr, num::NonZeroUsize, path::PathBuf, process::ExitCode,
    sync::Arc, time::Duration,
};

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, ValueEnum};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use weir_contract::NamespacedName;
use weir_controlplane::{
    Reconciler, ReconcilerMetrics, leader, reconciler,
    source::{files, kubernetes},
    status,
    translate::gateway_api::GatewayAddresses,
};
use weir_gateway::{
    admin,
    ai::{Quotas, quota},
    listener::{self, snapshot_sockets::SnapshotSockets, tls::CertificateResolver},
    metrics::Metrics,
    proxy::{Proxy, ProxySettings},
    shutdown::Leaving,
    table::TableCompiler,
};
use weir_informer::InformerFactory;

/// Weir, a Kubernetes API gateway.
///
/// With --config, standalone: routes come from manifests in a directory. Otherwise from a
/// cluster: --kubeconfig, else $KUBECONFIG or the in-cluster service account.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Standalone mode: a directory of Route, AIModel, Ingress, IngressClass, Gateway API
    /// (GatewayClass, Gateway, HTTPRoute, ReferenceGrant), Namespace, Service, EndpointSlice and
    /// Secret manifests, reloaded on change.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kubeconfig", "namespace", "selector", "publish_address"])]
    config: Option<PathBuf>,
    /// Cluster mode: the kubeconfig to use (default: $KUBECONFIG, then in-cluster).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Cluster mode: watch only this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Cluster mode: serve only Routes with these labels (e.g. `gateway=public`).
    #[arg(long)]
    selector: Option<String>,
    /// Address of the proxy listener.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the TLS proxy listener (off unless given). Certificates come from the
    /// Secrets Routes name in `spec.tls`, chosen by SNI.
    #[arg(long, value_name = "ADDR")]
    listen_tls: Option<SocketAddr>,
    /// The Secret (`namespace/name`, type kubernetes.io/tls) whose certificate a TLS client
    /// gets when it names no host, or one no Route has a certificate for. Without it, such a
    /// handshake fails with an alert.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_namespaced_name)]
    default_certificate: Option<NamespacedName>,
    /// Cluster mode: the address clients reach Weir at (an IP or a host name), written in
    /// `status.loadBalancer` of every Ingress Weir serves. Without it, Ingress status is left
    /// alone.
    #[arg(long, value_name = "IP|HOSTNAME")]
    publish_address: Option<status::PublishedAddress>,
    /// Gateway API: the network Gateways take their addresses from, one each (e.g.
    /// `10.0.5.0/28`, `127.0.1.0/24` for tests); each listens there on its listeners' ports,
    /// isolated from the others. Without it, every Gateway listens on all local addresses and
    /// reports --publish-address.
    #[arg(long, value_name = "CIDR")]
    gateway_addresses: Option<ipnet::IpNet>,
    /// The longest a client may take from a request's first byte to its last header byte
    /// (and to send anything, or to finish a TLS handshake, on a new connection). HTTP/1.1
    /// clients get 408.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// How often idle HTTP/2 client connections are pinged (0s: never).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    http2_keepalive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    http2_keepalive_timeout: Duration,
    /// Streams one HTTP/2 client connection may have open at once.
    #[arg(long, default_value_t = 250)]
    http2_max_streams: u32,
    /// Client connections held at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 50_000)]
    max_connections: usize,
    /// The longest pause while a client sends a request body, for rules without their own
    /// `timeouts.requestBody` (0s: none). A stalled body is answered 408.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    request_body_timeout: Duration,
    /// The largest request body held so that a rule with retries can send it again (e.g.
    /// 64Ki, 1Mi). A longer body is streamed as usual but not retried once it has started.
    #[arg(long, default_value = "64Ki", value_parser = weir_crds::parse_size)]
    retry_buffer_size: u64,
    /// The largest request body the AI gateway reads (prompts, embeddings input); a larger
    /// one is answered 413 with a JSON error.
    #[arg(long, default_value = "32Mi", value_parser = weir_crds::parse_size)]
    ai_max_request_size: u64,
    /// Where AIModel quota counters live: this process's memory when absent (one replica), or
    /// a Redis shared by every replica (`redis://[:password@]host:6379/0`, `rediss://…` for
    /// TLS, `unix:///path`), so that they enforce one limit between them.
    #[arg(
        long,
        value_name = "URL",
        env = "WEIR_QUOTA_STORE",
        hide_env_values = true
    )]
    quota_store: Option<String>,
    /// What a request subject to a quota gets while the quota store can't be reached: `admit`
    /// serves it uncounted, `refuse` answers 503. Either way it is logged and counted
    /// (weir_ai_quota_store_errors_total).
    #[arg(long, value_enum, default_value_t = WhenQuotaStoreDown::Admit)]
    quota_store_down: WhenQuotaStoreDown,
    /// Output tokens reserved against a token quota for a request that names no `max_tokens`
    /// (the real count settles it when the answer ends).
    #[arg(long, default_value_t = 1024)]
    quota_output_estimate: u64,
    /// Address of the admin listener (health, readiness, metrics, /debug/routes).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How long Weir goes on accepting and serving after SIGINT/SIGTERM before it drains,
    /// with /readyz answering 503 and HTTP/1.1 responses carrying `Connection: close`: the time
    /// a load balancer (kube-proxy) takes to see it unready and stop sending it connections.
    /// Behind one, set it longer than the readiness probe takes to fail (period × failure
    /// threshold) plus the time the endpoint's removal takes to reach the balancers.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
    /// How long in-flight requests may take to finish once Weir stops accepting (after the
    /// --shutdown-delay).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Bind the proxy, TLS, admin and Gateway listener sockets with SO_REUSEPORT, so that a
    /// new Weir on the same host can bind the same addresses while this one still serves (a
    /// rolling restart without a load balancer in front; the kernel spreads new connections
    /// over both).
    #[arg(long)]
    reuse_port: bool,
    /// Proxy threads, each with its own event loop (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Cluster mode: the Lease (coordination.k8s.io) that elects the one replica writing status.
    #[arg(long, value_name = "NAME", default_value = "weir-status")]
    leader_election_lease: String,
    /// Cluster mode: the Lease's namespace (default: --namespace, else the service account's
    /// or the kubeconfig's namespace).
    #[arg(long, value_name = "NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Cluster mode: this replica's identity in the Lease (default: host name and pid).
    #[arg(long, value_name = "ID", env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// Cluster mode: how long a Lease not renewed stays with its holder, that is how long a
    /// leader that dies may leave status unwritten (whole seconds).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    leader_election_duration: Duration,
    /// Cluster mode: how long the leader goes on writing status without renewing the Lease
    /// (shorter than the duration; default: two thirds of it).
    #[arg(long, value_parser = humantime::parse_duration)]
    leader_election_renew_deadline: Option<Duration>,
    /// Cluster mode: how often the leader renews and the others try (default: a seventh of
    /// the duration, at most 2s).
    #[arg(long, value_parser = humantime::parse_duration)]
    leader_election_retry_period: Option<Duration>,
}

impl Cli {
    /// The leader election's settings; client-go's 15s/10s/2s by default.
    fn election(&self, default_namespace: &str) -> leader::ElectionConfig {
        let duration = self.leader_election_duration;
        leader::ElectionConfig {
            lease: self.leader_election_lease.clone(),
            namespace: self
                .leader_election_namespace
                .clone()
                .or_else(|| self.namespace.clone())
                .unwrap_or_else(|| default_namespace.to_owned()),
            identity: self
                .leader_election_identity
                .clone()
                .unwrap_or_else(default_identity),
            lease_duration: duration,
            renew_deadline: self
                .leader_election_renew_deadline
                .unwrap_or(duration * 2 / 3),
            retry_period: self
                .leader_election_retry_period
                .unwrap_or((duration / 7).min(Duration::from_secs(2))),
        }
    }
}

/// Host name (a pod's name, in a cluster) and pid: unique among replicas on one host too.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "weir".to_owned());
    format!("{host}-{}", std::process::id())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum WhenQuotaStoreDown {
    Admit,
    Refuse,
}

impl From<WhenQuotaStoreDown> for quota::WhenStoreDown {
    fn from(value: WhenQuotaStoreDown) -> Self {
        match value {
            WhenQuotaStoreDown::Admit => quota::WhenStoreDown::Admit,
            WhenQuotaStoreDown::Refuse => quota::WhenStoreDown::Refuse,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // A directory we cannot read is a usage error: one line, exit code 2.
    if let Some(config) = &cli.config
        && let Err(error) = files::check_directory(config)
    {
        eprintln!("weir: {error}");
        return ExitCode::from(2);
    }
    // This thread runs the control plane and the admin listener; the proxy has threads of its
    // own (listener::serve_on_threads).
    let mut runtime = tokio::runtime::Builder::new_current_thread();
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<weir_informer::ConnectError>() => {
            eprintln!("weir: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("weir: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let proxy_listener = listener::bind(cli.listen, cli.reuse_port)?;
    let tls_listener = match cli.listen_tls {
        Some(address) => Some(listener::bind(address, cli.reuse_port)?),
        None => None,
    };
    let admin_listener = listener::bind(cli.admin, cli.reuse_port)?;
    let quotas = match &cli.quota_store {
        None => Quotas::new(
            quota::Store::Memory(Default::default()),
            cli.quota_store_down.into(),
            cli.quota_output_estimate,
        ),
        Some(url) => Quotas::redis(url, cli.quota_store_down.into(), cli.quota_output_estimate)
            .context("--quota-store")?,
    };
    let mut registry = Registry::with_prefix("weir");
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    quotas.register(&mut registry);
    let reconciler_metrics = ReconcilerMetrics::default();
    reconciler_metrics.register(&mut registry);

    // SIGINT/SIGTERM, seen by everyone who stops on it: readiness fails and the proxy starts
    // leaving at once, as the election releases the Lease; the proxy drains after the
    // shutdown delay.
    let (stop, stopping) = watch::channel(false);
    let leaving = Leaving::default();
    let (drain, draining) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn({
        let leaving = leaving.clone();
        let delay = cli.shutdown_delay;
        async move {
            shutdown_signal().await;
            leaving.begin();
            let _ = stop.send(true);
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "not ready; serving on until the shutdown delay has passed"
                );
                tokio::time::sleep(delay).await;
            }
            let _ = drain.send(());
        }
    });
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            // A dropped sender stops everyone too.
            let _ = stopping.wait_for(|stop| *stop).await;
        }
    };
    let mut election = None;

    let snapshot_sockets = SnapshotSockets::new(metrics.clone()).with_reuse_port(cli.reuse_port);
    let compiler = TableCompiler::new(metrics);
    let (events, events_rx) = mpsc::channel(1024);
    let (snapshots, snapshots_rx) = watch::channel(None);
    let (source, source_name) = match &cli.config {
        Some(config) => {
            files::spawn(config.clone(), events).context("starting the file source")?;
            (
                format!("directory {}", config.display()),
                files::SOURCE_NAME,
            )
        }
        None => {
            let client = weir_informer::connect(cli.kubeconfig.as_deref()).await?;
            let factory = Arc::new(InformerFactory::new(client.clone()));
            let scope = kubernetes::KubernetesScope {
                namespace: cli.namespace.clone(),
                route_selector: cli.selector.clone(),
            };
            tokio::spawn(kubernetes::run(factory, scope, events));
            let leader_metrics = leader::LeaderMetrics::default();
            leader_metrics.register(&mut registry);
            let (leadership, elect) = leader::elect(
                client.clone(),
                cli.election(client.default_namespace()),
                leader_metrics,
                stopped(),
            )?;
            election = Some(tokio::spawn(elect));
            let status_queue = status::queue();
            status_queue.metrics().register(&mut registry);
            let status_metrics = status::StatusMetrics::default();
            status_metrics.register(&mut registry);
            tokio::spawn(status::run(
                client,
                snapshots_rx.clone(),
                compiler.ejected_providers(),
                status_queue,
                leadership,
                status_metrics,
                cli.publish_address.clone(),
            ));
            ("kubernetes".to_owned(), kubernetes::SOURCE_NAME)
        }
    };
    let table = Arc::new(ArcSwap::from_pointee(compiler.empty()));
    let mut reconciler = Reconciler::default().with_gateway_addresses(GatewayAddresses {
        pool: cli.gateway_addresses,
        published: cli.publish_address.as_ref().map(|address| match address {
            status::PublishedAddress::Ip(ip) => ("IPAddress", ip.to_string()),
            status::PublishedAddress::Hostname(name) => ("Hostname", name.clone()),
        }),
    });
    if let Some(secret) = cli.default_certificate.clone() {
        reconciler = reconciler.with_default_certificate(secret);
    }
    tokio::spawn(reconciler::run(
        events_rx,
        vec![source_name],
        snapshots,
        reconciler_metrics,
        reconciler,
    ));
    let certificates = tls_listener
        .as_ref()
        .map(|_| Arc::new(CertificateResolver::default()));
    let socket_set = snapshot_sockets.subscribe();
    tokio::spawn(weir_gateway::apply_snapshots(
        snapshots_rx,
        table.clone(),
        compiler,
        certificates.clone(),
        snapshot_sockets,
    ));

    let tls_address = tls_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?
        .map(|a| a.to_string());
    tracing::info!(
        proxy = %proxy_listener.local_addr()?,
        proxy_tls = tls_address,
        admin = %admin_listener.local_addr()?,
        source,
        "listening"
    );
    let admin_state = admin::AdminState {
        table: table.clone(),
        registry: Arc::new(registry),
        leaving: leaving.clone(),
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state));
    let threads = cli
        .threads
        .and_then(NonZeroUsize::new)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN);
    let listeners = listener::Listeners {
        plain: proxy_listener,
        tls: tls_listener
            .zip(certificates)
            .map(|(listener, certificates)| (listener, listener::tls::server_config(certificates))),
        snapshot_sockets: socket_set,
    };
    let settings = listener::ListenerSettings {
        header_timeout: cli.header_timeout,
        idle_timeout: cli.idle_timeout,
        http2_keepalive_interval: (!cli.http2_keepalive_interval.is_zero())
            .then_some(cli.http2_keepalive_interval),
        http2_keepalive_timeout: cli.http2_keepalive_timeout,
        http2_max_streams: cli.http2_max_streams,
        max_connections: cli.max_connections,
        drain: cli.drain_timeout,
        leaving,
    };
    let proxy_settings = ProxySettings {
        request_body_timeout: (!cli.request_body_timeout.is_zero())
            .then_some(cli.request_body_timeout),
        retry_buffer_bytes: usize::try_from(cli.retry_buffer_size).unwrap_or(usize::MAX),
        ai: weir_gateway::ai::AiSettings {
            max_request_bytes: usize::try_from(cli.ai_max_request_size).unwrap_or(usize::MAX),
            quotas,
            ..Default::default()
        },
    };
    let drained = listener::serve_on_threads(
        listeners,
        threads,
        Arc::new(Proxy::new(table, proxy_settings)),
        async {
            // A dropped sender drains too.
            let _ = draining.await;
        },
        settings,
    )
    .await
    .context("starting the proxy threads")?;
    admin_task.abort();
    // The election stood down when the signal came; this waits for its release, if late.
    if let Some(election) = election {
        let _ = election.await;
    }
    if drained {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!(timeout = ?cli.drain_timeout, "drain deadline passed; dropping the remaining connections");
    }
    Ok(())
}

/// `namespace/name`.
fn parse_namespaced_name(text: &str) -> Result<NamespacedName, String> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok(NamespacedName::new(namespace, name))
        }
        _ => Err(format!("{text:?} is not namespace/name")),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT will stop weir");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

fn init_tracing(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Whether log lines carry ANSI colour: only on a terminal, and never with `NO_COLOR` set to
/// anything but the empty string (no-color.org). Under `kubectl logs`, stderr is a pipe.
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            !use_colour(false, None),
            "a pipe or a file gets no escape codes"
        );
        assert!(!use_colour(true, Some("1".as_ref())));
        assert!(
            use_colour(true, Some("".as_ref())),
            "an empty NO_COLOR is unset"
        );
    }
}
