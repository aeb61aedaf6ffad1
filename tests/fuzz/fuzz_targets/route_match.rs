//! Fuzz target: route matching (`RoutingTable::find`) against a brute-force oracle.
//!
//! The input is structured (`arbitrary`): routes with exact and wildcard hosts and rules
//! whose matches mix exact, prefix and regex paths, methods, header and query conditions;
//! then requests. The table is compiled as the data plane compiles it, and for each request
//! its answer — route, rule and matched prefix — must be what the oracle below picks by
//! checking every match one by one and ranking by the documented precedence:
//!
//! - host levels, first that has a match wins: the exact host, then wildcard routes by
//!   longest suffix (`*.example.com` matches any name ending `.example.com` with at least one
//!   label before it), then routes for any host. The request's host is compared lowercase,
//!   without its port or trailing dot;
//! - within a level (Gateway API): Exact path, then the longest prefix (whole segments),
//!   then regex; then a method match, the most header matches, the most query matches; then
//!   route order, rule order, match order.
//!
//! Generated values stay within what route validation lets through (no `{ } ? #`, spaces or
//! controls in match paths; lowercase DNS names as hosts; prefixes without a trailing slash),
//! since the table relies on it; requests are anything a client can send.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Unstructured;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use weir_contract::{
    Backend, Endpoint, HeaderMatch, NamespacedName, PathMatch, Protocol, QueryMatch, Route,
    RouteId, RouteKind, RouteMatch, Rule, RuleBackend, RulePolicy, ServiceBackend, Snapshot,
    ValueMatch,
};
use weir_gateway::{
    metrics::Metrics,
    table::{RouteScope, TableCompiler, covers},
};

/// Labels hosts are made of: few, so that routes and requests meet.
const LABELS: &[&str] = &["a", "b", "example", "com", "x-1", "Ex"];
/// Path segments: plain, dotted, escaped, and characters the router treats specially.
const SEGMENTS: &[&str] = &[
    "", "a", "ab", "b", "api", "v1", ".", "..", "%2e", "*", "*rest", ":id", "a.b", "é", "%41",
];
/// Regex paths (anchored when compiled), as a user might write them.
const PATH_REGEXES: &[&str] = &[
    "/a.*",
    "/(a|b)/.*",
    "/ab?",
    "/api/v[0-9]+(/.*)?",
    ".*",
    "/é",
];
const HEADER_NAMES: &[&str] = &["x-a", "x-b", "accept"];
const QUERY_NAMES: &[&str] = &["q", "r", "a b"];
const VALUES: &[&str] = &["1", "2", "", "a b", "é", "x"];
const VALUE_REGEXES: &[&str] = &["[12]", "2|x", ".*", "", "a.b"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PURGE"];

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> arbitrary::Result<&'a str> {
    u.choose(from).copied()
}

/// A pattern of `from`, anchored as the control plane anchors it; each compiled once per
/// process (a compile per input would cost more than the matching).
fn anchored(
    u: &mut Unstructured<'_>,
    from: &'static [&'static str],
    compiled: &'static OnceLock<Vec<regex::Regex>>,
) -> arbitrary::Result<regex::Regex> {
    let compiled = compiled.get_or_init(|| {
        from.iter()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")).expect("the patterns above compile"))
            .collect()
    });
    Ok(u.choose(compiled)?.clone())
}

static PATH_REGEXES_COMPILED: OnceLock<Vec<regex::Regex>> = OnceLock::new();
static VALUE_REGEXES_COMPILED: OnceLock<Vec<regex::Regex>> = OnceLock::new();

fn host_name(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let count = u.int_in_range(1..=3)?;
    let labels: arbitrary::Result<Vec<&str>> = (0..count).map(|_| pick(u, LABELS)).collect();
    Ok(labels?.join("."))
}

fn path(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let count = u.int_in_range(0..=4)?;
    let mut path = String::new();
    for _ in 0..count {
        path.push('/');
        path.push_str(pick(u, SEGMENTS)?);
    }
    Ok(if path.is_empty() { "/".into() } else { path })
}

fn value_match(u: &mut Unstructured<'_>) -> arbitrary::Result<ValueMatch> {
    Ok(match u.int_in_range(0..=2)? {
        0 => ValueMatch::Exact(pick(u, VALUES)?.into()),
        1 => ValueMatch::RegularExpression(anchored(u, VALUE_REGEXES, &VALUE_REGEXES_COMPILED)?),
        _ => ValueMatch::Present,
    })
}

