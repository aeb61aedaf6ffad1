//! The routing table: lookup per request, and compile per configuration change.
//!
//! `cargo bench -p weir-gateway --bench table`. Lookups go to a host in the middle of the
//! table; the table's hosts are a hash map and its paths a radix tree, so lookup time should
//! not grow with the number of routes.

mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use weir_gateway::{
    metrics::Metrics,
    table::{RouteScope, TableCompiler},
};

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("table/lookup");
    let compiler = TableCompiler::new(Metrics::default());
    let headers = HeaderMap::new();
    for routes in [1, 100, 10_000] {
        let table = compiler.compile(support::snapshot_with(routes), None);
        let host = support::host(routes / 2);
        assert!(
            table
                .find(
                    &RouteScope::CommandLine,
                    &host,
                    &Method::GET,
                    "/api/orders/42",
                    None,
                    &headers
                )
                .is_some()
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(routes), |b| {
            b.iter(|| {
                table.find(
                    black_box(&RouteScope::CommandLine),
                    black_box(&host),
                    black_box(&Method::GET),
                    black_box("/api/orders/42"),
                    black_box(None),
                    black_box(&headers),
                )
            })
        });
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("table/compile");
    group.sample_size(20);
    let compiler = TableCompiler::new(Metrics::default());
    for routes in [10, 1_000, 10_000] {
        let snapshot = support::snapshot_with(routes);
        group.throughput(Throughput::Elements(routes as u64));
        // From scratch, as at startup.
        group.bench_function(BenchmarkId::new("full", routes), |b| {
            b.iter(|| compiler.compile(black_box(snapshot.clone()), None))
        });
        // The next table after a change elsewhere: unchanged host levels are taken over.
        let previous = compiler.compile(snapshot.clone(), None);
        group.bench_function(BenchmarkId::new("unchanged", routes), |b| {
            b.iter(|| compiler.compile(black_box(snapshot.clone()), Some(&previous)))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, compile);
criterion_main!(benches);
