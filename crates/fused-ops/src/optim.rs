//! In-place optimizer updates: AdamW's moments and parameter step (`torch.optim.AdamW`'s
//! single-tensor formulas) and the EMA teacher update, one pass over each tensor with no
//! temporaries. The composed candle form launches about a dozen element-wise kernels per
//! parameter and allocates a tensor for each; for a ViT-B student this made the optimizer
//! phase of a DINOv2 step on the GPU take ~100 ms.
//!
//! Every operand must be contiguous, of one dtype (f32 or bf16, arithmetic in f32) and of one
//! element count; [`supports`] says whether a set of tensors qualifies, so callers can keep a
//! composed fallback for the rest.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, DType, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result, Tensor,
};
use rayon::prelude::*;

use crate::storage::contiguous;

/// Hyper-parameters of one AdamW step of one tensor, PyTorch's names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate of this tensor.
    pub lr: f64,
    /// Decoupled weight decay of this tensor.
    pub weight_decay: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε of the denominator.
    pub eps: f64,
    /// Step count after this step (1 at the first), for the bias corrections.
    pub step: u64,
}

/// The element-wise updates, with their constants in f32.
#[derive(Debug, Clone, Copy)]
enum Update {
    /// `m ← m + c0 · (g − m)` (torch's `lerp_`, c0 = 1 − β₁).
    FirstMoment { c0: f32 },
    /// `v ← c0 · v + c1 · g²` (c0 = β₂, c1 = 1 − β₂).
    SecondMoment { c0: f32, c1: f32 },
    /// `t ← c0 · t + c1 · s` (c0 = μ, c1 = 1 − μ).
    Ema { c0: f32, c1: f32 },
    /// `p ← p · decay − step_size · m / (√v / bias2_sqrt + eps)`.
    Param {
        decay: f32,
        step_size: f32,
        bias2_sqrt: f32,
        eps: f32,
    },
}

impl Update {
    /// The new value of `d` given the operands `a` (gradient, student or first moment) and
    /// `b` (second moment; unused by the two-operand updates). The CUDA kernel
    /// (`optim_update` in kernels.cu) computes the same expressions in the same order.
    #[inline]
    fn apply(self, d: f32, a: f32, b: f32) -> f32 {
        match self {
            Self::FirstMoment { c0 } => first_moment(d, a, c0),
            Self::SecondMoment { c0, c1 } => second_moment(d, a, c0, c1),
            Self::Ema { c0, c1 } => ema(d, a, c0, c1),
            Self::Param {
                decay,
                step_size,
                bias2_sqrt,
                eps,
            } => param_step(d, a, b, decay, step_size, bias2_sqrt, eps),
        }
    }

    /// `(kind, c0, c1, c2, c3)` as the CUDA kernel takes them.
    #[cfg(feature = "cuda")]
    fn kernel_args(self) -> (i32, [f32; 4]) {
        match self {
            Self::FirstMoment { c0 } => (0, [c0, 0.0, 0.0, 0.0]),
            Self::SecondMoment { c0, c1 } => (1, [c0, c1, 0.0, 0.0]),
            Self::Ema { c0, c1 } => (2, [c0, c1, 0.0, 0.0]),
            Self::Param {
                decay,
                step_size,
                bias2_sqrt,
                eps,
            } => (3, [decay, step_size, bias2_sqrt, eps]),
        }
    }

    fn cpu(
        self,
        dst: &mut CpuStorage,
        dl: &Layout,
        a: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<()> {
        const OP: &str = "optimizer update";
        let (d0, d1) = contiguous(dl, "destination", OP)?;
        let (a0, a1) = contiguous(a.1, "operand", OP)?;
        let b_range = match b {
            Some((_, l)) => contiguous(l, "second operand", OP)?,
            None => (a0, a1),
        };
        if a1 - a0 != d1 - d0 || b_range.1 - b_range.0 != d1 - d0 {
            bail!(
                "{OP}: operands of {} and {} elements for {}",
                a1 - a0,
                b_range.1 - b_range.0,
                d1 - d0
            );
        }
        let b_storage = b.map_or(a.0, |(s, _)| s);
        const CHUNK: usize = 1 << 14;
        match (dst, a.0, b_storage) {
            (CpuStorage::F32(d), CpuStorage::F32(x), CpuStorage::F32(y)) => {
                let (x, y) = (&x[a0..a1], &y[b_range.0..b_range.1]);
                d[d0..d1]
                    .par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(c, ds)| {
                        let o = c * CHUNK..c * CHUNK + ds.len();
                        update_slice(self, ds, &x[o.clone()], &y[o]);
                    });
            }
            (CpuStorage::BF16(d), CpuStorage::BF16(x), CpuStorage::BF16(y)) => {
                let (x, y) = (&x[a0..a1], &y[b_range.0..b_range.1]);
                d[d0..d1]
                    .par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(c, ds)| {
                        let o = c * CHUNK;
                        for (i, v) in ds.iter_mut().enumerate() {
                            let r = self.apply(v.to_f32(), x[o + i].to_f32(), y[o + i].to_f32());
                            *v = half::bf16::from_f32(r);
                        }
                    });
            }
            (d, x, y) => bail!(
                "{OP}: f32 or bf16 operands of one dtype, got {:?}, {:?}, {:?}",
                d.dtype(),
                x.dtype(),
                y.dtype()
            ),
        }
        Ok(())
    }
}

