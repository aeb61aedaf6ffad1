//! Pods: one watch on every pod in the cluster, and one task per pod that takes it from
//! unscheduled to Running and, once it is deleted, back to nothing.
//!
//! The watch only dispatches: each pod's latest state goes into a channel of its own, read by
//! that pod's task, so pods start and stop concurrently while each pod's steps stay in order
//! (bind → wait for its Secrets and ConfigMaps → network → volumes → processes → status →
//! wait for deletion → kill → remove the network → delete with grace 0). A pod's entry in the
//! dispatch table lives until the watch reports the pod gone, so late events about a pod
//! whose task has finished never start it again.
//!
//! This kubelet is also the scheduler: a pod with no `nodeName` is bound to its Node.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    pin::pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Container, Pod, Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    cleanup,
    containers::{self, Launch, Program, Running},
    env::{self, Mounts, PodFacts, Sources},
    logs::LogStore,
    netns::{self, Slot, Slots},
    node::FIELD_MANAGER,
    status::{self, ContainerReport, ContainerState},
    volumes,
};

/// How long a started container may take to open a socket before its pod is reported Ready
/// anyway.
const LISTEN_DEADLINE: Duration = Duration::from_secs(1);
/// How often a pod waiting for its Secrets or ConfigMaps looks again.
const SOURCES_RETRY: Duration = Duration::from_millis(200);
/// How long killed containers may take to be reaped.
const KILL_DEADLINE: Duration = Duration::from_secs(5);
/// How long API writes (binding, status, deletion) are retried.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The kubelet's state shared by the watch and the pod tasks.
pub struct Kubelet {
    pub client: Client,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub programs: Vec<Program>,
    /// Pod directories (`<state>/pods/<uid>`) go here.
    pub state_dir: PathBuf,
    pub logs: Arc<LogStore>,
    /// Cancelled when the kubelet stops: pods tear down without touching the API.
    pub stop: CancellationToken,
    pub tasks: TaskTracker,
    slots: Mutex<Slots>,
    /// Each known pod's latest state, by uid, for its task.
    pods: Mutex<HashMap<String, watch::Sender<Pod>>>,
}

impl Kubelet {
    pub fn new(
        client: Client,
        node_name: String,
        node_ip: IpAddr,
        programs: Vec<Program>,
        state_dir: PathBuf,
        logs: Arc<LogStore>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            node_name,
            node_ip,
            programs,
            state_dir,
            logs,
            stop,
            tasks: TaskTracker::new(),
            slots: Mutex::default(),
            pods: Mutex::default(),
        }
    }
}

/// Watches every pod until the kubelet stops, handing each to its task.
pub async fn run(kubelet: Arc<Kubelet>) {
    let pods = Api::<Pod>::all(kubelet.client.clone());
    let mut events = pin!(watcher(pods, watcher::Config::default()).default_backoff());
    // The uids seen during a relist; the pods not among them were deleted meanwhile.
    let mut relisted: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = kubelet.stop.cancelled() => return,
        };
        match event {
            None => return,
            Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
            Some(Ok(watcher::Event::Apply(pod))) => kubelet.observe(pod),
            Some(Ok(watcher::Event::Delete(pod))) => {
                if let Some(uid) = pod.uid() {
                    kubelet.forget(&uid);
                }
            }
            Some(Ok(watcher::Event::Init)) => relisted = Some(HashSet::new()),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.uid()) {
                    seen.insert(uid);
                }
                kubelet.observe(pod);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(seen) = relisted.take() {
                    kubelet.forget_all_but(&seen);
                }
            }
        }
    }
}

impl Kubelet {
    /// Passes a pod's new state to its task, starting one for a pod seen the first time.
    fn observe(self: &Arc<Self>, pod: Pod) {
        let Some(uid) = pod.uid() else { return };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node.is_some_and(|node| node != self.node_name) {
            return;
        }
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(latest) = pods.get(&uid) {
            latest.send_replace(pod);
            return;
        }
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished || (node.is_none() && pod.metadata.deletion_timestamp.is_some()) {
            return;
        }
        let (latest, updates) = watch::channel(pod);
        pods.insert(uid, latest);
        let span = tracing::info_span!("pod", pod = %name_of(&updates.borrow()));
        let kubelet = self.clone();
        self.tasks
            .spawn(async move { kubelet.lifecycle(updates).await }.instrument(span));
    }

