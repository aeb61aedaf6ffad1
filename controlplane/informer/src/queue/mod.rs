//! A work queue: keys of objects that need work, handed to a bounded number of workers — the
//! counterpart of client-go's rate-limited workqueue.
//!
//! Informers do not feed it themselves: a consumer decides which events become keys. In Weir
//! its user is the status writer (`weir_controlplane::status`), which queues a Route or an
//! AIModel whenever the reconciler's verdict on it changes and writes its status from a worker,
//! so an object is never written by two workers at once and a failed write is retried with
//! backoff.
//!
//! It owns the life of a key between "something changed" and "a worker has dealt with it":
//! waiting, delayed (by [`WorkQueue::add_after`] or a retry's backoff), processing, and how often
//! it has failed in a row. The invariant it keeps: **a key is processed by at most one worker at a
//! time, and waits at most once.** Adding a key that is already waiting does nothing; adding one
//! that is being processed marks it dirty, and it waits again as soon as its processing ends, so
//! the latest change is neither lost nor raced.
//!
//! A retry ([`WorkQueue::add_rate_limited`]) becomes ready at the later of two limits, as with
//! client-go's default controller rate limiter: the key's own exponential backoff, and a token
//! from one bucket shared by every key, so a burst of failures cannot hammer the API server.
//!
//! Time is `tokio::time`'s, the token bucket's included, so tests run on tokio's paused clock.
//! Delayed keys are kept in a heap and become waiting whenever the queue is next touched at or
//! after their time; [`WorkQueue::run`] sleeps until the earliest of them, so no task is spawned
//! per delayed key.

use std::{
    cmp::{Ordering, Reverse},
    collections::{BinaryHeap, HashMap, HashSet, VecDeque, hash_map::Entry},
    fmt::{Debug, Display},
    future::Future,
    hash::Hash,
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use governor::Quota;
use tokio::{
    sync::{Notify, Semaphore},
    task::JoinSet,
    time::{Instant, sleep_until},
};
use tracing::{Instrument, debug, debug_span, warn};

mod limiter;
mod metrics;

pub use metrics::QueueMetrics;

use limiter::{RetryBucket, backoff_after};

/// How a [`WorkQueue`] spaces out retries.
///
/// ```
/// use std::time::Duration;
/// use weir_informer::queue::QueueConfig;
///
/// let gentle = QueueConfig { overall_rate: 2, ..QueueConfig::default() };
/// assert_eq!(gentle.base_delay, Duration::from_millis(5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Backoff before a key's first retry; each further failure in a row doubles it.
    pub base_delay: Duration,
    /// The longest a key's backoff grows.
    pub max_delay: Duration,
    /// Retries per second the bucket shared by all keys lets through; 0 turns the bucket off.
    pub overall_rate: u32,
    /// Retries the shared bucket lets through at once when full (0 is taken as 1).
    pub overall_burst: u32,
}

impl Default for QueueConfig {
    /// client-go's default controller rate limiter, with the backoff capped at 30 s rather than
    /// 1000 s: a gateway should notice a fixed backend sooner.
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(30),
            overall_rate: 10,
            overall_burst: 100,
        }
    }
}

/// A de-duplicating, rate-limited queue of keys, processed by [`WorkQueue::run`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::convert::Infallible;
/// use weir_informer::queue::{QueueConfig, WorkQueue};
///
/// let queue = WorkQueue::new("routes", QueueConfig::default());
/// queue.add("default/web".to_string());
/// queue.add("default/web".to_string()); // already waiting: not queued twice
/// assert_eq!(queue.len(), 1);
///
/// let workers = tokio::spawn(queue.clone().run(4, |key: String| async move {
///     println!("reconciling {key}");
///     Ok::<(), Infallible>(())
/// }));
/// // … on shutdown:
/// queue.shut_down();
/// workers.await.unwrap();
/// # }
/// ```
pub struct WorkQueue<K> {
    queue_name: String,
    config: QueueConfig,
    state: Mutex<QueueState<K>>,
    /// Woken when a key starts waiting, a delay may have moved earlier, or the queue shuts down.
    key_available: Notify,
    /// `None` when `overall_rate` is 0.
    retry_bucket: Option<RetryBucket>,
    metrics: QueueMetrics,
}

