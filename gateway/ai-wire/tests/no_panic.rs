//! Every public function takes any input without panicking: arbitrary bytes for the SSE parser,
//! arbitrary JSON (and JSON shaped like each wire format, so the deep paths are reached) for the
//! rest. Where a property beyond "no panic" is cheap to state, it is asserted too.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};
use weir_ai_wire::errors::{ApiError, ErrorKind, provider_error_message};
use weir_ai_wire::sse::{SseEvent, SseParser, frame, frame_json};
use weir_ai_wire::stream::translator;
use weir_ai_wire::tokens::estimate_prompt_tokens;
use weir_ai_wire::translate::{
    chat_response_to_messages, chat_to_messages, force_include_usage, messages_response_to_chat,
    messages_to_chat, requested_max_tokens,
};
use weir_ai_wire::usage::Usage;
use weir_ai_wire::{Dialect, translate};

const KEYS: &[&str] = &[
    "role",
    "content",
    "type",
    "text",
    "tool_calls",
    "function",
    "arguments",
    "name",
    "id",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "image_url",
    "url",
    "source",
    "data",
    "media_type",
    "input",
    "tool_call_id",
    "tool_use_id",
    "choices",
    "delta",
    "message",
    "usage",
    "index",
    "finish_reason",
    "stop_reason",
    "content_block",
    "partial_json",
    "error",
    "max_tokens",
    "stream",
    "parallel_tool_calls",
    "stop",
    "n",
    "input_schema",
    "parameters",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "file",
    "file_data",
    "refusal",
    "is_error",
];

const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image_url",
    "image",
    "file",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "auto",
    "required",
    "any",
    "none",
    "base64",
    "url",
    "custom",
    "stop",
    "length",
    "tool_calls",
    "end_turn",
    "max_tokens",
    "refusal",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "data:image/png;base64,AAAA",
    "data:,x",
    "https://example.com/a.png",
    "{\"a\":1}",
    "{",
    "[1]",
    "",
    " ",
    "[DONE]",
    "é",
    "\u{1F600}",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(WORDS).prop_map(str::to_owned), 1 => ".{0,12}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(
            |float| serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)
        ),
        (0u64..64).prop_map(Value::from),
        word().prop_map(Value::String),
    ]
}

