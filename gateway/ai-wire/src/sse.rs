//! Server-sent events: the framing both providers stream in.
//!
//! Owns turning bytes into whole events ([`SseParser`]) and events into bytes ([`frame`],
//! [`frame_json`]). It follows the WHATWG event-stream rules the providers' SDKs implement: any of
//! `\n`, `\r\n` or `\r` ends a line, `data:` lines accumulate (joined with `\n`), one space after the
//! colon is dropped, `:` comment lines and `id:`/`retry:` fields are ignored, and a blank line ends
//! an event; an event without data is not an event.
//!
//! Invariants: the same bytes give the same events however they are split into chunks, and the
//! parser holds at most one partial event, never more than `max_event_bytes` of it.

use bytes::Bytes;
use serde_json::Value;

/// OpenAI's end-of-stream marker, sent as the data of the last event (`data: [DONE]`).
///
/// ```
/// assert_eq!(weir_ai_wire::sse::frame(None, weir_ai_wire::sse::DONE), "data: [DONE]\n\n");
/// ```
pub const DONE: &str = "[DONE]";

/// One whole server-sent event.
///
/// ```
/// use weir_ai_wire::sse::SseEvent;
/// let ping = SseEvent::new(Some("ping"), r#"{"type":"ping"}"#);
/// assert_eq!(ping.event.as_deref(), Some("ping"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` line, if the event had a non-empty one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// An event with the given type and data.
    ///
    /// ```
    /// let done = weir_ai_wire::sse::SseEvent::new(None, "[DONE]");
    /// assert_eq!(done.data, "[DONE]");
    /// ```
    pub fn new(event: Option<&str>, data: impl Into<String>) -> Self {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.into(),
        }
    }
}

/// Why an event stream could not be parsed.
///
/// ```
/// use weir_ai_wire::sse::{SseError, SseParser};
/// let error = SseParser::new(4).push(b"data: too long", &mut Vec::new()).unwrap_err();
/// assert_eq!(error.to_string(), "a server-sent event is larger than the limit of 4 bytes");
/// assert_eq!(error, SseError::EventTooLarge { max_event_bytes: 4 });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event (or one line of it) grew beyond the parser's limit; the stream is unusable.
    #[error("a server-sent event is larger than the limit of {max_event_bytes} bytes")]
    EventTooLarge {
        /// The limit the parser was built with.
        max_event_bytes: usize,
    },
}

/// Incremental event-stream parser: bytes in any chunking → whole events.
///
/// Memory is one partial event: the unfinished line plus the data and event type gathered so far,
/// together at most `max_event_bytes`. Once an event exceeds that, the parser has failed for good:
/// every later [`push`](SseParser::push) returns the same error.
///
/// ```
/// use weir_ai_wire::sse::{SseEvent, SseParser};
/// let mut parser = SseParser::new(1 << 20);
/// let mut events = Vec::new();
/// parser.push(b"event: ping\ndata: {\"type\"", &mut events).unwrap();
/// assert!(events.is_empty() && parser.has_partial());
/// parser.push(b":\"ping\"}\n\n", &mut events).unwrap();
/// assert_eq!(events, vec![SseEvent::new(Some("ping"), r#"{"type":"ping"}"#)]);
/// assert!(!parser.has_partial());
/// ```
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The current line, not yet terminated.
    unfinished_line: Vec<u8>,
    event_type: Option<String>,
    data: String,
    has_data: bool,
    /// The previous chunk ended with `\r`; a `\n` that starts the next one ends no further line.
    after_cr: bool,
    /// No line has been completed yet, so a leading byte-order mark is still to be dropped.
    at_stream_start: bool,
    failed: bool,
}