fn route_match(u: &mut Unstructured<'_>) -> arbitrary::Result<RouteMatch> {
    let path = match u.int_in_range(0..=4)? {
        0 | 1 => PathMatch::Exact(path(u)?),
        2 | 3 => {
            // As the control plane normalises a prefix: no trailing slash but the root.
            let written = path(u)?;
            let trimmed = written.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.into()
            })
        }
        _ => PathMatch::RegularExpression(anchored(u, PATH_REGEXES, &PATH_REGEXES_COMPILED)?),
    };
    let method = match u.arbitrary::<bool>()? {
        true => Some(Method::from_bytes(pick(u, METHODS)?.as_bytes()).expect("a token")),
        false => None,
    };
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        headers.push(HeaderMatch {
            name: HeaderName::from_static(pick(u, HEADER_NAMES)?),
            value: value_match(u)?,
        });
    }
    let mut query = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        query.push(QueryMatch {
            name: pick(u, QUERY_NAMES)?.into(),
            value: value_match(u)?,
        });
    }
    Ok(RouteMatch {
        path,
        method,
        headers,
        query,
    })
}

fn rule(u: &mut Unstructured<'_>) -> arbitrary::Result<Rule> {
    let mut matches = Vec::new();
    for _ in 0..u.int_in_range(1..=3)? {
        matches.push(route_match(u)?);
    }
    Ok(Rule {
        matches,
        filters: Vec::new(),
        backends: vec![RuleBackend {
            weight: 1,
            filters: Vec::new(),
            backend: Backend::Service(ServiceBackend {
                service: NamespacedName::new("default", "svc"),
                protocol: Protocol::Http1,
                tls: None,
                endpoints: vec![Endpoint {
                    address: ([127, 0, 0, 1], 8080).into(),
                }],
                unresolved: None,
            }),
        }],
        policy: RulePolicy::default(),
    })
}

fn route(u: &mut Unstructured<'_>, index: usize) -> arbitrary::Result<Route> {
    let mut hosts = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let name = host_name(u)?.to_ascii_lowercase();
        hosts.push(if u.arbitrary()? {
            format!("*.{name}")
        } else {
            name
        });
    }
    let mut rules = Vec::new();
    for _ in 0..u.int_in_range(1..=3)? {
        rules.push(rule(u)?);
    }
    Ok(Route {
        listeners: Vec::new(),
        id: RouteId::new(
            RouteKind::Route,
            NamespacedName::new("default", format!("r{index}")),
        ),
        hosts,
        rules,
    })
}

/// A request as the proxy hands it to the table: the path already normalized by then, but
/// anything else as the client sent it.
#[derive(Debug)]
struct Request {
    /// As sent: any case, maybe a port, maybe a trailing dot.
    host: String,
    /// What the oracle compares: `None` for a host the generator made up raw.
    host_name: Option<String>,
    method: Method,
    path: String,
    query: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

fn request(u: &mut Unstructured<'_>) -> arbitrary::Result<Request> {
    let (host, host_name) = if u.ratio(1, 8)? {
        (u.arbitrary::<String>()?, None)
    } else {
        let name = host_name(u)?;
        let mut host = name.clone();
        if u.ratio(1, 4)? {
            host.push('.');
        }
        if u.ratio(1, 4)? {
            host.push_str(&format!(":{}", u.int_in_range(0..=65535u32)?));
        }
        (host, Some(name.to_ascii_lowercase()))
    };
    let method = Method::from_bytes(pick(u, METHODS)?.as_bytes()).expect("a token");
    let path = if u.ratio(1, 8)? {
        format!("/{}", u.arbitrary::<String>()?)
    } else {
        path(u)?
    };
    let query = if u.arbitrary()? {
        let mut pairs = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let name = pick(u, QUERY_NAMES)?.replace(' ', if u.arbitrary()? { "+" } else { "%20" });
            let value = match u.int_in_range(0..=3)? {
                0 => "%31".to_string(),
                1 => "%".to_string(),
                _ => pick(u, VALUES)?.replace(' ', "+"),
            };
            pairs.push(if u.ratio(1, 6)? {
                name
            } else {
                format!("{name}={value}")
            });
        }
        Some(pairs.join("&"))
    } else {
        None
    };
    let mut headers = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let name = HeaderName::from_static(pick(u, HEADER_NAMES)?);
        let value = if u.ratio(1, 4)? {
            HeaderValue::from_bytes(u.arbitrary::<&[u8]>()?)
        } else {
            HeaderValue::from_str(pick(u, VALUES)?)
        };
        if let Ok(value) = value {
            headers.push((name, value));
        }
    }
    Ok(Request {
        host,
        host_name,
        method,
        path,
        query,
        headers,
    })
}

/// `%XX` and `+` decoded, anything malformed kept as written.
fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, other) => out.push(other),
        }
        i += 1;
    }
    out
}

