//! Builders for the manifests a test writes: Services, EndpointSlices, Secrets, Routes,
//! AIModels, IngressClasses and Ingresses.
//!
//! Each builder makes the smallest object that says what the test needs, as a JSON value in
//! exactly the shape a user would write in YAML; [`to_yaml`] renders them. Every Service has
//! one port, `http` on [`SERVICE_PORT`], and every Route backend refers to it.
//!
//! ```
//! use weir_e2e::manifests::route;
//! let canary: serde_json::Value = route("canary")
//!     .host("echo.local")
//!     .prefix("/api")
//!     .header("x-canary", "1")
//!     .backend("echo-canary")
//!     .into();
//! assert_eq!(canary["spec"]["rules"][0]["matches"][0]["headers"][0]["value"], "1");
//! ```

use std::net::SocketAddr;

use serde_json::{Value, json};

/// The port every Service exposes, named `http`.
pub const SERVICE_PORT: u16 = 8080;

/// A Service `name` with the port `http` on [`SERVICE_PORT`].
pub fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": SERVICE_PORT}]},
    })
}

/// A Service `name` whose port `http` declares `app_protocol` (`kubernetes.io/h2c`, `grpc`).
pub fn service_with_app_protocol(name: &str, app_protocol: &str) -> Value {
    let mut service = service(name);
    service["spec"]["ports"][0]["appProtocol"] = app_protocol.into();
    service
}

/// A `kubernetes.io/tls` Secret holding a certificate chain and its key, PEM, as `stringData`.
pub fn tls_secret(name: &str, chain_pem: &str, key_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": chain_pem, "tls.key": key_pem},
    })
}

/// A client key of the AI gateway: a Secret labelled `weir.dev/ai-key: "true"` whose
/// `data.key` is `key`.
pub fn ai_client_key(name: &str, key: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"weir.dev/ai-key": "true"}},
        "stringData": {"key": key},
    })
}

/// A provider's API key: a Secret labelled `weir.dev/ai-credentials: "true"` whose `apiKey`
/// is `api_key`.
pub fn ai_provider_key(name: &str, api_key: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"weir.dev/ai-credentials": "true"}},
        "stringData": {"apiKey": api_key},
    })
}

/// An AIModel `name` served by one OpenAI-compatible provider, `primary`, at `base_url`
/// (e.g. a mock's URL and `/v1`), asking it for model `upstream_model`, with its API key in
/// `apiKey` of Secret `key_secret`. `extra` is merged into the spec (`{"fallback": …}`).
pub fn ai_model(
    name: &str,
    base_url: &str,
    upstream_model: &str,
    key_secret: &str,
    extra: Value,
) -> Value {
    let mut spec = json!({"providers": [{
        "name": "primary",
        "type": "OpenAI",
        "model": upstream_model,
        "endpoint": {"url": base_url},
        "credentials": {"secretRef": {"name": key_secret, "key": "apiKey"}},
    }]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "AIModel",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// An EndpointSlice of `service` with ready endpoints at `addresses`, which share one port.
pub fn endpoint_slice(name: &str, service: &str, addresses: &[SocketAddr]) -> Value {
    slice(name, service, addresses, true)
}

/// An EndpointSlice of `service` whose endpoints at `addresses` are all not ready.
pub fn endpoint_slice_not_ready(name: &str, service: &str, addresses: &[SocketAddr]) -> Value {
    slice(name, service, addresses, false)
}

/// A Service and one EndpointSlice per address (`<name>-0`, `<name>-1`, …), all ready.
pub fn service_with_endpoints(name: &str, addresses: &[SocketAddr]) -> Vec<Value> {
    let slices = addresses
        .iter()
        .enumerate()
        .map(|(index, address)| endpoint_slice(&format!("{name}-{index}"), name, &[*address]));
    std::iter::once(service(name)).chain(slices).collect()
}

fn slice(name: &str, service: &str, addresses: &[SocketAddr], ready: bool) -> Value {
    let port = addresses.first().map(SocketAddr::port);
    assert!(
        addresses.iter().all(|address| Some(address.port()) == port),
        "an EndpointSlice has one port for all its endpoints: {addresses:?}"
    );
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|address| json!({"addresses": [address.ip().to_string()], "conditions": {"ready": ready}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port.unwrap_or(SERVICE_PORT)}],
    })
}

/// An IngressClass `name` for `controller` (Weir's is `weir.dev/ingress-controller`),
/// annotated as the default class when `default`.
pub fn ingress_class(name: &str, controller: &str, default: bool) -> Value {
    let mut class = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    });
    if default {
        class["metadata"]["annotations"] =
            json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    }
    class
}

