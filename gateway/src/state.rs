//! State that outlives a routing table: per-route and per-rule values that must survive the
//! table swaps of unrelated changes (metrics series, balancer cursors; next, rate limiters,
//! in-flight counts and outlier ejections), and die when their route does.
//!
//! A table holds its state by `Arc`, looked up once when the table is compiled, so a request
//! touches only what its rule already points at. The map here holds the same values weakly:
//! compiling the next table finds the live value for the same key and shares it, and a value no
//! table holds any more is gone. [`StateMap::sweep`] forgets the keys of such values, and says
//! which they were, so their owner can drop what else hangs on the key (metric series).
//!
//! Only the thread that compiles tables uses these maps; requests never do.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError, Weak},
};

/// Values of type `V` by key, held weakly; the tables that use them hold them strongly.
///
/// ```
/// use weir_gateway::state::StateMap;
/// let map: StateMap<&str, u32> = StateMap::default();
/// let first = map.get_or_insert_with(&"a", |_| true, || 1);
/// let again = map.get_or_insert_with(&"a", |_| true, || 2);
/// assert!(std::sync::Arc::ptr_eq(&first, &again));
/// drop((first, again));
/// assert_eq!(map.sweep(), vec!["a"]);
/// ```
pub struct StateMap<K, V> {
    entries: Mutex<HashMap<K, Weak<V>>>,
}

impl<K, V> Default for StateMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V> StateMap<K, V> {
    /// The live value for `key` if there is one and `fits` it (its configuration did not
    /// change); otherwise a new one from `make`, which replaces it for later lookups.
    pub fn get_or_insert_with(
        &self,
        key: &K,
        fits: impl FnOnce(&V) -> bool,
        make: impl FnOnce() -> V,
    ) -> Arc<V> {
        let made: Result<_, std::convert::Infallible> =
            self.try_get_or_insert_with(key, fits, || Ok(make()));
        match made {
            Ok(value) => value,
        }
    }

    /// [`StateMap::get_or_insert_with`] for values whose making can fail; nothing is kept
    /// when it does.
    pub fn try_get_or_insert_with<E>(
        &self,
        key: &K,
        fits: impl FnOnce(&V) -> bool,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let mut entries = self.lock();
        if let Some(live) = entries.get(key).and_then(Weak::upgrade)
            && fits(&live)
        {
            return Ok(live);
        }
        let value = Arc::new(make()?);
        entries.insert(key.clone(), Arc::downgrade(&value));
        Ok(value)
    }

    /// Forgets every key whose value no table holds any more, and returns those keys.
    pub fn sweep(&self) -> Vec<K> {
        let mut gone = Vec::new();
        self.lock().retain(|key, value| {
            let live = value.strong_count() > 0;
            if !live {
                gone.push(key.clone());
            }
            live
        });
        gone
    }

    /// Calls `each` with every live value.
    pub fn for_each_live(&self, mut each: impl FnMut(&V)) {
        let live: Vec<Arc<V>> = self.lock().values().filter_map(Weak::upgrade).collect();
        for value in &live {
            each(value);
        }
    }

    /// Keys with a live value.
    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|v| v.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Weak<V>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_no_longer_fits_is_replaced() {
        let map: StateMap<&str, u32> = StateMap::default();
        let limit_10 = map.get_or_insert_with(&"rule", |_| true, || 10);
        let limit_20 = map.get_or_insert_with(&"rule", |v| *v == 20, || 20);
        assert!(!Arc::ptr_eq(&limit_10, &limit_20));
        let again = map.get_or_insert_with(&"rule", |v| *v == 20, || 0);
        assert!(Arc::ptr_eq(&limit_20, &again));
    }

    #[test]
    fn sweep_forgets_only_what_no_table_holds() {
        let map: StateMap<u8, ()> = StateMap::default();
        let kept = map.get_or_insert_with(&1, |_| true, || ());
        drop(map.get_or_insert_with(&2, |_| true, || ()));
        assert_eq!(map.sweep(), vec![2]);
        assert_eq!(map.len(), 1);
        drop(kept);
        assert_eq!(map.sweep(), vec![1]);
        assert!(map.is_empty());
    }
}
