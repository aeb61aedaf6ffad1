//! The mock model itself: how many tokens a prompt costs and what the answer says.
//!
//! Tests behind a gateway compare exact token counts, so everything here is deterministic
//! and the same for every wire format: a prompt token is a whitespace-separated word of
//! prompt text, and the answer is `tok1 tok2 … tokN`, the request body (`echo`), and/or a
//! number of tool calls. The dialect modules only lay these facts out in their own JSON.

use std::{fmt::Write as _, ops::Range};

use serde_json::Value;

use crate::directives::Directives;

/// Output tokens reported for each tool call.
pub const TOKENS_PER_TOOL_CALL: u64 = 5;

/// Prompt tokens of a request: the words of `parts`, at least 1, as a provider never
/// charges nothing for a request.
pub fn prompt_tokens<'a>(parts: impl IntoIterator<Item = Option<&'a Value>>) -> u64 {
    parts
        .into_iter()
        .flatten()
        .map(words_in)
        .sum::<u64>()
        .max(1)
}

/// Counts the words of prompt text a JSON value carries, in any of the shapes the wire formats
/// use: a string; an array of strings, messages or content blocks; a message's `content`; a
/// block's `text` (text blocks, OpenAI content parts, Responses `input_text`); a tool result's
/// `content` or a Responses `function_call_output`'s `output`. A number counts as one token
/// (embeddings accept token ids). Anything else — roles, tool calls, images — is not prompt text.
pub fn words_in(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.split_whitespace().count() as u64,
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(words_in).sum(),
        Value::Object(fields) => ["text", "content", "output"]
            .into_iter()
            .filter_map(|key| fields.get(key))
            .map(words_in)
            .sum(),
        Value::Null | Value::Bool(_) => 0,
    }
}

/// What the mock model answers to one request.
#[derive(Debug)]
pub struct Answer {
    /// The text answer; empty when the answer is tool calls only.
    pub text: String,
    /// Where each word of `text` lies, whitespace before it included, so the spans of all
    /// words concatenate to `text` exactly: each span is one streamed delta.
    word_spans: Vec<Range<usize>>,
    /// The tool calls that follow the text, numbered from 1.
    pub tool_calls: Vec<ToolCall>,
    /// The text was cut short by the request's `max_tokens` (or its kin).
    pub hit_max_tokens: bool,
}

impl Answer {
    /// The answer `directives` ask for: tool calls (with text first only for
    /// `text-then-tools`), else text — `raw_body` for `echo`, else `tok1 … tokN` — of at
    /// most `max_tokens` words.
    pub fn new(directives: &Directives, raw_body: &[u8], max_tokens: Option<u64>) -> Self {
        let tool_calls: Vec<ToolCall> = (1..=directives.tool_calls).map(ToolCall).collect();
        let says_text = tool_calls.is_empty() || directives.text_then_tools;
        let mut text = String::new();
        if says_text {
            if directives.echo {
                text = String::from_utf8_lossy(raw_body).into_owned();
            } else {
                write_tok_words(&mut text, directives.output_words());
            }
        }
        let mut word_spans = word_spans(&text);
        let mut hit_max_tokens = false;
        if let Some(max) = max_tokens.and_then(|max| usize::try_from(max).ok())
            && word_spans.len() > max
        {
            word_spans.truncate(max);
            text.truncate(word_spans.last().map_or(0, |span| span.end));
            hit_max_tokens = true;
        }
        Self {
            text,
            word_spans,
            tool_calls,
            hit_max_tokens,
        }
    }

    /// The text in streamed deltas: the first word bare, each later one with the whitespace
    /// that preceded it.
    pub fn text_deltas(&self) -> impl Iterator<Item = &str> {
        self.word_spans.iter().map(|span| &self.text[span.clone()])
    }

    /// Output tokens: one per word plus [`TOKENS_PER_TOOL_CALL`] per tool call.
    pub fn output_tokens(&self) -> u64 {
        self.word_spans.len() as u64 + TOKENS_PER_TOOL_CALL * self.tool_calls.len() as u64
    }
}

/// One tool call of a `tools-K` answer, numbered from 1: it calls `tool_<n>` with
/// `{"city":"c<n>","n":<n>}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolCall(pub u32);

impl ToolCall {
    pub fn name(self) -> String {
        format!("tool_{}", self.0)
    }

    /// The arguments as a JSON text.
    pub fn arguments(self) -> String {
        self.argument_fragments().concat()
    }

