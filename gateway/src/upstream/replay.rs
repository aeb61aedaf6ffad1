//! A request body that can be sent again, for retries.
//!
//! [`ReplayBody`] streams its inner body through while recording what passed, up to a limit.
//! [`ReplayBody::try_clone`] gives a handle that first replays the recorded bytes, then goes on
//! reading the inner body where the last reader stopped — so a retry after a try that sent
//! half the body (or none of it) sends exactly the same bytes, without the body having been
//! buffered before the first try began. Once more than the limit has passed, the record is
//! dropped and no new handle can be made: the body streams on, but can no longer be replayed.
//!
//! Handles are meant to be polled one at a time — a retry starts after the try before it has
//! failed — which is what keeps this simple: whichever handle is caught up reads the inner body.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use super::body::BoxError;

/// A body that records what it streams so that it can be sent again.
#[derive(Debug)]
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// How many data frames this handle has yielded.
    position: usize,
    trailers_yielded: bool,
}

#[derive(Debug)]
struct Shared<B> {
    inner: B,
    /// Every data frame read from `inner`, while it fits in `limit`.
    recorded: Vec<Bytes>,
    recorded_len: usize,
    /// Data frames read from `inner` so far.
    frames_read: usize,
    trailers: Option<HeaderMap>,
    inner_ended: bool,
    /// More than `limit` bytes passed (or the inner body failed): nothing can be replayed.
    spoiled: bool,
    limit: usize,
    size_hint: SizeHint,
}

/// The error of a handle that fell behind a record that was dropped.
#[derive(Debug, thiserror::Error)]
#[error("request body can no longer be replayed: it went past the {limit}-byte replay limit")]
pub struct ReplayLimitExceeded {
    limit: usize,
}

impl<B: Body> ReplayBody<B> {
    /// Records up to `limit` bytes of `inner`. A body known to be longer is not recorded at all.
    pub fn new(inner: B, limit: usize) -> Self {
        let size_hint = inner.size_hint();
        let too_long = size_hint.lower() > limit as u64;
        Self {
            shared: Arc::new(Mutex::new(Shared {
                inner,
                recorded: Vec::new(),
                recorded_len: 0,
                frames_read: 0,
                trailers: None,
                inner_ended: false,
                spoiled: too_long,
                limit,
                size_hint,
            })),
            position: 0,
            trailers_yielded: false,
        }
    }

    /// A handle that sends the body again from its start; `None` once it cannot be replayed.
    pub fn try_clone(&self) -> Option<Self> {
        let shared = lock(&self.shared);
        if shared.spoiled {
            return None;
        }
        drop(shared);
        Some(Self {
            shared: self.shared.clone(),
            position: 0,
            trailers_yielded: false,
        })
    }

    /// Whether [`ReplayBody::try_clone`] would give a handle.
    pub fn can_replay(&self) -> bool {
        !lock(&self.shared).spoiled
    }
}

fn lock<B>(shared: &Mutex<Shared<B>>) -> std::sync::MutexGuard<'_, Shared<B>> {
    // Every critical section leaves the record consistent, so poisoning is ignored.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut shared = lock(&this.shared);
        // Replay what was recorded, then read on where the record ends.
        if this.position < shared.frames_read {
            let Some(chunk) = shared.recorded.get(this.position).cloned() else {
                return Poll::Ready(Some(Err(ReplayLimitExceeded {
                    limit: shared.limit,
                }
                .into())));
            };
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if shared.inner_ended {
            if !this.trailers_yielded
                && let Some(trailers) = shared.trailers.clone()
            {
                this.trailers_yielded = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        let frame = match std::task::ready!(Pin::new(&mut shared.inner).poll_frame(cx)) {
            None => {
                shared.inner_ended = true;
                return Poll::Ready(None);
            }
            Some(Err(error)) => {
                shared.spoiled = true;
                shared.recorded = Vec::new();
                return Poll::Ready(Some(Err(error.into())));
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let data = data.copy_to_bytes(data.remaining());
                shared.frames_read += 1;
                this.position += 1;
                if !shared.spoiled {
                    if shared.recorded_len + data.len() > shared.limit {
                        shared.spoiled = true;
                        shared.recorded = Vec::new();
                    } else {
                        shared.recorded_len += data.len();
                        shared.recorded.push(data.clone());
                    }
                }
                Frame::data(data)
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    shared.trailers = Some(trailers.clone());
                    shared.inner_ended = true;
                    this.trailers_yielded = true;
                    Frame::trailers(trailers)
                }
                // Neither data nor trailers: nothing hyper sends today; passed on unrecorded.
                Err(frame) => frame,
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        let shared = lock(&self.shared);
        shared.inner_ended
            && self.position >= shared.frames_read
            && (self.trailers_yielded || shared.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.shared).size_hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type FrameResult = Result<Frame<Bytes>, std::convert::Infallible>;
    type Frames = Vec<FrameResult>;

    type FrameStream = futures::stream::Iter<std::vec::IntoIter<FrameResult>>;

    fn body(chunks: &[&'static str], trailer: Option<&'static str>) -> StreamBody<FrameStream> {
        let mut frames: Frames = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        if let Some(value) = trailer {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", value.parse().unwrap());
            frames.push(Ok(Frame::trailers(trailers)));
        }
        StreamBody::new(futures::stream::iter(frames))
    }

    /// Everything a handle yields: its data joined, and its trailer if any.
    async fn read<B>(body: B) -> (String, Option<String>)
    where
        B: Body<Data = Bytes, Error = BoxError>,
    {
        let collected = body.collect().await.unwrap();
        let trailer = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap().to_owned());
        (
            String::from_utf8(collected.to_bytes().to_vec()).unwrap(),
            trailer,
        )
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_sent_again_with_its_trailers() {
        let first = ReplayBody::new(body(&["he", "llo"], Some("0")), 1024);
        let second = first.try_clone().unwrap();
        assert_eq!(read(first).await, ("hello".into(), Some("0".into())));
        assert_eq!(read(second).await, ("hello".into(), Some("0".into())));
    }

    #[tokio::test]
    async fn a_retry_after_a_partial_send_replays_then_reads_on() {
        let mut first = ReplayBody::new(body(&["a", "b", "c"], None), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        let second = first.try_clone().unwrap();
        drop(first);
        assert_eq!(read(second).await, ("abc".into(), None));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_streams_whole_but_cannot_be_replayed() {
        let first = ReplayBody::new(body(&["1234", "5678"], None), 6);
        let spare = first.try_clone().unwrap();
        assert_eq!(read(first).await, ("12345678".into(), None));
        assert!(!spare.can_replay());
        assert!(spare.try_clone().is_none());
        let error = spare.collect().await.unwrap_err();
        assert!(error.to_string().contains("replay limit"), "{error}");
    }

    #[tokio::test]
    async fn a_body_known_to_be_too_long_is_never_recorded() {
        let first = ReplayBody::new(
            http_body_util::Full::new(Bytes::from_static(b"0123456789")),
            4,
        );
        assert!(first.try_clone().is_none());
        assert_eq!(read(first).await, ("0123456789".into(), None));
    }

    #[tokio::test]
    async fn an_empty_body_replays_as_empty() {
        let first = ReplayBody::new(http_body_util::Empty::<Bytes>::new(), 16);
        let second = first.try_clone().unwrap();
        assert_eq!(read(first).await, (String::new(), None));
        assert!(second.is_end_stream());
        assert_eq!(read(second).await, (String::new(), None));
    }
}
