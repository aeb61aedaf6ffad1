//! HTTP/1.1 to upstreams over keep-alive TCP connections, pooled per worker thread.
//!
//! A request takes an idle connection to its target from the pool of the thread it runs on
//! (thread-local, so no lock), or opens a new one. The response body gives the connection back
//! once it has been read to its end, on whichever thread that happens; a body dropped halfway
//! closes its connection instead, since the rest of that response would still be on the wire.
//! A pooled connection the upstream has closed is skipped, and a request that finds its
//! pooled connection closed before a byte of it was sent is tried on the next one.
//!
//! Idle connections are dropped after [`PoolSettings::idle_timeout`], checked when a request
//! looks for a connection, in a sweep every [`SWEEP_EVERY`] returns, and in the sweep the
//! proxy thread runs on a timer ([`sweep_idle`]), so that connections no request comes for
//! any more (an endpoint that left, a quiet night) close too; an upstream that closes idle
//! connections first (most do) frees them itself, since each connection's task sees the close.
//!
//! Invariant: a connection in the pool has no exchange in progress.

use std::{
    cell::RefCell,
    collections::HashMap,
    time::{Duration, Instant},
};

use http::{Request, Response};
use hyper::{body::Incoming, client::conn::http1};
use hyper_util::rt::TokioIo;

use super::{
    PoolSettings, RequestBody, SendError, Target, TargetKey, UpstreamBody, UpstreamError, connect,
};

/// How many returns a thread's pool takes between sweeps for expired connections.
pub const SWEEP_EVERY: u32 = 1024;

type Sender = http1::SendRequest<RequestBody>;

/// Sends `request` over a pooled or new connection to `target`; gives it back with the error
/// when the new connection cannot be opened, or closes before the request is written.
pub(super) async fn send(
    settings: &PoolSettings,
    target: &Target,
    mut request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, SendError> {
    while let Some(mut sender) = checkout(target.key(), settings.idle_timeout) {
        // Waits for the end of the connection's previous exchange, or learns it closed.
        if sender.ready().await.is_err() {
            continue;
        }
        match sender.try_send_request(request).await {
            Ok(response) => return Ok(pooled(response, sender, target, *settings)),
            Err(mut error) => match error.take_message() {
                // Never sent: the connection closed under it. Try the next one.
                Some(unsent) => request = unsent,
                None => return Err(error.into_error().into()),
            },
        }
    }
    // Boxed: opening is rare beside reusing, and its state would otherwise make every
    // request's future (moved whole at each await above it) over a kilobyte larger.
    let mut sender = match Box::pin(open(target, settings)).await {
        Ok(sender) => sender,
        Err(error) => return Err(SendError::unsent(error, request)),
    };
    match sender.try_send_request(request).await {
        Ok(response) => Ok(pooled(response, sender, target, *settings)),
        Err(error) => Err(error.into()),
    }
}

async fn open(target: &Target, settings: &PoolSettings) -> Result<Sender, UpstreamError> {
    let stream = connect(target, settings).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    let address = target.address().clone();
    tokio::spawn(async move {
        // With upgrades, a 101 hands the connection over to the tunnel instead of closing it.
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(upstream = %address, %error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

fn pooled(
    response: Response<Incoming>,
    sender: Sender,
    target: &Target,
    settings: PoolSettings,
) -> Response<UpstreamBody> {
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        // The connection now belongs to the upgrade; it never goes back to the pool.
        return response.map(|body| UpstreamBody::new(body, None));
    }
    let connection = Returnable {
        sender,
        key: target.key().clone(),
        settings,
    };
    response.map(|body| UpstreamBody::new(body, Some(connection)))
}

/// A connection whose exchange is in progress, to be given back once it has ended.
#[derive(Debug)]
pub(super) struct Returnable {
    sender: Sender,
    key: TargetKey,
    settings: PoolSettings,
}

impl Returnable {
    pub(super) fn give_back(self) {
        give_back(self)
    }
}

/// One thread's idle connections.
#[derive(Default)]
struct IdleConnections {
    by_target: HashMap<TargetKey, Vec<Idle>, foldhash::fast::RandomState>,
    returns_since_sweep: u32,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant, idle_timeout: Duration) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < idle_timeout
    }
}

impl IdleConnections {
    /// Drops the connections no longer usable, and the targets left without any.
    fn sweep(&mut self, now: Instant, idle_timeout: Duration) {
        self.returns_since_sweep = 0;
        self.by_target.retain(|_, connections| {
            connections.retain(|c| c.usable(now, idle_timeout));
            !connections.is_empty()
        });
    }
}

thread_local! {
    static IDLE: RefCell<IdleConnections> = RefCell::default();
}

/// The most recently used idle connection to `target` on this thread, if any is usable.
fn checkout(target: &TargetKey, idle_timeout: Duration) -> Option<Sender> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let connections = idle.by_target.get_mut(target)?;
        let now = Instant::now();
        while let Some(connection) = connections.pop() {
            if connection.usable(now, idle_timeout) {
                return Some(connection.sender);
            }
        }
        None
    })
}

