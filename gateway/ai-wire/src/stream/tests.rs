//! Stream translation, specified by the streams a client receives.

use serde_json::{Value, json};

use super::*;
use crate::sse::{SseParser, frame};

// ---- fixtures -----------------------------------------------------------------------------------

fn anthropic(data: Value) -> SseEvent {
    let kind = data["type"].as_str().map(str::to_owned);
    SseEvent {
        event: kind,
        data: data.to_string(),
    }
}

fn openai(data: Value) -> SseEvent {
    SseEvent::new(None, data.to_string())
}

fn done() -> SseEvent {
    SseEvent::new(None, "[DONE]")
}

fn message_start(usage: Value) -> SseEvent {
    anthropic(
        json!({"type": "message_start", "message": {"id": "msg_01", "type": "message",
        "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null, "usage": usage}}),
    )
}

fn text_block(index: u64) -> SseEvent {
    anthropic(json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "text", "text": ""}}))
}

fn text_delta(index: u64, text: &str) -> SseEvent {
    anthropic(json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "text_delta", "text": text}}))
}

fn tool_block(index: u64, id: &str, name: &str) -> SseEvent {
    anthropic(json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}))
}

fn json_delta(index: u64, partial_json: &str) -> SseEvent {
    anthropic(json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial_json}}))
}

fn block_stop(index: u64) -> SseEvent {
    anthropic(json!({"type": "content_block_stop", "index": index}))
}

