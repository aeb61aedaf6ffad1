//! The `AIModel` custom resource (`weir.dev/v1alpha1`): one model name clients ask for, and
//! the providers that serve it.
//!
//! Clients send OpenAI- or Anthropic-shaped requests naming a model; Weir finds the AIModel
//! that has that name, checks the client's key against `access`, and sends the request to a
//! provider by priority and weight, falling back to the next before the client has seen a
//! byte. Everything an operator needs to answer "what happens to a request for
//! `chat-smart`?" is in this one object.
//!
//! Shapes only: [`crate::validate_aimodel`] says which values are valid, and the control
//! plane what they mean.
//!
//! ```
//! let model: weir_crds::AIModel = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "weir.dev/v1alpha1", "kind": "AIModel",
//!     "metadata": {"name": "chat", "namespace": "ai"},
//!     "spec": {"providers": [{
//!         "name": "primary", "type": "OpenAI", "model": "gpt-4o",
//!         "endpoint": {"url": "https://api.openai.com/v1"},
//!         "credentials": {"secretRef": {"name": "openai", "key": "apiKey"}}
//!     }]}
//! })).unwrap();
//! assert_eq!(model.spec.providers[0].weight, 1);
//! assert_eq!(model.spec.providers[0].priority, 0);
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The label that makes a Secret a client key of the AI gateway (value `"true"`); the key
/// itself is in `data.key`.
pub const AI_KEY_LABEL: &str = "weir.dev/ai-key";

/// A model clients name in their requests, served by one or more providers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "AIModel",
    namespaced,
    status = "AIModelStatus",
    shortname = "aim",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Names","type":"string","jsonPath":".spec.names"}"#,
    printcolumn = r#"{"name":"Providers Ready","type":"string","jsonPath":".status.providersReady"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AIModelSpec {
    /// The values clients send as `model`. Empty: the object's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Host names this model is served on, as in a Route (`*.example.com` for any subdomain).
    /// Empty: every host. On these hosts Weir answers the AI paths (`/v1/chat/completions`,
    /// `/v1/messages`, `/v1/models`, …) and the model's prompts (`/prompts/<name>`) itself,
    /// before any Route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Which client keys may use the model. Absent: any client key of this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AIAccess>,
    /// Where requests go: lower `priority` first, equal priorities share by `weight`.
    pub providers: Vec<AIProvider>,
    /// Time limits on a request to a provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<AITimeouts>,
    /// When a request moves on to the next provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<AIFallback>,
    /// Token and request limits per client key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<AIQuota>,
    /// Prompt templates, each served at `POST /prompts/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<AIPrompt>,
}

/// Who may use a model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIAccess {
    /// Client keys (Secrets labelled `weir.dev/ai-key: "true"` in the model's namespace)
    /// whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_selector: Option<LabelSelector>,
    /// `true`: no key is needed at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

/// One provider of a model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIProvider {
    /// Unique within the model; shown in status, metrics and logs.
    pub name: String,
    /// The API the provider speaks: `OpenAI` (also vLLM, Ollama and other OpenAI-compatible
    /// servers) or `Anthropic`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The model name sent upstream.
    pub model: String,
    /// Where the provider is.
    pub endpoint: AIEndpoint,
    /// The provider's API key. Absent: none is sent (a local server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<AICredentials>,
    /// Lower first; a request tries the next priority when every provider of this one failed
    /// or is ejected. Default 0.
    #[serde(default)]
    pub priority: u32,
    /// Share of the requests among providers of the same priority. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Sent to an Anthropic provider when the client gave no `max_tokens` (Anthropic requires
    /// one). Default 4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u64>,
}

fn default_weight() -> u32 {
    1
}

/// A provider's address: a URL, or a Service in the model's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIEndpoint {
    /// The API's base URL, `http` or `https`, e.g. `https://api.openai.com/v1` or
    /// `https://api.anthropic.com`; the API's paths (`/chat/completions`, `/v1/messages`) are
    /// appended to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Service port serving the API in the clear (vLLM, Ollama in the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<AIServiceRef>,
}

