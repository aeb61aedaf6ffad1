//! Gateway API (`gateway.networking.k8s.io`, standard channel) into contract listeners and
//! routes, with the verdicts Gateway API's status needs.
//!
//! Unlike a Route, an HTTPRoute means nothing alone: what it serves depends on the Gateways it
//! names, their listeners' ports, hostnames and `allowedRoutes`, the namespaces' labels and the
//! ReferenceGrants in force. So the Gateway API objects are translated together, in one pass,
//! whenever any of them (or anything they looked up) changes.
//!
//! **Classes.** Weir implements the GatewayClasses whose `controllerName` is
//! [`CONTROLLER_NAME`], and publishes [`SUPPORTED_FEATURES`] on them.
//!
//! **Gateways.** Each Gateway of such a class gets an address: with an address pool
//! (`--gateway-addresses`), its own one, so that Gateways listening on the same port are
//! isolated from each other; without one, every Gateway listens on all local addresses and
//! reports the published address. An address is chosen by a hash of the Gateway's name and
//! kept by probing in creation order, so every replica computes the same one and a Gateway
//! keeps its address while it exists. Each listener is judged (`Accepted`, `ResolvedRefs`,
//! `Programmed`, `Conflicted`, with the spec's reasons); a programmed listener becomes a
//! contract [`Listener`], its certificate read from a Secret (in another namespace only with a
//! ReferenceGrant).
//!
//! **HTTPRoutes**, oldest first (Gateway API's tie-break), attach to the listeners their
//! `parentRefs` select (`sectionName`, `port`) that allow them (namespace, kind) and whose
//! hostnames intersect theirs. An HTTPRoute becomes one contract route per socket it is served
//! on, with the hosts its listeners there allow. Backends that are not Services, are in
//! another namespace without a ReferenceGrant, or do not exist are [`Backend::Invalid`]: their
//! share of the requests is answered 500, as the spec says.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    hash::{Hash, Hasher},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_contract::{
    Backend, BodyTimeout, Condition, GatewayApiReports, GatewayClassReport, GatewayListenerReport,
    GatewayReport, HttpRouteReport, Listener, ListenerProtocol, NamespacedName, Origin, ParentRef,
    ResolvedRefsReason, Route, RouteId, RouteParentReport, Rule, RuleBackend, RulePolicy,
    ServiceBackend, Timeouts, TlsCertificate, Unresolved,
};
use weir_crds::{
    MirrorBackend, RouteFilter, RouteRule, ServiceRef,
    gateway_api::{
        BackendObjectReference, GROUP, Gateway, GatewayClass, HTTPRoute, HTTPRouteFilter,
        HTTPRouteRule, Listener as GatewayListener, ReferenceGrant,
    },
    parse_timeout, validate_rule_matches_and_filters,
};

use super::{RefProblem, aimodel::label_selector, policy, route::rule_matches};
use crate::{
    kinds::{Kind, Object, ObjectKey},
    resolve::{Certificates, Lookup},
    store::Store,
};

/// The `controllerName` of the GatewayClasses Weir implements.
pub const CONTROLLER_NAME: &str = "weir.dev/gateway-controller";

/// The Gateway API features Weir implements, by their conformance-suite names, sorted:
/// published on every Weir GatewayClass, and what the conformance run is asked to test.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "Gateway",
    "GatewayPort8080",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ReferenceGrant",
];

const GATEWAY_KIND: &str = "Gateway";
const HTTP_ROUTE_KIND: &str = "HTTPRoute";

