//! Ingress in standalone mode: IngressClass and Ingress manifests in the directory route to
//! echo backends like Routes do; an Ingress of another controller's class is ignored.

use weir_e2e::{
    ConfigDir, Echo, Weir, eventually,
    manifests::{ingress, ingress_class, service_with_endpoints},
};

const CONTROLLER: &str = "weir.dev/ingress-controller";

/// Who answered each `(host, path)`: an echo instance, or `status <code>`.
async fn answers(weir: &Weir, cases: &[(&str, &str)]) -> Vec<String> {
    let mut answered = Vec::new();
    for (host, path) in cases {
        let by = weir.get(host, path).await.answered_by();
        answered.push(format!("{host}{path} -> {by}"));
    }
    answered
}

#[tokio::test]
async fn ingress_rules_path_types_and_the_default_backend_route_to_backends() {
    let config = ConfigDir::new();
    let (a, b, c) = (
        Echo::start("a").await,
        Echo::start("b").await,
        Echo::start("c").await,
    );
    let mut objects = service_with_endpoints("a", &[a.address()]);
    objects.extend(service_with_endpoints("b", &[b.address()]));
    objects.extend(service_with_endpoints("c", &[c.address()]));
    config.write("services.yaml", &objects);
    config.write(
        "ingress.yaml",
        &[
            ingress_class("weir", CONTROLLER, false),
            ingress("shop")
                .class("weir")
                .path("shop.local", "Prefix", "/foo", "a")
                .path("shop.local", "Exact", "/exact", "b")
                .path("*.wild.local", "ImplementationSpecific", "/", "b")
                .default_backend("c")
                .into(),
        ],
    );
    let weir = Weir::start(&config).await;
    let cases = [
        ("shop.local", "/foo"),
        ("shop.local", "/foo/bar"),
        ("shop.local", "/foobar"),
        ("shop.local", "/exact"),
        ("shop.local", "/exact/more"),
        ("x.wild.local", "/anything"),
        ("other.local", "/"),
    ];
    let expected = [
        "shop.local/foo -> a",
        "shop.local/foo/bar -> a",
        "shop.local/foobar -> c",
        "shop.local/exact -> b",
        "shop.local/exact/more -> c",
        "x.wild.local/anything -> b",
        "other.local/ -> c",
    ];
    eventually("the Ingress is served", async || {
        let answered = answers(&weir, &cases).await;
        if answered == expected {
            Ok(())
        } else {
            Err(format!("{answered:#?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn an_ingress_of_another_controllers_class_is_ignored() {
    let config = ConfigDir::new();
    let (a, b) = (Echo::start("a").await, Echo::start("b").await);
    let mut objects = service_with_endpoints("a", &[a.address()]);
    objects.extend(service_with_endpoints("b", &[b.address()]));
    config.write("services.yaml", &objects);
    config.write(
        "ingress.yaml",
        &[
            ingress_class("weir", CONTROLLER, true),
            ingress_class("nginx", "k8s.io/ingress-nginx", false),
            ingress("theirs")
                .class("nginx")
                .path("theirs.local", "Prefix", "/", "a")
                .into(),
            // Names no class: Weir's default class takes it.
            ingress("ours")
                .path("ours.local", "Prefix", "/", "b")
                .into(),
        ],
    );
    let weir = Weir::start(&config).await;
    eventually("the default-class Ingress is served", async || {
        match weir.get("ours.local", "/").await.answered_by() {
            who if who == "b" => Ok(()),
            who => Err(who),
        }
    })
    .await;
    assert_eq!(
        weir.get("theirs.local", "/").await.answered_by(),
        "status 404"
    );
    let routes = weir.debug_routes().await;
    let ingress_reports: Vec<&str> = routes["ingress_reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(ingress_reports, ["ours"]);
}
