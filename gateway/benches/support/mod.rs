//! Configurations for the benchmarks, built the way the gateway gets them: objects through
//! the control plane's [`Reconciler`], then a [`Snapshot`].

// Each bench target uses part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_controlplane::{Reconciler, Snapshot, SourceEvent, fixtures, store::Object};

/// The host of route `index`: `r{index}.bench.local`.
pub fn host(index: usize) -> String {
    format!("r{index}.bench.local")
}

/// A reconciler holding Service `echo` (two endpoints) and `routes` Routes, each for its own
/// host with a prefix `/` rule to `echo`.
pub fn reconciler_with(routes: usize) -> Reconciler {
    let mut reconciler = Reconciler::default();
    let apply = |reconciler: &mut Reconciler, object: Object| {
        reconciler.handle(SourceEvent::Apply {
            object,
            origin: Some(Arc::from("bench.yaml")),
        });
    };
    apply(
        &mut reconciler,
        fixtures::service("default", "echo", &[("http", 8080)]),
    );
    apply(
        &mut reconciler,
        fixtures::slice(
            "default",
            "echo-1",
            "echo",
            8080,
            &["127.0.0.1", "127.0.0.2"],
        ),
    );
    for index in 0..routes {
        apply(&mut reconciler, route(index, "/"));
    }
    reconciler
}

/// Route `r{index}` for host `r{index}.bench.local`, prefix `prefix`, to Service `echo`.
pub fn route(index: usize, prefix: &str) -> Object {
    fixtures::route(
        "default",
        &format!("r{index}"),
        &[host(index).as_str()],
        prefix,
        IntOrString::Int(8080),
    )
}

/// The snapshot of `routes` Routes.
pub fn snapshot_with(routes: usize) -> Arc<Snapshot> {
    let snapshot = reconciler_with(routes).snapshot();
    assert_eq!(
        snapshot.routes.len(),
        routes,
        "every bench Route is accepted"
    );
    Arc::new(snapshot)
}
