//! `weir-mock-llm`: a mock LLM provider speaking OpenAI's and Anthropic's wire formats, with
//! faults chosen per request.
//!
//! It is the far side of Weir's AI gateway in tests, the quickstart and benchmarks. It serves
//! HTTP/1.1 and h2c on one address and, once bound, prints `listening on <addr>` as its only
//! line on stdout, so whoever started it with `--listen 127.0.0.1:0` learns the port. Answers
//! are built in full as each request arrives, without sleeping unless a fault asks to.
//!
//! ```text
//! weir-mock-llm --listen 127.0.0.1:0 [--api-key KEY]... [--name NAME] [--threads N] [--no-record]
//! ```
//!
//! With one or more `--api-key`, each API request must carry one of them: on OpenAI paths as
//! `Authorization: Bearer KEY`, on Anthropic paths (and `…/models`) that or `x-api-key: KEY`;
//! else 401 with an error in the path's dialect. `--name` (default `mock`) goes into every
//! response id and the `x-mock-name` header of every response, to tell instances apart.
//!
//! # Endpoints
//!
//! Paths match by suffix, so a base URL with a prefix (`/openai/v1/chat/completions`) works.
//!
//! - `POST …/chat/completions`: OpenAI chat, `stream` and `stream_options.include_usage`.
//! - `POST …/embeddings`: one vector of 8 floats per input (`dimensions` or `dims-N` for more);
//!   base64 when `encoding_format` is `base64`, as the `openai` SDK asks by default.
//! - `POST …/responses`: the OpenAI Responses API, whole or streamed.
//! - `GET …/models`: one model, `mock`.
//! - `POST …/messages`: Anthropic Messages, whole or streamed; `max_tokens` is required and
//!   roles are `user` or `assistant`, as the API checks.
//! - `POST …/messages/count_tokens`: `{"input_tokens": N}`.
//! - `GET /mock/requests`: every request since start or the last `DELETE /mock/requests`
//!   (refused ones included, `/mock/requests` itself not), in arrival order, as
//!   `[{"path","query","method","headers","body"}]`: headers by lowercase name, the last of a
//!   repeated one winning; the body parsed, or `null`. Always `[]` with `--no-record`.
//!
//! Every POST body must be a JSON object with a string `model`, else 400.
//!
//! # Tokens and content
//!
//! - Prompt tokens: the whitespace-separated words of all prompt text — every message's text
//!   (a string, text blocks or parts, tool results), the system prompt (OpenAI system and
//!   developer messages, Anthropic `system`, Responses `instructions`), embedding inputs, the
//!   Responses `input`. At least 1.
//! - The answer is `tok1 tok2 … tokN`, N = 12 unless `tokens-N`, cut to `max_tokens`,
//!   `max_completion_tokens` or `max_output_tokens` if smaller (then `finish_reason: length`,
//!   `stop_reason: max_tokens`, Responses `status: incomplete`). Output tokens: one per word.
//!   Each streamed text delta is one word, with the whitespace before it.
//! - Ids: `chatcmpl-NAME-S`, `msg_NAME_S`, `resp_NAME_S` (S counts requests from 1); error
//!   `request_id`s are `req_NAME_S`.
//!
//! # Directives
//!
//! Words of the request's `model`, joined by `+` (`mock+status-429+retry-after-30`); the first
//! word counts too and unknown words are ignored. A duration `MS` is milliseconds, or seconds
//! with an `s` suffix (`5s`), or milliseconds with `ms`. Faults come after the key and `model`
//! checks and before the endpoint's own (so `status-429` wins over a missing `max_tokens`).
//!
//! - `status-NNN` (400–599): answer that status with an error in the path's dialect.
//!   Anthropic `error.type`: 401 `authentication_error`, 402 `billing_error`, 403
//!   `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
//!   `rate_limit_error`, 504 `timeout_error`, 529 `overloaded_error`, other 5xx `api_error`,
//!   other 4xx `invalid_request_error`. OpenAI `type`/`code`: 401
//!   `invalid_request_error`/`invalid_api_key`, 404 `invalid_request_error`/`model_not_found`,
//!   429 `requests`/`rate_limit_exceeded`, 529 `server_error`/`overloaded`, other 5xx
//!   `server_error`/null, other 4xx `invalid_request_error`/null.
//! - `retry-after-S`: add `retry-after: S` to the response, whatever its status.
//! - `slow-headers-MS`: wait before sending anything.
//! - `slow-ttft-MS`: streams send 200 headers at once, then wait before the first event;
//!   elsewhere, like `slow-headers-MS`.
//! - `headers-then-close`: send 200 `text/event-stream` headers and `: ping`, then abort the
//!   response (HTTP/1.1: the connection closes without the chunked terminator; h2: reset).
//! - `cut-after-N`: streams send their prefix and N content deltas, then abort: no finish
//!   chunk, `[DONE]`, `message_stop` or `response.completed`. Elsewhere, abort halfway.
//! - `stall-after-N-MS`: streams pause for MS after N content deltas, then carry on.
//!   Elsewhere, pause halfway through the body.
//! - `tools-K`: answer with K parallel tool calls `tool_1..K` instead of text, ids `call_1..K`
//!   (OpenAI chat; Responses `function_call` items `fc_i` with `call_id` `call_i`) or
//!   `toolu_1..K` (Anthropic), arguments `{"city":"c<i>","n":<i>}` streamed in two fragments
//!   each; `finish_reason: tool_calls`, `stop_reason: tool_use`; 5 output tokens per call.
//! - `text-then-tools`: with `tools-K`, say the text answer first, then call the tools.
//! - `tokens-N`: answer N words.
//! - `cache`: report cached prompt tokens: OpenAI `cached_tokens = min(4, prompt_tokens)`;
//!   Anthropic `cache_read_input_tokens: 4`, `cache_creation_input_tokens: 2`, on top of
//!   `input_tokens`.
//! - `echo`: the answer text is the request body as received; output tokens are its words.
//! - `dims-N`: embeddings of N floats, to make large responses.
//!
//! Content deltas, which `cut-after` and `stall-after` count, are text words and tool
//! argument fragments; a count beyond the answer falls just before the events that finish the
//! stream (finish chunk, `message_delta`, `response.completed`).

