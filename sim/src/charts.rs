//! SVG charts of a run (plotters): bytes by source, seeder egress against the compulsory-miss
//! bound, supernodes and their load, latency percentiles, and recovery after faults.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::metrics::Row;
use crate::report::Summary;

type Series = (String, Vec<(f64, f64)>, RGBColor);

const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn line_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[Series],
    faults: &[(f64, f64)],
) -> Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (mut x0, mut x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if x0 >= x1 {
        x0 = 0.0;
        x1 = 1.0;
    }
    let y1 = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.05 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("simulated minutes after warm-up")
        .y_desc(y_label)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for &(a, b) in faults {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a.max(x0), 0.0), (b.max(a + 0.2).min(x1), y1)],
                RGBColor(250, 220, 220).filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
    }
    for (name, pts, colour) in series {
        let c = *colour;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn series(rows: &[Row], baseline: &str, f: impl Fn(&Row) -> f64) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| r.baseline == baseline)
        .map(|r| (r.t_min, f(r)))
        .collect()
}

/// Draws every chart into `dir`.
pub fn write_all(summary: &Summary, rows: &[Row], dir: &Path) -> Result<()> {
    let names: Vec<String> = summary.baselines.keys().cloned().collect();
    let focus = if names.iter().any(|n| n == "nearcast") {
        "nearcast".to_string()
    } else {
        names.first().cloned().unwrap_or_default()
    };
    let faults: Vec<(f64, f64)> = summary
        .baselines
        .get(&focus)
        .map(|b| b.faults.iter().map(|f| (f.start_min, f.end_min)).collect())
        .unwrap_or_default();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let sample_s = rows
        .windows(2)
        .find(|w| w[0].baseline == w[1].baseline)
        .map(|w| (w[1].t_min - w[0].t_min) * 60.0)
        .unwrap_or(30.0)
        .max(1.0);
    let rate = |b: u64| mib(b) * 8.0 / sample_s; // Mbit/s
    // Bytes by source (focus baseline).
    let by_source: Vec<Series> = [
        ("local", 0usize),
        ("same prefix", 1),
        ("same AS", 2),
        ("other AS", 3),
        ("seeder", 4),
    ]
    .iter()
    .map(|(label, i)| {
        let pts = series(rows, &focus, |r| {
            rate([r.local, r.same_prefix, r.same_as, r.other_as, r.seeder][*i])
        });
        (label.to_string(), pts, COLOURS[*i])
    })
    .collect();
    line_chart(
        &dir.join("bytes_by_source.svg"),
        &format!("{focus}: bytes by source"),
        "Mbit/s",
        &by_source,
        &faults,
    )?;
    // Seeder egress of every baseline against the bound.
    let mut egress: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                format!("{n} seeder egress"),
                series(rows, n, |r| rate(r.seeder_egress)),
                COLOURS[i],
            )
        })
        .collect();
    egress.push((
        "compulsory-miss bound".into(),
        series(rows, &focus, |r| rate(r.miss_bytes)),
        COLOURS[7],
    ));
    line_chart(
        &dir.join("seeder_egress.svg"),
        "seeder egress vs compulsory-miss bound",
        "Mbit/s",
        &egress,
        &faults,
    )?;
    // Supernodes and load.
    let mut sn: Vec<Series> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if n == "nearcast" || n == "prefix_only" {
            sn.push((
                format!("{n} supernodes"),
                series(rows, n, |r| r.supernodes as f64),
                COLOURS[i],
            ));
            sn.push((
                format!("{n} mean children"),
                series(rows, n, |r| r.mean_children),
                COLOURS[i + 4],
            ));
        }
    }
    line_chart(
        &dir.join("supernodes.svg"),
        "supernodes and children per supernode",
        "count",
        &sn,
        &faults,
    )?;
    // Latency.
    let mut lat: Vec<Series> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        lat.push((
            format!("{n} TTFB p50"),
            series(rows, n, |r| r.ttfb_p50 as f64),
            COLOURS[i],
        ));
        lat.push((
            format!("{n} TTFB p95"),
            series(rows, n, |r| r.ttfb_p95 as f64),
            COLOURS[i + 4],
        ));
    }
    line_chart(
        &dir.join("latency.svg"),
        "time to first byte",
        "ms",
        &lat,
        &faults,
    )?;
    // Recovery: success and attachment.
    let mut rec: Vec<Series> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        rec.push((
            format!("{n} fetch success"),
            series(rows, n, |r| r.success),
            COLOURS[i],
        ));
    }
    rec.push((
        format!("{focus} leaves with any parent"),
        series(rows, &focus, |r| r.attached_any),
        COLOURS[7],
    ));
    rec.push((
        format!("{focus} leaves with a supernode parent (not a seeder)"),
        series(rows, &focus, |r| r.attached),
        COLOURS[6],
    ));
    line_chart(
        &dir.join("recovery.svg"),
        "fetch success and attachment (faults shaded)",
        "fraction",
        &rec,
        &faults,
    )?;
    Ok(())
}
