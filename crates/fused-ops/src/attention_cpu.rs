//! CPU kernels of multi-head self-attention over a fused qkv projection `[B, N, 3·H·d]` (the
//! q, k and v blocks of `H·d` columns in that order, heads contiguous within each block).
//!
//! - [`inference`]: for each (image, head, block of 64 query rows) the scores go into a
//!   cache-resident scratch block, are exponentiated in place and multiplied by v; the
//!   `[B, H, N, N]` probabilities never exist (90 MB per layer for RAD-DINO at 518).
//! - [`probabilities`], [`context`], [`backward`]: the training forward keeps the
//!   probabilities, and the backward of one (image, head) is five GEMMs and one row pass.
//!
//! Each task runs single-threaded GEMMs (`gemm` without inner parallelism) on strided views
//! of the qkv rows and writes its own columns of the output, which is laid out as the
//! following projection (or the qkv gradient) reads it: no permute copies.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::math::{softmax_exp_row, softmax_grad_row};

/// Query rows per inference task: 64 × 1370 scores × 4 bytes ≈ 350 kB stays in L2.
const ROW_BLOCK: usize = 64;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    /// Images `B`.
    pub b: usize,
    /// Tokens `N`.
    pub n: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Head width `d`.
    pub d: usize,
}

impl Dims {
    /// Width `H·d` of q, k, v and the context.
    fn width(&self) -> usize {
        self.heads * self.d
    }

    /// Width `3·H·d` of a qkv row.
    fn qkv_width(&self) -> usize {
        3 * self.width()
    }

    /// Offsets of `image`'s q, k and v columns of `head` in the qkv tensor.
    fn qkv_offsets(&self, image: usize, head: usize) -> [usize; 3] {
        let base = image * self.n * self.qkv_width() + head * self.d;
        [base, base + self.width(), base + 2 * self.width()]
    }

    /// Offset of `image`'s columns of `head` in a `[B, N, H·d]` context.
    fn context_offset(&self, image: usize, head: usize) -> usize {
        image * self.n * self.width() + head * self.d
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

/// The inference forward: the `[B, N, H·d]` context of `softmax(scale · q kᵀ) v`.
pub(crate) fn inference(qkv: &[f32], dims: Dims, scale: f32) -> Vec<f32> {
    let Dims { b, n, heads, d } = dims;
    let (c, width) = (dims.qkv_width(), dims.width());
    let mut out = vec![0f32; b * n * width];
    let out_ptr = SharedMut(out.as_mut_ptr());
    let blocks = n.div_ceil(ROW_BLOCK);
    (0..b * heads * blocks).into_par_iter().for_each(|task| {
        let image = task / (heads * blocks);
        let head = (task / blocks) % heads;
        let r0 = (task % blocks) * ROW_BLOCK;
        let rows = ROW_BLOCK.min(n - r0);
        let [q, k, v] = dims.qkv_offsets(image, head);
        let dst = dims.context_offset(image, head) + r0 * width;
        SCRATCH.with(|cell| {
            let mut scores = cell.borrow_mut();
            scores.resize(ROW_BLOCK * n, 0.0);
            let mut inv_sums = [0f32; ROW_BLOCK];
            // SAFETY: q rows r0..r0+rows and all k, v rows of this head's columns lie inside
            // `qkv`; the scores block holds rows × n; the output rows and columns are this
            // task's alone.
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

/// The `[B, H, N, N]` attention probabilities `softmax(scale · q kᵀ)`.
pub(crate) fn probabilities(qkv: &[f32], dims: Dims, scale: f32) -> Vec<f32> {
    let Dims { b, n, heads, d } = dims;
    let c = dims.qkv_width();
    let mut probs = vec![0f32; b * heads * n * n];
    probs
        .par_chunks_mut(n * n)
        .enumerate()
        .for_each(|(task, head_probs)| {
            let [q, k, _] = dims.qkv_offsets(task / heads, task % heads);
            head_probs
                .par_chunks_mut(ROW_BLOCK * n)
                .enumerate()
                .for_each(|(block_index, block)| {
                    let (r0, rows) = (block_index * ROW_BLOCK, block.len() / n);
                    // SAFETY: q rows r0..r0+rows and all k rows of this head's columns lie
                    // inside `qkv`; `block` is this task's rows × n.
                    unsafe {
                        gemm_into(
                            block.as_mut_ptr(),
                            n,
                            rows,
                            n,
                            d,
                            View::rows(qkv[q + r0 * c..].as_ptr(), c),
                            View::transposed(qkv[k..].as_ptr(), c),
                        );
                    }
                    for row in block.chunks_exact_mut(n) {
                        let inv = 1.0 / softmax_exp_row(row, scale);
                        row.iter_mut().for_each(|x| *x *= inv);
                    }
                });
        });
    probs
}

/// The `[B, N, H·d]` context `P v` of probabilities `probs` `[B, H, N, N]`.
pub(crate) fn context(qkv: &[f32], probs: &[f32], dims: Dims) -> Vec<f32> {
    let Dims { b, n, heads, d } = dims;
    let (c, width) = (dims.qkv_width(), dims.width());
    let mut out = vec![0f32; b * n * width];
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..b * heads).into_par_iter().for_each(|task| {
        let (image, head) = (task / heads, task % heads);
        let [_, _, v] = dims.qkv_offsets(image, head);
        // SAFETY: this (image, head)'s n × n probabilities, n rows of its v columns, and its
        // own n × d context columns.
        unsafe {
            gemm_into(
                out_ptr.at(dims.context_offset(image, head)),
                width,
                n,
                d,
                n,
                View::rows(probs[task * n * n..].as_ptr(), n),
                View::rows(qkv[v..].as_ptr(), c),
            );
        }
    });
    out
}

/// The gradient `[B, N, 3·H·d]` of the qkv projection from the context's gradient `dctx`
/// `[B, N, H·d]`, per (image, head): `dV = Pᵀ dO`, `dP = dO Vᵀ`,
/// `dS = scale · P ⊙ (dP − Σⱼ P ⊙ dP)`, `dQ = dS K`, `dK = dSᵀ Q`.
pub(crate) fn backward(
    qkv: &[f32],
    probs: &[f32],
    dctx: &[f32],
    dims: Dims,
    scale: f32,
) -> Vec<f32> {
    let Dims { b, n, heads, d } = dims;
    let (c, width) = (dims.qkv_width(), dims.width());
    // every element is written: each (image, head) task writes its q, k and v columns
    let mut out = vec![0f32; b * n * c];
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..b * heads).into_par_iter().for_each(|task| {
        let (image, head) = (task / heads, task % heads);
        let [q, k, v] = dims.qkv_offsets(image, head);
        let p = &probs[task * n * n..(task + 1) * n * n];
        let d_out = View::rows(dctx[dims.context_offset(image, head)..].as_ptr(), width);
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
