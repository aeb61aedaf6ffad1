//! `weir-watch deployments.apps mycustomresources.stable.example.com …`
//!
//! Discovers each named resource at runtime (preferred version, list+watch verbs), starts a
//! shared dynamic informer for it, waits for every cache to sync, then logs each change:
//! `ADD`, `UPDATE` with resourceVersion old → new, and `DELETE` (marked as a tombstone when
//! the delete was missed while the watch was down and found on relist).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use kube::{ResourceExt, api::DynamicObject};
use tokio::sync::mpsc;
use weir_informer::{InformerEvent, InformerFactory, ResourceCatalog, WatchScope};

/// Watch resources by name with dynamic informers.
#[derive(Parser)]
struct Args {
    /// Resources as `plural.group` (`deployments.apps`), or `plural` for the core group (`pods`).
    #[arg(required = true)]
    resources: Vec<String>,
    /// Only this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Kubeconfig (default: $KUBECONFIG, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = weir_informer::connect(args.kubeconfig.as_deref()).await?;
    let catalog = ResourceCatalog::discover(&client)
        .await
        .context("discovering API resources")?;
    let factory = Arc::new(InformerFactory::new(client));
    let scope = WatchScope {
        namespace: args.namespace.clone(),
        ..WatchScope::default()
    };

    let (events, mut received) =
        mpsc::unbounded_channel::<(String, InformerEvent<DynamicObject>)>();
    let mut informers = Vec::new();
    for name in &args.resources {
        let Some(resource) = catalog.resolve(name) else {
            bail!(
                "unknown resource {name:?}: not served by this cluster (try `kubectl api-resources`)"
            );
        };
        if !resource.watchable() {
            bail!("resource {name:?} does not support list and watch");
        }
        let informer = factory.dynamic(resource, scope.clone());
        let mut subscription = informer.subscribe();
        let label = resource.resource.kind.clone();
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                if events.send((label.clone(), event)).is_err() {
                    return;
                }
            }
        });
        informers.push(informer);
    }
    drop(events);
    for informer in &informers {
        informer.wait_synced().await;
    }
    println!("SYNCED {}", args.resources.join(" "));

    while let Some((kind, event)) = received.recv().await {
        match event {
            InformerEvent::Added(o) => println!("ADD {kind} {}", key(&o)),
            InformerEvent::Updated { old, new } => println!(
                "UPDATE {kind} {} resourceVersion {} -> {}",
                key(&new),
                old.resource_version().unwrap_or_default(),
                new.resource_version().unwrap_or_default()
            ),
            InformerEvent::Deleted {
                object,
                final_state_unknown,
            } => {
                let tombstone = if final_state_unknown {
                    " (tombstone: deleted while the watch was down)"
                } else {
                    ""
                };
                println!("DELETE {kind} {}{tombstone}", key(&object));
            }
            InformerEvent::Synced => {}
        }
    }
    Ok(())
}

fn key(object: &DynamicObject) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}
