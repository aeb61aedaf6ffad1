//! A real `redis-server` (Debian's package) on a free loopback port, killed on drop: the
//! shared quota store two Weir processes count in.
//!
//! Installed with apt-get on first use when missing (the test command runs as root, as the
//! cluster tests need anyway).

use std::{
    net::{SocketAddr, TcpListener},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::Process;

const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    address: SocketAddr,
    process: Option<Process>,
}

impl RedisServer {
    /// A fresh server with nothing persisted.
    pub async fn start() -> Self {
        let binary = redis_server();
        // Free ports are found by binding one and letting it go; another process may take it
        // in between, so a server that cannot bind is started again on another.
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free loopback port")
                .port();
            let mut process = Process::spawn(
                Command::new(binary)
                    .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
            while tokio::time::Instant::now() < deadline {
                if ping(address).await {
                    return Self {
                        address,
                        process: Some(process),
                    };
                }
                if process
                    .exit_status(Duration::from_millis(10))
                    .await
                    .is_some()
                {
                    break;
                }
            }
        }
        panic!("redis-server did not start");
    }

    /// `redis://<address>`, for `--quota-store`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// Stops the server, as an outage would.
    pub fn stop(&mut self) {
        self.process = None;
    }
}

/// Whether a server answers `PING` at `address`.
async fn ping(address: SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut reply)).await,
        Ok(Ok(_)) if &reply == b"+PONG\r\n"
    )
}

/// The `redis-server` binary, installed from Debian's packages if it is not on the PATH.
fn redis_server() -> &'static str {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if found {
            return;
        }
        let apt_get = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        let install = ["install", "-y", "--no-install-recommends", "redis-server"];
        // A fresh machine may have no package lists yet.
        let installed = apt_get(&install) || (apt_get(&["update"]) && apt_get(&install));
        assert!(
            installed,
            "redis-server is not installed and `apt-get install redis-server` failed (run as root, or install it)"
        );
    });
    "redis-server"
}
