//! `weir-bench-chart RESULTS.json CHART.svg`: draws a run's figures for BENCHMARKS.md.
//!
//! Three panels, one group of bars per scenario, Weir, nginx, HAProxy and Envoy side by side
//! (and the baseline Weir, if the run had one): requests per second as delivered, requests per
//! proxy CPU-second (what one saturated core serves; the fair per-core figure when the client
//! side was the limit), and p99 latency on a log scale. A proxy the run did not measure (Envoy
//! not installed, no baseline) has no bars and no legend entry; one that cannot do a scenario
//! (nginx in h2c-upstream) has "n/a" where its bar would be.
//!
//! The TLS handshake scenarios count handshakes, not requests: they get a row of their own
//! below, handshakes per second and handshakes per proxy CPU-second, and stay out of the
//! three panels above.

use std::process::ExitCode;

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde_json::Value;

/// Every proxy a run may have measured: its key in the results, its label and its colour.
const PROXIES: [(&str, &str, RGBColor); 5] = [
    ("weir", "Weir", RGBColor(0x1f, 0x6f, 0xb4)),
    (
        "weir-baseline",
        "Weir (baseline)",
        RGBColor(0x9e, 0xc5, 0xe8),
    ),
    ("nginx", "nginx", RGBColor(0x2c, 0xa0, 0x2c)),
    ("haproxy", "HAProxy", RGBColor(0xd6, 0x72, 0x28)),
    ("envoy", "Envoy", RGBColor(0x8c, 0x56, 0x9e)),
];

/// A proxy drawn: its label and colour.
type Series = (&'static str, RGBColor);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [results, chart] = args.as_slice() else {
        eprintln!("usage: weir-bench-chart RESULTS.json CHART.svg");
        return ExitCode::from(2);
    };
    match draw(results, chart) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weir-bench-chart: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One group of bars: a scenario and each proxy's value, if it was measured.
struct Group {
    label: String,
    values: Vec<Option<f64>>,
    /// Per proxy: it cannot do the scenario (drawn as "n/a").
    not_applicable: Vec<bool>,
}

/// Whether a scenario counts handshakes (`"unit": "handshakes"`) rather than requests.
fn counts_handshakes(scenario: &Value) -> bool {
    scenario["unit"].as_str() == Some("handshakes")
}

