//! `weir`: the gateway binary. Wires a configuration source to the reconciler, the reconciler
//! to the routing table, and the table to the proxy and admin listeners.

use std::{
    net::SocketAddr, num::NonZeroUsize, path::PathBuf, process::ExitCode, sync::Arc, time::Duration,
};

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, ValueEnum};
use tokio::sync::{mpsc, watch};
use weir_controlplane::{
    informer::InformerFactory,
    reconciler,
    source::{files, kubernetes},
    status,
};
use weir_gateway::{admin, metrics::Metrics, proxy::Proxy, server, table::RoutingTable};

/// Weir, a Kubernetes API gateway.
///
/// With --config, standalone: routes come from manifests in a directory. Otherwise from a
/// cluster: --kubeconfig, else $KUBECONFIG or the in-cluster service account.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Standalone mode: a directory of Route, Service and EndpointSlice manifests, reloaded on change.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kubeconfig", "namespace", "selector"])]
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
    /// Address of the admin listener (health, readiness, metrics, /debug/routes).
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Proxy threads, each with its own event loop (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
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
    // own (server::serve_on_threads).
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
        Err(error) if error.is::<kubernetes::KubernetesSourceError>() => {
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
    let proxy_listener = server::bind(cli.listen).await?;
    let admin_listener = server::bind(cli.admin).await?;
    let mut metrics = Metrics::default();

    let (events, events_rx) = mpsc::channel(1024);
    let (snapshots, snapshots_rx) = watch::channel(None);
    let source = match &cli.config {
        Some(config) => {
            files::spawn(config.clone(), events).context("starting the file source")?;
            format!("directory {}", config.display())
        }
        None => {
            let client = kubernetes::connect(cli.kubeconfig.as_deref()).await?;
            let factory = Arc::new(InformerFactory::new(client.clone()));
            let scope = kubernetes::KubernetesScope {
                namespace: cli.namespace.clone(),
                route_selector: cli.selector.clone(),
            };
            tokio::spawn(kubernetes::run(factory, scope, events));
            let status_queue = status::queue();
            status_queue.metrics().register(metrics.registry_mut());
            tokio::spawn(status::run(client, snapshots_rx.clone(), status_queue));
            "kubernetes".to_owned()
        }
    };
    let metrics = Arc::new(metrics);
    let table = Arc::new(ArcSwap::from_pointee(RoutingTable::empty(&metrics)));
    tokio::spawn(reconciler::run(events_rx, 1, snapshots));
    tokio::spawn(weir_gateway::apply_snapshots(
        snapshots_rx,
        table.clone(),
        metrics.clone(),
    ));

    tracing::info!(
        proxy = %proxy_listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        source,
        "listening"
    );
    let admin_state = admin::AdminState {
        table: table.clone(),
        metrics,
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state));
    let threads = cli
        .threads
        .and_then(NonZeroUsize::new)
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(NonZeroUsize::MIN);
    let drained = server::serve_on_threads(
        proxy_listener,
        threads,
        Arc::new(Proxy::new(table)),
        shutdown_signal(),
        cli.drain_timeout,
    )
    .await
    .context("starting the proxy threads")?;
    admin_task.abort();
    if drained {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!(timeout = ?cli.drain_timeout, "drain deadline passed; dropping the remaining connections");
    }
    Ok(())
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
