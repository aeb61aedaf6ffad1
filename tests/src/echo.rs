//! Echo backends: `weir-echo` processes, each on a free port (loopback, or the test host's
//! address for cluster tests), killed on drop.

use std::{net::SocketAddr, process::Command, time::Duration};

use crate::{
    binaries,
    process::{Process, spawn_listening},
    test_host::test_host,
};

/// How long a backend may take to start listening.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// A running `weir-echo`, answering with its `name` as `instance`.
pub struct Echo {
    address: SocketAddr,
    process: Process,
}

impl Echo {
    /// Starts `weir-echo --name <name>` on a free port and waits until it listens.
    pub async fn start(name: &str) -> Self {
        Self::start_with(
            Command::new(binaries::echo()).args(["--listen", "127.0.0.1:0"]),
            name,
        )
        .await
    }

    /// Starts it on the [`test_host`], for EndpointSlices in a real cluster, which may not
    /// name loopback addresses.
    pub async fn start_on_test_host(name: &str) -> Self {
        let host = test_host();
        let listen = format!("{}:0", host.address);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &host.namespace])
            .arg(binaries::echo())
            .args(["--listen", &listen]);
        Self::start_with(&mut command, name).await
    }

    async fn start_with(command: &mut Command, name: &str) -> Self {
        let (process, address) = spawn_listening(
            command.args(["--threads", "1", "--name", name]),
            &format!("echo {name}"),
            STARTUP_DEADLINE,
        )
        .await;
        Self { address, process }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends SIGKILL, as a crash or an OOM kill would end it: its connections are reset.
    pub fn kill(&self) {
        self.process.kill();
    }
}
