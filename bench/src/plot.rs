//! SVG plots of a comparison: per cell, the latency percentile spectrum of every run of both
//! systems; per workload with open-loop cells, latency against offered rate.
//!
//! The spectrum's x axis is 1 / (1 - quantile) on a log scale (HdrHistogram's own plot): equal
//! distances for p90, p99, p99.9, ..., so the tail is as readable as the median.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::compare::median;
use crate::load::{Cell, Mode, Report};

const PLOT_SIZE: (u32, u32) = (900, 560);
/// The spectrum's x axis ends here: 1 / (1 - 0.99999). The maximum is drawn at this point.
const SPECTRUM_X_MAX: f64 = 1e5;
/// One colour per system, in the order systems first appear.
const SYSTEM_COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

fn colour(systems: &[String], system: &str) -> RGBColor {
    let index = systems
        .iter()
        .position(|known| known == system)
        .unwrap_or(0);
    SYSTEM_COLOURS[index % SYSTEM_COLOURS.len()]
}

fn spectrum_x(quantile: f64) -> f64 {
    let remaining = 1.0 - quantile;
    if remaining <= 1.0 / SPECTRUM_X_MAX {
        SPECTRUM_X_MAX
    } else {
        1.0 / remaining
    }
}

/// "90%", "99%", "99.9%", "99.99%": as many decimals as the percentile has.
fn quantile_label(x: &f64) -> String {
    let percent = format!("{:.3}", 100.0 * (1.0 - 1.0 / x));
    let trimmed = percent.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}%")
}

/// A file name from a cell label: "put-only closed x16" -> "put-only-closed-x16".
fn slug(label: &str) -> String {
    let mut slug: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    slug.trim_matches('-').to_string()
}

fn draw_error(error: impl std::fmt::Display) -> String {
    format!("plot: {error}")
}

/// Writes every plot of a comparison into `directory`; returns the files written.
pub fn comparison_plots(
    directory: &Path,
    cells: &[Cell],
    reports: &[(usize, usize, Report)],
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("{}: {error}", directory.display()))?;
    let mut systems: Vec<String> = Vec::new();
    for (_, _, report) in reports {
        if !systems.contains(&report.target) {
            systems.push(report.target.clone());
        }
    }
    let mut written = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let runs: Vec<&Report> = reports
            .iter()
            .filter(|(_, cell_index, report)| *cell_index == index && !report.spectrum.is_empty())
            .map(|(_, _, report)| report)
            .collect();
        if runs.is_empty() {
            continue;
        }
        let path = directory.join(format!("spectrum-{}.svg", slug(&cell.label)));
        spectrum_plot(&path, &cell.label, &systems, &runs)?;
        written.push(path);
    }
    written.extend(rate_plots(directory, cells, reports, &systems)?);
    Ok(written)
}

fn spectrum_plot(
    path: &Path,
    title: &str,
    systems: &[String],
    runs: &[&Report],
) -> Result<(), String> {
    // Tails span decades: the latency axis is logarithmic too.
    let latencies_ms = || {
        runs.iter()
            .flat_map(|report| report.spectrum.iter().map(|(_, nanos)| *nanos as f64 / 1e6))
    };
    let y_max_ms = latencies_ms().fold(0.0f64, f64::max).max(0.01) * 1.2;
    let y_min_ms = latencies_ms()
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, y_max_ms)
        * 0.8;
    let root = SVGBackend::new(path, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: latency by percentile (every run)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (1.0f64..SPECTRUM_X_MAX).log_scale(),
            (y_min_ms..y_max_ms).log_scale(),
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&quantile_label)
        .draw()
        .map_err(draw_error)?;
    let mut labelled = Vec::new();
    for report in runs {
        let system_colour = colour(systems, &report.target);
        let points: Vec<(f64, f64)> = report
            .spectrum
            .iter()
            .map(|(quantile, nanos)| (spectrum_x(*quantile), *nanos as f64 / 1e6))
            .collect();
        let series = chart
            .draw_series(LineSeries::new(points, system_colour.stroke_width(2)))
            .map_err(draw_error)?;
        if !labelled.contains(&report.target) {
            labelled.push(report.target.clone());
            series.label(report.target.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], system_colour.stroke_width(2))
            });
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw_error)?;
    root.present().map_err(draw_error)
}

