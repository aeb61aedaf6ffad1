//! The soak's configuration directory: what Weir reads in standalone mode, and the changes
//! the soak makes to it every few seconds while the load runs.
//!
//! The stable part, which the load's requests must always find working:
//! - Route `bench` (`bench.local`, prefix `/`, the TLS Secret `soak-tls`) → Service `echo`;
//! - Route `h2c-upstream` (`h2c.bench.local`) → Service `echo-h2c`, whose port says
//!   `appProtocol: kubernetes.io/h2c`, so that Weir speaks HTTP/2 to the backend;
//! - Route `ws` (`ws.bench.local`) → Service `ws`, the WebSocket echo server.
//!
//! Two echo backends, A and B; `echo` and `echo-h2c` have one EndpointSlice per backend
//! (their ports differ), and the changes move them between A, A and B, and B.
//!
//! Each change (one step) does one or more of, in a fixed cycle:
//! - **churn** (every step): `churn.yaml` holds a window of 30 Routes `churn-N`
//!   (`churn-N.bench.local`); 3 new ones are added and the 3 oldest removed, names never
//!   reused, so that anything Weir keeps per route name would grow;
//! - **modify** (every 2nd step): Route `bench` gains or loses a second host and a second rule
//!   (`/v/N` → `echo-h2c`), its `/` rule untouched;
//! - **endpoints** (every 3rd step): `echo` moves to the next of A, A+B, B, A+B;
//! - **h2c endpoints** (every 4th step): `echo-h2c` moves between A and B;
//! - **tls** (every 5th step): the Secret `soak-tls` is rotated to the other certificate;
//! - **file** (every 7th step): `extra.yaml`, 20 Routes with fresh names, appears or goes.
//!
//! Every file is written whole to a hidden temporary name and renamed over the old one, as
//! a careful operator (or a ConfigMap mount) does, so Weir never reads half a file.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::{
    soak_load::{H2C_UPSTREAM_HOST, STABLE_HOST, WS_HOST},
    tls::Certificate,
};

/// Churned routes in the config at any time.
const CHURN_WINDOW: usize = 30;
/// Churned routes added (and removed) per step.
const CHURN_PER_STEP: usize = 3;
/// Routes in `extra.yaml` when it is there.
const EXTRA_ROUTES: usize = 20;
/// Which of the two echo backends `echo` points at, step after step of its cycle.
const ECHO_ENDPOINTS: [&[Backend]; 4] = [
    &[Backend::A],
    &[Backend::A, Backend::B],
    &[Backend::B],
    &[Backend::A, Backend::B],
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    A,
    B,
}

/// The ports of what the routes point at.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub echo_a: u16,
    pub echo_b: u16,
    pub ws: u16,
}

/// The directory, its current state, and how many changes of each kind were made.
pub struct ConfigDir {
    pub dir: PathBuf,
    ports: Ports,
    certificates: [Certificate; 2],
    step: u64,
    /// Numbers of the churned routes in `churn.yaml`, oldest first.
    churn: VecDeque<u64>,
    next_churn: u64,
    echo_cycle: usize,
    h2c_backend: Backend,
    certificate: usize,
    modified: bool,
    /// The generation of `extra.yaml`'s routes while it is there.
    extra: Option<u64>,
    /// Changes made, by kind.
    pub counts: BTreeMap<&'static str, u64>,
}

impl ConfigDir {
    /// Writes the starting configuration into `dir`.
    pub fn create(
        dir: &Path,
        ports: Ports,
        certificates: [Certificate; 2],
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut config = Self {
            dir: dir.to_path_buf(),
            ports,
            certificates,
            step: 0,
            churn: VecDeque::new(),
            next_churn: 0,
            echo_cycle: 0,
            h2c_backend: Backend::A,
            certificate: 0,
            modified: false,
            extra: None,
            counts: BTreeMap::new(),
        };
        config.churn.extend(0..CHURN_WINDOW as u64);
        config.next_churn = CHURN_WINDOW as u64;
        config.write("services.yaml", &services())?;
        config.write("endpoints.yaml", &config.endpoints())?;
        config.write("routes.yaml", &config.routes())?;
        config.write("tls.yaml", &config.secret())?;
        config.write("churn.yaml", &config.churn_routes())?;
        Ok(config)
    }

    /// Hosts of churned routes that were in the config before the last change and stay in it
    /// through the next one: the churn load's targets.
    pub fn settled_churn_hosts(&self) -> Vec<String> {
        self.churn
            .iter()
            .skip(CHURN_PER_STEP)
            .take(CHURN_WINDOW - 2 * CHURN_PER_STEP)
            .map(|n| churn_host(*n))
            .collect()
    }

    /// Makes the next change; returns what it changed.
    pub fn change(&mut self) -> Result<Vec<&'static str>, String> {
        self.step += 1;
        let step = self.step;
        let mut changed = vec!["churn"];
        for _ in 0..CHURN_PER_STEP {
            self.churn.pop_front();
            self.churn.push_back(self.next_churn);
            self.next_churn += 1;
        }
        self.write("churn.yaml", &self.churn_routes())?;
        if step.is_multiple_of(2) {
            self.modified = !self.modified;
            self.write("routes.yaml", &self.routes())?;
            changed.push("modify");
        }
        let endpoints = step.is_multiple_of(3);
        if endpoints {
            self.echo_cycle = (self.echo_cycle + 1) % ECHO_ENDPOINTS.len();
            changed.push("endpoints");
        }
        let h2c_endpoints = step.is_multiple_of(4);
        if h2c_endpoints {
            self.h2c_backend = match self.h2c_backend {
                Backend::A => Backend::B,
                Backend::B => Backend::A,
            };
            changed.push("h2c endpoints");
        }
        if endpoints || h2c_endpoints {
            self.write("endpoints.yaml", &self.endpoints())?;
        }
        if step.is_multiple_of(5) {
            self.certificate = 1 - self.certificate;
            self.write("tls.yaml", &self.secret())?;
            changed.push("tls");
        }
        if step.is_multiple_of(7) {
            let path = self.dir.join("extra.yaml");
            match self.extra {
                Some(_) => {
                    self.extra = None;
                    std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                None => {
                    self.extra = Some(step);
                    self.write("extra.yaml", &extra_routes(step))?;
                }
            }
            changed.push("file");
        }
        for kind in &changed {
            *self.counts.entry(kind).or_default() += 1;
        }
        Ok(changed)
    }

