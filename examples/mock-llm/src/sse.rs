//! Server-sent events, written into one buffer, with the stream faults placed between them.
//!
//! The dialect modules write their events in order and mark each content delta; this module
//! owns the SSE framing (`event:` line, `data:` line, blank line) and where `slow-ttft`,
//! `stall-after-N-MS` and `cut-after-N` fall: before the first event, and after the N-th
//! delta — or, when the answer has fewer, just before the events that finish the stream
//! (finish chunk, `message_delta`, `response.completed`). Once a stream is cut,
//! whatever the dialect writes afterwards is dropped, so a cut stream never carries its
//! finish chunk, `[DONE]` or `message_stop`.

use std::{
    fmt::{self, Write as _},
    io::Write as _,
    ops::Range,
};

use bytes::Bytes;

use crate::{
    body::{ScriptedBody, Step},
    directives::{Directives, Stall},
};

/// Builds the body of one event stream.
pub struct SseWriter {
    text: Vec<u8>,
    /// Pauses and the abort, each with the offset in `text` where it falls.
    breaks: Vec<(usize, Step)>,
    deltas_written: usize,
    /// Faults still to place.
    pending_stall: Option<Stall>,
    pending_cut: Option<usize>,
    cut: bool,
}

impl SseWriter {
    /// A stream with the faults of `directives`; `slow-ttft` holds back the first event.
    pub fn new(directives: &Directives) -> Self {
        let mut writer = Self {
            text: Vec::with_capacity(4096),
            breaks: Vec::new(),
            deltas_written: 0,
            pending_stall: directives.stall,
            pending_cut: directives.cut_after_deltas,
            cut: false,
        };
        if let Some(delay) = directives.slow_ttft {
            writer.breaks.push((0, Step::Pause(delay)));
        }
        writer
    }

    /// `headers-then-close`: one comment, then the abort.
    pub fn headers_then_close() -> ScriptedBody {
        let mut writer = Self::new(&Directives::default());
        writer.comment("ping");
        writer.abort();
        writer.into_body()
    }

    /// An event with an `event:` line, as Anthropic and the Responses API send them.
    pub fn event(&mut self, name: &str, data: fmt::Arguments<'_>) {
        if !self.cut {
            let _ = write!(self.text, "event: {name}\ndata: {data}\n\n");
        }
    }

    /// A `data:`-only event, as OpenAI chat completions send them.
    pub fn data(&mut self, data: fmt::Arguments<'_>) {
        if !self.cut {
            let _ = write!(self.text, "data: {data}\n\n");
        }
    }

    /// A comment line, which clients ignore (`: ping`).
    pub fn comment(&mut self, text: &str) {
        if !self.cut {
            let _ = write!(self.text, ": {text}\n\n");
        }
    }

    /// Call before writing each content delta (a word of text or a fragment of tool
    /// arguments): a stall or cut due after the deltas written so far falls here.
    pub fn before_delta(&mut self) {
        let written = self.deltas_written;
        self.place_faults_due(|after| after == written);
        self.deltas_written += 1;
    }

    /// Call before the events that finish the stream: a stall or cut asked for after more
    /// deltas than the answer has falls here.
    pub fn before_finish(&mut self) {
        self.place_faults_due(|_| true);
    }

    fn place_faults_due(&mut self, is_due: impl Fn(usize) -> bool) {
        if let Some(stall) = self
            .pending_stall
            .take_if(|stall| is_due(stall.after_deltas))
        {
            self.pause(stall.pause);
        }
        if self.pending_cut.take_if(|after| is_due(*after)).is_some() {
            self.abort();
        }
    }

    fn pause(&mut self, duration: std::time::Duration) {
        if !self.cut {
            self.breaks.push((self.text.len(), Step::Pause(duration)));
        }
    }

    fn abort(&mut self) {
        if !self.cut {
            self.breaks.push((self.text.len(), Step::Abort));
            self.cut = true;
        }
    }

