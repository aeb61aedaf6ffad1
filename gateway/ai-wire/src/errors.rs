//! Errors as clients see them, in either dialect.
//!
//! Owns [`ApiError`], the one error value the gateway answers with, and its two spellings: OpenAI's
//! `{"error":{"message","type","param","code"}}` and Anthropic's
//! `{"type":"error","error":{"type","message"}}`, as whole bodies and as the in-band frame that
//! ends a stream which already began. Both SDKs choose their exception class from the HTTP status
//! (OpenAI: 400/401/403/404/409/422/429/≥500; Anthropic the same, plus 529 ⇒ `OverloadedError`),
//! so the status carries the meaning and `type` names it for people reading logs.
//!
//! Invariant: a body or frame built here is valid JSON in the dialect asked for, whatever text the
//! message holds, and a mid-stream error is always a frame the dialect's SDK raises on (OpenAI:
//! `data: {"error":…}`; Anthropic: `event: error`), never a silent end (Portkey#1797).

use bytes::Bytes;
use serde_json::{Value, json};

use crate::Dialect;
use crate::sse::frame_json;

/// What went wrong, in the words both dialects need.
///
/// ```
/// use weir_ai_wire::errors::{ApiError, ErrorKind};
/// let error = ApiError::new(ErrorKind::NotFound, "model `gpt-5` does not exist")
///     .with_code("model_not_found")
///     .with_param("model");
/// assert_eq!(error.status, 404);
/// assert_eq!(error.to_string(), "model `gpt-5` does not exist");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status to answer with.
    pub status: u16,
    /// What kind of failure it is; names the error `type` in each dialect.
    pub kind: ErrorKind,
    /// OpenAI's machine-readable `code` (`model_not_found`, `rate_limit_exceeded`, …), if any.
    pub code: Option<&'static str>,
    /// The request field at fault (`messages[2].tool_calls[0].function.arguments`), if any.
    pub param: Option<String>,
    /// One line for a person: what was wrong and where.
    pub message: String,
}

/// The kinds of failure both dialects distinguish.
///
/// ```
/// use weir_ai_wire::errors::ErrorKind;
/// assert_eq!(ErrorKind::from_status(529), ErrorKind::Overloaded);
/// assert_eq!(ErrorKind::Overloaded.default_status(), 529);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or asks for something unsupported (400).
    InvalidRequest,
    /// No or a wrong API key (401).
    Authentication,
    /// The key may not use this model or endpoint (403).
    Permission,
    /// No such model or path (404).
    NotFound,
    /// The body is larger than the gateway accepts (413).
    RequestTooLarge,
    /// A quota or rate limit refused the request (429).
    RateLimit,
    /// The provider did not answer in time (504).
    Timeout,
    /// The gateway or the provider failed (500, 502).
    Api,
    /// Every provider is overloaded or unavailable (529, Anthropic's status for it).
    Overloaded,
}

