//! The Gateway API conformance suite (GATEWAY-HTTP) against Weir, as part of `cargo test`:
//! `tests/conformance/run` with the `weir` binary the tests build, then its ConformanceReport
//! read back. Every core test must pass with none skipped, and every extended feature Weir
//! publishes on its GatewayClass must pass too (the run asks for exactly those).

use std::{path::PathBuf, process::Command};

use weir_e2e::{binaries, cluster::repo_root};

#[test]
fn gateway_http_core_and_every_declared_extended_feature_pass() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    let report = out.join("report.yaml");
    let status = Command::new(repo_root().join("tests/conformance/run"))
        .args([
            "--out",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .env("WEIR_BIN", binaries::weir())
        .status()
        .expect("running tests/conformance/run");
    assert!(
        status.success(),
        "the conformance run failed ({status}); logs in {}",
        out.display()
    );
    let text = std::fs::read_to_string(&report).expect("the run writes a report");
    let report: serde_json::Value = serde_saphyr::from_str(&text).expect("the report is YAML");
    let profile = report["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|profile| profile["name"] == "GATEWAY-HTTP")
        .unwrap_or_else(|| panic!("no GATEWAY-HTTP profile in\n{text}"));
    assert_eq!(profile["core"]["result"], "success", "{text}");
    assert_eq!(
        profile["core"]["statistics"]["Skipped"], 0,
        "no core test skipped: {text}"
    );
    assert_eq!(profile["core"]["statistics"]["Failed"], 0, "{text}");
    if let Some(extended) = profile.get("extended") {
        assert_eq!(
            extended["result"], "success",
            "every declared feature passes: {text}"
        );
    }
}