fn message_delta(stop_reason: &str, usage: Value) -> SseEvent {
    anthropic(json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": usage}))
}

fn message_stop() -> SseEvent {
    anthropic(json!({"type": "message_stop"}))
}

fn ping() -> SseEvent {
    anthropic(json!({"type": "ping"}))
}

/// An Anthropic answer: some text, then two parallel tool calls.
fn anthropic_text_then_two_tool_calls() -> Vec<SseEvent> {
    vec![
        message_start(json!({"input_tokens": 10, "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 2, "output_tokens": 1})),
        text_block(0),
        ping(),
        text_delta(0, "Let me "),
        text_delta(0, "check."),
        block_stop(0),
        tool_block(1, "toolu_a", "get_weather"),
        json_delta(1, ""),
        json_delta(1, "{\"city\": "),
        json_delta(1, "\"Paris\"}"),
        block_stop(1),
        tool_block(2, "toolu_b", "get_time"),
        json_delta(2, "{\"zone\":"),
        json_delta(2, " \"CET\"}"),
        block_stop(2),
        message_delta("tool_use", json!({"output_tokens": 40})),
        message_stop(),
    ]
}

fn chunk(id: &str, delta: Value, finish_reason: Value) -> SseEvent {
    openai(
        json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], "usage": null}),
    )
}

fn usage_chunk(prompt: u64, cached: u64, completion: u64) -> SseEvent {
    openai(
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
        "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}}),
    )
}

fn tool_call_start(index: u64, id: &str, name: &str) -> Value {
    json!({"tool_calls": [{"index": index, "id": id, "type": "function",
        "function": {"name": name, "arguments": ""}}]})
}

fn tool_call_fragment(index: u64, arguments: &str) -> Value {
    json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
}

/// An OpenAI answer: some text, then two parallel tool calls, then the usage chunk.
fn openai_text_then_two_tool_calls() -> Vec<SseEvent> {
    vec![
        chunk(
            "chatcmpl-1",
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ),
        chunk("chatcmpl-1", json!({"content": "Let me "}), Value::Null),
        chunk("chatcmpl-1", json!({"content": "check."}), Value::Null),
        chunk(
            "chatcmpl-1",
            tool_call_start(0, "call_a", "get_weather"),
            Value::Null,
        ),
        chunk(
            "chatcmpl-1",
            tool_call_fragment(0, "{\"city\": "),
            Value::Null,
        ),
        chunk(
            "chatcmpl-1",
            tool_call_fragment(0, "\"Paris\"}"),
            Value::Null,
        ),
        chunk(
            "chatcmpl-1",
            tool_call_start(1, "call_b", "get_time"),
            Value::Null,
        ),
        chunk(
            "chatcmpl-1",
            tool_call_fragment(1, "{\"zone\": \"CET\"}"),
            Value::Null,
        ),
        chunk("chatcmpl-1", json!({}), json!("tool_calls")),
        usage_chunk(16, 4, 40),
        done(),
    ]
}

/// Every step of a stream, in order.
fn run(stream: &mut dyn StreamTranslator, events: &[SseEvent]) -> Vec<Step> {
    events.iter().map(|event| stream.on_event(event)).collect()
}

/// What the client receives, parsed back as SSE events.
fn received(steps: &[Step]) -> Vec<SseEvent> {
    let mut parser = SseParser::new(1 << 20);
    let mut events = Vec::new();
    for frame in steps.iter().flat_map(|step| &step.frames) {
        let before = events.len();
        parser.push(frame, &mut events).unwrap();
        assert_eq!(
            events.len(),
            before + 1,
            "every frame is exactly one event: {frame:?}"
        );
    }
    assert!(!parser.has_partial());
    events
}

/// The JSON of every event the client receives, `[DONE]` left out.
fn received_json(steps: &[Step]) -> Vec<Value> {
    received(steps)
        .iter()
        .filter(|event| event.data != "[DONE]")
        .map(|event| serde_json::from_str(&event.data).unwrap())
        .collect()
}

/// Each OpenAI tool call as (index, id, name, joined arguments), from the chunks a client receives.
fn joined_tool_calls(chunks: &[Value]) -> Vec<(u64, String, String, String)> {
    let mut calls: Vec<(u64, String, String, String)> = Vec::new();
    for chunk in chunks {
        let Some(fragments) = chunk["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for fragment in fragments {
            let index = fragment["index"].as_u64().unwrap();
            let arguments = fragment["function"]["arguments"].as_str().unwrap_or("");
            match calls.iter_mut().find(|call| call.0 == index) {
                Some(call) => call.3.push_str(arguments),
                None => calls.push((
                    index,
                    fragment["id"].as_str().unwrap().to_owned(),
                    fragment["function"]["name"].as_str().unwrap().to_owned(),
                    arguments.to_owned(),
                )),
            }
        }
    }
    calls
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect()
}

// ---- Anthropic upstream → OpenAI client ---------------------------------------------------------

#[test]
fn anthropic_parallel_tool_calls_become_openai_tool_indexes_0_and_1() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "chat-smart", false);
    let chunks = received_json(&run(stream.as_mut(), &anthropic_text_then_two_tool_calls()));
    let calls = joined_tool_calls(&chunks);
    assert_eq!(
        calls
            .iter()
            .map(|(index, id, name, _)| (*index, id.as_str(), name.as_str()))
            .collect::<Vec<_>>(),
        [(0, "toolu_a", "get_weather"), (1, "toolu_b", "get_time")]
    );
    let arguments: Vec<Value> = calls
        .iter()
        .map(|call| serde_json::from_str(&call.3).expect("joined arguments are valid JSON"))
        .collect();
    assert_eq!(
        arguments,
        [json!({"city": "Paris"}), json!({"zone": "CET"})]
    );
}

#[test]
fn anthropic_text_streams_as_delta_content_after_a_role_chunk() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "chat-smart", false);
    let chunks = received_json(&run(stream.as_mut(), &anthropic_text_then_two_tool_calls()));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Let me check.");
}

#[test]
fn anthropic_tool_use_stop_is_finish_reason_tool_calls_then_done() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "chat-smart", false);
    let steps = run(stream.as_mut(), &anthropic_text_then_two_tool_calls());
    let events = received(&steps);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks = received_json(&steps);
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|chunk| &chunk["choices"][0]["finish_reason"])
        .filter(|finish| !finish.is_null())
        .collect();
    assert_eq!(finishes, [&json!("tool_calls")]);
    assert!(steps.last().unwrap().done);
}

#[test]
fn every_openai_chunk_names_the_completion_and_the_client_model() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "chat-smart", true);
    for chunk in received_json(&run(stream.as_mut(), &anthropic_text_then_two_tool_calls())) {
        assert_eq!(chunk["id"], "chatcmpl-msg_01");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "chat-smart");
        assert!(chunk["created"].is_u64());
    }
}

