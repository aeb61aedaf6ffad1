//! Anthropic upstream → OpenAI client.
//!
//! `message_start` → the first chunk (`delta: {role: "assistant", content: ""}`); `text_delta` →
//! `delta.content`; a `tool_use` block start → `tool_calls[{index: k, id, type, function: {name,
//! arguments: ""}}]` where k counts tool blocks only (Anthropic's block index also counts text and
//! thinking blocks; using it would give OpenAI clients gaps or merged calls: LiteLLM#5231,
//! bifrost#1961); `input_json_delta` → an `arguments` fragment at k; `message_delta` → the
//! `finish_reason` chunk; `message_stop` → the usage chunk (if the client asked) and `[DONE]`.
//! Thinking, signatures, citations and `ping` are dropped.
//!
//! Usage is merged from `message_start` (input and cache counts) and `message_delta` (cumulative
//! output, sometimes input and cache again), never taken from one alone (EAIG#2290).

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Step, StreamTranslator, error_message, estimated_tokens, parse_event};
use crate::Dialect;
use crate::sse::{DONE, SseEvent, frame, frame_json};
use crate::translate::{chat_completion_id, openai_finish_reason, unix_now};
use crate::usage::Usage;

/// What an Anthropic content block became in the OpenAI stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockRole {
    Text,
    /// The OpenAI tool index it streams at.
    ToolCall(u64),
    /// Thinking, server tools and anything newer: not shown to an OpenAI client.
    Dropped,
}

pub(super) struct AnthropicToOpenAi {
    model: String,
    client_wants_usage: bool,
    created: u64,
    chunk_id: String,
    usage: Usage,
    /// `message_delta` carried usage: output is the upstream's count, not ours.
    usage_final: bool,
    counted_output: u64,
    /// Anthropic block index → what it became; few blocks, so a list searched from the end.
    blocks: Vec<(u64, BlockRole)>,
    tool_calls_started: u64,
    role_sent: bool,
    finish_reason: Option<&'static str>,
    done: bool,
}

