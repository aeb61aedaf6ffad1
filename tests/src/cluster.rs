//! A real kube-apiserver (with etcd) for end-to-end tests: one per test binary.
//!
//! It is started through `tests/envtest/run`, which builds the binaries once (cached outside
//! the repo) and tears everything down when the command it runs ends. The command here is a
//! `cat` reading this process's stdin: when the test binary exits, for whatever reason, the
//! pipe closes, `cat` ends, and the API server and etcd go with it. Each test gets its own
//! namespace; tests that change cluster-wide things (CRDs, the API server itself) live in a
//! test binary of their own.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::{
    authentication::v1::TokenRequest,
    core::v1::{Namespace, ServiceAccount},
    rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// The API server of this test binary.
pub struct Cluster {
    /// The admin kubeconfig (group system:masters).
    pub kubeconfig: PathBuf,
    /// The envtest temp dir: logs, certs, the API server's command line and pid.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// etcd's client URL.
    pub etcd: String,
    /// Where kubectl, kube-apiserver and etcd are.
    pub bin: PathBuf,
    /// The CA that signed the API server's certificate.
    pub ca_cert: PathBuf,
    /// Keeps the envtest script alive; closing it tears the cluster down.
    _lifeline: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// The shared API server, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

impl Cluster {
    fn start() -> Self {
        let script = repo_root().join("tests/envtest/run");
        let mut child = Command::new(&script)
            .args([
                "--",
                "sh",
                "-c",
                "env; echo WEIR_ENVTEST_READY=1; exec cat >/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut env = HashMap::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("reading envtest output");
            if line == "WEIR_ENVTEST_READY=1" {
                break;
            }
            if let Some((key, value)) = line.split_once('=') {
                env.insert(key.to_owned(), value.to_owned());
            }
        }
        let var = |name: &str| {
            env.get(name)
                .cloned()
                .unwrap_or_else(|| panic!("envtest did not start (no {name}); see its log above"))
        };
        Self {
            kubeconfig: var("KUBECONFIG").into(),
            dir: var("WEIR_ENVTEST_DIR").into(),
            server: var("WEIR_ENVTEST_SERVER"),
            etcd: var("WEIR_ENVTEST_ETCD"),
            bin: var("WEIR_ENVTEST_BIN").into(),
            ca_cert: var("WEIR_ENVTEST_CA_CERT").into(),
            _lifeline: Mutex::new((child, stdin)),
        }
    }

    /// An admin client.
    pub async fn admin(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// A fresh namespace named after the test.
    pub async fn namespace(&self, test: &str) -> String {
        let name = format!(
            "{}-{}",
            test.replace('_', "-"),
            NAMESPACES.fetch_add(1, Ordering::Relaxed)
        );
        let name: String = name
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned();
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.admin().await)
            .create(&PostParams::default(), &namespace)
            .await
            .expect("creating the test namespace");
        name
    }

    /// Runs the cluster's kubectl as the admin; panics if it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args)
            .unwrap_or_else(|error| panic!("kubectl {args:?} failed: {error}"))
    }

