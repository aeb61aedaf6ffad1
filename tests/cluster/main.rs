//! End-to-end tests against a real kube-apiserver: Weir as a process, configured by applying
//! Services, EndpointSlices and Routes, running as an identity bound to exactly the
//! ClusterRole it ships with. One API server for this binary; each test its own namespace.

use std::sync::Arc;

use kube::{ResourceExt, api::DynamicObject};
use weir_e2e::{
    Echo, Weir,
    cluster::{cluster, metric_sum},
    eventually, eventually_within, manifests,
};
use weir_informer::{InformerEvent, InformerFactory, ResourceCatalog, WatchScope};

#[tokio::test]
async fn traffic_follows_endpoint_slices_and_routes_applied_to_the_cluster() {
    let cluster = cluster();
    cluster.install_route_crd();
    let namespace = cluster.namespace("traffic").await;
    let (a, b) = (
        Echo::start_on_test_host("a").await,
        Echo::start_on_test_host("b").await,
    );
    let host = format!("echo.{namespace}.test");
    let mut objects = vec![
        manifests::service("echo"),
        manifests::endpoint_slice("echo-1", "echo", &[a.address()]),
    ];
    objects.push(
        manifests::route("echo")
            .host(&host)
            .prefix("/")
            .backend("echo")
            .into(),
    );
    cluster.apply(&namespace, &objects);

    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;
    eventually("the Route serves from backend a", async || {
        match weir.get(&host, "/hello").await.answered_by() {
            who if who == "a" => Ok(()),
            who => Err(who),
        }
    })
    .await;
    eventually("Weir writes Accepted=True on the Route", async || {
        let accepted = cluster.kubectl(&[
            "get",
            "route",
            "echo",
            "-n",
            &namespace,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}",
        ]);
        if accepted == "True" {
            Ok(())
        } else {
            Err(format!("Accepted={accepted:?}"))
        }
    })
    .await;

    cluster.apply(
        &namespace,
        &[manifests::endpoint_slice("echo-1", "echo", &[b.address()])],
    );
    eventually("traffic moves to backend b", async || {
        match weir.get(&host, "/hello").await.answered_by() {
            who if who == "b" => Ok(()),
            who => Err(who),
        }
    })
    .await;

    cluster.kubectl(&["delete", "route", "echo", "-n", &namespace]);
    eventually("the deleted Route answers 404", async || {
        match weir.get(&host, "/hello").await.status.as_u16() {
            404 => Ok(()),
            status => Err(format!("status {status}")),
        }
    })
    .await;
}

#[tokio::test]
async fn an_invalid_route_gets_a_clear_condition_and_the_others_keep_serving() {
    let cluster = cluster();
    cluster.install_route_crd();
    let namespace = cluster.namespace("invalid").await;
    let echo = Echo::start_on_test_host("a").await;
    let host = format!("good.{namespace}.test");
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            manifests::route("good")
                .host(&host)
                .prefix("/")
                .backend("echo")
                .into(),
            manifests::route("bad")
                .host(&host)
                .regex("/broken/(")
                .backend("echo")
                .into(),
        ],
    );
    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;

    eventually("the bad Route is marked InvalidRegex", async || {
        let reason = cluster.kubectl(&[
            "get",
            "route",
            "bad",
            "-n",
            &namespace,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Accepted\")].reason}",
        ]);
        if reason == "InvalidRegex" {
            Ok(())
        } else {
            Err(format!("reason {reason:?}"))
        }
    })
    .await;
    assert_eq!(
        weir.get(&host, "/x").await.answered_by(),
        "a",
        "the good Route keeps serving"
    );
}