/// Everything behind the queue's lock. No user code and no `.await` runs while it is held.
struct QueueState<K> {
    /// Keys ready for a worker, oldest first.
    waiting: VecDeque<K>,
    /// When each waiting key started waiting: the membership test for `waiting`.
    waiting_since: HashMap<K, Instant>,
    /// Keys a worker holds now.
    processing: HashSet<K>,
    /// Processing keys that were added again, with when; they wait again when processing ends.
    dirty: HashMap<K, Instant>,
    /// Keys not ready yet: at most one entry per key, holding its earliest due time.
    delayed: HashMap<K, Delayed>,
    /// The entries of `delayed` in due order. An entry whose `seq` no longer matches its key's
    /// entry in `delayed` was superseded and is skipped when popped.
    due_order: BinaryHeap<Reverse<DueEntry<K>>>,
    next_due_seq: u64,
    /// Failures in a row per key, since its last `forget`.
    failures: HashMap<K, u32>,
    shutting_down: bool,
}

#[derive(Clone, Copy)]
struct Delayed {
    due_at: Instant,
    seq: u64,
    /// A retry: it must also get a token from the shared bucket before it waits.
    needs_token: bool,
}

struct DueEntry<K> {
    due_at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for DueEntry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for DueEntry<K> {}

impl<K> PartialOrd for DueEntry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for DueEntry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due_at, self.seq).cmp(&(other.due_at, other.seq))
    }
}

impl<K> WorkQueue<K>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
{
    /// An empty queue. `queue_name` names it in logs and prefixes its metrics.
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::<String>::new("routes", QueueConfig::default());
    /// assert!(queue.is_empty());
    /// ```
    pub fn new(queue_name: &str, config: QueueConfig) -> Arc<Self> {
        let retry_bucket = NonZeroU32::new(config.overall_rate).map(|rate| {
            let burst = NonZeroU32::new(config.overall_burst).unwrap_or(NonZeroU32::MIN);
            RetryBucket::new(Quota::per_second(rate).allow_burst(burst))
        });
        Arc::new(Self {
            queue_name: queue_name.to_owned(),
            config,
            state: Mutex::new(QueueState {
                waiting: VecDeque::new(),
                waiting_since: HashMap::new(),
                processing: HashSet::new(),
                dirty: HashMap::new(),
                delayed: HashMap::new(),
                due_order: BinaryHeap::new(),
                next_due_seq: 0,
                failures: HashMap::new(),
                shutting_down: false,
            }),
            key_available: Notify::new(),
            retry_bucket,
            metrics: QueueMetrics::new(queue_name),
        })
    }

    /// Queues `key` now. A key already waiting is not added twice; a key being processed is
    /// marked dirty and queued again once its processing ends. Ignored after [`Self::shut_down`].
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add("default/web");
    /// queue.add("default/web");
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn add(&self, key: K) {
        let mut state = self.lock_state();
        if state.shutting_down {
            return;
        }
        let now = Instant::now();
        self.promote_due(&mut state, now);
        self.enqueue(&mut state, key, now);
        drop(state);
        self.key_available.notify_one();
    }

    /// Queues `key` once `delay` has passed. A key has at most one pending delay, the earliest
    /// asked for: a later `add_after` of a key already due sooner does nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add_after("default/web", Duration::from_secs(1));
    /// assert_eq!(queue.len(), 0);
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// assert_eq!(queue.len(), 1);
    /// # }
    /// ```
    pub fn add_after(&self, key: K, delay: Duration) {
        self.schedule(key, delay, false);
    }