impl SseParser {
    /// A parser that refuses events larger than `max_event_bytes` (data, event type and the
    /// unfinished line together).
    ///
    /// ```
    /// let parser = weir_ai_wire::sse::SseParser::new(64 * 1024);
    /// assert!(!parser.has_partial());
    /// ```
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            unfinished_line: Vec::new(),
            event_type: None,
            data: String::new(),
            has_data: false,
            after_cr: false,
            at_stream_start: true,
            failed: false,
        }
    }

    /// Parses the next chunk, appending every event it completes to `out`.
    ///
    /// ```
    /// use weir_ai_wire::sse::{SseError, SseParser};
    /// let mut parser = SseParser::new(8);
    /// let mut events = Vec::new();
    /// parser.push(b"data: a\r\ndata: b\r\n\r\n", &mut events).unwrap();
    /// assert_eq!(events[0].data, "a\nb");
    /// let too_large = parser.push(b"data: 0123456789\n\n", &mut events);
    /// assert_eq!(too_large, Err(SseError::EventTooLarge { max_event_bytes: 8 }));
    /// ```
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.failed {
            return Err(self.too_large());
        }
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line_tail, after) = rest.split_at(end);
            let terminator = after[0];
            rest = &after[1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let outcome = if self.unfinished_line.is_empty() {
                self.complete_line(line_tail, out)
            } else {
                self.ensure_room(line_tail.len())?;
                let mut line = std::mem::take(&mut self.unfinished_line);
                line.extend_from_slice(line_tail);
                let outcome = self.complete_line(&line, out);
                line.clear();
                self.unfinished_line = line;
                outcome
            };
            outcome?;
        }
        if !rest.is_empty() {
            self.ensure_room(rest.len())?;
            self.unfinished_line.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Whether bytes of an unfinished event are buffered: an upstream that ends here was cut
    /// mid-event (the event is lost, as the event-stream rules say).
    ///
    /// ```
    /// let mut parser = weir_ai_wire::sse::SseParser::new(1024);
    /// parser.push(b"data: {\"choices\"", &mut Vec::new()).unwrap();
    /// assert!(parser.has_partial());
    /// ```
    pub fn has_partial(&self) -> bool {
        !self.unfinished_line.is_empty() || self.has_data || self.event_type.is_some()
    }

    fn held_bytes(&self) -> usize {
        self.unfinished_line.len()
            + self.data.len()
            + self.event_type.as_ref().map_or(0, String::len)
    }

    /// Fails (for good) if `extra` more bytes would take the partial event over the limit.
    fn ensure_room(&mut self, extra: usize) -> Result<(), SseError> {
        if self.held_bytes().saturating_add(extra) > self.max_event_bytes {
            self.fail();
            return Err(self.too_large());
        }
        Ok(())
    }

    fn fail(&mut self) {
        self.failed = true;
        // Release what the oversized event held: a failed parser keeps nothing.
        self.unfinished_line = Vec::new();
        self.data = String::new();
        self.event_type = None;
        self.has_data = false;
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            max_event_bytes: self.max_event_bytes,
        }
    }

    fn complete_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = if std::mem::take(&mut self.at_stream_start) {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                // Checked against what the event will hold once this line joins it; the line
                // itself was bounded while it was unfinished, or is a slice of the caller's chunk.
                self.ensure_room(usize::from(self.has_data) + value.len())?;
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
                // Invalid UTF-8 grows when replaced by U+FFFD.
                self.ensure_room(0)?;
            }
            b"event" => {
                self.event_type = None;
                self.ensure_room(value.len())?;
                self.event_type = Some(String::from_utf8_lossy(value).into_owned());
                self.ensure_room(0)?;
            }
            // `id`, `retry` and unknown fields mean nothing to an AI stream.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event_type.take().filter(|name| !name.is_empty());
        if std::mem::take(&mut self.has_data) {
            out.push(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
    }
}

