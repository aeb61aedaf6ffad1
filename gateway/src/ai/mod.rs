//! The AI gateway: OpenAI- and Anthropic-compatible endpoints, routed by the body's `model`
//! to an `AIModel`'s providers.
//!
//! A request to one of the AI paths ([`AiPath`]) on a host some model is served on, or to a
//! prompt endpoint a model served on the host declares ([`prompts`]), comes here instead of
//! the routing table ([`AiRoute::claimed_by`] decides). In order:
//!
//! 1. **admit** — the caller's key (`Authorization: Bearer` or `x-api-key`) is hashed and looked
//!    up; the body is read whole, up to the configured cap (413 above it), and parsed; the
//!    model it names is found on the host and the key checked against the model's `access`
//!    (a prompt call is then rendered into a chat completion of its model, and joins here);
//! 2. **call** — providers are tried in order ([`index::CompiledModel::attempt_order`]); each
//!    gets the request in its own dialect, its own model name and its own credential
//!    ([`call`]); everything that goes wrong before the client has seen content (connect
//!    errors, listed statuses, a slow first byte, an answer that ends before any content)
//!    moves on to the next;
//! 3. **answer** — a whole answer is translated and returned; a stream is held until its first
//!    content event, then pumped to the client in the client's dialect ([`stream`]), ending
//!    with the dialect's error frame, never a clean end, if the provider fails after that;
//! 4. **account** — tokens by model, provider, key and type, outcomes, time to first token and
//!    duration ([`metrics`]), and one usage log line per request.
//!
//! Every error is JSON in the caller's dialect (`weir_ai_wire::errors`). Neither the client's
//! key nor a provider's ever appears in a log, a metric or an answer: keys are hashed on
//! arrival, credentials are sensitive header values built once per table.

mod call;
mod ejections;
pub mod index;
pub mod metrics;
pub mod prompts;
pub mod quota;
mod stream;

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use weir_ai_wire::{
    Dialect,
    errors::{ApiError, ErrorKind},
};

pub use ejections::Ejections;
pub use index::{AiIndex, AiState, TlsConnectors};
pub use metrics::AiMetrics;
pub use prompts::{PromptPage, PromptPath, PromptTarget};
pub use quota::Quotas;
pub use stream::AiBody;

use crate::{
    proxy::{ProxyBody, local_body},
    upstream::Upstreams,
};

/// The paths the AI gateway answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiPath {
    ChatCompletions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
}

impl AiPath {
    /// The AI path `path` is, if it is one.
    pub fn of(path: &str) -> Option<Self> {
        // Every AI path starts with /v1/: one comparison for everything else.
        let rest = path.strip_prefix("/v1/")?;
        Some(match rest {
            "chat/completions" => AiPath::ChatCompletions,
            "embeddings" => AiPath::Embeddings,
            "responses" => AiPath::Responses,
            "models" => AiPath::Models,
            "messages" => AiPath::Messages,
            "messages/count_tokens" => AiPath::CountTokens,
            _ => return None,
        })
    }

    /// The dialect callers of this path speak.
    pub fn dialect(self) -> Dialect {
        match self {
            AiPath::Messages | AiPath::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    fn name(self) -> &'static str {
        match self {
            AiPath::ChatCompletions => "chat",
            AiPath::Embeddings => "embeddings",
            AiPath::Responses => "responses",
            AiPath::Models => "models",
            AiPath::Messages => "messages",
            AiPath::CountTokens => "count_tokens",
        }
    }
}

/// What a request's path asks of the AI gateway, before anything says it is served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiRoute<'p> {
    Api(AiPath),
    Prompt(PromptPath<'p>),
}

impl<'p> AiRoute<'p> {
    /// The AI route `path` is, if it is one; two prefix comparisons for any other path.
    ///
    /// ```
    /// use weir_gateway::ai::{AiPath, AiRoute};
    /// assert_eq!(AiRoute::of("/v1/models"), Some(AiRoute::Api(AiPath::Models)));
    /// assert!(matches!(AiRoute::of("/prompts/summarize"), Some(AiRoute::Prompt(_))));
    /// assert_eq!(AiRoute::of("/api/prompts"), None);
    /// ```
    pub fn of(path: &'p str) -> Option<Self> {
        match AiPath::of(path) {
            Some(api) => Some(AiRoute::Api(api)),
            None => PromptPath::of(path).map(AiRoute::Prompt),
        }
    }

    /// What the AI gateway answers for this route on `host` (lowercase, no port): an API
    /// path when some model is served on the host, a prompt when a model served on the host
    /// declares it; `None` leaves the request to the routing table.
    pub fn claimed_by<'i>(self, index: &'i AiIndex, host: &str) -> Option<AiTarget<'i>> {
        match self {
            AiRoute::Api(path) => index.serves_host(host).then_some(AiTarget::Api(path)),
            AiRoute::Prompt(path) => {
                let (model, prompt) = index.find_prompt(host, path.name)?;
                Some(AiTarget::Prompt(PromptTarget {
                    model,
                    prompt,
                    page: path.page,
                }))
            }
        }
    }
}

