//! Calling providers: one attempt per provider in order, each in the provider's dialect,
//! moving on for whatever happens before the client has seen content.
//!
//! An attempt is over when it has content for the client (a whole answer, or a stream's first
//! content event) or has failed. A failure the model's `fallback` lists (connect error,
//! timeout, a status, an answer that ended before content) moves on to the next provider,
//! within `maxAttempts` and the request timeout; any other failure (a 400 the client must fix)
//! is the answer, in the client's dialect. When every attempt failed, the last failure is the
//! answer with `x-should-retry: false`: Weir already did what an SDK's retries would do.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use weir_ai_wire::{
    Dialect,
    errors::{ApiError, ErrorKind},
    sse::{SseEvent, SseParser},
    stream::{StreamTranslator, translator},
    translate,
    usage::Usage,
};
use weir_contract::{AiApi, AiProvider, ClientKey};

use super::{
    AiContext, AiPath, error_response,
    index::CompiledModel,
    index::CompiledProvider,
    json_response,
    quota::{Admission, Refusal, Reservation},
    stream,
};
use crate::{proxy::ProxyBody, upstream::UpstreamBody};

/// The largest single SSE event read from a provider.
const MAX_EVENT_BYTES: usize = 8 << 20;
/// Sent to Anthropic when the client named no version.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// One client request, admitted.
pub struct Exchange<'a> {
    pub path: AiPath,
    pub client_headers: &'a HeaderMap,
    pub request: Value,
    pub model: &'a CompiledModel,
    /// The caller's key; `None` on a public model called without one.
    pub key: Option<&'a ClientKey>,
    pub started: Instant,
}

impl Exchange<'_> {
    /// The client key's Secret name, for metrics and logs; empty without a key.
    fn key_name(&self) -> &str {
        self.key.map_or("", |key| key.id.name.as_str())
    }

    /// The tokens this request may take, reserved against its quotas until it is answered:
    /// its prompt, estimated, and the output it allows (or a default).
    fn token_estimate(&self, default_output_tokens: u64) -> u64 {
        let prompt = weir_ai_wire::tokens::estimate_prompt_tokens(&self.request);
        let output = match self.path {
            AiPath::Embeddings => 0,
            _ => translate::requested_max_tokens(&self.request).unwrap_or(default_output_tokens),
        };
        prompt.saturating_add(output)
    }
}

/// Why an attempt failed, as metrics and fallback conditions name it.
#[derive(Debug)]
enum Failure {
    Connect,
    Timeout,
    /// The provider ended its answer before any content.
    Closed,
    /// A status, with the provider's error in the client's dialect.
    Status(ApiError, Option<Duration>),
    /// A failure the client must fix or that no other provider would change.
    Final(ApiError),
}

impl Failure {
    fn reason(&self) -> String {
        match self {
            Failure::Connect => "connect-error".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Closed => "closed".into(),
            Failure::Status(error, _) | Failure::Final(error) => error.status.to_string(),
        }
    }

    fn falls_back(&self, fallback: &weir_contract::Fallback) -> bool {
        match self {
            Failure::Connect => fallback.on_connect_error,
            Failure::Timeout => fallback.on_timeout,
            Failure::Closed => fallback.on_closed,
            Failure::Status(error, _) => fallback.statuses.binary_search(&error.status).is_ok(),
            Failure::Final(_) => false,
        }
    }

    fn into_error(self) -> ApiError {
        match self {
            Failure::Connect => {
                ApiError::new(ErrorKind::Api, "could not connect to the model's provider")
                    .with_status(502)
            }
            Failure::Timeout => ApiError::new(
                ErrorKind::Timeout,
                "the model's provider did not answer in time",
            )
            .with_status(504),
            Failure::Closed => ApiError::new(
                ErrorKind::Api,
                "the model's provider closed its answer before any content",
            )
            .with_status(502),
            Failure::Status(error, _) | Failure::Final(error) => error,
        }
    }
}

/// What a successful attempt gives the client.
enum Answer {
    Whole {
        body: Value,
        usage: Option<Usage>,
    },
    Stream {
        held: Vec<Bytes>,
        pump: Box<stream::Pump>,
    },
}

