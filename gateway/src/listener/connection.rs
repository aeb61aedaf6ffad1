//! One client connection, from accept to close: telling its protocol (or running its TLS
//! handshake), serving it with hyper, and keeping it within its limits.
//!
//! A watchdog per connection ([`watchdog`]) looks, a few times per limit, at three counters:
//! bytes read from the client, requests started and responses finished. From them it tells
//! - **idle**: no request in flight and no byte of a new one for `idle_timeout` — the
//!   connection is closed (HTTP/2: GOAWAY first);
//! - **slow headers**: bytes of a new HTTP/1.1 request arrived but its headers are not complete
//!   after `header_timeout` — the client gets `408 Request Timeout` (on plain connections;
//!   inside TLS the connection is closed) and the connection is closed.
//!
//! A connection that sends nothing at all is closed after `header_timeout`, before any
//! protocol is chosen. HTTP/2 connections are also pinged by hyper
//! (`http2_keepalive_interval`), so a peer that vanished is noticed.
//!
//! The counters cost a request three relaxed atomic adds; the per-connection context that
//! holds them is the one the request already clones.

use std::{
    convert::Infallible,
    future::Future,
    io::Write,
    net::SocketAddr,
    os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd},
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header::CONNECTION};
use hyper::{
    Request,
    body::{Body, Frame, Incoming, SizeHint},
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, watch},
    time::Instant,
};
use tokio_rustls::TlsAcceptor;

use super::{
    ListenerSettings,
    gate::Gated,
    sniff::{ClientStream, FIRST_READ, sniff},
};
use crate::{
    proxy::{Peer, Proxy, ProxyBody},
    shutdown::Leaving,
    table::RouteScope,
};

/// The HTTP/1.1 and HTTP/2 servers, configured once per thread.
pub(super) struct Servers {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    settings: ListenerSettings,
}

impl Servers {
    pub(super) fn new(settings: &ListenerSettings) -> Self {
        let mut http1 = http1::Builder::new();
        // The watchdog owns the header timeout: hyper's would also cut idle keep-alive
        // connections and never answer 408.
        http1.header_read_timeout(None);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(settings.http2_keepalive_interval)
            .keep_alive_timeout(settings.http2_keepalive_timeout)
            .max_concurrent_streams(settings.http2_max_streams)
            .enable_connect_protocol();
        Self {
            http1,
            http2,
            settings: settings.clone(),
        }
    }
}

/// One accepted connection.
pub(super) struct Connection {
    pub servers: Arc<Servers>,
    pub proxy: Arc<Proxy>,
    pub client_address: SocketAddr,
    /// The TLS configuration of the socket it came in on, if that is a TLS socket.
    pub tls: Option<Arc<ServerConfig>>,
    /// The routes its requests are matched among: those of the socket it came in on.
    pub scope: RouteScope,
    /// Held for the connection's life: the process's connection limit.
    pub permit: OwnedSemaphorePermit,
}

/// What a connection's counters say, shared by its stream, its requests and its watchdog.
struct ConnContext {
    proxy: Arc<Proxy>,
    peer: Peer,
    scope: RouteScope,
    bytes_read: Arc<AtomicU64>,
    /// HTTP/1.1 only: once set, each response closes its connection (HTTP/2 connections get
    /// their GOAWAY when the drain begins).
    close_when_leaving: Option<Leaving>,
    requests_started: AtomicU64,
    responses_finished: AtomicU64,
}