    /// Queues `key` for a retry: after its own backoff (`base_delay * 2^failures`, capped at
    /// `max_delay`) and once the bucket shared by all keys grants it a token, whichever comes
    /// later. Counts a failure for the key until [`Self::forget`].
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add_rate_limited("default/web");
    /// assert_eq!(queue.requeues(&"default/web"), 1);
    /// ```
    pub fn add_rate_limited(&self, key: K) {
        let backoff = {
            let mut state = self.lock_state();
            if state.shutting_down {
                return;
            }
            let failures = state.failures.entry(key.clone()).or_insert(0);
            let backoff = backoff_after(*failures, &self.config);
            *failures = failures.saturating_add(1);
            backoff
        };
        self.metrics.retries.inc();
        self.schedule(key, backoff, self.retry_bucket.is_some());
    }

    /// Resets `key`'s failure count, so its next retry waits only `base_delay`. A retry already
    /// scheduled keeps its time.
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add_rate_limited("default/web");
    /// queue.forget(&"default/web");
    /// assert_eq!(queue.requeues(&"default/web"), 0);
    /// ```
    pub fn forget(&self, key: &K) {
        self.lock_state().failures.remove(key);
    }

    /// How many times in a row `key` has been queued for a retry since its last [`Self::forget`].
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::<&str>::new("routes", QueueConfig::default());
    /// assert_eq!(queue.requeues(&"default/web"), 0);
    /// ```
    pub fn requeues(&self, key: &K) -> u32 {
        self.lock_state().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys waiting for a worker, not counting those delayed or being processed.
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add("default/web");
    /// assert_eq!(queue.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let mut state = self.lock_state();
        if self.promote_due(&mut state, Instant::now()) {
            self.key_available.notify_one();
        }
        state.waiting.len()
    }

    /// Whether no key is waiting for a worker (see [`Self::len`]).
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// assert!(WorkQueue::<&str>::new("routes", QueueConfig::default()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys: [`Self::run`] returns once the keys being processed are done.
    /// Delayed keys are dropped and later adds ignored. Calling it again does nothing.
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.shut_down();
    /// queue.add("default/web");
    /// assert!(queue.is_empty());
    /// ```
    pub fn shut_down(&self) {
        {
            let mut state = self.lock_state();
            state.shutting_down = true;
            state.delayed.clear();
            state.due_order.clear();
        }
        self.key_available.notify_waiters();
    }

    /// Processes keys until [`Self::shut_down`], with at most `concurrency` (at least 1) running
    /// at once. A key whose `worker` returns `Ok` is forgotten; one that returns `Err` (or
    /// panics) is logged and queued with [`Self::add_rate_limited`]. Returns once shut down and
    /// every key in flight is done. Call it once per queue: a second call would run its own
    /// `concurrency` workers (still never two on the same key).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// let workers = tokio::spawn(queue.clone().run(2, |key: String| async move {
    ///     if key.is_empty() { Err("empty key") } else { Ok(()) }
    /// }));
    /// queue.shut_down();
    /// workers.await.unwrap();
    /// # }
    /// ```
    pub async fn run<F, Fut, E>(self: Arc<Self>, concurrency: usize, worker: F)
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send,
    {
        let concurrency = concurrency.max(1);
        debug!(queue = %self.queue_name, concurrency, "work queue workers started");
        let worker = Arc::new(worker);
        let free_workers = Arc::new(Semaphore::new(concurrency));
        let mut in_flight = JoinSet::new();
        loop {
            // A worker slot first, then a key: a key taken from the queue is always running.
            let Ok(worker_slot) = Arc::clone(&free_workers).acquire_owned().await else {
                break;
            };
            let Some(key) = self.next_key().await else {
                break;
            };
            let queue = Arc::clone(&self);
            let worker = Arc::clone(&worker);
            let span = debug_span!("work_item", queue = %self.queue_name, key = ?key);
            in_flight.spawn(
                async move {
                    let _worker_slot = worker_slot;
                    let mut held = HeldKey {
                        queue,
                        key,
                        finished: false,
                    };
                    let started = Instant::now();
                    let outcome = worker(held.key.clone()).await;
                    held.queue
                        .metrics
                        .work_duration
                        .observe(started.elapsed().as_secs_f64());
                    match outcome {
                        Ok(()) => held.queue.forget(&held.key),
                        Err(error) => {
                            held.queue.add_rate_limited(held.key.clone());
                            warn!(
                                queue = %held.queue.queue_name,
                                key = ?held.key,
                                requeues = held.queue.requeues(&held.key),
                                %error,
                                "work item failed; retrying after backoff"
                            );
                        }
                    }
                    held.finished = true;
                }
                .instrument(span),
            );
            // Reap finished tasks so the set holds only what is in flight.
            while in_flight.try_join_next().is_some() {}
        }
        while in_flight.join_next().await.is_some() {}
        debug!(queue = %self.queue_name, "work queue workers stopped");
    }