/// Tries providers in order and answers the client.
pub async fn call(ctx: &AiContext<'_>, exchange: Exchange<'_>) -> Response<ProxyBody> {
    let model = exchange.model;
    let client = exchange.path.dialect();
    let timeouts = model.model.timeouts;
    let fallback = &model.model.fallback;
    let deadline = exchange.started + timeouts.request;
    let model_label = model.model.id.to_string();
    // count_tokens generates nothing and is not counted against a quota.
    let reservation = if exchange.path == AiPath::CountTokens {
        None
    } else {
        let quotas = &ctx.settings.quotas;
        let estimate = exchange.token_estimate(quotas.default_output_tokens);
        match quotas.admit(&model.model, exchange.key, estimate).await {
            Admission::Unlimited => None,
            Admission::Admitted(reservation) => Some(reservation),
            Admission::Refused(refusal) => {
                ctx.index
                    .metrics
                    .request(&model_label, "", exchange.key_name(), "quota_refused");
                return quota_refused(refusal, exchange.key_name(), client);
            }
            Admission::StoreDown => {
                let error = ApiError::new(
                    ErrorKind::Overloaded,
                    "the quota store is unavailable, so the request could not be admitted",
                )
                .with_code("quota_store_unavailable")
                .with_status(503);
                return error_response(&error, client);
            }
        }
    };
    let order = model.attempt_order();
    if order.is_empty() {
        let error = ApiError::new(
            ErrorKind::Overloaded,
            "no provider of this model is ready (see the AIModel's status)",
        )
        .with_status(503);
        return final_error(&error, client);
    }
    let mut last: Option<Failure> = None;
    for (attempt, compiled) in order
        .iter()
        .take(fallback.max_attempts.max(1) as usize)
        .enumerate()
    {
        let provider = model.provider(compiled);
        if attempt > 0 {
            if let Some(Failure::Status(_, Some(wait))) = &last
                && *wait <= fallback.honor_retry_after_up_to
                && Instant::now() + *wait < deadline
            {
                tokio::time::sleep(*wait).await;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let outcome = attempt_once(ctx, &exchange, compiled, provider, deadline).await;
        match outcome {
            Ok(answer) => {
                compiled.health.succeeded();
                return answer_client(ctx, &exchange, provider, answer, reservation);
            }
            Err(failure) => {
                let falls_back = failure.falls_back(fallback);
                if !matches!(failure, Failure::Final(_))
                    && let Some(ejected_for) = compiled.health.failed(fallback.eject.as_ref())
                {
                    tracing::warn!(
                        model = %model_label,
                        provider = %provider.name,
                        ejected_for = %humantime::format_duration(ejected_for),
                        "AI provider ejected after consecutive failures"
                    );
                    ctx.index
                        .ejections
                        .started(&model.model.id, &provider.name, ejected_for);
                }
                ctx.index.metrics.fallback(
                    &model_label,
                    &provider.name,
                    &failure.reason(),
                    falls_back,
                );
                tracing::info!(
                    model = %model_label,
                    provider = %provider.name,
                    reason = %failure.reason(),
                    falls_back,
                    "AI provider attempt failed"
                );
                if !falls_back {
                    let error = failure.into_error();
                    ctx.index.metrics.request(
                        &model_label,
                        &provider.name,
                        exchange.key_name(),
                        "error",
                    );
                    return error_response(&error, client);
                }
                last = Some(failure);
            }
        }
    }
    let error = match last {
        Some(failure) => failure.into_error(),
        None => ApiError::new(ErrorKind::Timeout, "the request timed out").with_status(504),
    };
    ctx.index
        .metrics
        .request(&model_label, "", exchange.key_name(), "exhausted");
    final_error(&error, client)
}

/// 429 in the caller's dialect, with `Retry-After` and the rate-limit headers; the SDK must
/// not retry at once (its retries would only be refused again).
fn quota_refused(refusal: Refusal, key_name: &str, client: Dialect) -> Response<ProxyBody> {
    let error = ApiError::new(
        ErrorKind::RateLimit,
        format!(
            "Quota exceeded: key `{key_name}` may use {} {} per {} on this model. Try again in {}s.",
            refusal.limit,
            refusal.kind.as_str(),
            humantime::format_duration(refusal.per),
            refusal.retry_after.as_secs(),
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_status(429);
    let mut response = final_error(&error, client);
    response.headers_mut().extend(refusal.headers);
    response
}

/// An error after which the SDK must not retry: Weir has tried every provider it may.
fn final_error(error: &ApiError, client: Dialect) -> Response<ProxyBody> {
    let mut response = error_response(error, client);
    response
        .headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    response
}

/// One attempt at one provider, up to content for the client.
async fn attempt_once(
    ctx: &AiContext<'_>,
    exchange: &Exchange<'_>,
    compiled: &CompiledProvider,
    provider: &AiProvider,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let client = exchange.path.dialect();
    let upstream = match provider.api {
        AiApi::OpenAi => Dialect::OpenAi,
        AiApi::Anthropic => Dialect::Anthropic,
    };
    let streaming = exchange
        .request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let client_wants_usage = exchange
        .request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (path, body) = upstream_request(exchange, provider, upstream)?;
    // count_tokens against an OpenAI provider: OpenAI has no such call; answer an estimate.
    let Some(path) = path else {
        return Ok(Answer::Whole { body, usage: None });
    };

    let target = compiled.target();
    let uri = format!("{}{}", provider.endpoint.base_path, path);
    let mut request = Request::post(uri)
        .header(header::HOST, &provider.endpoint.authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::ACCEPT,
            if streaming {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
    if let Some((name, value)) = &compiled.auth {
        request = request.header(name, value);
    }
    if upstream == Dialect::Anthropic {
        let version = match (client, exchange.client_headers.get("anthropic-version")) {
            (Dialect::Anthropic, Some(version)) => version.clone(),
            _ => HeaderValue::from_static(ANTHROPIC_VERSION),
        };
        request = request.header("anthropic-version", version);
        if client == Dialect::Anthropic
            && let Some(beta) = exchange.client_headers.get("anthropic-beta")
        {
            request = request.header("anthropic-beta", beta);
        }
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let request = request.body(Full::new(body)).map_err(|_| {
        Failure::Final(ApiError::bad_upstream(
            "the provider request could not be built",
        ))
    })?;

    let first_byte = Instant::now() + exchange.model.model.timeouts.first_byte;
    let first_byte = first_byte.min(deadline);
    let response =
        match tokio::time::timeout_at(first_byte.into(), ctx.upstreams.send(target, request)).await
        {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(error)) if error.is_connect() => return Err(Failure::Connect),
            Ok(Err(_)) => return Err(Failure::Closed),
            Ok(Ok(response)) => response,
        };
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let body = read_json(response.into_body(), 1 << 20, first_byte)
            .await
            .unwrap_or(Value::Null);
        let error = ApiError::from_provider(status.as_u16(), &body);
        return Err(Failure::Status(error, retry_after));
    }
    if streaming && is_event_stream(response.headers()) {
        // The client is shown the provider's model name, as OpenAI and Anthropic show theirs.
        let translator = translator(client, upstream, &provider.model, client_wants_usage);
        return first_content(response.into_body(), translator, first_byte).await;
    }
    let body = read_json(
        response.into_body(),
        ctx.settings.max_response_bytes,
        deadline,
    )
    .await?;
    let (body, usage) = whole_answer(exchange, provider, upstream, body)?;
    Ok(Answer::Whole { body, usage })
}

/// The provider's path and body for this exchange; `None` as the path when Weir answers itself.
fn upstream_request(
    exchange: &Exchange<'_>,
    provider: &AiProvider,
    upstream: Dialect,
) -> Result<(Option<&'static str>, Value), Failure> {
    let request = &exchange.request;
    let with_model = |mut body: Value| {
        body["model"] = Value::String(provider.model.clone());
        body
    };
    let translated = match (exchange.path, upstream) {
        (AiPath::ChatCompletions, Dialect::OpenAi) => {
            let mut body = with_model(request.clone());
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                // Always ask for usage; the chunk is dropped again if the client did not ask.
                translate::force_include_usage(&mut body);
            }
            (Some("/chat/completions"), body)
        }
        (AiPath::ChatCompletions, Dialect::Anthropic) => (
            Some("/v1/messages"),
            translate::chat_to_messages(request, &provider.model, provider.default_max_tokens)
                .map_err(Failure::Final)?,
        ),
        (AiPath::Messages, Dialect::Anthropic) => {
            (Some("/v1/messages"), with_model(request.clone()))
        }
        (AiPath::Messages, Dialect::OpenAi) => (
            Some("/chat/completions"),
            translate::messages_to_chat(request, &provider.model).map_err(Failure::Final)?,
        ),
        (AiPath::CountTokens, Dialect::Anthropic) => (
            Some("/v1/messages/count_tokens"),
            with_model(request.clone()),
        ),
        (AiPath::CountTokens, Dialect::OpenAi) => (
            None,
            json!({"input_tokens": weir_ai_wire::tokens::estimate_prompt_tokens(request)}),
        ),
        (AiPath::Embeddings, Dialect::OpenAi) => (Some("/embeddings"), with_model(request.clone())),
        (AiPath::Responses, Dialect::OpenAi) => (Some("/responses"), with_model(request.clone())),
        (AiPath::Embeddings | AiPath::Responses, Dialect::Anthropic) => {
            return Err(Failure::Final(ApiError::invalid_request(
                "model",
                format!(
                    "provider {} speaks Anthropic, which has no {} API",
                    provider.name,
                    exchange.path.name()
                ),
            )));
        }
        (AiPath::Models, _) => unreachable!("answered before any provider is called"),
    };
    Ok(translated)
}

/// A whole answer in the client's dialect, and its usage.
fn whole_answer(
    exchange: &Exchange<'_>,
    provider: &AiProvider,
    upstream: Dialect,
    body: Value,
) -> Result<(Value, Option<Usage>), Failure> {
    let usage_of = |body: &Value, dialect: Dialect| {
        body.get("usage").map(|usage| match dialect {
            Dialect::OpenAi => Usage::from_openai(usage),
            Dialect::Anthropic => Usage::from_anthropic(usage),
        })
    };
    let usage = usage_of(&body, upstream);
    let translated = match (exchange.path.dialect(), upstream) {
        (Dialect::OpenAi, Dialect::Anthropic) => {
            translate::messages_response_to_chat(&body, &provider.model)
        }
        (Dialect::Anthropic, Dialect::OpenAi) if exchange.path == AiPath::Messages => {
            translate::chat_response_to_messages(&body, &provider.model)
        }
        _ => Ok(body),
    }
    .map_err(|error| Failure::Final(error.with_status(502)))?;
    Ok((translated, usage))
}

/// Reads a stream up to its first content event; everything before it is held, and an end,
/// an error or a pause past `first_byte` before it is a failure to fall back on.
async fn first_content(
    mut body: UpstreamBody,
    mut translator: Box<dyn StreamTranslator>,
    first_byte: Instant,
) -> Result<Answer, Failure> {
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let mut held = Vec::new();
    let mut events: Vec<SseEvent> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(first_byte.into(), body.frame()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(None) | Ok(Some(Err(_))) => return Err(Failure::Closed),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if parser.push(&data, &mut events).is_err() {
            return Err(Failure::Closed);
        }
        let mut content = false;
        let mut done = false;
        for event in events.drain(..) {
            let step = translator.on_event(&event);
            // An error before any content is a failed attempt like any other.
            if step.upstream_error.is_some() && !content {
                return Err(Failure::Closed);
            }
            held.extend(step.frames);
            content |= step.content || step.done;
            done |= step.done;
        }
        if content {
            return Ok(Answer::Stream {
                held,
                pump: Box::new(stream::Pump {
                    body,
                    parser,
                    translator,
                    done,
                }),
            });
        }
    }
}

/// Answers the client with a successful attempt.
fn answer_client(
    ctx: &AiContext<'_>,
    exchange: &Exchange<'_>,
    provider: &AiProvider,
    answer: Answer,
    mut reservation: Option<Reservation>,
) -> Response<ProxyBody> {
    let model_label = exchange.model.model.id.to_string();
    let quota_headers = reservation.as_mut().map(|r| std::mem::take(&mut r.headers));
    let mut response = match answer {
        Answer::Whole { body, usage } => {
            let record = super::metrics::Record {
                model: model_label,
                provider: provider.name.clone(),
                key: exchange.key_name().to_owned(),
                started: exchange.started,
            };
            if let Some(usage) = usage {
                ctx.index.metrics.tokens(&record, &usage);
            }
            ctx.index
                .metrics
                .finished(&record, "ok", usage.as_ref(), false, None);
            if let Some(reservation) = reservation {
                // Without usage in the answer, the estimate is what was used.
                let used = usage.map_or(reservation.reserved(), |usage| usage.total());
                reservation.settle(used);
            }
            json_response(StatusCode::OK, &body)
        }
        Answer::Stream { held, pump } => {
            let record = super::metrics::Record {
                model: model_label,
                provider: provider.name.clone(),
                key: exchange.key_name().to_owned(),
                started: exchange.started,
            };
            let body = stream::spawn(
                held,
                pump,
                exchange.model.model.timeouts.idle,
                record,
                ctx.index.metrics.clone(),
                reservation,
            );
            let mut response = Response::new(ProxyBody::Right(http_body_util::Either::Right(body)));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    if let Some(headers) = quota_headers {
        response.headers_mut().extend(headers);
    }
    response
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// `retry-after-ms`, else `retry-after` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
}

/// Reads a whole JSON body within `limit` bytes and by `deadline`.
async fn read_json(body: UpstreamBody, limit: usize, deadline: Instant) -> Result<Value, Failure> {
    let collected = tokio::time::timeout_at(deadline.into(), Limited::new(body, limit).collect())
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(|_| Failure::Closed)?;
    serde_json::from_slice(&collected.to_bytes()).map_err(|_| {
        Failure::Status(
            ApiError::bad_upstream("the model's provider answered with invalid JSON")
                .with_status(502),
            None,
        )
    })
}
