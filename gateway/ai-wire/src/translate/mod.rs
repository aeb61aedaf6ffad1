//! Whole-body translation between OpenAI chat completions and Anthropic messages.
//!
//! Owns the OpenAI↔Anthropic mapping for requests ([`chat_to_messages`], [`messages_to_chat`]) and
//! non-streamed responses ([`messages_response_to_chat`], [`chat_response_to_messages`]), and the
//! two small tables the stream translators share with them ([`openai_finish_reason`],
//! [`anthropic_stop_reason`]), so a streamed and a non-streamed answer end the same way.
//!
//! Invariants:
//! - nothing the client said is lost silently: every system and developer message reaches the
//!   upstream `system` in order (not last-wins, Portkey#457); a feature the other side cannot express
//!   (`n > 1`, `logprobs`, JSON response formats, audio, server tools) is a 400 naming the field;
//!   options with no effect on the answer's content (`seed`, `stream_options`, `thinking`, …) are
//!   dropped, as the other side would refuse fields it does not know;
//! - a request error is a 400 `invalid_request_error` whose `param` is the path of the field at
//!   fault (`messages[2].tool_calls[0].function.arguments`); a response the provider should never
//!   have sent is a 502.

mod request;
mod response;

use serde_json::Value;

pub use crate::errors::ApiError;
pub use request::{chat_to_messages, messages_to_chat};
pub use response::{RAW_ARGUMENTS_KEY, chat_response_to_messages, messages_response_to_chat};

/// The output cap a request asks for, in any dialect: `max_completion_tokens` or `max_tokens`
/// (OpenAI chat, Anthropic), `max_output_tokens` (OpenAI Responses). `None` when it sets none.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::translate::requested_max_tokens;
/// assert_eq!(requested_max_tokens(&json!({"max_completion_tokens": 300, "max_tokens": 10})), Some(300));
/// assert_eq!(requested_max_tokens(&json!({"max_output_tokens": 50})), Some(50));
/// assert_eq!(requested_max_tokens(&json!({"messages": []})), None);
/// ```
pub fn requested_max_tokens(request: &Value) -> Option<u64> {
    ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|field| request.get(field).and_then(Value::as_u64))
}

