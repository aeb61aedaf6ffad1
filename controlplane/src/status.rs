//! The status writer: puts the reconciler's verdict on each Route as conditions.
//!
//! Each Route from the cluster gets two conditions, in the shape Gateway API users know:
//! `Accepted` (is the spec valid and served) and `ResolvedRefs` (does every backend have ready
//! endpoints), both with `observedGeneration`. Writes go through the work queue: only Routes
//! whose verdict changed are written, a Route is never written by two workers at once, and a
//! failed write is retried with per-Route backoff. Status is written with server-side apply,
//! so Weir owns its conditions and nothing else.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::sync::watch;
use weir_crds::Route;

use weir_contract::{NamespacedName, Origin, RouteReport, Snapshot};
use weir_informer::queue::{QueueConfig, WorkQueue};

/// The field manager Weir's status writes are recorded under.
pub const FIELD_MANAGER: &str = "weir";
/// Status writes in flight at once.
const CONCURRENT_WRITES: usize = 4;

/// A condition as last written, to keep `lastTransitionTime` when the status is unchanged.
#[derive(Clone)]
struct Written {
    accepted: (bool, String),
    resolved_refs: (bool, String),
}

#[derive(Default)]
struct StatusState {
    /// The verdict to write, by Route.
    desired: HashMap<NamespacedName, Arc<RouteReport>>,
    written: HashMap<NamespacedName, Written>,
}

/// The queue status writes go through; its metrics are `workqueue_route_status_*`.
pub fn queue() -> Arc<WorkQueue<NamespacedName>> {
    WorkQueue::new("route_status", QueueConfig::default())
}

/// Writes Route statuses for every snapshot until `snapshots` closes.
pub async fn run(
    client: Client,
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    queue: Arc<WorkQueue<NamespacedName>>,
) {
    let state = Arc::new(Mutex::new(StatusState::default()));
    let worker_state = state.clone();
    let workers = tokio::spawn(
        queue
            .clone()
            .run(CONCURRENT_WRITES, move |id: NamespacedName| {
                let client = client.clone();
                let state = worker_state.clone();
                async move { write_status(client, state, id).await }
            }),
    );

    loop {
        if let Some(snapshot) = snapshots.borrow_and_update().clone() {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            let mut present = HashMap::new();
            // Only objects from the cluster have a status to write; files have none.
            for report in snapshot
                .reports
                .iter()
                .filter(|r| r.origin == Origin::Cluster)
            {
                present.insert(report.id.clone(), ());
                // An unchanged Route keeps its report's Arc from one snapshot to the next.
                if !state
                    .desired
                    .get(&report.id)
                    .is_some_and(|d| Arc::ptr_eq(d, report) || d == report)
                {
                    state.desired.insert(report.id.clone(), report.clone());
                    queue.add(report.id.clone());
                }
            }
            state.desired.retain(|id, _| present.contains_key(id));
            let StatusState { desired, written } = &mut *state;
            written.retain(|id, _| desired.contains_key(id));
        }
        if snapshots.changed().await.is_err() {
            break;
        }
    }
    queue.shut_down();
    let _ = workers.await;
}

/// Writes one Route's conditions; a Route that is gone needs none.
async fn write_status(
    client: Client,
    state: Arc<Mutex<StatusState>>,
    id: NamespacedName,
) -> Result<(), kube::Error> {
    let (report, previous) = {
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(report) = state.desired.get(&id).cloned() else {
            return Ok(());
        };
        (report, state.written.get(&id).cloned())
    };
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let (status, written) = status_patch(&report, previous.as_ref(), &now);
    let api: Api<Route> = Api::namespaced(client, &id.namespace);
    let patch = json!({"apiVersion": "weir.dev/v1alpha1", "kind": "Route", "status": status});
    match api
        .patch_status(
            &id.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
    {
        Ok(_) => {
            tracing::debug!(route = %id, accepted = report.accepted.as_str(), "status written");
            state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .written
                .insert(id, written);
            Ok(())
        }
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

/// The status to apply, and what to remember of it.
fn status_patch(report: &RouteReport, previous: Option<&Written>, now: &str) -> (Value, Written) {
    let condition =
        |type_: &str, ok: bool, reason: &str, message: &str, previous: Option<&(bool, String)>| {
            let since = match previous {
                Some((was_ok, since)) if *was_ok == ok => since.clone(),
                _ => now.to_owned(),
            };
            let value = json!({
                "type": type_,
                "status": if ok { "True" } else { "False" },
                "reason": reason,
                "message": message,
                "observedGeneration": report.generation,
                "lastTransitionTime": since,
            });
            (value, (ok, since))
        };
    let accepted_message = if report.is_accepted() {
        "Route is valid and served"
    } else {
        &report.message
    };
    let refs_message = if report.refs_resolved() {
        "Every backend has ready endpoints"
    } else {
        &report.message
    };
    let (accepted, accepted_written) = condition(
        "Accepted",
        report.is_accepted(),
        report.accepted.as_str(),
        accepted_message,
        previous.map(|p| &p.accepted),
    );
    let (resolved, resolved_written) = condition(
        "ResolvedRefs",
        report.refs_resolved(),
        report.resolved_refs.as_str(),
        refs_message,
        previous.map(|p| &p.resolved_refs),
    );
    (
        json!({"conditions": [accepted, resolved]}),
        Written {
            accepted: accepted_written,
            resolved_refs: resolved_written,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use weir_contract::{AcceptedReason, ResolvedRefsReason};

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

    #[test]
    fn conditions_carry_reason_message_and_observed_generation() {
        let (status, _) = status_patch(&report(false), None, "2026-01-01T00:00:00Z");
        let accepted = &status["conditions"][0];
        assert_eq!(accepted["type"], "Accepted");
        assert_eq!(accepted["status"], "False");
        assert_eq!(accepted["reason"], "Invalid");
        assert_eq!(
            accepted["message"],
            "spec.rules: at least one rule is required"
        );
        assert_eq!(accepted["observedGeneration"], 3);
        assert_eq!(status["conditions"][1]["status"], "True");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let (_, first) = status_patch(&report(true), None, "t1");
        let (same, _) = status_patch(&report(true), Some(&first), "t2");
        assert_eq!(same["conditions"][0]["lastTransitionTime"], "t1");
        let (flipped, _) = status_patch(&report(false), Some(&first), "t3");
        assert_eq!(flipped["conditions"][0]["lastTransitionTime"], "t3");
        assert_eq!(
            flipped["conditions"][1]["lastTransitionTime"], "t1",
            "ResolvedRefs did not change"
        );
    }
}
