//! Response bodies as scripts: slices of one buffer to send, pauses, and an abort.
//!
//! Every answer is built in full when its request arrives, and the faults the request asks for
//! become steps between slices of it, so sending costs no more than handing hyper a few
//! `Bytes`. Invariant: a script that aborts ends with an error from `poll_frame`, never a clean
//! end, so hyper resets the stream (HTTP/2) or closes the connection without the chunked
//! terminator (HTTP/1.1) and the client sees a broken body rather than a short one.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::directives::Directives;

/// How long an aborting body waits before failing, so the bytes before the abort reach the
/// socket first: hyper drops what it has buffered but not written once a body fails, and an
/// HTTP/2 reset discards the stream's queued frames.
const FLUSH_BEFORE_ABORT: Duration = Duration::from_millis(10);

/// One step of a [`ScriptedBody`].
#[derive(Debug)]
pub enum Step {
    Send(Bytes),
    Pause(Duration),
    Abort,
}

/// A response body that plays a list of [`Step`]s.
pub struct ScriptedBody {
    steps: std::vec::IntoIter<Step>,
    pause: Option<Pin<Box<Sleep>>>,
    aborting: bool,
    exact_length: Option<u64>,
}

/// The error an aborting body ends with; hyper turns it into a reset or a closed connection.
#[derive(Debug)]
pub struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("weir-mock-llm: response aborted by a fault directive")
    }
}

impl std::error::Error for Aborted {}

impl ScriptedBody {
    /// Plays `steps`. A script without pauses or aborts is sent as fast as hyper takes it.
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into_iter(),
            pause: None,
            aborting: false,
            exact_length: None,
        }
    }

    /// A whole JSON document, with the mid-body faults of `directives` applied halfway
    /// through it, as a non-streamed answer has no deltas to count: `stall-after-N-MS` pauses
    /// there and `cut-after-N` aborts there. Without those, the length is announced up front.
    pub fn json(document: Bytes, directives: &Directives) -> Self {
        if directives.stall.is_none() && directives.cut_after_deltas.is_none() {
            let length = document.len() as u64;
            let mut body = Self::new(vec![Step::Send(document)]);
            body.exact_length = Some(length);
            return body;
        }
        let half = document.len() / 2;
        let mut steps = vec![Step::Send(document.slice(..half))];
        if let Some(stall) = directives.stall {
            steps.push(Step::Pause(stall.pause));
        }
        if directives.cut_after_deltas.is_some() {
            steps.push(Step::Abort);
        } else {
            steps.push(Step::Send(document.slice(half..)));
        }
        Self::new(steps)
    }
}

impl Body for ScriptedBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                std::task::ready!(pause.as_mut().poll(context));
                this.pause = None;
            }
            if this.aborting {
                return Poll::Ready(Some(Err(Aborted)));
            }
            match this.steps.next() {
                None => return Poll::Ready(None),
                Some(Step::Send(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Step::Pause(duration)) => {
                    this.pause = Some(Box::pin(tokio::time::sleep(duration)));
                }
                Some(Step::Abort) => {
                    this.aborting = true;
                    this.pause = Some(Box::pin(tokio::time::sleep(FLUSH_BEFORE_ABORT)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.len() == 0 && self.pause.is_none() && !self.aborting
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_plain_json_body_announces_its_length_and_ends_cleanly() {
        let body = ScriptedBody::json(Bytes::from_static(b"{\"a\":1}"), &Directives::default());
        assert_eq!(body.size_hint().exact(), Some(7));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "{\"a\":1}");
    }

    #[tokio::test]
    async fn a_cut_json_body_sends_half_then_fails() {
        let mut body = ScriptedBody::json(
            Bytes::from_static(b"0123456789"),
            &Directives::parse("mock+cut-after-1"),
        );
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "01234");
        assert!(body.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_stalled_json_body_still_sends_everything() {
        let body = ScriptedBody::json(
            Bytes::from_static(b"0123456789"),
            &Directives::parse("mock+stall-after-0-1"),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0123456789");
    }
}
