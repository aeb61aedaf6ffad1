//! The proxy listeners: accept connections on the plain and TLS sockets of the command line
//! and on the sockets of the snapshot's listeners, serve HTTP/1.1 and HTTP/2 on each, keep
//! every connection within its time limits, and drain them on shutdown.
//!
//! [`serve_on_threads`] runs one accept loop per worker thread, each on a single-threaded
//! runtime of its own, all on the same sockets: a connection, its requests and the upstream
//! connections they use all stay on the thread that accepted it (no work stealing, no wake-up
//! across threads; the upstream pools are per thread already). Whichever thread is free first
//! accepts the next connection, while the process holds fewer than `max_connections`.
//!
//! The snapshot's listeners ([`snapshot_sockets`]) follow configuration: their sockets are
//! opened and closed as snapshots name addresses, and every worker thread follows the set,
//! running an accept loop of its own on each socket beside the command line's. A connection
//! carries the scope of the socket it came in on ([`RouteScope`]): its requests are routed
//! only among that socket's routes. Every socket's connections are served the same way —
//! the same connection limit, timeouts, protocols, upgrades and drain.
//!
//! A plain connection's protocol is told by its first read ([`sniff`]); a TLS connection's by
//! ALPN after the handshake ([`tls`]). What each connection may take — the time to send its
//! request headers, to sit idle, to answer HTTP/2 pings — is watched by [`connection`].
//!
//! Shutdown has two phases. While the process is *leaving* ([`crate::shutdown`]), everything
//! is served as usual, except that HTTP/1.1 responses carry `Connection: close`. Then the
//! drain: accepting stops (the connections the kernel has already completed are accepted and
//! served first: closing a socket resets those still queued on it), and every connection
//! finishes the requests it has in flight, and every tunnel (WebSocket) it carries, up to a
//! deadline after which the rest are dropped. Idle keep-alive connections close at once; a new
//! connection that has not sent its first bytes yet gets the header timeout to send its
//! request, which is then served.

mod connection;
mod gate;
pub mod snapshot_sockets;
mod sniff;
pub mod tls;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tokio_util::task::TaskTracker;

use crate::{proxy::Proxy, shutdown::Leaving, table::RouteScope};
use snapshot_sockets::SocketSet;

/// Limits every proxy connection lives within. See the `weir` command line for their defaults.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    /// From a request's first byte to its last header byte (slowloris). HTTP/1.1 gets a 408.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// HTTP/2 connections are pinged this often; `None`: never.
    pub http2_keepalive_interval: Option<Duration>,
    /// A ping unanswered this long closes the HTTP/2 connection.
    pub http2_keepalive_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_streams: u32,
    /// Connections the process holds at once; beyond it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long connections may take to finish after shutdown begins.
    pub drain: Duration,
    /// Set when the process starts leaving (before the drain): HTTP/1.1 responses then carry
    /// `Connection: close`, so keep-alive clients reconnect, elsewhere, while this process
    /// still serves ([`crate::shutdown`]).
    pub leaving: Leaving,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Duration::from_secs(10),
            http2_max_streams: 250,
            max_connections: 50_000,
            drain: Duration::from_secs(30),
            leaving: Leaving::default(),
        }
    }
}

/// The sockets to serve: the command line's plain HTTP always and TLS when configured, and
/// the snapshot's listeners' as they come and go.
pub struct Listeners {
    pub plain: TcpListener,
    pub tls: Option<(TcpListener, Arc<ServerConfig>)>,
    /// The sockets of the snapshot's listeners, now and as they change
    /// ([`snapshot_sockets::SnapshotSockets::subscribe`]).
    pub snapshot_sockets: watch::Receiver<SocketSet>,
}

