//! The contract between Weir's control plane and its data plane: what the gateway serves.
//!
//! The control plane translates API objects (Routes and AIModels now; HTTPRoutes and Ingresses
//! next) into one immutable [`Snapshot`] and publishes it; the data plane compiles each
//! snapshot into its routing table. Nothing here knows where a value came from (no kube types)
//! or how it is served (no hyper types): matches are neutral ([`RouteMatch`]), policies are
//! typed data ([`Filter`], [`RulePolicy`]), backends are an enum ([`Backend`]) that names its
//! protocol, and secret material lives only in types that cannot be printed or serialised
//! ([`SecretBytes`]).
//!
//! Invariants the control plane keeps and the data plane relies on:
//! - every value was validated: header names are lowercase and legal, regexes compiled,
//!   prefixes normalised, every rule has at least one match;
//! - a Route that did not change between two snapshots is the same `Arc` in both, so the data
//!   plane can reuse what it built from it.
//!
//! One value goes the other way: [`EjectedProviders`], the AI providers the data plane is
//! skipping after consecutive failures, which only it can know and the AIModel's status shows.

mod ai;
mod ai_prompt;
mod backend;
mod ejections;
mod ids;
mod listener;
mod policy;
mod report;
mod route;
mod secret;
mod snapshot;

pub use ai::{
    Access, AiAddress, AiApi, AiConfig, AiEndpoint, AiModel, AiProvider, AiQuota, AiTimeouts,
    ClientKey, Eject, Fallback, LabelSelector, QuotaLimit, SelectorRequirement,
};
pub use ai_prompt::{
    AiPrompt, PromptTemplate, PromptValue, PromptVariable, TemplatePart, ValueProblem, VariableKind,
};
pub use backend::{
    Backend, Endpoint, Protocol, RuleBackend, ServiceBackend, Unresolved, UpstreamTls,
};
pub use ejections::EjectedProviders;
pub use ids::{NamespacedName, RouteId, RouteKind};
pub use listener::{Listener, ListenerProtocol};
pub use policy::{
    BodyTimeout, DirectResponse, Filter, HashKey, HeaderModifier, LoadBalancer, OutlierDetection,
    PathModifier, RateLimit, RateLimitKey, RequestMirror, RequestRedirect, RetryBudget, RetryOn,
    RetryPolicy, RulePolicy, Timeouts, UrlRewrite,
};
pub use report::{
    AcceptedReason, AiModelReport, Condition, GatewayClassReport, GatewayListenerReport,
    GatewayReport, HttpRouteReport, IngressReport, Origin, ParentRef, ProviderReport, RefProblem,
    ResolvedRefsReason, RouteParentReport, RouteReport, SourceProblem,
};
pub use route::{HeaderMatch, PathMatch, QueryMatch, Route, RouteMatch, Rule, ValueMatch};
pub use secret::{Credential, SecretBytes, TlsCertificate};
pub use snapshot::{GatewayApiReports, Snapshot};
