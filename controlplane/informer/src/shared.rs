//! A shared informer: one watch, one cache, any number of subscribers.
//!
//! The kube-rs watcher lists, then watches, and relists after a 410 Gone or a broken watch.
//! This informer turns that stream into client-go's events: an object seen for the first time
//! is `Added`, a new version `Updated { old, new }`, a watch delete `Deleted`. On every relist
//! the fresh list is compared with the cache: objects missing from it were deleted while the
//! watch was down, and are delivered as `Deleted { final_state_unknown: true }` — the
//! tombstones client-go calls `DeletedFinalStateUnknown` — so nothing they referenced lingers.
//!
//! Invariant: cache updates and event dispatch happen under one lock, and a new subscriber is
//! replayed the cache under that same lock, so every subscriber sees each change exactly once
//! and in order, whenever it subscribed.

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, utils::Backoff, watcher},
};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::cache::{Cache, object_key};

/// What subscribers of an informer receive.
#[derive(Debug)]
pub enum InformerEvent<K> {
    Added(Arc<K>),
    /// A new version; also sent with `old == new` on each resync.
    Updated {
        old: Arc<K>,
        new: Arc<K>,
    },
    /// Gone. `final_state_unknown` when the delete happened while the watch was down (found
    /// on relist) or the informer stopped: `object` is then the last version seen.
    Deleted {
        object: Arc<K>,
        final_state_unknown: bool,
    },
    /// The first complete list has been delivered.
    Synced,
}

impl<K> Clone for InformerEvent<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Added(o) => Self::Added(o.clone()),
            Self::Updated { old, new } => Self::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            Self::Deleted {
                object,
                final_state_unknown,
            } => Self::Deleted {
                object: object.clone(),
                final_state_unknown: *final_state_unknown,
            },
            Self::Synced => Self::Synced,
        }
    }
}

/// One watch of one resource, its cache, and its subscribers.
pub struct Informer<K> {
    /// What it watches, for logs: `services`, `routes.weir.dev in default`.
    name: String,
    cache: Cache<K>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<InformerEvent<K>>>>,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching through `api`; resyncs every `resync` if given.
    pub fn start(
        name: String,
        api: Api<K>,
        config: watcher::Config,
        resync: Option<Duration>,
    ) -> Arc<Self> {
        let informer = Self::idle(name);
        let span = tracing::info_span!("informer", resource = %informer.name);
        let running = informer.clone();
        tokio::spawn(tracing::Instrument::instrument(
            running.run(api, config, resync),
            span,
        ));
        informer
    }

    /// An informer with no watch yet: what `start` runs, and what unit tests drive by hand.
    fn idle(name: String) -> Arc<Self> {
        Arc::new(Self {
            name,
            cache: Cache::default(),
            subscribers: Mutex::new(Vec::new()),
            synced: watch::Sender::new(false),
            stop: CancellationToken::new(),
        })
    }

    /// The informer's cache: get, list, indexes.
    pub fn cache(&self) -> &Cache<K> {
        &self.cache
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the first complete list is in the cache.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first complete list is in the cache.
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    /// A stream of this informer's events, starting with an `Added` for every cached object
    /// (and `Synced`, if it has).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<InformerEvent<K>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let mut subscribers = self.lock_subscribers();
        for object in self.cache.list() {
            let _ = sender.send(InformerEvent::Added(object));
        }
        if self.has_synced() {
            let _ = sender.send(InformerEvent::Synced);
        }
        subscribers.push(sender);
        receiver
    }

