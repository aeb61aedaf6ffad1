//! Token usage: the one place that reads and writes both providers' token counts.
//!
//! The providers split a prompt differently. Anthropic reports `input_tokens` *excluding* cache
//! reads and writes, with `cache_read_input_tokens` and `cache_creation_input_tokens` beside it;
//! OpenAI reports `prompt_tokens` *including* cached tokens, with `cached_tokens` as a detail of it.
//! [`Usage`] keeps the finest split both can express, so the invariant holds in every conversion:
//! `prompt_tokens() == input + cache_read + cache_write`, no cache token is dropped and none is
//! counted twice (the errors other gateways make here: Portkey PR#1754, LiteLLM PR#31282).
//!
//! Readers are lenient: a missing, `null`, negative or non-numeric count reads as zero, because a
//! usage report is accounting, not a request to validate.

use serde_json::{Value, json};

/// Token counts, split the way both providers can express: `input` excludes cache reads and writes.
///
/// ```
/// use weir_ai_wire::usage::Usage;
/// let usage = Usage { input: 10, cache_read: 4, cache_write: 2, output: 7 };
/// assert_eq!(usage.prompt_tokens(), 16);
/// assert_eq!(usage.total(), 23);
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens that were neither read from nor written to a prompt cache.
    pub input: u64,
    /// Prompt tokens read from a prompt cache.
    pub cache_read: u64,
    /// Prompt tokens written to a prompt cache (Anthropic's `cache_creation_input_tokens`).
    pub cache_write: u64,
    /// Generated tokens (reasoning included, as both providers bill them).
    pub output: u64,
}

impl Usage {
    /// All prompt tokens, cached or not: OpenAI's `prompt_tokens`.
    ///
    /// ```
    /// use weir_ai_wire::usage::Usage;
    /// assert_eq!(Usage { input: 1, cache_read: 2, cache_write: 3, output: 4 }.prompt_tokens(), 6);
    /// ```
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Prompt and output tokens together.
    ///
    /// ```
    /// use weir_ai_wire::usage::Usage;
    /// assert_eq!(Usage { input: 1, cache_read: 2, cache_write: 3, output: 4 }.total(), 10);
    /// ```
    pub fn total(&self) -> u64 {
        self.prompt_tokens().saturating_add(self.output)
    }

    /// Reads an OpenAI `usage` object: chat completions (`prompt_tokens`, `completion_tokens`,
    /// `prompt_tokens_details.cached_tokens`), embeddings (`prompt_tokens` only) and the Responses
    /// API (`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`).
    ///
    /// Cached tokens are part of the prompt, so `input = prompt - cached` and `cache_read = cached`
    /// (a `cached_tokens` larger than the prompt is clamped to it).
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::usage::Usage;
    /// let chat = json!({"prompt_tokens": 16, "completion_tokens": 5,
    ///                   "prompt_tokens_details": {"cached_tokens": 4}});
    /// assert_eq!(Usage::from_openai(&chat), Usage { input: 12, cache_read: 4, cache_write: 0, output: 5 });
    /// ```
    pub fn from_openai(usage: &Value) -> Usage {
        let prompt = count(usage, "prompt_tokens")
            .or_else(|| count(usage, "input_tokens"))
            .unwrap_or(0);
        let cached = usage
            .get("prompt_tokens_details")
            .or_else(|| usage.get("input_tokens_details"))
            .and_then(|details| count(details, "cached_tokens"))
            .unwrap_or(0)
            .min(prompt);
        let output = count(usage, "completion_tokens")
            .or_else(|| count(usage, "output_tokens"))
            .unwrap_or(0);
        Usage {
            input: prompt - cached,
            cache_read: cached,
            cache_write: 0,
            output,
        }
    }

    /// Reads an Anthropic `usage` object (a response's, or `message_start`'s).
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::usage::Usage;
    /// let usage = json!({"input_tokens": 10, "cache_read_input_tokens": 4,
    ///                    "cache_creation_input_tokens": 2, "output_tokens": 1});
    /// assert_eq!(Usage::from_anthropic(&usage).prompt_tokens(), 16);
    /// ```
    pub fn from_anthropic(usage: &Value) -> Usage {
        let mut read = Usage::default();
        read.merge_anthropic(usage);
        read
    }

    /// Folds in a later Anthropic usage report (`message_delta`'s): every count it carries
    /// replaces the one held (`output_tokens` there is cumulative, not an increment); a count it
    /// omits, or sends as `null`, keeps the value from `message_start`.
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::usage::Usage;
    /// let mut usage = Usage::from_anthropic(&json!({"input_tokens": 10, "output_tokens": 1}));
    /// usage.merge_anthropic(&json!({"output_tokens": 42}));
    /// assert_eq!(usage, Usage { input: 10, cache_read: 0, cache_write: 0, output: 42 });
    /// ```
    pub fn merge_anthropic(&mut self, usage: &Value) {
        if let Some(input) = count(usage, "input_tokens") {
            self.input = input;
        }
        if let Some(cache_read) = count(usage, "cache_read_input_tokens") {
            self.cache_read = cache_read;
        }
        if let Some(cache_write) = count(usage, "cache_creation_input_tokens") {
            self.cache_write = cache_write;
        }
        if let Some(output) = count(usage, "output_tokens") {
            self.output = output;
        }
    }