crate::simd_kernel! {
    /// `d[i] = u.apply(d[i], a[i], b[i])` with the `match` outside the loops, so that each
    /// loop vectorises (a `match` per element kept the AdamW update scalar).
    fn update_slice(u: Update, d: &mut [f32], a: &[f32], b: &[f32]) {
        match u {
            Update::FirstMoment { c0 } => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d = first_moment(*d, a, c0);
                }
            }
            Update::SecondMoment { c0, c1 } => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d = second_moment(*d, a, c0, c1);
                }
            }
            Update::Ema { c0, c1 } => {
                for (d, &a) in d.iter_mut().zip(a) {
                    *d = ema(*d, a, c0, c1);
                }
            }
            Update::Param { decay, step_size, bias2_sqrt, eps } => {
                for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
                    *d = param_step(*d, a, b, decay, step_size, bias2_sqrt, eps);
                }
            }
        }
    }
}

/// `m + c0 · (g − m)`.
#[inline(always)]
fn first_moment(m: f32, g: f32, c0: f32) -> f32 {
    m + c0 * (g - m)
}

/// `c0 · v + c1 · g²`.
#[inline(always)]
fn second_moment(v: f32, g: f32, c0: f32, c1: f32) -> f32 {
    c0 * v + c1 * (g * g)
}

/// `c0 · t + c1 · s`.
#[inline(always)]
fn ema(t: f32, s: f32, c0: f32, c1: f32) -> f32 {
    c0 * t + c1 * s
}

/// `p · decay − step_size · m / (√v / bias2_sqrt + eps)`.
#[inline(always)]
fn param_step(
    p: f32,
    m: f32,
    v: f32,
    decay: f32,
    step_size: f32,
    bias2_sqrt: f32,
    eps: f32,
) -> f32 {
    p * decay - step_size * (m / (v.sqrt() / bias2_sqrt + eps))
}

impl InplaceOp2 for Update {
    fn name(&self) -> &'static str {
        "optimizer-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        self.cpu(s1, l1, (s2, l2), None)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (kind, c) = self.kernel_args();
        crate::cuda::optim_update((s1, l1), (s2, l2), (s2, l2), kind, c)
    }
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "optimizer-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        self.cpu(s1, l1, (s2, l2), Some((s3, l3)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (kind, c) = self.kernel_args();
        crate::cuda::optim_update((s1, l1), (s2, l2), (s3, l3), kind, c)
    }
}

/// Whether the in-place updates take these tensors: one device, one dtype (f32 or bf16), one
/// element count, all contiguous.
pub fn supports(tensors: &[&Tensor]) -> bool {
    let Some(first) = tensors.first() else {
        return false;
    };
    matches!(first.dtype(), DType::F32 | DType::BF16)
        && tensors.iter().all(|t| {
            t.dtype() == first.dtype()
                && t.elem_count() == first.elem_count()
                && t.device().same_device(first.device())
                && t.is_contiguous()
        })
}

fn check(what: &str, tensors: &[&Tensor]) -> Result<()> {
    if !supports(tensors) {
        let desc: Vec<String> = tensors
            .iter()
            .map(|t| {
                format!(
                    "{:?} {:?} contiguous={}",
                    t.dtype(),
                    t.dims(),
                    t.is_contiguous()
                )
            })
            .collect();
        bail!("{what}: needs contiguous f32 or bf16 tensors of one dtype and size on one device, got {desc:?}");
    }
    Ok(())
}

