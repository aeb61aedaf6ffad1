//! OpenAI's Responses API: `POST …/responses`, whole or streamed.
//!
//! A response holds output items: a `message` with one `output_text` part, and/or one
//! `function_call` item per tool call. Its stream is the full event sequence the `openai` SDK's
//! `responses.stream()` helper accumulates from: `response.created`, `response.in_progress`,
//! per item `response.output_item.added` … `response.output_item.done` (with
//! `response.content_part.*`, `response.output_text.delta`/`.done` or
//! `response.function_call_arguments.delta`/`.done` between), then `response.completed` — or
//! `response.incomplete` when `max_output_tokens` cut the text short. Every event has an
//! `event:` line, and its data the same `type` and a `sequence_number`.

use http::Response;
use serde_json::{Value, json};

use crate::{
    answer::{self, Answer, ToolCall},
    body::ScriptedBody,
    call::{Call, json_answer, sse_answer},
    errors::ApiError,
    sse::{JsonStr, SseWriter},
};

/// `POST …/responses`.
pub fn create(call: &Call<'_>) -> Result<Response<ScriptedBody>, ApiError> {
    let input = call
        .field("input")
        .filter(|input| input.is_string() || input.is_array());
    let Some(input) = input else {
        return Err(ApiError::invalid_field(
            "input",
            "'input' must be a string or an array of input items",
        ));
    };
    // `instructions` is the Responses API's system prompt.
    let input_tokens = answer::prompt_tokens([call.field("instructions"), Some(input)]);
    let max_output_tokens = call.field("max_output_tokens").and_then(Value::as_u64);
    let answer = Answer::new(call.directives, call.raw_body, max_output_tokens);
    let output_tokens = answer.output_tokens();
    let cached_tokens = if call.directives.cache {
        input_tokens.min(4)
    } else {
        0
    };
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    });
    let shape = ResponseShape {
        call,
        id: call.id("resp", '_'),
        message_id: call.id("msg", '_'),
        status: if answer.hit_max_tokens {
            "incomplete"
        } else {
            "completed"
        },
    };
    let says_text = !answer.text.is_empty() || answer.tool_calls.is_empty();
    let mut output: Vec<Value> = Vec::with_capacity(answer.tool_calls.len() + 1);
    if says_text {
        output.push(shape.message_item(shape.status, &answer.text));
    }
    output.extend(
        answer
            .tool_calls
            .iter()
            .map(|&tool_call| function_call_item(tool_call, "completed", &tool_call.arguments())),
    );
    let finished = shape.response(shape.status, Value::Array(output), usage);
    if !call.stream {
        return Ok(json_answer(&finished, call.directives));
    }

    let mut events = EventWriter {
        sse: SseWriter::new(call.directives),
        sequence_number: 0,
    };
    let started = shape.response("in_progress", json!([]), Value::Null);
    events.emit("response.created", json!({ "response": started }));
    events.emit("response.in_progress", json!({ "response": started }));
    let mut output_index = 0;
    if says_text {
        shape.stream_message(&mut events, output_index, &answer);
        output_index += 1;
    }
    for &tool_call in &answer.tool_calls {
        stream_function_call(&mut events, output_index, tool_call);
        output_index += 1;
    }
    events.sse.before_finish();
    let terminal = if answer.hit_max_tokens {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.emit(terminal, json!({ "response": finished }));
    Ok(sse_answer(events.sse.into_body()))
}

/// What every rendering of one response shares.
struct ResponseShape<'a> {
    call: &'a Call<'a>,
    id: String,
    message_id: String,
    /// The final status: `completed`, or `incomplete` when the text hit `max_output_tokens`.
    status: &'static str,
}

