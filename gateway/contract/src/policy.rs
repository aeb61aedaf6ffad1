//! Per-rule behaviour beyond routing: filters that change a request or its response, and the
//! policies (timeouts now; retries, rate limits, load balancing and outlier detection next)
//! the data plane applies around forwarding.
//!
//! Everything here is plain data, compiled once per table by the data plane. A rule with no
//! filters and the default policy costs a request nothing.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// Something a rule does to the requests it matches, or to their responses.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Changes the request's headers before it is forwarded.
    RequestHeaderModifier(HeaderModifier),
    /// Changes the response's headers before it is returned.
    ResponseHeaderModifier(HeaderModifier),
}

/// Header changes, applied in the order set, add, remove (as Gateway API's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderModifier {
    /// Replace any value the header had.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Add a value, keeping those already there.
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// How a rule's requests are forwarded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulePolicy {
    pub timeouts: Timeouts,
    /// The largest request body accepted; a larger one is answered 413. `None`: no limit.
    pub max_request_body_bytes: Option<u64>,
}

/// Time limits on a rule's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// One upstream try, until its response headers arrive. `None`: no limit.
    pub backend_request: Option<Duration>,
    /// The longest pause while the client sends the request body.
    pub request_body: BodyTimeout,
}

/// How long a client may pause while sending a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyTimeout {
    /// The gateway's own default (its command line).
    #[default]
    GatewayDefault,
    /// No limit.
    Disabled,
    After(Duration),
}
