//! `weir-fake-gateway`: a stand-in for Weir that proves the conformance harness without it
//! (`tests/conformance/run --fake-gateway`).
//!
//! It writes the status the suite's Setup waits for and nothing else: the GatewayClasses
//! with its controller name get `Accepted` (with `observedGeneration`) and the
//! `supportedFeatures` it is told to publish; every Gateway of such a class gets `Accepted`
//! and `Programmed`, an address of its own (`127.0.1.N`) and a status for each listener. It
//! routes no traffic, so the suite's tests fail after Setup: that is the point at which the
//! harness has done its part. Weir will have to write the same fields, with meaning.

use std::{
    collections::{BTreeSet, HashMap},
    net::Ipv4Addr,
    path::PathBuf,
    pin::pin,
};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, Config, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

/// Marks GatewayClasses and Gateways accepted and programmed, routing nothing.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// The kubeconfig (default: $KUBECONFIG).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// GatewayClasses with this `spec.controllerName` are ours.
    #[arg(long, default_value = "weir.dev/gateway-controller")]
    controller_name: String,
    /// Features published in the GatewayClass status (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "Gateway,HTTPRoute,ReferenceGrant"
    )]
    supported_features: Vec<String>,
    /// The first Gateway address; each Gateway gets the next one.
    #[arg(long, default_value = "127.0.1.1")]
    first_address: Ipv4Addr,
}

const FIELD_MANAGER: &str = "weir-fake-gateway";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    let client = Client::try_from(config)?;
    let classes = api(&client, "GatewayClass");
    let gateways = api(&client, "Gateway");
    let mut class_events =
        pin!(watcher(classes.clone(), watcher::Config::default()).default_backoff());
    let mut gateway_events = pin!(watcher(gateways, watcher::Config::default()).default_backoff());
    let mut ours = BTreeSet::new();
    // Gateways seen before their class was accepted, to revisit when it is.
    let mut waiting: HashMap<String, DynamicObject> = HashMap::new();
    let mut addresses = Addresses::new(cli.first_address);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    eprintln!(
        "weir-fake-gateway: accepting GatewayClasses of {}",
        cli.controller_name
    );
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            Some(event) = class_events.next() => {
                let Some(class) = applied(event) else { continue };
                if class.data["spec"]["controllerName"] != cli.controller_name.as_str() {
                    continue;
                }
                ours.insert(class.name_any());
                accept_class(&client, &class, &cli.supported_features).await;
                let now_ours: Vec<_> = waiting
                    .extract_if(|_, g| ours.contains(class_of(g)))
                    .map(|(_, g)| g)
                    .collect();
                for gateway in now_ours {
                    program_gateway(&client, &gateway, &mut addresses).await;
                }
            }
            Some(event) = gateway_events.next() => {
                let Some(gateway) = applied(event) else { continue };
                if ours.contains(class_of(&gateway)) {
                    program_gateway(&client, &gateway, &mut addresses).await;
                } else {
                    waiting.insert(gateway.uid().unwrap_or_default(), gateway);
                }
            }
        }
    }
}

fn resource(kind: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind);
    let plural = if kind == "GatewayClass" {
        "gatewayclasses"
    } else {
        "gateways"
    };
    ApiResource::from_gvk_with_plural(&gvk, plural)
}

fn api(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource(kind))
}

/// The object of an add or change; errors are logged (the watch retries by itself).
fn applied(event: Result<watcher::Event<DynamicObject>, watcher::Error>) -> Option<DynamicObject> {
    match event {
        Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => Some(object),
        Ok(_) => None,
        Err(error) => {
            eprintln!("weir-fake-gateway: watch failed, retrying: {error}");
            None
        }
    }
}

fn class_of(gateway: &DynamicObject) -> &str {
    gateway.data["spec"]["gatewayClassName"]
        .as_str()
        .unwrap_or("")
}

fn condition(kind: &str, reason: &str, generation: i64) -> Value {
    json!({
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": "weir-fake-gateway routes nothing",
        "observedGeneration": generation,
        "lastTransitionTime": Timestamp::now().to_string(),
    })
}

/// Whether `status.conditions` already says `kinds` for the current generation.
fn up_to_date(object: &DynamicObject, kinds: &[&str]) -> bool {
    let generation = object.metadata.generation.unwrap_or(0);
    let conditions = object.data["status"]["conditions"].as_array();
    kinds.iter().all(|kind| {
        conditions.into_iter().flatten().any(|c| {
            c["type"] == *kind && c["status"] == "True" && c["observedGeneration"] == generation
        })
    })
}

async fn accept_class(client: &Client, class: &DynamicObject, features: &[String]) {
    if up_to_date(class, &["Accepted"]) {
        return;
    }
    let generation = class.metadata.generation.unwrap_or(0);
    let mut features: Vec<&String> = features.iter().collect();
    features.sort();
    let status = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "status": {
            "conditions": [condition("Accepted", "Accepted", generation)],
            "supportedFeatures": features.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
        },
    });
    write_status(client, "GatewayClass", class, status).await;
}

/// One address per Gateway, by uid, kept for the Gateway's life in this process.
struct Addresses {
    next: u32,
    by_uid: HashMap<String, Ipv4Addr>,
}

impl Addresses {
    fn new(first: Ipv4Addr) -> Self {
        Self {
            next: first.into(),
            by_uid: HashMap::new(),
        }
    }

    fn of(&mut self, uid: &str) -> Ipv4Addr {
        *self.by_uid.entry(uid.to_owned()).or_insert_with(|| {
            self.next += 1;
            Ipv4Addr::from(self.next - 1)
        })
    }
}

async fn program_gateway(client: &Client, gateway: &DynamicObject, addresses: &mut Addresses) {
    if up_to_date(gateway, &["Accepted", "Programmed"]) {
        return;
    }
    let generation = gateway.metadata.generation.unwrap_or(0);
    let address = addresses.of(&gateway.uid().unwrap_or_default());
    let listeners: Vec<Value> = gateway.data["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|listener| {
            json!({
                "name": listener["name"],
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                "attachedRoutes": 0,
                "conditions": [
                    condition("Accepted", "Accepted", generation),
                    condition("Programmed", "Programmed", generation),
                    condition("ResolvedRefs", "ResolvedRefs", generation),
                ],
            })
        })
        .collect();
    let status = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "status": {
            "addresses": [{"type": "IPAddress", "value": address.to_string()}],
            "conditions": [
                condition("Accepted", "Accepted", generation),
                condition("Programmed", "Programmed", generation),
            ],
            "listeners": listeners,
        },
    });
    write_status(client, "Gateway", gateway, status).await;
}

async fn write_status(client: &Client, kind: &str, object: &DynamicObject, mut status: Value) {
    let resource = resource(kind);
    let name = object.name_any();
    status["metadata"] = json!({"name": name});
    let api: Api<DynamicObject> = match object.namespace() {
        Some(namespace) => {
            status["metadata"]["namespace"] = namespace.clone().into();
            Api::namespaced_with(client.clone(), &namespace, &resource)
        }
        None => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch_status(&name, &params, &Patch::Apply(&status))
        .await
    {
        Ok(_) => eprintln!("weir-fake-gateway: {kind} {name} accepted"),
        Err(error) => {
            eprintln!("weir-fake-gateway: cannot write the status of {kind} {name}: {error}")
        }
    }
}
