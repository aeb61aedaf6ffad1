//! The pod status this kubelet reports, as a merge patch of `status`: a pure function of what
//! it started, so the fields the suite and the controllers read are pinned by tests.
//!
//! Readers: the EndpointSlice controller (`podIPs`, the `Ready` condition, the Node's
//! existence), the suite's `NamespacesMustBeReady` (every pod `Ready=True`), its log reader
//! (skips `phase: Failed`), `HTTPRouteServiceTypes` (writes EndpointSlices from `podIPs`).
//! There are no probes: a running container is ready. One that exited is reported
//! terminated and not ready, and is not restarted.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// What became of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Running (or, for an image with no program, standing in as running).
    Running {
        started_at: Timestamp,
        /// `None` when nothing runs for it.
        pid: Option<i32>,
    },
    Terminated {
        started_at: Timestamp,
        finished_at: Timestamp,
        exit_code: i32,
    },
    /// Could not be started.
    Waiting { reason: String, message: String },
}

/// One container's line in `containerStatuses`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerReport {
    pub name: String,
    pub image: String,
    pub state: ContainerState,
}

impl ContainerReport {
    fn ready(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }

    fn to_json(&self) -> Value {
        let (state, container_id) = match &self.state {
            ContainerState::Running { started_at, pid } => (
                json!({"running": {"startedAt": started_at.to_string()}}),
                Some(pid.map_or_else(
                    || "process://none".to_owned(),
                    |pid| format!("process://{pid}"),
                )),
            ),
            ContainerState::Terminated {
                started_at,
                finished_at,
                exit_code,
            } => (
                json!({"terminated": {
                    "exitCode": exit_code,
                    "reason": if *exit_code == 0 { "Completed" } else { "Error" },
                    "startedAt": started_at.to_string(),
                    "finishedAt": finished_at.to_string(),
                }}),
                None,
            ),
            ContainerState::Waiting { reason, message } => (
                json!({"waiting": {"reason": reason, "message": message}}),
                None,
            ),
        };
        let mut report = json!({
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready(),
            "started": matches!(self.state, ContainerState::Running { .. }),
            "restartCount": 0,
            "state": state,
        });
        if let Some(id) = container_id {
            report["containerID"] = id.into();
        }
        report
    }
}

/// The merge patch for a pod whose containers are as `containers` say.
pub fn patch(
    pod_ip: &str,
    host_ip: &str,
    start_time: Timestamp,
    containers: &[ContainerReport],
    now: Timestamp,
) -> Value {
    let ready = containers.iter().all(ContainerReport::ready);
    let started = containers
        .iter()
        .any(|c| !matches!(c.state, ContainerState::Waiting { .. }));
    let condition = |kind: &str, status: bool| {
        json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastTransitionTime": now.to_string(),
        })
    };
    json!({"status": {
        "phase": if started { "Running" } else { "Pending" },
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time.to_string(),
        "conditions": [
            condition("PodReadyToStartContainers", true),
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": containers.iter().map(ContainerReport::to_json).collect::<Vec<_>>(),
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn running(name: &str) -> ContainerReport {
        ContainerReport {
            name: name.into(),
            image: "registry.k8s.io/gateway-api/echo-basic:v1.5.1".into(),
            state: ContainerState::Running {
                started_at: at("2026-11-25T10:00:00Z"),
                pid: Some(42),
            },
        }
    }

    fn condition(patch: &Value, kind: &str) -> String {
        patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .unwrap()
    }

    fn patch_for(containers: &[ContainerReport]) -> Value {
        let now = at("2026-11-25T10:00:01Z");
        patch("10.233.0.2", "127.0.0.1", now, containers, now)
    }

    #[test]
    fn running_containers_make_a_ready_running_pod_with_its_ip() {
        let patch = patch_for(&[running("web")]);
        let status = &patch["status"];
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "10.233.0.2");
        assert_eq!(status["podIPs"], json!([{"ip": "10.233.0.2"}]));
        assert_eq!(status["hostIP"], "127.0.0.1");
        assert_eq!(condition(&patch, "Ready"), "True");
        assert_eq!(condition(&patch, "ContainersReady"), "True");
        assert_eq!(condition(&patch, "PodScheduled"), "True");
        let container = &status["containerStatuses"][0];
        assert_eq!(container["ready"], true);
        assert_eq!(container["containerID"], "process://42");
        assert_eq!(
            container["state"]["running"]["startedAt"],
            "2026-11-25T10:00:00Z"
        );
    }

    #[test]
    fn one_exited_container_makes_the_pod_not_ready() {
        let mut exited = running("sidecar");
        exited.state = ContainerState::Terminated {
            started_at: at("2026-11-25T10:00:00Z"),
            finished_at: at("2026-11-25T10:00:01Z"),
            exit_code: 2,
        };
        let patch = patch_for(&[running("web"), exited]);
        assert_eq!(patch["status"]["phase"], "Running");
        assert_eq!(condition(&patch, "Ready"), "False");
        let terminated = &patch["status"]["containerStatuses"][1]["state"]["terminated"];
        assert_eq!(terminated["exitCode"], 2);
        assert_eq!(terminated["reason"], "Error");
    }

    #[test]
    fn a_pod_that_could_not_start_is_pending_with_the_reason() {
        let waiting = ContainerReport {
            state: ContainerState::Waiting {
                reason: "CreateContainerConfigError".into(),
                message: "env X: fieldRef \"status.phase\" is not supported".into(),
            },
            ..running("web")
        };
        let patch = patch_for(&[waiting]);
        assert_eq!(patch["status"]["phase"], "Pending");
        assert_eq!(condition(&patch, "Ready"), "False");
        assert_eq!(
            patch["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CreateContainerConfigError"
        );
    }
}
