//! Kubernetes `Ingress` (`networking.k8s.io/v1`) into contract routes, and which Ingresses are
//! Weir's.
//!
//! **Class.** An Ingress is Weir's when its `spec.ingressClassName` (or, failing that, the legacy
//! `kubernetes.io/ingress.class` annotation) names an IngressClass whose `spec.controller` is
//! [`CONTROLLER`]; or when it names no class and a Weir IngressClass is annotated
//! `ingressclass.kubernetes.io/is-default-class: "true"`. Others are not looked at.
//!
//! **Routes.** An Ingress becomes one contract route per host its rules name (rules without a
//! host are one route for every host), each identified as a section of the Ingress
//! ([`RouteId::ingress`]). Every path is one rule with one match and one backend:
//! - `Exact` → an exact path match;
//! - `Prefix` → Weir's path prefix, which matches whole segments as Kubernetes requires
//!   (`/foo` matches `/foo` and `/foo/bar`, never `/foobar`; a trailing `/` is ignored);
//! - `ImplementationSpecific` → the same as `Prefix`: Weir has no other prefix semantics.
//!
//! Backends resolve exactly as a Route's (the same function); `resource` backends are not
//! supported and their path is left out, with a problem on the report.
//!
//! **Default backend.** `spec.defaultBackend` becomes a separate route for every host, prefix
//! `/`, which the table tries after every host-specific level: it catches what no rule takes.
//! Only one can: the reconciler serves the oldest Ingress's (creation time, then
//! `namespace/name`), and reports the others.
//!
//! **TLS.** Each `spec.tls` entry is a certificate from the `kubernetes.io/tls` Secret it names
//! in the Ingress's namespace, for its `hosts` (or, without any, the hosts of the Ingress's
//! rules), read exactly as a Route's `spec.tls`.
//!
//! An Ingress has no conditions, so problems are strings on an [`IngressReport`]
//! (`weir_contract`), logged and shown in `/debug/routes`; a bad path never rejects the rest.

use std::sync::Arc;

use k8s_openapi::{
    api::networking::v1::{Ingress, IngressBackend, IngressClass},
    apimachinery::pkg::util::intstr::IntOrString,
};
use weir_contract::{
    NamespacedName, PathMatch, Route, RouteId, RouteMatch, Rule, RulePolicy, TlsCertificate,
};

use super::route::{certificate, normalise_prefix, translate_backend};
use crate::resolve::Lookup;

/// The `spec.controller` of Weir's IngressClasses.
pub const CONTROLLER: &str = "weir.dev/ingress-controller";
/// The annotation that makes an IngressClass the default for Ingresses that name none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation that named an Ingress's class before `spec.ingressClassName`.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The section of an Ingress's default-backend route.
pub const DEFAULT_BACKEND_SECTION: &str = "defaultBackend";

/// Whether `ingress` is Weir's, given every IngressClass there is.
pub fn is_weirs<'a>(
    ingress: &Ingress,
    classes: impl IntoIterator<Item = &'a IngressClass>,
) -> bool {
    let named = ingress
        .spec
        .as_ref()
        .and_then(|spec| spec.ingress_class_name.as_deref())
        .or_else(|| annotation(&ingress.metadata.annotations, LEGACY_CLASS_ANNOTATION));
    let mut weirs = classes.into_iter().filter(|class| {
        class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
    });
    match named {
        Some(name) => weirs.any(|class| class.metadata.name.as_deref() == Some(name)),
        None => weirs.any(|class| {
            annotation(&class.metadata.annotations, DEFAULT_CLASS_ANNOTATION) == Some("true")
        }),
    }
}

fn annotation<'a>(
    annotations: &'a Option<std::collections::BTreeMap<String, String>>,
    name: &str,
) -> Option<&'a str> {
    annotations.as_ref()?.get(name).map(String::as_str)
}

/// What an Ingress gives.
#[derive(Debug, Default)]
pub struct TranslatedIngress {
    /// One per host, in the order the rules first name it.
    pub routes: Vec<Route>,
    /// Its default backend, as a route for every host; served only if it is the oldest.
    pub default_backend: Option<Route>,
    pub certificates: Vec<Arc<TlsCertificate>>,
    /// Each naming its field.
    pub problems: Vec<String>,
}