impl AnthropicToOpenAi {
    pub(super) fn new(model: &str, client_wants_usage: bool) -> Self {
        AnthropicToOpenAi {
            model: model.to_owned(),
            client_wants_usage,
            created: unix_now(),
            chunk_id: chat_completion_id("weir"),
            usage: Usage::default(),
            usage_final: false,
            counted_output: 0,
            blocks: Vec::new(),
            tool_calls_started: 0,
            role_sent: false,
            finish_reason: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut chunk = json!({
            "id": self.chunk_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if self.client_wants_usage
            && let Some(fields) = chunk.as_object_mut()
        {
            fields.insert("usage".to_owned(), Value::Null);
        }
        frame_json(None, &chunk)
    }

    /// The role chunk, once, before anything else the client sees.
    fn ensure_role(&mut self, frames: &mut Vec<Bytes>) {
        if !self.role_sent {
            self.role_sent = true;
            frames.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn block_role(&self, index: Option<u64>) -> Option<BlockRole> {
        let index = index?;
        self.blocks
            .iter()
            .rev()
            .find(|(block, _)| *block == index)
            .map(|(_, role)| *role)
    }

    fn on_block_start(&mut self, data: &Value, step: &mut Step) {
        let index = data
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        let block = data.get("content_block").unwrap_or(&Value::Null);
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                self.blocks.push((index, BlockRole::Text));
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                self.on_text(text, step);
            }
            Some("tool_use") => {
                let tool_index = self.tool_calls_started;
                self.tool_calls_started += 1;
                self.blocks.push((index, BlockRole::ToolCall(tool_index)));
                // Anthropic starts a tool block with `input: {}` and streams the arguments; an
                // input given whole up front is sent as the first fragment.
                let arguments = match block.get("input") {
                    Some(Value::Object(input)) if !input.is_empty() => {
                        Value::Object(input.clone()).to_string()
                    }
                    _ => String::new(),
                };
                let call = json!({
                    "index": tool_index,
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": arguments,
                    },
                });
                self.ensure_role(&mut step.frames);
                step.frames
                    .push(self.chunk(json!({"tool_calls": [call]}), None));
                step.content = true;
            }
            _ => self.blocks.push((index, BlockRole::Dropped)),
        }
    }

    fn on_text(&mut self, text: &str, step: &mut Step) {
        if text.is_empty() {
            return;
        }
        self.counted_output = self.counted_output.saturating_add(estimated_tokens(text));
        self.ensure_role(&mut step.frames);
        step.frames.push(self.chunk(json!({"content": text}), None));
        step.content = true;
    }

    fn on_block_delta(&mut self, data: &Value, step: &mut Step) {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                let role = self.block_role(data.get("index").and_then(Value::as_u64));
                if role != Some(BlockRole::Dropped) {
                    self.on_text(
                        delta.get("text").and_then(Value::as_str).unwrap_or(""),
                        step,
                    );
                }
            }
            Some("input_json_delta") => {
                let role = self.block_role(data.get("index").and_then(Value::as_u64));
                let fragment = delta
                    .get("partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(BlockRole::ToolCall(tool_index)) = role
                    && !fragment.is_empty()
                {
                    self.counted_output = self
                        .counted_output
                        .saturating_add(estimated_tokens(fragment));
                    let call = json!({"index": tool_index, "function": {"arguments": fragment}});
                    self.ensure_role(&mut step.frames);
                    step.frames
                        .push(self.chunk(json!({"tool_calls": [call]}), None));
                    step.content = true;
                }
            }
            // thinking_delta, signature_delta, citations_delta: nothing an OpenAI client can show.
            _ => {}
        }
    }

    fn on_message_delta(&mut self, data: &Value, step: &mut Step) {
        if let Some(usage) = data.get("usage").filter(|usage| usage.is_object()) {
            self.usage.merge_anthropic(usage);
            self.usage_final = true;
        }
        let stop_reason = data
            .get("delta")
            .and_then(|delta| delta.get("stop_reason"))
            .and_then(Value::as_str);
        if let Some(stop_reason) = stop_reason
            && self.finish_reason.is_none()
        {
            let finish_reason = openai_finish_reason(stop_reason);
            self.finish_reason = Some(finish_reason);
            self.ensure_role(&mut step.frames);
            step.frames.push(self.chunk(json!({}), Some(finish_reason)));
            step.content = true;
        }
    }

    /// The finish chunk if none was sent, the usage chunk if asked for, and `[DONE]`.
    fn terminator(&mut self) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(4);
        if self.done {
            return frames;
        }
        self.done = true;
        self.ensure_role(&mut frames);
        if self.finish_reason.is_none() {
            let finish_reason = if self.tool_calls_started > 0 {
                "tool_calls"
            } else {
                "stop"
            };
            self.finish_reason = Some(finish_reason);
            frames.push(self.chunk(json!({}), Some(finish_reason)));
        }
        if self.client_wants_usage {
            let usage_chunk = json!({
                "id": self.chunk_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage().to_openai(),
            });
            frames.push(frame_json(None, &usage_chunk));
        }
        frames.push(frame(None, DONE));
        frames
    }
}

impl StreamTranslator for AnthropicToOpenAi {
    fn on_event(&mut self, event: &SseEvent) -> Step {
        if self.done {
            return Step::default();
        }
        let data = match parse_event(event) {
            Ok(data) => data,
            Err(step) => return step,
        };
        let kind = event
            .event
            .as_deref()
            .or_else(|| data.get("type").and_then(Value::as_str))
            .unwrap_or("");
        let mut step = Step::default();
        match kind {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.chunk_id = chat_completion_id(id);
                }
                if let Some(usage) = message.get("usage").filter(|usage| usage.is_object()) {
                    self.usage.merge_anthropic(usage);
                }
                self.ensure_role(&mut step.frames);
            }
            "content_block_start" => self.on_block_start(&data, &mut step),
            "content_block_delta" => self.on_block_delta(&data, &mut step),
            "message_delta" => self.on_message_delta(&data, &mut step),
            "message_stop" => {
                step.frames = self.terminator();
                step.done = true;
            }
            "error" => return Step::upstream_error(error_message(&data)),
            // ping, content_block_stop, and events newer than this code.
            _ => {}
        }
        step
    }

    fn usage(&self) -> Usage {
        let mut usage = self.usage;
        if !self.usage_final {
            usage.output = usage.output.max(self.counted_output);
        }
        usage
    }

    fn usage_reported(&self) -> bool {
        self.usage_final
    }

    fn saw_finish(&self) -> bool {
        self.finish_reason.is_some()
    }

    fn closing_frames(&mut self) -> Vec<Bytes> {
        self.terminator()
    }

    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }
}
