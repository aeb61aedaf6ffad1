//! The load generator: `oha` (JSON output, HTTP/2, p99.9), or `wrk` where oha is missing;
//! for TLS handshakes, the harness's own `weir-bench handshakes` (see tls.rs).
//!
//! A load is a fixed number of connections sending back to back for a fixed time; what comes
//! back is the count of 2xx answers, the error count, and latency percentiles in µs.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::servers::HOST;

#[derive(Clone, Debug)]
pub enum Generator {
    Oha(PathBuf),
    Wrk(PathBuf),
    /// This harness's binary, `weir-bench handshakes`: a new TLS connection per request.
    Handshakes(PathBuf),
}

impl Generator {
    pub fn name(&self) -> &'static str {
        match self {
            Generator::Oha(_) => "oha",
            Generator::Wrk(_) => "wrk",
            Generator::Handshakes(_) => "weir-bench handshakes",
        }
    }
}

/// The generator for each kind of load: the cheapest one that can do it.
///
/// Per core, the load generator and the backend share one CPU; a generator that spends less
/// CPU per request leaves more headroom before that side becomes the bottleneck. wrk spends
/// less than oha over HTTP/1.1 (BENCHMARKS.md has the measurement), and only oha speaks h2c.
/// HTTPS keep-alive goes through the HTTP/1.1 generator too; TLS handshakes through
/// `weir-bench handshakes`.
#[derive(Clone, Debug)]
pub struct Generators {
    pub http1: Generator,
    pub h2c: Option<Generator>,
    pub handshakes: Generator,
}

impl Generators {
    pub fn for_load(&self, load: &Load) -> Option<&Generator> {
        if load.handshakes.is_some() {
            return Some(&self.handshakes);
        }
        match load.h2c_streams {
            Some(_) => self.h2c.as_ref(),
            None => Some(&self.http1),
        }
    }

    pub fn describe(&self) -> String {
        match &self.h2c {
            Some(h2c) => format!(
                "{} (HTTP/1.1), {} (h2c), {} (TLS handshakes)",
                self.http1.name(),
                h2c.name(),
                self.handshakes.name()
            ),
            None => format!(
                "{} (no h2c), {} (TLS handshakes)",
                self.http1.name(),
                self.handshakes.name()
            ),
        }
    }
}

/// Which TLS handshakes a handshake load makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Every connection a full handshake: the client keeps no session.
    Full,
    /// Every connection offers a session ticket from an earlier one (TLS 1.3 resumption).
    Resumed,
}

impl Handshake {
    pub fn key(self) -> &'static str {
        match self {
            Handshake::Full => "full",
            Handshake::Resumed => "resumed",
        }
    }
}

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Load {
    pub connections: u32,
    /// HTTP/2 without TLS, prior knowledge, with this many streams in flight per connection.
    pub h2c_streams: Option<u32>,
    /// A new connection for every request.
    pub close: bool,
    /// Path and query; `?size=N` makes the backend answer N bytes.
    pub path: &'static str,
    /// HTTPS to the proxy's TLS listener (SNI `bench.local`) instead of plain HTTP.
    pub tls: bool,
    /// A new TLS connection (and handshake) per request, one request each: the load counts
    /// handshakes. Implies `tls` and `close`.
    pub handshakes: Option<Handshake>,
}

impl Load {
    /// What the load counts: requests, or TLS handshakes (each with one request).
    pub fn unit(&self) -> &'static str {
        if self.handshakes.is_some() {
            "handshakes"
        } else {
            "requests"
        }
    }

    pub fn describe(&self) -> String {
        if let Some(handshake) = self.handshakes {
            return format!(
                "TLS, {} connections, a new connection per request, {}, GET {}",
                self.connections,
                match handshake {
                    Handshake::Full => "full handshake every time (no resumption)",
                    Handshake::Resumed => "resumed with a session ticket from an earlier one",
                },
                self.path
            );
        }
        let mut text = match self.h2c_streams {
            Some(streams) => format!("h2c, {} connections × {streams} streams", self.connections),
            None if self.tls => format!("HTTPS (HTTP/1.1), {} connections", self.connections),
            None => format!("HTTP/1.1, {} connections", self.connections),
        };
        if self.close {
            text.push_str(", new connection per request");
        } else if self.h2c_streams.is_none() {
            text.push_str(", keep-alive");
        }
        text.push_str(&format!(", GET {}", self.path));
        text
    }
}