/// Translates an Ingress, its references resolved through `lookup`. Never fails: what cannot
/// be served is left out and named in `problems`.
pub fn translate(
    id: &NamespacedName,
    ingress: &Ingress,
    lookup: &mut Lookup<'_>,
) -> TranslatedIngress {
    let mut translated = TranslatedIngress::default();
    let Some(spec) = &ingress.spec else {
        return translated;
    };
    // Rules by host, in first-seen order; `None` for rules without a host.
    let mut by_host: Vec<(Option<String>, Vec<Rule>)> = Vec::new();
    for (r, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule.host.as_deref().map(str::to_ascii_lowercase);
        let index = match by_host.iter().position(|(h, _)| *h == host) {
            Some(index) => index,
            None => {
                by_host.push((host, Vec::new()));
                by_host.len() - 1
            }
        };
        let paths = rule.http.iter().flat_map(|http| http.paths.iter());
        for (p, path) in paths.enumerate() {
            let at = format!("spec.rules[{r}].http.paths[{p}]");
            let value = path.path.as_deref().unwrap_or("/");
            if !value.starts_with('/') {
                translated
                    .problems
                    .push(format!("{at}.path: {value:?} does not start with \"/\""));
                continue;
            }
            let path_match = match path.path_type.as_str() {
                "Exact" => PathMatch::Exact(value.to_owned()),
                "Prefix" | "ImplementationSpecific" => PathMatch::Prefix(normalise_prefix(value)),
                other => {
                    translated.problems.push(format!(
                        "{at}.pathType: {other:?} is not Exact, Prefix or ImplementationSpecific"
                    ));
                    continue;
                }
            };
            if let Some(rule) = backend_rule(
                id,
                &path.backend,
                path_match,
                &format!("{at}.backend"),
                lookup,
                &mut translated.problems,
            ) {
                by_host[index].1.push(rule);
            }
        }
    }
    let rule_hosts: Vec<String> = by_host.iter().filter_map(|(h, _)| h.clone()).collect();
    for (host, rules) in by_host {
        if rules.is_empty() {
            continue;
        }
        let (section, hosts) = match host {
            Some(host) => (host.clone(), vec![host]),
            None => ("*".to_owned(), Vec::new()),
        };
        translated.routes.push(Route {
            listeners: Vec::new(),
            id: RouteId::ingress(id.clone(), &section),
            hosts,
            rules,
        });
    }
    if let Some(backend) = &spec.default_backend {
        translated.default_backend = backend_rule(
            id,
            backend,
            PathMatch::Prefix("/".into()),
            "spec.defaultBackend",
            lookup,
            &mut translated.problems,
        )
        .map(|rule| Route {
            listeners: Vec::new(),
            id: RouteId::ingress(id.clone(), DEFAULT_BACKEND_SECTION),
            hosts: Vec::new(),
            rules: vec![rule],
        });
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let at = format!("spec.tls[{i}]");
        let Some(secret_name) = &tls.secret_name else {
            translated.problems.push(format!(
                "{at}.secretName: none given; Weir terminates TLS only with a certificate"
            ));
            continue;
        };
        let hosts = match &tls.hosts {
            Some(hosts) if !hosts.is_empty() => {
                hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
            }
            _ => rule_hosts.clone(),
        };
        let (served, problem) =
            certificate(id, secret_name, hosts, &format!("{at}.secretName"), lookup);
        translated.certificates.extend(served);
        translated
            .problems
            .extend(problem.map(|problem| problem.message));
    }
    translated
}

