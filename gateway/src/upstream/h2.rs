//! HTTP/2 to upstreams: one multiplexed connection per target and worker thread.
//!
//! Requests share the thread's connection to their target, as many at once as the upstream's
//! stream limit allows (hyper queues the rest). A connection that has closed, or went away
//! (GOAWAY), is replaced on the next request. HTTP/2 keep-alive pings find a dead upstream
//! connection that TCP alone would keep believing in.

use std::{cell::RefCell, collections::HashMap, time::Duration};

use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{
    PoolSettings, RequestBody, SendError, Target, TargetKey, UpstreamBody, UpstreamError, connect,
};

type Sender = http2::SendRequest<RequestBody>;

/// How often an idle upstream HTTP/2 connection is pinged, and how long a ping may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    static CONNECTIONS: RefCell<HashMap<TargetKey, Sender, foldhash::fast::RandomState>> =
        RefCell::default();
}

/// Sends `request` (absolute URI, HTTP/2) over the thread's connection to `target`; gives it
/// back with the error when a connection cannot be opened, or was not ready for it.
pub(super) async fn send(
    settings: &PoolSettings,
    target: &Target,
    request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, SendError> {
    let pooled = CONNECTIONS.with(|connections| {
        let mut connections = connections.borrow_mut();
        match connections.get(target.key()) {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                connections.remove(target.key());
                None
            }
            None => None,
        }
    });
    let mut sender = match pooled {
        Some(sender) => sender,
        None => {
            // Boxed, as for HTTP/1.1: opening is rare, and its state is large.
            let sender = match Box::pin(open(target, settings)).await {
                Ok(sender) => sender,
                Err(error) => return Err(SendError::unsent(error, request)),
            };
            CONNECTIONS.with(|connections| {
                connections
                    .borrow_mut()
                    .insert(target.key().clone(), sender.clone())
            });
            sender
        }
    };
    match sender.try_send_request(request).await {
        Ok(response) => Ok(response.map(|body| UpstreamBody::new(body, None))),
        Err(error) => Err(error.into()),
    }
}

async fn open(target: &Target, settings: &PoolSettings) -> Result<Sender, UpstreamError> {
    let stream = connect(target, settings).await?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .handshake(TokioIo::new(stream))
        .await?;
    let address = target.address().clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(upstream = %address, %error, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}