fn give_back(connection: Returnable) {
    if connection.sender.is_closed() {
        return;
    }
    let now = Instant::now();
    let settings = connection.settings;
    // A thread that is exiting has no pool left; the connection just closes.
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        idle.returns_since_sweep += 1;
        if idle.returns_since_sweep >= SWEEP_EVERY {
            idle.sweep(now, settings.idle_timeout);
        }
        let connections = idle.by_target.entry(connection.key).or_default();
        if connections.len() < settings.max_idle_per_target {
            connections.push(Idle {
                sender: connection.sender,
                since: now,
            });
        }
    });
}

/// Closes this thread's idle connections older than `idle_timeout`, or closed by their upstream.
pub(super) fn sweep_idle(idle_timeout: Duration) {
    let _ = IDLE.try_with(|idle| idle.borrow_mut().sweep(Instant::now(), idle_timeout));
}

/// Idle connections this thread holds to `target` (for tests).
#[cfg(test)]
fn idle_count(target: &Target) -> usize {
    IDLE.with(|idle| {
        idle.borrow()
            .by_target
            .get(target.key())
            .map_or(0, Vec::len)
    })
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use tokio::net::{TcpListener, TcpStream};
    use weir_contract::Protocol;

    use super::*;
    use crate::upstream::Upstreams;

    /// A backend answering `hello` and counting the connections it accepted.
    async fn backend() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|_request| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (address, accepted)
    }

    /// A request whose body is an `Incoming`, as the proxy forwards: sent through a loopback
    /// hyper server that hands over what it received.
    async fn get(upstreams: &Upstreams, endpoint: &Target) -> Result<String, UpstreamError> {
        let response = upstreams.send(endpoint, incoming_request().await).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn incoming_request() -> Request<Incoming> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (sent, received) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let sent = std::sync::Mutex::new(Some(sent));
            let service = service_fn(move |request: Request<Incoming>| {
                let (mut parts, body) = request.into_parts();
                parts.uri = "/".parse().unwrap();
                if let Some(sent) = sent.lock().unwrap().take() {
                    let _ = sent.send(Request::from_parts(parts, body));
                }
                async { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new()))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let stream = TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .uri("/")
            .header("host", "test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        tokio::spawn(async move { sender.send_request(request).await });
        received.await.unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_is_reused_once_its_response_has_been_read() {
        let (address, accepted) = backend().await;
        let endpoint = &Target::socket(address, Protocol::Http1);
        let upstreams = Upstreams::default();
        for _ in 0..3 {
            assert_eq!(get(&upstreams, endpoint).await.unwrap(), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(idle_count(endpoint), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_response_dropped_unread_closes_its_connection() {
        let (address, accepted) = backend().await;
        let endpoint = &Target::socket(address, Protocol::Http1);
        let upstreams = Upstreams::default();
        let response = upstreams
            .send(endpoint, incoming_request().await)
            .await
            .unwrap();
        drop(response);
        assert_eq!(idle_count(endpoint), 0);
        assert_eq!(get(&upstreams, endpoint).await.unwrap(), "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_expired_idle_connection_is_not_reused() {
        let (address, accepted) = backend().await;
        let endpoint = &Target::socket(address, Protocol::Http1);
        let upstreams = Upstreams::new(PoolSettings {
            idle_timeout: Duration::from_millis(20),
            ..PoolSettings::default()
        });
        get(&upstreams, endpoint).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        get(&upstreams, endpoint).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_timed_sweep_closes_idle_connections_no_request_comes_for() {
        let (address, _) = backend().await;
        let endpoint = &Target::socket(address, Protocol::Http1);
        let upstreams = Upstreams::new(PoolSettings {
            idle_timeout: Duration::from_millis(50),
            ..PoolSettings::default()
        });
        get(&upstreams, endpoint).await.unwrap();
        assert_eq!(idle_count(endpoint), 1);
        upstreams.sweep_idle();
        assert_eq!(idle_count(endpoint), 1, "not yet past its idle timeout");
        // The idle period itself, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(80)).await;
        upstreams.sweep_idle();
        assert_eq!(idle_count(endpoint), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_is_a_connect_error() {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let endpoint = &Target::socket(address, Protocol::Http1);
        let error = get(&Upstreams::default(), endpoint).await.unwrap_err();
        assert!(error.is_connect(), "{error}");
    }
}