mod answer;
mod anthropic;
mod body;
mod call;
mod directives;
mod errors;
mod openai;
mod request_log;
mod responses;
mod sse;

use std::{
    io::Write,
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use clap::Parser;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
    header::{AUTHORIZATION, RETRY_AFTER},
    request::Parts,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::{
    body::ScriptedBody,
    call::{Call, json_answer},
    directives::Directives,
    errors::{ApiError, Dialect},
    request_log::RequestLog,
};

/// A mock LLM provider for Weir: OpenAI and Anthropic wire formats, faults chosen by model name.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:9010")]
    listen: SocketAddr,
    /// An API key requests must carry; repeat for several. Without any, no key is checked.
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// The instance name put in response ids and the `x-mock-name` header.
    #[arg(long, default_value = "mock")]
    name: String,
    /// Worker threads of the runtime (default: one per core).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Do not keep the request log of `GET /mock/requests` (for benchmarks).
    #[arg(long)]
    no_record: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.get());
    }
    runtime.build()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let instance_header = HeaderValue::from_str(&args.name)
        .map_err(|_| anyhow::anyhow!("--name {:?}: not a valid header value", args.name))?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", args.listen))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    let mock = Arc::new(Mock {
        instance: args.name.into(),
        instance_header,
        api_keys: args.api_keys,
        request_log: (!args.no_record).then(RequestLog::default),
        requests_seen: AtomicU64::new(0),
    });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: back off rather than spin.
                eprintln!("weir-mock-llm: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(mock.clone(), request));
            // A client that goes away mid-connection is not this mock's problem, and an
            // aborted body is a fault a request asked for.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What every connection shares; only the request log and the counter change after start.
struct Mock {
    instance: Box<str>,
    instance_header: HeaderValue,
    api_keys: Vec<String>,
    request_log: Option<RequestLog>,
    /// API requests received, which numbers them for response ids.
    requests_seen: AtomicU64,
}

/// The API endpoints, each found by the suffix of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    ChatCompletions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
}

impl Endpoint {
    /// The endpoint a path names, under any prefix: gateways are configured with base URLs.
    fn for_path(path: &str) -> Option<Self> {
        const BY_SUFFIX: [(&str, Endpoint); 6] = [
            ("/chat/completions", Endpoint::ChatCompletions),
            ("/embeddings", Endpoint::Embeddings),
            ("/responses", Endpoint::Responses),
            ("/models", Endpoint::Models),
            ("/messages", Endpoint::Messages),
            ("/messages/count_tokens", Endpoint::CountTokens),
        ];
        BY_SUFFIX
            .into_iter()
            .find(|(suffix, _)| path.ends_with(suffix))
            .map(|(_, endpoint)| endpoint)
    }

