//! Verdicts: what the reconciler decided about each Route, and the log lines that tell an
//! operator when a verdict changes.

use std::{collections::HashMap, sync::Arc};

use weir_contract::{
    AcceptedReason, Backend, NamespacedName, Origin, ResolvedRefsReason, Route, RouteReport,
    Snapshot, Unresolved,
};

use crate::translate::Rejected;

/// The report on a Route: `served` is what is served for it (its current spec, or its last
/// valid one), `rejected` why its current spec was refused, if it was.
pub fn route_report(
    id: &NamespacedName,
    origin: &Origin,
    generation: Option<i64>,
    served: Option<&Route>,
    rejected: Option<Rejected>,
) -> RouteReport {
    let (accepted, mut message) = match rejected {
        None => (AcceptedReason::Accepted, String::new()),
        Some(rejected) => {
            let mut message = rejected.message;
            if served.is_some() {
                message.push_str(" (still serving the last valid version)");
            }
            (rejected.reason, message)
        }
    };
    let (resolved_refs, refs_message) = served
        .map(resolution_problem)
        .unwrap_or((ResolvedRefsReason::ResolvedRefs, String::new()));
    if !refs_message.is_empty() {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&refs_message);
    }
    RouteReport {
        id: id.clone(),
        origin: origin.clone(),
        generation,
        accepted,
        resolved_refs,
        message,
    }
}

/// The first backend problem of a served Route, as a reason and a message.
fn resolution_problem(route: &Route) -> (ResolvedRefsReason, String) {
    for (r, rule) in route.rules.iter().enumerate() {
        for (b, rule_backend) in rule.backends.iter().enumerate() {
            let Backend::Service(backend) = &rule_backend.backend;
            let service = &backend.service;
            let (reason, message) = match backend.unresolved {
                None if !backend.endpoints.is_empty() => continue,
                None => (
                    ResolvedRefsReason::NoReadyEndpoints,
                    format!("Service {service} has no ready endpoints"),
                ),
                Some(Unresolved::BackendNotFound) => (
                    ResolvedRefsReason::BackendNotFound,
                    format!("Service {service} not found"),
                ),
                Some(Unresolved::PortNotFound) => (
                    ResolvedRefsReason::PortNotFound,
                    format!("Service {service} has no such port"),
                ),
            };
            return (reason, format!("spec.rules[{r}].backends[{b}]: {message}"));
        }
    }
    (ResolvedRefsReason::ResolvedRefs, String::new())
}

/// Logs each Route whose report changed, and each new source problem, once.
pub fn log_changes(previous: Option<&Snapshot>, next: &Snapshot) {
    let old_reports: HashMap<_, _> = previous
        .map(|p| p.reports.iter().map(|r| (&r.id, r)).collect())
        .unwrap_or_default();
    for report in &next.reports {
        // An unchanged Route's report is the same Arc; compare values only when it is not.
        if old_reports
            .get(&report.id)
            .is_some_and(|old| Arc::ptr_eq(old, report) || *old == report)
        {
            continue;
        }
        let origin = report.origin.to_string();
        if report.is_accepted() && report.refs_resolved() {
            tracing::info!(route = %report.id, origin, "route accepted");
        } else {
            tracing::warn!(
                route = %report.id,
                origin,
                accepted = report.accepted.as_str(),
                resolved_refs = report.resolved_refs.as_str(),
                message = %report.message,
                "route has problems"
            );
        }
    }
    let old_problems = previous
        .map(|p| p.source_problems.as_slice())
        .unwrap_or_default();
    for problem in &next.source_problems {
        if !old_problems.contains(problem) {
            tracing::warn!(origin = %problem.origin, reason = %problem.reason, "configuration not loaded");
        }
    }
}
