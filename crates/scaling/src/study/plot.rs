//! One figure per study: a panel per task with the metric against the number of distinct
//! pretraining images (log x), 95% bootstrap intervals, the fitted power law, and its
//! bootstrap band extended to the extrapolation sizes. PNG and SVG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::fit::band;
use crate::study::report::{CurveFit, Row};
use crate::{Error, Result};

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    task: &str,
    rows: &[&Row],
    fits: &[&CurveFit],
    x_max: f64,
) -> std::result::Result<(), String> {
    let x_min = rows
        .iter()
        .map(|r| r.n_images as f64)
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        / 1.5;
    let x_max = x_max.max(x_min * 2.0);
    let grid: Vec<f64> = (0..=80)
        .map(|k| (x_min.ln() + (x_max.ln() - x_min.ln()) * k as f64 / 80.0).exp())
        .collect();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut seen = |v: f64| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    for r in rows {
        seen(r.value);
        if let Some((a, b)) = r.ci {
            seen(a);
            seen(b);
        }
    }
    let bands: Vec<Vec<Option<(f64, f64)>>> =
        fits.iter().map(|f| band(&f.refits, &grid, 0.95)).collect();
    for (f, b) in fits.iter().zip(&bands) {
        for (&x, bb) in grid.iter().zip(b) {
            seen(f.fit.law.eval(x));
            if let Some((a, c)) = bb {
                seen(*a);
                seen(*c);
            }
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = 0.05 * (hi - lo).max(1e-3);
    let metric = rows.first().map_or("metric", |r| r.metric.as_str());
    let mut chart = ChartBuilder::on(area)
        .caption(task, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d((x_min..x_max).log_scale(), (lo - pad)..(hi + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("distinct pretraining images (log)")
        .y_desc(metric)
        .draw()
        .map_err(|e| e.to_string())?;
    let mut archs: Vec<&str> = rows.iter().map(|r| r.arch.as_str()).collect();
    archs.sort_unstable();
    archs.dedup();
    for (i, arch) in archs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if let Some((f, b)) = fits.iter().zip(&bands).find(|(f, _)| f.arch == *arch) {
            let upper: Vec<(f64, f64)> = grid
                .iter()
                .zip(b)
                .filter_map(|(&x, v)| v.map(|v| (x, v.1)))
                .collect();
            let lower: Vec<(f64, f64)> = grid
                .iter()
                .zip(b)
                .filter_map(|(&x, v)| v.map(|v| (x, v.0)))
                .collect();
            let poly: Vec<(f64, f64)> = upper.into_iter().chain(lower.into_iter().rev()).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(poly, color.mix(0.15))))
                .map_err(|e| e.to_string())?;
            let law = f.fit.law;
            chart
                .draw_series(LineSeries::new(
                    grid.iter().map(|&x| (x, law.eval(x))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!(
                    "{arch}: {:.3} − {:.3}·n^(−{:.2})",
                    law.a, law.b, law.c
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        for r in rows.iter().filter(|r| r.arch == *arch) {
            let x = r.n_images as f64;
            if let Some((a, b)) = r.ci {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, a), (x, b)],
                        color.stroke_width(1),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x, r.value),
                    4,
                    color.filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[Row],
    fits: &[CurveFit],
    arm: &str,
    x_max: f64,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut tasks: Vec<&str> = rows
        .iter()
        .filter(|r| r.arm == arm)
        .map(|r| r.task.as_str())
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    let panels = root.split_evenly((1, tasks.len().max(1)));
    for (area, task) in panels.iter().zip(&tasks) {
        let rs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.arm == arm && r.task == *task)
            .collect();
        let fs: Vec<&CurveFit> = fits.iter().filter(|f| f.task == *task).collect();
        panel(area, task, &rs, &fs, x_max)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Draws the `arm` rows and the fits into `<stem>.png` and `<stem>.svg`, extending the
/// curves and bands to `x_max` images.
pub fn plot_study(
    stem: &Path,
    rows: &[Row],
    fits: &[CurveFit],
    arm: &str,
    x_max: f64,
) -> Result<()> {
    let n_tasks = {
        let mut t: Vec<&str> = rows.iter().map(|r| r.task.as_str()).collect();
        t.sort_unstable();
        t.dedup();
        t.len().max(1) as u32
    };
    let size = (420 * n_tasks, 380);
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        rows,
        fits,
        arm,
        x_max,
    )
    .map_err(|e| Error::io(&png, e))?;
    draw(
        SVGBackend::new(&svg, size).into_drawing_area(),
        rows,
        fits,
        arm,
        x_max,
    )
    .map_err(|e| Error::io(&svg, e))?;
    Ok(())
}
