//! Non-streamed response bodies: Anthropic message ⇄ OpenAI chat.completion.
//!
//! A provider's answer is trusted for content and read leniently for everything else; only a body
//! with no answer in it at all (no `content` array, no `choices[0].message`) is an error, a 502,
//! because the provider broke its own format.

use serde_json::{Map, Value, json};

use super::{
    anthropic_stop_reason, chat_completion_id, message_id, openai_finish_reason, unix_now,
};
use crate::errors::ApiError;
use crate::usage::Usage;

/// The key holding a tool call's `arguments` when they are not a JSON object; see
/// [`chat_response_to_messages`].
///
/// ```
/// assert_eq!(weir_ai_wire::translate::RAW_ARGUMENTS_KEY, "_raw_arguments");
/// ```
pub const RAW_ARGUMENTS_KEY: &str = "_raw_arguments";

/// Anthropic message response → OpenAI `chat.completion`.
///
/// Text blocks are joined (without separator, as a stream would show them) into `content`;
/// `tool_use` blocks become `tool_calls` whose `arguments` are the JSON text of `input`; thinking
/// and server-tool blocks are dropped; `stop_reason` maps by [`super::openai_finish_reason`];
/// usage folds cache reads and writes into `prompt_tokens`. The id is `chatcmpl-` + the message id
/// and `model` is what the client is shown.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::translate::messages_response_to_chat;
/// let message = json!({"id": "msg_1", "type": "message", "role": "assistant",
///     "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
///     "usage": {"input_tokens": 10, "output_tokens": 2}});
/// let chat = messages_response_to_chat(&message, "chat-smart").unwrap();
/// assert_eq!(chat["choices"][0]["message"]["content"], "Hi");
/// assert_eq!(chat["choices"][0]["finish_reason"], "stop");
/// assert_eq!(chat["usage"]["total_tokens"], 12);
/// ```
pub fn messages_response_to_chat(response: &Value, model: &str) -> Result<Value, ApiError> {
    let blocks = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::bad_upstream("the Anthropic provider answered without a `content` array")
        })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(input) => input.to_string(),
                };
                tool_calls.push(json!({
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": arguments,
                    },
                }));
            }
            _ => {}
        }
    }
    let finish_reason = match response.get("stop_reason").and_then(Value::as_str) {
        Some(stop_reason) => openai_finish_reason(stop_reason),
        None if !tool_calls.is_empty() => "tool_calls",
        None => "stop",
    };
    let mut message = Map::new();
    message.insert("role".to_owned(), "assistant".into());
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".to_owned(), content);
    message.insert("refusal".to_owned(), Value::Null);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    let usage = Usage::from_anthropic(response.get("usage").unwrap_or(&Value::Null));
    let id = response.get("id").and_then(Value::as_str).unwrap_or("");
    Ok(json!({
        "id": chat_completion_id(id),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage.to_openai(),
    }))
}