/// Any JSON, its keys mostly the wire formats' own.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((select(KEYS).prop_map(str::to_owned), inner), 0..7)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// An object with each field present nine times out of ten.
fn shaped(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let fields: Vec<_> = fields
        .into_iter()
        .map(|(key, value)| {
            prop::option::weighted(0.9, value.prop_map(move |value| (key.to_owned(), value)))
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// Mostly one of the values the format expects, sometimes anything.
fn pick(expected: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        12 => select(expected).prop_map(Value::from),
        1 => word().prop_map(Value::String),
        1 => any_json(),
    ]
    .boxed()
}

fn json_text() -> BoxedStrategy<Value> {
    pick(&[
        "{\"city\":\"Paris\"}",
        "{}",
        "",
        "{\"city\": ",
        "[1]",
        "null",
    ])
}

fn object() -> BoxedStrategy<Value> {
    prop_oneof![4 => Just(serde_json::json!({"type": "object", "properties": {}})), 1 => any_json()]
        .boxed()
}

fn list(strategy: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        12 => prop::collection::vec(strategy, 0..4).prop_map(Value::Array),
        1 => any_json(),
    ]
    .boxed()
}

fn count() -> BoxedStrategy<Value> {
    prop_oneof![8 => (1u64..5000).prop_map(Value::from), 1 => leaf()].boxed()
}

fn part() -> BoxedStrategy<Value> {
    let source = shaped(vec![
        ("type", pick(&["base64", "url", "text"])),
        ("media_type", pick(&["image/png", "application/pdf"])),
        ("data", pick(&["AAAA"])),
        ("url", pick(&["https://example.com/a.png"])),
    ]);
    let text_block = shaped(vec![
        ("type", pick(&["text", "image"])),
        ("text", pick(&["hi", ""])),
    ]);
    shaped(vec![
        (
            "type",
            pick(&[
                "text",
                "image_url",
                "file",
                "image",
                "document",
                "tool_use",
                "tool_result",
                "thinking",
                "refusal",
            ]),
        ),
        ("text", pick(&["hello", "", "é\u{1F600}"])),
        ("refusal", pick(&["no"])),
        (
            "image_url",
            prop_oneof![
                shaped(vec![(
                    "url",
                    pick(&[
                        "data:image/png;base64,AAAA",
                        "https://example.com/a.png",
                        "ftp://x",
                        "data:,x"
                    ])
                )]),
                pick(&["https://example.com/a.png"])
            ]
            .boxed(),
        ),
        ("source", source),
        (
            "file",
            shaped(vec![(
                "file_data",
                pick(&["data:application/pdf;base64,AAAA", "x"]),
            )]),
        ),
        ("id", pick(&["toolu_1", "call_1"])),
        ("name", pick(&["get_weather"])),
        (
            "input",
            prop_oneof![Just(serde_json::json!({"city": "Paris"})), any_json()].boxed(),
        ),
        ("tool_use_id", pick(&["toolu_1"])),
        (
            "content",
            prop_oneof![pick(&["result"]), list(text_block)].boxed(),
        ),
        (
            "cache_control",
            prop_oneof![Just(serde_json::json!({"type": "ephemeral"})), any_json()].boxed(),
        ),
    ])
}

fn tool_call() -> BoxedStrategy<Value> {
    shaped(vec![
        (
            "index",
            prop_oneof![(0u64..3).prop_map(Value::from), leaf()].boxed(),
        ),
        ("id", pick(&["call_1", "call_2", ""])),
        ("type", pick(&["function"])),
        (
            "function",
            shaped(vec![
                ("name", pick(&["get_weather", ""])),
                ("arguments", json_text()),
            ]),
        ),
    ])
}

fn message() -> BoxedStrategy<Value> {
    shaped(vec![
        (
            "role",
            pick(&["system", "developer", "user", "assistant", "tool"]),
        ),
        (
            "content",
            prop_oneof![pick(&["hello", ""]), list(part()), Just(Value::Null)].boxed(),
        ),
        ("tool_calls", list(tool_call())),
        ("tool_call_id", pick(&["call_1"])),
        ("refusal", pick(&["", "no"])),
    ])
}

fn request() -> BoxedStrategy<Value> {
    let tool = shaped(vec![
        ("type", pick(&["function", "custom", "web_search_20250305"])),
        ("name", pick(&["get_weather"])),
        ("input_schema", object()),
        (
            "function",
            shaped(vec![
                ("name", pick(&["get_weather"])),
                ("parameters", object()),
            ]),
        ),
    ]);
    let tool_choice = prop_oneof![
        pick(&["auto", "required", "none"]),
        shaped(vec![
            ("type", pick(&["function", "auto", "any", "tool", "none"])),
            ("name", pick(&["get_weather"])),
            ("function", shaped(vec![("name", pick(&["get_weather"]))])),
            (
                "disable_parallel_tool_use",
                any::<bool>().prop_map(Value::Bool).boxed()
            ),
        ]),
    ];
    shaped(vec![
        ("model", pick(&["m"])),
        ("messages", list(message())),
        (
            "system",
            prop_oneof![pick(&["be brief"]), list(part())].boxed(),
        ),
        ("tools", list(tool)),
        ("tool_choice", tool_choice.boxed()),
        (
            "parallel_tool_calls",
            prop_oneof![any::<bool>().prop_map(Value::Bool), leaf()].boxed(),
        ),
        ("max_tokens", count()),
        (
            "stop",
            prop_oneof![pick(&["END"]), list(pick(&["a"]))].boxed(),
        ),
        (
            "stream",
            prop_oneof![any::<bool>().prop_map(Value::Bool), leaf()].boxed(),
        ),
        (
            "temperature",
            prop_oneof![Just(Value::from(0.5)), leaf()].boxed(),
        ),
        ("user", pick(&["alice"])),
        ("metadata", shaped(vec![("user_id", pick(&["alice"]))])),
    ])
}

fn usage() -> BoxedStrategy<Value> {
    shaped(vec![
        ("prompt_tokens", count()),
        ("completion_tokens", count()),
        ("input_tokens", count()),
        ("output_tokens", count()),
        ("cache_read_input_tokens", count()),
        (
            "prompt_tokens_details",
            shaped(vec![("cached_tokens", count())]),
        ),
    ])
}

fn response() -> BoxedStrategy<Value> {
    let choice = shaped(vec![
        (
            "index",
            prop_oneof![4 => Just(Value::from(0)), 1 => leaf()].boxed(),
        ),
        ("message", message()),
        ("delta", message()),
        (
            "finish_reason",
            pick(&["stop", "length", "tool_calls", "content_filter"]),
        ),
    ]);
    let content_block = shaped(vec![
        ("type", pick(&["text", "tool_use", "thinking"])),
        ("text", pick(&["", "hi"])),
        ("id", pick(&["toolu_1"])),
        ("name", pick(&["get_weather"])),
        (
            "input",
            prop_oneof![Just(serde_json::json!({})), any_json()].boxed(),
        ),
    ]);
    shaped(vec![
        ("id", pick(&["msg_1", "chatcmpl-1"])),
        (
            "type",
            pick(&[
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
                "ping",
                "error",
                "message",
            ]),
        ),
        (
            "index",
            prop_oneof![(0u64..4).prop_map(Value::from), leaf()].boxed(),
        ),
        ("content", list(part())),
        ("content_block", content_block),
        (
            "delta",
            shaped(vec![
                (
                    "type",
                    pick(&["text_delta", "input_json_delta", "thinking_delta"]),
                ),
                ("text", pick(&["hi", ""])),
                ("partial_json", json_text()),
                ("stop_reason", pick(&["end_turn", "tool_use", "max_tokens"])),
                ("content", pick(&["hi", ""])),
                ("tool_calls", list(tool_call())),
            ]),
        ),
        ("choices", list(choice)),
        (
            "message",
            shaped(vec![("id", pick(&["msg_1"])), ("usage", usage())]),
        ),
        ("stop_reason", pick(&["end_turn", "tool_use"])),
        ("usage", prop_oneof![usage(), Just(Value::Null)].boxed()),
        (
            "error",
            prop_oneof![1 => shaped(vec![("message", pick(&["boom"]))]), 8 => Just(Value::Null)]
                .boxed(),
        ),
    ])
}

fn sse_event() -> impl Strategy<Value = SseEvent> {
    let data = prop_oneof![
        4 => response().prop_map(|data| data.to_string()),
        1 => any_json().prop_map(|data| data.to_string()),
        1 => ".{0,40}",
        1 => Just("[DONE]".to_owned()),
    ];
    let event = prop::option::of(prop_oneof![
        4 => select(&["message_start", "content_block_start", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop", "ping", "error"][..]).prop_map(str::to_owned),
        1 => word(),
    ]);
    (event, data).prop_map(|(event, data)| SseEvent { event, data })
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::OpenAi), Just(Dialect::Anthropic)]
}

/// Parses frames back, asserting each is one whole event.
fn assert_whole_events(frames: &[bytes::Bytes], named_events: bool) -> Result<(), TestCaseError> {
    let mut parser = SseParser::new(usize::MAX);
    for frame in frames {
        let mut events = Vec::new();
        parser.push(frame, &mut events).unwrap();
        prop_assert_eq!(events.len(), 1, "one frame, one event: {:?}", frame);
        if named_events {
            prop_assert!(
                events[0].event.is_some(),
                "Anthropic frames name their event: {:?}",
                frame
            );
        }
    }
    prop_assert!(!parser.has_partial());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sse_parser_takes_any_bytes_in_any_chunking(bytes in prop::collection::vec(any::<u8>(), 0..512),
                                                   mut cuts in prop::collection::vec(0usize..512, 0..8),
                                                   max in 0usize..128) {
        let mut whole = Vec::new();
        let whole_result = SseParser::new(usize::MAX).push(&bytes, &mut whole);
        prop_assert!(whole_result.is_ok());

        cuts.retain(|cut| *cut <= bytes.len());
        cuts.sort_unstable();
        let mut chunked = Vec::new();
        let mut parser = SseParser::new(usize::MAX);
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            parser.push(&bytes[start..cut], &mut chunked).unwrap();
            start = cut;
        }
        prop_assert_eq!(chunked, whole);

        let mut limited = SseParser::new(max);
        let _ = limited.push(&bytes, &mut Vec::new());
        let _ = limited.has_partial();
    }

    #[test]
    fn frames_round_trip_any_text(event in prop::option::of(".{0,8}"), data in ".{0,64}") {
        let mut parsed = Vec::new();
        SseParser::new(usize::MAX).push(&frame(event.as_deref(), &data), &mut parsed).unwrap();
        prop_assert_eq!(parsed.len(), 1);
        prop_assert_eq!(parsed[0].data.replace("\r\n", "\n").replace('\r', "\n"),
                        data.replace("\r\n", "\n").replace('\r', "\n"));
        let _ = frame_json(event.as_deref(), &Value::String(data));
    }

    #[test]
    fn usage_errors_and_tokens_take_any_json(value in any_json(), status in any::<u16>()) {
        let mut usage = Usage::from_openai(&value);
        usage.merge_anthropic(&value);
        let _ = (Usage::from_anthropic(&value), usage.to_openai(), usage.to_anthropic(), usage.total());
        let _ = provider_error_message(&value);
        let error = ApiError::from_provider(status, &value);
        for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
            let _ = (error.body(dialect), error.stream_frame(dialect));
        }
        let _ = ErrorKind::from_status(status).default_status();
        let _ = estimate_prompt_tokens(&value);
        let _ = requested_max_tokens(&value);
        let mut mutable = value.clone();
        let _ = force_include_usage(&mut mutable);
    }

    #[test]
    fn request_translation_takes_any_json(value in prop_oneof![request(), any_json().boxed()], max in any::<u64>()) {
        for result in [chat_to_messages(&value, "upstream", max), messages_to_chat(&value, "upstream")] {
            if let Err(error) = result {
                prop_assert_eq!(error.status, 400);
                prop_assert!(!error.message.is_empty());
            }
        }
        let _ = estimate_prompt_tokens(&value);
        let _ = translate::anthropic_stop_reason(value["stop"].as_str(), true);
    }

    #[test]
    fn response_translation_takes_any_json(value in prop_oneof![response(), any_json().boxed()]) {
        for result in [messages_response_to_chat(&value, "m"), chat_response_to_messages(&value, "m")] {
            if let Err(error) = result {
                prop_assert_eq!(error.status, 502);
            }
        }
    }

    #[test]
    fn stream_translators_take_any_events(client in dialect(), upstream in dialect(), wants_usage in any::<bool>(),
                                          events in prop::collection::vec(sse_event(), 0..24)) {
        let mut stream = translator(client, upstream, "m", wants_usage);
        let mut frames = Vec::new();
        for event in &events {
            let step = stream.on_event(event);
            if step.upstream_error.is_some() {
                prop_assert!(step.frames.is_empty());
            }
            frames.extend(step.frames);
            let _ = (stream.usage(), stream.usage_reported(), stream.saw_finish());
        }
        frames.extend(stream.closing_frames());
        prop_assert!(stream.closing_frames().is_empty(), "a stream closes once");
        prop_assert_eq!(stream.dialect(), client);
        // A pass-through keeps the upstream's event lines, whatever they were.
        let translated_to_anthropic = client == Dialect::Anthropic && upstream == Dialect::OpenAi;
        assert_whole_events(&frames, translated_to_anthropic)?;
    }
}
