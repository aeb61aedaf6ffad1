//! The soak's chart: what BENCHMARKS.md shows of a soak, drawn from its results JSON.
//!
//! Three panels over the minutes of load: Weir's resident set (MiB) and its open file
//! descriptors (from idle, before the load, at 0), and the requests per second the load got
//! answered.
//! The RSS and fd panels carry the verdict's lines: the post-warm-up baseline (dashed) and
//! the most the end may reach and still be flat (dotted red), so that the picture says what
//! the verdict says. `weir-bench soak-chart RESULTS.json CHART.svg` draws it again.

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

const RSS_COLOR: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const FDS_COLOR: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const RATE_COLOR: RGBColor = RGBColor(0x55, 0x55, 0x55);
const LIMIT_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// `weir-bench soak-chart RESULTS.json CHART.svg`.
pub fn run(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (Some(results), Some(chart), None) = (args.next(), args.next(), args.next()) else {
        return Err("usage: weir-bench soak-chart RESULTS.json CHART.svg".into());
    };
    let text = std::fs::read_to_string(&results).map_err(|e| format!("{results}: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{results}: {e}"))?;
    draw(&json, Path::new(&chart))
}

/// One panel's line and the verdict's lines on it, if any.
struct Panel<'a> {
    caption: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// The baseline and the most the end may reach, flat.
    limits: Option<(f64, f64)>,
}

/// Draws the chart of the soak `results` into `path` (SVG).
pub fn draw(results: &Value, path: &Path) -> Result<(), String> {
    draw_panels(results, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn draw_panels(results: &Value, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let all = results["samples"].as_array().map_or(&[][..], Vec::as_slice);
    let samples: Vec<&Value> = all.iter().filter(|s| s["phase"] == "load").collect();
    // RSS and fds start from Weir idle before the load, at 0.
    let with_before: Vec<&Value> = all
        .iter()
        .filter(|s| s["phase"] == "before" || s["phase"] == "load")
        .collect();
    let number = |s: &Value, key: &str| s[key].as_f64().unwrap_or(0.0);
    let minutes = |s: &Value| number(s, "t") / 60.0;
    let verdict = &results["verdict"];
    let v = |key: &str| verdict[key].as_f64().unwrap_or(0.0);
    let rss = Panel {
        caption: "Weir's resident set, MiB",
        color: RSS_COLOR,
        points: with_before
            .iter()
            .map(|s| (minutes(s), number(s, "rss_kib") / 1024.0))
            .collect(),
        limits: Some((
            v("baseline_rss_mib"),
            v("baseline_rss_mib") + v("rss_allowed_mib"),
        )),
    };
    let fds = Panel {
        caption: "Weir's open file descriptors",
        color: FDS_COLOR,
        points: with_before
            .iter()
            .map(|s| (minutes(s), number(s, "fds")))
            .collect(),
        limits: Some((v("baseline_fds"), v("baseline_fds") + v("fds_allowed"))),
    };
    // Answered requests per second over each interval (WebSocket sessions count as one).
    let rate = Panel {
        caption: "answered requests per second (all loads)",
        color: RATE_COLOR,
        points: samples
            .windows(2)
            .map(|pair| {
                let seconds = (number(pair[1], "t") - number(pair[0], "t")).max(1e-9);
                (
                    minutes(pair[1]),
                    (number(pair[1], "ok") - number(pair[0], "ok")) / seconds,
                )
            })
            .collect(),
        limits: None,
    };
    let errors = verdict["errors"].as_u64().unwrap_or(0);
    let title = format!(
        "Weir soak, {} — {:.0} min, {} config changes, {} errors: {}",
        results["date"].as_str().unwrap_or(""),
        samples.last().map_or(0.0, |s| minutes(s)),
        samples.last().map_or(0.0, |s| number(s, "changes")),
        errors,
        if verdict["passed"] == true {
            "flat, pass"
        } else {
            "FAIL"
        }
    );
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&title, ("sans-serif", 20))?;
    let areas = root.split_evenly((3, 1));
    let end = samples.last().map_or(1.0, |s| minutes(s)).max(0.1);
    for (area, panel) in areas.iter().zip([rss, fds, rate]) {
        let top = panel
            .points
            .iter()
            .map(|p| p.1)
            .chain(panel.limits.map(|l| l.1))
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(panel.caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("minutes of load")
            .x_label_formatter(&|m| format!("{m:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        if let Some((baseline, limit)) = panel.limits {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, baseline), (end, baseline)],
                    6,
                    4,
                    panel.color.mix(0.6).stroke_width(1),
                ))?
                .label("after warm-up (samples 3–5)")
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], panel.color.mix(0.6))
                });
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, limit), (end, limit)],
                    2,
                    4,
                    LIMIT_COLOR.stroke_width(1),
                ))?
                .label("flat up to")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], LIMIT_COLOR));
        }
        chart.draw_series(LineSeries::new(
            panel.points.iter().copied(),
            panel.color.stroke_width(2),
        ))?;
        chart.draw_series(
            panel
                .points
                .iter()
                .map(|&p| Circle::new(p, 2, panel.color.filled())),
        )?;
        if panel.limits.is_some() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}
