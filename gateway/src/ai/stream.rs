//! A provider's stream, pumped to the client in the client's dialect.
//!
//! Once an attempt has produced content, a task owns the provider's body: it parses events,
//! translates them, and sends the frames down a small channel the client's body reads
//! ([`AiBody`]). The channel is bounded, so a slow client slows the reading of the provider
//! rather than growing a buffer: memory stays constant whatever the stream's length. The task
//! ends in one of four ways, each accounted for:
//! - the provider finished: the translator's terminator was sent, usage is exact;
//! - the provider failed or paused longer than `idle`: the dialect's error frame is sent and
//!   the body ends, so SDKs raise instead of seeing a clean end;
//! - the client went away: what was streamed is recorded, marked partial.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use weir_ai_wire::{
    errors::{ApiError, ErrorKind},
    sse::{SseEvent, SseParser},
    stream::StreamTranslator,
};

use super::{
    metrics::{AiMetrics, Record},
    quota::Reservation,
};
use crate::upstream::{BoxError, UpstreamBody};

/// Frames in flight between the pump and the client.
const CHANNEL_FRAMES: usize = 16;
/// How long the rest of a finished provider stream is read for, to keep its connection.
const DRAIN_AFTER_END: Duration = Duration::from_secs(1);

/// What reads the rest of a provider's stream.
pub struct Pump {
    pub body: UpstreamBody,
    pub parser: SseParser,
    pub translator: Box<dyn StreamTranslator>,
    /// The provider's stream already ended (it all came before the first content was sent).
    pub done: bool,
}

/// The client's end of a pumped stream.
pub struct AiBody {
    frames: mpsc::Receiver<Bytes>,
}

impl Body for AiBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|data| Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Starts the pump: `held` frames first, then the rest of the provider's stream.
pub fn spawn(
    held: Vec<Bytes>,
    pump: Box<Pump>,
    idle: Duration,
    record: Record,
    metrics: AiMetrics,
    reservation: Option<Reservation>,
) -> AiBody {
    let (sender, frames) = mpsc::channel(CHANNEL_FRAMES);
    tokio::spawn(run(held, pump, idle, record, metrics, reservation, sender));
    AiBody { frames }
}

/// How a pumped stream ended.
enum End {
    Done,
    ProviderFailed(&'static str),
    ClientGone,
}

async fn run(
    held: Vec<Bytes>,
    mut pump: Box<Pump>,
    idle: Duration,
    record: Record,
    metrics: AiMetrics,
    reservation: Option<Reservation>,
    sender: mpsc::Sender<Bytes>,
) {
    let dialect = pump.translator.dialect();
    metrics.first_token(&record);
    let mut end = None;
    for frame in held {
        if sender.send(frame).await.is_err() {
            end = Some(End::ClientGone);
            break;
        }
    }
    let mut events: Vec<SseEvent> = Vec::new();
    let end = match end {
        Some(end) => end,
        None if pump.done => End::Done,
        None => loop {
            let frame = match tokio::time::timeout(idle, pump.body.frame()).await {
                Err(_) => {
                    break End::ProviderFailed("the provider paused longer than the idle timeout");
                }
                Ok(None) => {
                    break End::ProviderFailed("the provider ended the stream before its end");
                }
                Ok(Some(Err(_))) => break End::ProviderFailed("the provider's stream broke off"),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if pump.parser.push(&data, &mut events).is_err() {
                break End::ProviderFailed("the provider sent an oversized event");
            }
            let mut done = false;
            let mut failed = None;
            let mut gone = false;
            for event in events.drain(..) {
                let step = pump.translator.on_event(&event);
                for frame in step.frames {
                    if !gone && sender.send(frame).await.is_err() {
                        gone = true;
                    }
                }
                if step.upstream_error.is_some() {
                    failed = Some("the provider reported an error mid-stream");
                }
                done |= step.done;
            }
            if gone {
                break End::ClientGone;
            }
            if let Some(why) = failed {
                break End::ProviderFailed(why);
            }
            if done {
                break End::Done;
            }
        },
    };
    let finished_cleanly = matches!(end, End::Done);
    let usage = pump.translator.usage();
    // The quota is charged the provider's count; without one (the stream broke off before
    // it), what was streamed but at least the reservation, as the provider may have generated
    // more than reached the client.
    if let Some(reservation) = reservation {
        let used = if pump.translator.usage_reported() {
            usage.total()
        } else {
            usage.total().max(reservation.reserved())
        };
        reservation.settle(used);
    }
    match end {
        End::Done => {
            metrics.tokens(&record, &usage);
            metrics.finished(
                &record,
                "ok",
                Some(&usage),
                !pump.translator.usage_reported(),
                None,
            );
        }
        End::ProviderFailed(why) => {
            let error = ApiError::new(ErrorKind::Api, why).with_status(502);
            let _ = sender.send(error.stream_frame(dialect)).await;
            metrics.tokens(&record, &usage);
            metrics.finished(
                &record,
                "provider_failed_mid_stream",
                Some(&usage),
                true,
                Some(why),
            );
        }
        End::ClientGone => {
            metrics.tokens(&record, &usage);
            metrics.finished(&record, "client_gone", Some(&usage), true, None);
        }
    }
    // The client's stream ends here; then the provider's body is read to its end (the
    // terminator follows `[DONE]` / `message_stop`), so that its connection goes back to the
    // pool instead of being closed: otherwise every stream would open a new one.
    drop(sender);
    if finished_cleanly {
        let rest = async { while let Some(Ok(_)) = pump.body.frame().await {} };
        let _ = tokio::time::timeout(DRAIN_AFTER_END, rest).await;
    }
}