/// Where Gateways get their addresses.
#[derive(Debug, Clone, Default)]
pub struct GatewayAddresses {
    /// One address per Gateway from this network (`--gateway-addresses`).
    pub pool: Option<ipnet::IpNet>,
    /// Without a pool: the address every Gateway reports (`--publish-address`), as
    /// `(type, value)`.
    pub published: Option<(&'static str, String)>,
}

/// What the Gateway API objects translate into.
#[derive(Debug, Default)]
pub struct Translation {
    pub listeners: Vec<Listener>,
    /// Oldest HTTPRoute first.
    pub routes: Vec<Arc<Route>>,
    pub reports: GatewayApiReports,
    /// Every object looked up, so a change to one translates again (a change to any Gateway
    /// API object, ReferenceGrants and Namespaces included, does by its kind).
    pub references: BTreeSet<ObjectKey>,
}

/// Translates every Gateway API object in `store`.
pub fn translate(
    store: &Store,
    certificates: &mut Certificates,
    addresses: &GatewayAddresses,
) -> Translation {
    let mut lookup = Lookup::new(store, certificates);
    let objects = Objects::read(store);
    let mut translation = Translation::default();

    let classes: HashSet<&str> = objects
        .classes
        .iter()
        .filter(|(class, _)| class.spec.controller_name == CONTROLLER_NAME)
        .map(|(class, origin)| {
            translation
                .reports
                .classes
                .push(Arc::new(class_report(class, origin)));
            class.metadata.name.as_deref().unwrap_or_default()
        })
        .collect();

    let mut gateways: Vec<JudgedGateway<'_>> = Vec::new();
    let mut taken: HashSet<IpAddr> = HashSet::new();
    for (id, gateway, origin) in &objects.gateways {
        if !classes.contains(gateway.spec.gateway_class_name.as_str()) {
            continue;
        }
        let address = assign_address(id, addresses, &mut taken);
        let mut judged = judge_gateway(id, gateway, origin, address, &objects, &mut lookup);
        if addresses.pool.is_none() {
            judged.reported_address = addresses.published.clone();
        }
        gateways.push(judged);
    }
    mark_conflicts(&mut gateways);

    let mut route_reports = Vec::new();
    for (id, route, origin) in &objects.http_routes {
        let Some(attached) = attach_route(id, route, &mut gateways, &objects) else {
            continue;
        };
        let (served, problem) = translate_rules(id, route, &objects, &mut lookup);
        let mut parents = Vec::new();
        for parent in attached.parents {
            let mut conditions = Vec::new();
            match (&parent.refusal, &served) {
                (Some((reason, message)), _) => {
                    conditions.push(Condition::new("Accepted", false, reason, message.clone()))
                }
                (None, Err(message)) => conditions.push(Condition::new(
                    "Accepted",
                    false,
                    "UnsupportedValue",
                    message.clone(),
                )),
                (None, Ok(_)) => conditions.push(Condition::new("Accepted", true, "Accepted", "")),
            }
            conditions.push(match &problem {
                None => Condition::new("ResolvedRefs", true, "ResolvedRefs", ""),
                Some((reason, message)) => {
                    Condition::new("ResolvedRefs", false, reason, message.clone())
                }
            });
            parents.push(RouteParentReport {
                parent: parent.reference,
                conditions,
            });
        }
        route_reports.push(Arc::new(HttpRouteReport {
            id: (*id).clone(),
            origin: (*origin).clone(),
            generation: route.metadata.generation,
            parents,
        }));
        let Ok(rules) = served else { continue };
        // One contract route per socket, with the hosts its listeners there allow.
        let mut by_socket: BTreeMap<SocketAddr, (Vec<Arc<str>>, Hosts)> = BTreeMap::new();
        for (g, l, hosts) in attached.listeners {
            let listener = &gateways[g].listeners[l];
            let Some(socket) = listener.socket else {
                continue;
            };
            let entry = by_socket
                .entry(socket)
                .or_insert_with(|| (Vec::new(), Hosts::Some(Vec::new())));
            entry.0.push(listener.name.clone());
            entry.1.extend(hosts);
        }
        for (socket, (listeners, hosts)) in by_socket {
            translation.routes.push(Arc::new(Route {
                id: RouteId::http_route((*id).clone(), &socket.to_string()),
                hosts: hosts.into_list(),
                rules: rules.iter().map(|rule| rule.build()).collect(),
                listeners,
            }));
        }
    }

    for gateway in gateways {
        translation.listeners.extend(
            gateway
                .listeners
                .iter()
                .filter_map(|listener| listener.contract()),
        );
        translation
            .reports
            .gateways
            .push(Arc::new(gateway.report()));
    }
    translation.reports.http_routes = route_reports;
    translation.references = lookup.into_references();
    translation
}

/// The Gateway API objects of the store, in the orders translation needs.
struct Objects<'a> {
    classes: Vec<(&'a GatewayClass, &'a Origin)>,
    /// Oldest first, then by `namespace/name`.
    gateways: Vec<(&'a NamespacedName, &'a Gateway, &'a Origin)>,
    /// Oldest first, then by `namespace/name`: Gateway API's precedence tie-break.
    http_routes: Vec<(&'a NamespacedName, &'a HTTPRoute, &'a Origin)>,
    grants: Vec<(&'a NamespacedName, &'a ReferenceGrant)>,
    namespace_labels: HashMap<&'a str, BTreeMap<String, String>>,
}

impl<'a> Objects<'a> {
    fn read(store: &'a Store) -> Self {
        let mut objects = Objects {
            classes: Vec::new(),
            gateways: Vec::new(),
            http_routes: Vec::new(),
            grants: Vec::new(),
            namespace_labels: HashMap::new(),
        };
        for kind in [
            Kind::GatewayClass,
            Kind::Gateway,
            Kind::HTTPRoute,
            Kind::ReferenceGrant,
            Kind::Namespace,
        ] {
            for (key, stored) in store.of_kind(kind) {
                match &stored.object {
                    Object::GatewayClass(class) => objects.classes.push((class, &stored.origin)),
                    Object::Gateway(gateway) => {
                        objects.gateways.push((&key.id, gateway, &stored.origin))
                    }
                    Object::HTTPRoute(route) => {
                        objects.http_routes.push((&key.id, route, &stored.origin))
                    }
                    Object::ReferenceGrant(grant) => objects.grants.push((&key.id, grant)),
                    Object::Namespace(namespace) => {
                        objects.namespace_labels.insert(
                            key.id.name.as_str(),
                            namespace.metadata.labels.clone().unwrap_or_default(),
                        );
                    }
                    _ => {}
                }
            }
        }
        objects.gateways.sort_by(|a, b| {
            (a.1.metadata.creation_timestamp.as_ref(), a.0)
                .cmp(&(b.1.metadata.creation_timestamp.as_ref(), b.0))
        });
        objects.http_routes.sort_by(|a, b| {
            (a.1.metadata.creation_timestamp.as_ref(), a.0)
                .cmp(&(b.1.metadata.creation_timestamp.as_ref(), b.0))
        });
        objects
    }

    /// The labels of namespace `name`; a namespace Weir has not seen has none. A manifest
    /// directory has no Namespace objects unless written: its namespaces carry only the
    /// `kubernetes.io/metadata.name` label the API server would give them.
    fn labels_of(&self, name: &str) -> BTreeMap<String, String> {
        self.namespace_labels.get(name).cloned().unwrap_or_else(|| {
            BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), name.to_owned())])
        })
    }

    /// Whether a ReferenceGrant in `to_namespace` lets a `from_kind` in `from_namespace` refer
    /// to the `to_group`/`to_kind` object `to_name` there.
    fn granted(
        &self,
        from_kind: &str,
        from_namespace: &str,
        to_group: &str,
        to_kind: &str,
        to_namespace: &str,
        to_name: &str,
    ) -> bool {
        self.grants
            .iter()
            .filter(|(id, _)| id.namespace == to_namespace)
            .any(|(_, grant)| {
                grant.spec.from.iter().any(|from| {
                    from.group == GROUP
                        && from.kind == from_kind
                        && from.namespace == from_namespace
                }) && grant.spec.to.iter().any(|to| {
                    to.group == to_group
                        && to.kind == to_kind
                        && to.name.as_deref().is_none_or(|name| name == to_name)
                })
            })
    }
}

fn class_report(class: &GatewayClass, origin: &Origin) -> GatewayClassReport {
    GatewayClassReport {
        name: class.metadata.name.clone().unwrap_or_default(),
        origin: origin.clone(),
        generation: class.metadata.generation,
        conditions: vec![Condition::new(
            "Accepted",
            true,
            "Accepted",
            "Weir implements this class",
        )],
        supported_features: SUPPORTED_FEATURES.to_vec(),
    }
}

