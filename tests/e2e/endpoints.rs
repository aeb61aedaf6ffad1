//! Endpoints leaving under load: once Weir's live table no longer has an endpoint (set
//! `ready: false`, or removed from its EndpointSlice), no request Weir starts reaches it.
//!
//! "Observed" is the live table, as `/debug/routes` serves it: a request that began before that
//! may still finish on the endpoint, one that began after never does. How long the endpoint
//! kept answering after the edit is printed, not asserted (speed is for benchmarks).

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

    // c goes not-ready; then b is removed from its slice.
    let (a, b, c) = (
        backends[0].address(),
        backends[1].address(),
        backends[2].address(),
    );
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
    for (name, address, objects) in steps {
        let address = address.to_string();
        let edited = Instant::now();
        config.write("service.yaml", &objects);
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
        eventually("200 requests after the change", async || {
            if after(&seen) >= 200 {
                Ok(())
            } else {
                Err(after(&seen).to_string())
            }
        })
        .await;
        let seen = seen.lock().unwrap();
        let strays: Vec<_> = seen
            .iter()
            .filter(|(started, by)| *started > observed && by == name)
            .collect();
        assert!(
            strays.is_empty(),
            "{} requests begun after the change reached {name}",
            strays.len()
        );
        let last = seen
            .iter()
            .filter(|(started, by)| *started > edited && by == name)
            .map(|(started, _)| started.duration_since(edited))
            .max();
        eprintln!(
            "{name}: observed {:?} after the edit; last request to it began {:?} after the edit",
            observed.duration_since(edited),
            last
        );
    }
    assert!(answered("a")() > 0);
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
}