    /// Runs the cluster's kubectl as the admin; `Err` holds its stderr.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// A kubeconfig for a ServiceAccount bound to exactly Weir's ClusterRole, and in
    /// `namespace` to exactly its Role (both `examples/deploy/rbac.yaml`), as Weir runs in a
    /// real cluster.
    pub async fn weir_identity(&self, namespace: &str) -> PathBuf {
        self.apply_cluster_wide("examples/deploy/rbac.yaml");
        let client = self.admin().await;
        let account: ServiceAccount = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "weir", "namespace": namespace}}),
        )
        .unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
            .expect("creating the weir ServiceAccount");
        let binding = ClusterRoleBinding {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("weir-{namespace}")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "weir".into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: "weir".into(),
                namespace: Some(namespace.into()),
                ..Default::default()
            }]),
        };
        let bindings = Api::<ClusterRoleBinding>::all(client.clone());
        let _ = bindings
            .delete(&format!("weir-{namespace}"), &DeleteParams::default())
            .await;
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .expect("binding the weir ClusterRole");
        self.bind_weir_roles(namespace);
        let token = Api::<ServiceAccount>::namespaced(client, namespace)
            .create_token_request("weir", &PostParams::default(), &TokenRequest::default())
            .await
            .expect("requesting a token for weir")
            .status
            .expect("a token request returns a status")
            .token;
        let minted = Command::new(repo_root().join("tests/envtest/mint-kubeconfig"))
            .args(["--token", &token])
            .env("WEIR_ENVTEST_SERVER", &self.server)
            .env("WEIR_ENVTEST_CA_CERT", &self.ca_cert)
            .output()
            .expect("running mint-kubeconfig");
        assert!(
            minted.status.success(),
            "mint-kubeconfig: {}",
            String::from_utf8_lossy(&minted.stderr)
        );
        let path = self.dir.join(format!("weir-{namespace}.kubeconfig"));
        std::fs::write(&path, minted.stdout).expect("writing the weir kubeconfig");
        path
    }

    /// Makes each Role of `examples/deploy/rbac.yaml` (its rules as written) in `namespace`,
    /// Weir's namespace in the test, and binds it to the `weir` ServiceAccount there.
    fn bind_weir_roles(&self, namespace: &str) {
        let path = repo_root().join("examples/deploy/rbac.yaml");
        let listed = self.kubectl(&[
            "apply",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            path.to_str().unwrap(),
        ]);
        let listed: serde_json::Value = serde_json::from_str(&listed).expect("kubectl's JSON");
        let roles: Vec<serde_json::Value> = listed["items"]
            .as_array()
            .expect("a List")
            .iter()
            .filter(|object| object["kind"] == "Role")
            .cloned()
            .collect();
        assert!(!roles.is_empty(), "rbac.yaml has a Role (leader election)");
        let mut objects = Vec::new();
        for mut role in roles {
            role["metadata"]["namespace"] = namespace.into();
            let name = role["metadata"]["name"].clone();
            objects.push(role);
            objects.push(serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "weir", "namespace": namespace}],
            }));
        }
        self.apply(namespace, &objects);
    }

    /// Installs the Route CRD from `crds/route.yaml` and waits until it is Established.
    pub fn install_route_crd(&self) {
        self.install_crd("crds/route.yaml", "routes.weir.dev");
    }

    /// Installs the AIModel CRD from `crds/aimodel.yaml` and waits until it is Established.
    pub fn install_aimodel_crd(&self) {
        self.install_crd("crds/aimodel.yaml", "aimodels.weir.dev");
    }

    fn install_crd(&self, repo_path: &str, name: &str) {
        self.apply_cluster_wide(repo_path);
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}"),
            "--timeout=30s",
        ]);
    }

    /// Installs the Gateway API's standard-channel CRDs (the version `tests/conformance`
    /// pins) and waits until they are Established; returns their files, for deleting them.
    pub fn install_gateway_api_crds(&self) -> Vec<PathBuf> {
        let files = gateway_api_crd_files();
        for file in &files {
            self.kubectl(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
        }
        // The bundle also holds a ValidatingAdmissionPolicy, which has no Established.
        for file in files
            .iter()
            .filter(|f| !f.to_string_lossy().contains("_vap_"))
        {
            self.kubectl(&[
                "wait",
                "--for=condition=Established",
                "-f",
                file.to_str().unwrap(),
                "--timeout=60s",
            ]);
        }
        files
    }

    /// Whether the identity [`Self::weir_identity`] made for `namespace` may do what `args`
    /// ask (`kubectl auth can-i` words: `["patch", "aimodels", "--subresource=status"]`), in
    /// that namespace.
    pub fn weir_can(&self, namespace: &str, args: &[&str]) -> bool {
        let output = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["auth", "can-i", "-n", namespace])
            .arg(format!("--as=system:serviceaccount:{namespace}:weir"))
            .args(args)
            .output()
            .expect("running kubectl auth can-i");
        // It answers `yes` (exit 0) or `no` (exit 1) on stdout; anything else is a broken question.
        match String::from_utf8_lossy(&output.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "kubectl auth can-i {args:?}: {other:?}, {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    /// Applies a cluster-wide manifest of the repo. Tests apply them concurrently, and two
    /// creates of one object at once would make one fail, so they take turns.
    fn apply_cluster_wide(&self, repo_path: &str) {
        static APPLYING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = APPLYING.lock().unwrap_or_else(|e| e.into_inner());
        let path = repo_root().join(repo_path);
        self.kubectl(&["apply", "-f", path.to_str().unwrap()]);
    }

    /// Applies objects (as built by [`crate::manifests`]) in `namespace`.
    pub fn apply(&self, namespace: &str, objects: &[serde_json::Value]) {
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let file = self.dir.join(format!(
            "apply-{}.yaml",
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, crate::manifests::to_yaml(objects)).expect("writing a manifest");
        self.kubectl(&["apply", "-n", namespace, "-f", file.to_str().unwrap()]);
    }

    /// Kills the API server (etcd keeps running); [`Outage::restart`] brings it back on the
    /// same address.
    pub fn stop_apiserver(&self) -> Outage<'_> {
        let pid: i32 = std::fs::read_to_string(self.dir.join("apiserver.pid"))
            .expect("envtest records the API server pid")
            .trim()
            .parse()
            .expect("a pid");
        let pid = rustix::process::Pid::from_raw(pid).expect("a positive pid");
        // A crash, not a shutdown: its graceful termination would hold open watches for long.
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)
            .expect("stopping the API server");
        let deadline = std::time::Instant::now() + CLUSTER_DEADLINE;
        while is_running(pid.as_raw_nonzero().get()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the API server did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Outage { cluster: self }
    }

    /// A second API server on the same etcd, on a port of its own.
    pub fn start_second_apiserver(&self) -> ApiServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let argv: Vec<String> = self
            .apiserver_argv()
            .into_iter()
            .map(|arg| {
                if arg.starts_with("--secure-port=") {
                    format!("--secure-port={port}")
                } else {
                    arg
                }
            })
            .collect();
        self.spawn_apiserver(argv, format!("https://127.0.0.1:{port}"), "second")
    }

    fn apiserver_argv(&self) -> Vec<String> {
        let bytes = std::fs::read(self.dir.join("apiserver.cmdline"))
            .expect("envtest records the API server argv");
        bytes
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect()
    }

    fn spawn_apiserver(&self, argv: Vec<String>, server: String, label: &str) -> ApiServer {
        let log = std::fs::File::create(self.dir.join(format!("kube-apiserver-{label}.log")))
            .expect("a log file");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting kube-apiserver");
        let apiserver = ApiServer {
            child,
            server,
            kubeconfig: self.kubeconfig.clone(),
            kubectl: self.bin.join("kubectl"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while apiserver.try_kubectl(&["get", "--raw", "/readyz"]).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "kube-apiserver ({label}) not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        apiserver
    }

    /// The API server's Prometheus metrics, as text.
    pub fn metrics(&self) -> String {
        self.kubectl(&["get", "--raw", "/metrics"])
    }
}

/// The cluster with its API server stopped.
pub struct Outage<'a> {
    cluster: &'a Cluster,
}

impl Outage<'_> {
    /// Starts the API server again with its original arguments and address.
    pub fn restart(self) -> ApiServer {
        let argv = self.cluster.apiserver_argv();
        self.cluster
            .spawn_apiserver(argv, self.cluster.server.clone(), "restarted")
    }

    /// [`Outage::restart`], recording every request's metadata in an audit log (one JSON event
    /// a line) at the returned path.
    pub fn restart_audited(self) -> (ApiServer, PathBuf) {
        let policy = self.cluster.dir.join("audit-policy.yaml");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )
        .expect("writing the audit policy");
        let log = self.cluster.dir.join("audit-restarted.log");
        let _ = std::fs::remove_file(&log);
        let mut argv = self.cluster.apiserver_argv();
        argv.push(format!("--audit-policy-file={}", policy.display()));
        argv.push(format!("--audit-log-path={}", log.display()));
        let apiserver =
            self.cluster
                .spawn_apiserver(argv, self.cluster.server.clone(), "restarted");
        (apiserver, log)
    }
}

