//! The snapshot: one whole, validated configuration, handed over as one immutable value.

use std::{sync::Arc, time::Duration};

use crate::{
    ai::AiConfig,
    listener::Listener,
    report::{
        AiModelReport, GatewayClassReport, GatewayReport, HttpRouteReport, IngressReport,
        RouteReport, SourceProblem,
    },
    route::Route,
    secret::TlsCertificate,
};

/// Everything the data plane serves, and the verdicts behind it.
///
/// Nothing in it changes after it is built; a new configuration is a new snapshot with a
/// higher `generation`.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every snapshot the control plane publishes.
    pub generation: u64,
    /// Accepted routes, in the order their precedence ties are broken: Routes (`namespace/name`),
    /// then Ingresses' (`namespace/name`), then the one Ingress default backend served.
    pub routes: Vec<Arc<Route>>,
    /// Listeners defined by configuration (the command line's are the data plane's own).
    pub listeners: Vec<Listener>,
    /// Certificates for the command line's TLS listener, chosen by SNI. When two claim the
    /// same host, the earlier wins (routes are in `namespace/name` order).
    pub certificates: Vec<Arc<TlsCertificate>>,
    /// Served to a client that names no host, or one no certificate is for.
    pub default_certificate: Option<Arc<TlsCertificate>>,
    /// Models and client keys of the AI gateway.
    pub ai: Arc<AiConfig>,
    /// One report per Route the sources hold, accepted or not.
    pub reports: Vec<Arc<RouteReport>>,
    /// One report per Ingress of a Weir IngressClass the sources hold.
    pub ingress_reports: Vec<Arc<IngressReport>>,
    /// One report per AIModel the sources hold, accepted or not.
    pub ai_reports: Vec<Arc<AiModelReport>>,
    /// What Weir made of the Gateway API objects it implements: GatewayClasses of its
    /// controller, their Gateways, and the HTTPRoutes that name them.
    pub gateway_api: Arc<GatewayApiReports>,
    /// Problems the sources found outside any Route (unparseable files, unknown kinds).
    pub source_problems: Vec<SourceProblem>,
    /// How long the reconcile that built this snapshot took.
    pub reconcile_duration: Duration,
}

/// The Gateway API verdicts of one snapshot; the same `Arc` while none changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GatewayApiReports {
    pub classes: Vec<Arc<GatewayClassReport>>,
    pub gateways: Vec<Arc<GatewayReport>>,
    pub http_routes: Vec<Arc<HttpRouteReport>>,
}