    /// OpenAI's chat `usage` object; cache writes are folded into `prompt_tokens`, as OpenAI's
    /// own prompts include every token the model read.
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::usage::Usage;
    /// let usage = Usage { input: 10, cache_read: 4, cache_write: 2, output: 3 };
    /// assert_eq!(usage.to_openai(), json!({"prompt_tokens": 16, "completion_tokens": 3,
    ///     "total_tokens": 19, "prompt_tokens_details": {"cached_tokens": 4}}));
    /// ```
    pub fn to_openai(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens(),
            "completion_tokens": self.output,
            "total_tokens": self.total(),
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
        })
    }

    /// Anthropic's `usage` object.
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::usage::Usage;
    /// let usage = Usage { input: 10, cache_read: 4, cache_write: 2, output: 3 };
    /// assert_eq!(usage.to_anthropic(), json!({"input_tokens": 10, "output_tokens": 3,
    ///     "cache_creation_input_tokens": 2, "cache_read_input_tokens": 4}));
    /// ```
    pub fn to_anthropic(&self) -> Value {
        json!({
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
        })
    }
}

/// A token count at `field`, if it holds one. Floats with an integral value are accepted
/// (some OpenAI-compatible servers emit `12.0`); anything else is no count.
fn count(usage: &Value, field: &str) -> Option<u64> {
    let value = usage.get(field)?;
    value.as_u64().or_else(|| {
        let float = value.as_f64()?;
        (float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64).then_some(float as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Usage {
        Usage {
            input,
            cache_read,
            cache_write,
            output,
        }
    }

    #[test]
    fn anthropic_cache_tokens_are_folded_into_openai_prompt_tokens() {
        let anthropic = json!({"input_tokens": 10, "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 2, "output_tokens": 5});
        let openai = Usage::from_anthropic(&anthropic).to_openai();
        assert_eq!(openai["prompt_tokens"], 16);
        assert_eq!(openai["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(openai["completion_tokens"], 5);
        assert_eq!(openai["total_tokens"], 21);
    }

    #[test]
    fn openai_cached_tokens_are_taken_out_of_anthropic_input_tokens() {
        let openai = json!({"prompt_tokens": 16, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4}});
        let anthropic = Usage::from_openai(&openai).to_anthropic();
        assert_eq!(anthropic["input_tokens"], 12);
        assert_eq!(anthropic["cache_read_input_tokens"], 4);
        assert_eq!(anthropic["cache_creation_input_tokens"], 0);
        assert_eq!(anthropic["output_tokens"], 5);
    }

    #[test]
    fn openai_embeddings_usage_is_all_input() {
        let embeddings = json!({"prompt_tokens": 8, "total_tokens": 8});
        assert_eq!(Usage::from_openai(&embeddings), usage(8, 0, 0, 0));
    }

    #[test]
    fn openai_responses_usage_reads_input_and_output_tokens() {
        let responses = json!({"input_tokens": 30, "output_tokens": 9, "total_tokens": 39,
            "input_tokens_details": {"cached_tokens": 20},
            "output_tokens_details": {"reasoning_tokens": 3}});
        assert_eq!(Usage::from_openai(&responses), usage(10, 20, 0, 9));
    }

    #[test]
    fn openai_cached_tokens_larger_than_the_prompt_are_clamped() {
        let odd = json!({"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}});
        assert_eq!(Usage::from_openai(&odd).prompt_tokens(), 3);
    }

    #[test]
    fn round_trips_keep_every_prompt_token() {
        let original = usage(10, 4, 2, 5);
        let through_anthropic = Usage::from_anthropic(&original.to_anthropic());
        assert_eq!(through_anthropic, original);
        let through_openai = Usage::from_openai(&original.to_openai());
        assert_eq!(through_openai.prompt_tokens(), original.prompt_tokens());
        assert_eq!(through_openai.total(), original.total());
    }

    #[test]
    fn message_delta_overrides_present_counts_and_keeps_absent_ones() {
        let mut merged = Usage::from_anthropic(&json!({"input_tokens": 10,
            "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2, "output_tokens": 1}));
        merged.merge_anthropic(&json!({"output_tokens": 30, "cache_read_input_tokens": null}));
        assert_eq!(merged, usage(10, 4, 2, 30));
    }

    #[test]
    fn message_delta_input_counts_replace_message_start_ones() {
        let mut merged = Usage::from_anthropic(&json!({"input_tokens": 0, "output_tokens": 1}));
        merged.merge_anthropic(&json!({"input_tokens": 12, "output_tokens": 7}));
        assert_eq!(merged, usage(12, 0, 0, 7));
    }

    #[test]
    fn garbage_counts_read_as_zero() {
        let garbage = json!({"prompt_tokens": "many", "completion_tokens": -3,
            "prompt_tokens_details": null});
        assert_eq!(Usage::from_openai(&garbage), Usage::default());
        assert_eq!(Usage::from_anthropic(&json!([1, 2])), Usage::default());
        assert_eq!(
            Usage::from_openai(&json!({"prompt_tokens": 1e300})),
            Usage::default()
        );
    }

    #[test]
    fn integral_floats_are_counts() {
        assert_eq!(
            Usage::from_openai(&json!({"prompt_tokens": 12.0, "completion_tokens": 2.0})),
            usage(12, 0, 0, 2)
        );
    }

    #[test]
    fn totals_saturate_instead_of_overflowing() {
        assert_eq!(usage(u64::MAX, 1, 1, 1).total(), u64::MAX);
    }
}
