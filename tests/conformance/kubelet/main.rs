//! `weir-process-kubelet`: a kubelet that runs pods as plain processes, each in a network
//! namespace of its own, for the Gateway API conformance harness (`tests/conformance/run`).
//!
//! The harness has a real API server (tests/envtest) and a real kube-controller-manager
//! (Deployments → ReplicaSets → Pods, EndpointSlices, garbage collection, namespace
//! deletion), but no container runtime and no kubelet. This is the missing piece, and only
//! as much of it as the suite's backends need: it registers one Node, binds every pod to it
//! (so it is the scheduler too), runs each container image it knows as a local binary with
//! the pod's environment and Secret/ConfigMap volumes, reports the pod Running and Ready
//! with its own IP, serves container logs to the API server, and deletes pods for good once
//! their processes are gone. See `tests/conformance/README.md` for what it does not do.
//!
//! It changes the machine (network namespaces, veth pairs, processes), so every way out
//! cleans up: SIGTERM, SIGINT, its stdin closing when started with `--lifeline-stdin` (the
//! harness holds the other end, so even a SIGKILLed harness takes the kubelet down), and a
//! panic. What a SIGKILL to the kubelet itself leaves behind (its containers die with it,
//! by their parent-death signal) is removed by the next start, by name prefix; a lock makes
//! sure only one process kubelet runs on the machine, so that prefix is unambiguous.

mod cleanup;
mod containers;
mod env;
mod logs;
mod netns;
mod node;
mod pods;
mod status;
mod volumes;

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use clap::Parser;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs the cluster's pods as processes in network namespaces (needs root and iproute2).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// The kubeconfig (default: $KUBECONFIG).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The Node this kubelet registers and binds every pod to.
    #[arg(long, default_value = "weir-node")]
    node_name: String,
    /// The Node's InternalIP: the API server reaches the log endpoint there, and it is every
    /// pod's hostIP.
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: IpAddr,
    /// Port of the HTTPS log endpoint (0: any free one); published in the Node status.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// An image name and the binary that runs for it, e.g. `echo-basic=/path/echo-basic`
    /// (repeatable). Containers of other images run nothing and are reported ready.
    #[arg(long = "program", value_name = "IMAGE-NAME=PATH")]
    programs: Vec<containers::Program>,
    /// Where pods' volumes and log copies go (`<dir>/pods/<uid>/`), and the serving cert.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Stop (and clean up) when stdin reaches end of file.
    #[arg(long)]
    lifeline_stdin: bool,
    /// The lock that keeps a second process kubelet off this machine.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/weir-process-kubelet.lock"
    )]
    lock_file: PathBuf,
}

/// How long pods get to tear down when the kubelet stops, before the exit cleanup takes over.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    cleanup::on_panic_undo_everything_and_exit();
    // Held until the process ends, after the last cleanup.
    let _lock = match lock(&cli.lock_file) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("weir-process-kubelet: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir-process-kubelet: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    cleanup::undo_everything();
    let code = match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("weir-process-kubelet: {error:#}");
            1
        }
    };
    // Not returning: dropping the runtime could wait on work no one needs any more.
    std::process::exit(code)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let removed = netns::remove_leftovers().context("removing a previous run's leftovers")?;
    if removed > 0 {
        tracing::warn!(
            namespaces = removed,
            "removed network namespaces a previous run left behind"
        );
    }
    std::fs::create_dir_all(cli.state_dir.join("pods"))
        .with_context(|| format!("creating {}", cli.state_dir.display()))?;
    let client = client(cli.kubeconfig.as_ref()).await?;

    let stop = CancellationToken::new();
    let listener = TcpListener::bind(SocketAddr::new(cli.node_ip, cli.port))
        .await
        .context("binding the log endpoint")?;
    let port = listener.local_addr()?.port();
    let (cert, key) = logs::self_signed_certificate(&cli.state_dir, &cli.node_ip.to_string())?;
    let acceptor = logs::acceptor(&cert, &key)?;
    let store = Arc::new(logs::LogStore::default());
    let serving = tokio::spawn(logs::serve(listener, acceptor, store.clone(), stop.clone()));

    node::register(client.clone(), &cli.node_name, cli.node_ip, port)
        .await
        .context("registering the Node")?;
    tracing::info!(
        node = cli.node_name,
        port,
        programs = ?cli.programs,
        "registered; running pods"
    );

    let kubelet = Arc::new(pods::Kubelet::new(
        client,
        cli.node_name.clone(),
        cli.node_ip,
        cli.programs.clone(),
        cli.state_dir.clone(),
        store,
        stop.clone(),
    ));
    let watching = tokio::spawn(pods::run(kubelet.clone()));

    let why = stopped(cli.lifeline_stdin).await;
    tracing::info!("{why}; stopping every pod");
    stop.cancel();
    let _ = watching.await;
    kubelet.tasks.close();
    if tokio::time::timeout(STOP_DEADLINE, kubelet.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("pods did not stop within {STOP_DEADLINE:?}; killing what is left");
    }
    match serving.await {
        Ok(Err(error)) => Err(error),
        _ => Ok(()),
    }
}

/// Completes on SIGTERM, SIGINT or (with the lifeline) end of stdin, saying which.
async fn stopped(lifeline: bool) -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT can be handled");
    let lifeline_closed = lifeline.then(|| {
        let (closed, lifeline_closed) = tokio::sync::oneshot::channel::<()>();
        // A thread of its own: a read of stdin cannot be cancelled, and main exits without
        // waiting for it.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        });
        lifeline_closed
    });
    let lifeline = async {
        match lifeline_closed {
            Some(closed) => drop(closed.await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        () = lifeline => "the lifeline closed",
    }
}

/// Takes the machine-wide lock, or says who holds it.
fn lock(path: &PathBuf) -> anyhow::Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        anyhow::bail!(
            "another process kubelet runs on this machine (pid {}; lock {})",
            holder.trim(),
            path.display()
        );
    }
    file.set_len(0)?;
    std::fs::write(path, std::process::id().to_string())?;
    Ok(file)
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}
