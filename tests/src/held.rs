//! A backend that holds every request until the test releases it.
//!
//! A slow echo (`?delay_ms=`) cannot tell a test *when* a request has reached it; this one
//! can, so a test can act while a request is certainly in flight (send SIGTERM, say) and
//! then let it finish, with no guessing about timing.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};

/// The body every held request is finally answered with.
pub const HELD_BODY: &str = "released";

/// A loopback HTTP/1.1 backend whose answers wait for [`HeldBackend::release`].
pub struct HeldBackend {
    address: SocketAddr,
    arrivals: mpsc::UnboundedReceiver<String>,
    released: watch::Sender<bool>,
}

impl HeldBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (arrived, arrivals) = mpsc::unbounded_channel();
        let (released, release) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (arrived, release) = (arrived.clone(), release.clone());
                let service = service_fn(move |request: http::Request<_>| {
                    let (arrived, mut release) = (arrived.clone(), release.clone());
                    async move {
                        let _ = arrived.send(request.uri().path().to_owned());
                        let _ = release.wait_for(|released| *released).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(HELD_BODY))))
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self {
            address,
            arrivals,
            released,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Waits for the next request to arrive and returns its path.
    pub async fn next_arrival(&mut self, within: Duration) -> String {
        tokio::time::timeout(within, self.arrivals.recv())
            .await
            .unwrap_or_else(|_| panic!("no request reached the held backend within {within:?}"))
            .expect("the backend runs as long as the test")
    }

    /// Lets every held request, and every later one, be answered.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}
