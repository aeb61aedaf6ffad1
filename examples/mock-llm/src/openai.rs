//! OpenAI's wire format: chat completions, embeddings and the model list.
//!
//! The shapes follow what the official `openai` Python SDK parses: a chat stream is
//! `data:`-only events ending in `data: [DONE]`; with `stream_options.include_usage` every
//! chunk carries `"usage": null` and one last chunk before `[DONE]` has `"choices": []` and the
//! usage. Tool calls stream as `delta.tool_calls[{index, id, type, function:{name, arguments}}]`
//! and then fragments carrying only `index` and `function.arguments`. The Responses API lives in
//! `responses.rs`.

use std::fmt::{self, Write as _};

use http::Response;
use serde_json::{Value, json};

use crate::{
    answer::{self, Answer},
    body::ScriptedBody,
    call::{Call, json_answer, json_text_answer, sse_answer},
    errors::ApiError,
    sse::{JsonStr, SseWriter},
};

/// `POST …/chat/completions`.
pub fn chat_completions(call: &Call<'_>) -> Result<Response<ScriptedBody>, ApiError> {
    let messages = call
        .field("messages")
        .filter(|messages| messages.is_array());
    let Some(messages) = messages else {
        return Err(ApiError::invalid_field(
            "messages",
            "'messages' is a required property and must be an array",
        ));
    };
    let prompt_tokens = answer::prompt_tokens([Some(messages)]);
    // Either name caps the answer; a client may send both.
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .into_iter()
        .filter_map(|name| call.field(name)?.as_u64())
        .min();
    let answer = Answer::new(call.directives, call.raw_body, max_tokens);
    let usage = chat_usage(prompt_tokens, answer.output_tokens(), call.directives.cache);
    let finish_reason = if !answer.tool_calls.is_empty() {
        "tool_calls"
    } else if answer.hit_max_tokens {
        "length"
    } else {
        "stop"
    };
    let id = call.id("chatcmpl", '-');
    if call.stream {
        return Ok(stream_chat(call, &id, &answer, finish_reason, &usage));
    }

    let mut message = json!({
        "role": "assistant",
        "content": if answer.text.is_empty() && !answer.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::from(answer.text.as_str())
        },
        "refusal": null,
    });
    if !answer.tool_calls.is_empty() {
        message["tool_calls"] = answer
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "id": format!("call_{}", call.0),
                    "type": "function",
                    "function": {"name": call.name(), "arguments": call.arguments()},
                })
            })
            .collect();
    }
    let completion = json!({
        "id": id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason,
            "logprobs": null,
        }],
        "usage": usage,
        "system_fingerprint": null,
    });
    Ok(json_answer(&completion, call.directives))
}

/// Chat usage: `cache` reports up to 4 of the prompt tokens as cached (still counted in
/// `prompt_tokens`, as OpenAI does).
fn chat_usage(prompt_tokens: u64, completion_tokens: u64, cache: bool) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": if cache { prompt_tokens.min(4) } else { 0 }},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// Writes chat completion chunks; every chunk shares the same envelope.
struct ChunkWriter {
    sse: SseWriter,
    /// The envelope up to and including `"choices":[`.
    head: String,
    /// What closes a chunk after its choices: `"usage":null` when usage was asked for.
    tail: &'static str,
}

impl ChunkWriter {
    fn choice(&mut self, delta: fmt::Arguments<'_>) {
        self.sse.data(format_args!(
            r#"{}{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}{}"#,
            self.head, self.tail
        ));
    }

    fn finish(&mut self, finish_reason: &str) {
        self.sse.data(format_args!(
            r#"{}{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish_reason}"}}{}"#,
            self.head, self.tail
        ));
    }

