//! Python test clients and servers (`tests/python/`): the official WebSocket, gRPC and AI
//! SDK clients, run as real processes in a virtualenv of their own.
//!
//! The virtualenv is made once per machine, in `~/.cache/weir/python/<key>/` (or under
//! `$WEIR_PYTHON_CACHE`), where `<key>` is the first 16 hex digits of the SHA-256 of
//! `tests/requirements.txt`: editing the requirements makes a new environment, and nothing
//! else does. Making it is `python3 -m venv` and then `pip install -r tests/requirements.txt`
//! (about a quarter of a minute), under an exclusive lock on `<key>.lock` beside it, so test
//! binaries running at the same time wait for one another instead of installing twice. A
//! stamp file is written only after pip succeeded: an install that failed or was killed
//! leaves no stamp and is done again, from scratch, next time.
//!
//! A script runs as a [`Script`]: its stdout is read line by line by the test, its stderr
//! is forwarded to the test's output prefixed with the script's name, its stdin is a pipe the
//! test can write to, and it is killed when dropped. A server script is a [`PythonServer`]:
//! started with `--listen 127.0.0.1:0`, it says `listening on <address>` on stdout, as
//! `weir-echo` does. Servers also get `--exit-on-stdin-eof`, so that one whose test process
//! died without killing it ends as soon as the pipe closes.

use std::{
    env,
    ffi::OsStr,
    fs::{self, File},
    io::{self, BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{process::Process, test_host::test_host};

/// How long a server script may take to start listening (Python, its imports and, for gRPC,
/// generating the code for the `.proto`, on a loaded 2-core machine).
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The name of the stamp file in a finished virtualenv; it holds [`environment_key`].
const STAMP: &str = ".weir-installed";

/// The virtualenv's `python`, the environment made first if need be (once per machine, and
/// looked for once per test process: if making it failed, every later call fails the same
/// way rather than running pip again).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(make_virtualenv) {
        Ok(python) => python.clone(),
        Err(why) => panic!("no Python environment for the tests: {why}"),
    }
}

/// `tests/python/<name>`.
pub fn script(name: &str) -> PathBuf {
    let path = tests_dir().join("python").join(name);
    assert!(path.is_file(), "no test script {}", path.display());
    path
}

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn make_virtualenv() -> Result<PathBuf, String> {
    let requirements = tests_dir().join("requirements.txt");
    let digest = sha256_hex(&requirements)?;
    let key = &digest[..16];
    let cache = match env::var_os("WEIR_PYTHON_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => {
            Path::new(&env::var_os("HOME").ok_or("HOME is not set")?).join(".cache/weir/python")
        }
    };
    let venv = cache.join(key);
    let python = venv.join("bin/python");
    let stamp = venv.join(STAMP);
    fs::create_dir_all(&cache)
        .map_err(|error| format!("cannot create {}: {error}", cache.display()))?;

    // What the stamp must say: the requirements and the interpreter the venv was made from
    // (a venv links to its interpreter, so a different python3 needs a new one).
    let wanted = environment_key(key)?;
    let installed =
        || python.exists() && fs::read_to_string(&stamp).is_ok_and(|text| text == wanted);
    if installed() {
        return Ok(python);
    }

    let lock_path = cache.join(format!("{key}.lock"));
    // flock(2) on a file beside the venv, released when `lock` is dropped or the process
    // dies; concurrent test binaries wait here for the one making the environment.
    let lock = File::create(&lock_path)
        .and_then(|lock| lock.lock().map(|()| lock))
        .map_err(|error| format!("cannot lock {}: {error}", lock_path.display()))?;
    // Another process may have made it while this one waited for the lock.
    if installed() {
        return Ok(python);
    }

    eprintln!(
        "[python] making the tests' virtualenv in {} from {} (once per machine)",
        venv.display(),
        requirements.display()
    );
    let started = Instant::now();
    // --clear: whatever a failed or killed attempt left there goes.
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--requirement"])
            .arg(&requirements),
        "pip install -r tests/requirements.txt",
    )?;
    // Only now: an install that failed or was killed leaves no stamp.
    fs::write(&stamp, &wanted)
        .map_err(|error| format!("cannot write {}: {error}", stamp.display()))?;
    eprintln!("[python] virtualenv ready in {:.1?}", started.elapsed());
    drop(lock);
    Ok(python)
}

fn environment_key(requirements_key: &str) -> Result<String, String> {
    let output = run(
        Command::new("python3").arg("--version"),
        "python3 --version",
    )?;
    let version = String::from_utf8_lossy(&output.stdout);
    Ok(format!(
        "requirements {requirements_key}, {}\n",
        version.trim()
    ))
}