    /// The queue's metrics, to register or to read.
    ///
    /// ```
    /// use weir_informer::queue::{QueueConfig, WorkQueue};
    ///
    /// let queue = WorkQueue::new("routes", QueueConfig::default());
    /// queue.add("default/web");
    /// assert_eq!(queue.metrics().adds().get(), 1);
    /// ```
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    /// Waits for the next waiting key and marks it processing; `None` once shut down.
    async fn next_key(&self) -> Option<K> {
        loop {
            // Registered before the state is read, so a wake-up between the two is not lost.
            let key_available = self.key_available.notified();
            tokio::pin!(key_available);
            key_available.as_mut().enable();
            let next_due_at = {
                let mut state = self.lock_state();
                if state.shutting_down {
                    return None;
                }
                let now = Instant::now();
                self.promote_due(&mut state, now);
                if let Some(key) = state.waiting.pop_front() {
                    if let Some(since) = state.waiting_since.remove(&key) {
                        let waited = now.saturating_duration_since(since);
                        self.metrics.wait_duration.observe(waited.as_secs_f64());
                    }
                    state.processing.insert(key.clone());
                    self.metrics.set_depth(state.waiting.len());
                    return Some(key);
                }
                state
                    .due_order
                    .peek()
                    .map(|Reverse(due_entry)| due_entry.due_at)
            };
            match next_due_at {
                Some(due_at) => {
                    tokio::select! {
                        () = key_available.as_mut() => {}
                        () = sleep_until(due_at) => {}
                    }
                }
                None => key_available.await,
            }
        }
    }

    /// Ends the processing of `key`; if it was added meanwhile, it waits again.
    fn done(&self, key: &K) {
        let mut state = self.lock_state();
        state.processing.remove(key);
        let mut became_waiting = false;
        if let Some(since) = state.dirty.remove(key)
            && !state.shutting_down
        {
            state.waiting_since.insert(key.clone(), since);
            state.waiting.push_back(key.clone());
            self.metrics.set_depth(state.waiting.len());
            became_waiting = true;
        }
        became_waiting |= self.promote_due(&mut state, Instant::now());
        drop(state);
        if became_waiting {
            self.key_available.notify_one();
        }
    }

    /// Makes `key` wait, or marks it dirty if it is processing. Returns whether it now waits.
    fn enqueue(&self, state: &mut QueueState<K>, key: K, now: Instant) -> bool {
        if state.waiting_since.contains_key(&key) {
            return false;
        }
        if state.processing.contains(&key) {
            if let Entry::Vacant(dirty) = state.dirty.entry(key) {
                dirty.insert(now);
                self.metrics.adds.inc();
            }
            return false;
        }
        self.metrics.adds.inc();
        state.waiting_since.insert(key.clone(), now);
        state.waiting.push_back(key);
        self.metrics.set_depth(state.waiting.len());
        true
    }

    /// Delays `key` by `delay`, keeping the earliest due time if it is already delayed.
    fn schedule(&self, key: K, delay: Duration, needs_token: bool) {
        let mut state = self.lock_state();
        if state.shutting_down {
            return;
        }
        let now = Instant::now();
        let due_at = now + delay;
        let already_due_sooner = state
            .delayed
            .get(&key)
            .is_some_and(|delayed| delayed.due_at <= due_at);
        if !already_due_sooner {
            state.set_due(key, due_at, needs_token);
        }
        // A zero delay is due at once; otherwise a sleeping `run` must see the new due time.
        self.promote_due(&mut state, now);
        drop(state);
        self.key_available.notify_one();
    }

