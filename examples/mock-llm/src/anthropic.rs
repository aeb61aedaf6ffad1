//! Anthropic's wire format: `POST …/messages`, whole or streamed, and `…/messages/count_tokens`.
//!
//! The `anthropic` SDK dispatches stream events on their `event:` line, so every event has
//! one, in exactly the order the API sends them: `message_start` (input and cache usage,
//! `output_tokens: 1`), `ping`, then per content block `content_block_start`,
//! `content_block_delta` (`text_delta` or `input_json_delta`) and `content_block_stop`, then
//! `message_delta` (stop reason and the cumulative `output_tokens`) and `message_stop`.
//! Requests are checked as the API checks them where a gateway translating into this format
//! could get it wrong: `max_tokens` is required and message roles are `user` or `assistant`.

use http::Response;
use serde_json::{Value, json};

use crate::{
    answer::{self, Answer},
    body::ScriptedBody,
    call::{Call, json_answer, sse_answer},
    errors::ApiError,
    sse::{JsonStr, SseWriter},
};

/// Prompt tokens `cache` reports as read from the cache, on top of the prompt's own.
const CACHE_READ_TOKENS: u64 = 4;
/// Prompt tokens `cache` reports as written to the cache, on top of the prompt's own.
const CACHE_CREATION_TOKENS: u64 = 2;

/// `POST …/messages`.
pub fn messages(call: &Call<'_>) -> Result<Response<ScriptedBody>, ApiError> {
    let max_tokens = match call.field("max_tokens") {
        None => {
            return Err(ApiError::invalid_field(
                "max_tokens",
                "max_tokens: Field required",
            ));
        }
        Some(max_tokens) => max_tokens.as_u64().ok_or_else(|| {
            ApiError::invalid_field("max_tokens", "max_tokens: Input should be a valid integer")
        })?,
    };
    let input_tokens = prompt_tokens(call)?;
    let (cache_read, cache_creation) = if call.directives.cache {
        (CACHE_READ_TOKENS, CACHE_CREATION_TOKENS)
    } else {
        (0, 0)
    };
    let answer = Answer::new(call.directives, call.raw_body, Some(max_tokens));
    let stop_reason = if !answer.tool_calls.is_empty() {
        "tool_use"
    } else if answer.hit_max_tokens {
        "max_tokens"
    } else {
        "end_turn"
    };
    let id = call.id("msg", '_');
    let says_text = !answer.text.is_empty() || answer.tool_calls.is_empty();
    if call.stream {
        return Ok(stream_message(
            call,
            &id,
            &answer,
            says_text,
            stop_reason,
            [input_tokens, cache_creation, cache_read],
        ));
    }

    let mut content = Vec::with_capacity(answer.tool_calls.len() + 1);
    if says_text {
        content.push(json!({"type": "text", "text": answer.text}));
    }
    content.extend(answer.tool_calls.iter().map(|tool_call| {
        json!({
            "type": "tool_use",
            "id": format!("toolu_{}", tool_call.0),
            "name": tool_call.name(),
            "input": tool_call.input(),
        })
    }));
    let message = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": answer.output_tokens(),
            "cache_creation_input_tokens": cache_creation,
            "cache_read_input_tokens": cache_read,
        },
    });
    Ok(json_answer(&message, call.directives))
}

/// `POST …/messages/count_tokens`: the prompt tokens a `messages` call would report.
pub fn count_tokens(call: &Call<'_>) -> Result<Response<ScriptedBody>, ApiError> {
    let input_tokens = prompt_tokens(call)?;
    Ok(json_answer(
        &json!({ "input_tokens": input_tokens }),
        call.directives,
    ))
}

/// The words of the top-level `system` and of `messages`, which must be an array of
/// `user` and `assistant` turns.
fn prompt_tokens(call: &Call<'_>) -> Result<u64, ApiError> {
    let Some(Value::Array(messages)) = call.field("messages") else {
        return Err(ApiError::invalid_field(
            "messages",
            "messages: Field required",
        ));
    };
    for (index, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(ApiError::invalid_field(
                "messages",
                format!(
                    "messages.{index}.role: Input should be 'user' or 'assistant'; \
                     a system prompt goes in the top-level `system` parameter"
                ),
            ));
        }
    }
    Ok(answer::prompt_tokens([
        call.field("system"),
        call.field("messages"),
    ]))
}

fn stream_message(
    call: &Call<'_>,
    id: &str,
    answer: &Answer,
    says_text: bool,
    stop_reason: &str,
    [input_tokens, cache_creation, cache_read]: [u64; 3],
) -> Response<ScriptedBody> {
    let mut sse = SseWriter::new(call.directives);
    sse.event(
        "message_start",
        format_args!(
            r#"{{"type":"message_start","message":{{"id":{},"type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":{input_tokens},"cache_creation_input_tokens":{cache_creation},"cache_read_input_tokens":{cache_read},"output_tokens":1}}}}}}"#,
            JsonStr(id),
            JsonStr(call.model),
        ),
    );
    sse.event("ping", format_args!(r#"{{"type": "ping"}}"#));

    let mut index = 0;
    if says_text {
        sse.event(
            "content_block_start",
            format_args!(
                r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"text","text":""}}}}"#
            ),
        );
        for word in answer.text_deltas() {
            sse.before_delta();
            sse.event(
                "content_block_delta",
                format_args!(
                    r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"text_delta","text":{}}}}}"#,
                    JsonStr(word),
                ),
            );
        }
        sse.event(
            "content_block_stop",
            format_args!(r#"{{"type":"content_block_stop","index":{index}}}"#),
        );
        index += 1;
    }
    for tool_call in &answer.tool_calls {
        sse.event(
            "content_block_start",
            format_args!(
                r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"tool_use","id":"toolu_{}","name":"{}","input":{{}}}}}}"#,
                tool_call.0,
                tool_call.name(),
            ),
        );
        for fragment in tool_call.argument_fragments() {
            sse.before_delta();
            sse.event(
                "content_block_delta",
                format_args!(
                    r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                    JsonStr(&fragment),
                ),
            );
        }
        sse.event(
            "content_block_stop",
            format_args!(r#"{{"type":"content_block_stop","index":{index}}}"#),
        );
        index += 1;
    }
    sse.before_finish();
    sse.event(
        "message_delta",
        format_args!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}","stop_sequence":null}},"usage":{{"output_tokens":{}}}}}"#,
            answer.output_tokens(),
        ),
    );
    sse.event("message_stop", format_args!(r#"{{"type":"message_stop"}}"#));
    sse_answer(sse.into_body())
}
