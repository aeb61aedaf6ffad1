//! The AI gateway's configuration: models clients name, the providers behind them, and the
//! client keys allowed to call them.
//!
//! The control plane translates each `AIModel` into an [`AiModel`] and each client-key Secret
//! into a [`ClientKey`]; the data plane compiles them into its model index. Provider API keys
//! are [`Credential`]s and client keys are only their SHA-256, so nothing here can leak a key.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use crate::{
    ai_prompt::AiPrompt,
    backend::{Endpoint, UpstreamTls},
    ids::NamespacedName,
    report::RefProblem,
    secret::Credential,
};

/// Every model and client key the AI gateway serves.
#[derive(Debug, Default)]
pub struct AiConfig {
    /// Accepted models, in `namespace/name` order (the first wins a name both claim on a host).
    pub models: Vec<Arc<AiModel>>,
    /// Client keys, in `namespace/name` order.
    pub keys: Vec<Arc<ClientKey>>,
}

/// A client key: a Secret labelled `weir.dev/ai-key: "true"`.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientKey {
    /// The Secret; its name is the key's identity in metrics and logs.
    pub id: NamespacedName,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// The Secret's labels, which `access` and quotas select on.
    pub labels: BTreeMap<String, String>,
}

/// One model clients name in requests.
#[derive(Debug)]
pub struct AiModel {
    pub id: NamespacedName,
    /// The values clients send as `model`.
    pub names: Vec<String>,
    /// Lowercase host names, `*.` for wildcards; empty: every host.
    pub hosts: Vec<String>,
    pub access: Access,
    /// In the order they are tried: by priority, then as written.
    pub providers: Vec<AiProvider>,
    pub timeouts: AiTimeouts,
    pub fallback: Fallback,
    /// Limits per client key, in the order written; a request must fit every one whose
    /// selector matches its key.
    pub quotas: Vec<AiQuota>,
    /// Prompt endpoints (`POST /prompts/<name>`), names unique within the model.
    pub prompts: Vec<AiPrompt>,
}

/// Who may call a model.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// No key needed.
    Public,
    /// Client keys of the namespace whose labels match.
    Keys {
        namespace: String,
        selector: LabelSelector,
    },
}

/// A Kubernetes label selector, already validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    pub match_labels: Vec<(String, String)>,
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectorRequirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl LabelSelector {
    /// Whether labels satisfy every term; the empty selector matches everything.
    ///
    /// ```
    /// use weir_contract::{LabelSelector, SelectorRequirement};
    /// let selector = LabelSelector {
    ///     match_labels: vec![("team".into(), "search".into())],
    ///     match_expressions: vec![SelectorRequirement::NotIn("tier".into(), vec!["free".into()])],
    /// };
    /// let labels = [("team".to_string(), "search".to_string())].into_iter().collect();
    /// assert!(selector.matches(&labels));
    /// ```
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|term| match term {
                SelectorRequirement::In(key, values) => {
                    labels.get(key).is_some_and(|v| values.contains(v))
                }
                SelectorRequirement::NotIn(key, values) => {
                    labels.get(key).is_none_or(|v| !values.contains(v))
                }
                SelectorRequirement::Exists(key) => labels.contains_key(key),
                SelectorRequirement::DoesNotExist(key) => !labels.contains_key(key),
            })
    }
}

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AiApi {
    /// OpenAI and every OpenAI-compatible server (vLLM, Ollama).
    OpenAi,
    Anthropic,
}

impl AiApi {
    pub fn as_str(self) -> &'static str {
        match self {
            AiApi::OpenAi => "OpenAI",
            AiApi::Anthropic => "Anthropic",
        }
    }
}

/// One provider of a model.
#[derive(Debug)]
pub struct AiProvider {
    /// Unique within its model.
    pub name: String,
    pub api: AiApi,
    /// The model name sent upstream.
    pub model: String,
    pub endpoint: AiEndpoint,
    /// Sent as the provider's type expects (`Authorization: Bearer`, `x-api-key`).
    pub credential: Option<Credential>,
    pub priority: u32,
    pub weight: u32,
    /// Sent to an Anthropic provider when the client gave no `max_tokens`.
    pub default_max_tokens: u64,
    /// Why the provider cannot be used, when it cannot (it is then never tried).
    pub unresolved: Option<RefProblem>,
}

/// Where a provider is.
#[derive(Debug, Clone, PartialEq)]
pub struct AiEndpoint {
    /// `http` or `https`.
    pub secure: bool,
    /// The authority requests carry (`api.openai.com`, `vllm.ai:8000`).
    pub authority: String,
    /// What the API's paths are appended to (`/v1`, or empty).
    pub base_path: String,
    pub address: AiAddress,
    /// TLS to the provider: its server name and the roots to trust.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// How a provider's host is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum AiAddress {
    /// A host name, resolved when connecting, and its port.
    Host { host: String, port: u16 },
    /// A Service's ready endpoints.
    Endpoints(Vec<Endpoint>),
}

/// Time limits on a model's requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AiTimeouts {
    pub connect: Duration,
    /// To the first content event of a stream, or a whole non-streamed answer.
    pub first_byte: Duration,
    /// The longest pause between a stream's events once content flows.
    pub idle: Duration,
    /// The whole request, all attempts included.
    pub request: Duration,
}

impl Default for AiTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            request: Duration::from_secs(600),
        }
    }
}

/// When a request moves on to the next provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub on_connect_error: bool,
    pub on_timeout: bool,
    /// The provider ended its answer before any content.
    pub on_closed: bool,
    /// Statuses that move on, sorted.
    pub statuses: Vec<u16>,
    /// Providers tried per request, the first included.
    pub max_attempts: u32,
    /// A `Retry-After` up to this long is waited out; a longer one moves on at once.
    pub honor_retry_after_up_to: Duration,
    pub eject: Option<Eject>,
}

impl Default for Fallback {
    fn default() -> Self {
        Self {
            on_connect_error: true,
            on_timeout: true,
            on_closed: true,
            statuses: vec![429, 500, 502, 503, 504, 529],
            max_attempts: 3,
            honor_retry_after_up_to: Duration::ZERO,
            eject: None,
        }
    }
}

/// A provider that fails `consecutive_failures` requests in a row is skipped for `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eject {
    pub consecutive_failures: u32,
    pub duration: Duration,
}

/// Limits for each client key a selector picks, each key counted on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct AiQuota {
    pub keys: LabelSelector,
    /// Input plus output tokens (cached ones included) per window.
    pub tokens: Option<QuotaLimit>,
    /// Requests per window.
    pub requests: Option<QuotaLimit>,
}

/// At most `limit` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimit {
    pub limit: u64,
    pub per: Duration,
}