    /// Moves delayed keys due by `now` to the waiting queue, retries only with a token from the
    /// shared bucket (those refused are delayed until the bucket can grant one). Returns whether
    /// any key started waiting.
    fn promote_due(&self, state: &mut QueueState<K>, now: Instant) -> bool {
        let mut became_waiting = false;
        let mut refused_tokens = Vec::new();
        while state
            .due_order
            .peek()
            .is_some_and(|Reverse(due_entry)| due_entry.due_at <= now)
        {
            let Some(Reverse(due_entry)) = state.due_order.pop() else {
                break;
            };
            let Some(delayed) = state.delayed.get(&due_entry.key).copied() else {
                continue;
            };
            if delayed.seq != due_entry.seq {
                continue;
            }
            // A retry of a key that already waits would be de-duplicated: spend no token on it.
            let already_waiting = state.waiting_since.contains_key(&due_entry.key);
            if delayed.needs_token
                && !already_waiting
                && let Some(retry_bucket) = &self.retry_bucket
                && let Err(token_at) = retry_bucket.take_token()
            {
                refused_tokens.push((due_entry.key, token_at));
                continue;
            }
            state.delayed.remove(&due_entry.key);
            became_waiting |= self.enqueue(state, due_entry.key, now);
        }
        for (key, token_at) in refused_tokens {
            state.set_due(key, token_at, true);
        }
        became_waiting
    }

    fn lock_state(&self) -> MutexGuard<'_, QueueState<K>> {
        // Every critical section leaves the state consistent and runs no user code, so a lock
        // poisoned by a panic elsewhere on the holding thread is still safe to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Clone + Eq + Hash> QueueState<K> {
    /// Sets `key`'s single pending due time, superseding any earlier entry in `due_order`.
    fn set_due(&mut self, key: K, due_at: Instant, needs_token: bool) {
        let seq = self.next_due_seq;
        self.next_due_seq += 1;
        self.delayed.insert(
            key.clone(),
            Delayed {
                due_at,
                seq,
                needs_token,
            },
        );
        self.due_order.push(Reverse(DueEntry { due_at, seq, key }));
    }
}

/// A key a worker holds. Dropping it hands the key back to the queue, also when the worker
/// panicked or its task was aborted; then the key is retried as a failure.
struct HeldKey<K>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
{
    queue: Arc<WorkQueue<K>>,
    key: K,
    /// Set once the worker's outcome has been handled.
    finished: bool,
}