    /// The pod is gone from the API: its task tears it down.
    fn forget(&self, uid: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.remove(uid);
    }

    fn forget_all_but(&self, seen: &HashSet<String>) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.retain(|uid, _| seen.contains(uid));
    }

    /// One pod, from first sight to gone.
    async fn lifecycle(self: Arc<Self>, mut updates: watch::Receiver<Pod>) {
        let mut pod = updates.borrow_and_update().clone();
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
        {
            if let Err(error) = self.bind(&pod).await {
                tracing::error!(%error, "cannot bind the pod to {}", self.node_name);
                return;
            }
            pod.spec.get_or_insert_default().node_name = Some(self.node_name.clone());
        }
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let slot = if host_network {
            None
        } else {
            match self.slots.lock().unwrap_or_else(|e| e.into_inner()).take() {
                Ok(slot) => Some(slot),
                Err(error) => {
                    tracing::error!(%error, "cannot give the pod a network");
                    return;
                }
            }
        };
        let mut started = StartedPod {
            slot,
            network_up: false,
            dir: self
                .state_dir
                .join("pods")
                .join(pod.uid().unwrap_or_default()),
            containers: Vec::new(),
        };
        let end = match self.wait_for_sources(&pod, &mut updates).await {
            Waited::Ready(sources) => {
                let reports = self.start(&pod, &sources, &mut started).await;
                self.write_status(&pod, &started, &reports).await;
                self.run_until_deleted(&pod, &mut updates, &mut started, reports)
                    .await
            }
            Waited::Ended(end) => end,
        };
        self.tear_down(&pod, started).await;
        if end == End::Deleted {
            self.delete_now(&pod).await;
        }
    }

    /// Binds the pod to this Node, as the scheduler would.
    async fn bind(&self, pod: &Pod) -> kube::Result<()> {
        let pods = self.pods_api(pod);
        let name = pod.name_any();
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "uid": pod.uid()},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        });
        retry_writes("binding", || async {
            pods.create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map(drop)
        })
        .await?;
        tracing::debug!(node = self.node_name, "bound");
        Ok(())
    }

    /// Fetches the Secrets and ConfigMaps the pod's volumes and environment refer to, looking
    /// again until the required ones exist (the suite creates some after the Deployments
    /// that mount them), or until the pod is deleted or the kubelet stops.
    async fn wait_for_sources(&self, pod: &Pod, updates: &mut watch::Receiver<Pod>) -> Waited {
        let mut reported = None;
        loop {
            if updates.borrow().metadata.deletion_timestamp.is_some() {
                return Waited::Ended(End::Deleted);
            }
            match self.fetch_sources(pod).await {
                Ok(Fetched::All(sources)) => return Waited::Ready(sources),
                Ok(Fetched::Missing(what)) => {
                    if reported.as_ref() != Some(&what) {
                        tracing::info!(
                            missing = what,
                            "waiting for the pod's Secrets and ConfigMaps"
                        );
                        reported = Some(what);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the pod's Secrets and ConfigMaps")
                }
            }
            let deadline = tokio::time::sleep(SOURCES_RETRY);
            tokio::select! {
                () = deadline => {}
                end = deleted(updates) => return Waited::Ended(end),
                () = self.stop.cancelled() => return Waited::Ended(End::Stopping),
            }
        }
    }

    async fn fetch_sources(&self, pod: &Pod) -> kube::Result<Fetched> {
        let namespace = pod.namespace().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let (mut config_maps, mut secrets) = (BTreeMap::new(), BTreeMap::new());
        // name → required
        let want = |map: &mut BTreeMap<String, bool>, name: &str, required: bool| {
            *map.entry(name.to_owned()).or_insert(false) |= required;
        };
        for volume in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            if let volumes::Source::Object {
                kind,
                name,
                optional,
                ..
            } = volumes::source(volume)
            {
                let map = if kind == "Secret" {
                    &mut secrets
                } else {
                    &mut config_maps
                };
                want(map, name, !optional);
            }
        }
        for container in containers_of(pod) {
            // Whether an environment reference is optional is for env::resolve to judge;
            // here every one is fetched and none waited for.
            let (c, s) = env::referenced_objects(container);
            c.iter()
                .for_each(|name| want(&mut config_maps, name, false));
            s.iter().for_each(|name| want(&mut secrets, name, false));
        }
        let mut sources = Sources::default();
        let mut missing = Vec::new();
        let secret_api = Api::<Secret>::namespaced(self.client.clone(), &namespace);
        for (name, required) in &secrets {
            match secret_api.get_opt(name).await? {
                Some(secret) => {
                    let data = secret.data.unwrap_or_default();
                    let data = data.into_iter().map(|(k, v)| (k, v.0)).collect();
                    sources.secrets.insert(name.clone(), data);
                }
                None if *required => missing.push(format!("Secret {name}")),
                None => {}
            }
        }
        let config_map_api = Api::<ConfigMap>::namespaced(self.client.clone(), &namespace);
        for (name, required) in &config_maps {
            match config_map_api.get_opt(name).await? {
                Some(config_map) => {
                    let mut data: BTreeMap<String, Vec<u8>> = config_map
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    for (k, v) in config_map.binary_data.unwrap_or_default() {
                        data.insert(k, v.0);
                    }
                    sources.config_maps.insert(name.clone(), data);
                }
                None if *required => missing.push(format!("ConfigMap {name}")),
                None => {}
            }
        }
        Ok(if missing.is_empty() {
            Fetched::All(sources)
        } else {
            Fetched::Missing(missing.join(", "))
        })
    }

    /// Creates the pod's network, writes its volumes and starts its containers; what could
    /// not be done is reported in the containers' states, not returned.
    async fn start(
        &self,
        pod: &Pod,
        sources: &Sources,
        started: &mut StartedPod,
    ) -> Vec<ContainerReport> {
        let waiting = |reason: &str, message: String| {
            containers_of(pod)
                .map(|c| ContainerReport {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: ContainerState::Waiting {
                        reason: reason.to_owned(),
                        message: message.clone(),
                    },
                })
                .collect()
        };
        if let Some(slot) = started.slot {
            let created = tokio::task::spawn_blocking(move || netns::create(slot))
                .await
                .expect("creating a network does not panic");
            // Recorded even on failure: a half-made namespace must go too.
            cleanup::network_created(slot);
            started.network_up = true;
            if let Err(error) = created {
                tracing::error!(%error, "cannot create the pod network");
                return waiting("CreatePodSandboxError", error.to_string());
            }
        }
        // The containers' working directory, and where volumes and log copies go.
        if let Err(error) = std::fs::create_dir_all(&started.dir) {
            let message = format!("creating {}: {error}", started.dir.display());
            tracing::error!(message, "cannot create the pod directory");
            return waiting("CreateContainerConfigError", message);
        }
        let mounts_by_volume = match self.write_volumes(pod, sources, &started.dir) {
            Ok(mounts) => mounts,
            Err(error) => {
                tracing::error!(%error, "cannot write the pod's volumes");
                return waiting("CreateContainerConfigError", error);
            }
        };
        let facts = self.facts(pod, started.slot);
        let mut reports = Vec::new();
        for container in containers_of(pod) {
            let report = self
                .start_container(container, &facts, sources, &mounts_by_volume, started)
                .await;
            reports.push(report);
        }
        // Only now, and for all containers at once: a pod is Ready when its servers listen.
        for running in &started.containers {
            if !running.wait_listening(LISTEN_DEADLINE).await {
                tracing::debug!(
                    pid = running.pid,
                    "no listening socket yet; reporting Ready anyway"
                );
            }
        }
        tracing::info!(
            ip = %facts.pod_ip,
            processes = started.containers.len(),
            "started"
        );
        reports
    }

    /// Writes every volume into the pod directory; returns each volume's host directory.
    fn write_volumes(
        &self,
        pod: &Pod,
        sources: &Sources,
        dir: &Path,
    ) -> Result<HashMap<String, PathBuf>, String> {
        let mut dirs = HashMap::new();
        let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
        for volume in volumes.into_iter().flatten() {
            let source = volumes::source(volume);
            let files = match &source {
                volumes::Source::Object { kind, name, .. } => {
                    let objects = if *kind == "Secret" {
                        &sources.secrets
                    } else {
                        &sources.config_maps
                    };
                    let empty = BTreeMap::new();
                    let data = objects.get(*name).unwrap_or(&empty);
                    volumes::files(&volume.name, &source, data).map_err(|e| e.to_string())?
                }
                volumes::Source::Empty { unsupported } => {
                    if let Some(kind) = unsupported {
                        tracing::warn!(
                            volume = volume.name,
                            "{kind} volumes are not supported; an empty directory stands in"
                        );
                    }
                    Vec::new()
                }
            };
            let volume_dir = dir.join("volumes").join(&volume.name);
            volumes::write(&volume_dir, &files)
                .map_err(|e| format!("writing volume {}: {e}", volume.name))?;
            dirs.insert(volume.name.clone(), volume_dir);
        }
        Ok(dirs)
    }

    async fn start_container(
        &self,
        container: &Container,
        facts: &PodFacts,
        sources: &Sources,
        volume_dirs: &HashMap<String, PathBuf>,
        started: &mut StartedPod,
    ) -> ContainerReport {
        let image = container.image.clone().unwrap_or_default();
        let report = |state| ContainerReport {
            name: container.name.clone(),
            image: image.clone(),
            state,
        };
        let waiting = |reason: &str, message: String| {
            report(ContainerState::Waiting {
                reason: reason.to_owned(),
                message,
            })
        };
        let mounts: Mounts = container
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                let dir = volume_dirs.get(&m.name)?;
                let dir = match m.sub_path.as_deref() {
                    Some(sub) if !sub.is_empty() => dir.join(sub),
                    _ => dir.clone(),
                };
                Some((PathBuf::from(&m.mount_path), dir))
            })
            .collect();
        let env = match env::resolve(container, facts, sources, &mounts) {
            Ok(env) => env,
            Err(error) => {
                tracing::error!(container = container.name, %error, "cannot start");
                return waiting("CreateContainerConfigError", error.to_string());
            }
        };
        let Some(program) = containers::program_for(&image, &self.programs) else {
            tracing::debug!(
                container = container.name,
                image,
                "no program for the image; nothing runs"
            );
            return report(ContainerState::Running {
                started_at: Timestamp::now(),
                pid: None,
            });
        };
        if container.command.is_some() {
            tracing::warn!(
                container = container.name,
                "`command` names a file in the image; ignored"
            );
        }
        let launch = Launch {
            program: &program.path,
            args: env::arguments(container, &env, &mounts),
            env,
            namespace: started.slot.map(Slot::namespace),
            working_dir: started.dir.clone(),
            log: self
                .logs
                .open(&facts.namespace, &facts.name, &facts.uid, &container.name),
            log_file: started.dir.join(format!("{}.log", container.name)),
        };
        match containers::start(launch) {
            Ok(running) => {
                let state = ContainerState::Running {
                    started_at: running.started_at,
                    pid: Some(running.pid),
                };
                tracing::debug!(container = container.name, pid = running.pid, "started");
                started.containers.push(running);
                report(state)
            }
            Err(error) => {
                let message = format!(
                    "running {} in {}: {error}",
                    program.path.display(),
                    started.dir.display()
                );
                tracing::error!(container = container.name, message, "cannot start");
                waiting("RunContainerError", message)
            }
        }
    }

    /// Waits for the pod's deletion (or the kubelet's stop), reporting containers that exit.
    async fn run_until_deleted(
        &self,
        pod: &Pod,
        updates: &mut watch::Receiver<Pod>,
        started: &mut StartedPod,
        mut reports: Vec<ContainerReport>,
    ) -> End {
        let (exits, mut exited) = mpsc::unbounded_channel();
        for running in &started.containers {
            let (pid, mut watch, exits) = (running.pid, running.exited.clone(), exits.clone());
            tokio::spawn(async move {
                if let Ok(status) = watch.wait_for(Option::is_some).await {
                    let code = status.and_then(|s| s.code()).unwrap_or(-1);
                    let _ = exits.send((pid, code));
                }
            });
        }
        drop(exits);
        loop {
            tokio::select! {
                end = deleted(updates) => return end,
                () = self.stop.cancelled() => return End::Stopping,
                Some((pid, code)) = exited.recv() => {
                    tracing::warn!(pid, code, "a container exited; it is not restarted");
                    for report in &mut reports {
                        if let ContainerState::Running { started_at, pid: Some(p) } = report.state && p == pid {
                            report.state = ContainerState::Terminated {
                                started_at,
                                finished_at: Timestamp::now(),
                                exit_code: code,
                            };
                        }
                    }
                    self.write_status(pod, started, &reports).await;
                }
            }
        }
    }

    async fn write_status(&self, pod: &Pod, started: &StartedPod, reports: &[ContainerReport]) {
        let facts = self.facts(pod, started.slot);
        let start_time = reports
            .iter()
            .filter_map(|r| match r.state {
                ContainerState::Running { started_at, .. } => Some(started_at),
                _ => None,
            })
            .min()
            .unwrap_or_else(Timestamp::now);
        let patch = status::patch(
            &facts.pod_ip,
            &facts.host_ip,
            start_time,
            reports,
            Timestamp::now(),
        );
        let pods = self.pods_api(pod);
        let name = pod.name_any();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let written = retry_writes("status", || async {
            pods.patch_status(&name, &params, &Patch::Merge(&patch))
                .await
                .map(drop)
        })
        .await;
        if let Err(error) = written {
            tracing::error!(%error, "cannot write the pod status");
        }
    }

    /// Kills the containers and removes the network and the pod's directory and logs.
    async fn tear_down(&self, pod: &Pod, mut started: StartedPod) {
        for running in &mut started.containers {
            running.kill(KILL_DEADLINE).await;
        }
        if let Some(slot) = started.slot {
            if started.network_up {
                let removed = tokio::task::spawn_blocking(move || netns::remove(slot))
                    .await
                    .expect("removing a network does not panic");
                match removed {
                    Ok(()) => cleanup::network_removed(slot),
                    // Still recorded: the exit cleanup tries again.
                    Err(error) => tracing::error!(%error, "cannot remove the pod network"),
                }
            }
            self.slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(slot);
        }
        let _ = std::fs::remove_dir_all(&started.dir);
        self.logs.remove(
            &pod.namespace().unwrap_or_default(),
            &pod.name_any(),
            &pod.uid().unwrap_or_default(),
        );
        tracing::info!("stopped");
    }

    /// Deletes the pod for good (grace period 0), as a kubelet does once its containers are
    /// gone; without it, pods stay Terminating and namespaces never finish deleting.
    async fn delete_now(&self, pod: &Pod) {
        let pods = self.pods_api(pod);
        let name = pod.name_any();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let deleted = retry_writes("deletion", || async {
            match pods.delete(&name, &params).await {
                Ok(_) => Ok(()),
                // Gone already, or a newer pod of the same name: either way not ours to delete.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
                Err(error) => Err(error),
            }
        })
        .await;
        if let Err(error) = deleted {
            tracing::error!(%error, "cannot delete the pod");
        }
    }

    fn facts(&self, pod: &Pod, slot: Option<Slot>) -> PodFacts {
        let spec = pod.spec.as_ref();
        PodFacts {
            name: pod.name_any(),
            namespace: pod.namespace().unwrap_or_default(),
            uid: pod.uid().unwrap_or_default(),
            node_name: self.node_name.clone(),
            pod_ip: slot.map_or_else(|| self.node_ip.to_string(), |s| s.pod_address().to_string()),
            host_ip: self.node_ip.to_string(),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            labels: pod.labels().clone(),
            annotations: pod.annotations().clone(),
        }
    }

    fn pods_api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }
}