    /// Stops the watch. Every cached object is delivered as deleted (its type is gone, or the
    /// consumer no longer wants it) and the cache is emptied.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    async fn run(self: Arc<Self>, api: Api<K>, config: watcher::Config, resync: Option<Duration>) {
        let stream = watcher(api, config)
            // 410 Gone (the resource version expired, as after an API server restart): the
            // watcher relists on its next poll, which must not wait out a backoff.
            .filter(|event| {
                let expired =
                    matches!(event, Err(watcher::Error::WatchError(status)) if status.code == 410);
                if expired {
                    tracing::info!("resource version expired; relisting");
                }
                std::future::ready(!expired)
            })
            .backoff(WatchBackoff::new())
            // managedFields are often half an object's size and Weir never reads them.
            .modify(|object: &mut K| object.managed_fields_mut().clear());
        let mut stream = std::pin::pin!(stream);
        let mut resync_timer = resync
            .map(|period| tokio::time::interval_at(tokio::time::Instant::now() + period, period));
        let mut relisted: Option<Vec<Arc<K>>> = None;
        loop {
            let resync_tick = async {
                match &mut resync_timer {
                    Some(timer) => timer.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => break,
                _ = resync_tick => self.resync(),
                event = stream.next() => match event {
                    None => break,
                    Some(Err(error)) => tracing::warn!(%error, "watch failed; retrying with backoff"),
                    Some(Ok(watcher::Event::Init)) => relisted = Some(Vec::new()),
                    Some(Ok(watcher::Event::InitApply(object))) => relisted.get_or_insert_default().push(Arc::new(object)),
                    Some(Ok(watcher::Event::InitDone)) => self.replace(relisted.take().unwrap_or_default()),
                    Some(Ok(watcher::Event::Apply(object))) => self.apply(Arc::new(object)),
                    Some(Ok(watcher::Event::Delete(object))) => self.delete(&object),
                }
            }
        }
        let mut subscribers = self.lock_subscribers();
        for object in self.cache.replace(Vec::new()) {
            dispatch(
                &mut subscribers,
                InformerEvent::Deleted {
                    object,
                    final_state_unknown: true,
                },
            );
        }
        self.synced.send_replace(false);
        tracing::info!("informer stopped");
    }

    fn apply(&self, object: Arc<K>) {
        let mut subscribers = self.lock_subscribers();
        let event = match self.cache.insert(object.clone()) {
            None => InformerEvent::Added(object),
            Some(old) if old.resource_version() == object.resource_version() => return,
            Some(old) => InformerEvent::Updated { old, new: object },
        };
        dispatch(&mut subscribers, event);
    }

    fn delete(&self, object: &K) {
        let mut subscribers = self.lock_subscribers();
        if let Some(last) = self.cache.remove(&object_key(object)) {
            dispatch(
                &mut subscribers,
                InformerEvent::Deleted {
                    object: last,
                    final_state_unknown: false,
                },
            );
        }
    }

