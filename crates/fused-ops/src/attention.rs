//! Fused multi-head self-attention for inference: `softmax(q kᵀ · scale) v` per head, read
//! straight from the qkv projection (`[B, N, 3·H·d]`, bias added on the fly) and written as the
//! `[B, N, H·d]` context the output projection reads. On CUDA a flash-attention-style kernel
//! (`attention.cu`) streams key tiles through shared memory, so the `[B, H, N, N]` scores and
//! the permute copies of the composed form never exist.
//!
//! Inference only: the op has no backward, and asking for one is an error rather than a
//! silently missing gradient (training takes the composed, differentiable path).

use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::storage::{narrowed, widened};

/// Multi-head attention over a fused qkv projection (`CustomOp2` on `qkv` `[B, N, 3·H·d]` and
/// its bias `[3·H·d]`), f32 or bf16. Scores and softmax statistics are kept in f32.
#[derive(Debug, Clone, Copy)]
pub struct FusedAttention {
    /// Number of heads `H`.
    pub heads: usize,
    /// Scale of the scores, `d^-1/2` for standard attention.
    pub scale: f32,
    /// The CUDA kernel a bf16 input runs on (ignored on the CPU and for f32).
    pub bf16_kernel: Bf16Kernel,
}

/// The CUDA kernels bf16 attention can run on. They compute the same thing; the choice is for
/// speed comparisons (`gpu_suite`) and as a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bf16Kernel {
    /// `mma.sync` m16n8k16 with `ldmatrix` fragment loads; scores, probabilities and output
    /// stay in registers (flash-attention-2 style), k/v tiles double-buffered with `cp.async`;
    /// 8 warps, 128 query rows a block (the default: fastest measured on the H200).
    Mma128,
    /// The same with 4 warps and 64 query rows a block.
    Mma,
    /// WMMA 16×16×16 fragments with the softmax in shared memory (the first bf16 kernel).
    Wmma,
}

impl Bf16Kernel {
    /// Every kernel, the default first.
    pub const ALL: [Self; 3] = [Self::Mma128, Self::Mma, Self::Wmma];

    /// Short name, as `gpu_suite --bf16-attention` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mma => "mma",
            Self::Mma128 => "mma128",
            Self::Wmma => "wmma",
        }
    }

    /// The kernel called `name` (see [`Bf16Kernel::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

static BF16_KERNEL: AtomicU8 = AtomicU8::new(0);

/// Chooses the CUDA kernel of later bf16 [`attention`] calls in this process (default
/// [`Bf16Kernel::Mma128`]).
pub fn set_bf16_kernel(kernel: Bf16Kernel) {
    let i = Bf16Kernel::ALL
        .iter()
        .position(|k| *k == kernel)
        .unwrap_or(0);
    BF16_KERNEL.store(i as u8, Ordering::Relaxed);
}

/// The CUDA kernel bf16 [`attention`] runs on now.
pub fn bf16_kernel() -> Bf16Kernel {
    Bf16Kernel::ALL[BF16_KERNEL.load(Ordering::Relaxed) as usize % Bf16Kernel::ALL.len()]
}

/// The head dim the CUDA kernels are built for (every DINOv2 / RAD-DINO size uses 64).
pub const CUDA_HEAD_DIM: usize = 64;

/// Whether this build's CUDA kernel handles `dtype`: f32 always, bf16 when the kernels were
/// compiled for compute capability 8.0 or later (`CUDA_COMPUTE_CAP`; bf16 `mma` and WMMA
/// fragments need sm_80).
pub fn cuda_supports(dtype: candle_core::DType) -> bool {
    dtype == candle_core::DType::F32 || (dtype == candle_core::DType::BF16 && BF16_WMMA)
}

/// Set by build.rs when the kernels are compiled for sm_80 or later.
const BF16_WMMA: bool = cfg!(bf16_wmma);

