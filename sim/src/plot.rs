//! SVG plots of a report (plotters' SVG backend: no font or image libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::metrics::Report;

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Writes every plot of `report` into `dir`; returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut out = |name: &str| {
        let p = dir.join(name);
        written.push(p.display().to_string());
        p
    };
    origin_fetches(report, &out("origin_fetches.svg"))?;
    lookup_cdf(report, &out("lookup_latency_cdf.svg"))?;
    served_by_level(report, &out("served_by_level.svg"))?;
    hot_key_load(report, &out("hot_key_load.svg"))?;
    Ok(written)
}

fn origin_fetches(report: &Report, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let minutes = report
        .variants
        .values()
        .map(|v| v.timeline.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let top = report
        .variants
        .values()
        .flat_map(|v| v.timeline.iter().map(|m| m.origin_fetches))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: origin fetches per minute", report.scenario),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0..minutes, 0..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("minute of workload")
        .y_desc("origin fetches")
        .draw()?;
    for (i, (name, v)) in report.variants.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                v.timeline
                    .iter()
                    .enumerate()
                    .map(|(m, x)| (m, x.origin_fetches)),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn lookup_cdf(report: &Report, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ms = report
        .variants
        .values()
        .filter_map(|v| v.lookup_cdf_ms.last().copied())
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: DHT lookup latency", report.scenario),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_ms * 1.05, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("lookup latency (ms)")
        .y_desc("fraction of lookups")
        .draw()?;
    for (i, (name, v)) in report.variants.iter().enumerate() {
        let Some(last) = v.lookup_cdf_ms.len().checked_sub(1).filter(|l| *l > 0) else {
            continue;
        };
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                v.lookup_cdf_ms
                    .iter()
                    .enumerate()
                    .map(|(k, ms)| (*ms, k as f64 / last as f64)),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn served_by_level(report: &Report, path: &Path) -> PlotResult {
    let Some((name, v)) = report
        .variants
        .iter()
        .find(|(n, _)| n.as_str() == "coral")
        .or_else(|| report.variants.iter().next())
    else {
        return Ok(());
    };
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let minutes = v.timeline.len().max(1);
    let top = v
        .timeline
        .iter()
        .flat_map(|m| m.served.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: requests served per minute ({name})", report.scenario),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0..minutes, 0..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("minute of workload")
        .y_desc("requests")
        .draw()?;
    let labels = ["local cache", "level 2", "level 1", "level 0", "origin"];
    for (i, label) in labels.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                v.timeline.iter().enumerate().map(|(m, x)| (m, x.served[i])),
                color.stroke_width(2),
            ))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn hot_key_load(report: &Report, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = report
        .variants
        .values()
        .flat_map(|v| v.hot_key_by_distance.iter().map(|(_, l)| *l))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: DHT requests for the hottest key, per node",
                report.scenario
            ),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(200u32..256u32, 0u32..top + top / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("log2 XOR distance of the node to the key")
        .y_desc("requests received")
        .draw()?;
    for (i, (name, v)) in report.variants.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(
                v.hot_key_by_distance
                    .iter()
                    .map(|(d, l)| Circle::new((*d, *l), 3, color.filled())),
            )?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