/// OpenAI `chat.completion` → Anthropic message.
///
/// `content` (and a `refusal`) → text blocks; `tool_calls` → `tool_use` blocks with `input` the
/// parsed `arguments`. Arguments that are empty are `{}`; arguments that are not a JSON object
/// (a model can emit broken JSON) become `{"_raw_arguments": "<the text>"}` ([`RAW_ARGUMENTS_KEY`]):
/// the call still reaches the client, whose schema check then fails visibly, instead of running
/// with no arguments. `finish_reason` → `stop_reason` by [`super::anthropic_stop_reason`]; usage
/// moves cached tokens out of `input_tokens` into `cache_read_input_tokens`. `model` is what the
/// client is shown.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::translate::chat_response_to_messages;
/// let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0,
///     "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
///         "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
///     "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 3}});
/// let message = chat_response_to_messages(&chat, "chat-smart").unwrap();
/// assert_eq!(message["content"][0], json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}));
/// assert_eq!(message["stop_reason"], "tool_use");
/// ```
pub fn chat_response_to_messages(response: &Value, model: &str) -> Result<Value, ApiError> {
    let choice = response
        .get("choices")
        .and_then(|choices| choices.get(0))
        .ok_or_else(|| ApiError::bad_upstream("the OpenAI provider answered without `choices`"))?;
    let message = choice
        .get("message")
        .filter(|message| message.is_object())
        .ok_or_else(|| {
            ApiError::bad_upstream("the OpenAI provider answered without `choices[0].message`")
        })?;
    let mut blocks = Vec::new();
    match message.get("content") {
        Some(Value::String(text)) => push_text(&mut blocks, text),
        Some(Value::Array(parts)) => {
            for part in parts {
                let text = part
                    .get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                push_text(&mut blocks, text);
            }
        }
        _ => {}
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        push_text(&mut blocks, refusal);
    }
    let mut made_tool_calls = false;
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (position, call) in calls.iter().enumerate() {
            let function = call.get("function").unwrap_or(&Value::Null);
            let id = match call.get("id").and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => format!("toolu_weir_{position}"),
            };
            blocks.push(json!({
                "type": "tool_use",
                "id": id,
                "name": function.get("name").and_then(Value::as_str).unwrap_or(""),
                "input": lenient_input(function.get("arguments")),
            }));
            made_tool_calls = true;
        }
    }
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    let usage = Usage::from_openai(response.get("usage").unwrap_or(&Value::Null));
    let id = response.get("id").and_then(Value::as_str).unwrap_or("");
    Ok(json!({
        "id": message_id(id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": anthropic_stop_reason(finish_reason, made_tool_calls),
        "stop_sequence": null,
        "usage": usage.to_anthropic(),
    }))
}

fn push_text(blocks: &mut Vec<Value>, text: &str) {
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
}

