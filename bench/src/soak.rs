//! `weir-bench soak`: Weir under a steady mixed load for a long time (10 minutes by default)
//! while its configuration changes every few seconds, sampling its resident memory and open
//! file descriptors every interval; both must end flat, and no request may fail. `bench/soak`
//! builds what is needed and calls this; BENCHMARKS.md ("Soak") has the method and the latest
//! figures.
//!
//! The run: two weir-echo backends (A and B), the WebSocket echo server (websocket.rs), two
//! certificates, the configuration directory (soak_config.rs), Weir standalone on it with a
//! plain and a TLS listener. Once every route answers (and the h2c-upstream route is checked
//! to reach the backend in HTTP/2), the mix of soak_load.rs starts, the configuration changes
//! every `--change-every`, and every `--sample-every` a sample is taken:
//!
//! - Weir's resident set (`VmRSS`), open file descriptors (entries of `/proc/PID/fd`) and
//!   threads, from `/proc`;
//! - what each load counted (successes, errors), cumulative;
//! - from Weir's `/metrics`: the table generation, the routes in it, requests by status
//!   class, and the number of series exposed (which would grow if per-route series outlived
//!   their routes);
//! - the machine's load average.
//!
//! One more sample is taken before the load starts and one 5 s after it stops.
//!
//! **Flat**: the mean of the last 3 samples under load against the mean of samples 3 to 5
//! under load (after the warm-up: connections opened, pools filled, allocator arenas grown).
//! RSS ends flat when it grew by less than [`RSS_GROWTH_LIMIT`] of that baseline or less than
//! [`RSS_GROWTH_FLOOR_MIB`], whichever is larger; file descriptors when they grew by no more
//! than the load's concurrent connections (a sample catches each client either connected or
//! not, and an upstream connection per client may sit in a pool). The run passes when both
//! are flat and no request failed; otherwise the command exits non-zero.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    ai_load::Connection,
    servers::{self, Running, free_port},
    soak_config::{ConfigDir, Ports},
    soak_load::{self, H2C_UPSTREAM_HOST, Kind, Shared, Spec, Tally, WS_HOST},
    system, tls, websocket,
};

/// RSS may grow by this share of its post-warm-up mean and still be flat…
const RSS_GROWTH_LIMIT: f64 = 0.10;
/// …or by this many MiB, whichever is larger: allocator noise on a small process.
const RSS_GROWTH_FLOOR_MIB: f64 = 4.0;
/// Samples under load that make the baseline: the 3rd to the 5th (1-based).
const BASELINE_SAMPLES: std::ops::Range<usize> = 2..5;
/// Samples under load at the end that are compared with it.
const END_SAMPLES: usize = 3;
/// How long after the load stops the last sample is taken.
const AFTER_LOAD: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: weir-bench soak [--duration 10m] [--sample-every 10s] \
                     [--change-every 3s] [--bin-dir DIR] [--results DIR] [--markdown FILE] \
                     [--command TEXT]
durations: a number of seconds, or with a unit: 90s, 10m";

/// Command-line settings.
struct SoakSettings {
    duration: Duration,
    sample_every: Duration,
    change_every: Duration,
    bin_dir: PathBuf,
    results: PathBuf,
    markdown: Option<PathBuf>,
    command: String,
}