impl Connection {
    pub(super) async fn serve(self, mut stream: TcpStream, stop: watch::Receiver<bool>) {
        let client_address = self.client_address;
        let header_timeout = self.servers.settings.header_timeout;
        let bytes_read = Arc::new(AtomicU64::new(0));
        let raw_fd = stream.as_raw_fd();
        match self.tls.clone() {
            None => {
                let mut first = BytesMut::with_capacity(FIRST_READ);
                // Not cut short by shutdown: the client of a connection accepted has sent, or
                // is sending, a request, which is served (and the connection then closed).
                let sniffed =
                    tokio::time::timeout(header_timeout, sniff(&mut stream, &mut first)).await;
                let http2 = match sniffed {
                    Ok(Ok(Some(http2))) => http2,
                    Ok(Ok(None)) => return,
                    Ok(Err(error)) => {
                        tracing::debug!(%client_address, %error, "connection ended before a request");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%client_address, "no request within the header timeout; closed");
                        return;
                    }
                };
                bytes_read.store(first.len() as u64, Ordering::Relaxed);
                let io = ClientStream {
                    prefix: first.freeze(),
                    stream,
                    bytes_read: bytes_read.clone(),
                };
                self.serve_http(io, http2, false, bytes_read, Some(raw_fd), stop)
                    .await;
            }
            // Boxed: a TLS connection's state is several times a plain one's, and every
            // connection's task would otherwise be that large (and copied that much).
            Some(config) => {
                Box::pin(self.serve_tls(config, stream, bytes_read, stop)).await;
            }
        }
    }

    /// Runs the TLS handshake (within the header timeout), then serves HTTP inside it.
    async fn serve_tls(
        self,
        config: Arc<ServerConfig>,
        stream: TcpStream,
        bytes_read: Arc<AtomicU64>,
        stop: watch::Receiver<bool>,
    ) {
        let client_address = self.client_address;
        let header_timeout = self.servers.settings.header_timeout;
        let io = ClientStream {
            prefix: Bytes::new(),
            stream,
            bytes_read: bytes_read.clone(),
        };
        // As for a plain connection, shutdown does not cut the handshake short.
        let handshake =
            tokio::time::timeout(header_timeout, TlsAcceptor::from(config).accept(io)).await;
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%client_address, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%client_address, "TLS handshake not done within the header timeout; closed");
                return;
            }
        };
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        self.serve_http(stream, http2, true, bytes_read, None, stop)
            .await;
    }

    /// Serves HTTP on `io` until the client leaves, the watchdog closes the connection, or
    /// shutdown has drained it. `raw_fd` is the plain socket, for a 408 after hyper let go.
    async fn serve_http<I>(
        self,
        io: I,
        http2: bool,
        secure: bool,
        bytes_read: Arc<AtomicU64>,
        raw_fd: Option<RawFd>,
        stop: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let client_address = self.client_address;
        // One allocation per connection, so that a request costs one reference count.
        let context = Arc::new(ConnContext {
            proxy: self.proxy,
            peer: Peer::new(client_address, secure),
            scope: self.scope,
            bytes_read,
            close_when_leaving: (!http2).then(|| self.servers.settings.leaving.clone()),
            requests_started: AtomicU64::new(0),
            responses_finished: AtomicU64::new(0),
        });
        let watched = context.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let context = context.clone();
            async move {
                context.requests_started.fetch_add(1, Ordering::Relaxed);
                let mut response = context
                    .proxy
                    .handle(request, &context.peer, &context.scope)
                    .await;
                if let Some(leaving) = &context.close_when_leaving
                    && leaving.has_begun()
                    && response.status() != StatusCode::SWITCHING_PROTOCOLS
                {
                    // hyper closes the connection once this response is written.
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response.map(|inner| TrackedBody { inner, context }))
            }
        });
        let settings = &self.servers.settings;
        let io = TokioIo::new(io);
        let ended = if http2 {
            // Boxed, as TLS is: HTTP/2's connection state is much larger than HTTP/1.1's.
            let connection = self.servers.http2.serve_connection(io, service);
            Box::pin(drive(connection, &watched, settings, false, raw_fd, stop)).await
        } else {
            let connection = self
                .servers
                .http1
                .serve_connection(io, service)
                .with_upgrades();
            drive(connection, &watched, settings, true, raw_fd, stop).await
        };
        match ended {
            Ended::Closed(Ok(())) => {}
            Ended::Closed(Err(error)) => {
                tracing::debug!(%client_address, %error, "connection ended with an error");
            }
            Ended::HeaderTimeout(socket) => {
                tracing::info!(%client_address, timeout = ?settings.header_timeout, "request headers not complete in time; closed");
                if let Some(socket) = socket {
                    answer_request_timeout(socket);
                }
            }
        }
        drop(self.permit);
    }
}

/// How a connection ended.
enum Ended {
    Closed(Result<(), hyper::Error>),
    /// Slow headers; the socket still open (a duplicate of it) if a 408 can be written.
    HeaderTimeout(Option<OwnedFd>),
}

/// A hyper connection that can be asked to finish what it is doing and close.
trait GracefulConnection: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

impl<I, S, B> GracefulConnection for http2::Connection<I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self)
    }
}

