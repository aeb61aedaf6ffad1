//! The crate graph keeps data flowing one way: the data plane and the contract never link the
//! Kubernetes client, and the contract never links hyper. Checked on Cargo's resolved graph,
//! the same one `cargo tree -p weir-gateway -i kube-client` reads (dev-dependencies of the
//! crate itself included), so a dependency added in the wrong place fails here, not in review.

use std::{
    collections::{BTreeSet, HashMap},
    process::Command,
    sync::OnceLock,
};

use serde_json::Value;

/// Every package `root` links, by name: its dependencies (its own dev-dependencies included,
/// as `cargo tree` counts them) and theirs (normal and build only).
fn linked_by(root: &str) -> BTreeSet<String> {
    let metadata = metadata();
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root_id = names
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{root} is in the workspace"));
    let mut linked = BTreeSet::new();
    let mut pending = vec![(root_id, true)];
    while let Some((id, is_root)) = pending.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let kinds: Vec<&str> = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kind"].as_str().unwrap_or("normal"))
                .collect();
            if !is_root && kinds.iter().all(|k| *k == "dev") {
                continue;
            }
            let dep_id = dep["pkg"].as_str().unwrap();
            if linked.insert(names[dep_id].to_owned()) {
                pending.push((dep_id, false));
            }
        }
    }
    linked
}

/// The workspace's resolved graph for this machine's platform, read once.
fn metadata() -> &'static Value {
    static METADATA: OnceLock<Value> = OnceLock::new();
    METADATA.get_or_init(|| {
        let host = Command::new("rustc")
            .arg("-vV")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
            })
            .expect("rustc -vV names the host");
        let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &host])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("metadata is JSON")
    })
}

#[test]
fn the_data_plane_never_links_kube_nor_the_control_plane() {
    let linked = linked_by("weir-gateway");
    for forbidden in [
        "kube-client",
        "kube",
        "weir-controlplane",
        "weir-crds",
        "weir-informer",
    ] {
        assert!(
            !linked.contains(forbidden),
            "weir-gateway links {forbidden}"
        );
    }
    assert!(linked.contains("weir-contract"));
}

#[test]
fn the_contract_links_neither_kube_nor_hyper() {
    let linked = linked_by("weir-contract");
    for forbidden in ["kube-client", "hyper", "k8s-openapi", "serde"] {
        assert!(
            !linked.contains(forbidden),
            "weir-contract links {forbidden}"
        );
    }
}

#[test]
fn the_informer_layer_knows_no_weir_crate() {
    let linked = linked_by("weir-informer");
    let weir: Vec<_> = linked
        .iter()
        .filter(|name| name.starts_with("weir-"))
        .collect();
    assert!(weir.is_empty(), "weir-informer links {weir:?}");
}