/// Must show 7: the CRD's schema documents every policy field (`kubectl explain`), and a Route
/// using all of them is admitted by the API server's structural validation and by Weir, and
/// serves.
#[tokio::test]
async fn the_crd_explains_every_policy_field_and_a_route_with_all_of_them_serves() {
    let cluster = cluster();
    cluster.install_route_crd();
    let explained = async |field: &str| {
        let what = format!("kubectl explain {field}");
        eventually_within(std::time::Duration::from_secs(30), &what, async || {
            let output = cluster.try_kubectl(&["explain", field]);
            output.map_err(|error| error.lines().next().unwrap_or_default().to_owned())
        })
        .await
    };
    let retry = explained("route.spec.rules.retry").await;
    for text in [
        "attempts",
        "Retries after the first try",
        "when",
        "connect-failure",
        "backoff",
        "budget",
        "nonIdempotent",
    ] {
        assert!(
            retry.contains(text),
            "explain retry lacks {text:?}:\n{retry}"
        );
    }
    let budget = explained("route.spec.rules.retry.budget").await;
    assert!(
        budget.contains("minPerSecond") && budget.contains("Absent: 20"),
        "{budget}"
    );
    for (field, texts) in [
        (
            "route.spec.rules.rateLimit",
            &["requests", "per", "burst", "key"][..],
        ),
        (
            "route.spec.rules.loadBalancer",
            &["LeastRequest", "consistentHash"][..],
        ),
        (
            "route.spec.rules.outlierDetection",
            &[
                "consecutiveErrors",
                "interval",
                "baseEjectionTime",
                "maxEjectionPercent",
            ][..],
        ),
        (
            "route.spec.rules.filters",
            &[
                "requestHeaderModifier",
                "urlRewrite",
                "requestRedirect",
                "requestMirror",
                "directResponse",
            ][..],
        ),
        (
            "route.spec.rules.matches.queryParams",
            &["RegularExpression"][..],
        ),
        (
            "route.spec.rules.timeouts",
            &["request", "backendRequest"][..],
        ),
    ] {
        let explained = explained(field).await;
        for text in texts {
            assert!(
                explained.contains(text),
                "explain {field} lacks {text:?}:\n{explained}"
            );
        }
    }

    let namespace = cluster.namespace("policy").await;
    let echo = Echo::start_on_test_host("a").await;
    let host = format!("policy.{namespace}.test");
    let everything = serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": "everything"},
        "spec": {"hosts": [host], "rules": [{
            "matches": [{
                "path": {"type": "PathPrefix", "value": "/api"},
                "headers": [{"name": "x-user", "type": "RegularExpression", "value": "^u-[0-9]+$"}],
                "queryParams": [{"name": "debug", "value": "1"}],
            }],
            "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}], "add": [{"name": "x-b", "value": "2"}], "remove": ["x-c"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-served-by", "value": "weir"}]}},
                {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
                {"type": "RequestMirror", "requestMirror": {"backend": {"service": {"name": "echo", "port": manifests::SERVICE_PORT}}, "percent": 10}},
            ],
            "backends": [{"service": {"name": "echo", "port": manifests::SERVICE_PORT}}],
            "timeouts": {"request": "10s", "backendRequest": "2s"},
            "retry": {"attempts": 3, "when": ["connect-failure", "reset", "503"], "backoff": {"base": "25ms", "max": "250ms"}, "budget": {"percent": 20, "minPerSecond": 10}},
            "rateLimit": {"requests": 100, "per": "1s", "burst": 20, "key": {"clientIP": {}}},
            "loadBalancer": {"type": "ConsistentHash", "consistentHash": {"cookie": {"name": "sid", "ttl": "1h"}}},
            "outlierDetection": {"consecutiveErrors": 5, "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": 50},
        }, {
            "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
            "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}],
        }]},
    });
    cluster.apply(
        &namespace,
        &[
            manifests::service("echo"),
            manifests::endpoint_slice("echo-1", "echo", &[echo.address()]),
            everything,
        ],
    );
    let weir = Weir::start_in_cluster(&cluster.weir_identity(&namespace).await, &namespace).await;
    eventually("the Route serves, rewritten", async || {
        let reply = weir
            .proxy()
            .request(http::Method::GET, &host, "/api/x?debug=1")
            .header("x-user", "u-1")
            .send()
            .await;
        match (
            reply.answered_by().as_str(),
            reply.headers.get("x-served-by"),
        ) {
            ("a", Some(served_by)) if served_by == "weir" => Ok(()),
            (who, _) => Err(format!("{who}: {}", reply.body)),
        }
    })
    .await;
    let redirect = weir.get(&host, "/old/page").await;
    assert_eq!(redirect.status, http::StatusCode::MOVED_PERMANENTLY);
    let accepted = cluster.kubectl(&[
        "get",
        "route",
        "everything",
        "-n",
        &namespace,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}",
    ]);
    assert_eq!(accepted, "True");
}

#[tokio::test]
async fn two_consumers_of_a_resource_share_one_watch() {
    let cluster = cluster();
    let client = cluster.admin().await;
    let catalog = ResourceCatalog::discover(&client).await.expect("discovery");
    // ConfigMaps: nothing else in this test binary watches them, so the API server's
    // count of open watches on them is this test's alone.
    let configmaps = catalog
        .resolve("configmaps")
        .expect("configmaps are served");
    // The API server watches ConfigMaps itself; count what this test adds to that.
    let watches = || {
        metric_sum(
            &cluster.metrics(),
            "apiserver_longrunning_requests",
            &[("resource", "configmaps"), ("verb", "WATCH")],
        )
    };
    let lists = || {
        metric_sum(
            &cluster.metrics(),
            "apiserver_request_total",
            &[("resource", "configmaps"), ("verb", "LIST")],
        )
    };
    let (watches_before, lists_before) = (watches(), lists());
    let factory = Arc::new(InformerFactory::new(client));
    let first = factory.dynamic(configmaps, WatchScope::all());
    let second = factory.dynamic(configmaps, WatchScope::all());
    assert!(
        Arc::ptr_eq(&first, &second),
        "the factory hands out one informer per resource and scope"
    );
    let (mut first_events, mut second_events) = (first.subscribe(), second.subscribe());
    first.wait_synced().await;

    eventually(
        "the two consumers hold exactly one watch on configmaps",
        async || {
            let opened = watches() - watches_before;
            if opened == 1.0 {
                Ok(())
            } else {
                Err(format!("{opened} watches opened"))
            }
        },
    )
    .await;
    assert_eq!(
        lists() - lists_before,
        1.0,
        "one initial list for both consumers"
    );

    let namespace = cluster.namespace("shared").await;
    cluster.kubectl(&["create", "configmap", "shared-watch", "-n", &namespace]);
    for events in [&mut first_events, &mut second_events] {
        eventually_within(
            weir_e2e::CHANGE_DEADLINE,
            "both consumers see the new ConfigMap",
            async || match events.try_recv() {
                Ok(InformerEvent::Added(object)) if object.name_any() == "shared-watch" => Ok(()),
                Ok(other) => Err(describe(&other)),
                Err(error) => Err(error.to_string()),
            },
        )
        .await;
    }
}

fn describe(event: &InformerEvent<DynamicObject>) -> String {
    match event {
        InformerEvent::Added(o) => format!("added {}", o.name_any()),
        InformerEvent::Updated { new, .. } => format!("updated {}", new.name_any()),
        InformerEvent::Deleted { object, .. } => format!("deleted {}", object.name_any()),
        InformerEvent::Synced => "synced".into(),
    }
}
