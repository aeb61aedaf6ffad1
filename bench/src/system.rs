//! What the harness reads from the kernel: CPU time and peak memory of a process tree, how
//! busy each CPU was, and the facts about the machine a result must carry.
//!
//! Everything comes from `/proc`; a process that is gone simply contributes nothing.

use std::{fs, process::Command};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// The process and all its descendants (an nginx master and its workers, say).
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(fields) = stat_fields(pid) {
                // Field 4 of stat is the parent; `fields` starts at field 3.
                if let Some(ppid) = fields.get(1).and_then(|s| s.parse().ok()) {
                    parents.push((pid, ppid));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    tree
}

/// The fields of `/proc/<pid>/stat` after the command name, starting with field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU ticks used so far by every thread of the tree.
pub fn tree_cpu_ticks(root: u32) -> u64 {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            // utime and stime are fields 14 and 15: indexes 11 and 12 from field 3.
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .sum()
}

/// User and system CPU ticks used so far by every thread of the tree, apart.
pub fn tree_cpu_split(root: u32) -> (u64, u64) {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            Some((
                fields.get(11)?.parse::<u64>().ok()?,
                fields.get(12)?.parse::<u64>().ok()?,
            ))
        })
        .fold((0, 0), |(u, s), (u1, s1)| (u + u1, s + s1))
}

/// Peak resident set (VmHWM) summed over the tree, in KiB.
pub fn tree_peak_rss_kib(root: u32) -> u64 {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| status_kib(pid, "VmHWM:"))
        .sum()
}

/// Current resident set (VmRSS) summed over the tree, in KiB.
pub fn tree_rss_kib(root: u32) -> u64 {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| status_kib(pid, "VmRSS:"))
        .sum()
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Busy and total ticks of each CPU, from `/proc/stat`.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    per_cpu: Vec<(u64, u64)>,
}

impl CpuSample {
    pub fn now() -> Self {
        let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
        let per_cpu = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|line| {
                let ticks: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|t| t.parse().ok())
                    .collect();
                let total: u64 = ticks.iter().take(8).sum();
                // idle and iowait are fields 4 and 5.
                let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
                (total - idle, total)
            })
            .collect();
        Self { per_cpu }
    }

    /// Busy ticks of all CPUs together between `earlier` and `self`.
    pub fn busy_ticks_since(&self, earlier: &CpuSample) -> u64 {
        self.per_cpu
            .iter()
            .zip(&earlier.per_cpu)
            .map(|((busy, _), (busy0, _))| busy.saturating_sub(*busy0))
            .sum()
    }

    /// Fraction of each CPU that was busy between `earlier` and `self`.
    pub fn busy_since(&self, earlier: &CpuSample) -> Vec<f64> {
        self.per_cpu
            .iter()
            .zip(&earlier.per_cpu)
            .map(|((busy, total), (busy0, total0))| {
                let total = total.saturating_sub(*total0);
                if total == 0 {
                    0.0
                } else {
                    busy.saturating_sub(*busy0) as f64 / total as f64
                }
            })
            .collect()
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// What a reader needs to know about the machine a result came from.
pub fn machine() -> serde_json::Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let memory_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": (memory_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": command_line("uname", &["-sr"]),
        "os": fs::read_to_string("/etc/os-release").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        }),
    })
}

/// [`machine`]'s facts in one phrase for a results page: `AMD EPYC, 2 cores, 23.5 GiB,
/// Linux 6.18 (Debian GNU/Linux 12 (bookworm))`.
pub fn describe_machine(machine: &serde_json::Value) -> String {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("?").to_owned();
    format!(
        "{}, {} cores, {} GiB, {} ({})",
        text(&machine["cpu"]),
        machine["cores"],
        machine["memory_gib"],
        text(&machine["kernel"]),
        text(&machine["os"])
    )
}

/// The first line a command prints (on stdout or stderr), or `None` if it cannot run.
pub fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
}
