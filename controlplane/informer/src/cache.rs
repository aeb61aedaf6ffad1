//! The informer cache: objects by key, with listers and custom indexes.
//!
//! Keys are client-go's: `namespace/name`, or `name` for cluster-scoped objects. An index is a
//! function from an object to the values it is filed under (EndpointSlices by the Service their
//! label names, say); every insert and remove updates every index under the same
//! lock, so a lookup by index never sees an object the cache no longer holds.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

use kube::{Resource, ResourceExt};

/// A function filing an object under zero or more index values.
pub type IndexFn<K> = Arc<dyn Fn(&K) -> Vec<String> + Send + Sync>;

/// client-go's object key: `namespace/name`, or `name` when cluster-scoped.
pub fn object_key<K: Resource>(object: &K) -> String {
    let name = object.meta().name.as_deref().unwrap_or_default();
    match object.meta().namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

struct Index<K> {
    file_under: IndexFn<K>,
    keys_by_value: HashMap<String, HashSet<String>>,
}

struct CacheState<K> {
    objects: HashMap<String, Arc<K>>,
    indexes: HashMap<String, Index<K>>,
}

/// A thread-safe store of the objects an informer has seen.
pub struct Cache<K> {
    state: RwLock<CacheState<K>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            state: RwLock::new(CacheState {
                objects: HashMap::new(),
                indexes: HashMap::new(),
            }),
        }
    }
}

impl<K: Resource> Cache<K> {
    /// The object at `namespace/name` (or `name` for cluster-scoped objects).
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    /// The object `name` in `namespace`.
    pub fn get_namespaced(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.get(&format!("{namespace}/{name}"))
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// Every object in one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .objects
            .values()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }

