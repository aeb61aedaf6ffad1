//! The control plane's reconcile: store to snapshot, for a table of 1,000 and 10,000 Routes.
//!
//! `cargo bench -p weir-gateway --bench reconcile`. `full` builds a snapshot from a store no
//! snapshot was taken of (startup); `one-changed` after one Route changed (a typical edit).

mod support;

use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir_controlplane::SourceEvent;

fn reconcile(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile");
    group.sample_size(10);
    for routes in [1_000, 10_000] {
        group.throughput(Throughput::Elements(routes as u64));
        group.bench_function(BenchmarkId::new("full", routes), |b| {
            b.iter_batched(
                || support::reconciler_with(routes),
                |mut reconciler| reconciler.snapshot(),
                BatchSize::LargeInput,
            )
        });
        let mut reconciler = support::reconciler_with(routes);
        reconciler.snapshot();
        let mut edit = 0;
        group.bench_function(BenchmarkId::new("one-changed", routes), |b| {
            b.iter(|| {
                // Alternate the prefix so that every iteration is a real change.
                edit += 1;
                let prefix = if edit % 2 == 0 { "/" } else { "/v2" };
                reconciler.handle(SourceEvent::Apply {
                    object: support::route(routes / 2, prefix),
                    origin: Some(Arc::from("bench.yaml")),
                });
                reconciler.snapshot()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, reconcile);
criterion_main!(benches);
