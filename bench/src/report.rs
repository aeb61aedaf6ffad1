//! What a run leaves behind: a table on the terminal, `bench/results/<date>.json`, and the
//! results section of BENCHMARKS.md (between its `bench:results` markers).
//!
//! Every figure of a target is from its median-throughput run; the ratios compare runs of
//! the same invocation, never figures from different days.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    MemoryResult, Run, ScenarioResult, Settings,
    load::{Generator, Generators},
    servers::{Placement, Programs, Target},
    system,
};

/// The targets Weir is held to (issue #4); benchmarks, not tests: a miss is reported, not fatal.
const TARGET_VS_NGINX: f64 = 1.3;
const TARGET_VS_HAPROXY: f64 = 1.0;
const TARGET_ADDED_P50_US: f64 = 25.0;
const TARGET_10K_VS_1: f64 = 0.95;
const TARGET_RSS_1000_MIB: f64 = 60.0;

/// Where and with what a run was made.
pub struct Header {
    pub date: String,
    pub mode: &'static str,
    pub command: String,
    pub machine: Value,
    pub versions: Value,
    pub settings: Value,
    pub load_before: f64,
    pub load_after: f64,
    /// How busy each CPU was over the seconds before the run: other work on the machine.
    pub busy_before: String,
    pub elapsed: Duration,
}

impl Header {
    pub fn collect(settings: &Settings, programs: &Programs, generators: &Generators) -> Self {
        let version = |program: &Path, arg: &str| {
            system::command_line(&program.display().to_string(), &[arg])
        };
        let generator_version = |generator: &Generator| match generator {
            Generator::Oha(path) => version(path, "--version"),
            Generator::Wrk(path) => system::command_line(&path.display().to_string(), &["-v"])
                .map(|l| l.split(" Copyright").next().unwrap_or(&l).trim().to_owned()),
        };
        let generator_versions: Vec<String> = [Some(&generators.http1), generators.h2c.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(generator_version)
            .collect();
        Self {
            date: system::command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
            mode: if settings.quick { "quick" } else { "full" },
            command: settings.command.clone(),
            machine: system::machine(),
            versions: json!({
                "weir": version(&programs.weir, "--version"),
                "weir_commit": system::command_line("git", &["rev-parse", "--short", "HEAD"]),
                "nginx": version(&programs.nginx, "-v"),
                "haproxy": version(&programs.haproxy, "-v"),
                "load_generators": generator_versions.join(", "),
                "rustc": system::command_line("rustc", &["--version"]),
            }),
            settings: json!({
                "duration_s": settings.duration.as_secs_f64(),
                "warmup_s": settings.warmup.as_secs_f64(),
                "repeats": settings.repeats,
                "load_generators": generators.describe(),
            }),
            load_before: system::load_average(),
            load_after: 0.0,
            busy_before: busy_before(),
            elapsed: Duration::ZERO,
        }
    }
}

/// Per-CPU busy share over 3 s, e.g. `2% / 1%`.
fn busy_before() -> String {
    let before = system::CpuSample::now();
    std::thread::sleep(Duration::from_secs(3));
    system::CpuSample::now()
        .busy_since(&before)
        .iter()
        .map(|busy| format!("{:.0}%", busy * 100.0))
        .collect::<Vec<_>>()
        .join(" / ")
}

pub struct Summary {
    pub header: Header,
    pub scenarios: Vec<ScenarioResult>,
    pub memory: Vec<MemoryResult>,
}

pub struct Paths {
    pub json: PathBuf,
    pub chart: PathBuf,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

fn format_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}×"))
}