impl<K> Drop for HeldKey<K>
where
    K: Clone + Eq + Hash + Debug + Send + Sync + 'static,
{
    fn drop(&mut self) {
        if !self.finished {
            self.queue.add_rate_limited(self.key.clone());
            warn!(
                queue = %self.queue.queue_name,
                key = ?self.key,
                requeues = self.queue.requeues(&self.key),
                "work item panicked or was cancelled; retrying after backoff"
            );
        }
        self.queue.done(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use prometheus_client::{encoding::text::encode, registry::Registry};
    use tokio::{sync::mpsc, time::advance};

    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Backoff from 5 ms to 40 ms, no shared bucket.
    fn backoff_only() -> QueueConfig {
        QueueConfig {
            base_delay: ms(5),
            max_delay: ms(40),
            overall_rate: 0,
            overall_burst: 0,
        }
    }

    /// Counts workers running at once, and the most ever seen.
    #[derive(Default)]
    struct InFlight {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl InFlight {
        fn enter(&self) {
            let now = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
        }

        fn leave(&self) {
            self.now.fetch_sub(1, SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_already_waiting_is_not_queued_twice() {
        let queue = WorkQueue::new("test", QueueConfig::default());
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.len(), 2);

        let (processed_tx, mut processed_rx) = mpsc::unbounded_channel();
        let workers = tokio::spawn(queue.clone().run(1, move |key| {
            processed_tx.send(key).unwrap();
            async { Ok::<(), &str>(()) }
        }));
        assert_eq!(processed_rx.recv().await, Some("a"));
        assert_eq!(processed_rx.recv().await, Some("b"));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(processed_rx.is_empty(), "each key is processed once");
        queue.shut_down();
        workers.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_added_while_processing_runs_again_afterwards_never_concurrently() {
        let queue = WorkQueue::new("test", QueueConfig::default());
        let in_flight = Arc::new(InFlight::default());
        let release = Arc::new(Semaphore::new(0));
        let (started_tx, mut started_rx) = mpsc::unbounded_channel();
        let workers = tokio::spawn(queue.clone().run(4, {
            let in_flight = Arc::clone(&in_flight);
            let release = Arc::clone(&release);
            move |_key: &str| {
                let in_flight = Arc::clone(&in_flight);
                let release = Arc::clone(&release);
                let started_tx = started_tx.clone();
                async move {
                    in_flight.enter();
                    started_tx.send(()).unwrap();
                    release.acquire().await.unwrap().forget();
                    in_flight.leave();
                    Ok::<(), &str>(())
                }
            }
        }));

        queue.add("a");
        started_rx.recv().await.unwrap();
        queue.add("a");
        assert_eq!(queue.len(), 0, "a key being processed does not also wait");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            started_rx.is_empty(),
            "idle workers do not take the dirty key"
        );

        release.add_permits(1);
        started_rx.recv().await.unwrap();
        release.add_permits(1);
        queue.shut_down();
        workers.await.unwrap();
        assert_eq!(in_flight.most.load(SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_key_backs_off_exponentially_from_base_delay_up_to_max_delay() {
        let queue = WorkQueue::new("test", backoff_only());
        let (attempt_tx, mut attempt_rx) = mpsc::unbounded_channel();
        let workers = tokio::spawn(queue.clone().run(1, move |_key: &str| {
            attempt_tx.send(Instant::now()).unwrap();
            async { Err("backend unavailable") }
        }));

        queue.add("a");
        let mut attempts = Vec::new();
        for _ in 0..7 {
            attempts.push(attempt_rx.recv().await.unwrap());
        }
        queue.shut_down();
        workers.await.unwrap();

        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps, [ms(5), ms(10), ms(20), ms(40), ms(40), ms(40)]);
        assert_eq!(queue.requeues(&"a"), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn forget_resets_a_keys_backoff_to_base_delay() {
        let queue = WorkQueue::new("test", backoff_only());
        for _ in 0..3 {
            queue.add_rate_limited("a");
        }
        assert_eq!(queue.requeues(&"a"), 3);

        queue.forget(&"a");
        assert_eq!(queue.requeues(&"a"), 0);

        // Take the retry already scheduled, then fail again: it waits base_delay, not 40 ms.
        let key = queue.next_key().await.unwrap();
        queue.done(&key);
        let failed_at = Instant::now();
        queue.add_rate_limited("a");
        assert_eq!(queue.next_key().await, Some("a"));
        assert_eq!(failed_at.elapsed(), ms(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_bucket_spreads_a_burst_of_distinct_failing_keys() {
        let queue = WorkQueue::new(
            "test",
            QueueConfig {
                base_delay: ms(5),
                max_delay: ms(40),
                overall_rate: 10,
                overall_burst: 5,
            },
        );
        for key in 0..8u32 {
            queue.add_rate_limited(key);
        }

        advance(ms(5)).await;
        assert_eq!(queue.len(), 5, "the burst goes through after the backoff");
        // Then one token every 100 ms.
        for expected in 6..=8 {
            advance(ms(99)).await;
            assert_eq!(queue.len(), expected - 1);
            advance(ms(1)).await;
            assert_eq!(queue.len(), expected);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_keeps_only_the_earliest_pending_time_of_a_key() {
        let queue = WorkQueue::new("test", QueueConfig::default());
        queue.add_after("a", ms(100));
        queue.add_after("a", ms(10));
        queue.add_after("a", ms(50));
        assert_eq!(queue.len(), 0, "delayed keys do not count as waiting");

        advance(ms(10)).await;
        assert_eq!(queue.len(), 1);
        let key = queue.next_key().await.unwrap();
        queue.done(&key);

        advance(ms(200)).await;
        assert_eq!(queue.len(), 0, "the later delays were superseded");
        assert_eq!(queue.metrics().adds().get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_bound_is_never_exceeded() {
        let queue = WorkQueue::new("test", QueueConfig::default());
        for key in 0..20u32 {
            queue.add(key);
        }
        let in_flight = Arc::new(InFlight::default());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let workers = tokio::spawn(queue.clone().run(3, {
            let in_flight = Arc::clone(&in_flight);
            move |key: u32| {
                let in_flight = Arc::clone(&in_flight);
                let done_tx = done_tx.clone();
                async move {
                    in_flight.enter();
                    tokio::time::sleep(ms(10)).await; // the work
                    in_flight.leave();
                    done_tx.send(key).unwrap();
                    Ok::<(), &str>(())
                }
            }
        }));

        let mut processed = Vec::new();
        while processed.len() < 20 {
            processed.push(done_rx.recv().await.unwrap());
        }
        queue.shut_down();
        workers.await.unwrap();

        processed.sort_unstable();
        assert_eq!(processed, (0..20).collect::<Vec<_>>());
        assert_eq!(in_flight.most.load(SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_stops_handing_out_keys_and_run_returns_once_in_flight_work_ends() {
        let queue = WorkQueue::new("test", QueueConfig::default());
        let release = Arc::new(Semaphore::new(0));
        let (started_tx, mut started_rx) = mpsc::unbounded_channel();
        let mut workers = tokio::spawn(queue.clone().run(1, {
            let release = Arc::clone(&release);
            move |key: &str| {
                let release = Arc::clone(&release);
                started_tx.send(key).unwrap();
                async move {
                    release.acquire().await.unwrap().forget();
                    Ok::<(), &str>(())
                }
            }
        }));

        queue.add("slow");
        assert_eq!(started_rx.recv().await, Some("slow"));
        queue.add("next");
        queue.shut_down();
        let still_running = tokio::time::timeout(Duration::from_secs(60), &mut workers).await;
        assert!(still_running.is_err(), "run waits for the key in flight");

        release.add_permits(1);
        workers.await.unwrap();
        assert_eq!(
            started_rx.recv().await,
            None,
            "no key was handed out after shut_down"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_panics_gives_its_key_back_for_a_retry() {
        let queue = WorkQueue::new("test", backoff_only());
        let attempts = Arc::new(AtomicUsize::new(0));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let workers = tokio::spawn(queue.clone().run(1, {
            let attempts = Arc::clone(&attempts);
            move |_key: &str| {
                let attempt = attempts.fetch_add(1, SeqCst) + 1;
                let done_tx = done_tx.clone();
                async move {
                    assert!(attempt > 1, "first attempt panics (expected in this test)");
                    done_tx.send(()).unwrap();
                    Ok::<(), &str>(())
                }
            }
        }));

        queue.add("a");
        done_rx.recv().await.unwrap();
        assert_eq!(attempts.load(SeqCst), 2);
        assert_eq!(queue.requeues(&"a"), 0, "the success forgot the panic");
        queue.shut_down();
        workers.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_count_adds_retries_and_depth() {
        let queue = WorkQueue::new("route-status", QueueConfig::default());
        queue.add("a");
        queue.add("a");
        queue.add("b");
        queue.add_rate_limited("c");
        let metrics = queue.metrics();
        assert_eq!(metrics.adds().get(), 2);
        assert_eq!(metrics.retries().get(), 1);
        assert_eq!(metrics.depth().get(), 2);

        advance(ms(5)).await;
        assert_eq!(queue.len(), 3);
        assert_eq!(metrics.adds().get(), 3);
        assert_eq!(metrics.depth().get(), 3);

        let key = queue.next_key().await.unwrap();
        assert_eq!(metrics.depth().get(), 2);
        queue.done(&key);

        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "workqueue_route_status_depth 2",
            "workqueue_route_status_adds_total 3",
            "workqueue_route_status_retries_total 1",
            "workqueue_route_status_queue_duration_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