/// An API server this test started; stopped when dropped.
pub struct ApiServer {
    child: Child,
    server: String,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl ApiServer {
    /// Runs kubectl against this API server as the admin.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args)
            .unwrap_or_else(|error| panic!("kubectl {args:?} against {}: {error}", self.server))
    }

    fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--server", &self.server, "--request-timeout=5s"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process (not necessarily our child) is alive; a zombie counts as gone.
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A client for the cluster a kubeconfig names.
pub async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a valid kubeconfig");
    Client::try_from(config).expect("a client")
}

/// The sum of a counter or gauge over every series whose labels include all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repo")
        .to_owned()
}

/// How long cluster operations may take before a test gives up.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// The Gateway API version the tests use: the one `tests/conformance/go.mod` pins.
pub fn gateway_api_version() -> String {
    let go_mod = std::fs::read_to_string(repo_root().join("tests/conformance/go.mod"))
        .expect("reading tests/conformance/go.mod");
    go_mod
        .lines()
        .map(str::trim)
        .map(|line| line.trim_start_matches("require").trim())
        .find_map(|line| {
            let (module, version) = line.split_once(' ')?;
            let version = version.split_whitespace().next()?;
            (module == "sigs.k8s.io/gateway-api").then(|| version.to_owned())
        })
        .expect("tests/conformance/go.mod requires sigs.k8s.io/gateway-api")
}

/// The standard-channel CRD files of [`gateway_api_version`], from Go's module cache (fetched
/// through the Go proxy on first use).
pub fn gateway_api_crd_files() -> Vec<PathBuf> {
    let module = format!("sigs.k8s.io/gateway-api@{}", gateway_api_version());
    let output = Command::new("go")
        .args(["mod", "download", "-json", &module])
        .output()
        .expect("running go mod download");
    assert!(
        output.status.success(),
        "go mod download {module}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("go mod download's JSON");
    let dir = PathBuf::from(info["Dir"].as_str().expect("a module directory"))
        .join("config/crd/standard");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "yaml")
                && !path.ends_with("kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}
