//! Pictures: heat-map overlays, patch-colour grids, match lines between two scans, tiling,
//! and labelled scatter plots (PNG or SVG through plotters).

use std::path::Path;

use image::{GrayImage, Rgb, RgbImage};
use plotters::prelude::*;

use crate::correspondence::Match;
use crate::{Error, Result};

/// A perceptual colour map, sampled at 11 points from matplotlib's and interpolated linearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colormap {
    /// Dark blue to yellow.
    #[default]
    Viridis,
    /// Black through red to pale yellow.
    Inferno,
}

const VIRIDIS: [[u8; 3]; 11] = [
    [68, 1, 84],
    [72, 35, 116],
    [64, 67, 135],
    [52, 94, 141],
    [41, 120, 142],
    [32, 144, 140],
    [34, 167, 132],
    [68, 190, 112],
    [121, 209, 81],
    [189, 222, 38],
    [253, 231, 37],
];
const INFERNO: [[u8; 3]; 11] = [
    [0, 0, 4],
    [22, 11, 57],
    [66, 10, 104],
    [106, 23, 110],
    [147, 38, 103],
    [188, 55, 84],
    [221, 81, 58],
    [243, 118, 27],
    [252, 165, 10],
    [246, 215, 70],
    [252, 255, 164],
];

impl Colormap {
    /// The colour of `t` in `[0, 1]` (clamped; NaN maps to 0).
    pub fn map(self, t: f64) -> [u8; 3] {
        let table = match self {
            Colormap::Viridis => &VIRIDIS,
            Colormap::Inferno => &INFERNO,
        };
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let x = t * 10.0;
        let i = (x.floor() as usize).min(9);
        let f = x - i as f64;
        let mut out = [0u8; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let a = f64::from(table[i][c]);
            let b = f64::from(table[i + 1][c]);
            *o = (a + (b - a) * f).round() as u8;
        }
        out
    }
}

/// How a patch grid is brought to pixel resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interp {
    /// Each patch a flat block (what the model sees).
    Nearest,
    /// Bilinear between patch centres (`align_corners=False` semantics, clamped at edges).
    #[default]
    Bilinear,
}

fn check_grid(name: &str, len: usize, (rows, cols): (usize, usize)) -> Result<()> {
    if len != rows * cols || rows == 0 || cols == 0 {
        return Err(Error::shape(
            name,
            format!("{rows} x {cols} = {} values", rows * cols),
            &[len],
        ));
    }
    Ok(())
}

/// Resamples a row-major `grid` of values to `(height, width)` pixels.
pub fn upsample(
    values: &[f64],
    grid: (usize, usize),
    (height, width): (usize, usize),
    interp: Interp,
) -> Result<Vec<f64>> {
    check_grid("grid values", values.len(), grid)?;
    let (rows, cols) = grid;
    let mut out = vec![0f64; height * width];
    let sy = rows as f64 / height as f64;
    let sx = cols as f64 / width as f64;
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = match interp {
                Interp::Nearest => {
                    let r = (((y as f64 + 0.5) * sy) as usize).min(rows - 1);
                    let c = (((x as f64 + 0.5) * sx) as usize).min(cols - 1);
                    values[r * cols + c]
                }
                Interp::Bilinear => {
                    let fy = ((y as f64 + 0.5) * sy - 0.5).clamp(0.0, (rows - 1) as f64);
                    let fx = ((x as f64 + 0.5) * sx - 0.5).clamp(0.0, (cols - 1) as f64);
                    let (r0, c0) = (fy.floor() as usize, fx.floor() as usize);
                    let (r1, c1) = ((r0 + 1).min(rows - 1), (c0 + 1).min(cols - 1));
                    let (wy, wx) = (fy - r0 as f64, fx - c0 as f64);
                    let top = values[r0 * cols + c0] * (1.0 - wx) + values[r0 * cols + c1] * wx;
                    let bot = values[r1 * cols + c0] * (1.0 - wx) + values[r1 * cols + c1] * wx;
                    top * (1.0 - wy) + bot * wy
                }
            };
        }
    }
    Ok(out)
}