/// Picks the Gateway's address: its own from the pool, or all local addresses without one.
/// `None` when the pool has none left.
fn assign_address(
    id: &NamespacedName,
    addresses: &GatewayAddresses,
    taken: &mut HashSet<IpAddr>,
) -> Option<IpAddr> {
    let Some(pool) = addresses.pool else {
        return Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    };
    let hosts: Vec<IpAddr> = match pool {
        // A /32 or /31 has no network address to skip.
        ipnet::IpNet::V4(net) if net.prefix_len() >= 31 => net.hosts().map(IpAddr::V4).collect(),
        net => net.hosts().collect(),
    };
    if hosts.is_empty() {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    let start = (hasher.finish() % hosts.len() as u64) as usize;
    let chosen = (0..hosts.len())
        .map(|i| hosts[(start + i) % hosts.len()])
        .find(|ip| !taken.contains(ip))?;
    taken.insert(chosen);
    Some(chosen)
}

/// A Gateway with its listeners judged.
struct JudgedGateway<'a> {
    id: &'a NamespacedName,
    gateway: &'a Gateway,
    origin: &'a Origin,
    address: Option<IpAddr>,
    reported_address: Option<(&'static str, String)>,
    listeners: Vec<JudgedListener<'a>>,
}

/// One listener and what Weir made of it.
struct JudgedListener<'a> {
    spec: &'a GatewayListener,
    /// `gateway:namespace/name#listener`.
    name: Arc<str>,
    protocol: Option<ListenerProtocol>,
    /// Why it is not accepted: `(reason, message)`.
    refused: Option<(&'static str, String)>,
    /// Why its references do not resolve.
    unresolved: Option<(&'static str, String)>,
    /// Why it conflicts with another listener on its port.
    conflict: Option<(&'static str, String)>,
    /// Whether it accepts HTTPRoutes.
    allows_http_routes: bool,
    supported_kinds: Vec<(&'static str, &'static str)>,
    certificates: Vec<Arc<TlsCertificate>>,
    /// Where it is served, once programmed.
    socket: Option<SocketAddr>,
    attached_routes: u32,
}

impl JudgedListener<'_> {
    fn hostname(&self) -> Option<String> {
        self.spec.hostname.as_ref().map(|h| h.to_ascii_lowercase())
    }

    fn contract(&self) -> Option<Listener> {
        Some(Listener {
            name: self.name.clone(),
            address: self.socket?,
            protocol: self.protocol?,
            hostname: self.hostname(),
            certificates: self.certificates.clone(),
        })
    }

    fn accepted(&self) -> bool {
        self.refused.is_none()
    }
}

fn judge_gateway<'a>(
    id: &'a NamespacedName,
    gateway: &'a Gateway,
    origin: &'a Origin,
    address: Option<IpAddr>,
    objects: &Objects<'_>,
    lookup: &mut Lookup<'_>,
) -> JudgedGateway<'a> {
    let listeners = gateway
        .spec
        .listeners
        .iter()
        .enumerate()
        .map(|(i, spec)| judge_listener(id, i, spec, objects, lookup))
        .collect();
    JudgedGateway {
        id,
        gateway,
        origin,
        address,
        reported_address: None,
        listeners,
    }
}

fn judge_listener<'a>(
    gateway: &NamespacedName,
    index: usize,
    spec: &'a GatewayListener,
    objects: &Objects<'_>,
    lookup: &mut Lookup<'_>,
) -> JudgedListener<'a> {
    let at = format!("spec.listeners[{index}]");
    let mut listener = JudgedListener {
        spec,
        name: format!("gateway:{gateway}#{}", spec.name).into(),
        protocol: None,
        refused: None,
        unresolved: None,
        conflict: None,
        allows_http_routes: false,
        supported_kinds: Vec::new(),
        certificates: Vec::new(),
        socket: None,
        attached_routes: 0,
    };
    listener.protocol = match spec.protocol.as_str() {
        "HTTP" => Some(ListenerProtocol::Http),
        "HTTPS" => Some(ListenerProtocol::Https),
        other => {
            listener.refused = Some((
                "UnsupportedProtocol",
                format!("{at}.protocol: Weir serves HTTP and HTTPS listeners, not {other}"),
            ));
            return listener;
        }
    };
    if !(1..=65535).contains(&spec.port) {
        listener.refused = Some(("PortUnavailable", format!("{at}.port: not a port")));
        return listener;
    }

    // Route kinds: HTTPRoute is the one Weir attaches to HTTP and HTTPS listeners.
    let kinds = spec
        .allowed_routes
        .as_ref()
        .map(|allowed| allowed.kinds.as_slice())
        .unwrap_or_default();
    if kinds.is_empty() {
        listener.allows_http_routes = true;
    } else {
        let mut invalid = Vec::new();
        for kind in kinds {
            let group = kind.group.as_deref().unwrap_or(GROUP);
            if group == GROUP && kind.kind == HTTP_ROUTE_KIND {
                listener.allows_http_routes = true;
            } else {
                invalid.push(format!("{group}/{}", kind.kind));
            }
        }
        if !invalid.is_empty() {
            listener.unresolved = Some((
                "InvalidRouteKinds",
                format!(
                    "{at}.allowedRoutes.kinds: Weir attaches only {GROUP}/HTTPRoute here, not {}",
                    invalid.join(", ")
                ),
            ));
        }
    }
    if listener.allows_http_routes {
        listener.supported_kinds.push((GROUP, HTTP_ROUTE_KIND));
    }

    if listener.protocol == Some(ListenerProtocol::Https) {
        let tls = spec.tls.as_ref();
        if tls
            .and_then(|tls| tls.mode.as_deref())
            .unwrap_or("Terminate")
            != "Terminate"
        {
            listener.refused = Some((
                "UnsupportedProtocol",
                format!("{at}.tls.mode: Weir terminates TLS on HTTPS listeners (mode Terminate)"),
            ));
            return listener;
        }
        let refs = tls
            .map(|tls| tls.certificate_refs.as_slice())
            .unwrap_or_default();
        if refs.is_empty() {
            listener.unresolved = Some((
                "InvalidCertificateRef",
                format!("{at}.tls.certificateRefs: an HTTPS listener needs a certificate"),
            ));
        }
        let hosts: Vec<String> = spec
            .hostname
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for (c, reference) in refs.iter().enumerate() {
            let at = format!("{at}.tls.certificateRefs[{c}]");
            let group = reference.group.as_deref().unwrap_or("");
            let kind = reference.kind.as_deref().unwrap_or("Secret");
            if !group.is_empty() || kind != "Secret" {
                listener.unresolved = Some((
                    "InvalidCertificateRef",
                    format!("{at}: Weir reads certificates from Secrets, not {group}/{kind}"),
                ));
                continue;
            }
            let namespace = reference
                .namespace
                .clone()
                .unwrap_or_else(|| gateway.namespace.clone());
            if namespace != gateway.namespace
                && !objects.granted(
                    GATEWAY_KIND,
                    &gateway.namespace,
                    "",
                    "Secret",
                    &namespace,
                    &reference.name,
                )
            {
                listener.unresolved = Some((
                    "RefNotPermitted",
                    format!(
                        "{at}: Secret {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                        reference.name
                    ),
                ));
                continue;
            }
            let secret = NamespacedName::new(namespace, reference.name.clone());
            let (served, problem) = lookup.tls_certificate(&secret);
            if let Some(problem) = problem {
                listener.unresolved = Some((
                    "InvalidCertificateRef",
                    format!("{at}: Secret {secret} {problem}"),
                ));
                continue;
            }
            if let Some(pair) = served {
                listener.certificates.push(Arc::new(TlsCertificate {
                    source: secret,
                    hosts: hosts.clone(),
                    chain_pem: pair.chain_pem,
                    key_pem: pair.key_pem,
                }));
            }
        }
    }
    listener
}