/// Multi-head self-attention of a fused qkv projection `[B, N, 3·H·d]` (the `q`, `k`, `v`
/// blocks of `H·d` in that order, as `Tensor::cat` of the three projections gives) plus an
/// optional bias `[3·H·d]`; returns the context `[B, N, H·d]`. No backward (see the module
/// docs).
pub fn attention(qkv: &Tensor, bias: Option<&Tensor>, heads: usize, scale: f64) -> Result<Tensor> {
    let (_, _, width) = qkv.dims3()?;
    if heads == 0 || width % (3 * heads) != 0 {
        bail!("fused attention: qkv width {width} is not 3 × {heads} heads × head dim");
    }
    let bias = match bias {
        Some(b) => b.to_dtype(qkv.dtype())?.flatten_all()?.contiguous()?,
        None => Tensor::zeros(width, qkv.dtype(), qkv.device())?,
    };
    if bias.elem_count() != width {
        bail!(
            "fused attention: bias has {} elements, qkv width is {width}",
            bias.elem_count()
        );
    }
    // the CUDA kernels read 16-byte chunks: a view that starts mid-chunk is copied first
    let qkv = if qkv.is_contiguous() && qkv.layout().start_offset() % 8 == 0 {
        qkv.clone()
    } else {
        qkv.force_contiguous()?
    };
    qkv.apply_op2(
        &bias,
        FusedAttention {
            heads,
            scale: scale as f32,
            bf16_kernel: bf16_kernel(),
        },
    )
}

fn dims(l: &Layout, heads: usize) -> Result<(usize, usize, usize)> {
    match l.dims() {
        [b, n, w] if heads > 0 && w % (3 * heads) == 0 => Ok((*b, *n, w / (3 * heads))),
        d => bail!("fused attention: qkv must be [B, N, 3·{heads}·d], got {d:?}"),
    }
}

impl CustomOp2 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, n, hd) = dims(l1, self.heads)?;
        let h = self.heads;
        let qkv = widened(s1, l1, "qkv", self.name())?;
        let bias = widened(s2, l2, "bias", self.name())?;
        if bias.len() != 3 * h * hd {
            bail!(
                "fused attention: bias has {} elements, expected {}",
                bias.len(),
                3 * h * hd
            );
        }
        let width = 3 * h * hd;
        let at = |bi: usize, t: usize, which: usize, head: usize, e: usize| {
            let j = which * h * hd + head * hd + e;
            qkv[(bi * n + t) * width + j] + bias[j]
        };
        // one task per (sample, head, query): scores in f64, the reference the kernels meet
        let mut out = vec![0f32; b * n * h * hd];
        out.par_chunks_mut(hd).enumerate().for_each(|(idx, o)| {
            let (bi, t, head) = (idx / (n * h), (idx / h) % n, idx % h);
            let q: Vec<f64> = (0..hd).map(|e| at(bi, t, 0, head, e) as f64).collect();
            let s: Vec<f64> = (0..n)
                .map(|k| {
                    (0..hd)
                        .map(|e| q[e] * at(bi, k, 1, head, e) as f64)
                        .sum::<f64>()
                        * self.scale as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = p.iter().sum();
            for (e, oe) in o.iter_mut().enumerate() {
                let acc: f64 = (0..n).map(|k| p[k] * at(bi, k, 2, head, e) as f64).sum();
                *oe = (acc / z) as f32;
            }
        });
        Ok((narrowed(out, s1.dtype()), Shape::from((b, n, h * hd))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (b, n, hd) = dims(l1, self.heads)?;
        if hd != CUDA_HEAD_DIM {
            bail!("fused attention on CUDA needs head dim {CUDA_HEAD_DIM}, got {hd}");
        }
        if !(self.scale > 0.0 && self.scale.is_finite()) {
            // the kernels take row maxima of the unscaled scores
            bail!(
                "fused attention on CUDA needs a positive finite scale, got {}",
                self.scale
            );
        }
        if !cuda_supports(s1.dtype()) {
            bail!(
                "fused attention on CUDA: {:?} needs kernels built for compute capability 8.0+ \
                 (CUDA_COMPUTE_CAP)",
                s1.dtype()
            );
        }
        let out = crate::cuda::attention((s1, l1), (s2, l2), b, n, self, self.bf16_kernel)?;
        Ok((out, Shape::from((b, n, self.heads * hd))))
    }
}