/// The `input` object for OpenAI `arguments` from a provider's answer; never fails.
fn lenient_input(arguments: Option<&Value>) -> Value {
    match arguments {
        Some(input @ Value::Object(_)) => input.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(input @ Value::Object(_)) => input,
            _ => json!({ RAW_ARGUMENTS_KEY: text }),
        },
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic_message(content: Value, stop_reason: &str) -> Value {
        json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 4,
                "cache_creation_input_tokens": 2, "output_tokens": 7}})
    }

    fn chat_completion(message: Value, finish_reason: &str) -> Value {
        json!({"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 16, "completion_tokens": 7, "total_tokens": 23,
                "prompt_tokens_details": {"cached_tokens": 4}}})
    }

    fn tool_call(id: &str, arguments: &str) -> Value {
        json!({"id": id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}})
    }

    // ---- Anthropic → OpenAI ----

    #[test]
    fn anthropic_text_and_tool_use_become_content_and_tool_calls() {
        let message = anthropic_message(
            json!([
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking "},
                {"type": "text", "text": "both."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Oslo"}},
            ]),
            "tool_use",
        );
        let chat = messages_response_to_chat(&message, "chat-smart").unwrap();
        let choice = &chat["choices"][0];
        assert_eq!(choice["message"]["content"], "Checking both.");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([
                {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "toolu_b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            ])
        );
        assert_eq!(choice["finish_reason"], "tool_calls");
    }

    #[test]
    fn anthropic_response_is_a_chat_completion_for_the_client_model() {
        let chat =
            messages_response_to_chat(&anthropic_message(json!([]), "end_turn"), "chat-smart")
                .unwrap();
        assert_eq!(chat["id"], "chatcmpl-msg_01");
        assert_eq!(chat["object"], "chat.completion");
        assert_eq!(chat["model"], "chat-smart");
        assert!(chat["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    }

    #[test]
    fn anthropic_cache_tokens_are_in_prompt_tokens() {
        let chat =
            messages_response_to_chat(&anthropic_message(json!([]), "end_turn"), "m").unwrap();
        assert_eq!(
            chat["usage"],
            json!({"prompt_tokens": 16, "completion_tokens": 7, "total_tokens": 23,
                "prompt_tokens_details": {"cached_tokens": 4}})
        );
    }

    #[test]
    fn every_stop_reason_has_its_finish_reason() {
        for (stop_reason, finish_reason) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            let message = anthropic_message(json!([{"type": "text", "text": "x"}]), stop_reason);
            let chat = messages_response_to_chat(&message, "m").unwrap();
            assert_eq!(
                chat["choices"][0]["finish_reason"], finish_reason,
                "{stop_reason}"
            );
        }
    }

    #[test]
    fn a_tool_only_answer_has_null_content() {
        let message = anthropic_message(
            json!([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
            "tool_use",
        );
        let chat = messages_response_to_chat(&message, "m").unwrap();
        assert_eq!(chat["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn an_anthropic_answer_without_content_is_a_502() {
        let error = messages_response_to_chat(&json!({"type": "message"}), "m").unwrap_err();
        assert_eq!(error.status, 502);
    }

    // ---- OpenAI → Anthropic ----

    #[test]
    fn openai_content_and_tool_calls_become_blocks() {
        let chat = chat_completion(
            json!({"role": "assistant", "content": "Checking.",
            "tool_calls": [tool_call("call_a", "{\"city\":\"Paris\"}"), tool_call("call_b", "")]}),
            "tool_calls",
        );
        let message = chat_response_to_messages(&chat, "chat-smart").unwrap();
        assert_eq!(
            message["content"],
            json!([
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {}},
            ])
        );
        assert_eq!(message["stop_reason"], "tool_use");
    }

    #[test]
    fn openai_response_is_an_anthropic_message_for_the_client_model() {
        let chat = chat_completion(json!({"role": "assistant", "content": "Hi"}), "stop");
        let message = chat_response_to_messages(&chat, "chat-smart").unwrap();
        assert_eq!(message["id"], "msg_chatcmpl-9");
        assert_eq!(message["type"], "message");
        assert_eq!(message["role"], "assistant");
        assert_eq!(message["model"], "chat-smart");
        assert_eq!(message["stop_sequence"], Value::Null);
    }

    #[test]
    fn unparseable_arguments_are_kept_under_raw_arguments() {
        let chat = chat_completion(
            json!({"role": "assistant", "content": null,
            "tool_calls": [tool_call("call_a", "{\"city\": Par"), tool_call("call_b", "[1]")]}),
            "tool_calls",
        );
        let message = chat_response_to_messages(&chat, "m").unwrap();
        assert_eq!(
            message["content"][0]["input"],
            json!({"_raw_arguments": "{\"city\": Par"})
        );
        assert_eq!(
            message["content"][1]["input"],
            json!({"_raw_arguments": "[1]"})
        );
    }

    #[test]
    fn every_finish_reason_has_its_stop_reason() {
        for (finish_reason, stop_reason) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
        ] {
            let chat = chat_completion(json!({"role": "assistant", "content": "x"}), finish_reason);
            let message = chat_response_to_messages(&chat, "m").unwrap();
            assert_eq!(message["stop_reason"], stop_reason, "{finish_reason}");
        }
    }

    #[test]
    fn tool_calls_with_finish_stop_still_stop_for_tool_use() {
        let chat = chat_completion(
            json!({"role": "assistant", "tool_calls": [tool_call("c", "{}")]}),
            "stop",
        );
        assert_eq!(
            chat_response_to_messages(&chat, "m").unwrap()["stop_reason"],
            "tool_use"
        );
    }

    #[test]
    fn a_refusal_is_a_text_block() {
        let chat = chat_completion(
            json!({"role": "assistant", "content": null, "refusal": "I can't help."}),
            "content_filter",
        );
        let message = chat_response_to_messages(&chat, "m").unwrap();
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "I can't help."}])
        );
        assert_eq!(message["stop_reason"], "refusal");
    }

    #[test]
    fn openai_cached_tokens_move_to_cache_read() {
        let chat = chat_completion(json!({"role": "assistant", "content": "x"}), "stop");
        assert_eq!(
            chat_response_to_messages(&chat, "m").unwrap()["usage"],
            json!({"input_tokens": 12, "cache_read_input_tokens": 4,
                "cache_creation_input_tokens": 0, "output_tokens": 7})
        );
    }

    #[test]
    fn an_openai_answer_without_a_message_is_a_502() {
        for broken in [
            json!({"choices": []}),
            json!({"choices": [{"index": 0}]}),
            json!("x"),
        ] {
            assert_eq!(
                chat_response_to_messages(&broken, "m").unwrap_err().status,
                502,
                "{broken}"
            );
        }
    }
}
