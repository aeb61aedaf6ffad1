//! Same dialect on both sides: frames pass through with their data unchanged (re-framed, so a
//! provider's line-end style or comments do not reach the client), read on the way for usage,
//! content and the end.
//!
//! OpenAI: the usage-only chunk (`choices: []` with `usage`) that Weir asked for on the client's
//! behalf is dropped when the client did not ask (agentgateway leaks it); its counts are still
//! read. Anthropic: every event keeps its `event:` line, added from the data's `type` if the
//! upstream left it out.

use bytes::Bytes;
use serde_json::Value;

use super::{Step, StreamTranslator, error_message, estimated_tokens, parse_event};
use crate::Dialect;
use crate::sse::{DONE, SseEvent, frame, frame_json};
use crate::usage::Usage;

pub(super) struct OpenAiPassthrough {
    client_wants_usage: bool,
    usage: Usage,
    usage_reported: bool,
    counted_output: u64,
    saw_finish: bool,
    done: bool,
}

impl OpenAiPassthrough {
    pub(super) fn new(client_wants_usage: bool) -> Self {
        OpenAiPassthrough {
            client_wants_usage,
            usage: Usage::default(),
            usage_reported: false,
            counted_output: 0,
            saw_finish: false,
            done: false,
        }
    }

    /// Whether a choice's delta shows the client something; counts its output on the way.
    fn read_choice(&mut self, choice: &Value) -> bool {
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let mut content = false;
        for field in ["content", "refusal"] {
            if let Some(text) = delta.get(field).and_then(Value::as_str)
                && !text.is_empty()
            {
                self.counted_output = self.counted_output.saturating_add(estimated_tokens(text));
                content = true;
            }
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let arguments = call
                .get("function")
                .and_then(|function| function.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !arguments.is_empty() {
                self.counted_output = self
                    .counted_output
                    .saturating_add(estimated_tokens(arguments));
            }
            content = true;
        }
        if delta
            .get("function_call")
            .is_some_and(|call| !call.is_null())
        {
            content = true;
        }
        if choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null())
        {
            self.saw_finish = true;
            content = true;
        }
        content
    }
}

impl StreamTranslator for OpenAiPassthrough {
    fn on_event(&mut self, event: &SseEvent) -> Step {
        if self.done {
            return Step::default();
        }
        if event.data.trim() == DONE {
            self.done = true;
            return Step {
                frames: vec![frame(event.event.as_deref(), &event.data)],
                done: true,
                ..Step::default()
            };
        }
        let data = match parse_event(event) {
            Ok(data) => data,
            Err(step) => return step,
        };
        if data.get("error").is_some_and(|error| !error.is_null()) {
            return Step::upstream_error(error_message(&data));
        }
        let usage = data.get("usage").filter(|usage| usage.is_object());
        if let Some(usage) = usage {
            self.usage = Usage::from_openai(usage);
            self.usage_reported = true;
        }
        let choices = data.get("choices").and_then(Value::as_array);
        let mut content = false;
        for choice in choices.into_iter().flatten() {
            content |= self.read_choice(choice);
        }
        let usage_only = usage.is_some() && choices.is_none_or(Vec::is_empty);
        let frames = if usage_only && !self.client_wants_usage {
            Vec::new()
        } else {
            vec![frame(event.event.as_deref(), &event.data)]
        };
        Step {
            frames,
            content,
            ..Step::default()
        }
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
        self.saw_finish
    }

    /// Only `[DONE]`: the chunks before it are the upstream's, and a pass-through invents none.
    fn closing_frames(&mut self) -> Vec<Bytes> {
        if std::mem::replace(&mut self.done, true) {
            return Vec::new();
        }
        vec![frame(None, DONE)]
    }

    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }
}

#[derive(Default)]
pub(super) struct AnthropicPassthrough {
    usage: Usage,
    usage_reported: bool,
    counted_output: u64,
    /// Block indexes started and not yet stopped, to close them if the upstream could not.
    open_blocks: Vec<u64>,
    stop_reason: Option<String>,
    message_delta_seen: bool,
    done: bool,
}

impl AnthropicPassthrough {
    fn count(&mut self, fragment: &str) -> bool {
        if fragment.is_empty() {
            return false;
        }
        self.counted_output = self
            .counted_output
            .saturating_add(estimated_tokens(fragment));
        true
    }
}

impl StreamTranslator for AnthropicPassthrough {
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
            .or_else(|| data.get("type").and_then(Value::as_str));
        let mut step = Step::default();
        match kind.unwrap_or("") {
            "error" => return Step::upstream_error(error_message(&data)),
            "message_start" => {
                let usage = data
                    .get("message")
                    .and_then(|message| message.get("usage"))
                    .filter(|usage| usage.is_object());
                if let Some(usage) = usage {
                    self.usage.merge_anthropic(usage);
                }
            }
            "content_block_start" => {
                if let Some(index) = data.get("index").and_then(Value::as_u64) {
                    self.open_blocks.push(index);
                }
                let block = data.get("content_block").unwrap_or(&Value::Null);
                step.content = match block.get("type").and_then(Value::as_str) {
                    // An empty text or thinking block says nothing yet.
                    Some("text") => block
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|text| !text.is_empty()),
                    Some("thinking") => block
                        .get("thinking")
                        .and_then(Value::as_str)
                        .is_some_and(|text| !text.is_empty()),
                    _ => true,
                };
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let fragment = ["text", "partial_json", "thinking"]
                    .iter()
                    .find_map(|field| delta.get(*field).and_then(Value::as_str));
                step.content = match fragment {
                    Some(fragment) => self.count(fragment),
                    // signature and citation deltas are shown to the client too.
                    None => true,
                };
            }
            "content_block_stop" => {
                if let Some(index) = data.get("index").and_then(Value::as_u64) {
                    self.open_blocks.retain(|open| *open != index);
                }
            }
            "message_delta" => {
                self.message_delta_seen = true;
                if let Some(usage) = data.get("usage").filter(|usage| usage.is_object()) {
                    self.usage.merge_anthropic(usage);
                    self.usage_reported = true;
                }
                let stop_reason = data
                    .get("delta")
                    .and_then(|delta| delta.get("stop_reason"))
                    .and_then(Value::as_str);
                if let Some(stop_reason) = stop_reason {
                    self.stop_reason = Some(stop_reason.to_owned());
                }
                step.content = true;
            }
            "message_stop" => {
                self.done = true;
                step.done = true;
            }
            // ping, and events newer than this code: passed on as they are.
            _ => {}
        }
        step.frames.push(frame(kind, &event.data));
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

    /// Stops for the blocks still open, a `message_delta` if the upstream sent none, and
    /// `message_stop`.
    fn closing_frames(&mut self) -> Vec<Bytes> {
        if std::mem::replace(&mut self.done, true) {
            return Vec::new();
        }
        let mut frames = Vec::with_capacity(self.open_blocks.len() + 2);
        for index in std::mem::take(&mut self.open_blocks) {
            let stop = serde_json::json!({"type": "content_block_stop", "index": index});
            frames.push(frame_json(Some("content_block_stop"), &stop));
        }
        if !self.message_delta_seen {
            let delta = serde_json::json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": self.usage().to_anthropic()});
            frames.push(frame_json(Some("message_delta"), &delta));
        }
        let stop = serde_json::json!({"type": "message_stop"});
        frames.push(frame_json(Some("message_stop"), &stop));
        frames
    }

    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }
}