fn sha256_hex(file: &Path) -> Result<String, String> {
    let output = run(Command::new("sha256sum").arg(file), "sha256sum")?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.split_whitespace().next() {
        Some(digest) if digest.len() == 64 => Ok(digest.to_owned()),
        _ => Err(format!("sha256sum printed {text:?}")),
    }
}

/// Runs `command` to its end; an error with everything it printed unless it succeeded.
fn run(command: &mut Command, what: &str) -> Result<std::process::Output, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {what} ({command:?}): {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

/// A running `tests/python/<name>`, killed when dropped.
pub struct Script {
    name: String,
    stdout: mpsc::UnboundedReceiver<String>,
    /// Every stdout line handed out so far, for messages about what the script said.
    seen: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Closes when the script's stderr has ended.
    stderr_ended: Option<oneshot::Receiver<()>>,
    stdin: Option<io::PipeWriter>,
    process: Process,
}

/// How a [`Script`] ended and what it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Every stdout line, including those already read with [`Script::next_line`].
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Script {
    /// Starts `python tests/python/<name> <args>`.
    pub fn start<I, S>(name: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(python());
        command.arg(script(name)).args(args);
        Self::start_command(name, &mut command)
    }

    fn start_command(name: &str, command: &mut Command) -> Self {
        // A pipe of our own for stdin, since `Process` hands out only stdout and stderr.
        let (stdin_reader, stdin) = io::pipe().expect("a pipe can be made");
        command
            .stdin(stdin_reader)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Lines reach the harness as they are printed, and no __pycache__ is written
            // into the source tree.
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        // Test traffic goes straight to loopback, whatever proxy the environment names.
        for proxy in ["http_proxy", "https_proxy", "all_proxy", "grpc_proxy"] {
            command.env_remove(proxy).env_remove(proxy.to_uppercase());
        }
        let mut process = Process::spawn(command);
        // The command keeps the pipe's read end until told otherwise; the script must be
        // its only holder, so that closing `stdin` is end of file there.
        command.stdin(Stdio::null());
        let (stdout_lines, stdout) = mpsc::unbounded_channel();
        read_lines(process.take_stdout(), move |line| {
            let _ = stdout_lines.send(line);
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = stderr.clone();
        let prefix = name.trim_end_matches(".py").to_owned();
        let stderr_ended = read_lines(process.take_stderr(), move |line| {
            eprintln!("[{prefix}] {line}");
            kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        });
        Self {
            name: name.to_owned(),
            stdout,
            seen: Vec::new(),
            stderr,
            stderr_ended: Some(stderr_ended),
            stdin: Some(stdin),
            process,
        }
    }

    /// The next line on stdout, waiting at most `within`; `None` once stdout has ended
    /// (the script exited). Panics if no line comes in time.
    pub async fn next_line(&mut self, within: Duration) -> Option<String> {
        let Ok(line) = tokio::time::timeout(within, self.stdout.recv()).await else {
            panic!(
                "{}: no line on stdout within {within:?}; so far: {:?}; stderr: {:?}",
                self.name,
                self.seen,
                self.stderr_lines()
            )
        };
        let line = line?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads stdout until a line equal to `wanted`; panics if the script ends first or the
    /// line does not come within `within`.
    pub async fn expect_line(&mut self, wanted: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) if line == wanted => return,
                Some(_) => {}
                None => panic!(
                    "{}: stdout ended without {wanted:?}; it said {:?}; stderr: {:?}; {:?}",
                    self.name,
                    self.seen,
                    self.stderr_lines(),
                    self.process.exit_status(Duration::from_secs(1)).await
                ),
            }
        }
    }

    /// Writes `line` and a newline to the script's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|error| panic!("{}: cannot write to stdin: {error}", self.name));
    }

    /// Closes the script's stdin (end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// The lines on stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits at most `within` for the script to exit and returns what it printed; panics
    /// (killing it) if it is still running then.
    pub async fn finish(mut self, within: Duration) -> Finished {
        self.close_stdin();
        let Some(status) = self.process.exit_status(within).await else {
            while let Ok(line) = self.stdout.try_recv() {
                self.seen.push(line);
            }
            panic!(
                "{}: still running after {within:?}; stdout: {:?}; stderr: {:?}",
                self.name,
                self.seen,
                self.stderr_lines()
            );
        };
        // The pipes' last lines may still be on their way from the reader threads.
        const DRAIN: Duration = Duration::from_secs(5);
        while let Ok(Some(line)) = tokio::time::timeout(DRAIN, self.stdout.recv()).await {
            self.seen.push(line);
        }
        if let Some(ended) = self.stderr_ended.take() {
            let _ = tokio::time::timeout(DRAIN, ended).await;
        }
        Finished {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr: self.stderr_lines(),
        }
    }
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The last stdout line as JSON: the result line every client script ends with.
    pub fn json(&self) -> Value {
        let last = self
            .stdout
            .last()
            .unwrap_or_else(|| panic!("no output ({}); stderr: {:?}", self.status, self.stderr));
        serde_json::from_str(last)
            .unwrap_or_else(|error| panic!("the last line is not JSON ({error}): {self:?}"))
    }

    /// The result line of a client that must have succeeded; panics with everything it said
    /// otherwise.
    pub fn expect_success(&self) -> Value {
        assert!(self.success(), "the script failed: {self:#?}");
        self.json()
    }
}

