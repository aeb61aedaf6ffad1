//! An AIModel's status: its `Accepted` and `ResolvedRefs` conditions, from its report, and
//! each provider's state: whether its endpoint and credentials resolved (and why not), and
//! until when the data plane skips it after consecutive failures.
//!
//! `providersReady` counts the providers whose references resolved, as `ready/total`; an
//! ejected provider still counts, since its ejection ends by itself and `ejectedUntil` says
//! when.

use std::time::SystemTime;

use serde_json::{Value, json};
use weir_contract::{AcceptedReason, AiModelReport, EjectedProviders};

use super::{ConditionStatus, Conditions, Status, WrittenConditions, rfc3339};

/// The status of the AIModel `report` is about, with the ejections in `ejected` that have not
/// ended by `now`.
pub(super) fn status(
    report: &AiModelReport,
    ejected: &EjectedProviders,
    previous: Option<&WrittenConditions>,
    now: SystemTime,
) -> Status {
    let mut conditions = Conditions::new(report.generation, previous, now);
    match &report.invalid {
        None => conditions.add(
            "Accepted",
            true,
            AcceptedReason::Accepted.as_str(),
            "AIModel is valid and served",
        ),
        Some(invalid) => {
            let message = if report.serving_last_valid {
                format!("{invalid} (still serving the last valid version)")
            } else {
                invalid.clone()
            };
            conditions.add(
                "Accepted",
                false,
                AcceptedReason::Invalid.as_str(),
                &message,
            );
        }
    }

    let unresolved: Vec<String> = report
        .providers
        .iter()
        .filter_map(|p| {
            let why = p.unresolved.as_ref()?;
            Some(format!("provider {}: {}", p.name, why.message))
        })
        .collect();
    let first_reason = report
        .providers
        .iter()
        .find_map(|p| p.unresolved.as_ref())
        .map(|why| why.reason.as_str());
    match first_reason {
        // Nothing is served, so nothing was looked up: saying the references resolve (or do
        // not) would be a guess.
        _ if report.providers.is_empty() && !report.is_accepted() => conditions.add(
            "ResolvedRefs",
            ConditionStatus::Unknown,
            AcceptedReason::Invalid.as_str(),
            "No version of the model is valid, so no provider was resolved",
        ),
        None => conditions.add(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "Every provider's endpoint and credentials resolved",
        ),
        Some(reason) => conditions.add("ResolvedRefs", false, reason, &unresolved.join("; ")),
    }

    let mut changes_at: Option<SystemTime> = None;
    let providers: Vec<Value> = report
        .providers
        .iter()
        .map(|provider| {
            let mut status = json!({"name": provider.name, "ready": provider.unresolved.is_none()});
            if let Some(why) = &provider.unresolved {
                status["reason"] = why.message.clone().into();
            }
            if let Some(until) = ejected
                .until(&report.id, &provider.name)
                .filter(|until| *until > now)
            {
                status["ejectedUntil"] = rfc3339(until).into();
                changes_at = Some(changes_at.map_or(until, |at| at.min(until)));
            }
            status
        })
        .collect();
    let ready = report
        .providers
        .iter()
        .filter(|p| p.unresolved.is_none())
        .count();

    let (list, conditions) = conditions.finish();
    Status {
        body: json!({
            "conditions": list,
            "providersReady": format!("{ready}/{}", report.providers.len()),
            "providers": providers,
        }),
        conditions,
        changes_at,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use weir_contract::{NamespacedName, Origin, ProviderReport, RefProblem, ResolvedRefsReason};

    use super::*;

    const MISSING_SECRET: &str = "Secret ai/gone not found (Weir reads only Secrets labelled weir.dev/ai-credentials: \"true\")";

    fn model() -> NamespacedName {
        NamespacedName::new("ai", "chat")
    }

    /// A valid model at generation 4 whose providers are ready, but for those named in
    /// `missing_credentials`.
    fn report(providers: &[&str], missing_credentials: &[&str]) -> AiModelReport {
        AiModelReport {
            id: model(),
            origin: Origin::Cluster,
            generation: Some(4),
            invalid: None,
            serving_last_valid: false,
            providers: providers
                .iter()
                .map(|name| ProviderReport {
                    name: (*name).into(),
                    unresolved: missing_credentials.contains(name).then(|| RefProblem {
                        reason: ResolvedRefsReason::InvalidCredentialsRef,
                        message: MISSING_SECRET.into(),
                    }),
                })
                .collect(),
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn no_ejections() -> EjectedProviders {
        EjectedProviders::default()
    }

    /// The condition of type `type_`.
    fn condition<'a>(status: &'a Status, type_: &str) -> &'a Value {
        status.body["conditions"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["type"] == type_))
            .unwrap_or_else(|| panic!("no {type_} condition in {}", status.body))
    }

    #[test]
    fn a_served_model_with_every_provider_ready_is_accepted_and_resolved() {
        let status = status(
            &report(&["primary", "backup"], &[]),
            &no_ejections(),
            None,
            at(1),
        );
        for type_ in ["Accepted", "ResolvedRefs"] {
            let condition = condition(&status, type_);
            assert_eq!(condition["status"], "True", "{condition}");
            assert_eq!(condition["reason"], type_);
            assert_eq!(condition["observedGeneration"], 4);
            assert_eq!(condition["lastTransitionTime"], "1970-01-01T00:00:01Z");
        }
        assert_eq!(status.body["providersReady"], "2/2");
        assert_eq!(
            status.body["providers"],
            json!([{"name": "primary", "ready": true}, {"name": "backup", "ready": true}])
        );
        assert_eq!(status.changes_at, None);
    }

    #[test]
    fn a_provider_whose_credentials_do_not_resolve_is_named_with_its_secret() {
        let status = status(
            &report(&["primary", "backup"], &["backup"]),
            &no_ejections(),
            None,
            at(1),
        );
        let resolved = condition(&status, "ResolvedRefs");
        assert_eq!(resolved["status"], "False");
        assert_eq!(resolved["reason"], "InvalidCredentialsRef");
        assert_eq!(
            resolved["message"],
            format!("provider backup: {MISSING_SECRET}")
        );
        assert_eq!(
            condition(&status, "Accepted")["status"],
            "True",
            "the model is valid; only a reference is missing"
        );
        assert_eq!(status.body["providersReady"], "1/2");
        assert_eq!(
            status.body["providers"][1],
            json!({"name": "backup", "ready": false, "reason": MISSING_SECRET})
        );
    }

    #[test]
    fn an_invalid_edit_says_the_last_valid_version_is_still_served() {
        let mut report = report(&["primary"], &[]);
        report.invalid = Some("spec.providers[0].weight: must be at most 1000".into());
        report.serving_last_valid = true;
        let status = status(&report, &no_ejections(), None, at(1));
        let accepted = condition(&status, "Accepted");
        assert_eq!(accepted["status"], "False");
        assert_eq!(accepted["reason"], "Invalid");
        assert_eq!(
            accepted["message"],
            "spec.providers[0].weight: must be at most 1000 (still serving the last valid version)"
        );
        assert_eq!(condition(&status, "ResolvedRefs")["status"], "True");
        assert_eq!(status.body["providersReady"], "1/1");
    }

    #[test]
    fn a_model_with_no_valid_version_does_not_guess_at_its_references() {
        let mut report = report(&[], &[]);
        report.invalid = Some("spec.providers: at least one provider is required".into());
        let status = status(&report, &no_ejections(), None, at(1));
        let resolved = condition(&status, "ResolvedRefs");
        assert_eq!(resolved["status"], "Unknown");
        assert_eq!(resolved["reason"], "Invalid");
        assert_eq!(status.body["providersReady"], "0/0");
    }

    #[test]
    fn an_ejected_provider_shows_until_when_and_the_status_changes_when_that_passes() {
        let mut ejected = EjectedProviders::default();
        ejected.eject(&model(), "primary", at(30));
        ejected.eject(&NamespacedName::new("ai", "other"), "backup", at(10));
        let report = report(&["primary", "backup"], &[]);

        let during = status(&report, &ejected, None, at(1));
        assert_eq!(
            during.body["providers"][0],
            json!({"name": "primary", "ready": true, "ejectedUntil": "1970-01-01T00:00:30Z"})
        );
        assert_eq!(
            during.body["providers"][1],
            json!({"name": "backup", "ready": true}),
            "another model's provider of the same name is not this one"
        );
        assert_eq!(during.body["providersReady"], "2/2");
        assert_eq!(during.changes_at, Some(at(30)));

        let after = status(&report, &ejected, Some(&during.conditions), at(30));
        assert_eq!(
            after.body["providers"][0],
            json!({"name": "primary", "ready": true})
        );
        assert_eq!(after.changes_at, None);
        assert_eq!(
            condition(&after, "Accepted")["lastTransitionTime"],
            "1970-01-01T00:00:01Z",
            "an ejection is not a condition's transition"
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = status(&report(&["primary"], &[]), &no_ejections(), None, at(1));
        let broken = status(
            &report(&["primary"], &["primary"]),
            &no_ejections(),
            Some(&first.conditions),
            at(2),
        );
        assert_eq!(
            condition(&broken, "ResolvedRefs")["lastTransitionTime"],
            "1970-01-01T00:00:02Z"
        );
        assert_eq!(
            condition(&broken, "Accepted")["lastTransitionTime"],
            "1970-01-01T00:00:01Z",
            "Accepted did not change"
        );
        let still_broken = status(
            &report(&["primary"], &["primary"]),
            &no_ejections(),
            Some(&broken.conditions),
            at(3),
        );
        assert_eq!(
            condition(&still_broken, "ResolvedRefs")["lastTransitionTime"],
            "1970-01-01T00:00:02Z"
        );
        let mended = status(
            &report(&["primary"], &[]),
            &no_ejections(),
            Some(&still_broken.conditions),
            at(4),
        );
        assert_eq!(
            condition(&mended, "ResolvedRefs")["lastTransitionTime"],
            "1970-01-01T00:00:04Z"
        );
    }
}
