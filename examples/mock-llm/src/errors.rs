//! Error answers, shaped as each wire format's clients expect them.
//!
//! An [`ApiError`] says what went wrong once; [`ApiError::render`] lays it out in the
//! dialect of the path it happened on, since the SDKs map status and body to exception types:
//! OpenAI `{"error":{"message","type","param","code"}}`, Anthropic
//! `{"type":"error","error":{"type","message"},"request_id"}`. Every error is JSON.

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

/// Which provider's wire format a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// An error answer, before it is laid out in a dialect.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `param`: the request field at fault.
    pub param: Option<&'static str>,
    /// OpenAI's `code`, when it is not the one [`openai_type_and_code`] gives the status.
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400 blaming the request field `param`.
    pub fn invalid_field(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            param: Some(param),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// The error a `status-NNN` directive asks for.
    pub fn injected(status: StatusCode) -> Self {
        Self::new(
            status,
            format!(
                "weir-mock-llm: status {} injected by the model's status-{} directive",
                status.as_u16(),
                status.as_u16()
            ),
        )
    }

    /// The body in `dialect`; `request_id` names the request in Anthropic's shape.
    pub fn render(&self, dialect: Dialect, request_id: &str) -> Bytes {
        let body = match dialect {
            Dialect::OpenAi => {
                let (error_type, default_code) = openai_type_and_code(self.status);
                json!({
                    "error": {
                        "message": self.message,
                        "type": error_type,
                        "param": self.param,
                        "code": self.code.or(default_code),
                    }
                })
            }
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {"type": anthropic_type(self.status), "message": self.message},
                "request_id": request_id,
            }),
        };
        Bytes::from(body.to_string())
    }
}

/// Anthropic's `error.type` for a status, as its SDK maps them to exceptions.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's `error.type` and `error.code` for a status, as its API sends them.
fn openai_type_and_code(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        529 => ("server_error", Some("overloaded")),
        500..=599 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn rendered(error: &ApiError, dialect: Dialect) -> Value {
        serde_json::from_slice(&error.render(dialect, "req_1")).unwrap()
    }

    #[test]
    fn openai_errors_carry_type_param_and_code() {
        let error = ApiError::injected(StatusCode::TOO_MANY_REQUESTS);
        let body = rendered(&error, Dialect::OpenAi);
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["param"], Value::Null);
        assert!(body["error"]["message"].as_str().unwrap().contains("429"));

        let missing = ApiError::invalid_field("messages", "messages: required");
        let body = rendered(&missing, Dialect::OpenAi);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["code"], Value::Null);
    }

    #[test]
    fn anthropic_errors_are_typed_by_status() {
        let cases = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "api_error"),
            (529, "overloaded_error"),
        ];
        for (status, error_type) in cases {
            let error = ApiError::injected(StatusCode::from_u16(status).unwrap());
            let body = rendered(&error, Dialect::Anthropic);
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], error_type, "status {status}");
            assert_eq!(body["request_id"], "req_1");
        }
    }
}