/// The proxies with results in any scenario, in `PROXIES` order.
fn measured(results: &Value) -> Vec<(&'static str, Series)> {
    let scenarios = results["scenarios"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    PROXIES
        .iter()
        .filter(|(key, _, _)| scenarios.iter().any(|s| s["results"].get(*key).is_some()))
        .map(|&(key, label, color)| (key, (label, color)))
        .collect()
}

/// The groups of the scenarios that count handshakes (`handshakes`) or requests.
fn groups(
    results: &Value,
    proxies: &[(&str, Series)],
    field: &str,
    handshakes: bool,
) -> Vec<Group> {
    results["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|scenario| counts_handshakes(scenario) == handshakes)
        .map(|scenario| Group {
            label: format!(
                "{}{}",
                scenario["key"].as_str().unwrap_or("?"),
                match scenario["placement"].as_str() {
                    Some("per-core") => " (1 core)",
                    Some("one-core") => " (same core)",
                    _ => "",
                }
            ),
            values: proxies
                .iter()
                .map(|(key, _)| scenario["results"][key][field].as_f64())
                .collect(),
            not_applicable: proxies
                .iter()
                .map(|(key, _)| scenario["not_applicable"].get(key).is_some())
                .collect(),
        })
        .collect()
}

fn draw(results_path: &str, chart_path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let results: Value = serde_json::from_str(&std::fs::read_to_string(results_path)?)?;
    let proxies = measured(&results);
    let series: Vec<Series> = proxies.iter().map(|(_, series)| *series).collect();
    let throughput = groups(&results, &proxies, "rps", false);
    // `rps_per_core` holds requests per proxy CPU-second.
    let per_cpu_second = groups(&results, &proxies, "rps_per_core", false);
    let latency = groups(&results, &proxies, "p99_us", false);
    // The same fields count handshakes in the handshake scenarios.
    let handshakes = groups(&results, &proxies, "rps", true);
    let handshakes_per_cpu_second = groups(&results, &proxies, "rps_per_core", true);
    // About 35 pixels per bar, so that the value labels above the bars stay apart.
    let group_width = 25 + 35 * series.len() as u32;
    let width = (160 + group_width * throughput.len() as u32)
        .max(2 * (160 + group_width * handshakes.len() as u32));
    let height = if handshakes.is_empty() { 1110 } else { 1480 };
    let root = SVGBackend::new(chart_path, (width.max(900), height)).into_drawing_area();
    root.fill(&WHITE)?;
    let names: Vec<&str> = series.iter().map(|(label, _)| *label).collect();
    let title = format!(
        "{} — {} run of {}",
        names.join(", "),
        results["mode"].as_str().unwrap_or(""),
        results["date"].as_str().unwrap_or("")
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let thousands = |v: f64| {
        if v >= 10_000.0 {
            format!("{:.0}k", v / 1000.0)
        } else {
            format!("{v:.0}")
        }
    };
    // The handshake row, if any, takes the 370 pixels added below the three panels.
    let (panels, handshake_row) = if handshakes.is_empty() {
        (root.split_evenly((3, 1)), None)
    } else {
        let (requests, row) = root.split_vertically(root.dim_in_pixel().1 - 370);
        (requests.split_evenly((3, 1)), Some(row))
    };
    panel(
        &panels[0],
        &series,
        &throughput,
        "requests per second (higher is better)",
        false,
        thousands,
    )?;
    panel(
        &panels[1],
        &series,
        &per_cpu_second,
        "requests per proxy CPU-second, i.e. per core (higher is better)",
        false,
        thousands,
    )?;
    panel(
        &panels[2],
        &series,
        &latency,
        "p99 latency, µs, log scale (lower is better)",
        true,
        |v| format!("{v:.0}"),
    )?;
    if let Some(row) = handshake_row {
        let row = row.split_evenly((1, 2));
        panel(
            &row[0],
            &series,
            &handshakes,
            "TLS handshakes per second (1 request each; higher is better)",
            false,
            thousands,
        )?;
        panel(
            &row[1],
            &series,
            &handshakes_per_cpu_second,
            "TLS handshakes per proxy CPU-second (higher is better)",
            false,
            thousands,
        )?;
    }
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    groups: &[Group],
    caption: &str,
    log: bool,
    show: impl Fn(f64) -> String,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let values = || {
        groups
            .iter()
            .flat_map(|g| g.values.iter().flatten().copied())
    };
    // Headroom above the tallest bar for its label and the legend, which grows with the
    // number of proxies (1.39× and 28× for three, as the chart was first drawn).
    let entries = series.len() as f64;
    let headroom = if log {
        10f64.powf(1.0 + 0.15 * entries)
    } else {
        1.15 + 0.08 * entries
    };
    let max = values().fold(1.0, f64::max) * headroom;
    let min = if log {
        values().fold(max, f64::min).max(1.0) / 2.0
    } else {
        0.0
    };
    let x_range = -0.5..groups.len() as f64 - 0.5;
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(70);
    let bar_width = 0.8 / series.len().max(1) as f64;
    let bars = |index: usize, chart_min: f64| {
        groups.iter().enumerate().filter_map(move |(g, group)| {
            let value = group.values[index]?;
            let left = g as f64 - 0.4 + bar_width * index as f64;
            Some((left, chart_min, value))
        })
    };
    macro_rules! draw_bars {
        ($chart:expr, $floor:expr) => {{
            let chart = &mut $chart;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .disable_x_axis()
                .y_label_formatter(&|v| show(*v))
                .draw()?;
            for (index, (name, color)) in series.iter().enumerate() {
                let color = *color;
                chart
                    .draw_series(bars(index, $floor).map(|(left, floor, value)| {
                        Rectangle::new(
                            [(left + 0.01, floor), (left + bar_width - 0.01, value)],
                            color.filled(),
                        )
                    }))?
                    .label(*name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled())
                    });
                chart.draw_series(bars(index, $floor).map(|(left, _, value)| {
                    EmptyElement::at((left + bar_width / 2.0, value))
                        + Text::new(
                            show(value),
                            (0, -4),
                            ("sans-serif", 11)
                                .into_font()
                                .color(&BLACK)
                                .pos(Pos::new(HPos::Center, VPos::Bottom)),
                        )
                }))?;
            }
            // "n/a" where the bar of a proxy that cannot do the scenario would be.
            chart.draw_series(groups.iter().enumerate().flat_map(|(g, group)| {
                group
                    .not_applicable
                    .iter()
                    .enumerate()
                    .filter(|(_, na)| **na)
                    .map(move |(index, _)| {
                        let left = g as f64 - 0.4 + bar_width * index as f64;
                        EmptyElement::at((left + bar_width / 2.0, $floor))
                            + Text::new(
                                "n/a",
                                (0, -4),
                                ("sans-serif", 11)
                                    .into_font()
                                    .color(&BLACK)
                                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
                            )
                    })
            }))?;
            chart.draw_series(groups.iter().enumerate().map(|(g, group)| {
                EmptyElement::at((g as f64, $floor))
                    + Text::new(
                        group.label.clone(),
                        (0, 8),
                        ("sans-serif", 13)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Top)),
                    )
            }))?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.3))
                .draw()?;
        }};
    }
    if log {
        let mut chart = builder.build_cartesian_2d(x_range, (min..max).log_scale())?;
        draw_bars!(chart, min);
    } else {
        let mut chart = builder.build_cartesian_2d(x_range, min..max)?;
        draw_bars!(chart, min);
    }
    Ok(())
}