#[test]
fn anthropic_usage_is_merged_from_message_start_and_message_delta() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", true);
    let chunks = received_json(&run(stream.as_mut(), &anthropic_text_then_two_tool_calls()));
    let expected = Usage {
        input: 10,
        cache_read: 4,
        cache_write: 2,
        output: 40,
    };
    assert_eq!(stream.usage(), expected);
    assert!(stream.usage_reported());
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 16);
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        4
    );
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 40);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 56);
}

#[test]
fn message_delta_input_tokens_override_message_start() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    run(
        stream.as_mut(),
        &[
            message_start(json!({"input_tokens": 0, "output_tokens": 1})),
            message_delta("end_turn", json!({"input_tokens": 25, "output_tokens": 9})),
        ],
    );
    assert_eq!((stream.usage().input, stream.usage().output), (25, 9));
}

#[test]
fn when_the_client_asked_for_usage_every_other_chunk_says_usage_null() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", true);
    let chunks = received_json(&run(stream.as_mut(), &anthropic_text_then_two_tool_calls()));
    let (usage_chunk, others) = chunks.split_last().unwrap();
    assert!(usage_chunk["usage"].is_object());
    assert!(
        others
            .iter()
            .all(|chunk| chunk.get("usage") == Some(&Value::Null))
    );
}

#[test]
fn when_the_client_did_not_ask_there_is_no_usage_chunk_but_usage_is_exact() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let chunks = received_json(&run(stream.as_mut(), &anthropic_text_then_two_tool_calls()));
    assert!(chunks.iter().all(|chunk| chunk.get("usage").is_none()));
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["choices"].as_array().is_some_and(|c| c.len() == 1))
    );
    assert_eq!(stream.usage().prompt_tokens(), 16);
    assert_eq!(stream.usage().output, 40);
}

#[test]
fn role_chunk_ping_and_empty_text_block_are_not_content() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let steps = run(
        stream.as_mut(),
        &[
            message_start(json!({"input_tokens": 3})),
            ping(),
            text_block(0),
            text_delta(0, "Hi"),
        ],
    );
    let content: Vec<bool> = steps.iter().map(|step| step.content).collect();
    assert_eq!(content, [false, false, false, true]);
    assert_eq!(
        steps[0].frames.len(),
        1,
        "message_start gives the role chunk"
    );
    assert!(steps[1].frames.is_empty(), "ping is dropped");
}

#[test]
fn a_tool_call_start_is_content() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let steps = run(
        stream.as_mut(),
        &[message_start(json!({})), tool_block(0, "toolu_a", "f")],
    );
    assert!(steps[1].content);
}

#[test]
fn thinking_is_dropped_and_does_not_shift_tool_indexes() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let events = [
        message_start(json!({})),
        anthropic(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": ""}})),
        anthropic(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hmm"}})),
        anthropic(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig"}})),
        block_stop(0),
        tool_block(1, "toolu_a", "f"),
        json_delta(1, "{}"),
        message_delta("tool_use", json!({"output_tokens": 5})),
        message_stop(),
    ];
    let steps = run(stream.as_mut(), &events);
    assert!(
        steps[1..4]
            .iter()
            .all(|step| step.frames.is_empty() && !step.content)
    );
    let chunks = received_json(&steps);
    assert!(
        chunks
            .iter()
            .all(|chunk| !chunk.to_string().contains("hmm"))
    );
    assert_eq!(joined_tool_calls(&chunks)[0].0, 0);
}

#[test]
fn every_stop_reason_streams_its_finish_reason() {
    for (stop_reason, finish_reason) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ] {
        let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
        let step = run(
            stream.as_mut(),
            &[
                message_start(json!({})),
                message_delta(stop_reason, json!({})),
            ],
        )
        .pop()
        .unwrap();
        assert!(step.content);
        let chunk: Value = serde_json::from_str(&received(&[step])[0].data).unwrap();
        assert_eq!(
            chunk["choices"][0]["finish_reason"], finish_reason,
            "{stop_reason}"
        );
    }
}

#[test]
fn an_anthropic_error_event_is_an_upstream_error_with_no_frames() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let step = stream.on_event(&anthropic(
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    assert_eq!(step.upstream_error.as_deref(), Some("Overloaded"));
    assert!(step.frames.is_empty() && !step.done);
}

#[test]
fn malformed_upstream_json_is_an_upstream_error() {
    for client in [Dialect::OpenAi, Dialect::Anthropic] {
        for upstream in [Dialect::OpenAi, Dialect::Anthropic] {
            let mut stream = translator(client, upstream, "m", true);
            let step = stream.on_event(&SseEvent::new(
                Some("content_block_delta"),
                "{\"type\": \"content_",
            ));
            let error = step.upstream_error.expect("an upstream error");
            assert!(error.contains("not JSON"), "{error}");
            assert!(step.frames.is_empty());
        }
    }
}

#[test]
fn a_cut_anthropic_stream_counts_the_output_that_streamed() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    run(
        stream.as_mut(),
        &[
            message_start(json!({"input_tokens": 10, "output_tokens": 1})),
            text_block(0),
            text_delta(0, "abcdefgh"),
        ],
    );
    assert_eq!(
        stream.usage().input,
        10,
        "the prompt count is the upstream's"
    );
    assert_eq!(stream.usage().output, 2, "eight characters streamed");
    assert!(!stream.usage_reported());
    assert!(!stream.saw_finish());
}

#[test]
fn closing_a_cut_anthropic_stream_gives_a_finish_chunk_and_done() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    run(
        stream.as_mut(),
        &[message_start(json!({})), tool_block(0, "toolu_a", "f")],
    );
    let closing = Step {
        frames: stream.closing_frames(),
        ..Step::default()
    };
    let events = received(std::slice::from_ref(&closing));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let finish: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert!(stream.closing_frames().is_empty(), "closed once");
    assert_eq!(
        stream.on_event(&message_stop()),
        Step::default(),
        "nothing after the end"
    );
}