impl ErrorKind {
    /// The kind a provider's (or any) HTTP error status means.
    ///
    /// ```
    /// use weir_ai_wire::errors::ErrorKind;
    /// assert_eq!(ErrorKind::from_status(429), ErrorKind::RateLimit);
    /// assert_eq!(ErrorKind::from_status(422), ErrorKind::InvalidRequest);
    /// assert_eq!(ErrorKind::from_status(502), ErrorKind::Api);
    /// ```
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Authentication,
            402 | 403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            408 | 504 => ErrorKind::Timeout,
            503 | 529 => ErrorKind::Overloaded,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Api,
        }
    }

    /// The status an error of this kind is answered with unless the caller says otherwise.
    /// Overloaded is 529, Anthropic's; the OpenAI SDK treats it as any ≥500 (retryable).
    ///
    /// ```
    /// use weir_ai_wire::errors::ErrorKind;
    /// assert_eq!(ErrorKind::InvalidRequest.default_status(), 400);
    /// assert_eq!(ErrorKind::Timeout.default_status(), 504);
    /// ```
    pub fn default_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimit => 429,
            ErrorKind::Timeout => 504,
            ErrorKind::Api => 500,
            ErrorKind::Overloaded => 529,
        }
    }

    /// OpenAI's error `type`. OpenAI itself uses `invalid_request_error` for most client errors
    /// and `server_error` for its own failures; the SDK dispatches on the status, so the other
    /// names here say what happened without changing what a client does.
    ///
    /// ```
    /// use weir_ai_wire::errors::ErrorKind;
    /// assert_eq!(ErrorKind::RateLimit.openai_type(), "rate_limit_error");
    /// assert_eq!(ErrorKind::Api.openai_type(), "server_error");
    /// ```
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Api | ErrorKind::Overloaded => "server_error",
        }
    }

    /// Anthropic's error `type`, from the set its SDK declares.
    ///
    /// ```
    /// use weir_ai_wire::errors::ErrorKind;
    /// assert_eq!(ErrorKind::Overloaded.anthropic_type(), "overloaded_error");
    /// assert_eq!(ErrorKind::Timeout.anthropic_type(), "timeout_error");
    /// ```
    pub fn anthropic_type(self) -> &'static str {
        match self {
            // Anthropic's server says `request_too_large` for a 413, but its SDK does not declare
            // that type; the 413 status is what the SDK acts on.
            ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Api => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }
}

impl ApiError {
    /// An error of `kind`, answered with the kind's default status.
    ///
    /// ```
    /// use weir_ai_wire::errors::{ApiError, ErrorKind};
    /// assert_eq!(ApiError::new(ErrorKind::RateLimit, "quota exhausted").status, 429);
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            status: kind.default_status(),
            kind,
            code: None,
            param: None,
            message: message.into(),
        }
    }

    /// A 400 blaming the request field `param`.
    ///
    /// ```
    /// use weir_ai_wire::errors::ApiError;
    /// let error = ApiError::invalid_request("n", "n must be 1");
    /// assert_eq!((error.status, error.param.as_deref()), (400, Some("n")));
    /// ```
    pub fn invalid_request(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// A 502: the provider answered with something that is not its own wire format.
    ///
    /// ```
    /// use weir_ai_wire::errors::ApiError;
    /// assert_eq!(ApiError::bad_upstream("no choices").status, 502);
    /// ```
    pub fn bad_upstream(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Api, message).with_status(502)
    }

    /// The same error with OpenAI's machine-readable `code`.
    ///
    /// ```
    /// use weir_ai_wire::errors::{ApiError, ErrorKind};
    /// let error = ApiError::new(ErrorKind::RateLimit, "slow down").with_code("rate_limit_exceeded");
    /// assert_eq!(error.code, Some("rate_limit_exceeded"));
    /// ```
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// The same error blaming the request field `param`.
    ///
    /// ```
    /// use weir_ai_wire::errors::{ApiError, ErrorKind};
    /// let error = ApiError::new(ErrorKind::NotFound, "no such model").with_param("model");
    /// assert_eq!(error.param.as_deref(), Some("model"));
    /// ```
    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    /// The same error answered with another status.
    ///
    /// ```
    /// use weir_ai_wire::errors::{ApiError, ErrorKind};
    /// assert_eq!(ApiError::new(ErrorKind::Overloaded, "busy").with_status(503).status, 503);
    /// ```
    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = status;
        self
    }

    /// A provider's error response, read for passing on to the client in the client's dialect:
    /// the kind from the status, the message, and (from an OpenAI body) the `param` and a
    /// well-known `code`.
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::errors::{ApiError, ErrorKind};
    /// let body = json!({"type": "error", "error": {"type": "invalid_request_error",
    ///                   "message": "max_tokens: must be at least 1"}});
    /// let error = ApiError::from_provider(400, &body);
    /// assert_eq!(error.kind, ErrorKind::InvalidRequest);
    /// assert_eq!(error.message, "max_tokens: must be at least 1");
    /// ```
    pub fn from_provider(status: u16, body: &Value) -> ApiError {
        let message = provider_error_message(body)
            .unwrap_or_else(|| format!("the provider answered with status {status}"));
        let detail = body.get("error");
        let param = detail
            .and_then(|error| error.get("param"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let code = detail
            .and_then(|error| error.get("code"))
            .and_then(Value::as_str)
            .and_then(well_known_code);
        ApiError {
            status,
            kind: ErrorKind::from_status(status),
            code,
            param,
            message,
        }
    }

    /// The response body in `dialect`.
    ///
    /// ```
    /// use serde_json::json;
    /// use weir_ai_wire::{Dialect, errors::ApiError};
    /// let error = ApiError::invalid_request("n", "n must be 1");
    /// assert_eq!(error.body(Dialect::OpenAi), json!({"error": {"message": "n must be 1",
    ///     "type": "invalid_request_error", "param": "n", "code": null}}));
    /// assert_eq!(error.body(Dialect::Anthropic), json!({"type": "error",
    ///     "error": {"type": "invalid_request_error", "message": "n must be 1"}}));
    /// ```
    pub fn body(&self, dialect: Dialect) -> Value {
        match dialect {
            Dialect::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.kind.openai_type(),
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {"type": self.kind.anthropic_type(), "message": self.message},
            }),
        }
    }

    /// The in-band error that ends a stream already under way, as one SSE frame: OpenAI
    /// `data: {"error":{…}}` (the SDK raises `APIError` on it), Anthropic `event: error` with the
    /// error body (the SDK dispatches on the event line).
    ///
    /// ```
    /// use weir_ai_wire::{Dialect, errors::{ApiError, ErrorKind}};
    /// let cut = ApiError::new(ErrorKind::Api, "the provider closed the stream");
    /// assert!(cut.stream_frame(Dialect::OpenAi).starts_with(b"data: {\"error\":"));
    /// assert!(cut.stream_frame(Dialect::Anthropic).starts_with(b"event: error\ndata: "));
    /// ```
    pub fn stream_frame(&self, dialect: Dialect) -> Bytes {
        match dialect {
            Dialect::OpenAi => frame_json(None, &self.body(dialect)),
            Dialect::Anthropic => frame_json(Some("error"), &self.body(dialect)),
        }
    }
}