/// What a pod task made, to undo in [`Kubelet::tear_down`].
struct StartedPod {
    slot: Option<Slot>,
    network_up: bool,
    dir: PathBuf,
    containers: Vec<Running>,
}

enum Fetched {
    All(Sources),
    /// What is missing, for the log.
    Missing(String),
}

enum Waited {
    Ready(Sources),
    Ended(End),
}

/// Why a pod task ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The pod has a deletionTimestamp: tear down, then delete it for good.
    Deleted,
    /// The pod is gone from the API already.
    Gone,
    /// The kubelet stops: tear down only.
    Stopping,
}

/// Completes when the pod is being deleted or gone.
async fn deleted(updates: &mut watch::Receiver<Pod>) -> End {
    match updates
        .wait_for(|pod| pod.metadata.deletion_timestamp.is_some())
        .await
    {
        Ok(_) => End::Deleted,
        Err(_) => End::Gone,
    }
}

fn containers_of(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| s.containers.iter())
}

fn name_of(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// Runs an API write until it succeeds, a client error (4xx) says it never will, or
/// [`WRITE_DEADLINE`] passes.
async fn retry_writes<F, Fut>(what: &str, mut write: F) -> kube::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
    let mut pause = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(status)) if (400..500).contains(&status.code) => {
                return Err(kube::Error::Api(status));
            }
            Err(error) if tokio::time::Instant::now() + pause >= deadline => return Err(error),
            Err(error) => {
                tracing::debug!(%error, what, "API write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