#[test]
fn message_stop_without_message_delta_still_finishes() {
    let mut stream = translator(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let steps = run(
        stream.as_mut(),
        &[
            message_start(json!({})),
            text_delta(0, "Hi"),
            message_stop(),
        ],
    );
    let chunks = received_json(&steps);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

// ---- OpenAI upstream → Anthropic client ---------------------------------------------------------

#[test]
fn openai_stream_gives_every_anthropic_event_its_event_line() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "chat-smart", false);
    let events = received(&run(stream.as_mut(), &openai_text_then_two_tool_calls()));
    for event in &events {
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(event.event.as_deref(), data["type"].as_str());
    }
}

#[test]
fn openai_text_and_tool_calls_become_one_block_each_closed_in_order() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "chat-smart", false);
    let events = received_json(&run(stream.as_mut(), &openai_text_then_two_tool_calls()));
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let starts: Vec<(u64, &Value)> = events
        .iter()
        .filter(|event| event["type"] == "content_block_start")
        .map(|event| (event["index"].as_u64().unwrap(), &event["content_block"]))
        .collect();
    assert_eq!(
        starts,
        [
            (0, &json!({"type": "text", "text": ""})),
            (
                1,
                &json!({"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}})
            ),
            (
                2,
                &json!({"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}})
            ),
        ]
    );
    let arguments_of = |index: u64| -> Value {
        let joined: String = events
            .iter()
            .filter(|event| event["type"] == "content_block_delta" && event["index"] == index)
            .map(|event| event["delta"]["partial_json"].as_str().unwrap())
            .collect();
        serde_json::from_str(&joined).unwrap()
    };
    assert_eq!(arguments_of(1), json!({"city": "Paris"}));
    assert_eq!(arguments_of(2), json!({"zone": "CET"}));
}

#[test]
fn openai_message_start_names_the_message_and_the_client_model() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "chat-smart", false);
    let events = received_json(&run(stream.as_mut(), &openai_text_then_two_tool_calls()));
    let message = &events[0]["message"];
    assert_eq!(message["id"], "msg_chatcmpl-1");
    assert_eq!(message["model"], "chat-smart");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"], json!([]));
    assert_eq!(
        message["usage"]["input_tokens"], 0,
        "unknown until the usage chunk"
    );
}

#[test]
fn openai_finish_waits_for_the_usage_chunk_then_message_stop_at_done() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let steps = run(stream.as_mut(), &openai_text_then_two_tool_calls());
    let [.., finish, usage, end] = steps.as_slice() else {
        unreachable!()
    };
    assert!(finish.content);
    assert_eq!(
        types(&received_json(std::slice::from_ref(finish))),
        ["content_block_stop"]
    );
    let delta = received_json(std::slice::from_ref(usage));
    assert_eq!(types(&delta), ["message_delta"]);
    assert_eq!(delta[0]["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta[0]["usage"],
        json!({"input_tokens": 12, "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 0, "output_tokens": 40})
    );
    assert_eq!(
        types(&received_json(std::slice::from_ref(end))),
        ["message_stop"]
    );
    assert!(end.done);
    assert_eq!(stream.usage().prompt_tokens(), 16);
    assert!(stream.usage_reported());
}

#[test]
fn openai_stream_without_finish_reason_still_ends_with_message_delta_and_message_stop() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let steps = run(
        stream.as_mut(),
        &[
            chunk(
                "c",
                json!({"role": "assistant", "content": "Hi"}),
                Value::Null,
            ),
            done(),
        ],
    );
    let events = received_json(&steps);
    assert_eq!(
        types(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[4]["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        events[4]["usage"]["output_tokens"], 1,
        "counted: one fragment"
    );
    assert!(steps[1].done);
}

#[test]
fn openai_stream_without_usage_chunk_sends_message_delta_at_done() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let steps = run(
        stream.as_mut(),
        &[
            chunk("c", json!({"content": "Hi"}), Value::Null),
            chunk("c", json!({}), json!("length")),
            done(),
        ],
    );
    let at_done = received_json(&steps[2..]);
    assert_eq!(types(&at_done), ["message_delta", "message_stop"]);
    assert_eq!(at_done[0]["delta"]["stop_reason"], "max_tokens");
    assert!(!stream.usage_reported());
}

#[test]
fn openai_role_chunk_opens_no_text_block_and_is_not_content() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let step = stream.on_event(&chunk(
        "c",
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    assert!(!step.content);
    assert_eq!(types(&received_json(&[step])), ["message_start"]);
}

#[test]
fn openai_tool_calls_with_finish_stop_still_stop_for_tool_use() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let steps = run(
        stream.as_mut(),
        &[
            chunk("c", tool_call_start(0, "call_a", "f"), Value::Null),
            chunk("c", json!({}), json!("stop")),
            done(),
        ],
    );
    let events = received_json(&steps);
    let delta = events
        .iter()
        .find(|event| event["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[test]
fn openai_text_and_tool_call_in_one_chunk_keep_both() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let mut delta = tool_call_start(0, "call_a", "lookup");
    delta["content"] = json!("Looking.");
    let events = received_json(&[stream.on_event(&chunk("c", delta, Value::Null))]);
    assert_eq!(events[2]["delta"]["text"], "Looking.");
    assert_eq!(events[4]["content_block"]["name"], "lookup");
}

#[test]
fn an_openai_error_chunk_is_an_upstream_error_with_no_frames() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let step = stream.on_event(&openai(
        json!({"error": {"message": "server overloaded", "type": "server_error"}}),
    ));
    assert_eq!(step.upstream_error.as_deref(), Some("server overloaded"));
    assert!(step.frames.is_empty());
}

#[test]
fn closing_a_cut_openai_stream_closes_the_open_block_and_the_message() {
    let mut stream = translator(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    stream.on_event(&chunk("c", json!({"content": "Hel"}), Value::Null));
    let closing = Step {
        frames: stream.closing_frames(),
        ..Step::default()
    };
    assert_eq!(
        types(&received_json(&[closing])),
        ["content_block_stop", "message_delta", "message_stop"]
    );
}

// ---- same dialect -------------------------------------------------------------------------------

#[test]
fn openai_passthrough_drops_the_usage_chunk_the_client_did_not_ask_for() {
    let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "ignored", false);
    let events = openai_text_then_two_tool_calls();
    let steps = run(stream.as_mut(), &events);
    let usage_step = &steps[events.len() - 2];
    assert!(usage_step.frames.is_empty());
    assert!(!usage_step.content);
    assert_eq!(
        stream.usage(),
        Usage {
            input: 12,
            cache_read: 4,
            cache_write: 0,
            output: 40
        }
    );
    assert!(stream.usage_reported());
}

#[test]
fn openai_passthrough_keeps_the_usage_chunk_the_client_asked_for() {
    let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "ignored", true);
    let events = openai_text_then_two_tool_calls();
    let steps = run(stream.as_mut(), &events);
    assert_eq!(steps[events.len() - 2].frames.len(), 1);
}

#[test]
fn openai_passthrough_frames_carry_the_upstream_data_unchanged() {
    let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "ignored", false);
    let events = openai_text_then_two_tool_calls();
    for event in events
        .iter()
        .filter(|event| !event.data.contains("\"choices\":[]"))
    {
        let step = stream.on_event(event);
        assert_eq!(step.frames, vec![frame(None, &event.data)]);
    }
}

#[test]
fn openai_passthrough_content_is_text_tool_calls_and_finish_only() {
    let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "m", false);
    let content: Vec<bool> = run(stream.as_mut(), &openai_text_then_two_tool_calls())
        .iter()
        .map(|step| step.content)
        .collect();
    assert_eq!(
        content,
        [
            false, true, true, true, true, true, true, true, true, false, false
        ]
    );
}

#[test]
fn openai_passthrough_done_ends_the_stream() {
    let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "m", false);
    assert!(stream.on_event(&done()).done);
    assert!(stream.closing_frames().is_empty());
}

