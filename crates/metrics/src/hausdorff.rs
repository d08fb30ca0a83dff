//! 95th-percentile Hausdorff distance between two 2-D binary masks (MONAI's
//! `compute_hausdorff_distance(..., percentile=95)` definition).
//!
//! The surface of a mask is the mask minus its binary erosion by the 4-connected cross,
//! with everything outside the image counted as background (`scipy.ndimage.binary_erosion`
//! defaults), so foreground pixels on the image border are surface pixels. For each surface
//! pixel of one mask, the Euclidean distance (in pixels, scaled by `spacing`) to the nearest
//! surface pixel of the other; HD95 is the larger of the two directed 95th percentiles
//! (numpy's linear interpolation). Conventions: both masks empty → 0.0; exactly one empty →
//! `None` (undefined; MONAI returns inf/NaN there).
//!
//! The nearest-surface search is brute force, O(|∂A|·|∂B|): fine for the masks of a
//! chest X-ray at evaluation resolution, not meant for 3-D volumes.

use crate::bootstrap::percentile_sorted;
use crate::error::{MetricsError, Result};

fn surface(mask: &[bool], h: usize, w: usize) -> Vec<(usize, usize)> {
    let at = |r: isize, c: isize| -> bool {
        r >= 0
            && c >= 0
            && (r as usize) < h
            && (c as usize) < w
            && mask[r as usize * w + c as usize]
    };
    let mut out = Vec::new();
    for r in 0..h {
        for c in 0..w {
            if !mask[r * w + c] {
                continue;
            }
            let (ri, ci) = (r as isize, c as isize);
            let interior = at(ri - 1, ci) && at(ri + 1, ci) && at(ri, ci - 1) && at(ri, ci + 1);
            if !interior {
                out.push((r, c));
            }
        }
    }
    out
}

fn directed_p95(from: &[(usize, usize)], to: &[(usize, usize)], spacing: (f64, f64)) -> f64 {
    let mut d: Vec<f64> = from
        .iter()
        .map(|&(r, c)| {
            to.iter()
                .map(|&(r2, c2)| {
                    let dy = (r as f64 - r2 as f64) * spacing.0;
                    let dx = (c as f64 - c2 as f64) * spacing.1;
                    dy * dy + dx * dx
                })
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .collect();
    d.sort_unstable_by(f64::total_cmp);
    percentile_sorted(&d, 0.95).unwrap_or(0.0)
}

/// HD95 of two `h × w` row-major masks with pixel `spacing` (row, column); see the module
/// docs for the conventions. `Ok(None)` when exactly one mask is empty.
pub fn hausdorff95(
    predicted: &[bool],
    target: &[bool],
    shape: (usize, usize),
    spacing: (f64, f64),
) -> Result<Option<f64>> {
    let (h, w) = shape;
    if predicted.len() != h * w || target.len() != h * w {
        return Err(MetricsError::InvalidArgument(format!(
            "masks of {} and {} pixels for shape {h}x{w}",
            predicted.len(),
            target.len()
        )));
    }
    let (a, b) = (surface(predicted, h, w), surface(target, h, w));
    Ok(match (a.is_empty(), b.is_empty()) {
        (true, true) => Some(0.0),
        (true, false) | (false, true) => None,
        _ => Some(directed_p95(&a, &b, spacing).max(directed_p95(&b, &a, spacing))),
    })
}