    /// A complete list: diff it against the cache, then replace the cache with it.
    fn replace(&self, listed: Vec<Arc<K>>) {
        let mut subscribers = self.lock_subscribers();
        let mut events = Vec::with_capacity(listed.len());
        for object in &listed {
            match self.cache.get(&object_key(&**object)) {
                None => events.push(InformerEvent::Added(object.clone())),
                Some(old) if old.resource_version() != object.resource_version() => {
                    events.push(InformerEvent::Updated {
                        old,
                        new: object.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        let missed_deletes = self.cache.replace(listed);
        if !missed_deletes.is_empty() {
            tracing::info!(
                count = missed_deletes.len(),
                "relist found objects deleted while the watch was down"
            );
        }
        events.extend(
            missed_deletes
                .into_iter()
                .map(|object| InformerEvent::Deleted {
                    object,
                    final_state_unknown: true,
                }),
        );
        for event in events {
            dispatch(&mut subscribers, event);
        }
        if !self.has_synced() {
            self.synced.send_replace(true);
            dispatch(&mut subscribers, InformerEvent::Synced);
            tracing::info!(objects = self.cache.len(), "informer synced");
        }
    }

    fn resync(&self) {
        let mut subscribers = self.lock_subscribers();
        for object in self.cache.list() {
            dispatch(
                &mut subscribers,
                InformerEvent::Updated {
                    old: object.clone(),
                    new: object,
                },
            );
        }
    }

    fn lock_subscribers(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<InformerEvent<K>>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K> Drop for Informer<K> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sends to every subscriber, forgetting those that went away.
fn dispatch<K>(
    subscribers: &mut Vec<mpsc::UnboundedSender<InformerEvent<K>>>,
    event: InformerEvent<K>,
) {
    subscribers.retain(|subscriber| subscriber.send(event.clone()).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn config_map(name: &str, resource_version: &str) -> Arc<ConfigMap> {
        let mut object = ConfigMap::default();
        object.metadata.namespace = Some("default".into());
        object.metadata.name = Some(name.into());
        object.metadata.resource_version = Some(resource_version.into());
        Arc::new(object)
    }

    fn drain(events: &mut mpsc::UnboundedReceiver<InformerEvent<ConfigMap>>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(match event {
                InformerEvent::Added(o) => {
                    format!("added {}@{}", o.name_any(), o.resource_version().unwrap())
                }
                InformerEvent::Updated { old, new } => format!(
                    "updated {} {}->{}",
                    new.name_any(),
                    old.resource_version().unwrap(),
                    new.resource_version().unwrap()
                ),
                InformerEvent::Deleted {
                    object,
                    final_state_unknown,
                } => {
                    format!(
                        "deleted {}{}",
                        object.name_any(),
                        if final_state_unknown {
                            " (tombstone)"
                        } else {
                            ""
                        }
                    )
                }
                InformerEvent::Synced => "synced".into(),
            });
        }
        seen
    }

    #[test]
    fn first_list_adds_everything_then_reports_synced() {
        let informer = Informer::<ConfigMap>::idle("configmaps".into());
        let mut events = informer.subscribe();
        assert!(!informer.has_synced());
        informer.replace(vec![config_map("a", "1"), config_map("b", "1")]);
        let mut seen = drain(&mut events);
        seen[..2].sort();
        assert_eq!(seen, ["added a@1", "added b@1", "synced"]);
        assert!(informer.has_synced());
    }

    #[test]
    fn relist_turns_missing_objects_into_tombstones_and_changed_ones_into_updates() {
        let informer = Informer::<ConfigMap>::idle("configmaps".into());
        informer.replace(vec![
            config_map("kept", "1"),
            config_map("changed", "1"),
            config_map("gone", "1"),
        ]);
        let mut events = informer.subscribe();
        drain(&mut events);

        informer.replace(vec![
            config_map("kept", "1"),
            config_map("changed", "2"),
            config_map("new", "3"),
        ]);
        let mut seen = drain(&mut events);
        seen.sort();
        assert_eq!(
            seen,
            [
                "added new@3",
                "deleted gone (tombstone)",
                "updated changed 1->2"
            ]
        );
        assert!(informer.cache().get("default/gone").is_none());
    }

    #[test]
    fn watch_events_update_the_cache_and_skip_unchanged_versions() {
        let informer = Informer::<ConfigMap>::idle("configmaps".into());
        informer.replace(Vec::new());
        let mut events = informer.subscribe();
        drain(&mut events);
        informer.apply(config_map("a", "1"));
        informer.apply(config_map("a", "1"));
        informer.apply(config_map("a", "2"));
        informer.delete(&config_map("a", "2"));
        informer.delete(&config_map("never-seen", "1"));
        assert_eq!(
            drain(&mut events),
            ["added a@1", "updated a 1->2", "deleted a"]
        );
    }

    #[test]
    fn a_late_subscriber_is_replayed_the_cache_then_follows_changes() {
        let informer = Informer::<ConfigMap>::idle("configmaps".into());
        informer.replace(vec![config_map("a", "1")]);
        let mut late = informer.subscribe();
        informer.apply(config_map("b", "1"));
        assert_eq!(drain(&mut late), ["added a@1", "synced", "added b@1"]);
    }

    #[test]
    fn resync_replays_every_object_as_an_update_to_itself() {
        let informer = Informer::<ConfigMap>::idle("configmaps".into());
        informer.replace(vec![config_map("a", "7")]);
        let mut events = informer.subscribe();
        drain(&mut events);
        informer.resync();
        assert_eq!(drain(&mut events), ["updated a 7->7"]);
    }
}

/// Delays between attempts at a failed list or watch: 250 ms doubling to at most 4 s, each
/// with up to a quarter of random jitter, back to 250 ms once an attempt succeeds.
///
/// kube-rs's default climbs to 30 s, so after an API server outage of half a minute the next
/// attempt could come up to 30 s after the server is back, and every change made meanwhile
/// would wait for it. At 4 s an outage costs the API server one attempt per informer and
/// replica every few seconds, and Weir catches up within seconds of its return.
#[derive(Debug)]
struct WatchBackoff {
    next: Duration,
    /// xorshift state for the jitter (spreading replicas' retries needs no better randomness).
    seed: u64,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(4);

    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x2545_f491_4f6c_dd1d, |since| since.as_nanos() as u64)
            | 1;
        Self {
            next: Self::FIRST,
            seed,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let jitter = delay.mul_f64((self.seed % 1024) as f64 / 4096.0);
        Some(delay + jitter)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn watch_retries_double_to_a_few_seconds_and_start_over_after_a_success() {
        let mut backoff = WatchBackoff::new();
        let delays: Vec<Duration> = backoff.by_ref().take(8).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] < Duration::from_millis(313));
        assert!(delays[1] >= Duration::from_millis(500));
        for delay in &delays[5..] {
            assert!(*delay >= WatchBackoff::MAX && *delay <= WatchBackoff::MAX.mul_f64(1.25));
        }
        backoff.reset();
        assert!(backoff.next().unwrap() < Duration::from_millis(313));
    }
}