/// Median of each system's p50 and p99 over the repetitions of every open-loop cell of one
/// workload, against the offered rate.
fn rate_plots(
    directory: &Path,
    cells: &[Cell],
    reports: &[(usize, usize, Report)],
    systems: &[String],
) -> Result<Vec<PathBuf>, String> {
    // workload name -> system -> [(rate, p50 ms, p99 ms, valid)]
    type Points = Vec<(f64, f64, f64, bool)>;
    let mut by_workload: BTreeMap<String, BTreeMap<String, Points>> = BTreeMap::new();
    for (index, cell) in cells.iter().enumerate() {
        let Mode::Open { rate, .. } = cell.mode else {
            continue;
        };
        let workload = format!("{:?}", cell.workload).to_lowercase();
        for system in systems {
            let runs: Vec<&Report> = reports
                .iter()
                .filter(|(_, cell_index, report)| *cell_index == index && report.target == *system)
                .map(|(_, _, report)| report)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let p50 = median(runs.iter().map(|r| r.all.p50 as f64 / 1e6).collect());
            let p99 = median(runs.iter().map(|r| r.all.p99 as f64 / 1e6).collect());
            let valid = runs.iter().all(|r| r.valid());
            by_workload
                .entry(workload.clone())
                .or_default()
                .entry(system.clone())
                .or_default()
                .push((rate, p50, p99, valid));
        }
    }
    let mut written = Vec::new();
    for (workload, series) in by_workload {
        let rates: Vec<f64> = series.values().flatten().map(|point| point.0).collect();
        if rates.len() < 2 {
            continue;
        }
        let x_max = rates.iter().copied().fold(0.0, f64::max) * 1.1;
        let y_max = series
            .values()
            .flatten()
            .map(|point| point.2)
            .fold(0.0, f64::max)
            * 1.1;
        let path = directory.join(format!("latency-vs-rate-{}.svg", slug(&workload)));
        let root = SVGBackend::new(&path, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{workload}: latency vs offered rate (open loop, medians; hollow = invalid)"
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0f64..x_max, 0.0f64..y_max.max(0.01))
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("offered rate (operations/s)")
            .y_desc("latency (ms)")
            .draw()
            .map_err(draw_error)?;
        for (system, points) in &series {
            let mut points = points.clone();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let system_colour = colour(systems, system);
            for (name, pick, width) in [("p50", 1usize, 1u32), ("p99", 2, 3)] {
                let line: Vec<(f64, f64)> = points
                    .iter()
                    .map(|p| (p.0, if pick == 1 { p.1 } else { p.2 }))
                    .collect();
                chart
                    .draw_series(LineSeries::new(
                        line.clone(),
                        system_colour.stroke_width(width),
                    ))
                    .map_err(draw_error)?
                    .label(format!("{system} {name}"))
                    .legend(move |(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 20, y)],
                            system_colour.stroke_width(width),
                        )
                    });
                chart
                    .draw_series(points.iter().zip(&line).map(|(point, &(x, y))| {
                        let style = if point.3 {
                            system_colour.filled()
                        } else {
                            system_colour.stroke_width(1)
                        };
                        Circle::new((x, y), 4, style)
                    }))
                    .map_err(draw_error)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
        drop(chart);
        drop(root);
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::Percentiles;
    use crate::load::driver::{RecordShape, Workload};
    use crate::load::keys::Distribution;
    use std::time::Duration;

    fn report(target: &str, scale: u64) -> Report {
        Report {
            target: target.to_string(),
            label: String::new(),
            operations: 100,
            elapsed: Duration::from_secs(1),
            latency: BTreeMap::new(),
            all: Percentiles {
                samples: 100,
                p50: 1_000_000 * scale,
                p90: 2_000_000 * scale,
                p99: 3_000_000 * scale,
                p999: 4_000_000 * scale,
                max: 5_000_000 * scale,
            },
            spectrum: crate::load::SPECTRUM_QUANTILES
                .iter()
                .map(|&q| (q, ((1.0 + 10.0 * q) * 1e6) as u64 * scale))
                .collect(),
            errors: BTreeMap::new(),
            reads_not_found: 0,
            send_lag: None,
            server_cpu_seconds: None,
            pressure_before: String::new(),
            pressure_after: String::new(),
        }
    }

    fn cell(label: &str, mode: Mode) -> Cell {
        Cell {
            label: label.to_string(),
            workload: Workload::PutOnly,
            distribution: Distribution::Uniform,
            strong_reads: true,
            shape: RecordShape {
                field_count: 1,
                field_bytes: 1,
            },
            records: 1,
            mode,
            operations: 1,
            max_duration: Duration::from_secs(1),
            seed: 1,
        }
    }

    #[test]
    fn plots_are_written_as_svg() {
        let directory = tempfile::tempdir().unwrap();
        let cells = vec![
            cell("put closed x1", Mode::Closed { clients: 1 }),
            cell(
                "put open 500/s",
                Mode::Open {
                    workers: 4,
                    rate: 500.0,
                },
            ),
            cell(
                "put open 1000/s",
                Mode::Open {
                    workers: 4,
                    rate: 1000.0,
                },
            ),
        ];
        let mut reports = Vec::new();
        for index in 0..cells.len() {
            reports.push((0, index, report("shoal", 1)));
            reports.push((0, index, report("etcd", 2)));
        }
        let written = comparison_plots(directory.path(), &cells, &reports).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "spectrum-put-closed-x1.svg",
                "spectrum-put-open-500-s.svg",
                "spectrum-put-open-1000-s.svg",
                "latency-vs-rate-putonly.svg"
            ]
        );
        let svg = std::fs::read_to_string(&written[0]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("etcd") && svg.contains("shoal"));
        assert!(svg.contains("99.9%"));
    }

    #[test]
    fn quantiles_map_to_the_log_axis() {
        assert_eq!(spectrum_x(0.0), 1.0);
        assert!((spectrum_x(0.99) - 100.0).abs() < 1e-6);
        assert_eq!(spectrum_x(1.0), SPECTRUM_X_MAX);
        assert_eq!(quantile_label(&100.0), "99%");
        assert_eq!(quantile_label(&1000.0), "99.9%");
        assert_eq!(quantile_label(&10.0), "90%");
        assert_eq!(slug("put-only open 1000/s"), "put-only-open-1000-s");
    }
}
