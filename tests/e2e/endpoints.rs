//! Endpoints leaving under load: once Weir's live table no longer has an endpoint (set
//! `ready: false`, or removed from its EndpointSlice), no request Weir starts reaches it.
//!
//! "Observed" is the live table, as `/debug/routes` serves it: a request that began before that
//! may still finish on the endpoint, one that began after never does. How long the endpoint
//! kept answering after the edit (p50/p99 over the rounds) is printed, not asserted (speed is
//! for benchmarks).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use weir_e2e::{
    ConfigDir, Echo, Weir, eventually,
    manifests::{endpoint_slice, endpoint_slice_not_ready, route, service},
};

/// How many times each endpoint is taken away (and given back).
const ROUNDS: usize = 10;

/// What the load saw: when each request started and who answered it.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

/// Whether the live table's backends list `address` as a ready endpoint.
async fn live_table_has(weir: &Weir, address: &str) -> bool {
    weir.debug_routes().await.to_string().contains(address)
}

#[tokio::test]
async fn no_request_reaches_an_endpoint_once_its_removal_is_observed() {
    let backends = [
        Echo::start("a").await,
        Echo::start("b").await,
        Echo::start("c").await,
    ];
    let config = ConfigDir::new();
    let mut objects = vec![service("echo")];
    for (i, echo) in backends.iter().enumerate() {
        objects.push(endpoint_slice(
            &format!("echo-{i}"),
            "echo",
            &[echo.address()],
        ));
    }
    config.write("service.yaml", &objects);
    config.write(
        "route.yaml",
        &[route("echo").host("echo.local").backend("echo").into()],
    );
    let weir = Arc::new(Weir::start(&config).await);

    let seen: Seen = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (weir, seen, stop) = (weir.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answered_by = weir.get("echo.local", "/").await.answered_by();
                    seen.lock().unwrap().push((started, answered_by));
                }
            })
        })
        .collect();
    let answered = |name: &str| {
        let name = name.to_owned();
        let seen = seen.clone();
        move || {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|(_, by)| *by == name)
                .count()
        }
    };
    eventually("c serves its share", async || {
        if answered("c")() > 20 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;

    // Round after round: c goes not-ready, then b is removed from its slice, then both come
    // back; each removal is one sample of edit -> last request to the endpoint.
    let (a, b, c) = (
        backends[0].address(),
        backends[1].address(),
        backends[2].address(),
    );
    let all_ready = vec![
        service("echo"),
        endpoint_slice("echo-0", "echo", &[a]),
        endpoint_slice("echo-1", "echo", &[b]),
        endpoint_slice("echo-2", "echo", &[c]),
    ];
    let steps = [
        (
            "c",
            c,
            vec![
                service("echo"),
                endpoint_slice("echo-0", "echo", &[a]),
                endpoint_slice("echo-1", "echo", &[b]),
                endpoint_slice_not_ready("echo-2", "echo", &[c]),
            ],
        ),
        (
            "b",
            b,
            vec![
                service("echo"),
                endpoint_slice("echo-0", "echo", &[a]),
                endpoint_slice("echo-1", "echo", &[]),
                endpoint_slice_not_ready("echo-2", "echo", &[c]),
            ],
        ),
    ];
    let mut last_request_after_edit = Vec::new();
    for _round in 0..ROUNDS {
        for (name, address, objects) in &steps {
            let address = address.to_string();
            let edited = Instant::now();
            config.write("service.yaml", objects);
            eventually(&format!("the live table drops {name}"), async || {
                if live_table_has(&weir, &address).await {
                    Err("still listed".into())
                } else {
                    Ok(())
                }
            })
            .await;
            let observed = Instant::now();
            // Enough requests after the observation to have caught a stray one.
            let after = |seen: &Seen| {
                seen.lock()
                    .unwrap()
                    .iter()
                    .filter(|(started, _)| *started > observed)
                    .count()
            };
            eventually("50 requests after the change", async || {
                if after(&seen) >= 50 {
                    Ok(())
                } else {
                    Err(after(&seen).to_string())
                }
            })
            .await;
            let seen = seen.lock().unwrap();
            let strays = seen
                .iter()
                .filter(|(started, by)| *started > observed && by == name)
                .count();
            assert_eq!(strays, 0, "requests begun after the change reached {name}");
            if let Some(last) = seen
                .iter()
                .filter(|(started, by)| *started > edited && by == name)
                .map(|(started, _)| started.duration_since(edited))
                .max()
            {
                last_request_after_edit.push(last);
            }
        }
        // Both back, and serving, before the next round.
        config.write("service.yaml", &all_ready);
        for name in ["b", "c"] {
            let since = seen.lock().unwrap().len();
            eventually(&format!("{name} serves again"), async || {
                let seen = seen.lock().unwrap();
                if seen[since..].iter().any(|(_, by)| by == name) {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            })
            .await;
        }
    }
    last_request_after_edit.sort();
    let quantile = |q: f64| {
        last_request_after_edit
            .get(((last_request_after_edit.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "endpoint removal: edit -> last request to the endpoint over {} removals: p50 {:?}, p99 {:?}, max {:?} (file-notification debounce included)",
        last_request_after_edit.len(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0),
    );
    assert!(answered("a")() > 0);
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
}