/// A Service port in the model's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIServiceRef {
    pub name: String,
    pub port: u16,
    /// The path the API lives under on that port, e.g. `/v1` for OpenAI-compatible servers.
    /// Default: `/v1` for OpenAI, empty for Anthropic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
}

/// Where a provider's API key is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AICredentials {
    pub secret_ref: AISecretKeyRef,
}

/// A key of a Secret in the model's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AISecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Time limits, as durations (`2s`, `500ms`, `10m`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AITimeouts {
    /// Connecting to a provider. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// From sending the request to the provider's first content (a stream's first token, or
    /// a whole non-streamed answer's headers); a slower provider is left for the next.
    /// Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<String>,
    /// The longest pause between events once a stream flows; a longer one ends the stream
    /// with an error. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    /// The whole request, every attempt included. Default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// When a request moves on to the next provider, before the client has seen any content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIFallback {
    /// `connect-error`, `timeout` (incl. a slow first byte), `closed` (the provider ended
    /// the answer before any content) and statuses (`"429"`, `"5xx"`). Never 400, 401, 403,
    /// 404 or 422: those are the client's to fix. Default: connect-error, timeout, closed,
    /// 429, 500, 502, 503, 504, 529.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<String>,
    /// Providers tried per request, the first included. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// A `Retry-After` up to this long is waited out before the next provider; a longer one
    /// moves on at once. Default 0s (never wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honor_retry_after_up_to: Option<String>,
    /// A provider that fails this many requests in a row is skipped for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eject: Option<AIEject>,
}

/// Passive ejection of a failing provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIEject {
    pub consecutive_failures: u32,
    /// How long it is skipped, e.g. `30s`.
    #[serde(rename = "for")]
    pub duration: String,
}

/// Limits for the client keys a selector picks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIQuota {
    /// The client keys the limits apply to, each key counted on its own. `{}`: every key.
    pub keys: LabelSelector,
    /// Input plus output tokens per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<AILimit>,
    /// Requests per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<AILimit>,
}

/// At most `limit` per `per` (a duration).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AILimit {
    pub limit: u64,
    pub per: String,
}

/// A prompt template served as its own endpoint.
///
/// A caller sends `{"variables": {...}, "stream": false}` and gets a chat completion of the
/// model's first name, made of the system and user turns with the variables' values in place
/// (a value is inserted as it is, never read as a template); the endpoint's OpenAPI
/// description is at `GET /prompts/<name>/openapi.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIPrompt {
    /// Served at `POST /prompts/<name>` on the model's hosts.
    pub name: String,
    /// The system turn; `{{variable}}` is replaced by the variable's value. Only variables
    /// that are not free text (integer, number, boolean, or a string with an `enum`) may
    /// appear here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The user turn, with `{{variable}}` placeholders.
    pub user: String,
    /// The variables a caller passes, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, AIPromptVariable>,
    /// Request fields sent with every call (`temperature`, `max_tokens`, …); not `model`,
    /// `messages`, `stream` or `stream_options`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A prompt variable's type and constraints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIPromptVariable {
    /// `string`, `integer`, `number` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A call without it is refused. Otherwise a missing variable takes its `default`, or
    /// renders as nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The value when the caller gives none; it must satisfy the variable's own constraints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub default: Option<serde_json::Value>,
    /// The allowed values of a string. A string without one is free text.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "enum")]
    pub allowed: Vec<String>,
    /// The most characters a string may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// The least an integer or number may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// The most an integer or number may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// What Weir last concluded about the model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIModelStatus {
    /// `Accepted` (the spec is valid and served) and `ResolvedRefs` (every provider's
    /// endpoint and credentials were found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Providers with their endpoint and credentials resolved, as `ready/total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers_ready: Option<String>,
    /// Each provider's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<AIProviderStatus>,
}

/// One provider's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIProviderStatus {
    pub name: String,
    /// Its endpoint and credentials resolved.
    pub ready: bool,
    /// Why not, when it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Skipped after consecutive failures, until this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
}
