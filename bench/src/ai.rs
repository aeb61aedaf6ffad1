//! `weir-bench ai`: Weir's AI gateway beside LiteLLM's proxy (PyPI `litellm[proxy]`), both in
//! front of the same mock provider (`weir-mock-llm`), in one run, and the mock called directly
//! as the baseline. `bench/ai` installs LiteLLM, builds what is needed and calls this; see
//! BENCHMARKS.md ("AI gateway: Weir beside LiteLLM") for the method and the latest figures.
//!
//! Three targets, interleaved round by round: the mock directly, Weir → mock, LiteLLM → mock.
//! Each round starts each gateway afresh, checks that a whole and a streamed answer come back
//! complete (ai_load.rs), warms it up, then measures four loads of `weir-bench ai-load`:
//!
//! - `throughput`, `throughput-stream`: `--clients` keep-alive connections (32), whole and
//!   streamed answers; the gateway alone on CPU 1 (Weir `--threads 1`, LiteLLM
//!   `--num_workers 1`: one process), load generator and mock on CPU 0, as the per-core
//!   scenarios of `bench/run` place a proxy, its load and its backend;
//! - `latency`, `latency-stream`: `--latency-clients` connections (1), one request at a time;
//!   the gateway is moved (`taskset -a -p`, every thread) onto CPU 0 beside the client and
//!   the mock, as `bench/run`'s `one-conn` does: on this VM a wake-up across CPUs costs ~25 µs
//!   through the hypervisor, which would be counted as the gateway's added latency otherwise.
//!
//! Per run: 2xx answers per second; latency p50/p99 (whole answers: to the end of the body;
//! streams: to the first event with content, time to first token); the CPU time of the
//! gateway's process tree (utime + stime of every thread of every process, /proc) over the
//! run, hence requests per gateway CPU-second; the mock's CPU; each CPU's busy share; the
//! gateway's peak RSS. "Added" latency is a gateway's p50 (p99) minus the mock's direct p50
//! (p99) under the same load in the same run.
//!
//! On a shared machine: each run also counts the busy CPU time nobody of the run used (other
//! processes, /proc/stat minus the gateway, the mock and the load generator); a run during
//! which that passed `--max-other` of a core (10%) is made again, up to `--retries` times,
//! keeping the least disturbed attempt, and the report says how many were.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    ai_load,
    servers::{self, Running, free_port},
    system,
};