/// Marks listeners that cannot share their port: on one socket, every listener must speak the
/// same protocol and no two may claim the same hostname. The oldest Gateway's listener (then
/// the first in its spec) keeps the port.
fn mark_conflicts(gateways: &mut [JudgedGateway<'_>]) {
    let mut claimed: HashMap<SocketAddr, (ListenerProtocol, HashSet<Option<String>>)> =
        HashMap::new();
    for gateway in gateways.iter_mut() {
        let Some(ip) = gateway.address else {
            continue;
        };
        for listener in &mut gateway.listeners {
            let (Some(protocol), true) = (listener.protocol, listener.accepted()) else {
                continue;
            };
            let socket = SocketAddr::new(ip, listener.spec.port as u16);
            let hostname = listener.hostname();
            let (claimed_protocol, hostnames) = claimed
                .entry(socket)
                .or_insert_with(|| (protocol, HashSet::new()));
            if *claimed_protocol != protocol {
                listener.conflict = Some((
                    "ProtocolConflict",
                    format!(
                        "port {} is already served with another protocol",
                        listener.spec.port
                    ),
                ));
            } else if !hostnames.insert(hostname) {
                listener.conflict = Some((
                    "HostnameConflict",
                    format!(
                        "another listener on port {} has the same hostname",
                        listener.spec.port
                    ),
                ));
            } else {
                let usable = match protocol {
                    ListenerProtocol::Http => listener.allows_http_routes,
                    // Served with whatever certificates resolved; none resolved: not served.
                    ListenerProtocol::Https => {
                        listener.allows_http_routes && !listener.certificates.is_empty()
                    }
                };
                if usable {
                    listener.socket = Some(socket);
                }
            }
        }
    }
}

impl JudgedGateway<'_> {
    fn report(&self) -> GatewayReport {
        let any_accepted = self.listeners.iter().any(|l| l.accepted());
        let all_accepted = self.listeners.iter().all(|l| l.accepted());
        let any_programmed = self.listeners.iter().any(|l| l.socket.is_some());
        let mut conditions = Vec::new();
        conditions.push(if all_accepted {
            Condition::new("Accepted", true, "Accepted", "")
        } else {
            Condition::new(
                "Accepted",
                any_accepted,
                "ListenersNotValid",
                "one or more listeners are not accepted; see their conditions",
            )
        });
        conditions.push(match (self.address, any_programmed) {
            (None, _) => Condition::new(
                "Programmed",
                false,
                "AddressNotAssigned",
                "every address of --gateway-addresses is taken",
            ),
            (Some(_), false) => Condition::new(
                "Programmed",
                false,
                "Invalid",
                "no listener can be served; see their conditions",
            ),
            (Some(_), true) => Condition::new("Programmed", true, "Programmed", ""),
        });
        let listeners = self
            .listeners
            .iter()
            .map(|listener| {
                let mut conditions = Vec::new();
                conditions.push(match &listener.refused {
                    None => Condition::new("Accepted", true, "Accepted", ""),
                    Some((reason, message)) => {
                        Condition::new("Accepted", false, reason, message.clone())
                    }
                });
                conditions.push(match &listener.unresolved {
                    None => Condition::new("ResolvedRefs", true, "ResolvedRefs", ""),
                    Some((reason, message)) => {
                        Condition::new("ResolvedRefs", false, reason, message.clone())
                    }
                });
                conditions.push(match &listener.conflict {
                    None => Condition::new("Conflicted", false, "NoConflicts", ""),
                    Some((reason, message)) => {
                        Condition::new("Conflicted", true, reason, message.clone())
                    }
                });
                conditions.push(match (listener.socket, self.address) {
                    (Some(_), _) => Condition::new("Programmed", true, "Programmed", ""),
                    (None, None) => {
                        Condition::new("Programmed", false, "Pending", "the Gateway has no address")
                    }
                    (None, Some(_)) => Condition::new(
                        "Programmed",
                        false,
                        "Invalid",
                        "not served; see the other conditions",
                    ),
                });
                GatewayListenerReport {
                    name: listener.spec.name.clone(),
                    supported_kinds: listener.supported_kinds.clone(),
                    attached_routes: listener.attached_routes,
                    conditions,
                }
            })
            .collect();
        let addresses = match (self.address, &self.reported_address) {
            (_, Some(published)) => vec![published.clone()],
            (Some(ip), None) if !ip.is_unspecified() => vec![("IPAddress", ip.to_string())],
            _ => Vec::new(),
        };
        GatewayReport {
            id: self.id.clone(),
            origin: self.origin.clone(),
            generation: self.gateway.metadata.generation,
            addresses,
            conditions,
            listeners,
        }
    }
}