/// Options of [`overlay_heatmap`].
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayOptions {
    /// Colour map of the heat.
    pub colormap: Colormap,
    /// Opacity of the heat over the image, in `[0, 1]`.
    pub alpha: f64,
    /// Grid-to-pixel resampling.
    pub interp: Interp,
    /// Per patch: show the heat only where `true` (e.g. [`crate::attention::top_mass_mask`]);
    /// elsewhere the image is dimmed.
    pub mask: Option<Vec<bool>>,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        Self {
            colormap: Colormap::Inferno,
            alpha: 0.6,
            interp: Interp::Bilinear,
            mask: None,
        }
    }
}

/// The gray image as RGB.
pub fn gray_to_rgb(base: &GrayImage) -> RgbImage {
    RgbImage::from_fn(base.width(), base.height(), |x, y| {
        let v = base.get_pixel(x, y)[0];
        Rgb([v, v, v])
    })
}

/// Upscales a gray image by an integer factor (Catmull-Rom), for display.
pub fn upscale_gray(base: &GrayImage, factor: u32) -> GrayImage {
    let factor = factor.max(1);
    image::imageops::resize(
        base,
        base.width() * factor,
        base.height() * factor,
        image::imageops::FilterType::CatmullRom,
    )
}

/// Colours `heat` (a row-major patch grid, min-max scaled) over `base`. The grid is stretched
/// over the whole image, so `base` must be the pixels the encoder saw (after resize and crop).
pub fn overlay_heatmap(
    base: &GrayImage,
    heat: &[f64],
    grid: (usize, usize),
    opts: &OverlayOptions,
) -> Result<RgbImage> {
    check_grid("heat map", heat.len(), grid)?;
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(Error::bad(
            "overlay alpha",
            format!("{} is not in [0, 1]", opts.alpha),
        ));
    }
    let (w, h) = (base.width() as usize, base.height() as usize);
    let scaled = crate::pca::min_max(heat);
    let up = upsample(&scaled, grid, (h, w), opts.interp)?;
    let mask_up = match &opts.mask {
        Some(m) => {
            check_grid("overlay mask", m.len(), grid)?;
            let as_f: Vec<f64> = m.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
            Some(upsample(&as_f, grid, (h, w), Interp::Nearest)?)
        }
        None => None,
    };
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let g = f64::from(base.get_pixel(x, y)[0]);
        let shown = mask_up.as_ref().is_none_or(|m| m[i] > 0.5);
        if !shown {
            let d = (g * 0.35).round() as u8;
            return Rgb([d, d, d]);
        }
        let c = opts.colormap.map(up[i]);
        let mix = |k: usize| ((1.0 - opts.alpha) * g + opts.alpha * f64::from(c[k])).round() as u8;
        Rgb([mix(0), mix(1), mix(2)])
    }))
}

/// Paints per-patch RGB colours (`[0, 1]` each) as blocks of `(height, width)` pixels; patches
/// not in `foreground` (when given) are black.
pub fn patch_rgb_image(
    rgb: &[[f64; 3]],
    grid: (usize, usize),
    (height, width): (usize, usize),
    foreground: Option<&[bool]>,
) -> Result<RgbImage> {
    check_grid("patch colours", rgb.len(), grid)?;
    let (rows, cols) = grid;
    Ok(RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let r = ((y as usize * rows) / height).min(rows - 1);
        let c = ((x as usize * cols) / width).min(cols - 1);
        let i = r * cols + c;
        if foreground.is_some_and(|f| !f.get(i).copied().unwrap_or(false)) {
            return Rgb([0, 0, 0]);
        }
        let px = rgb[i].map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
        Rgb(px)
    }))
}

fn blend(img: &mut RgbImage, x: i64, y: i64, c: [u8; 3], a: f64) {
    if x < 0 || y < 0 || x >= i64::from(img.width()) || y >= i64::from(img.height()) {
        return;
    }
    let p = img.get_pixel_mut(x as u32, y as u32);
    for k in 0..3 {
        p[k] = ((1.0 - a) * f64::from(p[k]) + a * f64::from(c[k])).round() as u8;
    }
}