/// `90`, `90s`, `10m`, `1.5m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix('m') {
        Some(minutes) => (minutes, 60.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0)
        .map(|n| Duration::from_secs_f64(n * unit))
        .ok_or_else(|| format!("{text}: not a duration\n{USAGE}"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SoakSettings, String> {
    let mut settings = SoakSettings {
        duration: Duration::from_secs(600),
        sample_every: Duration::from_secs(10),
        change_every: Duration::from_secs(3),
        bin_dir: PathBuf::from("target/release"),
        results: PathBuf::from("bench/results"),
        markdown: None,
        command: "bench/soak".into(),
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--duration" => settings.duration = parse_duration(&value()?)?,
            "--sample-every" => settings.sample_every = parse_duration(&value()?)?,
            "--change-every" => settings.change_every = parse_duration(&value()?)?,
            "--bin-dir" => settings.bin_dir = value()?.into(),
            "--results" => settings.results = value()?.into(),
            "--markdown" => settings.markdown = Some(value()?.into()),
            "--command" => settings.command = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(settings)
}

/// One sample of Weir and of the load.
#[derive(Clone, Debug)]
struct Sample {
    /// Seconds since the load started (negative: before it).
    t: f64,
    /// `before`, `load` or `after`.
    phase: &'static str,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    /// Per load, cumulative: successes and errors.
    ok: Vec<u64>,
    errors: Vec<u64>,
    churn_misses: u64,
    changes: u64,
    metrics: WeirMetrics,
    load_average: f64,
}

impl Sample {
    fn total_ok(&self) -> u64 {
        self.ok.iter().sum()
    }

    fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// What Weir's `/metrics` said.
#[derive(Clone, Debug, Default)]
struct WeirMetrics {
    table_generation: Option<u64>,
    table_routes: Option<u64>,
    /// `weir_requests_total` summed over routes, by status class.
    requests: BTreeMap<String, u64>,
    /// Sample lines (series) in the exposition.
    series: u64,
}

impl WeirMetrics {
    fn fetch(admin_port: u16) -> Self {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{admin_port}\r\nConnection: close\r\n\r\n"
        );
        let Ok(answer) = Connection::new(admin_port).exchange(request.as_bytes(), false, true)
        else {
            return Self::default();
        };
        Self::parse(&String::from_utf8_lossy(&answer.body))
    }

    fn parse(text: &str) -> Self {
        let mut metrics = Self::default();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            metrics.series += 1;
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if name == "weir_table_generation" {
                metrics.table_generation = Some(value as u64);
            } else if name == "weir_table_routes" {
                metrics.table_routes = Some(value as u64);
            } else if let Some(labels) = name.strip_prefix("weir_requests_total{")
                && let Some(class) = labels
                    .split("status_class=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
            {
                *metrics.requests.entry(class.to_owned()).or_default() += value as u64;
            }
        }
        metrics
    }
}

/// Counts `/proc/PID/fd` entries and reads `VmRSS` and `Threads`.
fn sample_process(pid: u32) -> (u64, u64, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), fds, field("Threads:"))
}

/// What the sampler reads from.
struct Probe<'a> {
    pid: u32,
    admin_port: u16,
    tallies: &'a [Arc<Tally>],
    changes: &'a AtomicU64,
    started: Instant,
}

