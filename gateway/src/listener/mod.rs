//! The proxy listener: accepts connections, serves HTTP/1.1 and h2c on each, and drains them
//! on shutdown.
//!
//! A connection's protocol is told by its first read ([`sniff`]): the HTTP/2 preface, or
//! anything else for HTTP/1.1. That read is a whole buffer, usually the whole first request,
//! and it goes to the protocol's server first, so telling costs no extra system call.
//!
//! [`serve_on_threads`] runs one accept loop per worker thread, each on a single-threaded
//! runtime of its own, all on the one listening socket: a connection, its requests and the
//! upstream connections they use all stay on the thread that accepted it (no work stealing,
//! no wake-up across threads; the upstream pool is per thread already). Whichever thread is
//! free first accepts the next connection.
//!
//! Shutdown stops accepting at once, then lets every connection finish the requests it has in
//! flight (hyper's graceful shutdown closes idle keep-alive connections and answers nothing
//! new), up to a deadline after which the rest are dropped. A connection that has not sent
//! its first bytes yet is closed at once.

mod sniff;

use std::{future::Future, io, net::SocketAddr, num::NonZeroUsize, sync::Arc, time::Duration};

use bytes::BytesMut;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::graceful::{GracefulShutdown, Watcher},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::proxy::{Peer, Proxy};
use sniff::{FIRST_READ, Prefixed, sniff};

/// Serves `proxy` on `listener` from `threads` worker threads until `shutdown` completes, then
/// drains for at most `drain`. Returns whether every connection finished within the deadline.
pub async fn serve_on_threads(
    listener: TcpListener,
    threads: NonZeroUsize,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<bool> {
    let listener = listener.into_std()?;
    let (stopping, stop) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads.get());
    for index in 0..threads.get() {
        let listener = listener.try_clone()?;
        let proxy = proxy.clone();
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
                    let listener = TcpListener::from_std(listener)?;
                    let stopped = async move {
                        let _ = stop.wait_for(|stopping| *stopping).await;
                    };
                    io::Result::Ok(serve(listener, proxy, stopped, drain).await)
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
    // Every thread holds its own handle on the socket; it closes when the last one lets go.
    drop(listener);
    shutdown.await;
    let _ = stopping.send(true);
    let mut all_drained = true;
    for worker in workers {
        all_drained &= worker.await.unwrap_or(false);
    }
    Ok(all_drained)
}

/// Serves `proxy` on `listener` until `shutdown` completes, then drains for at most `drain`.
/// Returns whether every connection finished within the deadline.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> bool {
    let protocols = Arc::new(Protocols {
        http1: hyper::server::conn::http1::Builder::new(),
        http2: hyper::server::conn::http2::Builder::new(TokioExecutor::new()),
    });
    let graceful = GracefulShutdown::new();
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, client_address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Watched from accept on, so a shutdown during the first read is not missed.
        let watcher = graceful.watcher();
        let connection = Connection {
            protocols: protocols.clone(),
            proxy: proxy.clone(),
            client_address,
        };
        let stop = stop.clone();
        tokio::spawn(connection.serve(stream, watcher, stop));
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stopping.send(true);
    tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_ok()
}

/// The HTTP/1.1 and HTTP/2 servers, configured once.
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// One accepted connection.
struct Connection {
    protocols: Arc<Protocols>,
    proxy: Arc<Proxy>,
    client_address: SocketAddr,
}

impl Connection {
    async fn serve(self, mut stream: TcpStream, watcher: Watcher, mut stop: watch::Receiver<bool>) {
        let client_address = self.client_address;
        let mut first = BytesMut::with_capacity(FIRST_READ);
        let http2 = tokio::select! {
            sniffed = sniff(&mut stream, &mut first) => match sniffed {
                Ok(Some(http2)) => http2,
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%client_address, %error, "connection ended before a request");
                    return;
                }
            },
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        drop(stop);
        let io = TokioIo::new(Prefixed {
            prefix: first.freeze(),
            stream,
        });
        // One allocation per connection, so that a request costs one reference count.
        let context = Arc::new((self.proxy, Peer::new(client_address)));
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            let context = context.clone();
            async move {
                let (proxy, peer) = &*context;
                Ok::<_, std::convert::Infallible>(proxy.handle(request, peer).await)
            }
        });
        let result = if http2 {
            watcher
                .watch(self.protocols.http2.serve_connection(io, service))
                .await
        } else {
            watcher
                .watch(self.protocols.http1.serve_connection(io, service))
                .await
        };
        if let Err(error) = result {
            tracing::debug!(%client_address, %error, "connection ended with an error");
        }
    }
}

/// Binds a listener, with the address in the error.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|error| {
        std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
    })
}
