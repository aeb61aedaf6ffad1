//! Child processes owned by a test: killed and reaped when dropped, read line by line.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::Duration,
};

use tokio::sync::oneshot;

/// A running child process, killed when dropped.
pub(crate) struct Process {
    child: Child,
}

impl Process {
    pub(crate) fn spawn(command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Self { child }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's piped stdout, which can be taken once.
    pub(crate) fn take_stdout(&mut self) -> impl Read + Send + 'static {
        self.child.stdout.take().expect("stdout is piped")
    }

    /// The child's piped stderr, which can be taken once.
    pub(crate) fn take_stderr(&mut self) -> impl Read + Send + 'static {
        self.child.stderr.take().expect("stderr is piped")
    }

    /// Sends SIGTERM, as an orchestrator stopping the process would.
    pub(crate) fn terminate(&self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .expect("the child is ours to signal");
    }

    /// Sends SIGKILL, as a crash or an OOM kill would end the process.
    pub(crate) fn kill(&self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)
            .expect("the child is ours to signal");
    }

    /// The exit status, polled for at most `within`; `None` if it is still running.
    pub(crate) async fn exit_status(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end, for at most `within`, and returns what it printed.
///
/// Panics if it is still running by then (and kills it).
pub async fn run_to_exit(command: &mut Command, within: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = Process::spawn(command);
    let stdout = read_all(process.take_stdout());
    let stderr = read_all(process.take_stderr());
    let Some(status) = process.exit_status(within).await else {
        panic!("{command:?} still running after {within:?}");
    };
    Output {
        status,
        stdout: stdout.await.unwrap_or_default(),
        stderr: stderr.await.unwrap_or_default(),
    }
}

fn read_all(mut stream: impl Read + Send + 'static) -> oneshot::Receiver<Vec<u8>> {
    let (sender, receiver) = oneshot::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    receiver
}

/// Starts a server that prints `listening on <address>` on stdout once bound (`weir-echo`,
/// `weir-mock-llm`) and waits for that line; panics naming `what` if it does not come within
/// `deadline` or the process exits first.
pub(crate) async fn spawn_listening(
    command: &mut Command,
    what: &str,
    deadline: Duration,
) -> (Process, std::net::SocketAddr) {
    let mut process = Process::spawn(command.stdin(Stdio::null()).stdout(Stdio::piped()));
    let listening = watch_lines(process.take_stdout(), |line| {
        line.strip_prefix("listening on ")?.parse().ok()
    });
    let address = tokio::time::timeout(deadline, listening)
        .await
        .unwrap_or_else(|_| panic!("{what} not listening within {deadline:?}"))
        .unwrap_or_else(|_| panic!("{what} exited before listening"));
    (process, address)
}

/// Reads `stream` line by line on a thread of its own until it ends, handing each line to
/// `inspect`; the first value `inspect` returns is sent on the returned channel. The channel
/// closes without a value if the stream ends first (the process exited).
pub(crate) fn watch_lines<T: Send + 'static>(
    stream: impl Read + Send + 'static,
    mut inspect: impl FnMut(&str) -> Option<T> + Send + 'static,
) -> oneshot::Receiver<T> {
    let (sender, receiver) = oneshot::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(value) = inspect(&line)
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(value);
            }
        }
    });
    receiver
}
