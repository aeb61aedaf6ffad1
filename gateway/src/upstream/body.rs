//! Bodies on the upstream side: what a request sends ([`RequestBody`], any kind of body behind
//! one type, so one pool of connections serves them all) and what a response streams back
//! ([`UpstreamBody`], which gives its connection back to the pool at its end).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::{h1::Returnable, replay::ReplayBody};
use crate::balance::InFlight;

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way upstream.
///
/// The common kinds are variants, so forwarding the client's stream costs no allocation;
/// anything else is boxed ([`RequestBody::boxed`]).
#[derive(Debug)]
pub enum RequestBody {
    /// The client's own body, streamed through.
    Incoming(Incoming),
    /// The client's body, within a size limit and a limit on pauses. Boxed: it is three times
    /// the size of the other variants, and requests (moved several times on their way) should
    /// not all pay for it.
    Guarded(Box<GuardedBody>),
    /// One try's handle on a body that can be sent again (retries).
    Replay(ReplayBody<RequestBody>),
    /// A body Weir holds whole.
    Full(Full<Bytes>),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl RequestBody {
    /// An empty body.
    pub fn empty() -> Self {
        RequestBody::Full(Full::new(Bytes::new()))
    }

    /// Any body whose data is `Bytes`.
    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody::Boxed(body.map_err(Into::into).boxed_unsync())
    }
}

impl From<Incoming> for RequestBody {
    fn from(body: Incoming) -> Self {
        RequestBody::Incoming(body)
    }
}

impl From<GuardedBody> for RequestBody {
    fn from(body: GuardedBody) -> Self {
        RequestBody::Guarded(Box::new(body))
    }
}

impl From<ReplayBody<RequestBody>> for RequestBody {
    fn from(body: ReplayBody<RequestBody>) -> Self {
        RequestBody::Replay(body)
    }
}

impl From<Full<Bytes>> for RequestBody {
    fn from(body: Full<Bytes>) -> Self {
        RequestBody::Full(body)
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody::Full(Full::new(bytes))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        fn boxed<E: Into<BoxError>>(
            polled: Poll<Option<Result<Frame<Bytes>, E>>>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            polled.map(|frame| frame.map(|result| result.map_err(Into::into)))
        }
        match self.get_mut() {
            RequestBody::Incoming(body) => boxed(Pin::new(body).poll_frame(cx)),
            RequestBody::Guarded(body) => boxed(Pin::new(&mut **body).poll_frame(cx)),
            RequestBody::Replay(body) => boxed(Pin::new(body).poll_frame(cx)),
            RequestBody::Full(body) => boxed(Pin::new(body).poll_frame(cx)),
            RequestBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Guarded(body) => body.is_end_stream(),
            RequestBody::Replay(body) => body.is_end_stream(),
            RequestBody::Full(body) => body.is_end_stream(),
            RequestBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Guarded(body) => body.size_hint(),
            RequestBody::Replay(body) => body.size_hint(),
            RequestBody::Full(body) => body.size_hint(),
            RequestBody::Boxed(body) => body.size_hint(),
        }
    }
}

/// Why a request body was cut off by Weir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyLimitError {
    #[error("request body larger than the rule's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("request body stalled for longer than {0:?}")]
    Stalled(Duration),
}

/// The client's request body, held to a size limit and a limit on how long it may pause.
///
/// Each frame is counted against `max_bytes`; a pause between frames longer than `max_pause`
/// ends the body with [`BodyLimitError::Stalled`]. The timer exists only while the body is
/// waiting, so a body that arrives whole costs no timer.
#[derive(Debug)]
pub struct GuardedBody {
    inner: Incoming,
    max_bytes: Option<u64>,
    seen: u64,
    max_pause: Option<Duration>,
    pause: Option<Pin<Box<Sleep>>>,
}

impl GuardedBody {
    pub fn new(inner: Incoming, max_bytes: Option<u64>, max_pause: Option<Duration>) -> Self {
        Self {
            inner,
            max_bytes,
            seen: 0,
            max_pause,
            pause: None,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.pause = None;
                if let Some(Ok(frame)) = &frame
                    && let (Some(data), Some(limit)) = (frame.data_ref(), this.max_bytes)
                {
                    this.seen += data.remaining() as u64;
                    if this.seen > limit {
                        return Poll::Ready(Some(Err(BodyLimitError::TooLarge { limit }.into())));
                    }
                }
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some(max_pause) = this.max_pause else {
                    return Poll::Pending;
                };
                let pause = this.pause.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + max_pause))
                });
                match pause.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(BodyLimitError::Stalled(max_pause).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream response body; gives its connection back to the pool once read to its end.
///
/// It may also hold the request's place in its endpoint's in-flight count
/// ([`UpstreamBody::hold`]), so a streaming response counts as load until it ends.
#[derive(Debug)]
pub struct UpstreamBody {
    body: Incoming,
    connection: Option<Returnable>,
    in_flight: Option<InFlight>,
}

impl UpstreamBody {
    pub(super) fn new(body: Incoming, connection: Option<Returnable>) -> Self {
        Self {
            body,
            connection,
            in_flight: None,
        }
    }

    /// Keeps `in_flight` until the body has ended (or is dropped).
    pub fn hold(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    fn give_back(&mut self) {
        self.in_flight = None;
        if let Some(connection) = self.connection.take() {
            connection.give_back();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            None => self.give_back(),
            Some(Ok(_)) if self.body.is_end_stream() => self.give_back(),
            Some(Err(_)) => {
                self.connection = None;
                self.in_flight = None;
            }
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A server stops polling a body that says it has ended; the connection is free then.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}