/// A request the AI gateway answers.
pub enum AiTarget<'i> {
    Api(AiPath),
    Prompt(PromptTarget<'i>),
}

/// Settings of the AI gateway from the command line.
#[derive(Clone)]
pub struct AiSettings {
    /// The largest request body accepted (413 above it).
    pub max_request_bytes: usize,
    /// The largest whole (non-streamed) provider answer read.
    pub max_response_bytes: usize,
    /// Where quota counters live; shared by every table and thread.
    pub quotas: Quotas,
}

impl Default for AiSettings {
    fn default() -> Self {
        Self {
            max_request_bytes: 32 << 20,
            max_response_bytes: 64 << 20,
            quotas: Quotas::default(),
        }
    }
}

/// What the AI gateway needs from the proxy to serve one request.
pub struct AiContext<'a> {
    pub index: &'a AiIndex,
    pub upstreams: &'a Upstreams,
    pub settings: &'a AiSettings,
}

/// Serves one request the AI gateway claimed.
pub async fn serve(
    ctx: AiContext<'_>,
    target: AiTarget<'_>,
    host: &str,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    match target {
        AiTarget::Api(path) => handle(ctx, path, host, request).await,
        AiTarget::Prompt(prompt) => prompts::handle(ctx, prompt, request).await,
    }
}

/// Serves one request to an AI path.
async fn handle(
    ctx: AiContext<'_>,
    path: AiPath,
    host: &str,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let dialect = path.dialect();
    let (parts, body) = request.into_parts();
    let key = match client_key(ctx.index, &parts.headers) {
        Ok(key) => key,
        Err(error) => return error_response(&error, dialect),
    };
    if path == AiPath::Models {
        if parts.method != Method::GET {
            return error_response(&method_not_allowed("GET"), dialect);
        }
        return models_list(ctx.index, host, key.as_deref());
    }
    if parts.method != Method::POST {
        return error_response(&method_not_allowed("POST"), dialect);
    }
    let request_json = match read_json_object(body, ctx.settings).await {
        Ok(value) => value,
        Err(error) => return error_response(&error, dialect),
    };
    let Some(model_name) = request_json.get("model").and_then(Value::as_str) else {
        return error_response(
            &invalid("you must provide a model parameter", Some("model")),
            dialect,
        );
    };
    let model = match ctx.index.find(host, model_name) {
        Some(model) if model.allows(key.as_deref()) => model,
        _ => {
            return error_response(
                &ApiError {
                    status: 404,
                    kind: ErrorKind::NotFound,
                    code: Some("model_not_found"),
                    param: Some("model".into()),
                    message: format!(
                        "The model `{model_name}` does not exist or you do not have access to it."
                    ),
                },
                dialect,
            );
        }
    };
    let exchange = call::Exchange {
        path,
        client_headers: &parts.headers,
        request: request_json,
        model,
        key: key.as_deref(),
        started,
    };
    call::call(&ctx, exchange).await
}

/// Reads a request body whole, up to the configured cap, as a JSON object.
async fn read_json_object(body: Incoming, settings: &AiSettings) -> Result<Value, ApiError> {
    let body = match Limited::new(body, settings.max_request_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError {
                status: 413,
                kind: ErrorKind::RequestTooLarge,
                code: Some("request_too_large"),
                param: None,
                message: format!(
                    "the request body exceeds this gateway's limit of {} bytes",
                    settings.max_request_bytes
                ),
            });
        }
        Err(_) => return Err(invalid("the request body could not be read", None)),
    };
    match serde_json::from_slice(&body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(invalid("the request body must be a JSON object", None)),
        Err(error) => Err(invalid(
            &format!("the request body is not valid JSON: {error}"),
            None,
        )),
    }
}

/// The caller's key, if it sent one; an unknown key is refused.
fn client_key(
    index: &AiIndex,
    headers: &HeaderMap,
) -> Result<Option<std::sync::Arc<weir_contract::ClientKey>>, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .or_else(|| headers.get("x-api-key").map(HeaderValue::as_bytes));
    let Some(presented) = presented else {
        return Ok(None);
    };
    let presented = presented.trim_ascii();
    let digest = ring::digest::digest(&ring::digest::SHA256, presented);
    let mut sha256 = [0; 32];
    sha256.copy_from_slice(digest.as_ref());
    match index.key(&sha256) {
        Some(key) => Ok(Some(key.clone())),
        None => Err(ApiError {
            status: 401,
            kind: ErrorKind::Authentication,
            code: Some("invalid_api_key"),
            param: None,
            message: "Incorrect API key provided.".into(),
        }),
    }
}