/// One AdamW step of `param` in place, with its moments `exp_avg` and `exp_avg_sq` (updated
/// in place too) and gradient `grad`: PyTorch's `_single_tensor_adamw` — decay
/// `p ← p·(1 − lr·wd)`, `m.lerp_(g, 1 − β₁)`, `v ← β₂·v + (1 − β₂)·g²`, then
/// `p ← p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)`.
pub fn adamw_update(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    h: &AdamWStep,
) -> Result<()> {
    check("adamw_update", &[param, grad, exp_avg, exp_avg_sq])?;
    if h.step == 0 {
        bail!("adamw_update: the step count starts at 1");
    }
    let t = h.step.min(i32::MAX as u64) as i32;
    let c = AdamWConstants {
        one_minus_beta1: (1.0 - h.beta1) as f32,
        beta2: h.beta2 as f32,
        one_minus_beta2: (1.0 - h.beta2) as f32,
        decay: (1.0 - h.lr * h.weight_decay) as f32,
        step_size: (h.lr / (1.0 - h.beta1.powi(t))) as f32,
        bias2_sqrt: (1.0 - h.beta2.powi(t)).sqrt() as f32,
        eps: h.eps as f32,
    };
    if param.device().is_cpu() && param.dtype() == DType::F32 {
        // one pass over the four tensors instead of three passes over three each
        return param.inplace_op1(&FusedAdamW {
            grad,
            exp_avg,
            exp_avg_sq,
            c,
        });
    }
    let param_step = Update::Param {
        decay: c.decay,
        step_size: c.step_size,
        bias2_sqrt: c.bias2_sqrt,
        eps: c.eps,
    };
    exp_avg.inplace_op2(
        grad,
        &Update::FirstMoment {
            c0: c.one_minus_beta1,
        },
    )?;
    exp_avg_sq.inplace_op2(
        grad,
        &Update::SecondMoment {
            c0: c.beta2,
            c1: c.one_minus_beta2,
        },
    )?;
    param.inplace_op3(exp_avg, exp_avg_sq, &param_step)
}

/// The constants of one AdamW step of one tensor, in f32 (those of [`Update`]'s three
/// variants).
#[derive(Debug, Clone, Copy)]
struct AdamWConstants {
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    decay: f32,
    step_size: f32,
    bias2_sqrt: f32,
    eps: f32,
}

/// The whole AdamW step of one contiguous f32 CPU tensor in one pass: `m`, `v` and `p`
/// element by element, with the expressions and order of the three [`Update`] passes (so
/// the results are the same to the bit).
///
/// candle lends mutable access to one tensor's storage per in-place op, so the three
/// mutated tensors are reached by nesting: this op holds the parameter's storage and applies
/// [`FusedAdamWMoment`] to `m`, which holds `m`'s and applies [`FusedAdamWLast`] to `v` with
/// the gradient, where the loop runs. Each storage stays locked by the frame that lent it
/// for the whole loop; four distinct tensors are required, as for the three-pass form.
struct FusedAdamW<'a> {
    grad: &'a Tensor,
    exp_avg: &'a Tensor,
    exp_avg_sq: &'a Tensor,
    c: AdamWConstants,
}

/// The middle of [`FusedAdamW`]'s nesting: holds `m`.
struct FusedAdamWMoment<'a> {
    param: RawSlice,
    grad: &'a Tensor,
    exp_avg_sq: &'a Tensor,
    c: AdamWConstants,
}

/// The innermost op of [`FusedAdamW`]: holds `v`, reads `g`, runs the loop.
struct FusedAdamWLast {
    param: RawSlice,
    exp_avg: RawSlice,
    c: AdamWConstants,
}

/// A mutable f32 slice lent by an enclosing in-place op, whose storage lock outlives every
/// use of this pointer.
#[derive(Clone, Copy)]
struct RawSlice {
    ptr: *mut f32,
    len: usize,
}

impl RawSlice {
    fn of(s: &mut CpuStorage, l: &Layout, what: &str) -> Result<Self> {
        const OP: &str = "adamw_update";
        let (a, b) = contiguous(l, what, OP)?;
        match s {
            CpuStorage::F32(v) => Ok(Self {
                ptr: v[a..b].as_mut_ptr(),
                len: b - a,
            }),
            other => bail!("{OP}: {what} must be f32, got {:?}", other.dtype()),
        }
    }

