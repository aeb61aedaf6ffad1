//! The shared informer factory: one informer per (object type, resource, namespace,
//! selectors), so every consumer of a resource shares one watch and one cache.
//!
//! Informers start when first asked for. [`InformerFactory::stop`] stops one and forgets it,
//! so asking again later (a CRD that came back) starts a fresh watch.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::{Api, Client, Resource, api::DynamicObject, core::ApiResource, runtime::watcher};
use serde::de::DeserializeOwned;

use super::{discovery::DiscoveredResource, shared::Informer};

/// What part of a resource to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct WatchScope {
    /// One namespace, or all.
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl WatchScope {
    pub fn all() -> Self {
        Self::default()
    }

    fn describe(&self, resource: &str) -> String {
        let mut text = resource.to_owned();
        if let Some(namespace) = &self.namespace {
            text.push_str(&format!(" in {namespace}"));
        }
        if let Some(labels) = &self.label_selector {
            text.push_str(&format!(" with {labels}"));
        }
        if let Some(fields) = &self.field_selector {
            text.push_str(&format!(" where {fields}"));
        }
        text
    }

    fn watcher_config(&self) -> watcher::Config {
        let mut config = watcher::Config::default();
        if let Some(labels) = &self.label_selector {
            config = config.labels(labels);
        }
        if let Some(fields) = &self.field_selector {
            config = config.fields(fields);
        }
        config
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct InformerKey {
    object_type: TypeId,
    group: String,
    version: String,
    plural: String,
    scope: WatchScope,
}

/// Hands out shared informers.
pub struct InformerFactory {
    client: Client,
    resync: Option<Duration>,
    informers: Mutex<HashMap<InformerKey, Arc<dyn Any + Send + Sync>>>,
}

impl InformerFactory {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            resync: None,
            informers: Mutex::new(HashMap::new()),
        }
    }

    /// Replays every cached object to subscribers as an update this often.
    pub fn with_resync(mut self, period: Duration) -> Self {
        self.resync = Some(period);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The shared informer of a typed namespaced resource (`Service`, `EndpointSlice`, `Route`).
    pub fn namespaced<K>(&self, scope: WatchScope) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        self.get_or_start::<K>(&ApiResource::erase::<K>(&()), scope, |client, namespace| {
            match namespace {
                Some(namespace) => Api::namespaced(client, namespace),
                None => Api::all(client),
            }
        })
    }

    /// The shared informer of a typed cluster-scoped resource (`CustomResourceDefinition`).
    pub fn cluster<K>(&self, mut scope: WatchScope) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        scope.namespace = None;
        self.get_or_start::<K>(&ApiResource::erase::<K>(&()), scope, |client, _| {
            Api::all(client)
        })
    }

    /// The shared informer of a discovered resource, as dynamic objects.
    pub fn dynamic(
        &self,
        resource: &DiscoveredResource,
        scope: WatchScope,
    ) -> Arc<Informer<DynamicObject>> {
        let api_resource = resource.resource.clone();
        let mut scope = scope;
        if !resource.namespaced {
            scope.namespace = None;
        }
        self.get_or_start::<DynamicObject>(&resource.resource, scope, move |client, namespace| {
            match namespace {
                Some(namespace) => Api::namespaced_with(client, namespace, &api_resource),
                None => Api::all_with(client, &api_resource),
            }
        })
    }

    /// Stops an informer and forgets it; the next request for it starts a new watch.
    pub fn stop<K>(&self, informer: &Arc<Informer<K>>)
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.lock().retain(
            |_, existing| match existing.clone().downcast::<Informer<K>>() {
                Ok(existing) => !Arc::ptr_eq(&existing, informer),
                Err(_) => true,
            },
        );
        informer.stop();
    }

    /// How many informers are running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_or_start<K>(
        &self,
        resource: &ApiResource,
        mut scope: WatchScope,
        api: impl FnOnce(Client, Option<&str>) -> Api<K>,
    ) -> Arc<Informer<K>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        if scope.namespace.as_deref() == Some("") {
            scope.namespace = None;
        }
        let key = InformerKey {
            object_type: TypeId::of::<K>(),
            group: resource.group.clone(),
            version: resource.version.clone(),
            plural: resource.plural.clone(),
            scope: scope.clone(),
        };
        let mut informers = self.lock();
        if let Some(existing) = informers
            .get(&key)
            .and_then(|i| i.clone().downcast::<Informer<K>>().ok())
            && !existing.is_stopped()
        {
            return existing;
        }
        let qualified = if resource.group.is_empty() {
            resource.plural.clone()
        } else {
            format!("{}.{}", resource.plural, resource.group)
        };
        let informer = Informer::start(
            scope.describe(&qualified),
            api(self.client.clone(), scope.namespace.as_deref()),
            scope.watcher_config(),
            self.resync,
        );
        informers.insert(key, informer.clone());
        informer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InformerKey, Arc<dyn Any + Send + Sync>>> {
        self.informers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
