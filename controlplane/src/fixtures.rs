//! Small builders for the objects tests need: a Service, an EndpointSlice, a Route, an
//! AIModel and a provider-key Secret.
//!
//! Tests read better with `fixtures::route("default", "echo", &["echo.local"], "/api", port)`
//! than with pages of YAML; each builder makes the smallest valid object.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{Secret, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};
use weir_crds::{
    Backend, PathMatch, PathMatchType, Route, RouteMatch, RouteRule, RouteSpec, ServiceRef,
};

use crate::kinds::{AI_CREDENTIALS_LABEL, Object, SERVICE_NAME_LABEL};

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// A ClusterIP Service with named ports.
pub fn service(namespace: &str, name: &str, ports: &[(&str, i32)]) -> Object {
    Object::Service(Arc::new(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port)| ServicePort {
                        name: Some((*port_name).into()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// An IPv4 EndpointSlice of `service` whose port `http` is `port`, every address ready.
pub fn slice(namespace: &str, name: &str, service: &str, port: i32, addresses: &[&str]) -> Object {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.into(),
        service.into(),
    )]));
    Object::EndpointSlice(Arc::new(EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: addresses
            .iter()
            .map(|address| Endpoint {
                addresses: vec![(*address).into()],
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port),
            ..Default::default()
        }]),
    }))
}

/// A Route with one rule: `PathPrefix prefix` to Service `echo` on `port`.
pub fn route(
    namespace: &str,
    name: &str,
    hosts: &[&str],
    prefix: &str,
    port: IntOrString,
) -> Object {
    let mut route = Route::new(
        name,
        RouteSpec {
            hosts: hosts.iter().map(|h| (*h).into()).collect(),
            rules: vec![RouteRule {
                matches: vec![RouteMatch {
                    path: Some(PathMatch {
                        kind: PathMatchType::PathPrefix,
                        value: prefix.into(),
                    }),
                    ..Default::default()
                }],
                backends: vec![Backend {
                    service: ServiceRef {
                        name: "echo".into(),
                        port,
                    },
                    weight: 1,
                    tls: None,
                    filters: Vec::new(),
                }],
                ..RouteRule::default()
            }],
            tls: Vec::new(),
        },
    );
    route.metadata.namespace = Some(namespace.into());
    Object::Route(Arc::new(route))
}

/// An AIModel with one OpenAI provider, `primary`, at a loopback URL, whose API key is `apiKey`
/// of Secret `secret`.
pub fn ai_model(namespace: &str, name: &str, secret: &str) -> Object {
    let mut model = weir_crds::AIModel::new(
        name,
        weir_crds::AIModelSpec {
            names: Vec::new(),
            hosts: Vec::new(),
            access: None,
            providers: vec![weir_crds::AIProvider {
                name: "primary".into(),
                kind: "OpenAI".into(),
                model: "gpt-4o".into(),
                endpoint: weir_crds::AIEndpoint {
                    url: Some("http://127.0.0.1:9/v1".into()),
                    service: None,
                },
                credentials: Some(weir_crds::AICredentials {
                    secret_ref: weir_crds::AISecretKeyRef {
                        name: secret.into(),
                        key: "apiKey".into(),
                    },
                }),
                priority: 0,
                weight: 1,
                default_max_tokens: None,
            }],
            timeouts: None,
            fallback: None,
            quotas: Vec::new(),
            prompts: Vec::new(),
        },
    );
    model.metadata.namespace = Some(namespace.into());
    model.metadata.generation = Some(1);
    Object::AIModel(Arc::new(model))
}

/// A provider-key Secret (labelled `weir.dev/ai-credentials: "true"`) holding `apiKey`.
pub fn provider_key(namespace: &str, name: &str, api_key: &str) -> Object {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        AI_CREDENTIALS_LABEL.into(),
        "true".into(),
    )]));
    Object::ProviderKey(Arc::new(Secret {
        metadata,
        string_data: Some(BTreeMap::from([("apiKey".into(), api_key.into())])),
        ..Default::default()
    }))
}

/// A self-signed ECDSA P-256 certificate for `shop.example.com` (valid for a century) and its
/// key, PEM: a test-only pair, so translation tests need no certificate generator.
pub const SHOP_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBqjCCAVCgAwIBAgIUa9aN1iezrLX9tZSRbXZmV0BK+i0wCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQc2hvcC5leGFtcGxlLmNvbTAgFw0yNjExMjUxNzEzNDhaGA8y
MTI2MTEwMTE3MTM0OFowGzEZMBcGA1UEAwwQc2hvcC5leGFtcGxlLmNvbTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABEqYiJ2Sx2gwSb6losnV+E9Mn0/k6BHO4ooH
sGcdfUDOqVPeRLWtUyPlX4n7ztwWgfYKMFgl+Zlqbub/qqfqMNCjcDBuMB0GA1Ud
DgQWBBQeC2HC/0Vac3gVAyNe7ZYpKv3b3jAfBgNVHSMEGDAWgBQeC2HC/0Vac3gV
AyNe7ZYpKv3b3jAPBgNVHRMBAf8EBTADAQH/MBsGA1UdEQQUMBKCEHNob3AuZXhh
bXBsZS5jb20wCgYIKoZIzj0EAwIDSAAwRQIgFH21rg7mcBs4GrqkLMVlixaY4eSA
+HsCZZOutLbZQw0CIQCg1J1A+biez93ABEuDBO/RamB7DF3lIOrcn+PVh1PtEQ==
-----END CERTIFICATE-----
";
/// The key of [`SHOP_CERT_PEM`].
pub const SHOP_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghbhyCbghqaxF6krE
rkpVdGSw9qwAICxLgW7XTQfa3OWhRANCAARKmIidksdoMEm+paLJ1fhPTJ9P5OgR
zuKKB7BnHX1AzqlT3kS1rVMj5V+J+87cFoH2CjBYJfmZam7m/6qn6jDQ
-----END PRIVATE KEY-----
";

/// A `kubernetes.io/tls` Secret holding `chain_pem` and `key_pem` as `stringData`.
pub fn tls_secret(namespace: &str, name: &str, chain_pem: &str, key_pem: &str) -> Object {
    Object::Secret(Arc::new(Secret {
        metadata: meta(namespace, name),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".into(), chain_pem.into()),
            ("tls.key".into(), key_pem.into()),
        ])),
        ..Default::default()
    }))
}
