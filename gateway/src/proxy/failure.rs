//! Requests Weir answers itself because it could not proxy them: why, with which status, and
//! the response the client gets.
//!
//! Failures map to the statuses users know: 404 no route, 503 no ready endpoint, 502 upstream
//! connect or protocol error, 504 timeout, each with a one-line text body.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{Either, Full};

use super::ProxyBody;
use crate::upstream::UpstreamError;

/// Why a request got an error of Weir's own, with what the log line needs.
#[derive(Debug)]
pub enum Failure {
    NoRoute,
    NoEndpoint,
    Connect(UpstreamError),
    Upstream(UpstreamError),
    Timeout,
}

impl Failure {
    /// An upstream error, told apart by whether anything reached the upstream.
    pub fn from_upstream(error: UpstreamError) -> Self {
        if error.is_connect() {
            Failure::Connect(error)
        } else {
            Failure::Upstream(error)
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Connect(_) | Failure::Upstream(_) => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn body(&self) -> &'static str {
        match self {
            Failure::NoRoute => "weir: no route for this host and path\n",
            Failure::NoEndpoint => "weir: no ready endpoint for this route\n",
            Failure::Connect(_) => "weir: upstream connect error\n",
            Failure::Upstream(_) => "weir: upstream protocol error\n",
            Failure::Timeout => "weir: upstream timed out\n",
        }
    }

    /// What happened, for the log line: the body without its prefix.
    pub fn summary(&self) -> &'static str {
        self.body().trim_start_matches("weir: ").trim_end()
    }

    /// The upstream error and its causes on one line, if there was one.
    pub fn error_chain(&self) -> Option<String> {
        match self {
            Failure::Connect(error) | Failure::Upstream(error) => Some(error_chain(error)),
            _ => None,
        }
    }

    /// The response the client gets.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
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
            (Failure::from_upstream(refused()), 502),
            (Failure::Timeout, 504),
        ];
        for (failure, status) in cases {
            let response = failure.response();
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
