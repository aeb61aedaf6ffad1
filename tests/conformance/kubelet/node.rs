//! The one Node this kubelet is: registered Ready, with the address and port the API server
//! uses to reach its log endpoint.
//!
//! The EndpointSlice controller skips pods whose Node does not exist, and the API server
//! proxies `pods/log` to the Node's InternalIP and `daemonEndpoints.kubeletEndpoint.Port`.
//! No node-lifecycle controller runs in the harness, so nothing ever marks the Node
//! NotReady and no heartbeat is needed: it is applied once (server-side, so that a second
//! run against the same cluster just takes it over).

use std::net::IpAddr;

use k8s_openapi::{api::core::v1::Node, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

/// The field manager of everything this kubelet writes.
pub const FIELD_MANAGER: &str = "weir-process-kubelet";

/// Creates (or takes over) the Node and marks it Ready.
pub async fn register(client: Client, name: &str, ip: IpAddr, port: u16) -> kube::Result<()> {
    let nodes = Api::<Node>::all(client);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
            },
        },
    });
    nodes.patch(name, &apply, &Patch::Apply(&node)).await?;
    let now = Timestamp::now().to_string();
    let status = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "status": {
            // Only an InternalIP: with a Hostname address the API server would try to
            // resolve the node's name first.
            "addresses": [{"type": "InternalIP", "address": ip.to_string()}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "weir-process-kubelet runs pods as processes",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "weir-process-kubelet",
                "containerRuntimeVersion": "process://", "kubeletVersion": "v0.0.0-weir",
                "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH,
            },
        },
    });
    nodes
        .patch_status(name, &apply, &Patch::Apply(&status))
        .await?;
    Ok(())
}
