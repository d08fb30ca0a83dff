//! CPU kernels of multi-head self-attention over a fused qkv projection: rows of `3·H·d` (the
//! q, k and v blocks of `H·d` columns in that order, heads contiguous within each block), one
//! row per token, the tokens of each image consecutive. Images of a call may differ in length
//! (dinov2's global and local crops in one token matrix): each attends only to its own tokens.
//!
//! - [`inference`]: for each (image, head, block of [`ROW_BLOCK`] query rows) the scores go
//!   into a per-thread scratch block, are exponentiated in place and multiplied by v; the
//!   `[B, H, N, N]` probabilities never exist (90 MB per layer for RAD-DINO at 518).
//! - [`probabilities`], [`context`], [`backward`]: the training forward keeps the
//!   probabilities, and the backward of one (image, head) is five GEMMs and one row pass.
//!
//! [`Images`] says where each image's tokens and probabilities lie.
//!
//! Each task runs single-threaded GEMMs (`gemm` without inner parallelism) on strided views
//! of the qkv rows and writes its own columns of the output, which is laid out as the
//! following projection (or the qkv gradient) reads it: no permute copies.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::math::{softmax_exp_row, softmax_grad_row};

/// Query rows per task. gemm packs a head's keys (and, in the inference, its values) afresh
/// for every block, so fewer, taller blocks pack them less often: 256 rows took 7–12% off the
/// RAD-DINO attention against 64 rows (whose 350 kB of scores fit L2), and 512 rows at most
/// 1% more (docs/performance.md). The scratch is 256 × 1370 × 4 bytes ≈ 1.4 MB a thread.
pub(crate) const ROW_BLOCK: usize = 256;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The images of one attention call: where each one's tokens and probabilities start.
#[derive(Debug, Clone)]
pub(crate) struct Images {
    /// `(first token row, tokens, offset of its head-0 probabilities)` of each image.
    spans: Vec<(usize, usize, usize)>,
    /// Heads `H`.
    pub heads: usize,
    /// Head width `d`.
    pub d: usize,
}

impl Images {
    /// Images of `groups` `(images, tokens each)`, one group after another.
    pub fn new(groups: &[(usize, usize)], heads: usize, d: usize) -> Self {
        let (mut row, mut prob) = (0, 0);
        let mut spans = Vec::new();
        for &(b, n) in groups {
            for _ in 0..b {
                spans.push((row, n, prob));
                row += n;
                prob += heads * n * n;
            }
        }
        Self { spans, heads, d }
    }

    /// Token rows of all images.
    pub fn rows(&self) -> usize {
        self.spans.last().map_or(0, |&(r, n, _)| r + n)
    }

    /// Elements of all images' probabilities (`H · N²` each).
    pub fn prob_len(&self) -> usize {
        self.spans
            .last()
            .map_or(0, |&(_, n, p)| p + self.heads * n * n)
    }

    /// Width `H·d` of q, k, v and the context.
    fn width(&self) -> usize {
        self.heads * self.d
    }

    /// Width `3·H·d` of a qkv row.
    fn qkv_width(&self) -> usize {
        3 * self.width()
    }

    /// Every (image, head) pair, the tasks of the whole-sequence kernels.
    fn heads_of_images(&self) -> usize {
        self.spans.len() * self.heads
    }

    /// `(first row, tokens, offset of the probabilities)` of task `(image, head)`.
    fn task(&self, task: usize) -> (usize, usize, usize) {
        let (image, head) = (task / self.heads, task % self.heads);
        let (row, n, p) = self.spans[image];
        (row, n, p + head * n * n)
    }

    /// Offsets of the q, k and v columns of `task`'s head at its image's first token.
    fn qkv_offsets(&self, task: usize) -> [usize; 3] {
        let base = self.task(task).0 * self.qkv_width() + (task % self.heads) * self.d;
        [base, base + self.width(), base + 2 * self.width()]
    }

    /// Offset of `task`'s head columns at its image's first token in a `[rows, H·d]` context.
    fn context_offset(&self, task: usize) -> usize {
        self.task(task).0 * self.width() + (task % self.heads) * self.d
    }