pub fn print_scenario(result: &ScenarioResult) {
    println!(
        "   {:<15} {:>10} {:>11} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7} {:>7}",
        "",
        "req/s",
        "per core",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU s/1k",
        "peak MiB",
        "proxy",
        "client"
    );
    for (target, _) in &result.runs {
        let Some(run) = result.median(*target) else {
            continue;
        };
        let m = &run.measured;
        let (per_core, cpu, rss, proxy) = if *target == Target::Direct {
            (
                "–".to_owned(),
                "–".to_owned(),
                "–".to_owned(),
                "–".to_owned(),
            )
        } else {
            (
                format!("{:.0}", run.per_core()),
                format!("{:.4}", run.cpu_per_1k()),
                format!("{:.1}", mib(run.peak_rss_kib)),
                format!("{:.0}%", run.proxy_cores * 100.0),
            )
        };
        println!(
            "   {:<15} {:>10.0} {:>11} {:>9.0} {:>9.0} {:>9.0} {:>10} {:>9} {:>7} {:>6.0}%{}",
            target.label(),
            m.rps(),
            per_core,
            m.p50_us,
            m.p99_us,
            m.p999_us,
            cpu,
            rss,
            proxy,
            run.client_side_busy * 100.0,
            if m.errors > 0 {
                format!("  ({} errors)", m.errors)
            } else {
                String::new()
            },
        );
    }
    let (vs_nginx, vs_haproxy) = rps_ratios(result);
    let (core_vs_nginx, core_vs_haproxy) = per_core_ratios(result);
    println!(
        "   Weir/nginx {} (per core {})   Weir/HAProxy {} (per core {})",
        format_ratio(vs_nginx),
        format_ratio(core_vs_nginx),
        format_ratio(vs_haproxy),
        format_ratio(core_vs_haproxy)
    );
}

fn per_core(result: &ScenarioResult, target: Target) -> Option<f64> {
    result.median(target).map(Run::per_core)
}

/// Weir's requests per CPU-second over nginx's and HAProxy's.
fn per_core_ratios(result: &ScenarioResult) -> (Option<f64>, Option<f64>) {
    let weir = per_core(result, Target::Weir).unwrap_or(f64::NAN);
    (
        per_core(result, Target::Nginx).and_then(|n| ratio(weir, n)),
        per_core(result, Target::Haproxy).and_then(|h| ratio(weir, h)),
    )
}

fn rps(result: &ScenarioResult, target: Target) -> Option<f64> {
    result.median(target).map(|r| r.measured.rps())
}

fn rps_ratios(result: &ScenarioResult) -> (Option<f64>, Option<f64>) {
    let weir = rps(result, Target::Weir).unwrap_or(f64::NAN);
    (
        rps(result, Target::Nginx).and_then(|n| ratio(weir, n)),
        rps(result, Target::Haproxy).and_then(|h| ratio(weir, h)),
    )
}

/// One target of issue #4, as measured.
struct Check {
    name: String,
    measured: String,
    goal: String,
    met: bool,
}