/// `GET /v1/models`: the models on this host the caller's key may use.
fn models_list(
    index: &AiIndex,
    host: &str,
    key: Option<&weir_contract::ClientKey>,
) -> Response<ProxyBody> {
    let mut seen = std::collections::HashSet::new();
    let data: Vec<Value> = index
        .models_on(host)
        .filter(|model| model.allows(key))
        .flat_map(|model| {
            model
                .model
                .names
                .iter()
                .map(move |name| (name, &model.model.id))
        })
        .filter(|(name, _)| seen.insert(name.as_str()))
        .map(|(name, id)| {
            json!({"id": name, "object": "model", "created": 0, "owned_by": id.namespace})
        })
        .collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError {
        status: 405,
        kind: ErrorKind::InvalidRequest,
        code: Some("method_not_allowed"),
        param: None,
        message: format!("this endpoint accepts {allowed} only"),
    }
}

fn invalid(message: &str, param: Option<&str>) -> ApiError {
    ApiError {
        status: 400,
        kind: ErrorKind::InvalidRequest,
        code: None,
        param: param.map(str::to_owned),
        message: message.to_owned(),
    }
}

/// An error in the caller's dialect.
pub fn error_response(error: &ApiError, dialect: Dialect) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
    json_response(status, &error.body(dialect))
}

/// A JSON answer of Weir's own.
pub fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut response = Response::new(local_body(Full::new(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_contract::{
        AiConfig, AiModel, AiPrompt, AiTimeouts, Fallback, NamespacedName, PromptTemplate,
    };

    use super::*;

    struct NoTls;

    impl index::TlsConnectors for NoTls {
        fn connector(
            &self,
            _: &weir_contract::UpstreamTls,
        ) -> Option<Arc<crate::upstream::TlsConnectorConfig>> {
            None
        }
    }

    fn model(namespace: &str, name: &str, hosts: &[&str], prompts: &[&str]) -> Arc<AiModel> {
        Arc::new(AiModel {
            id: NamespacedName::new(namespace, name),
            names: vec![name.into()],
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            access: weir_contract::Access::Public,
            providers: vec![],
            timeouts: AiTimeouts::default(),
            fallback: Fallback::default(),
            quotas: vec![],
            prompts: prompts
                .iter()
                .map(|name| AiPrompt {
                    name: name.to_string(),
                    system: None,
                    user: PromptTemplate::default(),
                    variables: vec![],
                    params_json: String::new(),
                })
                .collect(),
        })
    }

    /// Models in `namespace/name` order, as the control plane lists them.
    fn index(models: Vec<Arc<AiModel>>) -> AiIndex {
        let config = Arc::new(AiConfig {
            models,
            keys: vec![],
        });
        AiIndex::compile(config, &AiState::default(), &NoTls, AiMetrics::default())
    }

    /// Which model's prompt `path` reaches on `host`, if the AI gateway claims it.
    fn prompt_owner(index: &AiIndex, host: &str, path: &str) -> Option<String> {
        match AiRoute::of(path)?.claimed_by(index, host)? {
            AiTarget::Prompt(target) => Some(target.model.model.id.to_string()),
            AiTarget::Api(_) => panic!("{path} is not a prompt path"),
        }
    }

    #[test]
    fn a_prompt_is_claimed_only_where_a_model_on_the_host_declares_it() {
        let index = index(vec![
            model("ai", "chat", &["api.example.com"], &["summarize"]),
            model("ai", "other", &["other.example.com"], &["translate"]),
        ]);
        assert_eq!(
            prompt_owner(&index, "api.example.com", "/prompts/summarize").as_deref(),
            Some("ai/chat")
        );
        assert_eq!(
            prompt_owner(&index, "api.example.com", "/prompts/summarize/openapi.json").as_deref(),
            Some("ai/chat")
        );
        // Not declared on this host, or not at all: left to the routing table.
        assert_eq!(
            prompt_owner(&index, "api.example.com", "/prompts/translate"),
            None
        );
        assert_eq!(
            prompt_owner(&index, "api.example.com", "/prompts/unknown"),
            None
        );
        assert_eq!(
            prompt_owner(&index, "www.example.com", "/prompts/summarize"),
            None
        );
    }

    #[test]
    fn a_prompt_two_models_declare_goes_to_the_most_specific_host_then_the_first_by_name() {
        let index = index(vec![
            model("a", "any-host", &[], &["summarize"]),
            model("b", "any-host-too", &[], &["summarize"]),
            model("c", "exact", &["api.example.com"], &["summarize"]),
        ]);
        assert_eq!(
            prompt_owner(&index, "api.example.com", "/prompts/summarize").as_deref(),
            Some("c/exact")
        );
        assert_eq!(
            prompt_owner(&index, "elsewhere", "/prompts/summarize").as_deref(),
            Some("a/any-host")
        );
    }

    #[test]
    fn api_paths_are_claimed_on_every_host_a_model_is_served_on() {
        let index = index(vec![model("ai", "chat", &["*.example.com"], &[])]);
        let claimed = |host: &str| {
            AiRoute::of("/v1/chat/completions")
                .unwrap()
                .claimed_by(&index, host)
                .is_some()
        };
        assert!(claimed("api.example.com"));
        assert!(!claimed("example.org"));
    }
}