/// A server script listening on a free port, killed when dropped.
pub struct PythonServer {
    address: SocketAddr,
    script: Script,
}

impl PythonServer {
    /// Starts `python tests/python/<name> --listen 127.0.0.1:0 --exit-on-stdin-eof <args>`
    /// and waits until it says it listens.
    pub async fn start<I, S>(name: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(python());
        command
            .arg(script(name))
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof"])
            .args(args);
        Self::start_command(name, &mut command).await
    }

    /// Starts it on the [`test_host`], for EndpointSlices in a real cluster, which may not
    /// name loopback addresses.
    pub async fn start_on_test_host<I, S>(name: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let host = test_host();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &host.namespace])
            .arg(python())
            .arg(script(name))
            .arg("--listen")
            .arg(format!("{}:0", host.address))
            .arg("--exit-on-stdin-eof")
            .args(args);
        Self::start_command(name, &mut command).await
    }

    async fn start_command(name: &str, command: &mut Command) -> Self {
        let mut script = Script::start_command(name, command);
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(line) = script.next_line(left).await else {
                panic!(
                    "{name} exited before listening ({:?}); stderr: {:?}",
                    script.process.exit_status(Duration::from_secs(1)).await,
                    script.stderr_lines()
                );
            };
            if let Some(address) = line
                .strip_prefix("listening on ")
                .and_then(|address| address.parse().ok())
            {
                return Self { address, script };
            }
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The server's process, to read its output or stop it.
    pub fn script(&mut self) -> &mut Script {
        &mut self.script
    }
}

/// `ws_echo_server.py --name <name>`: a WebSocket echo backend.
pub async fn ws_echo_server(name: &str) -> PythonServer {
    PythonServer::start("ws_echo_server.py", ["--name", name]).await
}

/// `grpc_server.py --name <name>`: a plaintext (h2c) gRPC backend of `weir.test.Echo`.
pub async fn grpc_server(name: &str) -> PythonServer {
    PythonServer::start("grpc_server.py", ["--name", name]).await
}

/// Reads `stream` line by line on a thread of its own until it ends, handing each line to
/// `each`; the returned channel closes when the stream has ended.
fn read_lines(
    stream: impl Read + Send + 'static,
    mut each: impl FnMut(String) + Send + 'static,
) -> oneshot::Receiver<()> {
    let (ended, receiver) = oneshot::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            each(line);
        }
        drop(ended);
    });
    receiver
}