impl Probe<'_> {
    fn sample(&self, phase: &'static str) -> Sample {
        let (rss_kib, fds, threads) = sample_process(self.pid);
        let started = self.started;
        Sample {
            t: match phase {
                "before" => 0.0,
                _ => started.elapsed().as_secs_f64(),
            },
            phase,
            rss_kib,
            fds,
            threads,
            ok: self
                .tallies
                .iter()
                .map(|t| t.ok.load(Ordering::Relaxed))
                .collect(),
            errors: self
                .tallies
                .iter()
                .map(|t| t.errors.load(Ordering::Relaxed))
                .collect(),
            churn_misses: self
                .tallies
                .iter()
                .map(|t| t.misses.load(Ordering::Relaxed))
                .sum(),
            changes: self.changes.load(Ordering::Relaxed),
            metrics: WeirMetrics::fetch(self.admin_port),
            load_average: system::load_average(),
        }
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// The verdict on the samples under load.
#[derive(Clone, Debug)]
struct Verdict {
    baseline_rss_mib: f64,
    end_rss_mib: f64,
    rss_allowed_mib: f64,
    rss_flat: bool,
    baseline_fds: f64,
    end_fds: f64,
    fds_allowed: f64,
    fds_flat: bool,
    /// Least-squares slope of RSS over the samples after the baseline's first, MiB per hour:
    /// a figure for the reader, not part of the verdict.
    rss_slope_mib_per_hour: f64,
    errors: u64,
    passed: bool,
}

fn verdict(samples: &[Sample], connections: u32) -> Result<Verdict, String> {
    let under_load: Vec<&Sample> = samples.iter().filter(|s| s.phase == "load").collect();
    if under_load.len() < BASELINE_SAMPLES.end {
        return Err(format!(
            "{} samples under load; the verdict needs at least {} (run longer)",
            under_load.len(),
            BASELINE_SAMPLES.end
        ));
    }
    let baseline = &under_load[BASELINE_SAMPLES];
    let end = &under_load[under_load.len().saturating_sub(END_SAMPLES)..];
    let rss = |s: &[&Sample]| mib(mean(s.iter().map(|s| s.rss_kib as f64)));
    let fds = |s: &[&Sample]| mean(s.iter().map(|s| s.fds as f64));
    let (baseline_rss_mib, end_rss_mib) = (rss(baseline), rss(end));
    let rss_allowed_mib = (baseline_rss_mib * RSS_GROWTH_LIMIT).max(RSS_GROWTH_FLOOR_MIB);
    let (baseline_fds, end_fds) = (fds(baseline), fds(end));
    let fds_allowed = f64::from(connections);
    let fit: Vec<(f64, f64)> = under_load[BASELINE_SAMPLES.start..]
        .iter()
        .map(|s| (s.t, mib(s.rss_kib as f64)))
        .collect();
    let (mt, mr) = (mean(fit.iter().map(|p| p.0)), mean(fit.iter().map(|p| p.1)));
    let (cov, var) = fit.iter().fold((0.0, 0.0), |(c, v), (t, r)| {
        (c + (t - mt) * (r - mr), v + (t - mt) * (t - mt))
    });
    let slope = if var > 0.0 { cov / var * 3600.0 } else { 0.0 };
    let last = samples.last().ok_or("no samples")?;
    let errors = last.total_errors();
    let rss_flat = end_rss_mib - baseline_rss_mib < rss_allowed_mib;
    let fds_flat = end_fds - baseline_fds <= fds_allowed;
    Ok(Verdict {
        baseline_rss_mib,
        end_rss_mib,
        rss_allowed_mib,
        rss_flat,
        baseline_fds,
        end_fds,
        fds_allowed,
        fds_flat,
        rss_slope_mib_per_hour: slope,
        errors,
        passed: rss_flat && fds_flat && errors == 0,
    })
}

/// The soak; `Ok(false)` when it ran but did not pass.
pub fn run(args: impl Iterator<Item = String>) -> Result<bool, String> {
    let settings = parse_args(args)?;
    let weir = settings.bin_dir.join("weir");
    let echo = settings.bin_dir.join("weir-echo");
    for program in [&weir, &echo] {
        if !program.is_file() {
            return Err(format!(
                "{} is missing: cargo build --release --bin weir --bin weir-echo",
                program.display()
            ));
        }
    }
    let oha = crate::which("oha");
    let work = std::env::temp_dir().join(format!("weir-soak.{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = soak(&settings, &weir, &echo, oha, &work);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("weir-bench soak: logs kept in {}", work.display());
    }
    result
}

fn soak(
    settings: &SoakSettings,
    weir_binary: &Path,
    echo_binary: &Path,
    oha: Option<PathBuf>,
    work: &Path,
) -> Result<bool, String> {
    let header = Header::collect(settings, weir_binary, oha.as_deref());
    println!(
        "weir-bench soak: {:?} of mixed load, a config change every {:?}, a sample every {:?}; \
         load average {:.2}",
        settings.duration, settings.change_every, settings.sample_every, header.load_before
    );
    let mut mix = soak_load::mix();
    if oha.is_none() {
        println!("oha is not installed (bench/run installs it): no h2c load");
        mix.retain(|spec| spec.kind != Kind::H2c);
    }
    for spec in &mix {
        println!("   {}", spec.describe());
    }
    let connections: u32 = mix.iter().map(|s| s.clients).sum();

    let echo = |name: &str| {
        let log = work.join(format!("echo-{name}.log"));
        servers::start_echo(echo_binary, None, name, 1, &log)
    };
    let (echo_a, echo_b) = (echo("a")?, echo("b")?);
    let ws = websocket::EchoServer::start()?;
    let certificates = [
        tls::Certificate::generate(&work.join("tls-a"))?,
        tls::Certificate::generate(&work.join("tls-b"))?,
    ];
    let ports = Ports {
        echo_a: echo_a.port,
        echo_b: echo_b.port,
        ws: ws.port,
    };
    let mut config = ConfigDir::create(&work.join("config"), ports, certificates)?;
    let (mut weir, admin_port) = start_weir(weir_binary, &config.dir, work)?;
    servers::wait_ready(&mut weir, Duration::from_secs(60))?;
    let tls_port = weir.tls_port.expect("started with a TLS listener");
    check_routes(weir.port)?;
    println!(
        "Weir {} ready: plain :{}, TLS :{tls_port}, admin :{admin_port}; backends :{} and :{}, \
         WebSocket :{}",
        weir.pid(),
        weir.port,
        echo_a.port,
        echo_b.port,
        ws.port
    );

    let tallies: Vec<Arc<Tally>> = mix.iter().map(|_| Arc::default()).collect();
    let changes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        until: started + settings.duration,
        churn_hosts: Mutex::new(config.settled_churn_hosts()),
        certificates: Mutex::default(),
    });
    let probe = Probe {
        pid: weir.pid(),
        admin_port,
        tallies: &tallies,
        changes: &changes,
        started,
    };
    let mut samples = vec![probe.sample("before")];
    print_sample(&samples[0], &samples[0]);

    let target = soak_load::Target {
        port: weir.port,
        tls_port,
        oha,
        window: settings.sample_every,
        dir: work.to_path_buf(),
    };
    let mut clients = Vec::new();
    for (spec, tally) in mix.iter().zip(&tallies) {
        clients.extend(soak_load::start(spec, &target, &shared, tally));
    }
    let change_error: Arc<Mutex<Option<String>>> = Arc::default();
    let changer = {
        let (shared, changes, change_error) =
            (shared.clone(), changes.clone(), change_error.clone());
        let every = settings.change_every;
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !shared.stop.load(Ordering::Relaxed) {
                // The sleep paces the changes, in short steps so that the end of the soak
                // does not wait for the next change.
                let left = next.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                    continue;
                }
                next += every;
                match config.change() {
                    Ok(_) => {
                        changes.fetch_add(1, Ordering::Relaxed);
                        *shared.churn_hosts.lock().expect("no panic holds the lock") =
                            config.settled_churn_hosts();
                    }
                    Err(error) => {
                        *change_error.lock().expect("no panic holds the lock") = Some(error);
                        break;
                    }
                }
            }
            config.counts
        })
    };

    // Samples every interval until the end, on the interval's grid.
    let mut due = started + settings.sample_every;
    let end = started + settings.duration;
    while due <= end + Duration::from_millis(1) {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let sample = probe.sample("load");
        print_sample(&sample, samples.last().expect("the first sample is there"));
        samples.push(sample);
        if weir.child.try_wait().ok().flatten().is_some() {
            break;
        }
        due += settings.sample_every;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().map_err(|_| "a load thread panicked")?;
    }
    let change_counts = changer.join().map_err(|_| "the config thread panicked")?;
    if let Some(exited) = weir.child.try_wait().ok().flatten() {
        let log = std::fs::read_to_string(&weir.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        return Err(format!(
            "Weir exited ({exited}) during the soak; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    if let Some(error) = change_error.lock().expect("no panic holds the lock").take() {
        return Err(format!("changing the config failed: {error}"));
    }
    // The load's clients have closed their connections; this one shows what Weir keeps.
    std::thread::sleep(AFTER_LOAD);
    let after = probe.sample("after");
    print_sample(&after, samples.last().expect("samples were taken"));
    samples.push(after);

    let verdict = verdict(&samples, connections)?;
    let certificates_seen = shared
        .certificates
        .lock()
        .expect("no panic holds the lock")
        .len();
    weir.stop();
    let weir_exit = weir.child.try_wait().ok().flatten().map(|s| s.to_string());
    let mut header = header;
    header.load_after = system::load_average();
    header.elapsed = started.elapsed();
    let summary = Summary {
        header,
        mix,
        connections,
        tallies: tallies.iter().map(|t| t.error_kinds()).collect(),
        samples,
        change_counts,
        certificates_seen,
        verdict,
        weir_exit,
    };
    summary.print();
    let json = summary.write(&settings.results)?;
    let chart = json.with_extension("svg");
    crate::soak_chart::draw(&summary.to_json(), &chart)?;
    println!("results: {}\nchart: {}", json.display(), chart.display());
    if let Some(page) = &settings.markdown {
        summary.update_markdown(page, &json, &chart)?;
        println!("updated {}", page.display());
    }
    Ok(summary.verdict.passed)
}

/// Weir, standalone on `config`, with a plain and a TLS listener and its admin port.
fn start_weir(weir: &Path, config: &Path, work: &Path) -> Result<(Running, u16), String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let tls_port = free_port().map_err(|e| e.to_string())?;
    let admin = free_port().map_err(|e| e.to_string())?;
    let log = work.join("weir.log");
    let child = Command::new(weir)
        .arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--listen-tls", &format!("127.0.0.1:{tls_port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(WEIR_ARGS)
        .stdin(Stdio::null())
        .stdout(servers::file(&log)?)
        .stderr(servers::file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", weir.display()))?;
    Ok((
        Running {
            child,
            port,
            h2c_port: port,
            tls_port: Some(tls_port),
            log,
        },
        admin,
    ))
}

/// Weir's arguments besides its addresses: proxy threads as by default (one per core).
const WEIR_ARGS: [&str; 4] = ["--log-format", "json", "--drain-timeout", "1s"];

/// Checks, before the load starts, that the h2c-upstream route reaches the backend in HTTP/2
/// and that a WebSocket session goes through: the routes the load needs are up (waiting up
/// to 30 s, polling), and no silent fallback to HTTP/1.1.
fn check_routes(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let request =
        format!("GET / HTTP/1.1\r\nHost: {H2C_UPSTREAM_HOST}\r\nConnection: close\r\n\r\n");
    loop {
        let answer = Connection::new(port).exchange(request.as_bytes(), false, true);
        let version = answer.ok().filter(|a| a.status == 200).and_then(|a| {
            serde_json::from_slice::<Value>(&a.body).ok()?["version"]
                .as_str()
                .map(str::to_owned)
        });
        let websocket = websocket::session(port, WS_HOST, 1, 1);
        match (&version, &websocket) {
            (Some(version), Ok(())) if version == "HTTP/2.0" => return Ok(()),
            (Some(version), _) if version != "HTTP/2.0" => {
                return Err(format!(
                    "the backend saw {version} through {H2C_UPSTREAM_HOST}, not HTTP/2.0"
                ));
            }
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "routes not ready after 30 s: {H2C_UPSTREAM_HOST} saw {version:?}, \
                     WebSocket {websocket:?}"
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn print_sample(sample: &Sample, previous: &Sample) {
    let seconds = (sample.t - previous.t).max(1e-9);
    let rate = (sample.total_ok() - previous.total_ok()) as f64 / seconds;
    println!(
        "   {:>6}  {:>5.0} s  RSS {:>6.1} MiB  fds {:>4}  threads {:>3}  {:>6.0} ok/s  \
         errors {:>3}  changes {:>4}  generation {:>5}  series {:>4}  load {:.2}",
        sample.phase,
        sample.t,
        mib(sample.rss_kib as f64),
        sample.fds,
        sample.threads,
        if sample.phase == "load" { rate } else { 0.0 },
        sample.total_errors(),
        sample.changes,
        sample
            .metrics
            .table_generation
            .map_or("?".into(), |g| g.to_string()),
        sample.metrics.series,
        sample.load_average,
    );
}

/// Where and with what a run was made.
struct Header {
    date: String,
    command: String,
    machine: Value,
    versions: Value,
    settings: Value,
    load_before: f64,
    load_after: f64,
    elapsed: Duration,
}

impl Header {
    fn collect(settings: &SoakSettings, weir: &Path, oha: Option<&Path>) -> Self {
        let version =
            |program: &Path| system::command_line(&program.display().to_string(), &["--version"]);
        Self {
            date: system::command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
            command: settings.command.clone(),
            machine: system::machine(),
            versions: json!({
                "weir": version(weir),
                "weir_commit": crate::ai::working_tree_commit(),
                "oha": oha.and_then(version),
                "rustc": system::command_line("rustc", &["--version"]),
            }),
            settings: json!({
                "duration_s": settings.duration.as_secs_f64(),
                "sample_every_s": settings.sample_every.as_secs_f64(),
                "change_every_s": settings.change_every.as_secs_f64(),
                "weir_command": format!(
                    "weir --config DIR --listen 127.0.0.1:PORT --listen-tls 127.0.0.1:PORT \
                     --admin 127.0.0.1:PORT {}",
                    WEIR_ARGS.join(" ")
                ),
                "rss_growth_limit": RSS_GROWTH_LIMIT,
                "rss_growth_floor_mib": RSS_GROWTH_FLOOR_MIB,
            }),
            load_before: system::load_average(),
            load_after: 0.0,
            elapsed: Duration::ZERO,
        }
    }
}

struct Summary {
    header: Header,
    mix: Vec<Spec>,
    connections: u32,
    /// Per load: error messages and their counts.
    tallies: Vec<BTreeMap<String, u64>>,
    samples: Vec<Sample>,
    change_counts: BTreeMap<&'static str, u64>,
    certificates_seen: usize,
    verdict: Verdict,
    weir_exit: Option<String>,
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

impl Summary {
    /// `churn 199, endpoints 66, …`
    fn changes_by_kind(&self) -> String {
        self.change_counts
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn last_under_load(&self) -> &Sample {
        self.samples
            .iter()
            .rev()
            .find(|s| s.phase == "load")
            .expect("the verdict needed samples under load")
    }

    fn sample(&self, phase: &str) -> Option<&Sample> {
        self.samples.iter().find(|s| s.phase == phase)
    }

    fn print(&self) {
        let v = &self.verdict;
        let last = self.last_under_load();
        println!("\n== soak: {:.0} s", last.t);
        for (index, spec) in self.mix.iter().enumerate() {
            println!(
                "   {:<14} {:>9} {} ok, {} errors",
                spec.key,
                last.ok[index],
                spec.unit(),
                last.errors[index]
            );
            for (message, count) in &self.tallies[index] {
                println!("      {count} × {message}");
            }
        }
        println!(
            "   churn misses (404 from a route added or removed about then): {}",
            last.churn_misses
        );
        println!(
            "   config changes: {} ({}); table generation {} → {}; certificates served to new \
             TLS connections: {}",
            last.changes,
            self.changes_by_kind(),
            self.samples[0].metrics.table_generation.unwrap_or(0),
            last.metrics.table_generation.unwrap_or(0),
            self.certificates_seen
        );
        println!(
            "   RSS: {:.1} MiB after warm-up (samples 3–5), {:.1} MiB at the end (last 3): {:+.1} \
             MiB, allowed < {:.1}: {}; slope {:+.1} MiB/hour",
            v.baseline_rss_mib,
            v.end_rss_mib,
            v.end_rss_mib - v.baseline_rss_mib,
            v.rss_allowed_mib,
            if v.rss_flat { "flat" } else { "GROWING" },
            v.rss_slope_mib_per_hour
        );
        println!(
            "   fds: {:.1} after warm-up, {:.1} at the end: {:+.1}, allowed ≤ {:.0} (the load's \
             connections): {}",
            v.baseline_fds,
            v.end_fds,
            v.end_fds - v.baseline_fds,
            v.fds_allowed,
            if v.fds_flat { "flat" } else { "GROWING" }
        );
        if let (Some(before), Some(after)) = (self.sample("before"), self.sample("after")) {
            println!(
                "   idle: before the load {:.1} MiB, {} fds; {} s after it {:.1} MiB, {} fds",
                mib(before.rss_kib as f64),
                before.fds,
                AFTER_LOAD.as_secs(),
                mib(after.rss_kib as f64),
                after.fds
            );
        }
        println!(
            "   errors: {}\n   verdict: {}",
            v.errors,
            if v.passed { "PASS" } else { "FAIL" }
        );
    }

    fn to_json(&self) -> Value {
        let h = &self.header;
        let v = &self.verdict;
        let last = self.last_under_load();
        let loads: Vec<Value> = self
            .mix
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                json!({
                    "key": spec.key,
                    "describe": spec.describe(),
                    "clients": spec.clients,
                    "rate": spec.rate,
                    "unit": spec.unit(),
                    "ok": last.ok[i],
                    "errors": last.errors[i],
                    "error_kinds": self.tallies[i],
                })
            })
            .collect();
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "t": round(s.t, 1),
                    "phase": s.phase,
                    "rss_kib": s.rss_kib,
                    "fds": s.fds,
                    "threads": s.threads,
                    "ok": s.total_ok(),
                    "errors": s.total_errors(),
                    "ok_by_load": s.ok,
                    "errors_by_load": s.errors,
                    "churn_misses": s.churn_misses,
                    "changes": s.changes,
                    "table_generation": s.metrics.table_generation,
                    "table_routes": s.metrics.table_routes,
                    "weir_requests": s.metrics.requests,
                    "metric_series": s.metrics.series,
                    "load_average": s.load_average,
                })
            })
            .collect();
        json!({
            "date": h.date,
            "command": h.command,
            "machine": h.machine,
            "versions": h.versions,
            "settings": h.settings,
            "load_average": {"before": h.load_before, "after": h.load_after},
            "elapsed_s": round(h.elapsed.as_secs_f64(), 0),
            "loads": loads,
            "connections": self.connections,
            "config_changes": self.change_counts,
            "certificates_seen": self.certificates_seen,
            "weir_exit": self.weir_exit,
            "verdict": {
                "baseline_rss_mib": round(v.baseline_rss_mib, 2),
                "end_rss_mib": round(v.end_rss_mib, 2),
                "rss_allowed_mib": round(v.rss_allowed_mib, 2),
                "rss_flat": v.rss_flat,
                "rss_slope_mib_per_hour": round(v.rss_slope_mib_per_hour, 2),
                "baseline_fds": round(v.baseline_fds, 1),
                "end_fds": round(v.end_fds, 1),
                "fds_allowed": v.fds_allowed,
                "fds_flat": v.fds_flat,
                "errors": v.errors,
                "churn_misses": last.churn_misses,
                "passed": v.passed,
            },
            "samples": samples,
        })
    }

    /// Writes `<results>/<date>-soak.json` (`-soak-short` for runs under 10 minutes).
    fn write(&self, results: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(results).map_err(|e| format!("{}: {e}", results.display()))?;
        let day = self.header.date.get(..10).unwrap_or("undated");
        let short = self.header.settings["duration_s"].as_f64().unwrap_or(0.0) < 600.0;
        let path = results.join(if short {
            format!("{day}-soak-short.json")
        } else {
            format!("{day}-soak.json")
        });
        let text = serde_json::to_string_pretty(&self.to_json()).expect("JSON values encode");
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Replaces the section between the page's `bench:soak` markers with this run.
    fn update_markdown(&self, page: &Path, json: &Path, chart: &Path) -> Result<(), String> {
        crate::report::replace_section(page, "soak", |relative| {
            self.markdown(&relative(json), &relative(chart))
        })
    }

    fn markdown(&self, json: &str, chart: &str) -> String {
        let h = &self.header;
        let v = &self.verdict;
        let last = self.last_under_load();
        let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Latest run: **{}**, `{}` ({} s). Raw figures: [`{json}`]({json}).\n",
            h.date,
            h.command,
            h.elapsed.as_secs()
        );
        let _ = writeln!(
            md,
            "- Machine: {}; load average {:.2} before, {:.2} after (other work was running on \
             the machine; a soak looks for leaks, not speed)",
            system::describe_machine(&h.machine),
            h.load_before,
            h.load_after
        );
        let _ = writeln!(
            md,
            "- Versions: {} (commit {}), {}; {}",
            text(&h.versions["weir"]),
            text(&h.versions["weir_commit"]),
            text(&h.versions["oha"]),
            text(&h.versions["rustc"])
        );
        let _ = writeln!(
            md,
            "- **Verdict: {}.** RSS {:.1} MiB after warm-up (mean of samples 3–5 under load), \
             {:.1} MiB at the end (mean of the last 3): {:+.1} MiB (flat below {:+.1}); slope \
             {:+.1} MiB/hour. Open fds {:.1} → {:.1} ({:+.1}; flat up to the load's {} \
             connections). Errors: **{}**.",
            if v.passed { "pass" } else { "FAIL" },
            v.baseline_rss_mib,
            v.end_rss_mib,
            v.end_rss_mib - v.baseline_rss_mib,
            v.rss_allowed_mib,
            v.rss_slope_mib_per_hour,
            v.baseline_fds,
            v.end_fds,
            v.end_fds - v.baseline_fds,
            self.connections,
            v.errors
        );
        if let (Some(before), Some(after)) = (self.sample("before"), self.sample("after")) {
            let _ = writeln!(
                md,
                "- Idle: {:.1} MiB and {} fds before the load; {:.1} MiB and {} fds {} s after \
                 it stopped. Threads: {} before, {} at the end.",
                mib(before.rss_kib as f64),
                before.fds,
                mib(after.rss_kib as f64),
                after.fds,
                AFTER_LOAD.as_secs(),
                before.threads,
                last.threads
            );
        }
        let _ = writeln!(
            md,
            "- Config changes: {} in {:.0} s ({}); Weir's table generation {} → {}; {} distinct \
             certificates served to new TLS connections; metric series {} → {}.",
            last.changes,
            last.t,
            self.changes_by_kind(),
            self.samples[0].metrics.table_generation.unwrap_or(0),
            last.metrics.table_generation.unwrap_or(0),
            self.certificates_seen,
            self.samples[0].metrics.series,
            last.metrics.series
        );
        let _ = writeln!(md, "\n![RSS and open fds over the soak]({chart})\n");
        let _ = writeln!(md, "| load | clients | rate /s | ok | errors |");
        let _ = writeln!(md, "|---|--:|--:|--:|--:|");
        for (i, spec) in self.mix.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} {} | {} |",
                spec.key,
                spec.clients,
                spec.rate,
                last.ok[i],
                spec.unit(),
                last.errors[i]
            );
        }
        let _ = writeln!(
            md,
            "\nChurn misses (a 404 from a route added or removed at about that moment, not \
             counted as errors): {}.",
            last.churn_misses
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::{WeirMetrics, parse_duration};
    use std::time::Duration;

    #[test]
    fn durations_take_seconds_or_minutes() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn metrics_are_summed_by_status_class() {
        let metrics = WeirMetrics::parse(
            "# HELP x\nweir_table_generation 7\nweir_table_routes 33\n\
             weir_requests_total{route=\"default/a\",status_class=\"2xx\"} 5\n\
             weir_requests_total{route=\"default/b\",status_class=\"2xx\"} 2\n\
             weir_requests_total{route=\"\",status_class=\"4xx\"} 1\n",
        );
        assert_eq!(metrics.table_generation, Some(7));
        assert_eq!(metrics.table_routes, Some(33));
        assert_eq!(metrics.requests["2xx"], 7);
        assert_eq!(metrics.requests["4xx"], 1);
        assert_eq!(metrics.series, 5);
    }
}
