//! Stream translation: upstream SSE events in, the client's SSE frames out, one event at a time.
//!
//! Owns the four client/upstream pairings behind one trait, [`StreamTranslator`]:
//! Anthropic upstream → OpenAI client (`to_openai`), OpenAI upstream → Anthropic client
//! (`to_anthropic`), and same-dialect pass-through (`passthrough`). Each reports, per event, what
//! the gateway needs to decide: whether the client has now seen content (the gateway holds the
//! response until then and may still fall back to another provider), whether the upstream
//! finished, and whether it sent an in-band error. Each keeps the usage seen so far.
//!
//! Invariants:
//! - a translated stream always ends the client's way: OpenAI with `data: [DONE]` (after the usage
//!   chunk if the client asked for usage), Anthropic with `message_delta` + `message_stop`, even
//!   when the upstream's finish was incomplete ([`StreamTranslator::closing_frames`]);
//! - tool calls keep their identity: the k-th Anthropic `tool_use` block is OpenAI tool index k,
//!   each OpenAI tool index is its own Anthropic block (never all `index: 0`, never merged);
//! - usage is read from every event that carries it, so [`StreamTranslator::usage`] is exact once
//!   the upstream is done, and is what streamed so far when it was cut;
//! - an upstream error or malformed event never panics and is never framed here: the step carries
//!   `upstream_error`, and the gateway chooses between falling back (nothing shown yet) and
//!   ending the client's stream with [`crate::errors::ApiError::stream_frame`].

mod passthrough;
mod to_anthropic;
mod to_openai;

use bytes::Bytes;
use serde_json::Value;

use crate::Dialect;
use crate::errors::provider_error_message;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// What one upstream event did.
///
/// ```
/// use weir_ai_wire::{Dialect, sse::SseEvent, stream::translator};
/// let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "m", false);
/// let step = stream.on_event(&SseEvent::new(None, "[DONE]"));
/// assert!(step.done && !step.content && step.upstream_error.is_none());
/// assert_eq!(step.frames, vec![bytes::Bytes::from_static(b"data: [DONE]\n\n")]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Frames (whole SSE events, already encoded) for the client, in order.
    pub frames: Vec<Bytes>,
    /// Whether this event carried content the client sees (text, a tool call, a finish reason, a
    /// refusal). The gateway holds the client response until the first such event and may fall
    /// back to another provider before it. Role-only chunks, `message_start`, `ping`, the start of
    /// an empty text block: not content.
    pub content: bool,
    /// The upstream said the stream is complete (OpenAI `[DONE]`; Anthropic `message_stop`). The
    /// frames then include the client's terminator.
    pub done: bool,
    /// The upstream sent an in-band error (OpenAI `data: {"error": …}`, Anthropic `event: error`)
    /// or an event that is not JSON: what it said. No frame is emitted for it.
    pub upstream_error: Option<String>,
}

impl Step {
    fn upstream_error(message: String) -> Step {
        Step {
            upstream_error: Some(message),
            ..Step::default()
        }
    }
}

/// One stream's translation state, for one upstream attempt.
///
/// ```
/// use weir_ai_wire::{Dialect, sse::SseEvent, stream::translator};
/// let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "chat-smart", true);
/// let start = stream.on_event(&SseEvent::new(Some("message_start"),
///     r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":7,"output_tokens":1}}}"#));
/// assert!(!start.content, "a role chunk is not content");
/// assert_eq!(stream.usage().input, 7);
/// assert_eq!(stream.dialect(), Dialect::OpenAi);
/// ```
pub trait StreamTranslator: Send {
    /// Translates one upstream event. Malformed JSON or an upstream error gives a step with
    /// `upstream_error` set; nothing here panics. Events after the upstream's end are ignored.
    fn on_event(&mut self, event: &SseEvent) -> Step;

    /// Usage seen so far: exact once the upstream is done; for a cut stream, the prompt as far as
    /// the upstream reported it and the output as reported or, if larger, as counted from the
    /// deltas that streamed (an estimate; see [`StreamTranslator::usage_reported`]).
    fn usage(&self) -> Usage;