/// The scripts against one another, with no gateway between them: each client must pass
/// against a correct server and fail against a faulty one, over plaintext and TLS.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{Ca, KeyType};

    /// How long any one client run may take.
    const RUN: Duration = Duration::from_secs(30);

    async fn run(script: &str, args: &[&str]) -> Finished {
        Script::start(script, args).finish(RUN).await
    }

    fn ws_url(server: &PythonServer, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", server.address())
    }

    #[tokio::test]
    async fn ws_client_round_trips_a_thousand_messages_of_every_size() {
        let server = ws_echo_server("a").await;
        let url = ws_url(&server, "ws", "/chat?room=1");
        let finished = run(
            "ws_client.py",
            &[
                &url,
                "--count",
                "1000",
                "--whoami",
                "--host",
                "shop.example.com",
            ],
        )
        .await;
        let result = finished.expect_success();
        assert_eq!(result["sent"], 1000, "{result}");
        assert_eq!(result["echoed"], 1000, "{result}");
        assert!(result["bytes"].as_u64().unwrap() > 30_000_000, "{result}");
        let whoami = &result["whoami"][0];
        assert_eq!(whoami["server"], "a", "{result}");
        assert_eq!(whoami["path"], "/chat?room=1", "{result}");
        assert_eq!(whoami["host"], "shop.example.com", "{result}");
        assert_eq!(whoami["x_forwarded_for"], Value::Null, "{result}");
    }

    #[tokio::test]
    async fn ws_client_pauses_until_told_to_continue() {
        let server = ws_echo_server("a").await;
        let url = ws_url(&server, "ws", "/");
        let mut client = Script::start(
            "ws_client.py",
            [&url, "--count", "1000", "--pause-at", "500", "--whoami"],
        );
        client.expect_line("paused", RUN).await;
        // While the client waits, its connection is open and idle: the moment a gateway
        // test swaps the routing table.
        assert!(client.process.exit_status(Duration::ZERO).await.is_none());
        client.send_line("continue");
        let result = client.finish(RUN).await.expect_success();
        assert_eq!(
            (&result["sent"], &result["echoed"]),
            (&1000.into(), &1000.into())
        );
        assert_eq!(
            result["whoami"].as_array().map(Vec::len),
            Some(2),
            "{result}"
        );
        // Both answers come from the same connection.
        assert_eq!(
            result["whoami"][0]["peer"], result["whoami"][1]["peer"],
            "{result}"
        );
    }

    #[tokio::test]
    async fn ws_client_fails_on_anything_but_continue() {
        let server = ws_echo_server("a").await;
        let url = ws_url(&server, "ws", "/");
        let mut client = Script::start("ws_client.py", [&url, "--count", "10", "--pause-at", "5"]);
        client.expect_line("paused", RUN).await;
        client.send_line("stop");
        let finished = client.finish(RUN).await;
        assert!(!finished.success(), "{finished:?}");
        let result = finished.json();
        assert_eq!(result["echoed"], 5, "{result}");
        assert!(
            result["error"].as_str().unwrap().contains("continue"),
            "{result}"
        );
    }

    #[tokio::test]
    async fn ws_client_fails_on_a_corrupted_echo_and_a_closed_port() {
        let faulty = PythonServer::start("ws_echo_server.py", ["--corrupt-at", "7"]).await;
        let finished = run(
            "ws_client.py",
            &[&ws_url(&faulty, "ws", "/"), "--count", "20"],
        )
        .await;
        assert!(!finished.success(), "{finished:?}");
        let result = finished.json();
        assert_eq!(
            (&result["sent"], &result["echoed"]),
            (&8.into(), &7.into()),
            "{result}"
        );
        assert!(
            result["error"].as_str().unwrap().starts_with("message 7:"),
            "{result}"
        );

        let address = faulty.address();
        drop(faulty);
        let finished = run(
            "ws_client.py",
            &[&format!("ws://{address}/"), "--count", "1"],
        )
        .await;
        assert!(!finished.success(), "{finished:?}");
        assert!(
            finished.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("cannot connect"),
            "{finished:?}"
        );
    }

    #[tokio::test]
    async fn ws_client_speaks_wss_with_the_ca_and_name_it_is_given() {
        let ca = Ca::new("ws test CA");
        let leaf = ca.leaf(&["ws.example.com"], KeyType::EcdsaP256);
        let (cert, key) = (leaf.cert_path(), leaf.key_path());
        let server = PythonServer::start(
            "ws_echo_server.py",
            [
                OsStr::new("--tls-cert"),
                cert.as_os_str(),
                "--tls-key".as_ref(),
                key.as_os_str(),
            ],
        )
        .await;
        let url = ws_url(&server, "wss", "/secure");
        let cafile = ca.pem_path();
        let cafile = cafile.to_str().unwrap();

        // The name from --host, then from --server-name.
        for naming in [
            ["--host", "ws.example.com"],
            ["--server-name", "ws.example.com"],
        ] {
            let mut args = vec![
                url.as_str(),
                "--count",
                "50",
                "--whoami",
                "--cafile",
                cafile,
            ];
            args.extend(naming);
            let result = run("ws_client.py", &args).await.expect_success();
            assert_eq!(result["echoed"], 50, "{result}");
            assert_eq!(result["whoami"][0]["tls"], true, "{result}");
        }

        let wrong_name = run(
            "ws_client.py",
            &[
                &url,
                "--count",
                "1",
                "--cafile",
                cafile,
                "--server-name",
                "other.example.com",
            ],
        )
        .await;
        assert!(!wrong_name.success(), "{wrong_name:?}");
        assert!(
            wrong_name.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("TLS"),
            "{wrong_name:?}"
        );

        let other_ca = Ca::new("another CA");
        let other_cafile = other_ca.pem_path();
        let untrusted = run(
            "ws_client.py",
            &[
                &url,
                "--count",
                "1",
                "--cafile",
                other_cafile.to_str().unwrap(),
                "--server-name",
                "ws.example.com",
            ],
        )
        .await;
        assert!(!untrusted.success(), "{untrusted:?}");
    }

    #[tokio::test]
    async fn grpc_client_passes_every_check_against_the_server() {
        let server = grpc_server("g").await;
        let target = server.address().to_string();
        let finished = run(
            "grpc_client.py",
            &[&target, "--check", "all", "--authority", "echo.example.com"],
        )
        .await;
        let result = finished.expect_success();
        for check in [
            "unary",
            "server_streaming",
            "client_streaming",
            "bidi",
            "error",
        ] {
            assert_eq!(result[check], "ok", "{check}: {result}");
        }
        assert_eq!(result["server"], "g", "{result}");
        assert_eq!(result["authority"], "echo.example.com", "{result}");
        assert_eq!(result["trailers"]["Sum"]["x-count"], "100", "{result}");
        assert_eq!(
            result["trailers"]["Say"]["x-trailer-bin"], "hex:0001feff",
            "{result}"
        );
    }

    #[tokio::test]
    async fn grpc_client_expects_exact_statuses() {
        let server = grpc_server("g").await;
        let target = server.address().to_string();
        let asked = run(
            "grpc_client.py",
            &[
                &target,
                "--check",
                "expect-status",
                "FAILED_PRECONDITION",
                "--fail-with",
                "FAILED_PRECONDITION",
                "--fail-message",
                "boom",
            ],
        )
        .await
        .expect_success();
        assert_eq!(
            (&asked["status"], &asked["details"]),
            (&"FAILED_PRECONDITION".into(), &"boom".into())
        );

        let deadline = run(
            "grpc_client.py",
            &[
                &target,
                "--check",
                "expect-status",
                "DEADLINE_EXCEEDED",
                "--delay-ms",
                "5000",
                "--timeout",
                "0.5",
            ],
        )
        .await
        .expect_success();
        assert_eq!(deadline["status"], "DEADLINE_EXCEEDED", "{deadline}");

        // A call that succeeds is not the UNAVAILABLE expected...
        let wrong = run(
            "grpc_client.py",
            &[&target, "--check", "expect-status", "UNAVAILABLE"],
        )
        .await;
        assert!(!wrong.success(), "{wrong:?}");
        assert_eq!(wrong.json()["status"], "OK", "{wrong:?}");

        // ...which a server that is gone gives.
        drop(server);
        let gone = run(
            "grpc_client.py",
            &[&target, "--check", "expect-status", "UNAVAILABLE"],
        )
        .await;
        assert_eq!(gone.expect_success()["status"], "UNAVAILABLE");
    }

    #[tokio::test]
    async fn grpc_client_fails_against_what_is_not_the_echo_service() {
        let not_grpc = ws_echo_server("a").await;
        let target = not_grpc.address().to_string();
        let finished = run(
            "grpc_client.py",
            &[&target, "--check", "unary", "--timeout", "5"],
        )
        .await;
        assert!(!finished.success(), "{finished:?}");
        assert!(
            finished.json()["unary"]
                .as_str()
                .unwrap()
                .starts_with("call failed"),
            "{finished:?}"
        );
    }

    #[tokio::test]
    async fn grpc_client_speaks_tls_with_the_ca_and_name_it_is_given() {
        let ca = Ca::new("grpc test CA");
        let leaf = ca.leaf(&["grpc.example.com"], KeyType::Rsa2048);
        let (cert, key) = (leaf.cert_path(), leaf.key_path());
        let server = PythonServer::start(
            "grpc_server.py",
            [
                OsStr::new("--tls-cert"),
                cert.as_os_str(),
                "--tls-key".as_ref(),
                key.as_os_str(),
            ],
        )
        .await;
        let target = server.address().to_string();
        let ca_file = ca.pem_path();
        let ca_file = ca_file.to_str().unwrap();
        let tls = ["--tls-ca", ca_file, "--server-name"];

        let mut args = vec![target.as_str()];
        args.extend(tls);
        args.extend(["grpc.example.com", "--check", "unary", "--check", "bidi"]);
        let result = run("grpc_client.py", &args).await.expect_success();
        assert_eq!(
            (&result["unary"], &result["bidi"]),
            (&"ok".into(), &"ok".into())
        );
        assert_eq!(result["authority"], "grpc.example.com", "{result}");

        let mut args = vec![target.as_str()];
        args.extend(tls);
        args.extend([
            "other.example.com",
            "--check",
            "expect-status",
            "UNAVAILABLE",
        ]);
        let wrong_name = run("grpc_client.py", &args).await.expect_success();
        assert_eq!(wrong_name["status"], "UNAVAILABLE", "{wrong_name}");
    }
}