    /// # Safety
    /// The lending op's storage lock must still be held and no other reference to these
    /// elements alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut [f32] {
        // SAFETY: see the function's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl InplaceOp1 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "adamw-fused"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let param = RawSlice::of(s, l, "param")?;
        self.exp_avg.inplace_op1(&FusedAdamWMoment {
            param,
            grad: self.grad,
            exp_avg_sq: self.exp_avg_sq,
            c: self.c,
        })
    }
}

impl InplaceOp1 for FusedAdamWMoment<'_> {
    fn name(&self) -> &'static str {
        "adamw-fused"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let exp_avg = RawSlice::of(s, l, "exp_avg")?;
        self.exp_avg_sq.inplace_op2(
            self.grad,
            &FusedAdamWLast {
                param: self.param,
                exp_avg,
                c: self.c,
            },
        )
    }
}

impl InplaceOp2 for FusedAdamWLast {
    fn name(&self) -> &'static str {
        "adamw-fused"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<()> {
        let v = RawSlice::of(s, l, "exp_avg_sq")?;
        let g = crate::storage::f32_slice(gs, gl, "grad", "adamw_update")?;
        let n = g.len();
        if [self.param.len, self.exp_avg.len, v.len] != [n; 3] {
            bail!("adamw_update: operands of different lengths");
        }
        // SAFETY: the three slices come from three distinct tensors whose storages the
        // enclosing ops (and this one, for v) hold locked until this function returns.
        let (p, m, v) = unsafe { (self.param.get(), self.exp_avg.get(), v.get()) };
        const CHUNK: usize = 1 << 14;
        let c = self.c;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| adamw_slice(p, m, v, g, c));
        Ok(())
    }
}

crate::simd_kernel! {
    fn adamw_slice(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: AdamWConstants) {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            // the three updates of the three-pass form, in its order
            *m = first_moment(*m, g, c.one_minus_beta1);
            *v = second_moment(*v, g, c.beta2, c.one_minus_beta2);
            *p = param_step(*p, *m, *v, c.decay, c.step_size, c.bias2_sqrt, c.eps);
        }
    }
}

/// `teacher ← μ·teacher + (1 − μ)·student` in place (dinov2's `update_teacher` for one
/// tensor).
pub fn ema_update(teacher: &Tensor, student: &Tensor, momentum: f64) -> Result<()> {
    check("ema_update", &[teacher, student])?;
    teacher.inplace_op2(
        student,
        &Update::Ema {
            c0: momentum as f32,
            c1: (1.0 - momentum) as f32,
        },
    )
}

/// `Σ x²` of a tensor as an f64 scalar tensor on its device (the building block of gradient
/// norms): one vectorised pass accumulating in f64 for contiguous f32 on the CPU; elsewhere
/// f64 conversion, row sums and a total (rows first: a whole-tensor reduction on the GPU runs
/// in one thread block, which made the norm of a 16.8M-element DINO prototype matrix a
/// serial, latency-bound pass).
pub fn sum_of_squares(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1_no_bwd(&SumOfSquares);
    }
    let sq = x.to_dtype(DType::F64)?.sqr()?;
    let sq = if sq.rank() >= 2 {
        sq.sum(candle_core::D::Minus1)?
    } else {
        sq
    };
    sq.sum_all()
}

/// [`sum_of_squares`]' CPU kernel (`CustomOp1`, contiguous f32 in, f64 scalar out).
struct SumOfSquares;

crate::simd_kernel! {
    /// `Σ x²` in f64 with eight independent accumulators (a single running sum would chain
    /// every addition on the previous one).
    fn sum_of_squares_slice(x: &[f32]) -> f64 {
        let mut acc = [0f64; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                let v = v as f64;
                *a += v * v;
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&v| (v as f64) * (v as f64)).sum();
        acc.iter().sum::<f64>() + tail
    }
}

impl candle_core::CustomOp1 for SumOfSquares {
    fn name(&self) -> &'static str {
        "sum-of-squares"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, candle_core::Shape)> {
        let x = crate::storage::f32_slice(s, l, "x", self.name())?;
        // partial sums in chunk order, then added in that order: rayon's parallel `sum`
        // would pair them as the work split, and the gradient norm must replay exactly
        let partial: Vec<f64> = x.par_chunks(1 << 16).map(sum_of_squares_slice).collect();
        let total: f64 = partial.iter().sum();
        Ok((CpuStorage::F64(vec![total]), candle_core::Shape::from(())))
    }
}
