//! Fuzz target: the AI gateway's wire formats (`weir_ai_wire`), which read bytes and JSON that
//! providers and clients send, and promise never to panic on any of it.
//!
//! The first byte picks what the rest is:
//! - even: an upstream event stream. The SSE parser must give the same events (and the same
//!   error) however the bytes are cut into chunks — the cuts come from the second byte — and
//!   every event goes through all four stream translators, whose frames must each parse back as
//!   exactly one whole event;
//! - odd: a JSON value, given to every request and response translator, the token estimate and
//!   the usage and error readers, as a request and as a response.
//!
//! Seeds are real streams and bodies behind the mode byte (`fuzz/corpus/sse_and_ai/`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weir_ai_wire::{
    Dialect,
    errors::{ApiError, provider_error_message},
    sse::{SseEvent, SseParser, frame},
    stream::translator,
    tokens::estimate_prompt_tokens,
    translate::{
        chat_to_messages, force_include_usage, messages_response_to_chat, messages_to_chat,
        requested_max_tokens,
    },
    usage::Usage,
};

/// Larger than any input libFuzzer makes, so a chunking can never meet the limit in one
/// parse and not the other.
const NO_LIMIT: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Some((&cut_seed, stream)) = rest.split_first() else {
            return;
        };
        event_stream(cut_seed, stream, mode & 0b10 != 0);
    } else if let Ok(value) = serde_json::from_slice::<Value>(rest) {
        json_body(&value);
    }
});

fn parse(chunks: &[&[u8]], max_event_bytes: usize) -> (Vec<SseEvent>, bool) {
    let mut parser = SseParser::new(max_event_bytes);
    let mut events = Vec::new();
    let mut failed = false;
    for chunk in chunks {
        failed |= parser.push(chunk, &mut events).is_err();
    }
    (events, failed)
}

/// Cuts `stream` into chunks of 1..=`cut_seed % 17 + 1` bytes (a byte at a time for seed 0),
/// sizes from a small generator seeded by `cut_seed`, so that every place can be a cut.
fn chunks(stream: &[u8], cut_seed: u8) -> Vec<&[u8]> {
    let max = usize::from(cut_seed % 17) + 1;
    let mut state = u32::from(cut_seed) | 1;
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (state as usize % max + 1).min(rest.len());
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
    }
    out
}

fn event_stream(cut_seed: u8, stream: &[u8], client_wants_usage: bool) {
    let (whole, whole_failed) = parse(&[stream], NO_LIMIT);
    let (split, split_failed) = parse(&chunks(stream, cut_seed), NO_LIMIT);
    assert_eq!(whole, split, "chunking changed the events");
    assert_eq!(whole_failed, split_failed);
    // A small limit may fail the stream; it must fail cleanly.
    let _ = parse(&chunks(stream, cut_seed), usize::from(cut_seed));

    for (client, upstream) in [
        (Dialect::OpenAi, Dialect::OpenAi),
        (Dialect::OpenAi, Dialect::Anthropic),
        (Dialect::Anthropic, Dialect::OpenAi),
        (Dialect::Anthropic, Dialect::Anthropic),
    ] {
        let mut stream = translator(client, upstream, "fuzz-model", client_wants_usage);
        let mut frames = Vec::new();
        for event in &whole {
            let step = stream.on_event(event);
            frames.extend(step.frames);
            let _ = stream.usage();
        }
        let _ = (
            stream.usage_reported(),
            stream.saw_finish(),
            stream.dialect(),
        );
        frames.extend(stream.closing_frames());
        for frame in &frames {
            let (events, failed) = parse(&[frame], NO_LIMIT);
            assert!(!failed);
            assert_eq!(events.len(), 1, "a frame is one whole event: {frame:?}");
        }
    }

    // Framing what was parsed and parsing it again gives it back.
    for event in &whole {
        let framed = frame(event.event.as_deref(), &event.data);
        let (again, _) = parse(&[&framed], NO_LIMIT);
        assert_eq!(again, [event.clone()], "{framed:?}");
    }
}

fn json_body(value: &Value) {
    let _ = chat_to_messages(value, "fuzz-model", 4096);
    let _ = messages_to_chat(value, "fuzz-model");
    let _ = messages_response_to_chat(value, "fuzz-model");
    let _ = weir_ai_wire::translate::chat_response_to_messages(value, "fuzz-model");
    let _ = requested_max_tokens(value);
    let _ = estimate_prompt_tokens(value);
    let mut forced = value.clone();
    let _ = force_include_usage(&mut forced);

    let mut usage = Usage::from_openai(value);
    let _ = (usage.prompt_tokens(), usage.total(), usage.to_anthropic());
    usage = Usage::from_anthropic(value);
    usage.merge_anthropic(value);
    let _ = (usage.total(), usage.to_openai());

    let _ = provider_error_message(value);
    for status in [400, 429, 500, 529] {
        let error = ApiError::from_provider(status, value);
        let _ = (error.body(Dialect::OpenAi), error.body(Dialect::Anthropic));
        let _ = (
            error.stream_frame(Dialect::OpenAi),
            error.stream_frame(Dialect::Anthropic),
        );
    }
}