/// An HTTPRoute's parents of Weir's classes, and the listeners it attached to.
struct Attached {
    parents: Vec<AttachedParent>,
    /// `(gateway index, listener index, hosts there)`.
    listeners: Vec<(usize, usize, Hosts)>,
}

struct AttachedParent {
    reference: ParentRef,
    /// Why the parent refused the route: `(reason, message)`.
    refusal: Option<(&'static str, String)>,
}

/// Attaches the route to the listeners of the Weir Gateways its parentRefs select, counting it
/// on each. `None` when it names no Weir Gateway (its status is another controller's).
fn attach_route(
    id: &NamespacedName,
    route: &HTTPRoute,
    gateways: &mut [JudgedGateway<'_>],
    objects: &Objects<'_>,
) -> Option<Attached> {
    let route_labels = objects.labels_of(&id.namespace);
    let mut attached = Attached {
        parents: Vec::new(),
        listeners: Vec::new(),
    };
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    for reference in &route.spec.parent_refs {
        if reference.group.as_deref().unwrap_or(GROUP) != GROUP
            || reference.kind.as_deref().unwrap_or(GATEWAY_KIND) != GATEWAY_KIND
        {
            continue;
        }
        let namespace = reference.namespace.as_deref().unwrap_or(&id.namespace);
        let Some(g) = gateways
            .iter()
            .position(|gw| gw.id.namespace == namespace && gw.id.name == reference.name)
        else {
            continue;
        };
        let gateway = &mut gateways[g];
        let mut selected = false;
        let mut allowed = false;
        let mut hostnames_match = false;
        for (l, listener) in gateway.listeners.iter_mut().enumerate() {
            if reference
                .section_name
                .as_ref()
                .is_some_and(|section| *section != listener.spec.name)
                || reference
                    .port
                    .is_some_and(|port| port != listener.spec.port)
            {
                continue;
            }
            selected = true;
            if !listener.accepted()
                || !listener.allows_http_routes
                || !namespace_allowed(
                    listener.spec,
                    &gateway.id.namespace,
                    &id.namespace,
                    &route_labels,
                )
            {
                continue;
            }
            allowed = true;
            let hosts = intersect(listener.hostname().as_deref(), &route.spec.hostnames);
            if hosts.is_empty() {
                continue;
            }
            hostnames_match = true;
            if seen.insert((g, l)) {
                listener.attached_routes += 1;
                attached.listeners.push((g, l, hosts));
            }
        }
        let refusal = if !selected {
            Some((
                "NoMatchingParent",
                "no listener of the Gateway has the sectionName and port given".to_owned(),
            ))
        } else if !allowed {
            Some((
                "NotAllowedByListeners",
                "no listener of the Gateway allows HTTPRoutes from this namespace".to_owned(),
            ))
        } else if !hostnames_match {
            Some((
                "NoMatchingListenerHostname",
                "no listener's hostname intersects the route's hostnames".to_owned(),
            ))
        } else {
            None
        };
        attached.parents.push(AttachedParent {
            reference: ParentRef {
                group: reference.group.clone(),
                kind: reference.kind.clone(),
                namespace: reference.namespace.clone(),
                name: reference.name.clone(),
                section_name: reference.section_name.clone(),
                port: reference.port,
            },
            refusal,
        });
    }
    (!attached.parents.is_empty()).then_some(attached)
}

/// Whether the listener admits routes from `route_namespace`.
fn namespace_allowed(
    listener: &GatewayListener,
    gateway_namespace: &str,
    route_namespace: &str,
    route_labels: &BTreeMap<String, String>,
) -> bool {
    let namespaces = listener
        .allowed_routes
        .as_ref()
        .and_then(|allowed| allowed.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => namespaces
            .and_then(|n| n.selector.as_ref())
            .and_then(|selector| label_selector(selector).ok())
            .is_some_and(|selector| selector.matches(route_labels)),
        _ => gateway_namespace == route_namespace,
    }
}

/// The hosts a route is served for on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    Any,
    Some(Vec<String>),
}

impl Hosts {
    fn is_empty(&self) -> bool {
        matches!(self, Hosts::Some(hosts) if hosts.is_empty())
    }

    fn extend(&mut self, other: Hosts) {
        match (&mut *self, other) {
            (Hosts::Any, _) => {}
            (_, Hosts::Any) => *self = Hosts::Any,
            (Hosts::Some(mine), Hosts::Some(theirs)) => {
                for host in theirs {
                    if !mine.contains(&host) {
                        mine.push(host);
                    }
                }
            }
        }
    }

