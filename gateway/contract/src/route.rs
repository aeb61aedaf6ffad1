//! Routes as the data plane serves them: hosts, then rules of matches, filters, backends and
//! policy.
//!
//! Matches are neutral: they say what a request must look like, in the terms every API Weir
//! reads can be translated into (Route, Gateway API HTTPRoute, Ingress). Precedence between
//! them is the data plane's (Gateway API's order), not encoded here.

use std::sync::Arc;

use http::{HeaderName, Method};
use regex::Regex;

use crate::{
    backend::RuleBackend,
    ids::RouteId,
    policy::{Filter, RulePolicy},
};

/// A route: requests for its hosts that match one of its rules.
#[derive(Debug)]
pub struct Route {
    pub id: RouteId,
    /// Lowercase host names; `*.example.com` for a wildcard; empty for every host.
    pub hosts: Vec<String>,
    /// In the order written: among equally specific matches, the earlier rule wins.
    pub rules: Vec<Rule>,
    /// The snapshot's [`Listener`](crate::Listener)s it is served on, by name; empty for the
    /// command line's listeners (Routes and Ingresses).
    pub listeners: Vec<Arc<str>>,
}

/// One rule: what it matches, what it does to a matched request, and where it sends it.
#[derive(Debug)]
pub struct Rule {
    /// Never empty: a rule written without matches gets `PathPrefix /`.
    pub matches: Vec<RouteMatch>,
    /// Applied in order to every request the rule matches (and to its response).
    pub filters: Vec<Filter>,
    /// Share the rule's traffic by weight.
    pub backends: Vec<RuleBackend>,
    pub policy: RulePolicy,
}

/// One way a request can match a rule: all of its conditions.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub method: Option<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

impl RouteMatch {
    /// Matches every request: `PathPrefix /`, any method, any headers.
    pub fn any() -> Self {
        Self {
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
        }
    }
}

/// A path match, normalised.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Matches whole segments. Without a trailing slash, except the root prefix `/`.
    Prefix(String),
    /// Anchored at both ends; matched against the whole path.
    RegularExpression(Regex),
}

/// A condition on a request header. The name is lowercase.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

/// A condition on a query parameter, by its exact (case-sensitive) name.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// What a header or query parameter's value must be.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    /// Anchored at both ends.
    RegularExpression(Regex),
    /// Present, with any value.
    Present,
}

impl ValueMatch {
    /// Whether `value` satisfies this condition.
    ///
    /// ```
    /// use weir_contract::ValueMatch;
    /// assert!(ValueMatch::Exact("1".into()).matches(b"1"));
    /// assert!(!ValueMatch::Exact("1".into()).matches(b"2"));
    /// assert!(ValueMatch::Present.matches(b""));
    /// ```
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(expected) => expected.as_bytes() == value,
            ValueMatch::RegularExpression(regex) => {
                std::str::from_utf8(value).is_ok_and(|text| regex.is_match(text))
            }
            ValueMatch::Present => true,
        }
    }
}
