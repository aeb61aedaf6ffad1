//! A Route's status: its `Accepted` and `ResolvedRefs` conditions, from its report.

use std::time::SystemTime;

use serde_json::json;
use weir_contract::RouteReport;

use super::{Conditions, Status, WrittenConditions};

/// The status of the Route `report` is about.
pub(super) fn status(
    report: &RouteReport,
    previous: Option<&WrittenConditions>,
    now: SystemTime,
) -> Status {
    let mut conditions = Conditions::new(report.generation, previous, now);
    let accepted_message = if report.is_accepted() {
        "Route is valid and served"
    } else {
        &report.message
    };
    conditions.add(
        "Accepted",
        report.is_accepted(),
        report.accepted.as_str(),
        accepted_message,
    );
    let refs_message = if report.refs_resolved() {
        "Every backend has ready endpoints"
    } else {
        &report.message
    };
    conditions.add(
        "ResolvedRefs",
        report.refs_resolved(),
        report.resolved_refs.as_str(),
        refs_message,
    );
    let (list, conditions) = conditions.finish();
    Status {
        body: json!({"conditions": list}),
        conditions,
        changes_at: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use weir_contract::{AcceptedReason, NamespacedName, Origin, ResolvedRefsReason};

    use super::*;

    fn report(accepted: bool) -> RouteReport {
        RouteReport {
            id: NamespacedName::new("default", "echo"),
            origin: Origin::Cluster,
            generation: Some(3),
            accepted: if accepted {
                AcceptedReason::Accepted
            } else {
                AcceptedReason::Invalid
            },
            resolved_refs: ResolvedRefsReason::ResolvedRefs,
            message: if accepted {
                String::new()
            } else {
                "spec.rules: at least one rule is required".into()
            },
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn conditions_carry_reason_message_and_observed_generation() {
        let status = status(&report(false), None, at(1));
        let accepted = &status.body["conditions"][0];
        assert_eq!(accepted["type"], "Accepted");
        assert_eq!(accepted["status"], "False");
        assert_eq!(accepted["reason"], "Invalid");
        assert_eq!(
            accepted["message"],
            "spec.rules: at least one rule is required"
        );
        assert_eq!(accepted["observedGeneration"], 3);
        assert_eq!(status.body["conditions"][1]["status"], "True");
        assert_eq!(status.changes_at, None);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = status(&report(true), None, at(1));
        let same = status(&report(true), Some(&first.conditions), at(2));
        assert_eq!(
            same.body["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:00:01Z"
        );
        let flipped = status(&report(false), Some(&first.conditions), at(3));
        assert_eq!(
            flipped.body["conditions"][0]["lastTransitionTime"],
            "1970-01-01T00:00:03Z"
        );
        assert_eq!(
            flipped.body["conditions"][1]["lastTransitionTime"], "1970-01-01T00:00:01Z",
            "ResolvedRefs did not change"
        );
    }
}