    /// `(task, first query row, rows)` of every block of up to `ROW_BLOCK` query rows.
    fn row_blocks(&self) -> Vec<(usize, usize, usize)> {
        let mut blocks = Vec::new();
        for task in 0..self.heads_of_images() {
            let n = self.task(task).1;
            for r0 in (0..n).step_by(ROW_BLOCK) {
                blocks.push((task, r0, ROW_BLOCK.min(n - r0)));
            }
        }
        blocks
    }
}

/// A pointer shared by tasks that write disjoint regions of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes a region no other task touches (its image and head columns, or
// its rows), and the buffer outlives the parallel loop.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The element at `offset` (a method, so that closures capture the Send wrapper).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// A strided f32 matrix operand: element `(i, j)` at `ptr + i·row + j·col`.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    row: isize,
    col: isize,
}

impl View {
    /// A row-major matrix whose rows are `stride` elements apart.
    fn rows(ptr: *const f32, stride: usize) -> Self {
        Self {
            ptr,
            row: stride as isize,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows are `stride` elements apart.
    fn transposed(ptr: *const f32, stride: usize) -> Self {
        Self {
            ptr,
            row: 1,
            col: stride as isize,
        }
    }
}

/// `dst = a · b` (`a` m×k, `b` k×n) into a row-major `dst` with rows `dst_row` apart,
/// overwritten, on the calling thread.
///
/// # Safety
/// Every element the three views and `dst` address must lie inside live allocations, and no
/// other thread may touch the `dst` elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(dst: *mut f32, dst_row: usize, m: usize, n: usize, k: usize, a: View, b: View) {
    // SAFETY: the caller's contract above
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row as isize,
            false,
            a.ptr,
            a.col,
            a.row,
            b.ptr,
            b.col,
            b.row,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
}

/// The inference forward: the `[rows, H·d]` context of `softmax(scale · q kᵀ) v`.
pub(crate) fn inference(qkv: &[f32], images: &Images, scale: f32) -> Vec<f32> {
    let (c, width, d) = (images.qkv_width(), images.width(), images.d);
    let mut out = vec![0f32; images.rows() * width];
    let out_ptr = SharedMut(out.as_mut_ptr());
    images
        .row_blocks()
        .into_par_iter()
        .for_each(|(task, r0, rows)| {
            let n = images.task(task).1;
            let [q, k, v] = images.qkv_offsets(task);
            let dst = images.context_offset(task) + r0 * width;
            SCRATCH.with(|cell| {
                let mut scores = cell.borrow_mut();
                scores.resize(ROW_BLOCK * n, 0.0);
                let mut inv_sums = [0f32; ROW_BLOCK];
                // SAFETY: q rows r0..r0+rows and all k, v rows of this head's columns lie
                // inside `qkv`; the scores block holds rows × n; the output rows and columns
                // are this task's alone.
                unsafe {
                    gemm_into(
                        scores.as_mut_ptr(),
                        n,
                        rows,
                        n,
                        d,
                        View::rows(qkv[q + r0 * c..].as_ptr(), c),
                        View::transposed(qkv[k..].as_ptr(), c),
                    );
                    for (r, inv) in inv_sums.iter_mut().enumerate().take(rows) {
                        *inv = 1.0 / softmax_exp_row(&mut scores[r * n..(r + 1) * n], scale);
                    }
                    gemm_into(
                        out_ptr.at(dst),
                        width,
                        rows,
                        d,
                        n,
                        View::rows(scores.as_ptr(), n),
                        View::rows(qkv[v..].as_ptr(), c),
                    );
                    for (r, inv) in inv_sums.iter().enumerate().take(rows) {
                        let row = std::slice::from_raw_parts_mut(out_ptr.at(dst + r * width), d);
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                }
            });
        });
    out
}

/// The attention probabilities `softmax(scale · q kᵀ)`, `[H, N, N]` per image, one image
/// after another.
pub(crate) fn probabilities(qkv: &[f32], images: &Images, scale: f32) -> Vec<f32> {
    let (c, d) = (images.qkv_width(), images.d);
    let mut probs = vec![0f32; images.prob_len()];
    let probs_ptr = SharedMut(probs.as_mut_ptr());
    images
        .row_blocks()
        .into_par_iter()
        .for_each(|(task, r0, rows)| {
            let (_, n, p) = images.task(task);
            let [q, k, _] = images.qkv_offsets(task);
            // SAFETY: q rows r0..r0+rows and all k rows of this head's columns lie inside
            // `qkv`; the rows × n probabilities from row r0 are this task's alone.
            let block = unsafe {
                let dst = probs_ptr.at(p + r0 * n);
                gemm_into(
                    dst,
                    n,
                    rows,
                    n,
                    d,
                    View::rows(qkv[q + r0 * c..].as_ptr(), c),
                    View::transposed(qkv[k..].as_ptr(), c),
                );
                std::slice::from_raw_parts_mut(dst, rows * n)
            };
            for row in block.chunks_exact_mut(n) {
                let inv = 1.0 / softmax_exp_row(row, scale);
                row.iter_mut().for_each(|x| *x *= inv);
            }
        });
    probs
}

/// The `[rows, H·d]` context `P v` of the [`probabilities`] `probs`.
pub(crate) fn context(qkv: &[f32], probs: &[f32], images: &Images) -> Vec<f32> {
    let (c, width, d) = (images.qkv_width(), images.width(), images.d);
    let mut out = vec![0f32; images.rows() * width];
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..images.heads_of_images())
        .into_par_iter()
        .for_each(|task| {
            let (_, n, p) = images.task(task);
            let [_, _, v] = images.qkv_offsets(task);
            // SAFETY: this (image, head)'s n × n probabilities, n rows of its v columns, and
            // its own n × d context columns.
            unsafe {
                gemm_into(
                    out_ptr.at(images.context_offset(task)),
                    width,
                    n,
                    d,
                    n,
                    View::rows(probs[p..].as_ptr(), n),
                    View::rows(qkv[v..].as_ptr(), c),
                );
            }
        });
    out
}

/// The gradient `[rows, 3·H·d]` of the qkv projection from the context's gradient `dctx`
/// `[rows, H·d]`, per (image, head): `dV = Pᵀ dO`, `dP = dO Vᵀ`,
/// `dS = scale · P ⊙ (dP − Σⱼ P ⊙ dP)`, `dQ = dS K`, `dK = dSᵀ Q`.
pub(crate) fn backward(
    qkv: &[f32],
    probs: &[f32],
    dctx: &[f32],
    images: &Images,
    scale: f32,
) -> Vec<f32> {
    let (c, width, d) = (images.qkv_width(), images.width(), images.d);
    // every element is written: each (image, head) task writes its q, k and v columns
    let mut out = vec![0f32; images.rows() * c];
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..images.heads_of_images())
        .into_par_iter()
        .for_each(|task| {
            let (_, n, p) = images.task(task);
            let [q, k, v] = images.qkv_offsets(task);
            let p = &probs[p..p + n * n];
            let d_out = View::rows(dctx[images.context_offset(task)..].as_ptr(), width);
            SCRATCH.with(|cell| {
                let mut ds = cell.borrow_mut();
                ds.resize(n * n, 0.0);
                // SAFETY: the views address this (image, head)'s n × n probabilities, n rows of
                // its q, k, v and context-gradient columns, and the n × n scratch; the three
                // outputs are this task's own q, k and v columns of `out`.
                unsafe {
                    gemm_into(
                        out_ptr.at(v),
                        c,
                        n,
                        d,
                        n,
                        View::transposed(p.as_ptr(), n),
                        d_out,
                    );
                    gemm_into(
                        ds.as_mut_ptr(),
                        n,
                        n,
                        n,
                        d,
                        d_out,
                        View::transposed(qkv[v..].as_ptr(), c),
                    );
                    for (p_row, ds_row) in p.chunks_exact(n).zip(ds.chunks_exact_mut(n)) {
                        softmax_grad_row(p_row, ds_row, scale);
                    }
                    gemm_into(
                        out_ptr.at(q),
                        c,
                        n,
                        d,
                        n,
                        View::rows(ds.as_ptr(), n),
                        View::rows(qkv[k..].as_ptr(), c),
                    );
                    gemm_into(
                        out_ptr.at(k),
                        c,
                        n,
                        d,
                        n,
                        View::transposed(ds.as_ptr(), n),
                        View::rows(qkv[q..].as_ptr(), c),
                    );
                }
            });
        });
    out
}