/// The rule that sends `path_match` to `backend`; `None` (and a problem) if it names no
/// Service. A Service that does not resolve still makes a rule, answered 503, as for a Route.
fn backend_rule(
    id: &NamespacedName,
    backend: &IngressBackend,
    path_match: PathMatch,
    at: &str,
    lookup: &mut Lookup<'_>,
    problems: &mut Vec<String>,
) -> Option<Rule> {
    let Some(service) = &backend.service else {
        problems.push(match &backend.resource {
            Some(resource) => format!(
                "{at}.resource: {} {} is not supported (only service backends are)",
                resource.kind, resource.name
            ),
            None => format!("{at}: names no service"),
        });
        return None;
    };
    let port = service.port.as_ref().and_then(|port| {
        port.number
            .map(IntOrString::Int)
            .or_else(|| port.name.clone().map(IntOrString::String))
    });
    let Some(port) = port else {
        problems.push(format!("{at}.service.port: neither number nor name given"));
        return None;
    };
    let weir_backend = weir_crds::Backend {
        service: weir_crds::ServiceRef {
            name: service.name.clone(),
            port,
        },
        weight: 1,
        tls: None,
        filters: Vec::new(),
    };
    let (rule_backend, problem) = translate_backend(id, &weir_backend, at, lookup);
    problems.extend(problem.map(|problem| problem.message));
    Some(Rule {
        matches: vec![RouteMatch {
            path: path_match,
            ..RouteMatch::any()
        }],
        filters: Vec::new(),
        backends: vec![rule_backend],
        policy: RulePolicy::default(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_contract::Backend;

    use super::*;
    use crate::{fixtures, kinds::Object, resolve::Certificates, store::Store};

    fn ingress(spec: serde_json::Value) -> Ingress {
        ingress_with(json!({"name": "shop", "namespace": "web"}), spec)
    }

    fn ingress_with(metadata: serde_json::Value, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({"metadata": metadata, "spec": spec})).unwrap()
    }

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        let annotations = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"controller": controller}
        }))
        .unwrap()
    }

    fn path(path_type: &str, value: &str, service: &str) -> serde_json::Value {
        json!({"path": value, "pathType": path_type,
               "backend": {"service": {"name": service, "port": {"number": 8080}}}})
    }

    /// Store with Service `web/echo` (port 8080, `http`) and one ready endpoint.
    fn store() -> Store {
        let mut store = Store::default();
        for object in [
            fixtures::service("web", "echo", &[("http", 8080)]),
            fixtures::slice("web", "echo-1", "echo", 9001, &["127.0.0.1"]),
        ] {
            store.apply(object, weir_contract::Origin::Cluster);
        }
        store
    }

    fn translate_in(store: &Store, ingress: &Ingress) -> TranslatedIngress {
        let mut certificates = Certificates::default();
        let mut lookup = Lookup::new(store, &mut certificates);
        translate(&NamespacedName::new("web", "shop"), ingress, &mut lookup)
    }

    fn only_path(route: &Route) -> &PathMatch {
        &route.rules[0].matches[0].path
    }

    #[test]
    fn path_types_map_to_exact_and_whole_segment_prefixes() {
        let translated = translate_in(
            &store(),
            &ingress(json!({"rules": [{"http": {"paths": [
                path("Exact", "/exact", "echo"),
                path("Prefix", "/foo/", "echo"),
                path("ImplementationSpecific", "/impl", "echo"),
            ]}}]})),
        );
        assert!(translated.problems.is_empty(), "{:?}", translated.problems);
        let route = &translated.routes[0];
        assert!(
            route.hosts.is_empty(),
            "a rule without host is for every host"
        );
        let paths: Vec<String> = route
            .rules
            .iter()
            .map(|r| format!("{:?}", r.matches[0].path))
            .collect();
        assert_eq!(
            paths,
            [
                r#"Exact("/exact")"#,
                r#"Prefix("/foo")"#,
                r#"Prefix("/impl")"#
            ]
        );
    }

    #[test]
    fn an_unknown_path_type_or_a_relative_path_is_left_out_and_named() {
        let translated = translate_in(
            &store(),
            &ingress(json!({"rules": [{"http": {"paths": [
                path("Regex", "/a", "echo"),
                path("Prefix", "b", "echo"),
                path("Prefix", "/ok", "echo"),
            ]}}]})),
        );
        assert_eq!(translated.routes[0].rules.len(), 1);
        assert!(translated.problems[0].starts_with("spec.rules[0].http.paths[0].pathType"));
        assert!(translated.problems[1].starts_with("spec.rules[0].http.paths[1].path"));
    }

    #[test]
    fn each_host_including_a_wildcard_is_its_own_route_lowercased() {
        let translated = translate_in(
            &store(),
            &ingress(json!({"rules": [
                {"host": "Shop.Example.com", "http": {"paths": [path("Prefix", "/", "echo")]}},
                {"host": "*.example.com", "http": {"paths": [path("Prefix", "/", "echo")]}},
                {"host": "shop.example.com", "http": {"paths": [path("Exact", "/x", "echo")]}},
            ]})),
        );
        let routes: Vec<(String, Vec<String>, usize)> = translated
            .routes
            .iter()
            .map(|r| (r.id.to_string(), r.hosts.clone(), r.rules.len()))
            .collect();
        assert_eq!(
            routes,
            [
                (
                    "ingress:web/shop#shop.example.com".into(),
                    vec!["shop.example.com".into()],
                    2
                ),
                (
                    "ingress:web/shop#*.example.com".into(),
                    vec!["*.example.com".into()],
                    1
                ),
            ]
        );
    }

    #[test]
    fn backends_resolve_by_port_number_or_name_like_a_routes() {
        for port in [json!({"number": 8080}), json!({"name": "http"})] {
            let translated = translate_in(
                &store(),
                &ingress(json!({"defaultBackend": {"service": {"name": "echo", "port": port}}})),
            );
            let default = translated.default_backend.unwrap();
            assert_eq!(default.id.to_string(), "ingress:web/shop#defaultBackend");
            assert!(default.hosts.is_empty());
            assert!(matches!(only_path(&default), PathMatch::Prefix(p) if p == "/"));
            let Backend::Service(service) = &default.rules[0].backends[0].backend else {
                panic!("not a Service")
            };
            assert_eq!(service.endpoints.len(), 1);
            assert!(translated.problems.is_empty(), "{:?}", translated.problems);
        }
    }

    #[test]
    fn a_missing_service_is_reported_and_a_resource_backend_unsupported() {
        let translated = translate_in(
            &store(),
            &ingress(json!({"rules": [{"http": {"paths": [
                path("Prefix", "/ghost", "ghost"),
                {"path": "/bucket", "pathType": "Prefix", "backend": {"resource":
                    {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "assets"}}},
            ]}}]})),
        );
        assert_eq!(
            translated.routes[0].rules.len(),
            1,
            "the ghost is answered 503"
        );
        assert_eq!(
            translated.problems,
            [
                "spec.rules[0].http.paths[0].backend: Service web/ghost not found",
                "spec.rules[0].http.paths[1].backend.resource: StorageBucket assets is not \
                 supported (only service backends are)"
            ]
        );
    }

    #[test]
    fn tls_hosts_default_to_the_rules_hosts_and_a_missing_secret_is_reported() {
        let mut store = store();
        store.apply(
            fixtures::tls_secret(
                "web",
                "shop-tls",
                fixtures::SHOP_CERT_PEM,
                fixtures::SHOP_KEY_PEM,
            ),
            weir_contract::Origin::Cluster,
        );
        let translated = translate_in(
            &store,
            &ingress(json!({
                "tls": [{"secretName": "shop-tls"},
                        {"hosts": ["API.example.com"], "secretName": "api-tls"}],
                "rules": [{"host": "shop.example.com",
                           "http": {"paths": [path("Prefix", "/", "echo")]}}]
            })),
        );
        assert_eq!(translated.certificates.len(), 1);
        assert_eq!(translated.certificates[0].hosts, ["shop.example.com"]);
        assert_eq!(translated.problems.len(), 1);
        assert!(
            translated.problems[0]
                .starts_with("spec.tls[1].secretName: Secret web/api-tls not found"),
            "{:?}",
            translated.problems
        );
    }

    #[test]
    fn an_ingress_is_weirs_by_class_name_legacy_annotation_or_default_class() {
        let weir = class("weir", CONTROLLER, false);
        let weir_default = class("weir-default", CONTROLLER, true);
        let nginx_default = class("nginx", "k8s.io/ingress-nginx", true);
        let named = |name: &str| ingress(json!({"ingressClassName": name}));
        let legacy = ingress_with(
            json!({"name": "shop", "annotations": {LEGACY_CLASS_ANNOTATION: "weir"}}),
            json!({}),
        );
        let unnamed = ingress(json!({}));

        assert!(is_weirs(&named("weir"), [&weir]));
        assert!(!is_weirs(&named("nginx"), [&weir, &nginx_default]));
        assert!(!is_weirs(&named("missing"), [&weir]));
        assert!(is_weirs(&legacy, [&weir]));
        assert!(!is_weirs(&unnamed, [&weir]), "no default class");
        assert!(is_weirs(&unnamed, [&weir_default]));
        assert!(!is_weirs(&unnamed, [&weir, &nginx_default]));
    }

    #[test]
    fn the_class_name_field_wins_over_the_legacy_annotation() {
        let ingress = ingress_with(
            json!({"name": "shop", "annotations": {LEGACY_CLASS_ANNOTATION: "weir"}}),
            json!({"ingressClassName": "nginx"}),
        );
        let (weir, nginx) = (
            class("weir", CONTROLLER, false),
            class("nginx", "k8s.io/ingress-nginx", false),
        );
        assert!(!is_weirs(&ingress, [&weir, &nginx]));
    }

    #[test]
    fn decoded_from_a_manifest_it_is_an_object_of_its_kind() {
        let object = Object::decode(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop"},
            "spec": {"rules": [{"http": {"paths": [path("Prefix", "/", "echo")]}}]}
        }))
        .unwrap();
        assert!(matches!(object, Object::Ingress(_)));
    }
}
