//! The AI gateway: OpenAI- and Anthropic-compatible endpoints, routed by the body's `model`
//! to an `AIModel`'s providers.
//!
//! A request to one of the AI paths ([`AiPath`]) on a host some model is served on comes here
//! instead of the routing table. In order:
//!
//! 1. **admit** — the caller's key (`Authorization: Bearer` or `x-api-key`) is hashed and looked
//!    up; the body is read whole, up to the configured cap (413 above it), and parsed; the
//!    model it names is found on the host and the key checked against the model's `access`;
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

/// Serves one request to an AI path.
pub async fn handle(
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
    let body = match Limited::new(body, ctx.settings.max_request_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                &ApiError {
                    status: 413,
                    kind: ErrorKind::RequestTooLarge,
                    code: Some("request_too_large"),
                    param: None,
                    message: format!(
                        "the request body exceeds this gateway's limit of {} bytes",
                        ctx.settings.max_request_bytes
                    ),
                },
                dialect,
            );
        }
        Err(_) => {
            return error_response(
                &invalid("the request body could not be read", None),
                dialect,
            );
        }
    };
    let request_json: Value = match serde_json::from_slice(&body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            return error_response(
                &invalid("the request body must be a JSON object", None),
                dialect,
            );
        }
        Err(error) => {
            return error_response(
                &invalid(
                    &format!("the request body is not valid JSON: {error}"),
                    None,
                ),
                dialect,
            );
        }
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