/// The key the mock asks of callers: the gateways' provider key.
const PROVIDER_KEY: &str = "sk-bench-provider-3e9a";
/// The key clients give the gateways (Weir: a client-key Secret; LiteLLM: its master key).
const CLIENT_KEY: &str = "sk-bench-client-8c41";
/// The model clients ask the gateways for.
const MODEL: &str = "bench";
/// The model the gateways ask the mock for: a real model's name, so that LiteLLM finds it in
/// its model cost map and takes its usual path (cost tracking); the mock reads no directive
/// in it and answers its default.
const UPSTREAM_MODEL: &str = "gpt-4o-mini";
/// Where `bench/ai` installs LiteLLM, under the home directory.
pub const LITELLM_VENV: &str = ".cache/weir/bench-venv-litellm";
/// Gateways run here in the throughput loads.
const GATEWAY_CPU: &str = "1";
/// The load generator and the mock, always; the gateways too in the latency loads.
const CLIENT_CPU: &str = "0";
/// LiteLLM's environment: errors only in its log, the model cost map from the package (no
/// fetch from GitHub at start), production mode (no `.env` loading).
const LITELLM_ENV: [(&str, &str); 3] = [
    ("LITELLM_LOG", "ERROR"),
    ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
    ("LITELLM_MODE", "PRODUCTION"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gateway {
    /// The mock provider itself: the baseline.
    Direct,
    Weir,
    Litellm,
}

impl Gateway {
    fn key(self) -> &'static str {
        match self {
            Gateway::Direct => "direct",
            Gateway::Weir => "weir",
            Gateway::Litellm => "litellm",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Gateway::Direct => "mock direct",
            Gateway::Weir => "Weir",
            Gateway::Litellm => "LiteLLM",
        }
    }
}

/// One of the four loads.
pub struct LoadSpec {
    key: &'static str,
    stream: bool,
    /// The latency loads: few connections, everything on CPU 0.
    latency: bool,
}

/// In the order each round runs them: the throughput loads while the gateway is on CPU 1,
/// then the latency loads once it has been moved to CPU 0.
const LOADS: [LoadSpec; 4] = [
    LoadSpec {
        key: "throughput",
        stream: false,
        latency: false,
    },
    LoadSpec {
        key: "throughput-stream",
        stream: true,
        latency: false,
    },
    LoadSpec {
        key: "latency",
        stream: false,
        latency: true,
    },
    LoadSpec {
        key: "latency-stream",
        stream: true,
        latency: true,
    },
];

pub struct AiSettings {
    quick: bool,
    duration: Duration,
    warmup: Duration,
    repeats: usize,
    clients: u32,
    latency_clients: u32,
    bin_dir: PathBuf,
    litellm: Option<PathBuf>,
    results: PathBuf,
    markdown: Option<PathBuf>,
    command: String,
    /// The commit the Weir binary was built from, when it is not the working tree's.
    weir_commit: Option<String>,
    /// A run during which other processes used more than this share of a core is made again.
    max_other: f64,
    /// At most this many times.
    retries: u32,
}

impl AiSettings {
    fn clients(&self, load: &LoadSpec) -> u32 {
        if load.latency {
            self.latency_clients
        } else {
            self.clients
        }
    }
}

const USAGE: &str = "usage: weir-bench ai [--quick] [--duration SECS] [--warmup SECS] [--repeats N]
                     [--clients N] [--latency-clients N] [--bin-dir DIR] [--litellm PATH]
                     [--results DIR] [--markdown FILE] [--command TEXT] [--weir-commit TEXT]
                     [--max-other SHARE] [--retries N]
--bin-dir holds weir and weir-mock-llm (default target/release); --litellm is LiteLLM's
`litellm` command (default ~/.cache/weir/bench-venv-litellm/bin/litellm, where bench/ai
installs it); --weir-commit names the commit the binaries were built from (default: the
working tree's HEAD, marked when files outside bench/ differ from it); a run during which
other processes used more than --max-other of a core (0.1) is made again, up to --retries
times (3)";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<AiSettings, String> {
    let mut settings = AiSettings {
        quick: false,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        repeats: 3,
        clients: 32,
        latency_clients: 1,
        bin_dir: PathBuf::from("target/release"),
        litellm: None,
        results: PathBuf::from("bench/results"),
        markdown: None,
        command: "bench/ai".into(),
        weir_commit: None,
        max_other: 0.10,
        retries: 3,
    };
    let (mut duration, mut warmup, mut repeats) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let seconds = |text: String| {
            text.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|_| format!("{text}: not a number of seconds"))
        };
        let count = |text: String| {
            text.parse::<u32>()
                .map(|n| n.max(1))
                .map_err(|_| format!("{text}: not a number"))
        };
        match arg.as_str() {
            "--quick" => settings.quick = true,
            "--duration" => duration = Some(seconds(value(&arg)?)?),
            "--warmup" => warmup = Some(seconds(value(&arg)?)?),
            "--repeats" => repeats = Some(count(value(&arg)?)? as usize),
            "--clients" => settings.clients = count(value(&arg)?)?,
            "--latency-clients" => settings.latency_clients = count(value(&arg)?)?,
            "--bin-dir" => settings.bin_dir = value(&arg)?.into(),
            "--litellm" => settings.litellm = Some(value(&arg)?.into()),
            "--results" => settings.results = value(&arg)?.into(),
            "--markdown" => settings.markdown = Some(value(&arg)?.into()),
            "--command" => settings.command = value(&arg)?,
            "--weir-commit" => settings.weir_commit = Some(value(&arg)?),
            "--max-other" => {
                settings.max_other = value(&arg)?
                    .parse()
                    .map_err(|_| "--max-other: a share of a core, e.g. 0.1")?
            }
            "--retries" => {
                settings.retries = value(&arg)?
                    .parse()
                    .map_err(|_| "--retries: not a number")?
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if settings.quick {
        settings.duration = Duration::from_secs(2);
        settings.warmup = Duration::from_millis(500);
        settings.repeats = 1;
    }
    settings.duration = duration.unwrap_or(settings.duration);
    settings.warmup = warmup.unwrap_or(settings.warmup);
    settings.repeats = repeats.unwrap_or(settings.repeats);
    Ok(settings)
}

/// The programs of a run.
struct Programs {
    weir: PathBuf,
    mock: PathBuf,
    /// `None`: LiteLLM is not installed, and the run goes on without it.
    litellm: Option<PathBuf>,
    /// This binary, for `weir-bench ai-load`.
    harness: PathBuf,
}

/// `weir-bench ai`.
pub fn run(args: impl Iterator<Item = String>) -> Result<(), String> {
    let settings = parse_args(args)?;
    let programs = Programs {
        weir: settings.bin_dir.join("weir"),
        mock: settings.bin_dir.join("weir-mock-llm"),
        litellm: match &settings.litellm {
            Some(path) if path.is_file() => Some(path.clone()),
            Some(path) => return Err(format!("{}: no such file (--litellm)", path.display())),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(LITELLM_VENV).join("bin/litellm"))
                .filter(|path| path.is_file()),
        },
        harness: std::env::current_exe()
            .map_err(|e| format!("cannot find weir-bench itself: {e}"))?,
    };
    for program in [&programs.weir, &programs.mock] {
        if !program.is_file() {
            return Err(format!(
                "{} is missing: cargo build --release --bin weir --bin weir-mock-llm",
                program.display()
            ));
        }
    }
    let gateways: Vec<Gateway> = [Gateway::Direct, Gateway::Weir, Gateway::Litellm]
        .into_iter()
        .filter(|g| *g != Gateway::Litellm || programs.litellm.is_some())
        .collect();

    let started = Instant::now();
    let mut header = Header::collect(&settings, &programs);
    println!(
        "weir-bench ai: {} mode, {:?} per run after {:?} of warm-up, {} round(s); \
         {} connections for throughput, {} for latency",
        if settings.quick { "quick" } else { "full" },
        settings.duration,
        settings.warmup,
        settings.repeats,
        settings.clients,
        settings.latency_clients,
    );
    println!(
        "before the run: CPUs {} busy over 3 s, load average {:.2}",
        header.busy_before, header.load_before
    );
    if programs.litellm.is_none() {
        println!(
            "LiteLLM is not installed (bench/ai installs it into ~/{LITELLM_VENV}); skipping it"
        );
    }

    let work = std::env::temp_dir().join(format!("weir-bench-ai.{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = measure_all(&settings, &programs, &gateways, &work);
    let _ = std::fs::remove_dir_all(&work);
    let loads = result?;

    header.load_after = system::load_average();
    header.elapsed = started.elapsed();
    let summary = Summary { header, loads };
    summary.print();
    let json = summary.write(&settings)?;
    println!("\nresults: {}", json.display());
    if let Some(markdown) = &settings.markdown {
        summary.update_markdown(markdown, &json)?;
        println!("updated {}", markdown.display());
    }
    Ok(())
}

/// What one load run measured (the JSON line of `weir-bench ai-load`).
#[derive(Clone, Debug, Default)]
struct Measured {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    /// Whole answers: latency; streams: time to first token.
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// To the end of the body.
    total_p50_us: f64,
    total_p99_us: f64,
    /// The load generator's own CPU time.
    load_cpu_s: f64,
}

impl Measured {
    fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One measured run of one target under one load.
#[derive(Clone, Debug)]
struct AiRun {
    measured: Measured,
    /// CPU seconds of the gateway's process tree over the run; `None` for the mock direct.
    gateway_cpu_s: Option<f64>,
    /// CPU seconds of the mock over the run.
    mock_cpu_s: f64,
    /// Busy share of CPU 0 (load generator and mock) and CPU 1 over the run.
    cpu_busy: [f64; 2],
    /// CPU time of the machine over the run that neither the gateway, nor the mock, nor the
    /// load generator used: other processes (on a shared machine), and kernel work charged to
    /// no process.
    other_cpu_s: f64,
    /// The gateway's peak RSS since it started.
    peak_rss_kib: Option<u64>,
    /// How many times the run was made: more than one when other processes disturbed the
    /// earlier ones (`--max-other`); the least disturbed attempt is the one kept.
    attempts: u32,
}

impl AiRun {
    /// 2xx answers per CPU-second of the gateway's process tree.
    fn per_gateway_cpu_second(&self) -> Option<f64> {
        self.gateway_cpu_s
            .filter(|cpu| *cpu > 0.0)
            .map(|cpu| self.measured.ok as f64 / cpu)
    }

    /// Other processes' CPU time over wall time (see `other_cpu_s`).
    fn other_share(&self) -> f64 {
        self.other_cpu_s / self.measured.seconds.max(1e-9)
    }

    /// The gateway's CPU time over wall time: 1.0 is one core saturated.
    fn gateway_cores(&self) -> Option<f64> {
        self.gateway_cpu_s
            .map(|cpu| cpu / self.measured.seconds.max(1e-9))
    }
}

/// One load's runs, per target, in the order they were made.
struct LoadResult {
    spec: &'static LoadSpec,
    clients: u32,
    runs: Vec<(Gateway, Vec<AiRun>)>,
}

impl LoadResult {
    /// The reported run: the median p50 of a latency load, the median req/s of a throughput one.
    fn median(&self, gateway: Gateway) -> Option<&AiRun> {
        let (_, runs) = self.runs.iter().find(|(g, _)| *g == gateway)?;
        let mut sorted: Vec<&AiRun> = runs.iter().collect();
        if self.spec.latency {
            sorted.sort_by(|a, b| a.measured.p50_us.total_cmp(&b.measured.p50_us));
        } else {
            sorted.sort_by(|a, b| a.measured.rps().total_cmp(&b.measured.rps()));
        }
        sorted.get(sorted.len() / 2).copied()
    }

    /// Errors over every round.
    fn errors(&self, gateway: Gateway) -> u64 {
        self.runs
            .iter()
            .filter(|(g, _)| *g == gateway)
            .flat_map(|(_, runs)| runs)
            .map(|r| r.measured.errors)
            .sum()
    }

    /// The first error of any round, if any.
    fn first_error(&self, gateway: Gateway) -> Option<&str> {
        self.runs
            .iter()
            .filter(|(g, _)| *g == gateway)
            .flat_map(|(_, runs)| runs)
            .find_map(|r| r.measured.first_error.as_deref())
    }

    /// The gateway's p50 and p99 minus the mock's direct ones.
    fn added(&self, gateway: Gateway) -> Option<(f64, f64)> {
        let run = self.median(gateway)?;
        let direct = self.median(Gateway::Direct)?;
        Some((
            run.measured.p50_us - direct.measured.p50_us,
            run.measured.p99_us - direct.measured.p99_us,
        ))
    }
}

fn measure_all(
    settings: &AiSettings,
    programs: &Programs,
    gateways: &[Gateway],
    work: &Path,
) -> Result<Vec<LoadResult>, String> {
    let mut mock = start_mock(programs, work)?;
    println!(
        "mock provider: {} on 127.0.0.1:{}",
        programs.mock.display(),
        mock.port
    );
    let mut loads: Vec<LoadResult> = LOADS
        .iter()
        .map(|spec| LoadResult {
            spec,
            clients: settings.clients(spec),
            runs: gateways.iter().map(|g| (*g, Vec::new())).collect(),
        })
        .collect();
    for round in 0..settings.repeats {
        println!("\n== round {} of {}", round + 1, settings.repeats);
        for &gateway in gateways {
            let runs = measure_gateway(settings, programs, gateway, &mock, round, work)
                .map_err(|e| format!("{} (round {}): {e}", gateway.label(), round + 1))?;
            for (load, run) in loads.iter_mut().zip(runs) {
                let (_, target_runs) = load
                    .runs
                    .iter_mut()
                    .find(|(g, _)| *g == gateway)
                    .expect("every gateway has a slot");
                target_runs.push(run);
            }
        }
    }
    mock.stop();
    Ok(loads)
}

/// Starts the gateway (if any), checks and warms it up, measures the four loads, stops it.
fn measure_gateway(
    settings: &AiSettings,
    programs: &Programs,
    gateway: Gateway,
    mock: &Running,
    round: usize,
    work: &Path,
) -> Result<Vec<AiRun>, String> {
    let dir = work.join(format!("{}-{}", gateway.key(), round + 1));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut running = match gateway {
        Gateway::Direct => None,
        Gateway::Weir => Some(start_weir(&programs.weir, mock.port, &dir)?),
        Gateway::Litellm => Some(start_litellm(
            programs
                .litellm
                .as_deref()
                .ok_or("LiteLLM is not installed")?,
            mock.port,
            &dir,
        )?),
    };
    let (port, key, model) = match &running {
        None => (mock.port, PROVIDER_KEY, UPSTREAM_MODEL),
        Some(running) => (running.port, CLIENT_KEY, MODEL),
    };
    if let Some(running) = &mut running {
        let began = Instant::now();
        wait_ready(running, key, model, Duration::from_secs(180))?;
        println!(
            "   {:<12} up in {:.1} s",
            gateway.label(),
            began.elapsed().as_secs_f64()
        );
    }
    ai_load::check(port, key, model).map_err(|e| format!("answers are wrong: {e}"))?;
    for stream in [false, true] {
        load(
            programs,
            port,
            key,
            model,
            settings.clients,
            stream,
            settings.warmup,
        )?;
    }
    let gateway_pid = running.as_ref().map(Running::pid);
    let mut runs = Vec::new();
    let mut on_client_cpu = false;
    for spec in &LOADS {
        if spec.latency && !on_client_cpu {
            if let Some(pid) = gateway_pid {
                pin(pid, CLIENT_CPU)?;
            }
            on_client_cpu = true;
        }
        let target = Target {
            port,
            key,
            model,
            gateway_pid,
            mock_pid: mock.pid(),
        };
        // The least disturbed of up to 1 + `retries` attempts.
        let mut attempts = 0;
        let mut kept: Option<AiRun> = None;
        let run = loop {
            attempts += 1;
            let run = measure_run(settings, programs, &target, spec)?;
            print_run(gateway, spec, &run);
            if run.measured.ok == 0 {
                return Err(format!("{}: no successful request", spec.key));
            }
            let share = run.other_share();
            let quiet = share <= settings.max_other;
            if kept
                .as_ref()
                .is_none_or(|k| run.other_share() < k.other_share())
            {
                kept = Some(run);
            }
            if quiet || attempts > settings.retries {
                let mut run = kept.take().expect("kept above");
                run.attempts = attempts;
                break run;
            }
            println!(
                "   {:<12} (other processes used {:.0}% of a core: measuring again in {} s)",
                "",
                share * 100.0,
                RETRY_PAUSE.as_secs()
            );
            std::thread::sleep(RETRY_PAUSE);
        };
        runs.push(run);
    }
    if let Some(running) = &mut running {
        running.stop();
    }
    Ok(runs)
}

/// Where a load goes and whose CPU it counts.
struct Target<'a> {
    port: u16,
    key: &'a str,
    model: &'a str,
    gateway_pid: Option<u32>,
    mock_pid: u32,
}

/// How long to wait before measuring again a run other processes disturbed.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// One run: warm-up, then the measured load with the CPU of everyone involved.
fn measure_run(
    settings: &AiSettings,
    programs: &Programs,
    target: &Target,
    spec: &LoadSpec,
) -> Result<AiRun, String> {
    let clients = settings.clients(spec);
    let run_load = |duration| {
        load(
            programs,
            target.port,
            target.key,
            target.model,
            clients,
            spec.stream,
            duration,
        )
    };
    run_load(settings.warmup)?;
    let cpu_before = target.gateway_pid.map(system::tree_cpu_ticks);
    let mock_before = system::tree_cpu_ticks(target.mock_pid);
    let machine_before = system::CpuSample::now();
    let measured = run_load(settings.duration)?;
    let machine_after = system::CpuSample::now();
    let busy = machine_after.busy_since(&machine_before);
    let busy_ticks = machine_after.busy_ticks_since(&machine_before);
    let mock_ticks = system::tree_cpu_ticks(target.mock_pid).saturating_sub(mock_before);
    let gateway_ticks = target
        .gateway_pid
        .zip(cpu_before)
        .map(|(pid, before)| system::tree_cpu_ticks(pid).saturating_sub(before));
    let own_ticks = gateway_ticks.unwrap_or(0)
        + mock_ticks
        + (measured.load_cpu_s * system::TICKS_PER_SECOND).round() as u64;
    Ok(AiRun {
        other_cpu_s: busy_ticks.saturating_sub(own_ticks) as f64 / system::TICKS_PER_SECOND,
        gateway_cpu_s: gateway_ticks.map(|t| t as f64 / system::TICKS_PER_SECOND),
        mock_cpu_s: mock_ticks as f64 / system::TICKS_PER_SECOND,
        cpu_busy: [
            busy.first().copied().unwrap_or(0.0),
            busy.get(1).copied().unwrap_or(0.0),
        ],
        peak_rss_kib: target.gateway_pid.map(system::tree_peak_rss_kib),
        attempts: 1,
        measured,
    })
}

fn print_run(gateway: Gateway, spec: &LoadSpec, run: &AiRun) {
    let m = &run.measured;
    println!(
        "   {:<12} {:<18} {:>8.0} req/s  {:>8} req/gateway CPU-s  p50 {:>7.0} µs  p99 {:>7.0} µs  \
         gateway {:>4}  CPU0 {:>3.0}%  other {:>3.0}%{}",
        gateway.label(),
        spec.key,
        m.rps(),
        run.per_gateway_cpu_second()
            .map_or("–".into(), |r| format!("{r:.0}")),
        m.p50_us,
        m.p99_us,
        run.gateway_cores()
            .map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
        run.cpu_busy[0] * 100.0,
        run.other_share() * 100.0,
        match &m.first_error {
            Some(error) if m.errors > 0 => format!("  {} errors, the first: {error}", m.errors),
            _ => String::new(),
        }
    );
}

/// Runs `weir-bench ai-load` on CPU 0 and reads its summary.
fn load(
    programs: &Programs,
    port: u16,
    key: &str,
    model: &str,
    clients: u32,
    stream: bool,
    duration: Duration,
) -> Result<Measured, String> {
    let mut command = Command::new("taskset");
    command
        .args(["-c", CLIENT_CPU])
        .arg(&programs.harness)
        .arg("ai-load")
        .args(["--port", &port.to_string()])
        .args(["--key", key, "--model", model])
        .args(["--clients", &clients.to_string()])
        .args(["--millis", &duration.as_millis().to_string()]);
    if stream {
        command.arg("--stream");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run weir-bench ai-load: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "weir-bench ai-load failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("weir-bench ai-load printed no summary:\n{text}"))?;
    let report: Value =
        serde_json::from_str(line).map_err(|e| format!("the ai-load summary: {e}"))?;
    let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
    Ok(Measured {
        ok: number("ok") as u64,
        errors: number("errors") as u64,
        first_error: report["first_error"].as_str().map(str::to_owned),
        seconds: number("duration_us") / 1e6,
        p50_us: number("p50"),
        p99_us: number("p99"),
        p999_us: number("p999"),
        total_p50_us: number("total_p50"),
        total_p99_us: number("total_p99"),
        load_cpu_s: number("cpu_ticks") / system::TICKS_PER_SECOND,
    })
}

/// Moves every thread of every process of the tree onto `cpus`.
fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    for process in system::process_tree(pid) {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &process.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("taskset: {e}"))?;
        // A process that ended in between is no error.
        if !status.success() && Path::new(&format!("/proc/{process}")).exists() {
            return Err(format!("taskset -a -p -c {cpus} {process} failed"));
        }
    }
    Ok(())
}

/// The mock provider, on CPU 0 with one worker thread, learning its port from the line it
/// prints; it checks the provider key and keeps no request log.
fn start_mock(programs: &Programs, work: &Path) -> Result<Running, String> {
    let log = work.join("mock.log");
    let mut child = Command::new("taskset")
        .args(["-c", CLIENT_CPU])
        .arg(&programs.mock)
        .args(["--listen", "127.0.0.1:0", "--api-key", PROVIDER_KEY])
        .args(["--name", "bench", "--threads", "1", "--no-record"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(servers::file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", programs.mock.display()))?;
    let port = servers::listening_port(&mut child, "the mock")?;
    Ok(Running {
        child,
        port,
        h2c_port: port,
        tls_port: None,
        log,
    })
}

/// Weir's configuration directory: a client-key Secret, a provider-key Secret and one
/// AIModel `bench` with one OpenAI provider, the mock (served on every host).
pub fn weir_config(mock_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: client-key\n  labels: {{weir.dev/ai-key: \"true\"}}\n\
         stringData: {{key: {CLIENT_KEY}}}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: provider-key\n  labels: {{weir.dev/ai-credentials: \"true\"}}\n\
         stringData: {{apiKey: {PROVIDER_KEY}}}\n\
         ---\napiVersion: weir.dev/v1alpha1\nkind: AIModel\nmetadata: {{name: {MODEL}}}\nspec:\n  providers:\n  \
         - name: mock\n    type: OpenAI\n    model: {UPSTREAM_MODEL}\n    \
         endpoint: {{url: \"http://127.0.0.1:{mock_port}/v1\"}}\n    \
         credentials: {{secretRef: {{name: provider-key, key: apiKey}}}}\n"
    )
}

/// Weir, standalone, one proxy thread, on CPU 1.
fn start_weir(weir: &Path, mock_port: u16, dir: &Path) -> Result<Running, String> {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
    std::fs::write(config.join("ai.yaml"), weir_config(mock_port)).map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let admin = free_port().map_err(|e| e.to_string())?;
    let log = dir.join("weir.log");
    let child = Command::new("taskset")
        .args(["-c", GATEWAY_CPU])
        .arg(weir)
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args([
            "--threads",
            "1",
            "--log-format",
            "json",
            "--drain-timeout",
            "1s",
        ])
        .stdin(Stdio::null())
        .stdout(servers::file(&log)?)
        .stderr(servers::file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", weir.display()))?;
    Ok(Running {
        child,
        port,
        h2c_port: port,
        tls_port: None,
        log,
    })
}

/// LiteLLM's `config.yaml`: one model `bench` → `openai/mock` at the mock, the client key as
/// its master key (no database: only that key is let in), and its logging and telemetry
/// extras off (`callbacks: []`, no spend or error logs, which need a database anyway);
/// `num_retries: 0` as in LiteLLM's own benchmark configuration.
pub fn litellm_config(mock_port: u16) -> String {
    format!(
        "model_list:\n- model_name: {MODEL}\n  litellm_params:\n    model: openai/{UPSTREAM_MODEL}\n    \
         api_base: http://127.0.0.1:{mock_port}/v1\n    api_key: {PROVIDER_KEY}\n\
         litellm_settings:\n  telemetry: false\n  set_verbose: false\n  callbacks: []\n  \
         num_retries: 0\n  request_timeout: 600\n\
         general_settings:\n  master_key: {CLIENT_KEY}\n  disable_spend_logs: true\n  \
         disable_error_logs: true\n"
    )
}

/// LiteLLM's proxy, one uvicorn worker (one process), on CPU 1.
fn start_litellm(litellm: &Path, mock_port: u16, dir: &Path) -> Result<Running, String> {
    let config = dir.join("litellm.yaml");
    std::fs::write(&config, litellm_config(mock_port)).map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let log = dir.join("litellm.log");
    let mut command = Command::new("taskset");
    command
        .args(["-c", GATEWAY_CPU])
        .arg(litellm)
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--num_workers", "1"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(servers::file(&log)?)
        .stderr(servers::file(&log)?);
    for (name, value) in LITELLM_ENV {
        command.env(name, value);
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", litellm.display()))?;
    Ok(Running {
        child,
        port,
        h2c_port: port,
        tls_port: None,
        log,
    })
}

/// Polls with a whole request until the gateway answers 200, it exits, or `limit` passes.
fn wait_ready(
    running: &mut Running,
    key: &str,
    model: &str,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            let log = std::fs::read_to_string(&running.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            return Err(format!(
                "exited with {status} before it was ready:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        if ai_load::probe(running.port, key, model) == Some(200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not ready after {limit:?} (log: {})",
                running.log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The working tree's commit, marked when tracked files outside `bench/` and BENCHMARKS.md
/// differ from it (a build of the working tree is then not that commit).
pub(crate) fn working_tree_commit() -> Option<String> {
    let commit = system::command_line("git", &["rev-parse", "--short", "HEAD"])?;
    let clean = Command::new("git")
        .args([
            "diff",
            "--quiet",
            "HEAD",
            "--",
            ".",
            ":!bench",
            ":!BENCHMARKS.md",
        ])
        .status()
        .is_ok_and(|status| status.success());
    Some(if clean {
        commit
    } else {
        format!("{commit} with uncommitted changes")
    })
}

/// Where and with what a run was made.
struct Header {
    date: String,
    mode: &'static str,
    command: String,
    machine: Value,
    versions: Value,
    settings: Value,
    load_before: f64,
    load_after: f64,
    busy_before: String,
    elapsed: Duration,
}

impl Header {
    fn collect(settings: &AiSettings, programs: &Programs) -> Self {
        let version =
            |program: &Path| system::command_line(&program.display().to_string(), &["--version"]);
        // LiteLLM and the server stack under it, from the venv's own interpreter.
        let litellm = programs.litellm.as_deref().and_then(|litellm| {
            let python = litellm.with_file_name("python");
            system::command_line(
                &python.display().to_string(),
                &[
                    "-c",
                    "import importlib.metadata as m, platform\n\
                     def v(p):\n    try: return m.version(p)\n    except Exception: return 'absent'\n\
                     print(f\"LiteLLM {v('litellm')} (uvicorn {v('uvicorn')}, uvloop {v('uvloop')}, \
                     httptools {v('httptools')}, Python {platform.python_version()})\")",
                ],
            )
        });
        Self {
            date: system::command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
            mode: if settings.quick { "quick" } else { "full" },
            command: settings.command.clone(),
            machine: system::machine(),
            versions: json!({
                "weir": version(&programs.weir),
                "weir_commit": settings.weir_commit.clone().or_else(working_tree_commit),
                "mock": version(&programs.mock),
                "litellm": litellm,
                "rustc": system::command_line("rustc", &["--version"]),
            }),
            settings: json!({
                "duration_s": settings.duration.as_secs_f64(),
                "warmup_s": settings.warmup.as_secs_f64(),
                "repeats": settings.repeats,
                "clients": settings.clients,
                "latency_clients": settings.latency_clients,
                "max_other": settings.max_other,
                "retries": settings.retries,
                "request": serde_json::from_str::<Value>(&ai_load::body(MODEL, false))
                    .unwrap_or(Value::Null),
                "answer": ai_load::EXPECTED_CONTENT,
                "weir_config": weir_config(0).replace("127.0.0.1:0", "127.0.0.1:MOCK_PORT"),
                "weir_command": "weir --config DIR --listen 127.0.0.1:PORT --admin 127.0.0.1:PORT \
                                 --threads 1 --log-format json --drain-timeout 1s",
                "litellm_config": litellm_config(0).replace("127.0.0.1:0", "127.0.0.1:MOCK_PORT"),
                "litellm_command": "litellm --config litellm.yaml --host 127.0.0.1 --port PORT \
                                    --num_workers 1",
                "litellm_env": LITELLM_ENV
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
                "mock_command": "weir-mock-llm --listen 127.0.0.1:0 --api-key KEY --name bench \
                                 --threads 1 --no-record",
            }),
            load_before: system::load_average(),
            load_after: 0.0,
            busy_before: crate::report::busy_before(),
            elapsed: Duration::ZERO,
        }
    }
}

struct Summary {
    header: Header,
    loads: Vec<LoadResult>,
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn signed(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:+.0}"))
}

impl Summary {
    fn load(&self, key: &str) -> Option<&LoadResult> {
        self.loads.iter().find(|l| l.spec.key == key)
    }

    /// Other processes' share of a core over the measured runs: the median and the largest.
    fn other_share(&self) -> (f64, f64) {
        let mut shares: Vec<f64> = self
            .loads
            .iter()
            .flat_map(|load| &load.runs)
            .flat_map(|(_, runs)| runs)
            .map(AiRun::other_share)
            .collect();
        shares.sort_by(f64::total_cmp);
        let median = shares.get(shares.len() / 2).copied().unwrap_or(0.0);
        (median, shares.last().copied().unwrap_or(0.0))
    }

    /// Runs made again because other processes disturbed them.
    fn remeasured(&self) -> u32 {
        self.loads
            .iter()
            .flat_map(|load| &load.runs)
            .flat_map(|(_, runs)| runs)
            .map(|run| run.attempts - 1)
            .sum()
    }

    fn gateways(&self) -> Vec<Gateway> {
        self.loads
            .first()
            .map(|l| l.runs.iter().map(|(g, _)| *g).collect())
            .unwrap_or_default()
    }

    /// Weir's requests per gateway CPU-second (or req/s) over LiteLLM's, in a load.
    fn weir_over_litellm(&self, key: &str, per_cpu: bool) -> Option<f64> {
        let load = self.load(key)?;
        let figure = |g| {
            load.median(g).and_then(|r: &AiRun| {
                if per_cpu {
                    r.per_gateway_cpu_second()
                } else {
                    Some(r.measured.rps())
                }
            })
        };
        ratio(figure(Gateway::Weir), figure(Gateway::Litellm))
    }

    fn print(&self) {
        for load in &self.loads {
            println!(
                "\n== {}: {} connection(s), {} answers{}",
                load.spec.key,
                load.clients,
                if load.spec.stream {
                    "streamed"
                } else {
                    "whole"
                },
                if load.spec.stream {
                    "; p50/p99: time to first token"
                } else {
                    ""
                }
            );
            println!(
                "   {:<12} {:>9} {:>17} {:>8} {:>9} {:>9} {:>10} {:>10} {:>8} {:>7}",
                "",
                "req/s",
                "req/gateway CPU-s",
                "gateway",
                "p50 µs",
                "p99 µs",
                "added p50",
                "added p99",
                "RSS MiB",
                "errors"
            );
            for (gateway, _) in &load.runs {
                let Some(run) = load.median(*gateway) else {
                    continue;
                };
                let added = load.added(*gateway).filter(|_| *gateway != Gateway::Direct);
                println!(
                    "   {:<12} {:>9.0} {:>17} {:>8} {:>9.0} {:>9.0} {:>10} {:>10} {:>8} {:>7}",
                    gateway.label(),
                    run.measured.rps(),
                    cell(run.per_gateway_cpu_second(), 0),
                    run.gateway_cores()
                        .map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                    run.measured.p50_us,
                    run.measured.p99_us,
                    signed(added.map(|a| a.0)),
                    signed(added.map(|a| a.1)),
                    cell(run.peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
                    load.errors(*gateway),
                );
                if let Some(error) = load.first_error(*gateway) {
                    println!("   {:<12} first error: {error}", "");
                }
            }
        }
        let (median, max) = self.other_share();
        println!(
            "\nother CPU (not the gateway, the mock or the load generator) over the measured runs: \
             median {:.0}% of a core, at most {:.0}%; {} run(s) made again because of it",
            median * 100.0,
            max * 100.0,
            self.remeasured()
        );
        if self.gateways().contains(&Gateway::Litellm) {
            println!(
                "\nWeir/LiteLLM, requests per gateway CPU-second: {} whole, {} streamed; \
                 req/s: {} whole, {} streamed",
                cell(self.weir_over_litellm("throughput", true), 1),
                cell(self.weir_over_litellm("throughput-stream", true), 1),
                cell(self.weir_over_litellm("throughput", false), 1),
                cell(self.weir_over_litellm("throughput-stream", false), 1),
            );
        }
    }

    fn to_json(&self) -> Value {
        let run_json = |run: &AiRun| {
            let m = &run.measured;
            let mut value = json!({
                "rps": round(m.rps(), 1),
                "ok": m.ok,
                "errors": m.errors,
                "first_error": m.first_error,
                "seconds": round(m.seconds, 3),
                "p50_us": m.p50_us,
                "p99_us": m.p99_us,
                "p999_us": m.p999_us,
                "total_p50_us": m.total_p50_us,
                "total_p99_us": m.total_p99_us,
                "mock_cpu_s": round(run.mock_cpu_s, 2),
                "load_generator_cpu_s": round(m.load_cpu_s, 2),
                "other_cpu_s": round(run.other_cpu_s, 2),
                "attempts": run.attempts,
                "cpu0_busy": round(run.cpu_busy[0], 3),
                "cpu1_busy": round(run.cpu_busy[1], 3),
            });
            if let Some(cpu) = run.gateway_cpu_s {
                value["gateway_cpu_s"] = json!(round(cpu, 2));
                value["rps_per_gateway_cpu_s"] =
                    json!(run.per_gateway_cpu_second().map(|r| round(r, 0)));
                value["gateway_cores"] = json!(run.gateway_cores().map(|c| round(c, 3)));
            }
            if let Some(rss) = run.peak_rss_kib {
                value["peak_rss_mib"] = json!(round(rss as f64 / 1024.0, 1));
            }
            value
        };
        let loads: Vec<Value> = self
            .loads
            .iter()
            .map(|load| {
                let mut results = serde_json::Map::new();
                for (gateway, runs) in &load.runs {
                    let Some(median) = load.median(*gateway) else {
                        continue;
                    };
                    let mut entry = run_json(median);
                    entry["errors_all_rounds"] = json!(load.errors(*gateway));
                    if let Some((p50, p99)) =
                        load.added(*gateway).filter(|_| *gateway != Gateway::Direct)
                    {
                        entry["added_p50_us"] = json!(p50);
                        entry["added_p99_us"] = json!(p99);
                    }
                    entry["runs"] = runs.iter().map(run_json).collect();
                    results.insert(gateway.key().into(), entry);
                }
                json!({
                    "key": load.spec.key,
                    "connections": load.clients,
                    "stream": load.spec.stream,
                    "placement": if load.spec.latency {
                        "one-core: load generator, mock and gateway on CPU 0"
                    } else {
                        "per-core: gateway on CPU 1, load generator and mock on CPU 0"
                    },
                    "latency_measures": if load.spec.stream {
                        "time to the first event with content"
                    } else {
                        "to the end of the body"
                    },
                    "results": results,
                })
            })
            .collect();
        let h = &self.header;
        json!({
            "date": h.date,
            "mode": h.mode,
            "command": h.command,
            "machine": h.machine,
            "versions": h.versions,
            "settings": h.settings,
            "load_average": {"before": h.load_before, "after": h.load_after},
            "cpu_busy_before": h.busy_before,
            "other_cpu_share": {
                "median": round(self.other_share().0, 3),
                "max": round(self.other_share().1, 3),
                "runs_measured_again": self.remeasured(),
            },
            "elapsed_s": round(h.elapsed.as_secs_f64(), 0),
            "loads": loads,
            "ratios": {
                "weir_litellm_per_gateway_cpu_s": self.weir_over_litellm("throughput", true).map(|r| round(r, 2)),
                "weir_litellm_per_gateway_cpu_s_stream": self.weir_over_litellm("throughput-stream", true).map(|r| round(r, 2)),
                "weir_litellm_rps": self.weir_over_litellm("throughput", false).map(|r| round(r, 2)),
                "weir_litellm_rps_stream": self.weir_over_litellm("throughput-stream", false).map(|r| round(r, 2)),
            },
        })
    }

    /// Writes `<results>/<date>-ai[-quick].json`.
    fn write(&self, settings: &AiSettings) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&settings.results)
            .map_err(|e| format!("{}: {e}", settings.results.display()))?;
        let day = self.header.date.get(..10).unwrap_or("undated");
        let name = if settings.quick {
            format!("{day}-ai-quick.json")
        } else {
            format!("{day}-ai.json")
        };
        let path = settings.results.join(name);
        let text = serde_json::to_string_pretty(&self.to_json()).expect("JSON values encode");
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Replaces the section between the page's `bench:ai` markers with this run.
    fn update_markdown(&self, page: &Path, json: &Path) -> Result<(), String> {
        crate::report::replace_section(page, "ai", |relative| self.markdown(&relative(json)))
    }

    fn markdown(&self, json_link: &str) -> String {
        let h = &self.header;
        let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
        let s = &h.settings;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Latest run: **{}**, `{}` ({} s). Raw figures: [`{json_link}`]({json_link}).\n",
            h.date,
            h.command,
            h.elapsed.as_secs()
        );
        let _ = writeln!(
            md,
            "- Machine: {}; CPUs {} busy over the 3 s before the run, load average {:.2} \
             before, {:.2} after (the benchmark's own processes count in it)",
            system::describe_machine(&h.machine),
            h.busy_before,
            h.load_before,
            h.load_after
        );
        let _ = writeln!(
            md,
            "- Versions: {} (commit {}), {}; {}; {}",
            text(&h.versions["weir"]),
            text(&h.versions["weir_commit"]),
            text(&h.versions["mock"]),
            h.versions["litellm"]
                .as_str()
                .unwrap_or("LiteLLM not installed"),
            text(&h.versions["rustc"]),
        );
        let _ = writeln!(
            md,
            "- Each figure: the median of {} round(s) of {} s after {} s of warm-up, the three \
             targets interleaved round by round (latency: the round with the median p50; \
             throughput: the median req/s); errors are summed over all rounds",
            s["repeats"], s["duration_s"], s["warmup_s"]
        );
        let (median, max) = self.other_share();
        let _ = writeln!(
            md,
            "- Other work on the machine: CPU time used by neither the gateway, the mock nor the \
             load generator (other processes, and kernel work charged to no process) was a median \
             of {:.0}% of a core over the measured runs, at most {:.0}%; {} run(s) were made \
             again because it passed {:.0}% of a core\n",
            median * 100.0,
            max * 100.0,
            self.remeasured(),
            h.settings["max_other"].as_f64().unwrap_or(0.0) * 100.0,
        );

        let gateways = self.gateways();
        // A reported run still disturbed by other work after its retries is marked.
        let max_other = h.settings["max_other"].as_f64().unwrap_or(f64::INFINITY);
        let mut marked = false;
        let mut label = |gateway: Gateway, runs: &[&AiRun]| {
            if runs.iter().any(|r| r.other_share() > max_other) {
                marked = true;
                format!("{} †", gateway.label())
            } else {
                gateway.label().to_owned()
            }
        };
        if let (Some(whole), Some(streamed)) = (self.load("latency"), self.load("latency-stream")) {
            let _ = writeln!(
                md,
                "**Added latency**, {} connection(s), one request at a time (load generator, mock \
                 and gateway on CPU 0). Whole: to the end of the answer; streamed: time to first \
                 token (the first event with content). µs:\n",
                whole.clients
            );
            md.push_str(
                "| target | whole p50 | whole p99 | added p50 | added p99 | TTFT p50 | TTFT p99 | added p50 | added p99 | errors |\n\
                 |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
            );
            for &gateway in &gateways {
                let (Some(w), Some(s)) = (whole.median(gateway), streamed.median(gateway)) else {
                    continue;
                };
                let added =
                    |load: &LoadResult| load.added(gateway).filter(|_| gateway != Gateway::Direct);
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {} | {} | {} |",
                    label(gateway, &[w, s]),
                    w.measured.p50_us,
                    w.measured.p99_us,
                    signed(added(whole).map(|a| a.0)),
                    signed(added(whole).map(|a| a.1)),
                    s.measured.p50_us,
                    s.measured.p99_us,
                    signed(added(streamed).map(|a| a.0)),
                    signed(added(streamed).map(|a| a.1)),
                    whole.errors(gateway) + streamed.errors(gateway),
                );
            }
            md.push('\n');
        }
        if let (Some(whole), Some(streamed)) =
            (self.load("throughput"), self.load("throughput-stream"))
        {
            let _ = writeln!(
                md,
                "**Throughput**, {} keep-alive connections (gateway alone on CPU 1 with one \
                 worker; load generator and mock on CPU 0). For streams p50/p99 are time to first \
                 token; \"added\" is over the mock direct under the same load:\n",
                whole.clients
            );
            md.push_str(
                "| target | answers | req/s | req per gateway CPU-s | gateway CPU | p50 µs | p99 µs | added p50 | added p99 | peak RSS MiB | CPU 0 busy | errors |\n\
                 |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
            );
            for (load, answers) in [(whole, "whole"), (streamed, "streamed")] {
                for &gateway in &gateways {
                    let Some(run) = load.median(gateway) else {
                        continue;
                    };
                    let added = load.added(gateway).filter(|_| gateway != Gateway::Direct);
                    let _ = writeln!(
                        md,
                        "| {} | {answers} | {:.0} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {:.0}% | {} |",
                        label(gateway, &[run]),
                        run.measured.rps(),
                        cell(run.per_gateway_cpu_second(), 0),
                        run.gateway_cores()
                            .map_or("–".into(), |c| format!("{:.0}%", c * 100.0)),
                        run.measured.p50_us,
                        run.measured.p99_us,
                        signed(added.map(|a| a.0)),
                        signed(added.map(|a| a.1)),
                        cell(run.peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
                        run.cpu_busy[0] * 100.0,
                        load.errors(gateway),
                    );
                }
            }
            md.push('\n');
        }
        if marked {
            let _ = writeln!(
                md,
                "† the reported run was still disturbed by other work (over {:.0}% of a core) \
                 after its retries; see `other_cpu_s` in the JSON.\n",
                max_other * 100.0
            );
        }
        if gateways.contains(&Gateway::Litellm) {
            let _ = writeln!(
                md,
                "Weir / LiteLLM in this run: **{}× the requests per gateway CPU-second** whole, \
                 **{}×** streamed; {}× / {}× the req/s.",
                cell(self.weir_over_litellm("throughput", true), 1),
                cell(self.weir_over_litellm("throughput-stream", true), 1),
                cell(self.weir_over_litellm("throughput", false), 1),
                cell(self.weir_over_litellm("throughput-stream", false), 1),
            );
        }
        for &gateway in gateways.iter().filter(|g| **g != Gateway::Direct) {
            let errors: Vec<String> = self
                .loads
                .iter()
                .filter_map(|load| {
                    load.first_error(gateway).map(|e| {
                        format!(
                            "{} in `{}` (the first: {e})",
                            load.errors(gateway),
                            load.spec.key
                        )
                    })
                })
                .collect();
            if !errors.is_empty() {
                let _ = writeln!(md, "\n{}'s errors: {}.", gateway.label(), errors.join("; "));
            }
        }
        md
    }
}