/// Serves `proxy` on `listeners` from `threads` worker threads until `shutdown` completes, then
/// drains for at most `settings.drain`. Returns whether everything finished within it.
pub async fn serve_on_threads(
    listeners: Listeners,
    threads: NonZeroUsize,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    settings: ListenerSettings,
) -> io::Result<bool> {
    let plain = listeners.plain.into_std()?;
    let tls = match listeners.tls {
        Some((listener, config)) => Some((listener.into_std()?, config)),
        None => None,
    };
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let (stopping, stop) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads.get());
    for index in 0..threads.get() {
        let plain = plain.try_clone()?;
        let tls = match &tls {
            Some((listener, config)) => Some((listener.try_clone()?, config.clone())),
            None => None,
        };
        let snapshot_sockets = listeners.snapshot_sockets.clone();
        let proxy = proxy.clone();
        let settings = settings.clone();
        let connections = connections.clone();
        let mut stop = stop.clone();
        let (finished, drained) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("weir-proxy-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start a proxy thread's runtime");
                        return;
                    }
                };
                let result = runtime.block_on(async move {
                    let listeners = Listeners {
                        plain: TcpListener::from_std(plain)?,
                        tls: match tls {
                            Some((listener, config)) => {
                                Some((TcpListener::from_std(listener)?, config))
                            }
                            None => None,
                        },
                        snapshot_sockets,
                    };
                    let stopped = async move {
                        let _ = stop.wait_for(|stopping| *stopping).await;
                    };
                    io::Result::Ok(serve(listeners, proxy, stopped, settings, connections).await)
                });
                match result {
                    Ok(drained) => {
                        let _ = finished.send(drained);
                    }
                    Err(error) => tracing::error!(%error, "a proxy thread cannot listen"),
                }
            })?;
        workers.push(drained);
    }
    // Every thread holds its own handles on the sockets; they close when the last lets go.
    drop((plain, tls));
    shutdown.await;
    let _ = stopping.send(true);
    let mut all_drained = true;
    for worker in workers {
        all_drained &= worker.await.unwrap_or(false);
    }
    Ok(all_drained)
}

/// Serves `proxy` on `listeners` until `shutdown` completes, then drains for at most
/// `settings.drain`. Returns whether every connection and tunnel finished within it.
pub async fn serve(
    listeners: Listeners,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    settings: ListenerSettings,
    connections: Arc<Semaphore>,
) -> bool {
    let tracker = TaskTracker::new();
    let heartbeat = tokio::spawn(heartbeat(proxy.clone()));
    let (stopping, stop) = watch::channel(false);
    let worker = Worker {
        servers: Arc::new(connection::Servers::new(&settings)),
        proxy,
        tracker: tracker.clone(),
        stop,
        connections,
    };
    // The snapshot's sockets are accepted on by tasks of their own, so this loop, the
    // command line's, is the same whether there are any or not.
    let snapshot_sockets = tokio::spawn(snapshot_sockets::follow(
        listeners.snapshot_sockets,
        worker.clone(),
    ));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            permit = worker.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listeners.plain.accept() => accepted.map(|(stream, peer)| (stream, peer, None)),
            accepted = accept_tls(&listeners.tls) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, client_address, tls) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        worker.serve_command_line_connection(stream, client_address, tls, permit);
    }
    // Closing a socket resets the connections still in its queue, which their clients count
    // as accepted: they are served instead, as far as the connection limit allows. (With
    // other threads still holding the socket, they may take some of these; the last to let
    // go closes it.)
    let queued = take_queued(listeners.plain)
        .map(|(stream, peer)| (stream, peer, None))
        .chain(listeners.tls.into_iter().flat_map(|(listener, config)| {
            take_queued(listener).map(move |(stream, peer)| (stream, peer, Some(config.clone())))
        }));
    for (stream, client_address, tls) in queued {
        let Ok(permit) = worker.connections.clone().try_acquire_owned() else {
            break;
        };
        worker.serve_command_line_connection(stream, client_address, tls, permit);
    }
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stopping.send(true);
    // It sees the stop and ends its accept loops, closing this thread's copies of the sockets.
    let _ = snapshot_sockets.await;
    tracker.close();
    let deadline = Instant::now() + settings.drain;
    let connections_done = tokio::time::timeout(settings.drain, tracker.wait())
        .await
        .is_ok();
    let tunnels = TUNNELS.with(TaskTracker::clone);
    tunnels.close();
    let tunnels_done = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        tunnels.wait(),
    )
    .await
    .is_ok();
    heartbeat.abort();
    connections_done && tunnels_done
}

/// What one proxy thread serves connections with, whichever of its sockets they come in on.
#[derive(Clone)]
struct Worker {
    /// The HTTP/1.1 and HTTP/2 servers, configured once per thread.
    servers: Arc<connection::Servers>,
    proxy: Arc<Proxy>,
    /// Every connection this thread serves, for the drain to wait on.
    tracker: TaskTracker,
    /// Becomes `true` when shutdown begins: accepting stops, connections drain.
    stop: watch::Receiver<bool>,
    /// The process's connection limit, shared by every thread and socket.
    connections: Arc<Semaphore>,
}