impl Summary {
    fn scenario(&self, key: &str) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|s| s.key == key)
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        for result in self
            .scenarios
            .iter()
            .filter(|s| s.placement != Placement::AllCores)
        {
            let (vs_nginx, vs_haproxy) = per_core_ratios(result);
            // One connection measures latency; its throughput is one request at a time.
            if result.load.connections > 1
                && let (Some(n), Some(h)) = (vs_nginx, vs_haproxy)
            {
                checks.push(Check {
                    name: format!("{}: req per CPU-second vs nginx / HAProxy", result.key),
                    measured: format!("{n:.2}× / {h:.2}×"),
                    goal: format!("≥ {TARGET_VS_NGINX}× / ≥ {TARGET_VS_HAPROXY}×"),
                    met: n >= TARGET_VS_NGINX && h >= TARGET_VS_HAPROXY,
                });
            }
            let p99 = |t| result.median(t).map(|r: &Run| r.measured.p99_us);
            if let (Some(w), Some(n), Some(h)) =
                (p99(Target::Weir), p99(Target::Nginx), p99(Target::Haproxy))
            {
                checks.push(Check {
                    name: format!("{}: p99 vs the better of nginx and HAProxy", result.key),
                    measured: format!("{w:.0} µs vs {:.0} µs", n.min(h)),
                    goal: "≤".into(),
                    met: w <= n.min(h),
                });
            }
        }
        if let Some(one) = self.scenario("one-conn") {
            let p50 = |t| one.median(t).map(|r: &Run| r.measured.p50_us);
            if let (Some(w), Some(d)) = (p50(Target::Weir), p50(Target::Direct)) {
                checks.push(Check {
                    name: "added latency p50, one connection (Weir − backend direct)".into(),
                    measured: format!("{:.1} µs", w - d),
                    goal: format!("≤ {TARGET_ADDED_P50_US} µs"),
                    met: w - d <= TARGET_ADDED_P50_US,
                });
            }
        }
        if let (Some(many), Some(one)) = (
            self.scenario("routes-10k")
                .and_then(|s| rps(s, Target::Weir)),
            self.scenario("small").and_then(|s| rps(s, Target::Weir)),
        ) {
            checks.push(Check {
                name: "Weir req/s with 10,000 routes vs 1 route".into(),
                measured: format!("{:.3}×", many / one),
                goal: format!("≥ {TARGET_10K_VS_1}×"),
                met: many / one >= TARGET_10K_VS_1,
            });
        }
        if let Some(memory) = self
            .memory
            .iter()
            .find(|m| m.target == Target::Weir && m.routes == 1_000)
        {
            checks.push(Check {
                name: "Weir peak RSS with 1,000 routes".into(),
                measured: format!("{:.1} MiB", mib(memory.peak_rss_kib)),
                goal: format!("≤ {TARGET_RSS_1000_MIB} MiB"),
                met: mib(memory.peak_rss_kib) <= TARGET_RSS_1000_MIB,
            });
        }
        checks
    }

    pub fn print_ratios(&self) {
        println!("\n== ratios (median runs of this invocation)");
        println!(
            "   {:<12} {:>9} {:>9} {:>9} {:>11} {:>13} {:>17} {:>19}",
            "scenario",
            "Weir",
            "nginx",
            "HAProxy",
            "Weir/nginx",
            "Weir/HAProxy",
            "per core W/nginx",
            "per core W/HAProxy"
        );
        for result in &self.scenarios {
            let (vs_nginx, vs_haproxy) = rps_ratios(result);
            let (core_vs_nginx, core_vs_haproxy) = per_core_ratios(result);
            let show = |t| rps(result, t).map_or("–".into(), |r| format!("{r:.0}"));
            println!(
                "   {:<12} {:>9} {:>9} {:>9} {:>11} {:>13} {:>17} {:>19}",
                result.key,
                show(Target::Weir),
                show(Target::Nginx),
                show(Target::Haproxy),
                format_ratio(vs_nginx),
                format_ratio(vs_haproxy),
                format_ratio(core_vs_nginx),
                format_ratio(core_vs_haproxy)
            );
        }
        println!("\n== targets");
        for check in self.checks() {
            println!(
                "   {} {:<62} {} (goal {})",
                if check.met { "met " } else { "MISS" },
                check.name,
                check.measured,
                check.goal
            );
        }
        println!(
            "\nload average {:.2} before, {:.2} after; {:.0} s in all",
            self.header.load_before,
            self.header.load_after,
            self.header.elapsed.as_secs_f64()
        );
    }

    fn to_json(&self) -> Value {
        let scenarios: Vec<Value> = self
            .scenarios
            .iter()
            .map(|result| {
                let mut targets = serde_json::Map::new();
                for (target, runs) in &result.runs {
                    let Some(median) = result.median(*target) else {
                        continue;
                    };
                    let mut entry = run_json(median, *target);
                    entry["runs"] = runs.iter().map(|r| run_json(r, *target)).collect();
                    targets.insert(target.key().into(), entry);
                }
                let (vs_nginx, vs_haproxy) = rps_ratios(result);
                let (core_vs_nginx, core_vs_haproxy) = per_core_ratios(result);
                json!({
                    "key": result.key,
                    "title": result.title,
                    "placement": result.placement.key(),
                    "routes": result.routes,
                    "load": {
                        "description": result.load.describe(),
                        "connections": result.load.connections,
                        "h2c_streams": result.load.h2c_streams,
                        "new_connection_per_request": result.load.close,
                        "path": result.load.path,
                    },
                    "results": targets,
                    "ratios": {
                        "weir_nginx_rps": vs_nginx.map(|r| round(r, 3)),
                        "weir_haproxy_rps": vs_haproxy.map(|r| round(r, 3)),
                        "weir_nginx_per_core": core_vs_nginx.map(|r| round(r, 3)),
                        "weir_haproxy_per_core": core_vs_haproxy.map(|r| round(r, 3)),
                    },
                })
            })
            .collect();
        let memory: Vec<Value> = self
            .memory
            .iter()
            .map(|m| {
                json!({
                    "target": m.target.key(),
                    "routes": m.routes,
                    "idle_rss_mib": round(mib(m.idle_rss_kib), 1),
                    "peak_rss_mib": round(mib(m.peak_rss_kib), 1),
                })
            })
            .collect();
        let checks: Vec<Value> = self
            .checks()
            .into_iter()
            .map(
                |c| json!({"target": c.name, "measured": c.measured, "goal": c.goal, "met": c.met}),
            )
            .collect();
        json!({
            "date": self.header.date,
            "mode": self.header.mode,
            "command": self.header.command,
            "machine": self.header.machine,
            "versions": self.header.versions,
            "settings": self.header.settings,
            "load_average": {"before": self.header.load_before, "after": self.header.load_after},
            "cpu_busy_before": self.header.busy_before,
            "elapsed_s": round(self.header.elapsed.as_secs_f64(), 0),
            "scenarios": scenarios,
            "memory": memory,
            "targets": checks,
        })
    }

    /// Writes `<results>/<date>[-quick].json`; the chart goes beside it with `.svg`.
    pub fn write(&self, settings: &Settings) -> Result<Paths, String> {
        std::fs::create_dir_all(&settings.results)
            .map_err(|e| format!("{}: {e}", settings.results.display()))?;
        let day = self.header.date.get(..10).unwrap_or("undated");
        let stem = if settings.quick {
            format!("{day}-quick")
        } else {
            day.to_owned()
        };
        let json = settings.results.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(&self.to_json()).expect("JSON values encode");
        std::fs::write(&json, text + "\n").map_err(|e| format!("{}: {e}", json.display()))?;
        Ok(Paths {
            chart: json.with_extension("svg"),
            json,
        })
    }

    /// Replaces the results section of the page (between its markers) with this run.
    pub fn update_markdown(&self, page: &Path, paths: &Paths) -> Result<(), String> {
        const BEGIN: &str = "<!-- bench:results:begin -->";
        const END: &str = "<!-- bench:results:end -->";
        let text = std::fs::read_to_string(page).map_err(|e| format!("{}: {e}", page.display()))?;
        let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
            return Err(format!("{} has no {BEGIN} … {END} section", page.display()));
        };
        // Links relative to the page; the chart does not exist yet, so its directory is resolved.
        let absolute = |p: &Path| {
            let dir = match p.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            std::fs::canonicalize(dir)
                .map(|dir| dir.join(p.file_name().unwrap_or_default()))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let base = absolute(page);
        let base = base.parent().unwrap_or(Path::new("/"));
        let relative = |p: &Path| {
            absolute(p)
                .strip_prefix(base)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| p.display().to_string())
        };
        let section = self.markdown(&relative(&paths.json), &relative(&paths.chart));
        let updated = format!("{}{BEGIN}\n{section}{}", &text[..begin], &text[end..]);
        std::fs::write(page, updated).map_err(|e| format!("{}: {e}", page.display()))
    }

    fn markdown(&self, json_path: &str, chart_path: &str) -> String {
        let h = &self.header;
        let v = &h.versions;
        let text = |value: &Value| value.as_str().unwrap_or("?").to_owned();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Latest full run: **{}**, `{}` ({} s). Raw figures: [`{json_path}`]({json_path}).\n",
            h.date,
            h.command,
            h.elapsed.as_secs(),
        );
        let _ = writeln!(
            md,
            "- Quiet machine: CPUs {} busy over the 3 s before the run (the build, if any, done); \
             load average {:.2} before, {:.2} after (the benchmark's own processes count in it)",
            h.busy_before, h.load_before, h.load_after
        );
        let _ = writeln!(
            md,
            "- Machine: {}, {} cores, {} GiB, {} ({})",
            text(&h.machine["cpu"]),
            h.machine["cores"],
            h.machine["memory_gib"],
            text(&h.machine["kernel"]),
            text(&h.machine["os"])
        );
        let _ = writeln!(
            md,
            "- Versions: {} (commit {}), {}, {}, {}; {}",
            text(&v["weir"]),
            text(&v["weir_commit"]),
            text(&v["nginx"]),
            text(&v["haproxy"]).split(" - ").next().unwrap_or("?"),
            text(&v["load_generators"]),
            text(&v["rustc"])
        );
        let _ = writeln!(
            md,
            "- Each figure: the median of {} runs of {} s (after {} s of warm-up), proxies interleaved\n",
            h.settings["repeats"], h.settings["duration_s"], h.settings["warmup_s"]
        );
        let _ = writeln!(md, "![req/s and p99 latency per scenario]({chart_path})\n");
        md.push_str(
            "| scenario | proxy | req/s | req/s per core | p50 µs | p99 µs | p99.9 µs | CPU s / 1k req | peak RSS MiB | proxy CPU | client-side CPU |\n\
             |---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for result in &self.scenarios {
            for (target, _) in &result.runs {
                let Some(run) = result.median(*target) else {
                    continue;
                };
                let m = &run.measured;
                let proxy_only = |s: String| {
                    if *target == Target::Direct {
                        "–".into()
                    } else {
                        s
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.0}% |",
                    result.key,
                    target.label(),
                    m.rps(),
                    proxy_only(format!("{:.0}", run.per_core())),
                    m.p50_us,
                    m.p99_us,
                    m.p999_us,
                    proxy_only(format!("{:.4}", run.cpu_per_1k())),
                    proxy_only(format!("{:.1}", mib(run.peak_rss_kib))),
                    proxy_only(format!("{:.0}%", run.proxy_cores * 100.0)),
                    run.client_side_busy * 100.0,
                );
            }
        }
        md.push_str(
            "\n| scenario | what | Weir/nginx req/s | Weir/HAProxy req/s | Weir/nginx per core | Weir/HAProxy per core |\n\
             |---|---|--:|--:|--:|--:|\n",
        );
        for result in &self.scenarios {
            let (vs_nginx, vs_haproxy) = rps_ratios(result);
            let (core_vs_nginx, core_vs_haproxy) = per_core_ratios(result);
            let _ = writeln!(
                md,
                "| {} | {}; {}, {} route(s), {} | {} | {} | {} | {} |",
                result.key,
                result.title,
                result.placement.key(),
                result.routes,
                result.load.describe(),
                format_ratio(vs_nginx),
                format_ratio(vs_haproxy),
                format_ratio(core_vs_nginx),
                format_ratio(core_vs_haproxy)
            );
        }
        if !self.memory.is_empty() {
            md.push_str("\n| memory | routes | idle RSS MiB | peak RSS MiB (after 2 s of load) |\n|---|--:|--:|--:|\n");
            for m in &self.memory {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {:.1} |",
                    m.target.label(),
                    m.routes,
                    mib(m.idle_rss_kib),
                    mib(m.peak_rss_kib)
                );
            }
        }
        md.push_str("\n| target | measured | goal | |\n|---|---|---|---|\n");
        for check in self.checks() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                check.name,
                check.measured,
                check.goal,
                if check.met { "met" } else { "**missed**" }
            );
        }
        md
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn run_json(run: &Run, target: Target) -> Value {
    let m = &run.measured;
    let mut value = json!({
        "rps": round(m.rps(), 0),
        "ok": m.ok,
        "errors": m.errors,
        "seconds": round(m.seconds, 3),
        "p50_us": round(m.p50_us, 1),
        "p99_us": round(m.p99_us, 1),
        "p999_us": round(m.p999_us, 1),
        "client_side_busy": round(run.client_side_busy, 3),
        "proxy_side_busy": round(run.proxy_side_busy, 3),
    });
    if target != Target::Direct {
        value["cpu_s_per_1k"] = json!(round(run.cpu_per_1k(), 5));
        value["rps_per_core"] = json!(round(run.per_core(), 0));
        value["proxy_cores"] = json!(round(run.proxy_cores, 3));
        value["peak_rss_mib"] = json!(round(mib(run.peak_rss_kib), 1));
    }
    value
}
