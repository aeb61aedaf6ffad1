//! `weir-bench profile`: where a proxy's time goes, per request, in one scenario.
//!
//! For each target: user and kernel CPU per request (from `/proc`), system calls per request
//! by kind (`perf stat` on syscall tracepoints), and a sampled profile (`perf record` on the
//! `cpu-clock` software event: this VM has no hardware counters) with the split by binary and
//! the hottest symbols. With `inferno` installed, a flame graph too.
//!
//! Counts per request barely depend on how busy the rest of the machine is, so they compare
//! changes more reliably than req/s on a shared machine.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    Scenario,
    load::{self, Generators},
    servers::{self, Programs, ProxySetup, Target},
    system,
};

const SYSCALLS: [&str; 16] = [
    "read",
    // Envoy reads with readv, until EAGAIN.
    "readv",
    "recvfrom",
    "write",
    "writev",
    "sendto",
    "epoll_wait",
    "epoll_ctl",
    "accept",
    "accept4",
    "close",
    "shutdown",
    "setsockopt",
    "getsockopt",
    "futex",
    "ioctl",
];

pub struct ProfileSettings {
    pub seconds: u64,
    pub out: PathBuf,
    pub targets: Vec<Target>,
    /// Skip the sampled profile: CPU and system calls per request only.
    pub counts_only: bool,
}

pub fn run(
    settings: &ProfileSettings,
    scenario: &Scenario,
    setup: &ProxySetup,
    programs: &Programs,
    generators: &Generators,
    work: &Path,
) -> Result<(), String> {
    let generator = generators
        .for_load(&scenario.load)
        .ok_or("no load generator for this scenario")?;
    std::fs::create_dir_all(&settings.out)
        .map_err(|e| format!("{}: {e}", settings.out.display()))?;
    let placement = scenario.placement;
    let mut backend = servers::start_backend(programs, placement, work)?;
    let duration = Duration::from_secs(settings.seconds);
    println!(
        "profile of `{}` ({}), {} s per target; figures per request",
        scenario.key,
        scenario.load.describe(),
        settings.seconds
    );
    for &target in &settings.targets {
        let mut proxy =
            servers::start_proxy(target, programs, placement, backend.port, setup, work)?;
        servers::wait_ready(&mut proxy, Duration::from_secs(120))?;
        let port = proxy.port_for(&scenario.load)?;
        let pid = proxy.pid();
        let threads = placement.workers();
        load::run(
            generator,
            &scenario.load,
            port,
            Duration::from_secs(1),
            placement.client_cpus(),
            threads,
            work,
        )?;

        // Pass 1: CPU split and system calls, with perf stat only (cheap).
        let (user0, system0) = system::tree_cpu_split(pid);
        let stat = spawn_perf(
            &[
                "stat",
                "-x",
                ",",
                "-e",
                &syscall_events(),
                "-p",
                &pid.to_string(),
            ],
            duration,
        )?;
        let measured = load::run(
            generator,
            &scenario.load,
            port,
            duration,
            placement.client_cpus(),
            threads,
            work,
        )?;
        let stat_output = stat.wait_with_output().map_err(|e| e.to_string())?;
        let (user1, system1) = system::tree_cpu_split(pid);
        let requests = measured.ok.max(1) as f64;
        let per_request_us = |ticks: u64| ticks as f64 / system::TICKS_PER_SECOND * 1e6 / requests;
        println!(
            "\n== {}: {:.0} req/s; CPU per request {:.2} µs user + {:.2} µs kernel ({:.0}% kernel)",
            target.label(),
            measured.rps(),
            per_request_us(user1 - user0),
            per_request_us(system1 - system0),
            100.0 * (system1 - system0) as f64
                / ((user1 - user0) + (system1 - system0)).max(1) as f64
        );
        let counts = parse_perf_stat(&String::from_utf8_lossy(&stat_output.stderr));
        let line: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n > 0.0)
            .map(|(name, n)| format!("{name} {:.2}", n / requests))
            .collect();
        println!("   system calls per request: {}", line.join(", "));

        if settings.counts_only {
            proxy.stop();
            continue;
        }
        // Pass 2: sampled profile.
        let data = settings.out.join(format!("{}.perf.data", target.key()));
        let record = spawn_perf(
            &[
                "record",
                "-F",
                "999",
                "-g",
                "-e",
                "cpu-clock",
                "-o",
                &data.display().to_string(),
                "-p",
                &pid.to_string(),
            ],
            duration,
        )?;
        load::run(
            generator,
            &scenario.load,
            port,
            duration,
            placement.client_cpus(),
            threads,
            work,
        )?;
        record.wait_with_output().map_err(|e| e.to_string())?;
        proxy.stop();
        report_profile(&data, target, &settings.out)?;
    }
    backend.stop();
    Ok(())
}

fn syscall_events() -> String {
    let mut events = vec!["raw_syscalls:sys_enter".to_owned()];
    events.extend(SYSCALLS.iter().map(|s| format!("syscalls:sys_enter_{s}")));
    events.join(",")
}

/// Starts `perf ARGS -- sleep SECONDS` (attached to a running process).
fn spawn_perf(args: &[&str], duration: Duration) -> Result<std::process::Child, String> {
    Command::new("perf")
        .args(args)
        .args(["--", "sleep", &duration.as_secs_f64().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run perf: {e}"))
}

/// `perf stat -x,` lines: `count,unit,event,...`.
fn parse_perf_stat(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let count = fields.first()?.parse::<f64>().ok()?;
            let event = fields.get(2)?;
            let name = event
                .strip_prefix("syscalls:sys_enter_")
                .map(str::to_owned)
                .unwrap_or_else(|| "all syscalls".to_owned());
            Some((name, count))
        })
        .collect()
}

fn report_profile(data: &Path, target: Target, out: &Path) -> Result<(), String> {
    let report = |sort: &str| {
        Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "-g",
                "none",
                "--percent-limit",
                "0.7",
                "--sort",
                sort,
                "-i",
            ])
            .arg(data)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let body = |text: String, limit: usize| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(limit)
            .map(|l| format!("   {}", l.trim()))
            .collect()
    };
    println!("   time by binary:");
    for line in body(report("dso"), 6) {
        println!("   {line}");
    }
    println!("   hottest symbols:");
    for line in body(report("dso,sym"), 25) {
        println!("   {line}");
    }
    if which("inferno-collapse-perf") && which("inferno-flamegraph") {
        let svg = out.join(format!("{}-flamegraph.svg", target.key()));
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "perf script -i '{}' 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title '{} (cpu-clock samples)' > '{}'",
                data.display(),
                target.label(),
                svg.display()
            ))
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            println!("   flame graph: {}", svg.display());
        }
    }
    Ok(())
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