/// Makes an OpenAI streaming request ask for usage (`stream_options.include_usage = true`), as
/// Weir always counts streamed tokens, and says whether the client had asked for it itself — the
/// `client_wants_usage` that [`crate::stream::translator`] needs to hide the extra chunk again.
/// A non-streaming request, or one that is not an object, is left alone (and `false` returned).
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::translate::force_include_usage;
/// let mut request = json!({"model": "m", "stream": true, "messages": []});
/// assert!(!force_include_usage(&mut request));
/// assert_eq!(request["stream_options"], json!({"include_usage": true}));
/// ```
pub fn force_include_usage(request: &mut Value) -> bool {
    let Some(fields) = request.as_object_mut() else {
        return false;
    };
    if fields.get("stream").and_then(Value::as_bool) != Some(true) {
        return false;
    }
    let options = fields
        .entry("stream_options")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !options.is_object() {
        *options = Value::Object(serde_json::Map::new());
    }
    let Some(options) = options.as_object_mut() else {
        return false;
    };
    let client_asked = options.get("include_usage").and_then(Value::as_bool) == Some(true);
    options.insert("include_usage".to_owned(), Value::Bool(true));
    client_asked
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`: end_turn, stop_sequence and
/// pause_turn → `stop`; max_tokens and model_context_window_exceeded → `length`; tool_use →
/// `tool_calls`; refusal → `content_filter`. An unknown reason is `stop`.
///
/// ```
/// use weir_ai_wire::translate::openai_finish_reason;
/// assert_eq!(openai_finish_reason("tool_use"), "tool_calls");
/// assert_eq!(openai_finish_reason("model_context_window_exceeded"), "length");
/// ```
pub fn openai_finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's `stop_reason` for an OpenAI `finish_reason`: stop → `end_turn`, length →
/// `max_tokens`, tool_calls and function_call → `tool_use`, content_filter → `refusal`.
/// An answer that made tool calls ends in `tool_use` even when the server said `stop` (some
/// OpenAI-compatible servers do; an Anthropic client only runs tools on `tool_use`), unless it was
/// cut by `length`. No or an unknown reason is `end_turn`.
///
/// ```
/// use weir_ai_wire::translate::anthropic_stop_reason;
/// assert_eq!(anthropic_stop_reason(Some("length"), false), "max_tokens");
/// assert_eq!(anthropic_stop_reason(Some("stop"), true), "tool_use");
/// assert_eq!(anthropic_stop_reason(None, false), "end_turn");
/// ```
pub fn anthropic_stop_reason(finish_reason: Option<&str>, made_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("content_filter") => "refusal",
        Some("tool_calls" | "function_call") => "tool_use",
        _ if made_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// The chat completion id shown to an OpenAI client for an Anthropic message id.
pub(crate) fn chat_completion_id(message_id: &str) -> String {
    format!("chatcmpl-{message_id}")
}

/// The message id shown to an Anthropic client for an OpenAI completion id.
pub(crate) fn message_id(completion_id: &str) -> String {
    if completion_id.starts_with("msg_") {
        completion_id.to_owned()
    } else {
        format!("msg_{completion_id}")
    }
}

/// Seconds since the Unix epoch, for OpenAI's `created`; 0 on a clock before 1970.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_anthropic_stop_reason_has_its_finish_reason() {
        let mapped: Vec<_> = [
            "end_turn",
            "stop_sequence",
            "pause_turn",
            "max_tokens",
            "model_context_window_exceeded",
            "tool_use",
            "refusal",
            "something_new",
        ]
        .into_iter()
        .map(openai_finish_reason)
        .collect();
        assert_eq!(
            mapped,
            [
                "stop",
                "stop",
                "stop",
                "length",
                "length",
                "tool_calls",
                "content_filter",
                "stop"
            ]
        );
    }

    #[test]
    fn every_openai_finish_reason_has_its_stop_reason() {
        let mapped: Vec<_> = [
            Some("stop"),
            Some("length"),
            Some("tool_calls"),
            Some("function_call"),
            Some("content_filter"),
            None,
        ]
        .into_iter()
        .map(|finish| anthropic_stop_reason(finish, false))
        .collect();
        assert_eq!(
            mapped,
            [
                "end_turn",
                "max_tokens",
                "tool_use",
                "tool_use",
                "refusal",
                "end_turn"
            ]
        );
    }

    #[test]
    fn a_length_cut_stays_max_tokens_even_with_tool_calls() {
        assert_eq!(anthropic_stop_reason(Some("length"), true), "max_tokens");
    }

    #[test]
    fn requested_max_tokens_prefers_max_completion_tokens() {
        assert_eq!(
            requested_max_tokens(&json!({"max_tokens": 10, "max_completion_tokens": 20})),
            Some(20)
        );
        assert_eq!(requested_max_tokens(&json!({"max_tokens": 10})), Some(10));
        assert_eq!(requested_max_tokens(&json!({"max_tokens": "10"})), None);
    }

    #[test]
    fn force_include_usage_reports_a_client_that_asked() {
        let mut request = json!({"stream": true, "stream_options": {"include_usage": true}});
        assert!(force_include_usage(&mut request));
        assert_eq!(request["stream_options"]["include_usage"], true);
    }

    #[test]
    fn force_include_usage_overrides_a_client_that_said_no() {
        let mut request = json!({"stream": true, "stream_options": {"include_usage": false}});
        assert!(!force_include_usage(&mut request));
        assert_eq!(request["stream_options"]["include_usage"], true);
    }

    #[test]
    fn force_include_usage_leaves_non_streaming_requests_alone() {
        let mut request = json!({"stream": false});
        assert!(!force_include_usage(&mut request));
        assert_eq!(request, json!({"stream": false}));
    }
}