    fn usage(&mut self, usage: &Value) {
        self.sse
            .data(format_args!(r#"{}],"usage":{usage}}}"#, self.head));
    }
}

fn stream_chat(
    call: &Call<'_>,
    id: &str,
    answer: &Answer,
    finish_reason: &str,
    usage: &Value,
) -> Response<ScriptedBody> {
    let include_usage = call
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"system_fingerprint":null,"choices":["#,
        JsonStr(id),
        call.created,
        JsonStr(call.model),
    );
    let mut chunks = ChunkWriter {
        sse: SseWriter::new(call.directives),
        head,
        tail: if include_usage {
            r#"],"usage":null}"#
        } else {
            "]}"
        },
    };

    chunks.choice(format_args!(
        r#"{{"role":"assistant","content":"","refusal":null}}"#
    ));
    for word in answer.text_deltas() {
        chunks.sse.before_delta();
        chunks.choice(format_args!(r#"{{"content":{}}}"#, JsonStr(word)));
    }
    for (index, tool_call) in answer.tool_calls.iter().enumerate() {
        chunks.choice(format_args!(
            r#"{{"tool_calls":[{{"index":{index},"id":"call_{}","type":"function","function":{{"name":"{}","arguments":""}}}}]}}"#,
            tool_call.0,
            tool_call.name(),
        ));
        for fragment in tool_call.argument_fragments() {
            chunks.sse.before_delta();
            chunks.choice(format_args!(
                r#"{{"tool_calls":[{{"index":{index},"function":{{"arguments":{}}}}}]}}"#,
                JsonStr(&fragment),
            ));
        }
    }
    chunks.sse.before_finish();
    chunks.finish(finish_reason);
    if include_usage {
        chunks.usage(usage);
    }
    chunks.sse.data(format_args!("[DONE]"));
    sse_answer(chunks.sse.into_body())
}

/// The components every embedding is made of: k/16 for k in 1..=8, exact in `f32` and short
/// in JSON, and never a whole number, so no client reads an integer.
const EMBEDDING_COMPONENTS: [(f32, &str); 8] = [
    (0.0625, "0.0625"),
    (0.125, "0.125"),
    (0.1875, "0.1875"),
    (0.25, "0.25"),
    (0.3125, "0.3125"),
    (0.375, "0.375"),
    (0.4375, "0.4375"),
    (0.5, "0.5"),
];

/// The dimension of embeddings when neither `dims-N` nor `dimensions` asks otherwise.
const DEFAULT_EMBEDDING_DIMS: usize = 8;

/// `POST …/embeddings`: one vector per input, component `j` of vector `i` being
/// `EMBEDDING_COMPONENTS[(i + j) % 8]`, as floats or, for `encoding_format: "base64"` (the
/// SDK's default), as base64 of little-endian `f32`s.
pub fn embeddings(call: &Call<'_>) -> Result<Response<ScriptedBody>, ApiError> {
    let input = call.field("input").unwrap_or(&Value::Null);
    let inputs = match input {
        Value::String(_) => 1,
        // An array of numbers is one input given as token ids.
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => 1,
        Value::Array(items) if !items.is_empty() => items.len(),
        _ => {
            return Err(ApiError::invalid_field(
                "input",
                "'input' must be a string or a non-empty array",
            ));
        }
    };
    let dims = call.directives.embedding_dims.unwrap_or_else(|| {
        call.field("dimensions")
            .and_then(Value::as_u64)
            .and_then(|dims| usize::try_from(dims).ok())
            .filter(|dims| (1..=4096).contains(dims))
            .unwrap_or(DEFAULT_EMBEDDING_DIMS)
    });
    let base64 = call.field("encoding_format").and_then(Value::as_str) == Some("base64");
    let prompt_tokens = answer::prompt_tokens([Some(input)]);

    // Written by hand rather than through a `serde_json::Value`: `dims-N` makes vectors of
    // millions of components, and a tree of them would cost far more than the text.
    let per_vector = if base64 { dims * 16 / 3 + 4 } else { dims * 7 };
    let mut document = String::with_capacity(inputs * (per_vector + 48) + 128);
    document.push_str(r#"{"object":"list","data":["#);
    let mut vector_bytes = Vec::new();
    for index in 0..inputs {
        if index > 0 {
            document.push(',');
        }
        let _ = write!(
            document,
            r#"{{"object":"embedding","index":{index},"embedding":"#
        );
        let components = (0..dims).map(|j| EMBEDDING_COMPONENTS[(index + j) % 8]);
        if base64 {
            vector_bytes.clear();
            vector_bytes.extend(components.flat_map(|(value, _)| value.to_le_bytes()));
            document.push('"');
            write_base64(&mut document, &vector_bytes);
            document.push('"');
        } else {
            document.push('[');
            for (j, (_, text)) in components.enumerate() {
                if j > 0 {
                    document.push(',');
                }
                document.push_str(text);
            }
            document.push(']');
        }
        document.push('}');
    }
    let _ = write!(
        document,
        r#"],"model":{},"usage":{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}}}"#,
        JsonStr(call.model),
    );
    Ok(json_text_answer(document.into(), call.directives))
}

/// Standard base64 with padding.
fn write_base64(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let byte = |at: usize| u32::from(group.get(at).copied().unwrap_or(0));
        let bits = byte(0) << 16 | byte(1) << 8 | byte(2);
        let sextet = |shift: u32| char::from(ALPHABET[(bits >> shift & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if group.len() > 1 { sextet(6) } else { '=' });
        out.push(if group.len() > 2 { sextet(0) } else { '=' });
    }
}

/// `GET …/models`: the one model this mock serves (any model name works in requests).
pub fn models() -> Response<ScriptedBody> {
    let list = json!({
        "object": "list",
        "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "weir-mock"}],
    });
    json_answer(&list, &Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64(bytes: &[u8]) -> String {
        let mut out = String::new();
        write_base64(&mut out, bytes);
        out
    }

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(&0.5f32.to_le_bytes()), "AAAAPw==");
    }

    #[test]
    fn cached_tokens_are_at_most_four_and_within_the_prompt() {
        assert_eq!(
            chat_usage(10, 3, true)["prompt_tokens_details"]["cached_tokens"],
            4
        );
        assert_eq!(
            chat_usage(2, 3, true)["prompt_tokens_details"]["cached_tokens"],
            2
        );
        let usage = chat_usage(10, 3, false);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(usage["prompt_tokens"], 10);
        assert_eq!(usage["total_tokens"], 13);
    }
}