/// OpenAI error codes a client may act on, kept when a provider's error is passed on.
fn well_known_code(code: &str) -> Option<&'static str> {
    const CODES: &[&str] = &[
        "context_length_exceeded",
        "rate_limit_exceeded",
        "insufficient_quota",
        "invalid_api_key",
        "model_not_found",
        "content_filter",
        "content_policy_violation",
        "invalid_prompt",
        "string_above_max_length",
    ];
    CODES.iter().copied().find(|known| *known == code)
}

/// Reads a provider's error response body (either dialect, or the plainer shapes
/// OpenAI-compatible servers use) into its message, for logs and for passing an error on.
///
/// ```
/// use serde_json::json;
/// use weir_ai_wire::errors::provider_error_message;
/// let openai = json!({"error": {"message": "Invalid API key", "type": "invalid_request_error"}});
/// assert_eq!(provider_error_message(&openai).as_deref(), Some("Invalid API key"));
/// let anthropic = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
/// assert_eq!(provider_error_message(&anthropic).as_deref(), Some("Overloaded"));
/// assert_eq!(provider_error_message(&json!({"ok": true})), None);
/// ```
pub fn provider_error_message(body: &Value) -> Option<String> {
    let message = match body {
        Value::String(text) => Some(text.as_str()),
        Value::Object(fields) => match fields.get("error") {
            Some(Value::Object(error)) => error.get("message").and_then(Value::as_str),
            Some(Value::String(text)) => Some(text.as_str()),
            _ => None,
        }
        .or_else(|| fields.get("message").and_then(Value::as_str))
        // FastAPI-based servers (vLLM and others) answer `{"detail": "..."}`.
        .or_else(|| fields.get("detail").and_then(Value::as_str)),
        _ => None,
    }?;
    let message = message.trim();
    (!message.is_empty()).then(|| message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_frame(frame: &[u8]) -> (Option<String>, Value) {
        let mut parser = crate::sse::SseParser::new(1 << 16);
        let mut events = Vec::new();
        parser.push(frame, &mut events).unwrap();
        assert_eq!(events.len(), 1, "one frame is one event");
        let event = events.pop().unwrap();
        (event.event, serde_json::from_str(&event.data).unwrap())
    }

    #[test]
    fn openai_body_has_message_type_param_and_code() {
        let error = ApiError::new(ErrorKind::NotFound, "model `x` does not exist")
            .with_code("model_not_found")
            .with_param("model");
        assert_eq!(
            error.body(Dialect::OpenAi),
            json!({"error": {"message": "model `x` does not exist", "type": "not_found_error",
                "param": "model", "code": "model_not_found"}})
        );
    }

    #[test]
    fn anthropic_body_names_anthropic_types() {
        let types: Vec<_> = [
            ErrorKind::InvalidRequest,
            ErrorKind::Authentication,
            ErrorKind::Permission,
            ErrorKind::NotFound,
            ErrorKind::RequestTooLarge,
            ErrorKind::RateLimit,
            ErrorKind::Timeout,
            ErrorKind::Api,
            ErrorKind::Overloaded,
        ]
        .into_iter()
        .map(|kind| ApiError::new(kind, "m").body(Dialect::Anthropic)["error"]["type"].clone())
        .collect();
        assert_eq!(
            types,
            [
                "invalid_request_error",
                "authentication_error",
                "permission_error",
                "not_found_error",
                "invalid_request_error",
                "rate_limit_error",
                "timeout_error",
                "api_error",
                "overloaded_error"
            ]
        );
    }

    #[test]
    fn openai_stream_frame_is_a_data_only_error_object() {
        let error = ApiError::new(ErrorKind::Api, "upstream cut \"mid\"\nstream");
        let (event, data) = parse_frame(&error.stream_frame(Dialect::OpenAi));
        assert_eq!(event, None);
        assert_eq!(data["error"]["message"], "upstream cut \"mid\"\nstream");
        assert_eq!(data["error"]["type"], "server_error");
    }

    #[test]
    fn anthropic_stream_frame_has_the_error_event_line() {
        let error = ApiError::new(ErrorKind::Overloaded, "busy");
        let (event, data) = parse_frame(&error.stream_frame(Dialect::Anthropic));
        assert_eq!(event.as_deref(), Some("error"));
        assert_eq!(
            data,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        );
    }

    #[test]
    fn provider_message_is_read_from_every_known_shape() {
        let shapes = [
            json!({"error": {"message": "openai"}}),
            json!({"type": "error", "error": {"type": "api_error", "message": "anthropic"}}),
            json!({"error": "plain"}),
            json!({"message": "top-level"}),
            json!({"detail": "fastapi"}),
            json!("text body"),
        ];
        let messages: Vec<_> = shapes.iter().map(provider_error_message).collect();
        assert_eq!(
            messages,
            [
                "openai",
                "anthropic",
                "plain",
                "top-level",
                "fastapi",
                "text body"
            ]
            .map(|message| Some(message.to_owned()))
        );
    }

    #[test]
    fn provider_message_is_none_without_one() {
        assert_eq!(provider_error_message(&json!({"error": {"code": 5}})), None);
        assert_eq!(
            provider_error_message(&json!({"error": {"message": "  "}})),
            None
        );
        assert_eq!(provider_error_message(&json!(null)), None);
    }

    #[test]
    fn provider_error_keeps_status_param_and_known_code() {
        let body = json!({"error": {"message": "too long", "type": "invalid_request_error",
            "param": "messages", "code": "context_length_exceeded"}});
        let error = ApiError::from_provider(400, &body);
        assert_eq!(error.status, 400);
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert_eq!(error.param.as_deref(), Some("messages"));
        assert_eq!(error.code, Some("context_length_exceeded"));
    }

    #[test]
    fn provider_error_drops_unknown_codes_and_names_a_missing_message() {
        let error = ApiError::from_provider(500, &json!({"error": {"code": "weird"}}));
        assert_eq!(error.code, None);
        assert_eq!(error.kind, ErrorKind::Api);
        assert_eq!(error.message, "the provider answered with status 500");
    }
}
