//! Live reconfiguration: edits to the directory change routing while the gateway serves, and
//! a bad edit is reported without costing any other route.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use http::{Method, StatusCode};
use serde_json::Value;
use weir_e2e::{
    World, eventually,
    manifests::{self, route, service_with_endpoints},
    route_file,
};

/// Polls until `GET host path` is answered by `expected` (an instance or `status <code>`).
async fn eventually_answered_by(world: &World, host: &str, path: &str, expected: &str) {
    eventually(
        &format!("{host}{path} answered by {expected}"),
        async || {
            let answered_by = world.weir.get(host, path).await.answered_by();
            if answered_by == expected {
                Ok(())
            } else {
                Err(answered_by)
            }
        },
    )
    .await;
}

/// Polls `/debug/routes` until `pick` finds something in it, and returns that.
async fn eventually_in_debug_routes(
    world: &World,
    what: &str,
    pick: impl Fn(&Value) -> Option<Value>,
) -> Value {
    eventually(what, async || {
        let debug_routes = world.weir.debug_routes().await;
        pick(&debug_routes).ok_or_else(|| debug_routes.to_string())
    })
    .await
}

/// The report for the Route named `name`, if `/debug/routes` has one.
fn report(debug_routes: &Value, name: &str) -> Option<Value> {
    let reports = debug_routes["reports"].as_array()?;
    reports
        .iter()
        .find(|report| report["id"]["name"] == name)
        .cloned()
}