    /// Whether the usage came from the upstream's own final report (OpenAI's usage chunk,
    /// Anthropic's `message_delta`) rather than being counted from deltas.
    fn usage_reported(&self) -> bool;

    /// Whether the upstream gave its finish reason (`finish_reason`, `message_delta.stop_reason`):
    /// the answer is complete even if the connection then ended before the terminator.
    fn saw_finish(&self) -> bool;

    /// The client-dialect frames that close the client's stream cleanly from where it stands, for
    /// an upstream that reached its end without sending them (e.g. an Anthropic upstream sent
    /// `message_delta` but the connection ended before `message_stop`). The gateway decides
    /// whether that is clean ([`StreamTranslator::saw_finish`]) or must instead end with an error
    /// frame. Empty once the stream is done; calling it marks the stream done.
    fn closing_frames(&mut self) -> Vec<Bytes>;

    /// The client's dialect: the one the frames are in.
    fn dialect(&self) -> Dialect;
}

/// The translator for a stream from an `upstream` provider to a `client`.
///
/// `model` is the model name shown to the client in translated frames; same-dialect pass-through
/// leaves frames byte-identical (re-framed with the data unchanged) and ignores it.
/// `client_wants_usage`: the OpenAI client set `stream_options.include_usage` itself. Weir always
/// asks the upstream for usage ([`crate::translate::force_include_usage`]); when the client did
/// not, the usage-only chunk (`choices: []`) is dropped, `"usage": null` fields are left as they
/// are, and [`StreamTranslator::usage`] is exact all the same.
///
/// ```
/// use weir_ai_wire::{Dialect, sse::SseEvent, stream::translator};
/// let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "m", false);
/// let usage_chunk = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}"#;
/// let step = stream.on_event(&SseEvent::new(None, usage_chunk));
/// assert!(step.frames.is_empty(), "the client did not ask for usage");
/// assert_eq!(stream.usage().total(), 12);
/// ```
pub fn translator(
    client: Dialect,
    upstream: Dialect,
    model: &str,
    client_wants_usage: bool,
) -> Box<dyn StreamTranslator> {
    match (client, upstream) {
        (Dialect::OpenAi, Dialect::OpenAi) => {
            Box::new(passthrough::OpenAiPassthrough::new(client_wants_usage))
        }
        (Dialect::Anthropic, Dialect::Anthropic) => {
            Box::new(passthrough::AnthropicPassthrough::default())
        }
        (Dialect::OpenAi, Dialect::Anthropic) => {
            Box::new(to_openai::AnthropicToOpenAi::new(model, client_wants_usage))
        }
        (Dialect::Anthropic, Dialect::OpenAi) => {
            Box::new(to_anthropic::OpenAiToAnthropic::new(model))
        }
    }
}

/// An upstream event's data as JSON, or the `upstream_error` step saying why it is not.
fn parse_event(event: &SseEvent) -> Result<Value, Step> {
    serde_json::from_str(&event.data).map_err(|error| {
        let is_error_event = event.event.as_deref() == Some("error");
        let message = if is_error_event {
            format!("the provider sent an error event: {}", excerpt(&event.data))
        } else {
            format!(
                "the provider sent a stream event that is not JSON ({error}): {}",
                excerpt(&event.data)
            )
        };
        Step::upstream_error(message)
    })
}

/// The message of an in-band error object (`{"error": …}` or `{"type":"error", …}`).
fn error_message(data: &Value) -> String {
    provider_error_message(data).unwrap_or_else(|| {
        format!(
            "the provider sent an error without a message: {}",
            excerpt(&data.to_string())
        )
    })
}

/// At most 200 characters of upstream text, for error messages and logs.
fn excerpt(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Output tokens a streamed fragment is counted as when the upstream's own count is missing:
/// about four characters a token, and at least one (OpenAI streams about a token a chunk).
fn estimated_tokens(fragment: &str) -> u64 {
    let chars = fragment.chars().count() as u64;
    chars.div_ceil(4).max(1)
}

#[cfg(test)]
mod tests;
