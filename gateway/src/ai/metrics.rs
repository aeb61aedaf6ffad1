//! The AI gateway's metrics and its usage log line.
//!
//! - `weir_ai_tokens_total{model,provider,key,type}`: tokens by type (`input` excludes cached,
//!   `cached` is cache reads, `cache_write` cache writes, `output`), exactly as the provider
//!   reported them, whether the request streamed or not;
//! - `weir_ai_requests_total{model,provider,key,outcome}`;
//! - `weir_ai_time_to_first_token_seconds{model,provider}` and
//!   `weir_ai_request_duration_seconds{model,provider}`;
//! - `weir_ai_fallbacks_total{model,provider,reason}`: failed attempts, by why, whether or
//!   not they moved on;
//! - `weir_ai_prompt_requests_total{model,prompt,outcome}`: prompt endpoint calls, `rendered`
//!   (then counted above as any request) or `invalid` (refused for their variables).
//!
//! `key` is the client key's Secret name, never the key. AI requests are few and long next to
//! proxied ones, so their series are looked up per request.

use std::time::Instant;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use weir_ai_wire::usage::Usage;

use crate::metrics::DurationHistogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    provider: String,
    key: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    provider: String,
    key: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    model: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PromptLabels {
    model: String,
    prompt: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    model: String,
    provider: String,
    reason: String,
    moved_on: &'static str,
}

/// The AI gateway's metric families; cheap to clone.
#[derive(Clone, Default)]
pub struct AiMetrics {
    tokens: Family<TokenLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    time_to_first_token: Family<ProviderLabels, DurationHistogram>,
    duration: Family<ProviderLabels, DurationHistogram>,
    fallbacks: Family<FallbackLabels, Counter>,
    prompts: Family<PromptLabels, Counter>,
}

/// Who a request's figures are recorded for.
#[derive(Debug, Clone)]
pub struct Record {
    pub model: String,
    pub provider: String,
    pub key: String,
    pub started: Instant,
}

impl AiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ai_tokens",
            "Tokens by model, provider, client key and type (input excludes cached; cached are cache reads)",
            self.tokens.clone(),
        );
        registry.register(
            "ai_requests",
            "AI requests by model, provider, client key and outcome",
            self.requests.clone(),
        );
        registry.register(
            "ai_time_to_first_token_seconds",
            "Time from request to the first content sent to the client",
            self.time_to_first_token.clone(),
        );
        registry.register(
            "ai_request_duration_seconds",
            "Time from request to the end of the answer",
            self.duration.clone(),
        );
        registry.register(
            "ai_fallbacks",
            "Failed provider attempts, by reason and whether the request moved on to the next provider",
            self.fallbacks.clone(),
        );
        registry.register(
            "ai_prompt_requests",
            "Prompt endpoint calls by model, prompt and outcome (rendered, or invalid variables)",
            self.prompts.clone(),
        );
    }

    /// A prompt call: `rendered` (then counted as a chat request too) or `invalid`.
    pub fn prompt(&self, model: &str, prompt: &str, outcome: &'static str) {
        self.prompts
            .get_or_create(&PromptLabels {
                model: model.to_owned(),
                prompt: prompt.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn tokens(&self, record: &Record, usage: &Usage) {
        for (kind, count) in [
            ("input", usage.input),
            ("cached", usage.cache_read),
            ("cache_write", usage.cache_write),
            ("output", usage.output),
        ] {
            if count == 0 {
                continue;
            }
            self.tokens
                .get_or_create(&TokenLabels {
                    model: record.model.clone(),
                    provider: record.provider.clone(),
                    key: record.key.clone(),
                    r#type: kind,
                })
                .inc_by(count);
        }
    }

    pub fn request(&self, model: &str, provider: &str, key: &str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.to_owned(),
                provider: provider.to_owned(),
                key: key.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn first_token(&self, record: &Record) {
        self.time_to_first_token
            .get_or_create(&ProviderLabels {
                model: record.model.clone(),
                provider: record.provider.clone(),
            })
            .observe(record.started.elapsed());
    }

    pub fn fallback(&self, model: &str, provider: &str, reason: &str, moved_on: bool) {
        self.fallbacks
            .get_or_create(&FallbackLabels {
                model: model.to_owned(),
                provider: provider.to_owned(),
                reason: reason.to_owned(),
                moved_on: if moved_on { "true" } else { "false" },
            })
            .inc();
    }

    /// The end of a request that got an answer: its outcome, duration and usage log line.
    pub fn finished(
        &self,
        record: &Record,
        outcome: &'static str,
        usage: Option<&Usage>,
        partial: bool,
        error: Option<&str>,
    ) {
        self.request(&record.model, &record.provider, &record.key, outcome);
        let elapsed = record.started.elapsed();
        self.duration
            .get_or_create(&ProviderLabels {
                model: record.model.clone(),
                provider: record.provider.clone(),
            })
            .observe(elapsed);
        let usage = usage.copied().unwrap_or_default();
        tracing::info!(
            target: "weir::ai::usage",
            model = %record.model,
            provider = %record.provider,
            key = %record.key,
            outcome,
            input_tokens = usage.input,
            cached_tokens = usage.cache_read,
            cache_write_tokens = usage.cache_write,
            output_tokens = usage.output,
            partial,
            error = error.unwrap_or(""),
            duration_ms = elapsed.as_millis() as u64,
            "ai usage"
        );
    }
}