    fn method(self) -> Method {
        match self {
            Self::Models => Method::GET,
            _ => Method::POST,
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Self::Messages | Self::CountTokens => Dialect::Anthropic,
            _ => Dialect::OpenAi,
        }
    }

    /// Whether `x-api-key` is accepted as well as a bearer token: Anthropic's clients send it,
    /// and both SDKs list models.
    fn accepts_x_api_key(self) -> bool {
        self.dialect() == Dialect::Anthropic || self == Self::Models
    }
}

/// Answers one request, stamping the instance name on whatever the answer is.
async fn answer(
    mock: Arc<Mock>,
    request: Request<Incoming>,
) -> Result<Response<ScriptedBody>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut response = mock.answer(parts, body).await;
    response
        .headers_mut()
        .insert("x-mock-name", mock.instance_header.clone());
    Ok(response)
}

impl Mock {
    /// The phases of a request: the test endpoints aside, record it, route it, check its key,
    /// parse its body and directives, then answer through the endpoint's handler.
    async fn answer(&self, parts: Parts, body: Bytes) -> Response<ScriptedBody> {
        if parts.uri.path() == "/mock/requests" {
            return self.request_log_endpoint(&parts.method);
        }
        if let Some(request_log) = &self.request_log {
            request_log.record(&parts, &body);
        }
        let serial = self.requests_seen.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(endpoint) = Endpoint::for_path(parts.uri.path()) else {
            let error = ApiError {
                code: Some("unknown_url"),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("weir-mock-llm: no endpoint at {}", parts.uri.path()),
                )
            };
            return self.error(Dialect::OpenAi, &error, serial);
        };
        let dialect = endpoint.dialect();
        if parts.method != endpoint.method() {
            let message = format!(
                "weir-mock-llm: {} takes {}, not {}",
                parts.uri.path(),
                endpoint.method(),
                parts.method
            );
            let error = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message);
            return self.error(dialect, &error, serial);
        }
        if !self.carries_api_key(endpoint, &parts.headers) {
            let message = match dialect {
                Dialect::OpenAi => "Incorrect API key provided.",
                Dialect::Anthropic => "invalid x-api-key",
            };
            let error = ApiError::new(StatusCode::UNAUTHORIZED, message);
            return self.error(dialect, &error, serial);
        }
        if endpoint == Endpoint::Models {
            return openai::models();
        }

        let request = match serde_json::from_slice::<Value>(&body) {
            Ok(request @ Value::Object(_)) => request,
            _ => {
                let error = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "weir-mock-llm: the request body is not a JSON object",
                );
                return self.error(dialect, &error, serial);
            }
        };
        let Some(model) = request.get("model").and_then(Value::as_str) else {
            let error = ApiError::invalid_field("model", "model: Field required");
            return self.error(dialect, &error, serial);
        };
        let directives = Directives::parse(model);
        let call = Call {
            body: &request,
            raw_body: &body,
            model,
            directives: &directives,
            stream: request.get("stream").and_then(Value::as_bool) == Some(true),
            instance: &self.instance,
            serial,
            created: unix_seconds(),
        };
        let mut response = self.answer_call(endpoint, &call).await;
        if let Some(seconds) = directives.retry_after_secs {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// Serves the faults that come before any answer, then the endpoint's answer.
    async fn answer_call(&self, endpoint: Endpoint, call: &Call<'_>) -> Response<ScriptedBody> {
        let directives = call.directives;
        // A stream waits for its first event after the headers; anything else has no
        // first event to wait for, so it waits before its headers.
        let first_byte_delay = if call.stream {
            directives.slow_headers
        } else {
            directives.slow_headers.max(directives.slow_ttft)
        };
        if let Some(delay) = first_byte_delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = directives.status {
            return self.error(endpoint.dialect(), &ApiError::injected(status), call.serial);
        }
        if directives.headers_then_close {
            return call::headers_then_close();
        }
        let answered = match endpoint {
            Endpoint::ChatCompletions => openai::chat_completions(call),
            Endpoint::Embeddings => openai::embeddings(call),
            Endpoint::Responses => responses::create(call),
            Endpoint::Models => Ok(openai::models()),
            Endpoint::Messages => anthropic::messages(call),
            Endpoint::CountTokens => anthropic::count_tokens(call),
        };
        answered.unwrap_or_else(|error| self.error(endpoint.dialect(), &error, call.serial))
    }

    /// Whether the request carries one of the `--api-key`s, where its endpoint looks for one.
    fn carries_api_key(&self, endpoint: Endpoint, headers: &HeaderMap) -> bool {
        if self.api_keys.is_empty() {
            return true;
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim().as_bytes());
        let x_api_key = headers
            .get("x-api-key")
            .filter(|_| endpoint.accepts_x_api_key())
            .map(HeaderValue::as_bytes);
        [bearer, x_api_key]
            .into_iter()
            .flatten()
            .any(|key| self.api_keys.iter().any(|known| known.as_bytes() == key))
    }

    fn error(&self, dialect: Dialect, error: &ApiError, serial: u64) -> Response<ScriptedBody> {
        let request_id = format!("req_{}_{serial}", self.instance);
        let mut response =
            call::json_text_answer(error.render(dialect, &request_id), &Directives::default());
        *response.status_mut() = error.status;
        response
    }

    /// `GET /mock/requests` reads the request log, `DELETE` clears it.
    fn request_log_endpoint(&self, method: &Method) -> Response<ScriptedBody> {
        let no_directives = Directives::default();
        match *method {
            Method::GET => match &self.request_log {
                Some(request_log) => json_answer(&request_log.to_json(), &no_directives),
                None => json_answer(&Value::Array(Vec::new()), &no_directives),
            },
            Method::DELETE => {
                if let Some(request_log) = &self.request_log {
                    request_log.clear();
                }
                let mut response = Response::new(ScriptedBody::new(Vec::new()));
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            _ => {
                let error = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "weir-mock-llm: /mock/requests takes GET or DELETE",
                );
                self.error(Dialect::OpenAi, &error, 0)
            }
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_by_suffix_under_any_prefix() {
        let cases = [
            ("/v1/chat/completions", Endpoint::ChatCompletions),
            ("/openai/v1/chat/completions", Endpoint::ChatCompletions),
            ("/v1/embeddings", Endpoint::Embeddings),
            ("/v1/responses", Endpoint::Responses),
            ("/v1/models", Endpoint::Models),
            ("/v1/messages", Endpoint::Messages),
            ("/anthropic/v1/messages/count_tokens", Endpoint::CountTokens),
        ];
        for (path, endpoint) in cases {
            assert_eq!(Endpoint::for_path(path), Some(endpoint), "{path}");
        }
        assert_eq!(Endpoint::for_path("/v1/completions"), None);
        assert_eq!(Endpoint::for_path("/"), None);
    }

    fn mock_with_keys(keys: &[&str]) -> Mock {
        Mock {
            instance: "mock".into(),
            instance_header: HeaderValue::from_static("mock"),
            api_keys: keys.iter().map(|key| key.to_string()).collect(),
            request_log: None,
            requests_seen: AtomicU64::new(0),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn openai_paths_take_only_bearer_keys() {
        let mock = mock_with_keys(&["k1", "k2"]);
        let chat = Endpoint::ChatCompletions;
        assert!(mock.carries_api_key(chat, &headers(&[("authorization", "Bearer k2")])));
        assert!(mock.carries_api_key(chat, &headers(&[("authorization", "bearer k1")])));
        assert!(!mock.carries_api_key(chat, &headers(&[("authorization", "Bearer k3")])));
        assert!(!mock.carries_api_key(chat, &headers(&[("x-api-key", "k1")])));
        assert!(!mock.carries_api_key(chat, &HeaderMap::new()));
    }

    #[test]
    fn anthropic_paths_take_x_api_key_or_bearer() {
        let mock = mock_with_keys(&["k1"]);
        let messages = Endpoint::Messages;
        assert!(mock.carries_api_key(messages, &headers(&[("x-api-key", "k1")])));
        assert!(mock.carries_api_key(messages, &headers(&[("authorization", "Bearer k1")])));
        assert!(!mock.carries_api_key(messages, &headers(&[("x-api-key", "nope")])));
    }

    #[test]
    fn without_keys_anything_goes() {
        let mock = mock_with_keys(&[]);
        assert!(mock.carries_api_key(Endpoint::ChatCompletions, &HeaderMap::new()));
    }
}
