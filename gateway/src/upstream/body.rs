//! Bodies on the upstream side: what a request sends ([`RequestBody`], any kind of body behind
//! one type, so one pool of connections serves them all) and what a response streams back
//! ([`UpstreamBody`], which gives its connection back to the pool at its end).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::{h1::Returnable, replay::ReplayBody};

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
    /// A body that can be sent again (retries).
    Replay(ReplayBody<Incoming>),
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

impl From<ReplayBody<Incoming>> for RequestBody {
    fn from(body: ReplayBody<Incoming>) -> Self {
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
            RequestBody::Replay(body) => boxed(Pin::new(body).poll_frame(cx)),
            RequestBody::Full(body) => boxed(Pin::new(body).poll_frame(cx)),
            RequestBody::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(body) => body.is_end_stream(),
            RequestBody::Replay(body) => body.is_end_stream(),
            RequestBody::Full(body) => body.is_end_stream(),
            RequestBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Incoming(body) => body.size_hint(),
            RequestBody::Replay(body) => body.size_hint(),
            RequestBody::Full(body) => body.size_hint(),
            RequestBody::Boxed(body) => body.size_hint(),
        }
    }
}

/// An upstream response body; gives its connection back to the pool once read to its end.
#[derive(Debug)]
pub struct UpstreamBody {
    body: Incoming,
    connection: Option<Returnable>,
}

impl UpstreamBody {
    pub(super) fn new(body: Incoming, connection: Option<Returnable>) -> Self {
        Self { body, connection }
    }

    fn give_back(&mut self) {
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
            Some(Err(_)) => self.connection = None,
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
