//! Fused multi-head attention for CPU inference.
//!
//! A straightforward candle ViT materialises the `[B, H, N, N]` scores (90 MB per layer for
//! RAD-DINO at 518), allocates them several times and runs a scalar `exp` over them. Here one
//! custom op reads q, k and v straight out of the fused qkv projection `[B, N, 3·H·d]`, and for
//! each (image, head, block of 64 query rows) computes the scores into a cache-resident scratch
//! row block, applies a vectorised softmax and multiplies by v, writing the context directly in
//! `[B, N, H·d]` layout. There is no backward: training uses the differentiable path, and
//! `tests` hold the two equal.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use fused_ops::math::exp_nonpositive;

/// Query rows per task: 64 × 1370 scores × 4 bytes ≈ 350 kB stays in L2.
const ROW_BLOCK: usize = 64;

/// The fused attention op over a `[B, N, 3·H·d]` qkv tensor (q, k, v blocks in that order,
/// heads contiguous within each), giving `[B, N, H·d]`.
#[derive(Debug, Clone, Copy)]
pub struct FusedAttention {
    /// Number of heads `H`.
    pub heads: usize,
    /// Width `d` of one head.
    pub head_dim: usize,
    /// Multiplier of the scores before the softmax (`d^-1/2`).
    pub scale: f32,
}

impl FusedAttention {
    /// Applies the op to `qkv`.
    pub fn apply(&self, qkv: &Tensor) -> Result<Tensor> {
        qkv.apply_op1_no_bwd(self)
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A pointer that may be shared by tasks writing disjoint regions.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes a region of the output no other task touches (distinct image,
// head columns or row block), and the buffer outlives the parallel loop.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    // a method, so closures capture the whole (Send) wrapper rather than the raw field
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

impl CustomOp1 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused attention supports f32 tensors only");
        };
        let (b, n, c) = layout.shape().dims3()?;
        let (h, d) = (self.heads, self.head_dim);
        if c != 3 * h * d {
            candle_core::bail!("fused attention: qkv width {c} is not 3 x {h} heads x {d}");
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fused attention needs a contiguous qkv tensor");
        };
        let qkv = &data[start..end];
        let out_width = h * d;
        let mut out = vec![0f32; b * n * out_width];
        let out_ptr = SharedMut(out.as_mut_ptr());
        let blocks = n.div_ceil(ROW_BLOCK);
        let scale = self.scale;
        (0..b * h * blocks).into_par_iter().for_each(|task| {
            let image = task / (h * blocks);
            let head = (task / blocks) % h;
            let r0 = (task % blocks) * ROW_BLOCK;
            let rows = ROW_BLOCK.min(n - r0);
            let base = image * n * c;
            let q = &qkv[base + r0 * c + head * d..];
            let k = &qkv[base + out_width + head * d..];
            let v = &qkv[base + 2 * out_width + head * d..];
            let out_offset = image * n * out_width + r0 * out_width + head * d;
            SCRATCH.with(|cell| {
                let mut scores = cell.borrow_mut();
                scores.resize(ROW_BLOCK * n, 0.0);
                // SAFETY: all pointer ranges stay inside `qkv`, `scores` and `out`:
                // q rows r0..r0+rows, k and v rows 0..n, columns head*d..head*d+d of their
                // block, scores rows x n, and the output rows/columns of this task only.
                unsafe {
                    gemm::gemm(
                        rows,
                        n,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        q.as_ptr(),
                        1,
                        c as isize,
                        k.as_ptr(),
                        c as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                let mut inv_sums = [0f32; ROW_BLOCK];
                for (r, inv) in inv_sums.iter_mut().enumerate().take(rows) {
                    let row = &mut scores[r * n..(r + 1) * n];
                    *inv = 1.0 / exp_normalise(row, scale);
                }
                unsafe {
                    gemm::gemm(
                        rows,
                        d,
                        n,
                        out_ptr.ptr().add(out_offset),
                        1,
                        out_width as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        n as isize,
                        v.as_ptr(),
                        1,
                        c as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                    for (r, inv) in inv_sums.iter().enumerate().take(rows) {
                        let row = std::slice::from_raw_parts_mut(
                            out_ptr.ptr().add(out_offset + r * out_width),
                            d,
                        );
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                }
            });
        });
        Ok((CpuStorage::F32(out), Shape::from((b, n, out_width))))
    }
}

fused_ops::simd_kernel! {
    /// Replaces `row` by `exp(scale · (row − max row))` and returns its sum.
    fn exp_normalise(row: &mut [f32], scale: f32) -> f32 {
        exp_normalise_portable(row, scale)
    }
}

const LANES: usize = 16;

/// Written so that LLVM vectorises it: fixed-width lane accumulators, no branches.
#[inline(always)]
fn exp_normalise_portable(row: &mut [f32], scale: f32) -> f32 {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in maxes.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    max = maxes.iter().fold(max, |a, &b| a.max(b));
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in sums.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_nonpositive((*x - max) * scale);
            *s += *x;
        }
    }
    let mut sum = 0.0;
    for x in chunks.into_remainder() {
        *x = exp_nonpositive((*x - max) * scale);
        sum += *x;
    }
    sum + sums.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The unfused reference: scores, softmax, weighted sum, in candle ops.
    fn reference(qkv: &Tensor, h: usize, d: usize, scale: f64) -> Tensor {
        let (b, n, _) = qkv.dims3().unwrap();
        let t = qkv
            .reshape((b, n, 3, h, d))
            .unwrap()
            .permute((2, 0, 3, 1, 4))
            .unwrap();
        let q = (t.get(0).unwrap() * scale).unwrap().contiguous().unwrap();
        let k = t.get(1).unwrap().contiguous().unwrap();
        let v = t.get(2).unwrap().contiguous().unwrap();
        let s = q.matmul(&k.t().unwrap()).unwrap();
        let p = cxr_core::ops::softmax_last_dim(&s).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, n, h * d))
            .unwrap()
    }

    #[test]
    fn matches_the_unfused_computation() {
        for (b, n, h, d) in [(1, 5, 1, 4), (2, 70, 3, 16), (1, 130, 2, 64)] {
            let qkv =
                (Tensor::randn(0f32, 1.0, (b, n, 3 * h * d), &Device::Cpu).unwrap() * 2.0).unwrap();
            let scale = (d as f64).powf(-0.5);
            let op = FusedAttention {
                heads: h,
                head_dim: d,
                scale: scale as f32,
            };
            let got = op.apply(&qkv).unwrap();
            let want = reference(&qkv, h, d, scale);
            let diff = cxr_core::ops::max_abs_diff(&got, &want).unwrap();
            assert!(diff < 1e-5, "({b},{n},{h},{d}): {diff}");
        }
    }

    #[test]
    fn rejects_wrong_widths_and_dtypes() {
        let op = FusedAttention {
            heads: 2,
            head_dim: 4,
            scale: 0.5,
        };
        let bad = Tensor::zeros((1, 3, 23), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(op.apply(&bad).is_err());
        let half = Tensor::zeros((1, 3, 24), candle_core::DType::F16, &Device::Cpu).unwrap();
        assert!(op.apply(&half).is_err());
    }
}
