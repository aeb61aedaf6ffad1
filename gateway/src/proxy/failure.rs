//! Requests Weir answers itself because it could not proxy them: why, with which status, and
//! the response the client gets.
//!
//! Failures map to the statuses users know: 400 a request Weir will not route (a path above
//! the root, two Host headers), 404 no route, 408 a request body that stalled, 413 a request
//! body over the rule's limit, 500 the share of an invalid backend (as Gateway API requires),
//! 503 no ready endpoint, 502 upstream connect or protocol error, 504 timeout, each with a
//! one-line text body. A gRPC client gets the same failure the way gRPC clients understand: a
//! trailers-only response with `grpc-status` (UNIMPLEMENTED for no route, UNAVAILABLE when no
//! upstream could take it or the backend is invalid, as GRPCRoute requires, DEADLINE_EXCEEDED
//! for timeouts).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::Full;

use super::ProxyBody;
use crate::upstream::{BodyLimitError, UpstreamError};

/// Why a request got an error of Weir's own, with what the log line needs.
#[derive(Debug)]
pub enum Failure {
    /// A request Weir refuses to route; the text says why.
    BadRequest(&'static str),
    NoRoute,
    NoEndpoint,
    /// The balancer picked a backend the control plane could not accept; why, for the log.
    InvalidBackend(Arc<str>),
    Connect(UpstreamError),
    Upstream(UpstreamError),
    Timeout,
    BodyTooLarge,
    BodyStalled,
}

/// gRPC status codes Weir answers with (grpc/doc/statuscodes.md).
mod grpc_status {
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const UNAVAILABLE: u8 = 14;
}

impl Failure {
    /// An upstream error, told apart by whether anything reached the upstream, and by whether
    /// it was the request body's own limit that ended it.
    pub fn from_upstream(error: UpstreamError) -> Self {
        match error.body_limit() {
            Some(BodyLimitError::TooLarge { .. }) => Failure::BodyTooLarge,
            Some(BodyLimitError::Stalled(_)) => Failure::BodyStalled,
            None if error.is_connect() => Failure::Connect(error),
            None => Failure::Upstream(error),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            Failure::InvalidBackend(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Connect(_) | Failure::Upstream(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BodyStalled => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The gRPC status for the same failure.
    fn grpc_status(&self) -> u8 {
        match self {
            Failure::BadRequest(_) => grpc_status::INVALID_ARGUMENT,
            Failure::NoRoute => grpc_status::UNIMPLEMENTED,
            Failure::NoEndpoint
            | Failure::InvalidBackend(_)
            | Failure::Connect(_)
            | Failure::Upstream(_) => grpc_status::UNAVAILABLE,
            Failure::Timeout | Failure::BodyStalled => grpc_status::DEADLINE_EXCEEDED,
            Failure::BodyTooLarge => grpc_status::RESOURCE_EXHAUSTED,
        }
    }

    pub fn body(&self) -> &'static str {
        match self {
            Failure::BadRequest(why) => why,
            Failure::NoRoute => "weir: no route for this host and path\n",
            Failure::NoEndpoint => "weir: no ready endpoint for this route\n",
            Failure::InvalidBackend(_) => "weir: this route's backend reference is invalid\n",
            Failure::Connect(_) => "weir: upstream connect error\n",
            Failure::Upstream(_) => "weir: upstream protocol error\n",
            Failure::Timeout => "weir: upstream timed out\n",
            Failure::BodyTooLarge => "weir: request body larger than this route accepts\n",
            Failure::BodyStalled => "weir: request body stalled\n",
        }
    }

    /// What happened, for the log line: the body without its prefix.
    pub fn summary(&self) -> &'static str {
        self.body().trim_start_matches("weir: ").trim_end()
    }

    /// The upstream error and its causes on one line, if there was one; why a backend is
    /// invalid.
    pub fn error_chain(&self) -> Option<String> {
        match self {
            Failure::Connect(error) | Failure::Upstream(error) => Some(error_chain(error)),
            Failure::InvalidBackend(reason) => Some(reason.to_string()),
            _ => None,
        }
    }

    /// The response the client gets: text, or for a gRPC request a trailers-only response.
    pub fn response(&self, grpc: bool) -> Response<ProxyBody> {
        if grpc {
            let mut response = Response::new(super::local_body(Full::new(Bytes::new())));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(
                "grpc-status",
                HeaderValue::from(u16::from(self.grpc_status())),
            );
            // grpc-message is percent-encoded; these texts need only spaces encoded.
            let message = self.summary().replace(' ', "%20");
            if let Ok(message) = HeaderValue::from_str(&message) {
                headers.insert("grpc-message", message);
            }
            return response;
        }
        let mut response = Response::new(super::local_body(Full::new(Bytes::from_static(
            self.body().as_bytes(),
        ))));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// An error and its causes on one line: hyper's top-level messages alone say little.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TargetAddress;

    #[test]
    fn each_failure_has_its_status_and_a_one_line_body() {
        let refused = || UpstreamError::Connect {
            target: TargetAddress::Socket(([127, 0, 0, 1], 1).into()),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        let cases = [
            (Failure::NoRoute, 404),
            (Failure::NoEndpoint, 503),
            (
                Failure::InvalidBackend("Service web/gone not found".into()),
                500,
            ),
            (Failure::from_upstream(refused()), 502),
            (Failure::Timeout, 504),
        ];
        for (failure, status) in cases {
            let response = failure.response(false);
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            assert_eq!(failure.body().lines().count(), 1);
        }
        assert!(matches!(
            Failure::from_upstream(refused()),
            Failure::Connect(_)
        ));
    }

    #[test]
    fn a_grpc_client_gets_a_trailers_only_status() {
        for (failure, code) in [
            (Failure::NoRoute, "12"),
            (Failure::NoEndpoint, "14"),
            (Failure::InvalidBackend("no such Service".into()), "14"),
            (Failure::Timeout, "4"),
        ] {
            let response = failure.response(true);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
            assert_eq!(response.headers()["grpc-status"], code);
            assert!(hyper::body::Body::is_end_stream(response.body()));
        }
    }

    #[test]
    fn the_error_chain_names_every_cause() {
        let failure = Failure::from_upstream(UpstreamError::Connect {
            target: TargetAddress::Socket(([127, 0, 0, 1], 1).into()),
            source: std::io::Error::other("connection refused"),
        });
        assert_eq!(
            failure.error_chain().unwrap(),
            "cannot connect to 127.0.0.1:1: connection refused"
        );
    }
}
