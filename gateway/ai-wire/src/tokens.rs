//! A cheap prompt-size estimate, for decisions that must be made before the provider counts.
//!
//! Owns [`estimate_prompt_tokens`]: quota reservations (reserve the estimate plus `max_tokens`,
//! settle on the provider's usage) and `count_tokens` answered for providers that have no such
//! endpoint. It is an estimate, never a bill: about four characters a token for text, a flat
//! [`MEDIA_TOKENS`] for each image, audio clip or file, one token per number (embeddings accept
//! token ids). Invariant: it reads any JSON without panicking and in time linear in its size.

use serde_json::Value;

/// Tokens counted for one image, audio clip or file, whatever its size: about what a
/// full-resolution image costs with either provider. Counting a base64 payload's characters
/// would reserve hundreds of thousands of tokens for one picture.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::tokens::{MEDIA_TOKENS, estimate_prompt_tokens};
/// let image = json!({"input": [{"type": "input_image", "image_url": "https://example.com/a.png"}]});
/// assert_eq!(estimate_prompt_tokens(&image), MEDIA_TOKENS);
/// ```
pub const MEDIA_TOKENS: u64 = 1_600;

/// Deeper than this is not a prompt any provider accepts; the estimate stops descending.
const MAX_DEPTH: usize = 64;

/// Estimates a request's prompt tokens: ceil(characters / 4) over the text of `messages`, `system`,
/// `tools` (names, descriptions and schemas, keys included), `input` (embeddings, Responses) and
/// `prompt`/`instructions`, plus [`MEDIA_TOKENS`] per media part. Works for OpenAI chat, Responses
/// and embeddings requests and Anthropic messages requests alike.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::tokens::estimate_prompt_tokens;
/// let request = json!({"model": "m", "messages": [{"role": "user", "content": "12345678"}]});
/// // "user" and "12345678": 12 characters.
/// assert_eq!(estimate_prompt_tokens(&request), 3);
/// ```
pub fn estimate_prompt_tokens(request: &Value) -> u64 {
    let mut tally = Tally::default();
    for field in ["messages", "system", "input", "prompt", "instructions"] {
        if let Some(content) = request.get(field) {
            tally.content(content, 0);
        }
    }
    for field in ["tools", "functions"] {
        if let Some(definitions) = request.get(field) {
            tally.definitions(definitions, 0);
        }
    }
    tally.chars.div_ceil(4).saturating_add(tally.tokens)
}

#[derive(Default)]
struct Tally {
    chars: u64,
    tokens: u64,
}

impl Tally {
    fn text(&mut self, text: &str) {
        self.chars = self.chars.saturating_add(text.chars().count() as u64);
    }

    /// Message content: string values count, keys do not (they are the format, not the prompt).
    fn content(&mut self, value: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::String(text) => self.text(text),
            Value::Number(_) => self.tokens = self.tokens.saturating_add(1),
            Value::Array(items) => items.iter().for_each(|item| self.content(item, depth + 1)),
            Value::Object(fields) => {
                if is_media(value) {
                    self.tokens = self.tokens.saturating_add(MEDIA_TOKENS);
                    return;
                }
                for (key, field) in fields {
                    // Cache markers and ids are bookkeeping, not prompt.
                    if !matches!(
                        key.as_str(),
                        "cache_control" | "id" | "tool_call_id" | "tool_use_id" | "type"
                    ) {
                        self.content(field, depth + 1);
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// Tool definitions: schemas reach the model as text, keys and all.
    fn definitions(&mut self, value: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::String(text) => self.text(text),
            Value::Array(items) => items
                .iter()
                .for_each(|item| self.definitions(item, depth + 1)),
            Value::Object(fields) => {
                for (key, field) in fields {
                    self.text(key);
                    self.definitions(field, depth + 1);
                }
            }
            Value::Number(_) | Value::Null | Value::Bool(_) => {}
        }
    }
}

fn is_media(part: &Value) -> bool {
    matches!(
        part.get("type").and_then(Value::as_str),
        Some(
            "image_url"
                | "image"
                | "input_image"
                | "input_audio"
                | "file"
                | "input_file"
                | "document"
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_a_quarter_token_per_character_rounded_up() {
        let request = json!({"messages": [{"role": "user", "content": "12345"}]});
        // "user" + "12345" = 9 characters → 3 tokens.
        assert_eq!(estimate_prompt_tokens(&request), 3);
    }

    #[test]
    fn counts_characters_not_bytes() {
        let request = json!({"input": "éééé"});
        assert_eq!(estimate_prompt_tokens(&request), 1);
    }

    #[test]
    fn counts_anthropic_system_and_text_blocks() {
        let request = json!({"system": [{"type": "text", "text": "abcd"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "abcd"}]}]});
        // "abcd" + "user" + "abcd" = 12 characters.
        assert_eq!(estimate_prompt_tokens(&request), 3);
    }

    #[test]
    fn an_image_costs_a_flat_amount_not_its_base64_length() {
        let huge = "A".repeat(400_000);
        let request = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{huge}")}}]}]});
        assert_eq!(estimate_prompt_tokens(&request), 1 + MEDIA_TOKENS);
    }

    #[test]
    fn tool_schemas_count_their_keys() {
        let request = json!({"tools": [{"name": "abcd", "input_schema": {"type": "object"}}]});
        // "name" "abcd" "input_schema" "type" "object" = 4+4+12+4+6 = 30 → 8.
        assert_eq!(estimate_prompt_tokens(&request), 8);
    }

    #[test]
    fn embedding_token_ids_count_one_each() {
        assert_eq!(
            estimate_prompt_tokens(&json!({"input": [[1, 2, 3], [4]]})),
            4
        );
    }

    #[test]
    fn ignores_everything_but_the_prompt() {
        let request =
            json!({"model": "a-very-long-model-name", "max_tokens": 100, "metadata": {"x": "y"}});
        assert_eq!(estimate_prompt_tokens(&request), 0);
    }

    #[test]
    fn stops_descending_past_any_real_prompt_depth() {
        let mut deep = json!("abcd");
        for _ in 0..200 {
            deep = json!([deep]);
        }
        assert_eq!(estimate_prompt_tokens(&json!({"input": deep})), 0);
    }
}
