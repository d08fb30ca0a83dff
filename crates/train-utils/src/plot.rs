//! Loss curves as PNG and SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::{Error, Result, StepRecord};

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    records: &[StepRecord],
    columns: &[&str],
    title: &str,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_max = records.iter().map(|r| r.step).max().unwrap_or(1).max(1) as f64;
    let x_min = records.iter().map(|r| r.step).min().unwrap_or(0) as f64;
    let vals = records
        .iter()
        .flat_map(|r| {
            columns
                .iter()
                .filter_map(move |c| r.values.get(*c).copied())
        })
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let pad = 0.05 * (hi - lo);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(x_min..x_max.max(x_min + 1.0), (lo - pad)..(hi + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, col) in columns.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter_map(|r| r.values.get(*col).map(|v| (r.step as f64, *v)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*col)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// [`plot_curves`] for the end of a training run: a figure that cannot be drawn (no usable
/// font on a headless GPU machine, say) is reported on stderr and the run goes on, so its
/// checkpoints and export are never lost to a plot; the numbers stay in the step log.
pub fn plot_curves_or_warn(records: &[StepRecord], columns: &[&str], stem: &Path, title: &str) {
    if let Err(e) = plot_curves(records, columns, stem, title) {
        eprintln!("warning: loss curve not drawn ({e}); the step log has the numbers");
    }
}

/// Plots `columns` of `records` against the step into `<stem>.png` and `<stem>.svg`.
pub fn plot_curves(
    records: &[StepRecord],
    columns: &[&str],
    stem: &Path,
    title: &str,
) -> Result<()> {
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    draw(
        BitMapBackend::new(&png, (900, 540)).into_drawing_area(),
        records,
        columns,
        title,
    )
    .map_err(|reason| Error::Plot {
        path: png.clone(),
        reason,
    })?;
    draw(
        SVGBackend::new(&svg, (900, 540)).into_drawing_area(),
        records,
        columns,
        title,
    )
    .map_err(|reason| Error::Plot {
        path: svg.clone(),
        reason,
    })?;
    Ok(())
}
