//! Directives: the `+`-separated words of a request's `model` that choose how the mock answers.
//!
//! A test picks the behaviour of each request by naming it in the model it sends, e.g.
//! `mock+status-429+retry-after-30`, so one mock process can play a healthy provider and a
//! failing one at once, and a gateway in between passes the choice through untouched. This
//! module is the only place that reads those words; handlers ask the parsed [`Directives`].
//!
//! Invariant: parsing never fails. An unknown or malformed word is ignored, so a real model
//! name such as `gpt-4o` or `claude-sonnet-4-5` parses to no directives at all.

use std::time::Duration;

use http::StatusCode;

/// Upper bound on `tokens-N`, so a typo cannot make the mock build a gigabyte answer.
const MAX_OUTPUT_WORDS: u32 = 1_000_000;
/// Upper bound on `dims-N`: a few such vectors make a response of tens of MiB.
const MAX_EMBEDDING_DIMS: usize = 4_000_000;
/// Upper bound on `tools-K`.
const MAX_TOOL_CALLS: u32 = 1_000;

/// What a request's model asks of its answer. `Default` is a healthy, plain answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `status-NNN` (400–599): answer this status with an error body instead.
    pub status: Option<StatusCode>,
    /// `retry-after-S`: the `retry-after` header's value, in seconds.
    pub retry_after_secs: Option<u64>,
    /// `slow-headers-MS`: wait this long before sending anything.
    pub slow_headers: Option<Duration>,
    /// `slow-ttft-MS`: streams send headers at once, then wait this long before the first event.
    pub slow_ttft: Option<Duration>,
    /// `headers-then-close`: send 200 SSE headers and one comment, then abort the response.
    pub headers_then_close: bool,
    /// `cut-after-N`: abort the body after this many content deltas.
    pub cut_after_deltas: Option<usize>,
    /// `stall-after-N-MS`: pause mid-body, then carry on.
    pub stall: Option<Stall>,
    /// `tools-K`: answer with this many parallel tool calls instead of text.
    pub tool_calls: u32,
    /// `text-then-tools`: with `tools-K`, say the text answer before the tool calls.
    pub text_then_tools: bool,
    /// `tokens-N`: how many words the text answer has (default [`DEFAULT_OUTPUT_WORDS`]).
    pub output_words: Option<u32>,
    /// `cache`: report cached prompt tokens.
    pub cache: bool,
    /// `echo`: the answer text is the request body as received.
    pub echo: bool,
    /// `dims-N`: embeddings have this many floats.
    pub embedding_dims: Option<usize>,
}

/// The answer length when the model names no `tokens-N`.
pub const DEFAULT_OUTPUT_WORDS: u32 = 12;

/// `stall-after-N-MS`: after `after_deltas` content deltas, wait `pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub after_deltas: usize,
    pub pause: Duration,
}

impl Directives {
    /// Reads every `+`-separated word of `model`, the first included (so `echo` alone works).
    ///
    /// ```ignore
    /// let directives = Directives::parse("mock+status-429+retry-after-30");
    /// assert_eq!(directives.retry_after_secs, Some(30));
    /// ```
    pub fn parse(model: &str) -> Self {
        let mut directives = Self::default();
        for word in model.split('+') {
            directives.apply(word);
        }
        directives
    }

    fn apply(&mut self, word: &str) {
        // A malformed value leaves the field as an earlier word set it.
        match word {
            "headers-then-close" => self.headers_then_close = true,
            "text-then-tools" => self.text_then_tools = true,
            "cache" => self.cache = true,
            "echo" => self.echo = true,
            _ => {}
        }
        if let Some(code) = word.strip_prefix("status-") {
            self.status = parse_error_status(code).or(self.status);
        } else if let Some(seconds) = word.strip_prefix("retry-after-") {
            self.retry_after_secs = seconds.parse().ok().or(self.retry_after_secs);
        } else if let Some(delay) = word.strip_prefix("slow-headers-") {
            self.slow_headers = parse_duration(delay).or(self.slow_headers);
        } else if let Some(delay) = word.strip_prefix("slow-ttft-") {
            self.slow_ttft = parse_duration(delay).or(self.slow_ttft);
        } else if let Some(deltas) = word.strip_prefix("cut-after-") {
            self.cut_after_deltas = deltas.parse().ok().or(self.cut_after_deltas);
        } else if let Some(stall) = word.strip_prefix("stall-after-") {
            self.stall = parse_stall(stall).or(self.stall);
        } else if let Some(count) = word.strip_prefix("tools-") {
            let count = count
                .parse()
                .ok()
                .map(|count: u32| count.min(MAX_TOOL_CALLS));
            self.tool_calls = count.unwrap_or(self.tool_calls);
        } else if let Some(count) = word.strip_prefix("tokens-") {
            let count = count
                .parse()
                .ok()
                .map(|count: u32| count.min(MAX_OUTPUT_WORDS));
            self.output_words = count.or(self.output_words);
        } else if let Some(dims) = word.strip_prefix("dims-") {
            let dims = dims
                .parse()
                .ok()
                .map(|dims: usize| dims.clamp(1, MAX_EMBEDDING_DIMS));
            self.embedding_dims = dims.or(self.embedding_dims);
        }
    }