fn value_accepts(wanted: &ValueMatch, value: &[u8]) -> bool {
    match wanted {
        ValueMatch::Exact(exact) => exact.as_bytes() == value,
        ValueMatch::RegularExpression(regex) => {
            std::str::from_utf8(value).is_ok_and(|text| regex.is_match(text))
        }
        ValueMatch::Present => true,
    }
}

fn accepts(m: &RouteMatch, request: &Request) -> bool {
    let path = match &m.path {
        PathMatch::Exact(p) => *p == request.path,
        PathMatch::Prefix(p) => covers(p, &request.path),
        PathMatch::RegularExpression(r) => r.is_match(&request.path),
    };
    let method = m
        .method
        .as_ref()
        .is_none_or(|wanted| *wanted == request.method);
    let headers = m.headers.iter().all(|h| {
        request
            .headers
            .iter()
            .any(|(n, v)| *n == h.name && value_accepts(&h.value, v.as_bytes()))
    });
    // Of a parameter given twice, the first counts.
    let query = m.query.iter().all(|q| {
        request
            .query
            .as_deref()
            .unwrap_or_default()
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(name, _)| decode(name) == q.name.as_bytes())
            .is_some_and(|(_, value)| value_accepts(&q.value, &decode(value)))
    });
    path && method && headers && query
}

/// What the table should answer: route, rule index and matched prefix.
type Answer = (String, usize, Option<String>);

/// The best match among `routes` (one host level), by sorting every accepting match.
fn best(routes: &[&Route], request: &Request) -> Option<Answer> {
    let mut ranked = Vec::new();
    for (route_order, route) in routes.iter().enumerate() {
        for (rule_index, rule) in route.rules.iter().enumerate() {
            for (match_index, m) in rule.matches.iter().enumerate() {
                if !accepts(m, request) {
                    continue;
                }
                let (kind, length, prefix) = match &m.path {
                    PathMatch::Exact(p) => (0, p.len(), None),
                    PathMatch::Prefix(p) => (1, p.len(), Some(p.clone())),
                    PathMatch::RegularExpression(_) => (2, 0, None),
                };
                let rank = (
                    kind,
                    std::cmp::Reverse(length),
                    m.method.is_none(),
                    std::cmp::Reverse(m.headers.len()),
                    std::cmp::Reverse(m.query.len()),
                    (route_order, rule_index, match_index),
                );
                ranked.push((rank, (route.id.display().to_string(), rule_index, prefix)));
            }
        }
    }
    ranked
        .into_iter()
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, answer)| answer)
}

fn oracle(routes: &[&Route], host: &str, request: &Request) -> Option<Answer> {
    let exact: Vec<&Route> = routes
        .iter()
        .copied()
        .filter(|r| r.hosts.iter().any(|h| h == host))
        .collect();
    if let Some(found) = best(&exact, request) {
        return Some(found);
    }
    let mut suffixes: Vec<&str> = routes
        .iter()
        .flat_map(|r| &r.hosts)
        .filter_map(|h| h.strip_prefix('*'))
        .filter(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
        .collect();
    suffixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
    suffixes.dedup();
    for suffix in suffixes {
        let level: Vec<&Route> = routes
            .iter()
            .copied()
            .filter(|r| r.hosts.iter().any(|h| h.strip_prefix('*') == Some(suffix)))
            .collect();
        if let Some(found) = best(&level, request) {
            return Some(found);
        }
    }
    let any: Vec<&Route> = routes
        .iter()
        .copied()
        .filter(|r| r.hosts.is_empty())
        .collect();
    best(&any, request)
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mut routes = Vec::new();
    for index in 0..u.int_in_range(1..=6)? {
        routes.push(route(u, index)?);
    }
    let snapshot = Snapshot {
        generation: 1,
        routes: routes.into_iter().map(Arc::new).collect(),
        ..Default::default()
    };
    let snapshot = Arc::new(snapshot);
    let table = TableCompiler::new(Metrics::default()).compile(snapshot.clone(), None);
    let routes: Vec<&Route> = snapshot.routes.iter().map(|r| &**r).collect();
    for _ in 0..u.int_in_range(1..=8)? {
        let request = request(u)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            headers.append(name.clone(), value.clone());
        }
        let found = table
            .find(
                &RouteScope::CommandLine,
                &request.host,
                &request.method,
                &request.path,
                request.query.as_deref(),
                &headers,
            )
            .map(|m| {
                (
                    m.target.route.to_string(),
                    m.target.rule_index,
                    m.prefix.map(str::to_owned),
                )
            });
        if let Some(host) = &request.host_name {
            let expected = oracle(&routes, host, &request);
            assert_eq!(found, expected, "{request:#?}\nroutes: {routes:#?}");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
