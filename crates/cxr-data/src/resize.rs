//! Pillow's 8-bit convolution resampling (`Image.resize` with BILINEAR or BICUBIC), bit-exact.
//!
//! Pillow (`libImaging/Resample.c`) resizes separably: per output pixel it evaluates the
//! filter, widened by the downscale factor (`support * max(scale, 1)`), over the input pixels
//! whose centres fall in the window; normalises the weights to sum 1; converts them to fixed
//! point with 22 fractional bits (rounding half away from zero); accumulates `u8 * weight`
//! in 32-bit integers starting from half an LSB; and clips `acc >> 22` to `0..=255`. The
//! horizontal pass runs first, only over the rows the vertical pass will read, into an 8-bit
//! intermediate, except that Pillow 13 runs the vertical pass first when the height shrinks by
//! more than twice as many pixels as the width (`H - h > 2 (W - w)`, `H > h`); Pillow 12 and
//! older always go horizontal first ([`PassOrder`]). Reproducing those steps, and their order,
//! is what makes outputs equal to Pillow's to the last bit, which HF's PIL-backed processors
//! need.

use crate::{Error, Result};

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A Pillow resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// `Image.BILINEAR` (triangle, support 1).
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic with a = -0.5, support 2).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

impl From<cxr_core::Resample> for Filter {
    fn from(r: cxr_core::Resample) -> Self {
        match r {
            cxr_core::Resample::Bilinear => Filter::Bilinear,
            _ => Filter::Bicubic,
        }
    }
}