fn disc(img: &mut RgbImage, cx: f64, cy: f64, radius: f64, c: [u8; 3]) {
    let r = radius.ceil() as i64;
    for dy in -r..=r {
        for dx in -r..=r {
            let d = ((dx * dx + dy * dy) as f64).sqrt();
            if d <= radius {
                blend(img, cx.round() as i64 + dx, cy.round() as i64 + dy, c, 1.0);
            }
        }
    }
}

/// Draws a line of the given width from `(x0, y0)` to `(x1, y1)`.
pub fn draw_line(
    img: &mut RgbImage,
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    width: f64,
    c: [u8; 3],
) {
    let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
    let steps = (len * 2.0).ceil().max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        disc(img, x0 + t * (x1 - x0), y0 + t * (y1 - y0), width / 2.0, c);
    }
}

/// Puts `a` and `b` side by side (with a `gap`) and joins the centres of matched patches,
/// strongest match in the brightest colour. `grid_a`/`grid_b` are the patch grids stretched
/// over each image.
pub fn side_by_side_matches(
    a: &RgbImage,
    b: &RgbImage,
    grid_a: (usize, usize),
    grid_b: (usize, usize),
    matches: &[Match],
    gap: u32,
) -> Result<RgbImage> {
    let n_a = grid_a.0 * grid_a.1;
    let n_b = grid_b.0 * grid_b.1;
    if let Some(bad) = matches.iter().find(|m| m.a >= n_a || m.b >= n_b) {
        return Err(Error::bad(
            "matches",
            format!(
                "pair ({}, {}) is outside the {n_a}- and {n_b}-patch grids",
                bad.a, bad.b
            ),
        ));
    }
    let height = a.height().max(b.height());
    let mut out = RgbImage::from_pixel(a.width() + gap + b.width(), height, Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, a, 0, 0);
    image::imageops::replace(&mut out, b, i64::from(a.width() + gap), 0);
    let centre = |idx: usize, (rows, cols): (usize, usize), img: &RgbImage, x_off: f64| {
        let (r, c) = (idx / cols, idx % cols);
        let ph = f64::from(img.height()) / rows as f64;
        let pw = f64::from(img.width()) / cols as f64;
        (x_off + (c as f64 + 0.5) * pw, (r as f64 + 0.5) * ph)
    };
    let k = matches.len();
    // weakest first, so the strongest lines end on top
    for (rank, m) in matches.iter().enumerate().rev() {
        let t = if k > 1 {
            1.0 - rank as f64 / (k - 1) as f64
        } else {
            1.0
        };
        let colour = Colormap::Viridis.map(0.15 + 0.85 * t);
        let pa = centre(m.a, grid_a, a, 0.0);
        let pb = centre(m.b, grid_b, b, f64::from(a.width() + gap));
        draw_line(&mut out, pa, pb, 2.0, colour);
        disc(&mut out, pa.0, pa.1, 3.5, colour);
        disc(&mut out, pb.0, pb.1, 3.5, colour);
    }
    Ok(out)
}

/// Lays `images` out left to right in rows of `cols`, `pad` pixels apart, on white.
pub fn tile(images: &[RgbImage], cols: usize, pad: u32) -> Result<RgbImage> {
    if images.is_empty() || cols == 0 {
        return Err(Error::bad(
            "tile",
            "needs at least one image and one column",
        ));
    }
    let cw = images.iter().map(|i| i.width()).max().unwrap_or(0);
    let ch = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let w = cols as u32 * cw + (cols as u32 - 1) * pad;
    let h = rows as u32 * ch + (rows as u32 - 1) * pad;
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (i, img) in images.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        image::imageops::replace(
            &mut out,
            img,
            i64::from(c * (cw + pad)),
            i64::from(r * (ch + pad)),
        );
    }
    Ok(out)
}

