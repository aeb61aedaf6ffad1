//! Containers as processes: which program an image stands for, starting it inside the pod's
//! network namespace, capturing what it prints, telling when it listens, and killing it.
//!
//! There are no images here. `--program echo-basic=/path/to/echo-basic` makes every image
//! whose name is `echo-basic` (`registry.k8s.io/gateway-api/echo-basic:v1.5.1`, any registry,
//! tag or digest) run that binary; a container whose image names no program runs nothing
//! and counts as ready, which is what the suite needs of images it only deploys (coredns in
//! v1.6, echo-advanced in the mesh tests).
//!
//! A container is the leader of a process group of its own, so killing it kills whatever it
//! started, and it gets SIGKILL if this process dies without cleaning up (a parent-death
//! signal), so that not even a SIGKILL to the kubelet leaves servers running.

use std::{
    io::Write,
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use rustix::process::{Pid, Signal};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    sync::watch,
};

use crate::{cleanup, logs::ContainerLog};

/// An image name and the binary that stands in for it (`--program NAME=PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub image_name: String,
    pub path: PathBuf,
}

impl FromStr for Program {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok(Self {
                image_name: name.to_owned(),
                path: path.into(),
            }),
            _ => Err(format!("{text:?} is not IMAGE-NAME=PATH")),
        }
    }
}

/// The program an image stands for, if any.
pub fn program_for<'a>(image: &str, programs: &'a [Program]) -> Option<&'a Program> {
    let name = image_name(image);
    programs.iter().find(|p| p.image_name == name)
}

/// The last path component of an image reference, without tag or digest:
/// `registry.k8s.io:443/gateway-api/echo-basic:v1.5.1@sha256:…` → `echo-basic`.
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// How to start one container.
pub struct Launch<'a> {
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The network namespace (`ip netns` name), or `None` for the host's network.
    pub namespace: Option<String>,
    pub working_dir: PathBuf,
    pub log: Arc<ContainerLog>,
    /// Where the lines also go, for a person reading after the fact.
    pub log_file: PathBuf,
}

/// A started container.
pub struct Running {
    /// Its pid, which is also its process group.
    pub pid: i32,
    pub started_at: Timestamp,
    /// `Some` once it has exited.
    pub exited: watch::Receiver<Option<ExitStatus>>,
}

/// Starts a container; its output is captured line by line into its log.
pub fn start(launch: Launch<'_>) -> std::io::Result<Running> {
    let namespace = launch
        .namespace
        .as_ref()
        .map(|name| std::fs::File::open(Path::new("/run/netns").join(name)))
        .transpose()?;
    let mut command = tokio::process::Command::new(launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec the closure makes only raw system calls (prctl, setns)
    // through rustix, which neither allocate nor take locks.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if let Some(namespace) = &namespace {
                rustix::thread::move_into_link_name_space(
                    namespace.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .expect("a child just spawned has a pid");
    cleanup::process_started(pid);
    let started_at = Timestamp::now();

    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log_file)
        .ok()
        .map(|f| Arc::new(Mutex::new(f)));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    tokio::spawn(capture(stdout, launch.log.clone(), file.clone()));
    tokio::spawn(capture(stderr, launch.log, file));

    let (exit_tx, exited) = watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await;
        // The leader is gone; whatever it left in its group goes with it.
        kill_group(pid);
        cleanup::process_reaped(pid);
        if let Ok(status) = status {
            let _ = exit_tx.send(Some(status));
        }
    });
    Ok(Running {
        pid,
        started_at,
        exited,
    })
}

async fn capture(
    output: impl AsyncRead + Unpin,
    log: Arc<ContainerLog>,
    file: Option<Arc<Mutex<std::fs::File>>>,
) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line)).into_owned();
        if let Some(file) = &file {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(file, "{} {text}", Timestamp::now());
        }
        log.push(text);
    }
}

impl Running {
    /// Kills the container's process group and waits (at most `within`) until it is reaped.
    pub async fn kill(&mut self, within: Duration) {
        kill_group(self.pid);
        let _ = tokio::time::timeout(within, self.exited.wait_for(Option::is_some)).await;
    }

    /// Waits until the container listens on some port (any TCP socket listening or UDP
    /// socket bound in its network namespace), for at most `within`; `false` if it did not.
    ///
    /// This closes the race between a server starting and a client connecting to it as soon
    /// as the pod is Ready. No port is required: a pod of the suite listens on another port
    /// than its Service targets, on purpose, and must be Ready all the same.
    pub async fn wait_listening(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if listens(self.pid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline || self.exited.borrow().is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn kill_group(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// Whether the network namespace `pid` is in has a listening socket (`/proc/<pid>/net/*`
/// shows the sockets of the process's namespace).
fn listens(pid: i32) -> bool {
    let read = |table: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{table}"));
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| read(t).ok())
        .any(|text| has_listening_socket(&text, Protocol::Tcp))
        || ["udp", "udp6"]
            .iter()
            .filter_map(|t| read(t).ok())
            .any(|text| has_listening_socket(&text, Protocol::Udp))
}

#[derive(Clone, Copy)]
enum Protocol {
    Tcp,
    Udp,
}

/// Whether a `/proc/net/{tcp,udp}[6]` table has a TCP socket in state LISTEN (`0A`), or
/// any UDP socket (it is listed once it is bound).
fn has_listening_socket(table: &str, protocol: Protocol) -> bool {
    table.lines().skip(1).any(|row| match protocol {
        Protocol::Tcp => row.split_whitespace().nth(3) == Some("0A"),
        Protocol::Udp => row.split_whitespace().count() > 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs() -> Vec<Program> {
        vec!["echo-basic=/bin/echo-basic".parse().unwrap()]
    }

    #[test]
    fn an_image_matches_by_its_name_whatever_the_registry_tag_or_digest() {
        let programs = programs();
        for image in [
            "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
            "registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3",
            "localhost:5000/echo-basic",
            "echo-basic@sha256:0123",
            "echo-basic",
        ] {
            assert_eq!(
                program_for(image, &programs).map(|p| p.path.as_path()),
                Some(Path::new("/bin/echo-basic")),
                "{image}"
            );
        }
    }

    #[test]
    fn other_images_have_no_program() {
        let programs = programs();
        assert!(program_for("registry.k8s.io/coredns/coredns:v1.12.2", &programs).is_none());
        assert!(
            program_for(
                "registry.k8s.io/gateway-api/echo-advanced:v1.5.1",
                &programs
            )
            .is_none()
        );
    }

    #[test]
    fn programs_are_name_equals_path() {
        assert!("echo-basic".parse::<Program>().is_err());
        assert!("=/bin/x".parse::<Program>().is_err());
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
";

    #[test]
    fn a_tcp_socket_in_state_0a_listens() {
        assert!(has_listening_socket(TCP, Protocol::Tcp));
        let established = TCP.replace(" 0A ", " 01 ");
        assert!(!has_listening_socket(&established, Protocol::Tcp));
        let header_only = TCP.lines().next().unwrap();
        assert!(!has_listening_socket(header_only, Protocol::Tcp));
    }

    #[test]
    fn any_bound_udp_socket_counts() {
        let udp = TCP.replace(" 0A ", " 07 ");
        assert!(has_listening_socket(&udp, Protocol::Udp));
    }
}