    /// The arguments in the two fragments they are streamed in; each alone is not valid JSON,
    /// so a client must join them by index.
    pub fn argument_fragments(self) -> [String; 2] {
        let n = self.0;
        [format!(r#"{{"city":"c{n}","#), format!(r#""n":{n}}}"#)]
    }

    /// The arguments as a JSON object, for the formats that carry them unserialised.
    pub fn input(self) -> Value {
        serde_json::json!({ "city": format!("c{}", self.0), "n": self.0 })
    }
}

fn write_tok_words(text: &mut String, count: u32) {
    text.reserve(count as usize * 7);
    for n in 1..=count {
        let separator = if n == 1 { "" } else { " " };
        let _ = write!(text, "{separator}tok{n}");
    }
}

/// Spans of `text`, one per word, each starting after the previous one ends, so that the
/// whitespace between words belongs to the word after it (and leading whitespace to the first).
fn word_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (at, character) in text.char_indices() {
        let is_space = character.is_whitespace();
        if in_word && is_space {
            spans.push(start..at);
            start = at;
        }
        in_word = !is_space;
    }
    if in_word {
        spans.push(start..text.len());
    } else if let Some(last) = spans.last_mut() {
        // Trailing whitespace rides with the last word, so the spans still cover `text`.
        last.end = text.len();
    }
    spans
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prompt_words_span_strings_parts_and_tool_results() {
        let openai_messages = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "hello there  world"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": \"b c\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]);
        assert_eq!(words_in(&openai_messages), 2 + 3 + 1);

        let anthropic_messages = json!([
            {"role": "user", "content": "what is the weather"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "let me look"},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"text": "not prompt"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "rain all day"}]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "dry"}
            ]}
        ]);
        assert_eq!(words_in(&anthropic_messages), 4 + 3 + 3 + 1);
    }

    #[test]
    fn system_blocks_and_responses_input_count() {
        assert_eq!(
            words_in(&json!([{"type": "text", "text": "you are terse"}])),
            3
        );
        let responses_input = json!([
            {"role": "user", "content": [{"type": "input_text", "text": "one two"}]},
            {"type": "function_call_output", "call_id": "call_1", "output": "three"}
        ]);
        assert_eq!(words_in(&responses_input), 3);
    }

    #[test]
    fn prompt_tokens_add_up_parts_and_are_at_least_one() {
        let system = json!("a b");
        let messages = json!([{"role": "user", "content": "c d e"}]);
        assert_eq!(prompt_tokens([Some(&system), Some(&messages)]), 5);
        assert_eq!(prompt_tokens([None, Some(&json!(""))]), 1);
    }

    #[test]
    fn embeddings_inputs_count_words_or_token_ids() {
        assert_eq!(words_in(&json!(["a b", "c"])), 3);
        assert_eq!(words_in(&json!([[101, 102, 103]])), 3);
    }

    #[test]
    fn default_answer_is_twelve_tok_words() {
        let answer = Answer::new(&Directives::default(), b"{}", None);
        assert_eq!(
            answer.text,
            "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 tok10 tok11 tok12"
        );
        assert_eq!(answer.output_tokens(), 12);
        assert!(!answer.hit_max_tokens);
        let deltas: Vec<_> = answer.text_deltas().collect();
        assert_eq!(deltas[..3], ["tok1", " tok2", " tok3"]);
        assert_eq!(deltas.concat(), answer.text);
    }

    #[test]
    fn max_tokens_caps_the_answer() {
        let directives = Directives::parse("mock+tokens-20");
        let answer = Answer::new(&directives, b"{}", Some(5));
        assert_eq!(answer.text, "tok1 tok2 tok3 tok4 tok5");
        assert_eq!(answer.output_tokens(), 5);
        assert!(answer.hit_max_tokens);
        let exactly = Answer::new(&directives, b"{}", Some(20));
        assert!(!exactly.hit_max_tokens);
    }

    #[test]
    fn echo_answers_the_raw_body_and_its_deltas_rebuild_it() {
        let body = br#"{"model":"mock+echo","messages":[{"content":"two  spaces\nline"}]} "#;
        let answer = Answer::new(&Directives::parse("mock+echo"), body, None);
        assert_eq!(answer.text.as_bytes(), body);
        assert_eq!(answer.text_deltas().collect::<String>(), answer.text);
        // `\n` is escaped in JSON: the body's only whitespace is the two spaces and the end.
        assert_eq!(answer.output_tokens(), 2);
    }

    #[test]
    fn tool_calls_replace_the_text_unless_text_comes_first() {
        let tools = Answer::new(&Directives::parse("mock+tools-2"), b"{}", None);
        assert_eq!(tools.text, "");
        assert_eq!(tools.tool_calls, [ToolCall(1), ToolCall(2)]);
        assert_eq!(tools.output_tokens(), 10);

        let both = Answer::new(
            &Directives::parse("mock+tools-2+text-then-tools+tokens-3"),
            b"{}",
            None,
        );
        assert_eq!(both.text, "tok1 tok2 tok3");
        assert_eq!(both.output_tokens(), 13);
    }

    #[test]
    fn tool_arguments_stream_in_two_fragments_of_one_json_object() {
        let call = ToolCall(2);
        assert_eq!(call.name(), "tool_2");
        let [first, second] = call.argument_fragments();
        assert!(serde_json::from_str::<Value>(&first).is_err());
        assert_eq!(first + &second, r#"{"city":"c2","n":2}"#);
        assert_eq!(
            serde_json::from_str::<Value>(&call.arguments()).unwrap(),
            call.input()
        );
    }

    #[test]
    fn word_spans_cover_the_text() {
        assert_eq!(word_spans("  a bb \n"), [0..3, 3..8]);
        assert_eq!(word_spans(""), []);
        assert_eq!(word_spans("   "), []);
    }
}