/// An Ingress `name`, shaped by the [`Ingress`] methods; every backend is a Service's `http`
/// port.
pub fn ingress(name: &str) -> Ingress {
    Ingress {
        value: json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": name},
            "spec": {},
        }),
    }
}

/// An Ingress manifest being built.
pub struct Ingress {
    value: Value,
}

impl Ingress {
    /// `spec.ingressClassName`.
    pub fn class(mut self, class: &str) -> Self {
        self.value["spec"]["ingressClassName"] = class.into();
        self
    }

    /// A rule for `host` (`""`: every host) with one path of `path_type` to `service`.
    pub fn path(mut self, host: &str, path_type: &str, path: &str, service: &str) -> Self {
        let mut rule = json!({"http": {"paths": [{
            "path": path, "pathType": path_type,
            "backend": {"service": {"name": service, "port": {"name": "http"}}},
        }]}});
        if !host.is_empty() {
            rule["host"] = host.into();
        }
        push(&mut self.value["spec"]["rules"], rule);
        self
    }

    /// `spec.defaultBackend`: `service`, port number [`SERVICE_PORT`].
    pub fn default_backend(mut self, service: &str) -> Self {
        self.value["spec"]["defaultBackend"] =
            json!({"service": {"name": service, "port": {"number": SERVICE_PORT}}});
        self
    }

    /// A `spec.tls` entry: the certificate in Secret `secret` for `hosts`.
    pub fn tls(mut self, secret: &str, hosts: &[&str]) -> Self {
        push(
            &mut self.value["spec"]["tls"],
            json!({"secretName": secret, "hosts": hosts}),
        );
        self
    }
}

impl From<Ingress> for Value {
    fn from(ingress: Ingress) -> Self {
        ingress.value
    }
}

/// A Route `name` with one rule, shaped by the [`Route`] methods.
pub fn route(name: &str) -> Route {
    Route {
        name: name.to_owned(),
        hosts: Vec::new(),
        rules: vec![empty_rule()],
        tls: Vec::new(),
    }
}

/// A Route being built. Match, backend and timeout methods shape its last rule; [`Route::rule`]
/// starts another. A rule given no backend has `backends: []`, which Weir rejects.
#[derive(Clone, Debug)]
pub struct Route {
    name: String,
    hosts: Vec<String>,
    rules: Vec<Value>,
    tls: Vec<Value>,
}

impl Route {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn host(mut self, host: &str) -> Self {
        self.hosts.push(host.to_owned());
        self
    }

    /// Starts a new rule; the methods that follow shape it.
    pub fn rule(mut self) -> Self {
        self.rules.push(empty_rule());
        self
    }

    pub fn prefix(self, path: &str) -> Self {
        self.path("PathPrefix", path)
    }

    pub fn exact(self, path: &str) -> Self {
        self.path("Exact", path)
    }

    pub fn regex(self, pattern: &str) -> Self {
        self.path("RegularExpression", pattern)
    }

    pub fn method(mut self, method: &str) -> Self {
        self.first_match()["method"] = method.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let headers = &mut self.first_match()["headers"];
        if headers.is_null() {
            *headers = json!([]);
        }
        headers
            .as_array_mut()
            .expect("headers is a list")
            .push(json!({"name": name, "value": value}));
        self
    }

    /// A header match of type `RegularExpression`.
    pub fn header_regex(mut self, name: &str, pattern: &str) -> Self {
        self.push_match(
            "headers",
            json!({"name": name, "type": "RegularExpression", "value": pattern}),
        );
        self
    }