/// Writes an RGB image (format from the extension, e.g. `.png`).
pub fn save(img: &RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Calls `draw(area, args…)` on an SVG drawing area when `path` ends in `.svg`, else on a
/// bitmap (PNG) one, and names the path in the error. A macro because the two backends are
/// different types, and a closure cannot be generic over them.
macro_rules! draw_to_path {
    ($path:expr, $size:expr, $draw:ident($($arg:expr),* $(,)?)) => {{
        let path: &Path = $path;
        let is_svg = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        let result = if is_svg {
            $draw(SVGBackend::new(path, $size).into_drawing_area(), $($arg),*)
        } else {
            $draw(BitMapBackend::new(path, $size).into_drawing_area(), $($arg),*)
        };
        result.map_err(|reason| Error::Write {
            path: path.to_path_buf(),
            reason,
        })
    }};
}

fn draw_scatter<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    points: &[(f64, f64)],
    labels: &[String],
    title: &str,
    axes: (&str, &str),
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let pad = |lo: f64, hi: f64| {
        let p = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
        (lo - p)..(hi + p)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(pad(x0, x1), pad(y0, y1))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(axes.0)
        .y_desc(axes.1)
        .draw()
        .map_err(|e| e.to_string())?;
    let mut classes: Vec<&String> = labels.iter().collect();
    classes.sort();
    classes.dedup();
    for (ci, class) in classes.iter().enumerate() {
        let colour = Palette99::pick(ci).to_rgba();
        let pts: Vec<(f64, f64)> = points
            .iter()
            .zip(labels)
            .filter(|(_, l)| l == class)
            .map(|(p, _)| *p)
            .collect();
        let n = pts.len();
        chart
            .draw_series(
                pts.into_iter()
                    .map(|p| Circle::new(p, 4, colour.mix(0.75).filled())),
            )
            .map_err(|e| e.to_string())?
            .label(format!("{class} (n={n})"))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// A scatter plot of 2-D `points` coloured by `labels` (one colour and legend entry per
/// distinct label), written as PNG or SVG according to the extension of `path`.
pub fn scatter(
    points: &[(f64, f64)],
    labels: &[String],
    title: &str,
    axes: (&str, &str),
    path: &Path,
    size: (u32, u32),
) -> Result<()> {
    if points.len() != labels.len() || points.is_empty() {
        return Err(Error::bad(
            "scatter",
            format!("{} points and {} labels", points.len(), labels.len()),
        ));
    }
    if points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(Error::bad("scatter", "a point is NaN or infinite"));
    }
    draw_to_path!(path, size, draw_scatter(points, labels, title, axes))
}

/// One row of an [`intervals`] plot: an estimate with its confidence interval.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalRow {
    /// What the row measures, written beside it.
    pub label: String,
    /// The point estimate.
    pub estimate: f64,
    /// The interval, `(lower, upper)`.
    pub ci: (f64, f64),
    /// Drawn darker and thicker (a pooled or summary row).
    pub emphasis: bool,
}

fn draw_intervals<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    rows: &[IntervalRow],
    title: &str,
    x_desc: &str,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (lo, hi) = rows.iter().fold((0.0f64, 0.0f64), |(lo, hi), r| {
        (lo.min(r.ci.0), hi.max(r.ci.1))
    });
    let pad = if hi > lo { 0.08 * (hi - lo) } else { 1.0 };
    let n = rows.len();
    let label_width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size((label_width as u32 * 7).clamp(60, 420))
        .build_cartesian_2d((lo - pad)..(hi + pad), -0.5f64..(n as f64 - 0.5))
        .map_err(|e| e.to_string())?;
    // row 0 at the top: y = n - 1 - i
    let y_of = |i: usize| (n - 1 - i) as f64;
    let label_of = |y: &f64| {
        let i = n as f64 - 1.0 - y.round();
        if (y - y.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
            rows[i as usize].label.clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&label_of)
        .x_desc(x_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
            BLACK.mix(0.5).stroke_width(1),
        )))
        .map_err(|e| e.to_string())?;
    for (i, r) in rows.iter().enumerate() {
        let y = y_of(i);
        let (colour, width, radius) = if r.emphasis {
            (BLACK.to_rgba(), 3, 6)
        } else {
            (Palette99::pick(4).to_rgba(), 2, 4)
        };
        chart
            .draw_series([
                PathElement::new(vec![(r.ci.0, y), (r.ci.1, y)], colour.stroke_width(width))
                    .into_dyn(),
                Circle::new((r.estimate, y), radius, colour.filled()).into_dyn(),
            ])
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// A forest plot: one horizontal interval with its estimate per row, top to bottom, and a
/// vertical line at zero (for differences: left of it, the second system is ahead). Written
/// as PNG or SVG according to the extension of `path`; its height grows with the rows.
pub fn intervals(rows: &[IntervalRow], title: &str, x_desc: &str, path: &Path) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::bad("intervals", "no row to draw"));
    }
    if let Some(r) = rows
        .iter()
        .find(|r| ![r.estimate, r.ci.0, r.ci.1].iter().all(|v| v.is_finite()) || r.ci.0 > r.ci.1)
    {
        return Err(Error::bad(
            "intervals",
            format!(
                "row {:?}: estimate {} and interval {:?} must be finite, lower ≤ upper",
                r.label, r.estimate, r.ci
            ),
        ));
    }
    let size = (900, 90 + 28 * rows.len() as u32);
    draw_to_path!(path, size, draw_intervals(rows, title, x_desc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upsampling_keeps_blocks_and_interpolates_between_centres() {
        let v = [0.0, 1.0];
        let near = upsample(&v, (1, 2), (1, 4), Interp::Nearest).unwrap();
        assert_eq!(near, vec![0.0, 0.0, 1.0, 1.0]);
        let bil = upsample(&v, (1, 2), (1, 4), Interp::Bilinear).unwrap();
        // pixel centres at 0.125, 0.375, 0.625, 0.875 of the width; patch centres at 0.25, 0.75
        assert_eq!(bil, vec![0.0, 0.25, 0.75, 1.0]);
        assert!(upsample(&v, (2, 2), (4, 4), Interp::Nearest).is_err());
    }

    #[test]
    fn colormap_ends() {
        assert_eq!(Colormap::Viridis.map(0.0), VIRIDIS[0]);
        assert_eq!(Colormap::Viridis.map(1.0), VIRIDIS[10]);
        assert_eq!(Colormap::Inferno.map(2.0), INFERNO[10]);
    }

    #[test]
    fn writes_png_and_svg_scatter() {
        let dir = tempfile::tempdir().unwrap();
        let pts = vec![(0.0, 0.0), (1.0, 1.0), (0.5, 2.0)];
        let labels = vec!["a".to_string(), "b".to_string(), "a".to_string()];
        for name in ["s.png", "s.svg"] {
            let p = dir.path().join(name);
            scatter(&pts, &labels, "t", ("x", "y"), &p, (300, 200)).unwrap();
            assert!(std::fs::metadata(&p).unwrap().len() > 100);
        }
        assert!(scatter(
            &pts,
            &labels[..2],
            "t",
            ("x", "y"),
            &dir.path().join("x.png"),
            (300, 200)
        )
        .is_err());
    }

    #[test]
    fn writes_png_and_svg_interval_plots_and_rejects_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let row = |label: &str, estimate, ci, emphasis| IntervalRow {
            label: label.into(),
            estimate,
            ci,
            emphasis,
        };
        let rows = vec![
            row("seed 0", 0.02, (-0.03, 0.07), false),
            row("seed 1", -0.01, (-0.06, 0.04), false),
            row("mean of 2", 0.005, (-0.02, 0.03), true),
        ];
        let png = dir.path().join("f.png");
        intervals(&rows, "paired", "difference", &png).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (900, 90 + 28 * 3));
        let svg = dir.path().join("f.svg");
        intervals(&rows, "paired", "difference", &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        for label in ["seed 0", "seed 1", "mean of 2", "difference"] {
            assert!(text.contains(label), "{label} missing from the SVG");
        }
        let bad = dir.path().join("bad.png");
        assert!(intervals(&[], "t", "x", &bad).is_err());
        for r in [
            row("nan", f64::NAN, (0.0, 1.0), false),
            row("inverted", 0.5, (1.0, 0.0), false),
        ] {
            let err = intervals(&[r], "t", "x", &bad).unwrap_err();
            assert!(err.to_string().contains("finite, lower"), "{err}");
        }
    }
}
