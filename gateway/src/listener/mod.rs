//! The proxy listeners: accept connections on the plain and TLS sockets, serve HTTP/1.1 and
//! HTTP/2 on each, keep every connection within its time limits, and drain them on shutdown.
//!
//! [`serve_on_threads`] runs one accept loop per worker thread, each on a single-threaded
//! runtime of its own, all on the same sockets: a connection, its requests and the upstream
//! connections they use all stay on the thread that accepted it (no work stealing, no wake-up
//! across threads; the upstream pools are per thread already). Whichever thread is free first
//! accepts the next connection, while the process holds fewer than `max_connections`.
//!
//! A plain connection's protocol is told by its first read ([`sniff`]); a TLS connection's by
//! ALPN after the handshake ([`tls`]). What each connection may take — the time to send its
//! request headers, to sit idle, to answer HTTP/2 pings — is watched by [`connection`].
//!
//! Shutdown stops accepting at once, then lets every connection finish the requests it has in
//! flight, and every tunnel (WebSocket) it carries, up to a deadline after which the rest are
//! dropped. A connection that has not sent its first bytes yet is closed at once.

mod connection;
mod gate;
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
    net::TcpListener,
    sync::{Semaphore, watch},
};
use tokio_util::task::TaskTracker;

use crate::proxy::Proxy;

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
        }
    }
}

/// The sockets to serve: plain HTTP always, TLS when configured.
pub struct Listeners {
    pub plain: TcpListener,
    pub tls: Option<(TcpListener, Arc<ServerConfig>)>,
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
    let servers = Arc::new(connection::Servers::new(&settings));
    let tracker = TaskTracker::new();
    let heartbeat = tokio::spawn(heartbeat());
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            permit = connections.clone().acquire_owned() => match permit {
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
        let _ = stream.set_nodelay(true);
        let connection = connection::Connection {
            servers: servers.clone(),
            proxy: proxy.clone(),
            client_address,
            tls,
            permit,
        };
        tracker.spawn(connection.serve(stream, stop.clone()));
    }
    drop(listeners);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stopping.send(true);
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

/// A timer that always expires within half a second, for the life of the proxy thread.
///
/// Tokio wakes its I/O driver — a write to an eventfd, one system call — whenever a timer is
/// set that expires before every timer already set. Each new connection sets one (its header
/// timeout, seconds away); on a thread whose connections come and go, that timer is often the
/// only one, so every connection paid a system call for it. With this timer always earlier,
/// connection timers never are.
async fn heartbeat() {
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
    }
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

/// Binds a listener, with the address in the error.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|error| {
        std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
    })
}