#[test]
fn a_cut_openai_passthrough_counts_what_streamed() {
    let mut stream = translator(Dialect::OpenAi, Dialect::OpenAi, "m", false);
    run(
        stream.as_mut(),
        &[
            chunk("c", json!({"content": "a"}), Value::Null),
            chunk("c", json!({"content": "b"}), Value::Null),
            chunk("c", json!({"content": "c"}), Value::Null),
        ],
    );
    assert_eq!(stream.usage().output, 3);
    assert!(!stream.usage_reported());
    assert_eq!(stream.closing_frames(), vec![frame(None, "[DONE]")]);
}

#[test]
fn anthropic_passthrough_keeps_every_event_with_its_event_line() {
    let mut stream = translator(Dialect::Anthropic, Dialect::Anthropic, "ignored", false);
    let events = anthropic_text_then_two_tool_calls();
    let steps = run(stream.as_mut(), &events);
    assert_eq!(received(&steps), events);
    assert!(steps.last().unwrap().done);
    assert_eq!(stream.usage().prompt_tokens(), 16);
    assert_eq!(stream.usage().output, 40);
    assert!(stream.usage_reported());
}

#[test]
fn anthropic_passthrough_adds_a_missing_event_line_from_the_type() {
    let mut stream = translator(Dialect::Anthropic, Dialect::Anthropic, "m", false);
    let step = stream.on_event(&SseEvent::new(None, r#"{"type":"ping"}"#));
    assert_eq!(received(&[step])[0].event.as_deref(), Some("ping"));
}

#[test]
fn anthropic_passthrough_content_starts_with_the_first_delta() {
    let mut stream = translator(Dialect::Anthropic, Dialect::Anthropic, "m", false);
    let content: Vec<bool> = run(
        stream.as_mut(),
        &[
            message_start(json!({})),
            ping(),
            text_block(0),
            text_delta(0, "Hi"),
        ],
    )
    .iter()
    .map(|step| step.content)
    .collect();
    assert_eq!(content, [false, false, false, true]);
}

#[test]
fn anthropic_passthrough_error_event_is_an_upstream_error() {
    let mut stream = translator(Dialect::Anthropic, Dialect::Anthropic, "m", false);
    let step = stream.on_event(&anthropic(
        json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
    ));
    assert_eq!(step.upstream_error.as_deref(), Some("boom"));
    assert!(step.frames.is_empty());
}

#[test]
fn closing_a_cut_anthropic_passthrough_closes_open_blocks_and_the_message() {
    let mut stream = translator(Dialect::Anthropic, Dialect::Anthropic, "m", false);
    run(
        stream.as_mut(),
        &[
            message_start(json!({"input_tokens": 5})),
            text_block(0),
            text_delta(0, "Hi"),
        ],
    );
    let closing = Step {
        frames: stream.closing_frames(),
        ..Step::default()
    };
    assert_eq!(
        types(&received_json(&[closing])),
        ["content_block_stop", "message_delta", "message_stop"]
    );
}

#[test]
fn translators_report_the_client_dialect() {
    for client in [Dialect::OpenAi, Dialect::Anthropic] {
        for upstream in [Dialect::OpenAi, Dialect::Anthropic] {
            assert_eq!(translator(client, upstream, "m", false).dialect(), client);
        }
    }
}