    /// The stream as a body: the text between breaks goes out in one frame each.
    pub fn into_body(self) -> ScriptedBody {
        let text = Bytes::from(self.text);
        let mut steps = Vec::with_capacity(self.breaks.len() * 2 + 1);
        let mut sent_upto = 0;
        let send = |steps: &mut Vec<Step>, range: Range<usize>| {
            if !range.is_empty() {
                steps.push(Step::Send(text.slice(range)));
            }
        };
        for (offset, step) in self.breaks {
            send(&mut steps, sent_upto..offset);
            sent_upto = offset;
            steps.push(step);
        }
        send(&mut steps, sent_upto..text.len());
        ScriptedBody::new(steps)
    }
}

/// A string written as a JSON string literal, quotes included, without allocating.
pub struct JsonStr<'a>(pub &'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_char('"')?;
        let mut plain_from = 0;
        for (at, byte) in self.0.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            formatter.write_str(&self.0[plain_from..at])?;
            if escape.is_empty() {
                write!(formatter, "\\u{byte:04x}")?;
            } else {
                formatter.write_str(escape)?;
            }
            plain_from = at + 1;
        }
        formatter.write_str(&self.0[plain_from..])?;
        formatter.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// Writes `deltas` word events framed by a start and a finish event.
    fn stream(directives: &str, deltas: usize) -> SseWriter {
        let mut writer = SseWriter::new(&Directives::parse(directives));
        writer.event("start", format_args!("{{}}"));
        for n in 1..=deltas {
            writer.before_delta();
            writer.data(format_args!("{n}"));
        }
        writer.before_finish();
        writer.data(format_args!("[DONE]"));
        writer
    }

    async fn frames(body: ScriptedBody) -> (Vec<String>, bool) {
        let mut body = body;
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    frames.push(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
                }
                Err(_) => return (frames, true),
            }
        }
        (frames, false)
    }

    #[tokio::test]
    async fn a_healthy_stream_is_one_frame_with_sse_framing() {
        let (frames, aborted) = frames(stream("mock", 2).into_body()).await;
        assert!(!aborted);
        assert_eq!(
            frames,
            ["event: start\ndata: {}\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"]
        );
    }

    #[tokio::test]
    async fn a_cut_stream_stops_after_n_deltas_and_fails() {
        let (frames, aborted) = frames(stream("mock+cut-after-1", 3).into_body()).await;
        assert!(aborted);
        assert_eq!(frames, ["event: start\ndata: {}\n\ndata: 1\n\n"]);
    }

    #[tokio::test]
    async fn a_cut_beyond_the_answer_falls_before_the_finish() {
        let (frames, aborted) = frames(stream("mock+cut-after-9", 2).into_body()).await;
        assert!(aborted);
        assert_eq!(
            frames.concat(),
            "event: start\ndata: {}\n\ndata: 1\n\ndata: 2\n\n"
        );
    }

    #[tokio::test]
    async fn a_stall_splits_the_stream_and_it_carries_on() {
        let (frames, aborted) = frames(stream("mock+stall-after-1-1", 2).into_body()).await;
        assert!(!aborted);
        assert_eq!(
            frames,
            [
                "event: start\ndata: {}\n\ndata: 1\n\n",
                "data: 2\n\ndata: [DONE]\n\n"
            ]
        );
    }

    #[tokio::test]
    async fn headers_then_close_sends_a_comment_then_fails() {
        let (frames, aborted) = frames(SseWriter::headers_then_close()).await;
        assert!(aborted);
        assert_eq!(frames, [": ping\n\n"]);
    }

    #[test]
    fn json_str_matches_serde_json() {
        for text in [
            "plain",
            "q\"uote\\back",
            "line\nbreak\ttab\r",
            "\u{1}\u{8}\u{c}\u{1f}",
            "héllo ✓",
            "",
        ] {
            assert_eq!(
                JsonStr(text).to_string(),
                serde_json::to_string(text).unwrap()
            );
        }
    }
}
