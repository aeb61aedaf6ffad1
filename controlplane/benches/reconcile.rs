//! The control plane's reconcile: store to snapshot, for a table of 1,000 and 10,000 Routes.
//!
//! `cargo bench -p weir-controlplane --bench reconcile`. `full` builds a snapshot from a store
//! no snapshot was taken of (startup); `one-changed` after one Route changed (a typical edit).

use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_contract::Origin;
use weir_controlplane::{Object, Reconciler, SourceEvent, fixtures};

/// A reconciler holding Service `echo` (two endpoints) and `routes` Routes, each for its own
/// host with a prefix `/` rule to `echo`.
fn reconciler_with(routes: usize) -> Reconciler {
    let mut reconciler = Reconciler::default();
    let apply = |reconciler: &mut Reconciler, object: Object| {
        reconciler.handle(SourceEvent::Apply {
            object,
            origin: origin(),
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

fn origin() -> Origin {
    Origin::File(Arc::from("bench.yaml"))
}

/// Route `r{index}` for host `r{index}.bench.local`, prefix `prefix`, to Service `echo`.
fn route(index: usize, prefix: &str) -> Object {
    fixtures::route(
        "default",
        &format!("r{index}"),
        &[format!("r{index}.bench.local").as_str()],
        prefix,
        IntOrString::Int(8080),
    )
}

fn reconcile(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile");
    group.sample_size(10);
    for routes in [1_000, 10_000] {
        group.throughput(Throughput::Elements(routes as u64));
        group.bench_function(BenchmarkId::new("full", routes), |b| {
            b.iter_batched(
                || reconciler_with(routes),
                |mut reconciler| reconciler.snapshot(),
                BatchSize::LargeInput,
            )
        });
        let mut reconciler = reconciler_with(routes);
        reconciler.snapshot();
        let mut edit = 0;
        group.bench_function(BenchmarkId::new("one-changed", routes), |b| {
            b.iter(|| {
                // Alternate the prefix so that every iteration is a real change.
                edit += 1;
                let prefix = if edit % 2 == 0 { "/" } else { "/v2" };
                reconciler.handle(SourceEvent::Apply {
                    object: route(routes / 2, prefix),
                    origin: origin(),
                });
                reconciler.snapshot()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