impl ResponseShape<'_> {
    /// The `response` object at some `status`.
    fn response(&self, status: &str, output: Value, usage: Value) -> Value {
        let incomplete_details = if status == "incomplete" {
            json!({"reason": "max_output_tokens"})
        } else {
            Value::Null
        };
        let field = |name| self.call.field(name).cloned().unwrap_or(Value::Null);
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.call.created,
            "status": status,
            "error": null,
            "incomplete_details": incomplete_details,
            "instructions": field("instructions"),
            "max_output_tokens": field("max_output_tokens"),
            "model": self.call.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": self.call.field("tools").cloned().unwrap_or_else(|| json!([])),
            "top_p": 1.0,
            "usage": usage,
            "metadata": {},
        })
    }

    fn message_item(&self, status: &str, text: &str) -> Value {
        let content = if status == "in_progress" {
            json!([])
        } else {
            json!([output_text_part(text)])
        };
        json!({
            "id": self.message_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    fn stream_message(&self, events: &mut EventWriter, output_index: usize, answer: &Answer) {
        let item_id = self.message_id.as_str();
        let located = |mut fields: Value| {
            fields["item_id"] = item_id.into();
            fields["output_index"] = output_index.into();
            fields["content_index"] = 0.into();
            fields
        };
        events.emit(
            "response.output_item.added",
            json!({"output_index": output_index, "item": self.message_item("in_progress", "")}),
        );
        events.emit(
            "response.content_part.added",
            located(json!({ "part": output_text_part("") })),
        );
        for word in answer.text_deltas() {
            events.sse.before_delta();
            let sequence_number = events.next_sequence_number();
            events.sse.event(
                "response.output_text.delta",
                format_args!(
                    r#"{{"type":"response.output_text.delta","sequence_number":{sequence_number},"item_id":{},"output_index":{output_index},"content_index":0,"delta":{},"logprobs":[]}}"#,
                    JsonStr(item_id),
                    JsonStr(word),
                ),
            );
        }
        events.emit(
            "response.output_text.done",
            located(json!({"text": answer.text, "logprobs": []})),
        );
        events.emit(
            "response.content_part.done",
            located(json!({ "part": output_text_part(&answer.text) })),
        );
        events.emit(
            "response.output_item.done",
            json!({"output_index": output_index, "item": self.message_item(self.status, &answer.text)}),
        );
    }
}

fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

fn function_call_item(tool_call: ToolCall, status: &str, arguments: &str) -> Value {
    json!({
        "id": format!("fc_{}", tool_call.0),
        "type": "function_call",
        "status": status,
        "call_id": format!("call_{}", tool_call.0),
        "name": tool_call.name(),
        "arguments": arguments,
    })
}

fn stream_function_call(events: &mut EventWriter, output_index: usize, tool_call: ToolCall) {
    let item_id = format!("fc_{}", tool_call.0);
    events.emit(
        "response.output_item.added",
        json!({"output_index": output_index, "item": function_call_item(tool_call, "in_progress", "")}),
    );
    for fragment in tool_call.argument_fragments() {
        events.sse.before_delta();
        let sequence_number = events.next_sequence_number();
        events.sse.event(
            "response.function_call_arguments.delta",
            format_args!(
                r#"{{"type":"response.function_call_arguments.delta","sequence_number":{sequence_number},"item_id":"{item_id}","output_index":{output_index},"delta":{}}}"#,
                JsonStr(&fragment),
            ),
        );
    }
    let arguments = tool_call.arguments();
    events.emit(
        "response.function_call_arguments.done",
        json!({"item_id": item_id, "output_index": output_index, "name": tool_call.name(), "arguments": arguments}),
    );
    events.emit(
        "response.output_item.done",
        json!({"output_index": output_index, "item": function_call_item(tool_call, "completed", &arguments)}),
    );
}

/// Writes Responses events, numbering them.
struct EventWriter {
    sse: SseWriter,
    sequence_number: u64,
}

impl EventWriter {
    fn next_sequence_number(&mut self) -> u64 {
        let number = self.sequence_number;
        self.sequence_number += 1;
        number
    }

    /// An event whose data is `fields` plus its `type` and `sequence_number`.
    fn emit(&mut self, event_type: &str, mut fields: Value) {
        fields["type"] = event_type.into();
        fields["sequence_number"] = self.next_sequence_number().into();
        self.sse.event(event_type, format_args!("{fields}"));
    }
}
