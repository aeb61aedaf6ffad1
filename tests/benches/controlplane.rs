//! The control plane's speed and memory against a real kube-apiserver (not a test: it
//! asserts nothing and prints figures).
//!
//! `cargo bench -p weir-e2e --bench controlplane` measures, with release builds:
//! 1. Route create → first 200 through Weir, over 100 new Routes while 1000 exist;
//! 2. EndpointSlice change → traffic on the new endpoint, over 50 changes;
//! 3. start → ready with 10k Services, 10k EndpointSlices and 1k Routes in the namespace,
//!    and Weir's RSS once synced.
//!
//! Each latency is taken from just before the API call to the first response that shows
//! the change, polling the proxy over one keep-alive connection; it includes the API
//! server's write and watch delivery, the debounce, reconcile, table compile and swap.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{
    core::v1::Service,
    discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use serde_json::json;
use weir_e2e::{Echo, Weir, cluster::cluster, manifests::SERVICE_PORT};

const EXISTING_ROUTES: usize = 1000;
const NEW_ROUTES: usize = 100;
const SLICE_CHANGES: usize = 50;
const SCALE_SERVICES: usize = 10_000;
const SCALE_ROUTES: usize = 1000;
/// Concurrent API calls while filling the cluster.
const FILL_CONCURRENCY: usize = 32;
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` lists benches; this one needs a cluster and runs only on demand.
        return;
    }
    let cluster = cluster();
    cluster.install_route_crd();
    let client = cluster.admin().await;
    let (a, b) = (
        Echo::start_on_test_host("a").await,
        Echo::start_on_test_host("b").await,
    );

    // 1 and 2: latencies with 1000 Routes in place.
    let namespace = cluster.namespace("bench").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let routes: Api<weir_crds::Route> = Api::namespaced(client.clone(), &namespace);
    services
        .create(&PostParams::default(), &service("echo"))
        .await
        .unwrap();
    slices
        .create(&PostParams::default(), &slice("echo-1", "echo", &a))
        .await
        .unwrap();
    fill(&routes, EXISTING_ROUTES, |i| {
        route(&format!("r{i}"), "echo")
    })
    .await;

    let weir = Weir::start_in_cluster(&cluster.kubeconfig, &namespace).await;
    wait_for(&weir, &host(&format!("r{}", EXISTING_ROUTES - 1)), |who| {
        who == "a"
    })
    .await;

    let mut create_latencies = Vec::with_capacity(NEW_ROUTES);
    // How much of each latency is the API server's own write, for context.
    let mut create_calls = Vec::with_capacity(NEW_ROUTES);
    for i in 0..NEW_ROUTES {
        let name = format!("new{i}");
        let started = Instant::now();
        routes
            .create(&PostParams::default(), &route(&name, "echo"))
            .await
            .unwrap();
        create_calls.push(started.elapsed());
        wait_for(&weir, &host(&name), |who| who == "a").await;
        create_latencies.push(started.elapsed());
    }

    let mut move_latencies = Vec::with_capacity(SLICE_CHANGES);
    let mut move_calls = Vec::with_capacity(SLICE_CHANGES);
    for i in 0..SLICE_CHANGES {
        let (target, name) = if i % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let mut updated = slices.get("echo-1").await.unwrap();
        let moved = slice("echo-1", "echo", target);
        (updated.endpoints, updated.ports) = (moved.endpoints, moved.ports);
        let started = Instant::now();
        slices
            .replace("echo-1", &PostParams::default(), &updated)
            .await
            .unwrap();
        move_calls.push(started.elapsed());
        wait_for(&weir, &host("r0"), |who| who == name).await;
        move_latencies.push(started.elapsed());
    }
    drop(weir);
    eprintln!(
        "route create → first 200: {} (API call: {})\nEndpointSlice change → traffic moved: {} (API call: {})",
        summary(&create_latencies),
        summary(&create_calls),
        summary(&move_latencies),
        summary(&move_calls)
    );

    // 3: start to ready at scale.
    let scale = cluster.namespace("scale").await;
    let filled = Instant::now();
    let scale_services: Api<Service> = Api::namespaced(client.clone(), &scale);
    let scale_slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &scale);
    let scale_routes: Api<weir_crds::Route> = Api::namespaced(client.clone(), &scale);
    // Headless: the test API server's Service range has 254 addresses, and Weir routes to
    // endpoints, never to a ClusterIP.
    fill(&scale_services, SCALE_SERVICES, |i| {
        let mut service = service(&format!("s{i}"));
        service.spec.as_mut().expect("built with a spec").cluster_ip = Some("None".into());
        service
    })
    .await;
    fill(&scale_slices, SCALE_SERVICES, |i| {
        slice(&format!("s{i}-1"), &format!("s{i}"), &a)
    })
    .await;
    fill(&scale_routes, SCALE_ROUTES, |i| {
        route(&format!("r{i}"), &format!("s{i}"))
    })
    .await;
    let fill_time = filled.elapsed();

    let started = Instant::now();
    let weir = Weir::start_in_cluster(&cluster.kubeconfig, &scale).await;
    let ready = started.elapsed();
    wait_for(&weir, &host(&format!("r{}", SCALE_ROUTES - 1)), |who| {
        who == "a"
    })
    .await;
    let (rss, peak) = weir.memory_kib();

    let report = json!({
        "route_create_to_first_200_ms": summary(&create_latencies),
        "of_which_api_create_call_ms": summary(&create_calls),
        "endpointslice_change_to_traffic_moved_ms": summary(&move_latencies),
        "of_which_api_replace_call_ms": summary(&move_calls),
        "start_to_ready_ms": ready.as_secs_f64() * 1e3,
        "rss_once_synced_mib": rss as f64 / 1024.0,
        "peak_rss_mib": peak as f64 / 1024.0,
        "setup": {
            "existing_routes": EXISTING_ROUTES, "new_routes": NEW_ROUTES, "slice_changes": SLICE_CHANGES,
            "scale": {"services": SCALE_SERVICES, "endpoint_slices": SCALE_SERVICES, "routes": SCALE_ROUTES},
            "fill_seconds": fill_time.as_secs_f64(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// Creates `count` objects made by `make`, `FILL_CONCURRENCY` at a time.
async fn fill<K>(api: &Api<K>, count: usize, make: impl Fn(usize) -> K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    stream::iter(0..count)
        .map(|i| {
            let object = make(i);
            async move { api.create(&PostParams::default(), &object).await }
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("creating objects");
}

/// Polls the proxy until the answer for `host` satisfies `done`.
async fn wait_for(weir: &Weir, host: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + CHANGE_DEADLINE;
    loop {
        let who = weir.get(host, "/").await.answered_by();
        if done(&who) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: still {who} after {CHANGE_DEADLINE:?}"
        );
    }
}

fn summary(samples: &[Duration]) -> serde_json::Value {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    json!({"samples": ms.len(), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ms[ms.len() - 1]})
}

fn host(route: &str) -> String {
    format!("{route}.bench.test")
}

fn service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": SERVICE_PORT}]},
    }))
    .unwrap()
}

fn slice(name: &str, service: &str, backend: &Echo) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/service-name".to_owned(), service.to_owned())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![backend.address().ip().to_string()],
            ..Default::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(backend.address().port().into()),
            ..Default::default()
        }]),
    }
}

fn route(name: &str, service: &str) -> weir_crds::Route {
    serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name},
        "spec": {"hosts": [host(name)], "rules": [{"backends": [{"service": {"name": service, "port": SERVICE_PORT}}]}]},
    }))
    .unwrap()
}