    /// A query parameter match of type `Exact`.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.push_match("queryParams", json!({"name": name, "value": value}));
        self
    }

    /// A query parameter match of type `RegularExpression`.
    pub fn query_regex(mut self, name: &str, pattern: &str) -> Self {
        self.push_match(
            "queryParams",
            json!({"name": name, "type": "RegularExpression", "value": pattern}),
        );
        self
    }

    /// Adds a filter to the rule, written as in the Route API, e.g.
    /// `json!({"type": "DirectResponse", "directResponse": {"status": 503}})`.
    pub fn filter(mut self, filter: Value) -> Self {
        push(&mut self.last_rule()["filters"], filter);
        self
    }

    /// Adds a filter to the rule's last backend.
    pub fn backend_filter(mut self, filter: Value) -> Self {
        let backend = self.last_rule()["backends"]
            .as_array_mut()
            .and_then(|b| b.last_mut())
            .expect("backend_filter follows a backend");
        push(&mut backend["filters"], filter);
        self
    }

    /// Sets a field of the rule as in the Route API: `retry`, `rateLimit`, `loadBalancer`,
    /// `outlierDetection`, `timeouts`, ….
    pub fn set(mut self, field: &str, value: Value) -> Self {
        self.last_rule()[field] = value;
        self
    }

    /// Sends the rule's requests to `service` (weight 1).
    pub fn backend(self, service: &str) -> Self {
        self.weighted_backend(service, 1)
    }

    pub fn weighted_backend(mut self, service: &str, weight: u32) -> Self {
        self.last_rule()["backends"]
            .as_array_mut()
            .expect("backends is a list")
            .push(json!({"service": {"name": service, "port": SERVICE_PORT}, "weight": weight}));
        self
    }

    /// How long the rule waits for the upstream's response headers, e.g. `200ms`.
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.last_rule()["timeout"] = timeout.into();
        self
    }

    /// The longest pause the rule allows in a request body, e.g. `500ms`.
    pub fn request_body_timeout(mut self, timeout: &str) -> Self {
        self.last_rule()["timeouts"] = json!({"requestBody": timeout});
        self
    }

    /// The largest request body the rule accepts, e.g. `1Ki`.
    pub fn max_request_body_size(mut self, size: &str) -> Self {
        self.last_rule()["maxRequestBodySize"] = size.into();
        self
    }

    /// Serves the certificate of Secret `secret` for `hosts` (none: the Route's hosts).
    pub fn tls(mut self, secret: &str, hosts: &[&str]) -> Self {
        let mut entry = json!({"secretName": secret});
        if !hosts.is_empty() {
            entry["hosts"] = hosts.into();
        }
        self.tls.push(entry);
        self
    }

    fn push_match(&mut self, field: &str, value: Value) {
        push(&mut self.first_match()[field], value);
    }

    fn path(mut self, kind: &str, value: &str) -> Self {
        self.first_match()["path"] = json!({"type": kind, "value": value});
        self
    }

    fn last_rule(&mut self) -> &mut Value {
        self.rules.last_mut().expect("a route has a rule")
    }

    /// The last rule's match, made on first use; one is all these tests need.
    fn first_match(&mut self) -> &mut Value {
        let matches = &mut self.last_rule()["matches"];
        if matches.is_null() {
            *matches = json!([{}]);
        }
        &mut matches[0]
    }
}

/// Appends to a list that may not exist yet.
fn push(list: &mut Value, value: Value) {
    if list.is_null() {
        *list = json!([]);
    }
    list.as_array_mut().expect("a list").push(value);
}

fn empty_rule() -> Value {
    json!({"backends": []})
}

impl From<Route> for Value {
    fn from(route: Route) -> Value {
        let mut spec = json!({"rules": route.rules});
        if !route.hosts.is_empty() {
            spec["hosts"] = route.hosts.into();
        }
        if !route.tls.is_empty() {
            spec["tls"] = route.tls.into();
        }
        json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": route.name},
            "spec": spec,
        })
    }
}

/// Renders objects as the documents of one YAML file.
pub fn to_yaml(objects: &[Value]) -> String {
    serde_saphyr::to_string_multiple(objects).expect("JSON values render as YAML")
}