    /// Words in the text answer, before any `max_tokens` cap.
    pub fn output_words(&self) -> u32 {
        self.output_words.unwrap_or(DEFAULT_OUTPUT_WORDS)
    }
}

/// An error status, 400–599: a success or informational status is no fault to inject.
fn parse_error_status(code: &str) -> Option<StatusCode> {
    let code = code.parse::<u16>().ok()?;
    (400..=599)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())
        .flatten()
}

/// `N-MS`: a delta count and a pause.
fn parse_stall(text: &str) -> Option<Stall> {
    let (deltas, pause) = text.split_once('-')?;
    Some(Stall {
        after_deltas: deltas.parse().ok()?,
        pause: parse_duration(pause)?,
    })
}

/// A delay in milliseconds: `500`, `500ms`, or in seconds: `5s`.
fn parse_duration(text: &str) -> Option<Duration> {
    if let Some(millis) = text.strip_suffix("ms") {
        millis.parse().ok().map(Duration::from_millis)
    } else if let Some(seconds) = text.strip_suffix('s') {
        seconds.parse().ok().map(Duration::from_secs)
    } else {
        text.parse().ok().map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_model_name_has_no_directives() {
        assert_eq!(Directives::parse("gpt-4o"), Directives::default());
        assert_eq!(
            Directives::parse("claude-sonnet-4-5"),
            Directives::default()
        );
        assert_eq!(Directives::parse(""), Directives::default());
    }

    #[test]
    fn status_and_retry_after_combine() {
        let directives = Directives::parse("mock+status-429+retry-after-30");
        assert_eq!(directives.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(directives.retry_after_secs, Some(30));
    }

    #[test]
    fn status_outside_the_error_range_is_ignored() {
        assert_eq!(Directives::parse("mock+status-200").status, None);
        assert_eq!(Directives::parse("mock+status-600").status, None);
        assert_eq!(Directives::parse("mock+status-abc").status, None);
        assert_eq!(
            Directives::parse("mock+status-529").status,
            Some(StatusCode::from_u16(529).unwrap())
        );
    }

    #[test]
    fn delays_are_milliseconds_unless_suffixed() {
        let directives = Directives::parse("mock+slow-headers-250+slow-ttft-2s");
        assert_eq!(directives.slow_headers, Some(Duration::from_millis(250)));
        assert_eq!(directives.slow_ttft, Some(Duration::from_secs(2)));
        assert_eq!(
            Directives::parse("slow-ttft-40ms").slow_ttft,
            Some(Duration::from_millis(40))
        );
    }

    #[test]
    fn stall_names_a_delta_count_and_a_pause() {
        let directives = Directives::parse("mock+stall-after-3-500");
        assert_eq!(
            directives.stall,
            Some(Stall {
                after_deltas: 3,
                pause: Duration::from_millis(500)
            })
        );
        assert_eq!(Directives::parse("mock+stall-after-3").stall, None);
    }

    #[test]
    fn stream_shape_directives() {
        let directives =
            Directives::parse("mock+cut-after-5+tools-2+text-then-tools+tokens-3+cache+echo");
        assert_eq!(directives.cut_after_deltas, Some(5));
        assert_eq!(directives.tool_calls, 2);
        assert!(directives.text_then_tools);
        assert_eq!(directives.output_words(), 3);
        assert!(directives.cache);
        assert!(directives.echo);
        assert!(!directives.headers_then_close);
    }

    #[test]
    fn the_first_word_is_a_directive_too() {
        assert!(Directives::parse("echo").echo);
        assert!(Directives::parse("headers-then-close+mock").headers_then_close);
    }

    #[test]
    fn output_words_default_to_twelve() {
        assert_eq!(Directives::parse("mock").output_words(), 12);
        assert_eq!(Directives::parse("mock+tokens-0").output_words(), 0);
    }

    #[test]
    fn sizes_are_capped() {
        assert_eq!(
            Directives::parse("tokens-4000000000").output_words(),
            MAX_OUTPUT_WORDS
        );
        assert_eq!(
            Directives::parse("dims-999999999").embedding_dims,
            Some(MAX_EMBEDDING_DIMS)
        );
        assert_eq!(Directives::parse("dims-0").embedding_dims, Some(1));
        assert_eq!(Directives::parse("dims-1024").embedding_dims, Some(1024));
    }

    #[test]
    fn malformed_words_are_ignored() {
        assert_eq!(
            Directives::parse("mock+tools-x+cut-after-+retry-after-soon+dims-"),
            Directives::default()
        );
    }
}