impl Worker {
    /// Serves a connection accepted on a socket of the command line's.
    fn serve_command_line_connection(
        &self,
        stream: TcpStream,
        client_address: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        permit: OwnedSemaphorePermit,
    ) {
        let stop = self.stop.clone();
        self.serve_connection(
            stream,
            client_address,
            tls,
            RouteScope::CommandLine,
            permit,
            stop,
        );
    }

    /// Serves an accepted connection on this thread, counted by the drain; it drains when
    /// `stop` turns `true`.
    fn serve_connection(
        &self,
        stream: TcpStream,
        client_address: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        scope: RouteScope,
        permit: OwnedSemaphorePermit,
        stop: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let connection = connection::Connection {
            servers: self.servers.clone(),
            proxy: self.proxy.clone(),
            client_address,
            tls,
            scope,
            permit,
        };
        // Boxed before it is spawned: spawning moves a future several times on its way into
        // the task, and a connection's is kilobytes; a box is moved as a pointer.
        self.tracker.spawn(Box::pin(connection.serve(stream, stop)));
    }
}

/// A timer that always expires within half a second, for the life of the proxy thread.
///
/// Tokio wakes its I/O driver — a write to an eventfd, one system call — whenever a timer is
/// set that expires before every timer already set. Each new connection sets one (its header
/// timeout, seconds away); on a thread whose connections come and go, that timer is often the
/// only one, so every connection paid a system call for it. With this timer always earlier,
/// connection timers never are.
///
/// Every [`SWEEP_TICKS`] it also closes this thread's idle upstream connections past their
/// idle timeout: otherwise only a request to the same upstream would find them expired.
async fn heartbeat(proxy: Arc<Proxy>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for tick in 0u64.. {
        ticks.tick().await;
        if tick % SWEEP_TICKS == SWEEP_TICKS - 1 {
            proxy.upstreams().sweep_idle();
        }
    }
}

/// Heartbeats between sweeps of the idle upstream connections: 10 s.
const SWEEP_TICKS: u64 = 20;

/// The connections queued on `listener` (accepted without waiting), as the socket is closed
/// behind them: this thread's copy of it is dropped once they are taken.
fn take_queued(listener: TcpListener) -> impl Iterator<Item = (TcpStream, SocketAddr)> {
    let listener = listener.into_std().ok();
    // Non-blocking, as tokio left it: `accept` fails with `WouldBlock` once the queue is empty.
    std::iter::from_fn(move || {
        let (stream, peer) = listener.as_ref()?.accept().ok()?;
        Some((stream, peer))
    })
    .filter_map(|(stream, peer)| {
        stream.set_nonblocking(true).ok()?;
        Some((TcpStream::from_std(stream).ok()?, peer))
    })
}

/// Accepts on the TLS listener, or waits forever when there is none.
async fn accept_tls(
    tls: &Option<(TcpListener, Arc<ServerConfig>)>,
) -> io::Result<(tokio::net::TcpStream, SocketAddr, Option<Arc<ServerConfig>>)> {
    match tls {
        Some((listener, config)) => {
            let (stream, peer) = listener.accept().await?;
            Ok((stream, peer, Some(config.clone())))
        }
        None => std::future::pending().await,
    }
}

thread_local! {
    /// Tunnels (upgraded connections) this proxy thread carries, for the drain to wait on.
    static TUNNELS: TaskTracker = TaskTracker::new();
}

/// Runs a tunnel on this thread, counted by the drain at shutdown.
pub fn spawn_tunnel(tunnel: impl Future<Output = ()> + Send + 'static) {
    TUNNELS.with(|tunnels| tunnels.spawn(tunnel));
}

/// Binds a listener of the command line's (proxy, TLS proxy, admin), with the address in the
/// error. With `reuse_port`, another process may bind the same address while this one still
/// listens on it (`SO_REUSEPORT`): the kernel then spreads new connections over both, so a new
/// Weir can start on the address before the old one drains.
pub fn bind(address: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    listen(address, reuse_port)
        .and_then(TcpListener::from_std)
        .map_err(|error| {
            io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
        })
}

/// Connections a socket queues before they are accepted (as tokio's own `bind`).
const LISTEN_BACKLOG: u32 = 1024;

/// A listening socket on `address`, not registered with any runtime (each thread registers its
/// own copy), with `SO_REUSEADDR` so that a restarted Weir, or a socket closed and opened
/// again, binds at once though connections of the last one linger in `TIME_WAIT`; and with
/// `SO_REUSEPORT` when asked.
pub(crate) fn listen(address: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}