    /// The contract's form: empty for every host.
    fn into_list(self) -> Vec<String> {
        match self {
            Hosts::Any => Vec::new(),
            Hosts::Some(hosts) => hosts,
        }
    }
}

/// The hostnames both a listener (`None`: any) and a route (empty: any) allow: where one is a
/// wildcard the other falls under, the narrower one.
///
/// ```text
/// listener *.example.com, route foo.example.com      → foo.example.com
/// listener foo.example.com, route *.example.com      → foo.example.com
/// listener *.example.com, route *.foo.example.com    → *.foo.example.com
/// listener bar.com, route foo.com                    → none
/// ```
fn intersect(listener: Option<&str>, route: &[String]) -> Hosts {
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    match (listener, route.is_empty()) {
        (None, true) => Hosts::Any,
        (None, false) => Hosts::Some(route),
        (Some(listener), true) => Hosts::Some(vec![listener.to_owned()]),
        (Some(listener), false) => {
            let mut hosts = Vec::new();
            for host in &route {
                let narrower = if host == listener || covers(listener, host) {
                    Some(host.as_str())
                } else if covers(host, listener) {
                    Some(listener)
                } else {
                    None
                };
                if let Some(narrower) = narrower
                    && !hosts.iter().any(|h: &String| h == narrower)
                {
                    hosts.push(narrower.to_owned());
                }
            }
            Hosts::Some(hosts)
        }
    }
}

/// Whether wildcard `pattern` (`*.example.com`) covers `host` (a name or a narrower wildcard
/// with at least one more label).
fn covers(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let host = host.strip_prefix('*').map_or(host, |rest| rest);
    host.len() > suffix.len() && host.ends_with(suffix)
}

/// A rule ready to be built once per socket the route is served on.
struct ReadyRule {
    matches: Vec<weir_contract::RouteMatch>,
    filters: Vec<weir_contract::Filter>,
    backends: Vec<ReadyBackend>,
    timeouts: Timeouts,
}

struct ReadyBackend {
    weight: u32,
    filters: Vec<weir_contract::Filter>,
    backend: ReadyTarget,
}

enum ReadyTarget {
    Service {
        service: NamespacedName,
        protocol: weir_contract::Protocol,
        endpoints: Vec<weir_contract::Endpoint>,
    },
    Invalid(Arc<str>),
}

impl ReadyRule {
    fn build(&self) -> Rule {
        Rule {
            matches: self.matches.clone(),
            filters: self.filters.clone(),
            backends: self
                .backends
                .iter()
                .map(|backend| RuleBackend {
                    weight: backend.weight,
                    filters: backend.filters.clone(),
                    backend: match &backend.backend {
                        ReadyTarget::Service {
                            service,
                            protocol,
                            endpoints,
                        } => Backend::Service(ServiceBackend {
                            service: service.clone(),
                            protocol: *protocol,
                            tls: None,
                            endpoints: endpoints.clone(),
                            unresolved: None,
                        }),
                        ReadyTarget::Invalid(message) => Backend::Invalid(message.clone()),
                    },
                })
                .collect(),
            policy: RulePolicy {
                timeouts: self.timeouts,
                ..RulePolicy::default()
            },
        }
    }
}

/// The route's rules, or why they cannot be served (`Accepted` False, `UnsupportedValue`);
/// and the first reference that did not resolve (`ResolvedRefs` False), as `(reason, message)`.
#[allow(clippy::type_complexity)]
fn translate_rules(
    id: &NamespacedName,
    route: &HTTPRoute,
    objects: &Objects<'_>,
    lookup: &mut Lookup<'_>,
) -> (
    Result<Vec<ReadyRule>, String>,
    Option<(&'static str, String)>,
) {
    let mut first_problem: Option<(&'static str, String)> = None;
    let mut rules = Vec::with_capacity(route.spec.rules.len());
    let mut invalid = Vec::new();
    for (r, rule) in route.spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{r}]");
        match translate_rule(id, rule, &at, objects, lookup, &mut first_problem) {
            Ok(rule) => rules.push(rule),
            Err(message) => invalid.push(message),
        }
    }
    if invalid.is_empty() {
        (Ok(rules), first_problem)
    } else {
        (Err(invalid.join("; ")), first_problem)
    }
}

fn translate_rule(
    id: &NamespacedName,
    rule: &HTTPRouteRule,
    at: &str,
    objects: &Objects<'_>,
    lookup: &mut Lookup<'_>,
    first_problem: &mut Option<(&'static str, String)>,
) -> Result<ReadyRule, String> {
    let filters = weir_filters(&rule.filters, &id.namespace, &format!("{at}.filters"))?;
    let checked = RouteRule {
        matches: rule.matches.clone(),
        filters: filters.clone(),
        ..RouteRule::default()
    };
    validate_rule_matches_and_filters(&checked, at).map_err(|invalid| invalid.to_string())?;
    let matches = rule_matches(&rule.matches, at).map_err(|rejected| rejected.message)?;
    let mut problems: Vec<RefProblem> = Vec::new();
    let contract_filters = policy::filters(
        id,
        &filters,
        &format!("{at}.filters"),
        lookup,
        &mut problems,
    );
    let mut backends = Vec::with_capacity(rule.backend_refs.len());
    for (b, backend) in rule.backend_refs.iter().enumerate() {
        let at = format!("{at}.backendRefs[{b}]");
        let backend_filters =
            weir_filters(&backend.filters, &id.namespace, &format!("{at}.filters"))?;
        let filters = policy::filters(
            id,
            &backend_filters,
            &format!("{at}.filters"),
            lookup,
            &mut problems,
        );
        let target = match resolve_backend(id, &backend.backend, &at, objects, lookup) {
            Ok(target) => target,
            Err((reason, message)) => {
                if first_problem.is_none() {
                    *first_problem = Some((reason, message.clone()));
                }
                ReadyTarget::Invalid(message.into())
            }
        };
        backends.push(ReadyBackend {
            weight: u32::try_from(backend.weight).unwrap_or(0),
            filters,
            backend: target,
        });
    }
    for problem in problems {
        if first_problem.is_none() {
            // Gateway API has one reason for a Service or port that is not there.
            let reason = match problem.reason {
                ResolvedRefsReason::PortNotFound => "BackendNotFound",
                reason => reason.as_str(),
            };
            *first_problem = Some((reason, problem.message));
        }
    }
    let answers_itself = filters
        .iter()
        .any(|filter| filter.kind == "RequestRedirect");
    if !answers_itself && backends.iter().all(|backend| backend.weight == 0) {
        // Nothing to send to: the spec answers 500.
        backends = vec![ReadyBackend {
            weight: 1,
            filters: Vec::new(),
            backend: ReadyTarget::Invalid(format!("{at}: no backendRefs with weight").into()),
        }];
    }
    let timeouts = rule.timeouts.as_ref();
    let timeout = |text: Option<&String>| text.and_then(|t| parse_timeout(t).ok().flatten());
    Ok(ReadyRule {
        matches,
        filters: contract_filters,
        backends,
        timeouts: Timeouts {
            request: timeout(timeouts.and_then(|t| t.request.as_ref())),
            backend_request: timeout(timeouts.and_then(|t| t.backend_request.as_ref())),
            request_body: BodyTimeout::GatewayDefault,
        },
    })
}

/// HTTPRoute filters in the shape of Weir's Route's, which the same code validates and
/// translates. A filter Weir does not implement makes the rule unservable.
fn weir_filters(
    filters: &[HTTPRouteFilter],
    route_namespace: &str,
    at: &str,
) -> Result<Vec<RouteFilter>, String> {
    filters
        .iter()
        .enumerate()
        .map(|(f, filter)| {
            let mut converted = RouteFilter {
                kind: filter.kind.clone(),
                request_header_modifier: filter.request_header_modifier.clone(),
                response_header_modifier: filter.response_header_modifier.clone(),
                request_redirect: filter.request_redirect.clone(),
                url_rewrite: filter.url_rewrite.as_ref().map(|rewrite| weir_crds::UrlRewrite {
                    hostname: rewrite.hostname.clone(),
                    path: rewrite.path.clone(),
                }),
                ..RouteFilter::default()
            };
            match filter.kind.as_str() {
                "RequestHeaderModifier" | "ResponseHeaderModifier" | "RequestRedirect"
                | "URLRewrite" => {}
                "RequestMirror" => {
                    let Some(mirror) = &filter.request_mirror else {
                        return Err(format!("{at}[{f}].requestMirror: missing"));
                    };
                    let reference = &mirror.backend_ref;
                    if reference
                        .namespace
                        .as_deref()
                        .is_some_and(|namespace| namespace != route_namespace)
                        || reference.kind.as_deref().is_some_and(|kind| kind != "Service")
                    {
                        return Err(format!(
                            "{at}[{f}].requestMirror.backendRef: Weir mirrors to Services in the route's namespace"
                        ));
                    }
                    let percent = match (&mirror.percent, &mirror.fraction) {
                        (Some(percent), _) => Some(*percent),
                        (None, Some(fraction)) => Some(
                            fraction.numerator * 100 / fraction.denominator.unwrap_or(100).max(1),
                        ),
                        (None, None) => None,
                    };
                    converted.request_mirror = Some(weir_crds::RequestMirror {
                        backend: MirrorBackend {
                            service: ServiceRef {
                                name: reference.name.clone(),
                                port: IntOrString::Int(reference.port.unwrap_or_default()),
                            },
                        },
                        percent: percent.map(|p| p.clamp(0, 100) as u32),
                    });
                }
                other => {
                    return Err(format!(
                        "{at}[{f}].type: Weir does not implement filter {other:?}"
                    ));
                }
            }
            Ok(converted)
        })
        .collect()
}

/// A backendRef as a Service port with its endpoints, or why its share is answered 500.
fn resolve_backend(
    route: &NamespacedName,
    reference: &BackendObjectReference,
    at: &str,
    objects: &Objects<'_>,
    lookup: &mut Lookup<'_>,
) -> Result<ReadyTarget, (&'static str, String)> {
    let group = reference.group.as_deref().unwrap_or("");
    let kind = reference.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("{at}: Weir sends to Services, not {group}/{kind}"),
        ));
    }
    let namespace = reference.namespace.as_deref().unwrap_or(&route.namespace);
    if namespace != route.namespace
        && !objects.granted(
            HTTP_ROUTE_KIND,
            &route.namespace,
            "",
            "Service",
            namespace,
            &reference.name,
        )
    {
        return Err((
            "RefNotPermitted",
            format!(
                "{at}: Service {namespace}/{} is in another namespace and no ReferenceGrant there allows it",
                reference.name
            ),
        ));
    }
    let Some(port) = reference.port else {
        return Err((
            "UnsupportedProtocol",
            format!("{at}.port: a Service backend needs a port"),
        ));
    };
    let service = NamespacedName::new(namespace, reference.name.clone());
    match lookup.service_port(&service, &IntOrString::Int(port)) {
        Ok((protocol, endpoints)) => Ok(ReadyTarget::Service {
            service,
            protocol,
            endpoints,
        }),
        Err(Unresolved::PortNotFound) => Err((
            "BackendNotFound",
            format!("{at}: Service {service} has no port {port}"),
        )),
        Err(_) => Err((
            "BackendNotFound",
            format!("{at}: Service {service} not found"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_intersect_to_the_narrower_name() {
        let hosts = |l: Option<&str>, r: &[&str]| {
            intersect(l, &r.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(hosts(None, &[]), Hosts::Any);
        assert_eq!(
            hosts(Some("*.example.com"), &["foo.example.com", "bar.org"]),
            Hosts::Some(vec!["foo.example.com".into()])
        );
        assert_eq!(
            hosts(Some("foo.example.com"), &["*.example.com"]),
            Hosts::Some(vec!["foo.example.com".into()])
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["*.foo.example.com"]),
            Hosts::Some(vec!["*.foo.example.com".into()])
        );
        assert!(hosts(Some("bar.com"), &["foo.com"]).is_empty());
        assert!(
            hosts(Some("*.example.com"), &["example.com"]).is_empty(),
            "a wildcard never covers its own suffix"
        );
    }

    #[test]
    fn pool_addresses_are_stable_and_distinct() {
        let addresses = GatewayAddresses {
            pool: Some("127.0.1.0/30".parse().unwrap()),
            published: None,
        };
        let mut taken = HashSet::new();
        let a = assign_address(&NamespacedName::new("ns", "a"), &addresses, &mut taken);
        let b = assign_address(&NamespacedName::new("ns", "b"), &addresses, &mut taken);
        let c = assign_address(&NamespacedName::new("ns", "c"), &addresses, &mut taken);
        assert!(a.is_some() && b.is_some() && a != b);
        assert_eq!(c, None, "a /30 has two host addresses");
        let mut again = HashSet::new();
        assert_eq!(
            assign_address(&NamespacedName::new("ns", "a"), &addresses, &mut again),
            a
        );
    }
}

#[cfg(test)]
mod translation_tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures;

    fn store(objects: Vec<Value>) -> Store {
        let mut store = Store::default();
        for object in objects {
            store.apply(Object::decode(object).unwrap(), Origin::Cluster);
        }
        store.apply(
            fixtures::service("infra", "web", &[("http", 8080)]),
            Origin::Cluster,
        );
        store.apply(
            fixtures::slice("infra", "web-1", "web", 8080, &["10.0.0.1"]),
            Origin::Cluster,
        );
        store
    }

    fn class() -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "weir", "generation": 1},
               "spec": {"controllerName": CONTROLLER_NAME}})
    }

    fn gateway(listeners: Value) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "edge", "namespace": "infra", "generation": 3},
               "spec": {"gatewayClassName": "weir", "listeners": listeners}})
    }

    fn route(namespace: &str, spec: Value) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": "shop", "namespace": namespace, "generation": 2},
               "spec": spec})
    }

    fn pool() -> GatewayAddresses {
        GatewayAddresses {
            pool: Some("127.0.1.0/24".parse().unwrap()),
            published: None,
        }
    }

    fn condition<'a>(conditions: &'a [Condition], kind: &str) -> &'a Condition {
        conditions.iter().find(|c| c.kind == kind).unwrap()
    }

    #[test]
    fn a_route_attaches_to_the_listeners_it_selects_with_intersected_hosts() {
        let store = store(vec![
            class(),
            gateway(json!([
                {"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"},
                {"name": "other", "port": 8080, "protocol": "HTTP"},
            ])),
            route(
                "infra",
                json!({
                    "parentRefs": [{"name": "edge", "sectionName": "http"}],
                    "hostnames": ["shop.example.com", "shop.example.org"],
                    "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]
                }),
            ),
        ]);
        let translation = translate(&store, &mut Certificates::default(), &pool());
        assert_eq!(translation.listeners.len(), 2);
        let http = &translation.listeners[0];
        assert_eq!(&*http.name, "gateway:infra/edge#http");
        assert_eq!(http.address.port(), 80);
        assert!(http.address.ip().to_string().starts_with("127.0.1."));
        assert_eq!(translation.routes.len(), 1);
        let route = &translation.routes[0];
        assert_eq!(route.hosts, vec!["shop.example.com".to_owned()]);
        assert_eq!(route.listeners, vec![http.name.clone()]);

        let gateway = &translation.reports.gateways[0];
        assert_eq!(gateway.addresses[0].1, http.address.ip().to_string());
        assert!(condition(&gateway.conditions, "Programmed").status);
        assert_eq!(gateway.listeners[0].attached_routes, 1);
        assert_eq!(gateway.listeners[1].attached_routes, 0);
        let parent = &translation.reports.http_routes[0].parents[0];
        assert!(condition(&parent.conditions, "Accepted").status);
        assert!(condition(&parent.conditions, "ResolvedRefs").status);
        assert_eq!(
            translation.reports.classes[0].supported_features,
            SUPPORTED_FEATURES
        );
    }

    #[test]
    fn refusals_carry_the_spec_reasons() {
        let store = store(vec![
            class(),
            gateway(json!([
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "udp", "port": 53, "protocol": "UDP"},
                {"name": "kinds", "port": 81, "protocol": "HTTP",
                 "allowedRoutes": {"kinds": [{"kind": "TCPRoute"}]}},
            ])),
            // Another namespace, and the listener allows only its own.
            route(
                "web",
                json!({
                    "parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "http"}],
                    "rules": [{"backendRefs": [{"name": "web", "namespace": "infra", "port": 8080}]}]
                }),
            ),
        ]);
        let translation = translate(&store, &mut Certificates::default(), &pool());
        let gateway = &translation.reports.gateways[0];
        let accepted = condition(&gateway.conditions, "Accepted");
        assert!(accepted.status && accepted.reason == "ListenersNotValid");
        let udp = condition(&gateway.listeners[1].conditions, "Accepted");
        assert_eq!((udp.status, udp.reason), (false, "UnsupportedProtocol"));
        assert!(gateway.listeners[1].supported_kinds.is_empty());
        let kinds = condition(&gateway.listeners[2].conditions, "ResolvedRefs");
        assert_eq!((kinds.status, kinds.reason), (false, "InvalidRouteKinds"));

        let parent = &translation.reports.http_routes[0].parents[0];
        let accepted = condition(&parent.conditions, "Accepted");
        assert_eq!(
            (accepted.status, accepted.reason),
            (false, "NotAllowedByListeners")
        );
        let refs = condition(&parent.conditions, "ResolvedRefs");
        assert_eq!((refs.status, refs.reason), (false, "RefNotPermitted"));
        assert!(translation.routes.is_empty());
    }

    #[test]
    fn an_invalid_backend_is_served_as_a_500_share() {
        let store = store(vec![
            class(),
            gateway(json!([{"name": "http", "port": 80, "protocol": "HTTP"}])),
            route(
                "infra",
                json!({
                    "parentRefs": [{"name": "edge"}],
                    "rules": [
                        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                         "backendRefs": [{"name": "missing", "port": 8080}]},
                        {"backendRefs": [{"name": "web", "port": 8080, "weight": 0}]},
                        {"matches": [{"path": {"type": "Exact", "value": "/kind"}}],
                         "backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "b"}]}
                    ]
                }),
            ),
        ]);
        let translation = translate(&store, &mut Certificates::default(), &pool());
        let rules = &translation.routes[0].rules;
        assert!(matches!(rules[0].backends[0].backend, Backend::Invalid(_)));
        assert!(
            matches!(rules[1].backends[0].backend, Backend::Invalid(_)),
            "weights all 0: 500"
        );
        assert!(matches!(rules[2].backends[0].backend, Backend::Invalid(_)));
        let parent = &translation.reports.http_routes[0].parents[0];
        let refs = condition(&parent.conditions, "ResolvedRefs");
        assert_eq!((refs.status, refs.reason), (false, "BackendNotFound"));
        assert!(condition(&parent.conditions, "Accepted").status);
    }

    #[test]
    fn a_route_naming_another_controllers_gateway_gets_no_status_from_weir() {
        let store = store(vec![
            class(),
            route(
                "infra",
                json!({
                    "parentRefs": [{"name": "elsewhere"}],
                    "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]
                }),
            ),
        ]);
        let translation = translate(&store, &mut Certificates::default(), &pool());
        assert!(translation.reports.http_routes.is_empty());
        assert!(translation.routes.is_empty());
    }
}