/// What one load run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub ok: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Handshake loads: how many of the `ok` connections the server resumed.
    pub resumed: Option<u64>,
    /// Handshake loads: the TLS parameters the server chose, e.g.
    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519 http/1.1`.
    pub negotiated: Option<String>,
}

impl Measured {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs `load` against `port` for `duration`, pinned to `cpus` if given.
pub fn run(
    generator: &Generator,
    load: &Load,
    port: u16,
    duration: Duration,
    cpus: Option<&str>,
    threads: usize,
    dir: &Path,
) -> Result<Measured, String> {
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus]);
            command
        }
        None => Command::new("env"),
    };
    match generator {
        Generator::Oha(oha) => {
            command
                .arg(oha)
                .args(["--no-tui", "--output-format", "json", "--no-color"])
                .args(["-z", &format!("{}ms", duration.as_millis())])
                .args(["-c", &load.connections.to_string()])
                .args(["--worker-threads", &threads.to_string()])
                // The URL names the bench host, so Host and :authority are what a client sends.
                .args(["--connect-to", &connect_to(load, port)]);
            if let Some(streams) = load.h2c_streams {
                command.args(["--http2", "-p", &streams.to_string()]);
            }
            if load.close {
                command.arg("--disable-keepalive");
            }
            if load.tls {
                // The benchmark's certificate is self-signed.
                command.arg("--insecure");
            }
            command.arg(url(load, port));
            let output = command
                .output()
                .map_err(|e| format!("cannot run oha: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "oha failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            parse_oha(&output.stdout)
        }
        Generator::Wrk(wrk) => {
            let script = dir.join("report.lua");
            let text = if load.tls {
                format!("{WRK_TLS_RESOLVE}{WRK_SCRIPT}")
            } else {
                WRK_SCRIPT.to_owned()
            };
            std::fs::write(&script, text).map_err(|e| e.to_string())?;
            command
                .arg(wrk)
                .args(["-t", &threads.to_string()])
                .args(["-c", &load.connections.max(threads as u32).to_string()])
                .args(["-d", &format!("{}s", duration.as_secs().max(1))])
                .args(["-H", &format!("Host: {HOST}")]);
            if load.close {
                command.args(["-H", "Connection: close"]);
            }
            command.arg("-s").arg(&script).arg(if load.tls {
                // The URL names the bench host, for SNI; the script connects to 127.0.0.1.
                format!("https://{HOST}:{port}{}", load.path)
            } else {
                format!("http://127.0.0.1:{port}{}", load.path)
            });
            let output = command
                .output()
                .map_err(|e| format!("cannot run wrk: {e}"))?;
            parse_wrk(&output.stdout)
        }
        Generator::Handshakes(harness) => {
            command
                .arg(harness)
                .arg("handshakes")
                .args(["--port", &port.to_string()])
                .args(["--connections", &load.connections.to_string()])
                .args(["--millis", &duration.as_millis().to_string()])
                .args(["--path", load.path]);
            if load.handshakes == Some(Handshake::Resumed) {
                command.arg("--resume");
            }
            let output = command
                .output()
                .map_err(|e| format!("cannot run {}: {e}", harness.display()))?;
            if !output.status.success() {
                return Err(format!(
                    "weir-bench handshakes failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            parse_handshakes(&output.stdout)
        }
    }
}

/// oha's URL: the bench host, so that Host, `:authority` and SNI are what a client sends.
fn url(load: &Load, port: u16) -> String {
    if load.tls {
        format!("https://{HOST}:{port}{}", load.path)
    } else {
        format!("http://{HOST}{}", load.path)
    }
}

/// oha's `--connect-to`: the URL's host and port to the proxy on loopback.
fn connect_to(load: &Load, port: u16) -> String {
    let url_port = if load.tls { port } else { 80 };
    format!("{HOST}:{url_port}:127.0.0.1:{port}")
}

fn parse_handshakes(stdout: &[u8]) -> Result<Measured, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("weir-bench handshakes printed no summary:\n{text}"))?;
    let report: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("the handshake summary: {e}"))?;
    let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
    if let Some(error) = report["first_error"].as_str() {
        eprintln!(
            "   (weir-bench handshakes: {} errors, the first: {error})",
            number("errors")
        );
    }
    Ok(Measured {
        ok: number("ok") as u64,
        errors: number("errors") as u64,
        seconds: number("duration_us") / 1e6,
        p50_us: number("p50"),
        p99_us: number("p99"),
        p999_us: number("p999"),
        resumed: Some(number("resumed") as u64),
        negotiated: report["negotiated"].as_str().map(str::to_owned),
    })
}

pub fn parse_oha(stdout: &[u8]) -> Result<Measured, String> {
    let report: serde_json::Value =
        serde_json::from_slice(stdout).map_err(|e| format!("oha's JSON: {e}"))?;
    let mut ok = 0;
    let mut errors = 0;
    if let Some(codes) = report["statusCodeDistribution"].as_object() {
        for (code, count) in codes {
            let count = count.as_u64().unwrap_or(0);
            if code.starts_with('2') {
                ok += count
            } else {
                errors += count
            }
        }
    }
    if let Some(kinds) = report["errorDistribution"].as_object() {
        for (kind, count) in kinds {
            // Requests cut off by the end of the run are not failures of the server.
            if !kind.contains("deadline") {
                errors += count.as_u64().unwrap_or(0);
            }
        }
    }
    let percentile = |key: &str| {
        report["latencyPercentiles"][key]
            .as_f64()
            .unwrap_or(f64::NAN)
            * 1e6
    };
    Ok(Measured {
        ok,
        errors,
        seconds: report["summary"]["total"].as_f64().unwrap_or(0.0),
        p50_us: percentile("p50"),
        p99_us: percentile("p99"),
        p999_us: percentile("p99.9"),
        ..Measured::default()
    })
}

/// Over HTTPS, wrk's URL names the bench host (wrk sends it as SNI); this resolves it to
/// loopback, so that no `/etc/hosts` entry is needed.
const WRK_TLS_RESOLVE: &str = r#"
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
"#;

/// Prints one JSON line at the end of a wrk run.
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '\n{"requests":%d,"errors":%d,"duration_us":%d,"p50":%d,"p99":%d,"p999":%d}\n',
    summary.requests, errors, summary.duration, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9)))
end
"#;

fn parse_wrk(stdout: &[u8]) -> Result<Measured, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("wrk printed no summary:\n{text}"))?;
    let report: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("wrk's summary: {e}"))?;
    let number = |key: &str| report[key].as_f64().unwrap_or(0.0);
    let errors = number("errors") as u64;
    Ok(Measured {
        ok: (number("requests") as u64).saturating_sub(errors),
        errors,
        seconds: number("duration_us") / 1e6,
        p50_us: number("p50"),
        p99_us: number("p99"),
        p999_us: number("p999"),
        ..Measured::default()
    })
}