#[tokio::test]
async fn editing_a_route_file_moves_its_traffic() {
    let world = World::start(
        &["a", "b"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
    world.write_route(route("api").host("echo.local").prefix("/api").backend("b"));
    eventually_answered_by(&world, "echo.local", "/api", "b").await;
}

#[tokio::test]
async fn deleting_a_route_file_stops_its_traffic() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
    world.remove_route("api");
    eventually_answered_by(&world, "echo.local", "/api", "status 404").await;
}

#[tokio::test]
async fn changing_an_endpoint_slice_moves_traffic_to_the_new_address() {
    let world = World::start(
        &["a", "b"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
    // Service `a` now has b's address: same Route, same Service, another endpoint.
    world.config.write(
        "service-a.yaml",
        &service_with_endpoints("a", &[world.backend("b").address()]),
    );
    eventually_answered_by(&world, "echo.local", "/api", "b").await;
}

#[tokio::test]
async fn a_broken_yaml_file_is_reported_and_every_route_keeps_serving() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    world.config.write_text("broken.yaml", "kind: [unclosed\n");
    let problem = eventually_in_debug_routes(&world, "broken.yaml is reported", |debug_routes| {
        let problems = debug_routes["source_problems"].as_array()?;
        problems
            .iter()
            .find(|p| p["origin"] == "broken.yaml")
            .cloned()
    })
    .await;
    assert!(
        problem["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("YAML")),
        "{problem}"
    );
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
}

#[tokio::test]
async fn breaking_a_served_route_file_keeps_its_last_good_version_serving() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    world
        .config
        .write_text(&route_file("api"), "kind: Route\nspec: [unclosed\n");
    eventually_in_debug_routes(&world, "the broken file is reported", |debug_routes| {
        let problems = debug_routes["source_problems"].as_array()?;
        problems
            .iter()
            .find(|p| p["origin"] == route_file("api"))
            .cloned()
    })
    .await;
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
}

#[tokio::test]
async fn a_route_with_an_invalid_regex_is_reported_and_other_routes_keep_serving() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    world.write_route(route("bad").host("echo.local").regex("(").backend("a"));
    let bad = eventually_in_debug_routes(&world, "route bad is reported", |debug_routes| {
        report(debug_routes, "bad")
    })
    .await;
    assert_eq!(bad["accepted"], false, "{bad}");
    assert_eq!(bad["accepted_reason"], "InvalidRegex", "{bad}");
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
}

#[tokio::test]
async fn a_route_without_backends_is_reported_and_other_routes_keep_serving() {
    let world = World::start(
        &["a"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    world.write_route(route("empty").host("echo.local").prefix("/empty"));
    let empty = eventually_in_debug_routes(&world, "route empty is reported", |debug_routes| {
        report(debug_routes, "empty")
    })
    .await;
    assert_eq!(empty["accepted"], false, "{empty}");
    assert!(
        empty["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.rules[0].backends")),
        "the message names the field: {empty}"
    );
    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_directory_200_times_under_load_fails_no_request() {
    let served = route("served")
        .host("echo.local")
        .prefix("/api")
        .backend("a");
    let other = |revision: usize| {
        let prefix = format!("/v{revision}");
        route("other")
            .host("other.local")
            .prefix(&prefix)
            .backend("b")
    };
    let world = World::start(&["a", "b"], [served.clone(), other(0)]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (proxy, stop) = (world.weir.proxy().clone(), stop.clone());
        async move {
            let (mut requests, mut failures) = (0_usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                requests += 1;
                let reply = proxy
                    .request(Method::GET, "echo.local", "/api/load")
                    .try_send()
                    .await;
                match reply {
                    Ok(reply) if reply.status == StatusCode::OK && reply.answered_by() == "a" => {}
                    Ok(reply) => failures.push(format!("{}: {}", reply.status, reply.body)),
                    Err(error) => failures.push(error),
                }
            }
            (requests, failures)
        }
    });

    let served_yaml = manifests::to_yaml(&[served.into()]);
    let backend_a = service_with_endpoints("a", &[world.backend("a").address()]);
    let mut generation = world.weir.debug_routes().await["generation"]
        .as_u64()
        .unwrap();
    for revision in 1..=200 {
        world.write_route(other(revision));
        // The same objects in new bytes: the gateway reads them again and must not blink.
        let comment = format!("# revision {revision}\n");
        world
            .config
            .write_text(&route_file("served"), &(comment.clone() + &served_yaml));
        world.config.write_text(
            "service-a.yaml",
            &(comment + &manifests::to_yaml(&backend_a)),
        );
        generation = eventually("the rewrite is live", async || {
            let live = world.weir.debug_routes().await["generation"]
                .as_u64()
                .unwrap();
            if live > generation {
                Ok(live)
            } else {
                Err(format!("generation {live}"))
            }
        })
        .await;
    }

    stop.store(true, Ordering::Relaxed);
    let (requests, failures) = load.await.expect("the load task does not panic");
    assert!(
        requests > 0,
        "the client sent requests while the directory changed"
    );
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!("{requests} requests across 200 rewrites, none failed");
}

#[tokio::test]
async fn bad_files_are_reported_and_the_last_good_table_keeps_serving_in_bounded_memory() {
    let world = World::start(
        &["a", "b"],
        [route("api").host("echo.local").prefix("/api").backend("a")],
    )
    .await;
    // Garbage bytes (a deterministic xorshift stream), text with invalid UTF-8, 100 MB, 100,000
    // documents, and nesting far deeper than any manifest.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let files: [(&str, Vec<u8>, &str); 5] = [
        ("garbage.yaml", garbage, "UTF-8"),
        (
            "latin1.yaml",
            b"apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: caf\xe9}\n".to_vec(),
            "UTF-8",
        ),
        ("huge.yaml", b"a: b\n".repeat(20 << 20), "larger than"),
        ("many.yaml", b"---\n{}\n".repeat(100_000), "99980 more"),
        (
            "nested.yaml",
            [b"[".repeat(100_000), b"]".repeat(100_000)].concat(),
            "",
        ),
    ];
    for (name, bytes, _) in &files {
        std::fs::write(world.config.path().join(name), bytes).expect("the file is written");
    }
    for (name, _, says) in &files {
        let problem = eventually_in_debug_routes(&world, &format!("{name} is reported"), |debug| {
            debug["source_problems"]
                .as_array()?
                .iter()
                .find(|p| {
                    p["origin"].as_str().is_some_and(|o| o.starts_with(name))
                        && p["reason"].as_str().is_some_and(|r| r.contains(says))
                })
                .cloned()
        })
        .await;
        assert!(
            !problem["reason"].as_str().unwrap_or("").is_empty(),
            "{problem}"
        );
    }
    let debug = world.weir.debug_routes().await;
    let problems = debug["source_problems"].as_array().unwrap().len();
    assert!(
        problems < 40,
        "{problems} problems listed: the broken documents are not summarised"
    );

    assert_eq!(
        world.weir.get("echo.local", "/api").await.answered_by(),
        "a"
    );
    // The source is not wedged: a good edit after all that is served.
    world.config.write(
        "more.yaml",
        &[route("more")
            .host("echo.local")
            .prefix("/more")
            .backend("b")
            .into()],
    );
    eventually_answered_by(&world, "echo.local", "/more", "b").await;
    let (_, peak_kib) = world.weir.memory_kib();
    eprintln!("peak RSS after the bad files: {} MiB", peak_kib / 1024);
    assert!(
        peak_kib < 256 * 1024,
        "Weir peaked at {} MiB reading the bad files",
        peak_kib / 1024
    );
}