/// Fixed-point weights of one axis: per output index, the first input index and its weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero; Rust's `as` does the same.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..xx * ksize + n];
        for (dst, &w) in row.iter_mut().zip(&k[..n]) {
            let w = if ww != 0.0 { w / ww } else { w };
            let f = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if f < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Which pass Pillow runs first; the two orders differ by rounding of the 8-bit intermediate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassOrder {
    /// Pillow ≥ 13: vertical first when `H - h > 2 (W - w)` and `H > h`, else horizontal.
    #[default]
    Pillow13,
    /// Pillow ≤ 12: always horizontal first.
    HorizontalFirst,
}

/// A crop box `(left, upper, right, lower)` in input pixel coordinates, as Pillow's `box`.
pub type BoxF = [f64; 4];

/// Resizes an 8-bit single-channel `src` (`w × h`, row-major) to `out_w × out_h` exactly as
/// `Image.resize((out_w, out_h), filter, box)` does on an `L` image. `box = None` is the whole
/// image.
pub fn resize_u8(
    src: &[u8],
    size: (usize, usize),
    out: (usize, usize),
    filter: Filter,
    bbox: Option<BoxF>,
) -> Result<Vec<u8>> {
    resize_u8_with(src, size, out, filter, bbox, PassOrder::default())
}

/// [`resize_u8`] with an explicit [`PassOrder`].
pub fn resize_u8_with(
    src: &[u8],
    (w, h): (usize, usize),
    (out_w, out_h): (usize, usize),
    filter: Filter,
    bbox: Option<BoxF>,
    order: PassOrder,
) -> Result<Vec<u8>> {
    if w == 0 || h == 0 || out_w == 0 || out_h == 0 || src.len() != w * h {
        return Err(Error::Invalid(format!(
            "resize of a {w}x{h} image ({} bytes) to {out_w}x{out_h}",
            src.len()
        )));
    }
    let b = bbox.unwrap_or([0.0, 0.0, w as f64, h as f64]);
    if !(b[0] >= 0.0
        && b[1] >= 0.0
        && b[2] <= w as f64
        && b[3] <= h as f64
        && b[2] > b[0]
        && b[3] > b[1])
    {
        return Err(Error::Invalid(format!(
            "resize box {b:?} outside a {w}x{h} image"
        )));
    }
    // Pillow returns a copy when nothing changes.
    let need_h = out_w != w || b[0] != 0.0 || b[2] != out_w as f64;
    let need_v = out_h != h || b[1] != 0.0 || b[3] != out_h as f64;
    let ch = precompute(w, b[0], b[2], out_w, filter);
    let cv = precompute(h, b[1], b[3], out_h, filter);

    let vertical_first = order == PassOrder::Pillow13
        && h > out_h
        && (h as i64 - out_h as i64) > (w as i64 - out_w as i64) * 2;
    if vertical_first {
        let mid = if need_v {
            vertical(src, w, &cv, 0, out_h)
        } else {
            src.to_vec()
        };
        let mid_rows = if need_v { out_h } else { h };
        return Ok(if need_h {
            horizontal(&mid, w, &ch, 0, mid_rows, out_w)
        } else {
            mid
        });
    }
    let (tmp, tmp_w, row0) = if need_h {
        let first = cv.bounds[0].0;
        let (lmin, ln) = cv.bounds[out_h - 1];
        let rows = (lmin + ln).saturating_sub(first);
        (horizontal(src, w, &ch, first, rows, out_w), out_w, first)
    } else {
        (src.to_vec(), w, 0)
    };
    if !need_v {
        return Ok(tmp);
    }
    Ok(vertical(&tmp, tmp_w, &cv, row0, out_h))
}

/// Horizontal pass over `rows` rows of `src` (width `w`) starting at row `first`.
fn horizontal(
    src: &[u8],
    w: usize,
    ch: &Coeffs,
    first: usize,
    rows: usize,
    out_w: usize,
) -> Vec<u8> {
    // Fixed-length kernels (unrolled at compile time) for the usual sizes; the result is
    // the same integer sum, since the padding taps have weight 0.
    match ch.ksize {
        5 => horizontal_fixed::<5>(src, w, ch, first, rows, out_w),
        7 => horizontal_fixed::<7>(src, w, ch, first, rows, out_w),
        9 => horizontal_fixed::<9>(src, w, ch, first, rows, out_w),
        11 => horizontal_fixed::<11>(src, w, ch, first, rows, out_w),
        13 => horizontal_fixed::<13>(src, w, ch, first, rows, out_w),
        // bicubic from ~2–3k-pixel films down to 518 (e.g. 1841 → 518 gives 17)
        15 => horizontal_fixed::<15>(src, w, ch, first, rows, out_w),
        17 => horizontal_fixed::<17>(src, w, ch, first, rows, out_w),
        19 => horizontal_fixed::<19>(src, w, ch, first, rows, out_w),
        21 => horizontal_fixed::<21>(src, w, ch, first, rows, out_w),
        23 => horizontal_fixed::<23>(src, w, ch, first, rows, out_w),
        25 => horizontal_fixed::<25>(src, w, ch, first, rows, out_w),
        _ => None,
    }
    .unwrap_or_else(|| horizontal_any(src, w, ch, first, rows, out_w))
}

/// [`horizontal`] with every kernel widened to `K` taps inside the row: windows that would
/// run past the right edge start earlier, with their weights shifted and zeros around them.
/// `None` when a row is narrower than `K`.
fn horizontal_fixed<const K: usize>(
    src: &[u8],
    w: usize,
    ch: &Coeffs,
    first: usize,
    rows: usize,
    out_w: usize,
) -> Option<Vec<u8>> {
    if w < K {
        return None;
    }
    let mut starts = Vec::with_capacity(out_w);
    let mut weights = vec![[0i32; K]; out_w];
    for (xx, kw) in weights.iter_mut().enumerate() {
        let (xmin, n) = ch.bounds[xx];
        let start = xmin.min(w - K);
        let off = xmin - start;
        kw[off..off + n].copy_from_slice(&ch.weights[xx * ch.ksize..xx * ch.ksize + n]);
        starts.push(start);
    }
    let mut tmp = vec![0u8; rows * out_w];
    for y in 0..rows {
        let line = &src[(y + first) * w..(y + first + 1) * w];
        let out = &mut tmp[y * out_w..(y + 1) * out_w];
        for ((o, &start), kw) in out.iter_mut().zip(&starts).zip(&weights) {
            let px: &[u8; K] = line[start..start + K].try_into().ok()?;
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for j in 0..K {
                acc = acc.wrapping_add(i32::from(px[j]).wrapping_mul(kw[j]));
            }
            *o = clip8(acc);
        }
    }
    Some(tmp)
}

/// [`horizontal`] for any kernel length.
fn horizontal_any(
    src: &[u8],
    w: usize,
    ch: &Coeffs,
    first: usize,
    rows: usize,
    out_w: usize,
) -> Vec<u8> {
    let mut tmp = vec![0u8; rows * out_w];
    for y in 0..rows {
        let line = &src[(y + first) * w..(y + first + 1) * w];
        let out = &mut tmp[y * out_w..(y + 1) * out_w];
        for (xx, o) in out.iter_mut().enumerate() {
            let (xmin, n) = ch.bounds[xx];
            let k = &ch.weights[xx * ch.ksize..xx * ch.ksize + n];
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for (&p, &kw) in line[xmin..xmin + n].iter().zip(k) {
                acc = acc.wrapping_add(i32::from(p).wrapping_mul(kw));
            }
            *o = clip8(acc);
        }
    }
    tmp
}

/// Vertical pass over `src` (width `w`) whose row 0 is input row `row0`.
fn vertical(src: &[u8], w: usize, cv: &Coeffs, row0: usize, out_h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * out_h];
    let mut acc_row = vec![0i32; w];
    for yy in 0..out_h {
        let (ymin, n) = cv.bounds[yy];
        let ymin = ymin - row0;
        let k = &cv.weights[yy * cv.ksize..yy * cv.ksize + n];
        acc_row.fill(1 << (PRECISION_BITS - 1));
        for (y, &kw) in k.iter().enumerate() {
            let line = &src[(ymin + y) * w..(ymin + y + 1) * w];
            for (a, &p) in acc_row.iter_mut().zip(line) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(kw));
            }
        }
        for (o, &a) in out[yy * w..(yy + 1) * w].iter_mut().zip(&acc_row) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let src: Vec<u8> = (0..12).collect();
        assert_eq!(
            resize_u8(&src, (4, 3), (4, 3), Filter::Bicubic, None).unwrap(),
            src
        );
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 37 * 23];
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            let out = resize_u8(&src, (37, 23), (11, 50), filter, None).unwrap();
            assert!(out.iter().all(|&v| v == 200), "{filter:?}");
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        let c = precompute(100, 0.0, 100.0, 7, Filter::Bicubic);
        for (i, &(_, n)) in c.bounds.iter().enumerate() {
            let s: i64 = c.weights[i * c.ksize..i * c.ksize + n]
                .iter()
                .map(|&w| i64::from(w))
                .sum();
            assert!((s - (1 << PRECISION_BITS)).abs() <= n as i64, "{s}");
        }
    }

    #[test]
    fn fixed_kernels_equal_the_general_loop() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for (w, out_w, filter) in [
            (1024, 518, Filter::Bicubic),
            (1841, 518, Filter::Bicubic),
            (3000, 518, Filter::Bicubic),
            (300, 100, Filter::Bilinear),
            (97, 40, Filter::Bicubic),
            (12, 5, Filter::Bicubic),
            (40, 97, Filter::Bicubic),
        ] {
            let rows = 3;
            let src: Vec<u8> = (0..w * rows)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let c = precompute(w, 0.0, w as f64, out_w, filter);
            assert_eq!(
                horizontal(&src, w, &c, 0, rows, out_w),
                horizontal_any(&src, w, &c, 0, rows, out_w),
                "{w} -> {out_w} {filter:?} (ksize {})",
                c.ksize
            );
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(resize_u8(&[0; 4], (2, 2), (0, 1), Filter::Bicubic, None).is_err());
        assert!(resize_u8(&[0; 3], (2, 2), (1, 1), Filter::Bicubic, None).is_err());
        assert!(resize_u8(
            &[0; 4],
            (2, 2),
            (1, 1),
            Filter::Bicubic,
            Some([0.0, 0.0, 3.0, 2.0])
        )
        .is_err());
    }
}
