//! Verdicts: what the reconciler decided about each Route, and the log lines that tell an
//! operator when a verdict changes.

use std::{collections::HashMap, sync::Arc};

use weir_contract::{
    AcceptedReason, NamespacedName, Origin, ResolvedRefsReason, RouteReport, Snapshot,
};

use crate::translate::{Rejected, Translated};

/// The report on a Route: `served` is what is served for it (its current spec, or its last
/// valid one), `rejected` why its current spec was refused, if it was.
pub fn route_report(
    id: &NamespacedName,
    origin: &Origin,
    generation: Option<i64>,
    served: Option<&Translated>,
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
    let problems = served.map(|s| s.problems.as_slice()).unwrap_or_default();
    let resolved_refs = problems
        .first()
        .map_or(ResolvedRefsReason::ResolvedRefs, |p| p.reason);
    for problem in problems {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&problem.message);
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
    let old_models: HashMap<_, _> = previous
        .map(|p| p.ai_reports.iter().map(|r| (&r.id, r)).collect())
        .unwrap_or_default();
    for report in &next.ai_reports {
        if old_models
            .get(&report.id)
            .is_some_and(|old| Arc::ptr_eq(old, report) || *old == report)
        {
            continue;
        }
        let origin = report.origin.to_string();
        let unresolved: Vec<String> = report
            .providers
            .iter()
            .filter_map(|p| {
                p.unresolved
                    .as_ref()
                    .map(|why| format!("{}: {}", p.name, why.message))
            })
            .collect();
        match &report.invalid {
            None if unresolved.is_empty() => {
                tracing::info!(aimodel = %report.id, origin, "AI model accepted");
            }
            invalid => tracing::warn!(
                aimodel = %report.id,
                origin,
                invalid = invalid.as_deref().unwrap_or(""),
                serving_last_valid = report.serving_last_valid,
                unresolved_providers = %unresolved.join("; "),
                "AI model has problems"
            ),
        }
    }
    // An Ingress has no conditions: its problems are told here, and in /debug/routes.
    let old_ingresses: HashMap<_, _> = previous
        .map(|p| p.ingress_reports.iter().map(|r| (&r.id, r)).collect())
        .unwrap_or_default();
    for report in &next.ingress_reports {
        if old_ingresses
            .get(&report.id)
            .is_some_and(|old| Arc::ptr_eq(old, report) || *old == report)
        {
            continue;
        }
        let origin = report.origin.to_string();
        if report.problems.is_empty() {
            tracing::info!(ingress = %report.id, origin, "ingress served");
        } else {
            tracing::warn!(
                ingress = %report.id,
                origin,
                problems = %report.problems.join("; "),
                "ingress has problems"
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
