//! OpenAI upstream → Anthropic client.
//!
//! Every frame has its `event:` line (the Anthropic SDK dispatches on it and ignores data without
//! it). The first chunk gives `message_start` (input tokens if that chunk carried usage, else 0;
//! the final counts follow in `message_delta`). Text opens a text block only when there is text
//! (no spurious empty block: LiteLLM#34692); each OpenAI tool index gets its own `tool_use` block
//! (never merged: Portkey#1275); the open block is closed with `content_block_stop` before the next
//! one starts. A `finish_reason` closes the open block; `message_delta` (stop reason and usage)
//! follows once the usage chunk arrives, or at `[DONE]` if none does, and `[DONE]` gives
//! `message_stop` — always both, even if the upstream never sent a finish reason (the hang of
//! APISIX PR#13583).
//!
//! One case cannot be expressed exactly: an upstream that goes back to a tool index after starting
//! another (OpenAI streams calls one after the other; a few compatible servers interleave). Its
//! fragments are sent as deltas of that call's block, which the Anthropic SDK accumulates by index.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Step, StreamTranslator, error_message, estimated_tokens, parse_event};
use crate::Dialect;
use crate::sse::{DONE, SseEvent, frame_json};
use crate::translate::{anthropic_stop_reason, message_id};
use crate::usage::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text { index: u64 },
    ToolUse { index: u64, tool_index: u64 },
}

pub(super) struct OpenAiToAnthropic {
    model: String,
    usage: Usage,
    usage_reported: bool,
    counted_output: u64,
    message_started: bool,
    open_block: Option<OpenBlock>,
    next_block_index: u64,
    /// OpenAI tool index → Anthropic block index, for every tool call started.
    tool_blocks: Vec<(u64, u64)>,
    /// The mapped finish reason, once the upstream gave one.
    stop_reason: Option<&'static str>,
    message_delta_sent: bool,
    done: bool,
}

impl OpenAiToAnthropic {
    pub(super) fn new(model: &str) -> Self {
        OpenAiToAnthropic {
            model: model.to_owned(),
            usage: Usage::default(),
            usage_reported: false,
            counted_output: 0,
            message_started: false,
            open_block: None,
            next_block_index: 0,
            tool_blocks: Vec::new(),
            stop_reason: None,
            message_delta_sent: false,
            done: false,
        }
    }

    fn ensure_message_start(&mut self, completion_id: &str, frames: &mut Vec<Bytes>) {
        if self.message_started {
            return;
        }
        self.message_started = true;
        let mut usage = self.usage;
        usage.output = 0;
        let start = json!({
            "type": "message_start",
            "message": {
                "id": message_id(completion_id),
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage.to_anthropic(),
            },
        });
        frames.push(event("message_start", &start));
    }

    fn close_open_block(&mut self, frames: &mut Vec<Bytes>) {
        if let Some(block) = self.open_block.take() {
            let index = match block {
                OpenBlock::Text { index } | OpenBlock::ToolUse { index, .. } => index,
            };
            frames.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn start_block(&mut self, content_block: Value, frames: &mut Vec<Bytes>) -> u64 {
        self.close_open_block(frames);
        let index = self.next_block_index;
        self.next_block_index += 1;
        frames.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
        ));
        index
    }