/// Drives `connection` to its end, shutting it down gracefully on `stop` or when idle, and
/// cutting it off when request headers are too slow.
async fn drive(
    connection: impl GracefulConnection,
    context: &ConnContext,
    settings: &ListenerSettings,
    http1: bool,
    raw_fd: Option<RawFd>,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let mut connection = pin!(connection);
    let mut watchdog = pin!(watchdog(context, settings, http1));
    // Shutdown and the watchdog, gated: polled only when their own channel or timer fires,
    // not at every wake-up of the connection (several per request).
    let first = {
        // Shutdown and the watchdog, gated: polled only when their own channel or timer
        // fires, not at every wake-up of the connection (several per request).
        let mut events = pin!(Gated::new(async {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopping| *stopping) => Event::Stop,
                expired = watchdog.as_mut() => Event::Expired(expired),
            }
        }));
        tokio::select! {
            // The connection first: it is what wakes the task nearly every time.
            biased;
            result = connection.as_mut() => return Ended::Closed(result),
            event = events.as_mut() => event,
        }
    };
    let expired = match first {
        Event::Expired(expired) => expired,
        Event::Stop => {
            connection.as_mut().graceful_shutdown();
            // Draining: the watchdog still closes a connection that stalls.
            let mut watchdog = pin!(Gated::new(watchdog.as_mut()));
            tokio::select! {
                biased;
                result = connection.as_mut() => return Ended::Closed(result),
                expired = watchdog.as_mut() => expired,
            }
        }
    };
    match expired {
        // Idle: let hyper close it (HTTP/2: GOAWAY), then it ends on its own.
        Expired::Idle => {
            connection.as_mut().graceful_shutdown();
            Ended::Closed(connection.await)
        }
        Expired::HeaderTimeout => {
            // A duplicate keeps the socket open once hyper's stream is dropped.
            let socket = raw_fd.and_then(|fd| {
                // SAFETY: `fd` is the connection's socket, open while `connection`
                // (which owns it) is alive, as it is here.
                unsafe { BorrowedFd::borrow_raw(fd) }
                    .try_clone_to_owned()
                    .ok()
            });
            Ended::HeaderTimeout(socket)
        }
    }
}

/// What the gated side of a connection reports.
enum Event {
    Stop,
    Expired(Expired),
}

/// Why the watchdog fired.
enum Expired {
    Idle,
    HeaderTimeout,
}

/// Watches a connection's counters; completes when it has been idle for the idle timeout, or
/// (HTTP/1.1) when a request's headers have taken longer than the header timeout.
async fn watchdog(context: &ConnContext, settings: &ListenerSettings, http1: bool) -> Expired {
    let tick = (settings.header_timeout.min(settings.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    // One timer, reset after each look (an `Interval` would box its own). The first look is
    // a tick from now, not at once: a timer due at once is earlier than any other, and
    // setting one costs a wake-up of the I/O driver (a system call) per connection.
    let ticks = tokio::time::sleep(tick);
    let mut ticks = pin!(ticks);
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    // Since when nothing has been in flight, and the counters then.
    let mut waiting_since = Instant::now();
    let mut started_then = 0;
    // Bytes read when waiting began: the connection's first bytes count as a request's.
    let mut bytes_then = 0;
    let mut partial_since: Option<Instant> = None;
    loop {
        ticks.as_mut().await;
        let now = Instant::now();
        ticks.as_mut().reset(now + tick);
        let started = load(&context.requests_started);
        if started != load(&context.responses_finished) || started != started_then {
            // Busy, or a request came and went since the last look: start over.
            waiting_since = now;
            started_then = started;
            bytes_then = load(&context.bytes_read);
            partial_since = None;
            continue;
        }
        if http1 && load(&context.bytes_read) > bytes_then {
            let since = *partial_since.get_or_insert(now);
            if now.duration_since(since) >= settings.header_timeout {
                return Expired::HeaderTimeout;
            }
        } else if now.duration_since(waiting_since) >= settings.idle_timeout {
            return Expired::Idle;
        }
    }
}

/// Writes `408 Request Timeout` on a socket hyper has let go of, and closes it.
fn answer_request_timeout(socket: OwnedFd) {
    const BODY: &str = "weir: request headers not received in time\n";
    let response = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut socket = std::net::TcpStream::from(socket);
    // The socket is non-blocking and its buffer empty: a response this small fits.
    let _ = socket.write_all(response.as_bytes());
    let _ = socket.shutdown(std::net::Shutdown::Write);
}

/// A response body that counts its response as finished when hyper is done with it.
struct TrackedBody {
    inner: ProxyBody,
    context: Arc<ConnContext>,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.context
            .responses_finished
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