    /// Every key.
    pub fn keys(&self) -> Vec<String> {
        self.read().objects.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an index and files every object already cached under it. Replaces an index of
    /// the same name.
    pub fn add_index(&self, name: &str, file_under: IndexFn<K>) {
        let mut state = self.write();
        let mut index = Index {
            file_under,
            keys_by_value: HashMap::new(),
        };
        for (key, object) in &state.objects {
            file(&mut index, key, object);
        }
        state.indexes.insert(name.to_owned(), index);
    }

    /// The objects filed under `value` in index `name`; empty for an unknown index.
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let state = self.read();
        let Some(keys) = state
            .indexes
            .get(name)
            .and_then(|i| i.keys_by_value.get(value))
        else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| state.objects.get(k).cloned())
            .collect()
    }

    /// Stores an object; returns the one it replaced.
    pub fn insert(&self, object: Arc<K>) -> Option<Arc<K>> {
        let key = object_key(&*object);
        let mut state = self.write();
        let old = state.objects.insert(key.clone(), object.clone());
        let CacheState { indexes, .. } = &mut *state;
        for index in indexes.values_mut() {
            if let Some(old) = &old {
                unfile(index, &key, old);
            }
            file(index, &key, &object);
        }
        old
    }

    /// Removes an object by key; returns it.
    pub fn remove(&self, key: &str) -> Option<Arc<K>> {
        let mut state = self.write();
        let old = state.objects.remove(key)?;
        for index in state.indexes.values_mut() {
            unfile(index, key, &old);
        }
        Some(old)
    }

    /// Replaces the whole content (a relist); returns the objects that were dropped.
    pub fn replace(&self, objects: Vec<Arc<K>>) -> Vec<Arc<K>> {
        let fresh: HashMap<String, Arc<K>> =
            objects.into_iter().map(|o| (object_key(&*o), o)).collect();
        let mut state = self.write();
        let old = std::mem::replace(&mut state.objects, fresh);
        let CacheState { objects, indexes } = &mut *state;
        for index in indexes.values_mut() {
            index.keys_by_value.clear();
            for (key, object) in objects.iter() {
                file(index, key, object);
            }
        }
        old.into_iter()
            .filter(|(key, _)| !objects.contains_key(key))
            .map(|(_, o)| o)
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState<K>> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than stopping the gateway would, so poisoning is ignored.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheState<K>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn file<K>(index: &mut Index<K>, key: &str, object: &K) {
    for value in (index.file_under)(object) {
        index
            .keys_by_value
            .entry(value)
            .or_default()
            .insert(key.to_owned());
    }
}

fn unfile<K>(index: &mut Index<K>, key: &str, object: &K) {
    for value in (index.file_under)(object) {
        if let Some(keys) = index.keys_by_value.get_mut(&value) {
            keys.remove(key);
            if keys.is_empty() {
                index.keys_by_value.remove(&value);
            }
        }
    }
}

/// Files objects under `namespace/<value of label>`: with `kubernetes.io/service-name`, the
/// EndpointSlices of each Service.
///
/// ```
/// use std::collections::BTreeMap;
/// use k8s_openapi::api::discovery::v1::EndpointSlice;
/// use weir_informer::{Cache, by_label};
///
/// let cache = Cache::default();
/// cache.add_index("service", by_label("kubernetes.io/service-name"));
/// let mut slice = EndpointSlice::default();
/// slice.metadata.namespace = Some("default".into());
/// slice.metadata.name = Some("echo-abc".into());
/// slice.metadata.labels = Some(BTreeMap::from([("kubernetes.io/service-name".into(), "echo".into())]));
/// cache.insert(std::sync::Arc::new(slice));
/// assert_eq!(cache.by_index("service", "default/echo").len(), 1);
/// ```
pub fn by_label<K: Resource>(label: &'static str) -> IndexFn<K> {
    Arc::new(
        move |object: &K| match (object.namespace(), object.labels().get(label)) {
            (Some(namespace), Some(value)) => vec![format!("{namespace}/{value}")],
            _ => Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    const SERVICE_NAME: &str = "kubernetes.io/service-name";

    fn by_service_name() -> IndexFn<EndpointSlice> {
        by_label(SERVICE_NAME)
    }

    /// An EndpointSlice of `service` in `default`.
    fn slice(name: &str, service: &str) -> Arc<EndpointSlice> {
        let mut slice = EndpointSlice::default();
        slice.metadata.namespace = Some("default".into());
        slice.metadata.name = Some(name.into());
        slice.metadata.labels = Some([(SERVICE_NAME.to_owned(), service.to_owned())].into());
        Arc::new(slice)
    }

    fn names(objects: Vec<Arc<EndpointSlice>>) -> Vec<String> {
        let mut names: Vec<String> = objects.iter().map(|o| o.name_any()).collect();
        names.sort();
        names
    }

    #[test]
    fn gets_and_lists_by_key_and_namespace() {
        let cache = Cache::default();
        cache.insert(slice("a", "echo"));
        assert_eq!(cache.get("default/a").unwrap().name_any(), "a");
        assert!(cache.get_namespaced("default", "b").is_none());
        assert_eq!(cache.list_namespace("default").len(), 1);
        assert!(cache.list_namespace("other").is_empty());
    }

    #[test]
    fn index_follows_inserts_updates_and_removes() {
        let cache = Cache::default();
        cache.add_index("service", by_service_name());
        cache.insert(slice("a", "echo"));
        cache.insert(slice("b", "echo"));
        cache.insert(slice("c", "other"));
        assert_eq!(names(cache.by_index("service", "default/echo")), ["a", "b"]);

        cache.insert(slice("b", "other"));
        assert_eq!(names(cache.by_index("service", "default/echo")), ["a"]);
        assert_eq!(
            names(cache.by_index("service", "default/other")),
            ["b", "c"]
        );

        cache.remove("default/a");
        assert!(cache.by_index("service", "default/echo").is_empty());
    }

    #[test]
    fn an_index_added_late_files_what_is_already_cached() {
        let cache = Cache::default();
        cache.insert(slice("a", "echo"));
        cache.add_index("service", by_service_name());
        assert_eq!(names(cache.by_index("service", "default/echo")), ["a"]);
    }

    #[test]
    fn replace_returns_what_disappeared_and_reindexes() {
        let cache = Cache::default();
        cache.add_index("service", by_service_name());
        cache.insert(slice("a", "echo"));
        cache.insert(slice("b", "echo"));
        let dropped = cache.replace(vec![slice("b", "echo"), slice("c", "echo")]);
        assert_eq!(names(dropped), ["a"]);
        assert_eq!(names(cache.by_index("service", "default/echo")), ["b", "c"]);
    }
}