/// Encodes one event: an optional `event:` line, one `data:` line per line of `data`, a blank line.
///
/// Any line end inside `data` (`\n`, `\r\n`, `\r`) starts a new `data:` line, so a parser gives back
/// the same data with `\n` line ends. An event type is cut at its first line end.
///
/// ```
/// use weir_ai_wire::sse::frame;
/// assert_eq!(frame(Some("message_stop"), "{}"), "event: message_stop\ndata: {}\n\n");
/// assert_eq!(frame(None, "a\nb"), "data: a\ndata: b\n\n");
/// ```
pub fn frame(event: Option<&str>, data: &str) -> Bytes {
    let mut encoded = Vec::with_capacity(data.len() + 16 + event.map_or(0, |name| name.len() + 8));
    push_event_line(&mut encoded, event);
    let mut rest = data.as_bytes();
    loop {
        encoded.extend_from_slice(b"data: ");
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(end) => {
                encoded.extend_from_slice(&rest[..end]);
                encoded.push(b'\n');
                let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[end + skip..];
            }
            None => {
                encoded.extend_from_slice(rest);
                encoded.push(b'\n');
                break;
            }
        }
    }
    encoded.push(b'\n');
    Bytes::from(encoded)
}

/// Encodes one event whose data is a JSON value, without an intermediate string. Compact JSON
/// holds no raw line ends, so the data is always one `data:` line.
///
/// ```
/// use weir_ai_wire::sse::frame_json;
/// let ping = frame_json(Some("ping"), &serde_json::json!({"type": "ping"}));
/// assert_eq!(ping, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
/// ```
pub fn frame_json(event: Option<&str>, data: &Value) -> Bytes {
    let mut encoded = Vec::with_capacity(128);
    push_event_line(&mut encoded, event);
    encoded.extend_from_slice(b"data: ");
    // Writing a `Value` into a `Vec` cannot fail: every map key is a string and the writer is memory.
    let _ = serde_json::to_writer(&mut encoded, data);
    encoded.extend_from_slice(b"\n\n");
    Bytes::from(encoded)
}