    fn on_text(&mut self, text: &str, step: &mut Step) {
        if text.is_empty() {
            return;
        }
        let index = match self.open_block {
            Some(OpenBlock::Text { index }) => index,
            _ => {
                let index = self.start_block(json!({"type": "text", "text": ""}), &mut step.frames);
                self.open_block = Some(OpenBlock::Text { index });
                index
            }
        };
        self.counted_output = self.counted_output.saturating_add(estimated_tokens(text));
        step.frames.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
        ));
        step.content = true;
    }

    fn on_tool_call(&mut self, call: &Value, position: usize, step: &mut Step) {
        let tool_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function").unwrap_or(&Value::Null);
        let index = match self.open_block {
            Some(OpenBlock::ToolUse {
                index,
                tool_index: open,
            }) if open == tool_index => index,
            _ => match self
                .tool_blocks
                .iter()
                .find(|(started, _)| *started == tool_index)
            {
                Some(&(_, index)) => index,
                None => {
                    let id = match call.get("id").and_then(Value::as_str) {
                        Some(id) if !id.is_empty() => id.to_owned(),
                        _ => format!("toolu_weir_{tool_index}"),
                    };
                    let name = function.get("name").and_then(Value::as_str).unwrap_or("");
                    let index = self.start_block(
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                        &mut step.frames,
                    );
                    self.open_block = Some(OpenBlock::ToolUse { index, tool_index });
                    self.tool_blocks.push((tool_index, index));
                    index
                }
            },
        };
        step.content = true;
        let fragment = function
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !fragment.is_empty() {
            self.counted_output = self
                .counted_output
                .saturating_add(estimated_tokens(fragment));
            step.frames.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment}}),
            ));
        }
    }

    fn on_choice(&mut self, choice: &Value, step: &mut Step) {
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        // Text before tool calls: a chunk may carry both (LiteLLM#18238 lost the tool name here).
        for field in ["content", "refusal"] {
            if let Some(text) = delta.get(field).and_then(Value::as_str) {
                self.on_text(text, step);
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, call) in calls.iter().enumerate() {
                self.on_tool_call(call, position, step);
            }
        }
        if let Some(finish_reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(anthropic_stop_reason(
                Some(finish_reason),
                !self.tool_blocks.is_empty(),
            ));
            self.close_open_block(&mut step.frames);
            step.content = true;
        }
    }

    fn push_message_delta(&mut self, frames: &mut Vec<Bytes>) {
        if self.message_delta_sent {
            return;
        }
        self.message_delta_sent = true;
        let stop_reason = self
            .stop_reason
            .unwrap_or_else(|| anthropic_stop_reason(None, !self.tool_blocks.is_empty()));
        frames.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": self.usage().to_anthropic()}),
        ));
    }

    /// Everything still owed to the client, through `message_stop`.
    fn terminator(&mut self) -> Vec<Bytes> {
        let mut frames = Vec::with_capacity(4);
        if self.done {
            return frames;
        }
        self.done = true;
        self.ensure_message_start("weir", &mut frames);
        self.close_open_block(&mut frames);
        self.push_message_delta(&mut frames);
        frames.push(event("message_stop", &json!({"type": "message_stop"})));
        frames
    }
}

fn event(name: &str, data: &Value) -> Bytes {
    frame_json(Some(name), data)
}

impl StreamTranslator for OpenAiToAnthropic {
    fn on_event(&mut self, sse: &SseEvent) -> Step {
        if self.done {
            return Step::default();
        }
        if sse.data.trim() == DONE {
            let owed_message_delta = !self.message_delta_sent;
            return Step {
                frames: self.terminator(),
                content: owed_message_delta,
                done: true,
                upstream_error: None,
            };
        }
        let data = match parse_event(sse) {
            Ok(data) => data,
            Err(step) => return step,
        };
        if data.get("error").is_some_and(|error| !error.is_null()) {
            return Step::upstream_error(error_message(&data));
        }
        let mut step = Step::default();
        let usage = data.get("usage").filter(|usage| usage.is_object());
        if let Some(usage) = usage {
            self.usage = Usage::from_openai(usage);
            self.usage_reported = true;
        }
        let completion_id = data.get("id").and_then(Value::as_str).unwrap_or("weir");
        self.ensure_message_start(completion_id, &mut step.frames);
        if let Some(choices) = data.get("choices").and_then(Value::as_array) {
            // n is 1 on a translated request; any other choice is not this answer.
            for choice in choices {
                if choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0 {
                    self.on_choice(choice, &mut step);
                }
            }
        }
        if self.usage_reported && self.stop_reason.is_some() {
            self.push_message_delta(&mut step.frames);
        }
        step
    }

    fn usage(&self) -> Usage {
        let mut usage = self.usage;
        if !self.usage_reported {
            usage.output = usage.output.max(self.counted_output);
        }
        usage
    }

    fn usage_reported(&self) -> bool {
        self.usage_reported
    }

    fn saw_finish(&self) -> bool {
        self.stop_reason.is_some()
    }

    fn closing_frames(&mut self) -> Vec<Bytes> {
        self.terminator()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }
}