    /// Writes `name` whole under a hidden name (which Weir skips), then renames it into place.
    fn write(&self, name: &str, text: &str) -> Result<(), String> {
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        std::fs::write(&temporary, text).map_err(|e| format!("{}: {e}", temporary.display()))?;
        std::fs::rename(&temporary, &path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn port(&self, backend: Backend) -> u16 {
        match backend {
            Backend::A => self.ports.echo_a,
            Backend::B => self.ports.echo_b,
        }
    }

    /// The EndpointSlices: one per backend a Service currently points at.
    fn endpoints(&self) -> String {
        let mut yaml = String::new();
        for &backend in ECHO_ENDPOINTS[self.echo_cycle] {
            slice(&mut yaml, "echo", backend, self.port(backend));
        }
        slice(
            &mut yaml,
            "echo-h2c",
            self.h2c_backend,
            self.port(self.h2c_backend),
        );
        let _ = write!(
            yaml,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ws\n  \
             labels: {{kubernetes.io/service-name: ws}}\naddressType: IPv4\n\
             endpoints: [{{addresses: [\"127.0.0.1\"]}}]\nports: [{{name: http, port: {}}}]\n",
            self.ports.ws
        );
        yaml
    }

    /// The three stable Routes; `bench` with its second host and rule when modified.
    fn routes(&self) -> String {
        let (extra_host, extra_rule) = if self.modified {
            (
                format!(", \"v{}.{STABLE_HOST}\"", self.step),
                format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: /v/{}}}}}]\n    \
                     backends: [{{service: {{name: echo-h2c, port: 8080}}}}]\n",
                    self.step
                ),
            )
        } else {
            (String::new(), String::new())
        };
        format!(
            "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: bench}}\nspec:\n  \
             hosts: [\"{STABLE_HOST}\"{extra_host}]\n  tls: [{{secretName: soak-tls}}]\n  rules:\n  \
             - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    \
             backends: [{{service: {{name: echo, port: 8080}}}}]\n{extra_rule}\
             ---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: h2c-upstream}}\nspec:\n  \
             hosts: [\"{H2C_UPSTREAM_HOST}\"]\n  rules:\n  \
             - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    \
             backends: [{{service: {{name: echo-h2c, port: 8080}}}}]\n\
             ---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: ws}}\nspec:\n  \
             hosts: [\"{WS_HOST}\"]\n  rules:\n  \
             - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    \
             backends: [{{service: {{name: ws, port: 8080}}}}]\n"
        )
    }

    /// The `kubernetes.io/tls` Secret with the current certificate.
    fn secret(&self) -> String {
        let certificate = &self.certificates[self.certificate];
        let indent = |pem: &str| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: soak-tls}}\ntype: kubernetes.io/tls\n\
             stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&certificate.cert_pem),
            indent(&certificate.key_pem)
        )
    }

    fn churn_routes(&self) -> String {
        let mut yaml = String::new();
        for &n in &self.churn {
            route(&mut yaml, &format!("churn-{n}"), &churn_host(n), "echo");
        }
        yaml
    }
}

/// The host of churned route number `n`.
fn churn_host(n: u64) -> String {
    format!("churn-{n}.{STABLE_HOST}")
}

/// The Services: `echo` (HTTP/1.1), `echo-h2c` (the same backends, h2c) and `ws`.
fn services() -> String {
    let service = |name: &str, app_protocol: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  \
             ports: [{{name: http, port: 8080{app_protocol}}}]\n"
        )
    };
    [
        service("echo", ""),
        service("echo-h2c", ", appProtocol: kubernetes.io/h2c"),
        service("ws", ""),
    ]
    .concat()
}

/// One EndpointSlice of `service`, for one backend.
fn slice(yaml: &mut String, service: &str, backend: Backend, port: u16) {
    let name = match backend {
        Backend::A => "a",
        Backend::B => "b",
    };
    let _ = write!(
        yaml,
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  \
         name: {service}-{name}\n  labels: {{kubernetes.io/service-name: {service}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n\
         ports: [{{name: http, port: {port}}}]\n"
    );
}

/// One Route: `host`, prefix `/`, to `service` port 8080.
fn route(yaml: &mut String, name: &str, host: &str, service: &str) {
    let _ = write!(
        yaml,
        "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n  \
         hosts: [\"{host}\"]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /}}}}]\n    \
         backends: [{{service: {{name: {service}, port: 8080}}}}]\n"
    );
}

/// `extra.yaml`'s Routes, named after the step that wrote them.
fn extra_routes(step: u64) -> String {
    let mut yaml = String::new();
    for i in 0..EXTRA_ROUTES {
        let name = format!("extra-{step}-{i}");
        route(&mut yaml, &name, &format!("{name}.{STABLE_HOST}"), "echo");
    }
    yaml
}