fn push_event_line(encoded: &mut Vec<u8>, event: Option<&str>) {
    if let Some(name) = event {
        let name = name.as_bytes();
        let name = match name.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(end) => &name[..end],
            None => name,
        };
        encoded.extend_from_slice(b"event: ");
        encoded.extend_from_slice(name);
        encoded.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut parser = SseParser::new(1 << 16);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut events)?;
        }
        Ok(events)
    }

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent::new(name, data)
    }

    /// A stream with every feature the parser handles: event types, multi-line data, comments,
    /// ignored fields, every line end, a value without the optional space, an empty data line.
    const KNOWN_STREAM: &[u8] = b"\xEF\xBB\xBF: hello\n\
        event: message_start\r\ndata: {\"a\":1}\r\n\r\n\
        id: 7\rretry: 10\rdata:no-space\rdata:  two-spaces\r\r\
        data: [DONE]\n\n\
        event: ignored-without-data\n\n\
        data\n\n\
        event: ping\ndata: {\"type\":\"ping\"}\n\n";

    fn known_events() -> Vec<SseEvent> {
        vec![
            event(Some("message_start"), "{\"a\":1}"),
            event(None, "no-space\n two-spaces"),
            event(None, "[DONE]"),
            event(None, ""),
            event(Some("ping"), "{\"type\":\"ping\"}"),
        ]
    }

    #[test]
    fn parses_a_known_stream_in_one_chunk() {
        assert_eq!(parse_all(&[KNOWN_STREAM]).unwrap(), known_events());
    }

    #[test]
    fn parses_a_known_stream_one_byte_at_a_time() {
        let bytes: Vec<&[u8]> = KNOWN_STREAM.chunks(1).collect();
        assert_eq!(parse_all(&bytes).unwrap(), known_events());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(mut cuts in proptest::collection::vec(0..KNOWN_STREAM.len(), 0..12)) {
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&KNOWN_STREAM[start..cut]);
                start = cut;
            }
            chunks.push(&KNOWN_STREAM[start..]);
            prop_assert_eq!(parse_all(&chunks).unwrap(), known_events());
        }

        #[test]
        fn framed_data_parses_back_unchanged(name in proptest::option::of("[a-z_]{1,12}"), data in "[^\r]{0,64}") {
            let framed = frame(name.as_deref(), &data);
            let events = parse_all(&[&framed]).unwrap();
            prop_assert_eq!(events, vec![event(name.as_deref(), &data)]);
        }
    }

    #[test]
    fn crlf_split_between_chunks_ends_one_line_not_two() {
        let events = parse_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]).unwrap();
        assert_eq!(events, vec![event(None, "a\nb")]);
    }

    #[test]
    fn lone_cr_ends_lines() {
        assert_eq!(
            parse_all(&[b"event: x\rdata: y\r\r"]).unwrap(),
            vec![event(Some("x"), "y")]
        );
    }

    #[test]
    fn comment_lines_are_ignored_even_between_data_lines() {
        let events = parse_all(&[b"data: a\n: keep-alive\ndata: b\n\n"]).unwrap();
        assert_eq!(events, vec![event(None, "a\nb")]);
    }

    #[test]
    fn a_comment_only_block_is_not_an_event() {
        assert!(parse_all(&[b": ping\n\n: ping\n\n"]).unwrap().is_empty());
    }

    #[test]
    fn event_type_does_not_leak_into_the_next_event() {
        let events = parse_all(&[b"event: a\ndata: 1\n\ndata: 2\n\n"]).unwrap();
        assert_eq!(events, vec![event(Some("a"), "1"), event(None, "2")]);
    }

    #[test]
    fn an_event_without_its_blank_line_is_partial() {
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        parser.push(b"data: {\"x\":1}\n", &mut events).unwrap();
        assert!(events.is_empty());
        assert!(parser.has_partial());
        parser.push(b"\n", &mut events).unwrap();
        assert!(!parser.has_partial());
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn an_unterminated_line_is_partial() {
        let mut parser = SseParser::new(1024);
        parser.push(b"da", &mut Vec::new()).unwrap();
        assert!(parser.has_partial());
    }

    #[test]
    fn oversized_event_is_an_error_and_the_parser_stays_failed() {
        let mut parser = SseParser::new(16);
        let mut events = Vec::new();
        let oversized = parser.push(b"data: 0123456789\ndata: 0123456789\n\n", &mut events);
        assert_eq!(
            oversized,
            Err(SseError::EventTooLarge {
                max_event_bytes: 16
            })
        );
        assert!(events.is_empty());
        assert!(parser.push(b"data: x\n\n", &mut events).is_err());
        assert!(
            !parser.has_partial(),
            "a failed parser releases what it held"
        );
    }

    #[test]
    fn an_endless_line_is_refused_before_it_is_buffered() {
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        let endless = vec![b'a'; 600];
        parser.push(&endless, &mut events).unwrap();
        assert!(parser.push(&endless, &mut events).is_err());
    }

    #[test]
    fn an_event_exactly_at_the_limit_is_accepted() {
        let mut parser = SseParser::new(10);
        let mut events = Vec::new();
        parser.push(b"data: 0123", &mut events).unwrap();
        parser.push(b"\n\n", &mut events).unwrap();
        assert_eq!(events, vec![event(None, "0123")]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let events = parse_all(&[b"data: \xFF\n\n"]).unwrap();
        assert_eq!(events, vec![event(None, "\u{FFFD}")]);
    }

    #[test]
    fn frame_splits_every_kind_of_line_end_into_data_lines() {
        assert_eq!(
            frame(None, "a\r\nb\rc\n"),
            "data: a\ndata: b\ndata: c\ndata: \n\n"
        );
    }

    #[test]
    fn frame_cuts_an_event_type_at_its_line_end() {
        assert_eq!(frame(Some("a\nb"), "x"), "event: a\ndata: x\n\n");
    }

    #[test]
    fn frame_json_is_one_data_line_even_with_newlines_in_strings() {
        let framed = frame_json(None, &serde_json::json!({"text": "a\nb"}));
        assert_eq!(framed, "data: {\"text\":\"a\\nb\"}\n\n");
    }
}
