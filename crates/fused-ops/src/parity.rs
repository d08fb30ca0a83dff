//! Device-against-CPU checks of every operation: the same random inputs through the CPU
//! reference and through `device`, forward outputs and gradients compared. The GPU test and
//! the GPU benchmark example both run these, so what is tested is what is reported.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};

use crate::attention::Bf16Kernel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One comparison: the largest absolute difference against the CPU reference, relative to
/// the reference's largest magnitude.
#[derive(Debug, Clone)]
pub struct ParityCheck {
    /// What was compared (operation, dtype, output or gradient).
    pub name: String,
    /// `max |device − cpu| / max(|cpu|, 1e-12)`.
    pub rel_err: f32,
    /// The tolerance the check must meet.
    pub tolerance: f32,
}

impl ParityCheck {
    /// Whether the check met its tolerance (NaN never does).
    pub fn passed(&self) -> bool {
        self.rel_err <= self.tolerance
    }
}

/// Largest `|t|`, in f32; NaN when `t` holds a NaN. candle's `max` keeps a NaN only when it
/// is the first element (and `f32::max` drops it), so a check built on either would pass a
/// result with NaNs further in.
fn max_abs(t: &Tensor) -> Result<f32> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().fold(0f32, |m, &x| {
        if m.is_nan() || x.is_nan() {
            f32::NAN
        } else {
            m.max(x.abs())
        }
    }))
}

/// `max |device − cpu| / max(max |cpu|, 1e-12)`; NaN when either side holds a NaN, so that
/// [`ParityCheck::passed`] fails it.
fn rel_err(device: &Tensor, cpu: &Tensor) -> Result<f32> {
    let d = device.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let c = cpu.to_dtype(DType::F32)?;
    if d.dims() != c.dims() {
        candle_core::bail!("rel_err: shapes {:?} and {:?} differ", d.dims(), c.dims());
    }
    let diff = max_abs(&(d - &c)?)?;
    let scale = max_abs(&c)?;
    if scale.is_nan() {
        return Ok(f32::NAN);
    }
    Ok(diff / scale.max(1e-12))
}

/// One comparison of a `device` result with the `cpu` reference, measured as every check of
/// [`device_vs_cpu`] is (so a test can show that a wrong result is reported as failing).
pub fn compare(name: String, device: &Tensor, cpu: &Tensor, tolerance: f32) -> Result<ParityCheck> {
    Ok(ParityCheck {
        name,
        rel_err: rel_err(device, cpu)?,
        tolerance,
    })
}

fn push(out: &mut Vec<ParityCheck>, name: String, d: &Tensor, c: &Tensor, tol: f32) -> Result<()> {
    out.push(compare(name, d, c, tol)?);
    Ok(())
}

/// Runs `f` on CPU and on `device` with the same inputs and gradient weights `r`, returning
/// the output and the gradients of `sum(out · r)` with respect to each input.
fn with_grads(
    inputs: &[Tensor],
    r: &Tensor,
    device: &Device,
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(device)?))
        .collect::<Result<_>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts)?;
    let loss = (y.to_dtype(DType::F32)? * r.to_device(device)?)?.sum_all()?;
    let grads = loss.backward()?;
    let mut out = vec![y];
    for v in &vars {
        match grads.get(v.as_tensor()) {
            Some(g) => out.push(g.clone()),
            None => candle_core::bail!("no gradient reached an input"),
        }
    }
    Ok(out)
}

/// Uniform noise in `[offset − scale, offset + scale)` from a seeded stream (candle's CPU
/// device cannot be seeded).
fn random(
    rng: &mut ChaCha8Rng,
    shape: impl Into<Shape>,
    scale: f32,
    offset: f32,
) -> Result<Tensor> {
    let shape = shape.into();
    let v: Vec<f32> = (0..shape.elem_count())
        .map(|_| offset + scale * (2.0 * rng.random::<f32>() - 1.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// Every operation on `device` against the CPU reference, at sizes that exercise partial
/// blocks and several blocks per row (layer norm width 768, K = 4099 prototypes).
pub fn device_vs_cpu(device: &Device, seed: u64) -> Result<Vec<ParityCheck>> {
    let cpu = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();

    // layer norm, f32 and bf16, forward and the three gradients
    let (x, w, b) = (
        random(&mut rng, (4, 77, 768), 3.0, 0.7)?,
        random(&mut rng, 768, 0.5, 1.0)?,
        random(&mut rng, 768, 0.5, 0.0)?,
    );
    let r = random(&mut rng, (4, 77, 768), 1.0, 0.0)?;
    for (dtype, tol_y, tol_g) in [(DType::F32, 1e-5, 1e-4), (DType::BF16, 2e-2, 5e-2)] {
        let inputs: Vec<Tensor> = [&x, &w, &b]
            .iter()
            .map(|t| t.to_dtype(dtype))
            .collect::<Result<_>>()?;
        let f = |t: &[Tensor]| crate::layer_norm(&t[0], &t[1], &t[2], 1e-6);
        let c = with_grads(&inputs, &r, &cpu, &f)?;
        let d = with_grads(&inputs, &r, device, &f)?;
        for (i, what) in ["y", "dx", "dw", "db"].iter().enumerate() {
            let tol = if i == 0 { tol_y } else { tol_g };
            push(
                &mut out,
                format!("layer_norm {dtype:?} {what}"),
                &d[i],
                &c[i],
                tol,
            )?;
        }
    }

    // per-channel bias add and scale with their column-sum gradients (rows not a multiple of
    // the 64-row chunks, a width that is not a multiple of the 256-thread blocks)
    let x = random(&mut rng, (5, 67, 300), 2.0, 0.1)?;
    let p = random(&mut rng, 300, 1.0, 0.0)?;
    let r = random(&mut rng, (5, 67, 300), 1.0, 0.0)?;
    for (dtype, tol_y, tol_g) in [(DType::F32, 1e-6, 1e-5), (DType::BF16, 1e-2, 2e-2)] {
        let inputs = [x.to_dtype(dtype)?, p.to_dtype(dtype)?];
        type Op = fn(&Tensor, &Tensor) -> Result<Tensor>;
        for (name, op) in [
            ("bias_add", crate::bias_add as Op),
            ("scale_columns", crate::scale_columns as Op),
        ] {
            let f = |t: &[Tensor]| op(&t[0], &t[1]);
            let c = with_grads(&inputs, &r, &cpu, &f)?;
            let d = with_grads(&inputs, &r, device, &f)?;
            for (i, what) in ["y", "dx", "dparam"].iter().enumerate() {
                let tol = if i == 0 { tol_y } else { tol_g };
                push(
                    &mut out,
                    format!("{name} {dtype:?} {what}"),
                    &d[i],
                    &c[i],
                    tol,
                )?;
            }
        }
    }

    // convolutions as GEMMs, f32: a 3×3 "same" conv and a 2×2 stride-2 transposed conv
    let x = random(&mut rng, (2, 16, 20, 18), 1.0, 0.0)?;
    let w = random(&mut rng, (8, 16, 3, 3), 0.2, 0.0)?;
    let r = random(&mut rng, (2, 8, 20, 18), 1.0, 0.0)?;
    let f = |t: &[Tensor]| crate::conv2d(&t[0], &t[1], 1, 1, 1, 1);
    let c = with_grads(&[x.clone(), w.clone()], &r, &cpu, &f)?;
    let d = with_grads(&[x.clone(), w], &r, device, &f)?;
    for (i, what) in ["y", "dx", "dw"].iter().enumerate() {
        push(
            &mut out,
            format!("conv2d 3x3 F32 {what}"),
            &d[i],
            &c[i],
            1e-4,
        )?;
    }
    let w = random(&mut rng, (16, 8, 2, 2), 0.2, 0.0)?;
    let r = random(&mut rng, (2, 8, 40, 36), 1.0, 0.0)?;
    let f = |t: &[Tensor]| crate::conv_transpose2d(&t[0], &t[1], 2);
    let c = with_grads(&[x.clone(), w.clone()], &r, &cpu, &f)?;
    let d = with_grads(&[x, w], &r, device, &f)?;
    for (i, what) in ["y", "dx", "dw"].iter().enumerate() {
        push(
            &mut out,
            format!("conv_transpose2d 2x2 F32 {what}"),
            &d[i],
            &c[i],
            1e-4,
        )?;
    }

    // per-channel ops of [B, C, H, W] maps, f32 (the CPU runs the fused ops, other devices
    // their composed forms): training-mode BatchNorm + ReLU, the evaluation-mode affine, the
    // convolution bias
    let x = random(&mut rng, (2, 6, 9, 11), 2.0, 0.5)?;
    let (a, b) = (
        random(&mut rng, 6, 0.5, 1.0)?,
        random(&mut rng, 6, 0.5, 0.0)?,
    );
    let r = random(&mut rng, (2, 6, 9, 11), 1.0, 0.0)?;
    type Map3 = fn(&[Tensor]) -> Result<Tensor>;
    let per_channel: [(&str, Map3); 2] = [
        ("batch_norm_train relu", |t| {
            Ok(crate::batch_norm_train(&t[0], &t[1], &t[2], 1e-5, true)?.y)
        }),
        ("channel_affine relu", |t| {
            crate::channel_affine(&t[0], &t[1], &t[2], true)
        }),
    ];
    for (name, f) in per_channel {
        let inputs = [x.clone(), a.clone(), b.clone()];
        let c = with_grads(&inputs, &r, &cpu, &f)?;
        let d = with_grads(&inputs, &r, device, &f)?;
        for (i, what) in ["y", "dx", "dweight", "dbias"].iter().enumerate() {
            push(&mut out, format!("{name} F32 {what}"), &d[i], &c[i], 1e-4)?;
        }
    }
    let f = |t: &[Tensor]| crate::channel_bias(&t[0], &t[1]);
    let c = with_grads(&[x.clone(), b.clone()], &r, &cpu, &f)?;
    let d = with_grads(&[x, b], &r, device, &f)?;
    for (i, what) in ["y", "dx", "dbias"].iter().enumerate() {
        push(
            &mut out,
            format!("channel_bias F32 {what}"),
            &d[i],
            &c[i],
            1e-5,
        )?;
    }

    // softmax and log-softmax with their closed-form backwards (the softmax forward is
    // candle's fused kernel; on the CPU, bf16 rows are normalised in f32, as on CUDA)
    let x = random(&mut rng, (2, 3, 45, 45), 4.0, 0.0)?;
    let r = random(&mut rng, (2, 3, 45, 45), 1.0, 0.0)?;
    type Op = fn(&Tensor) -> Result<Tensor>;
    let ops: [(&str, Op); 2] = [
        ("softmax", crate::softmax_last_dim),
        ("log_softmax", crate::log_softmax_last_dim),
    ];
    for (dtype, tol_y, tol_g) in [(DType::F32, 1e-6, 1e-5), (DType::BF16, 3e-2, 5e-2)] {
        let inputs = [x.to_dtype(dtype)?];
        for (name, op) in ops {
            let f = |t: &[Tensor]| op(&t[0]);
            let c = with_grads(&inputs, &r, &cpu, &f)?;
            let d = with_grads(&inputs, &r, device, &f)?;
            push(&mut out, format!("{name} {dtype:?} y"), &d[0], &c[0], tol_y)?;
            push(
                &mut out,
                format!("{name} {dtype:?} dx"),
                &d[1],
                &c[1],
                tol_g,
            )?;
        }
    }

    // bilinear resize, up and down, both alignments: output and input gradient
    let img = random(&mut rng, (2, 16, 37, 37), 1.0, 0.0)?;
    for (size, align) in [
        ((148, 148), false),
        ((518, 518), false),
        ((20, 30), true),
        ((9, 9), false),
    ] {
        let r = random(&mut rng, (2, 16, size.0, size.1), 1.0, 0.0)?;
        let f = |t: &[Tensor]| crate::resize_bilinear(&t[0], size, align);
        let c = with_grads(std::slice::from_ref(&img), &r, &cpu, &f)?;
        let d = with_grads(std::slice::from_ref(&img), &r, device, &f)?;
        let name = format!("resize 37->{}x{} align={align}", size.0, size.1);
        push(&mut out, format!("{name} y"), &d[0], &c[0], 1e-5)?;
        push(&mut out, format!("{name} dx"), &d[1], &c[1], 1e-4)?;
    }

    // teacher: centring softmax and Sinkhorn-Knopp at a non-multiple-of-block K
    let t = random(&mut rng, (64, 4099), 1.0, 0.0)?;
    let center = random(&mut rng, (1, 4099), 0.2, 0.0)?;
    let c = crate::center_softmax(&t, &center, 0.04)?;
    let d = crate::center_softmax(&t.to_device(device)?, &center.to_device(device)?, 0.04)?;
    push(&mut out, "center_softmax".into(), &d, &c, 1e-4)?;
    for iters in [0, 3] {
        let c = crate::sinkhorn_knopp(&t, 0.05, 64.0, iters)?;
        let d = crate::sinkhorn_knopp(&t.to_device(device)?, 0.05, 64.0, iters)?;
        push(
            &mut out,
            format!("sinkhorn_knopp iters={iters}"),
            &d,
            &c,
            1e-4,
        )?;
    }

    // fused attention (head dim 64; sequences with a partial last tile and a single tile) and
    // the block epilogues, f32 and bf16, against the CPU reference in f64
    for (b, n, heads) in [(2, 257, 3), (1, 37, 2)] {
        let qkv = random(&mut rng, (b, n, 3 * heads * 64), 2.0, 0.0)?;
        let bias = random(&mut rng, 3 * heads * 64, 0.5, 0.0)?;
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 3e-2)] {
            let (q, bi) = (qkv.to_dtype(dtype)?, bias.to_dtype(dtype)?);
            let c = crate::attention(&q, Some(&bi), heads, 0.125)?;
            // every bf16 kernel (f32 has one)
            let kernels: &[Bf16Kernel] = match dtype {
                DType::BF16 => &Bf16Kernel::ALL,
                _ => &[Bf16Kernel::Mma128],
            };
            let chosen = crate::attention::bf16_kernel();
            for &kernel in kernels {
                crate::attention::set_bf16_kernel(kernel);
                let d = crate::attention(
                    &q.to_device(device)?,
                    Some(&bi.to_device(device)?),
                    heads,
                    0.125,
                );
                crate::attention::set_bf16_kernel(chosen);
                let label = match dtype {
                    DType::BF16 => format!(" ({})", kernel.name()),
                    _ => String::new(),
                };
                push(
                    &mut out,
                    format!("attention {dtype:?}{label} n={n} heads={heads}"),
                    &d?,
                    &c,
                    tol,
                )?;
            }
        }
    }
    // a qkv view starting one element into its buffer (the kernels' 16-byte loads must not
    // see it unaligned)
    let (b, n, heads) = (1, 70, 2);
    let flat = random(&mut rng, 1 + b * n * 3 * heads * 64, 2.0, 0.0)?;
    let bias = random(&mut rng, 3 * heads * 64, 0.5, 0.0)?;
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 3e-2)] {
        let (f, bi) = (flat.to_dtype(dtype)?, bias.to_dtype(dtype)?);
        let view = |t: &Tensor| {
            t.narrow(0, 1, b * n * 3 * heads * 64)?
                .reshape((b, n, 3 * heads * 64))
        };
        let c = crate::attention(&view(&f)?, Some(&bi), heads, 0.125)?;
        let d = crate::attention(
            &view(&f.to_device(device)?)?,
            Some(&bi.to_device(device)?),
            heads,
            0.125,
        )?;
        push(
            &mut out,
            format!("attention {dtype:?} offset view n={n}"),
            &d,
            &c,
            tol,
        )?;
    }
    // the in-place optimizer updates: three AdamW steps and an EMA update, f32 and bf16
    let n = 70_001;
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::BF16, 1e-2)] {
        let on_both = |t: Tensor| -> Result<(Tensor, Tensor)> {
            let t = t.to_dtype(dtype)?;
            Ok((t.copy()?, t.to_device(device)?))
        };
        let (pc, pd) = on_both(random(&mut rng, n, 1.0, 0.0)?)?;
        let (mc, md) = on_both(Tensor::zeros(n, DType::F32, &cpu)?)?;
        let (vc, vd) = on_both(Tensor::zeros(n, DType::F32, &cpu)?)?;
        for step in 1..=3u64 {
            let (gc, gd) = on_both(random(&mut rng, n, 0.5, 0.0)?)?;
            let h = crate::optim::AdamWStep {
                lr: 1e-2,
                weight_decay: 0.04,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                step,
            };
            crate::optim::adamw_update(&pc, &gc, &mc, &vc, &h)?;
            crate::optim::adamw_update(&pd, &gd, &md, &vd, &h)?;
        }
        push(
            &mut out,
            format!("adamw {dtype:?} param (3 steps)"),
            &pd,
            &pc,
            tol,
        )?;
        push(
            &mut out,
            format!("adamw {dtype:?} exp_avg_sq"),
            &vd,
            &vc,
            tol,
        )?;
        let (sc, sd) = on_both(random(&mut rng, n, 1.0, 0.0)?)?;
        crate::optim::ema_update(&pc, &sc, 0.996)?;
        crate::optim::ema_update(&pd, &sd, 0.996)?;
        push(&mut out, format!("ema {dtype:?}"), &pd, &pc, tol)?;
    }
    // rows longer than the register-cached layer norm holds (the looping form)
    let x = random(&mut rng, (2, 9, 1500), 3.0, 0.7)?;
    let (w, b) = (
        random(&mut rng, 1500, 0.5, 1.0)?,
        random(&mut rng, 1500, 0.5, 0.0)?,
    );
    let c = crate::layer_norm(&x, &w, &b, 1e-6)?;
    let on = |t: &Tensor| t.to_device(device);
    let d = crate::layer_norm(&on(&x)?, &on(&w)?, &on(&b)?, 1e-6)?;
    push(&mut out, "layer_norm F32 y (d = 1500)".into(), &d, &c, 1e-5)?;
    // a width that is not a multiple of 4 (the element-wise register form)
    let x = random(&mut rng, (3, 11, 390), 3.0, 0.7)?;
    let (w, b) = (
        random(&mut rng, 390, 0.5, 1.0)?,
        random(&mut rng, 390, 0.5, 0.0)?,
    );
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 2e-2)] {
        let (x, w, b) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?, b.to_dtype(dtype)?);
        let c = crate::layer_norm(&x, &w, &b, 1e-6)?;
        let d = crate::layer_norm(&on(&x)?, &on(&w)?, &on(&b)?, 1e-6)?;
        push(
            &mut out,
            format!("layer_norm {dtype:?} y (d = 390)"),
            &d,
            &c,
            tol,
        )?;
    }
    // epilogues at widths that are not a multiple of 8 (30: one element per access; 36: four)
    for width in [30, 36] {
        let a = random(&mut rng, (5, 33, width), 3.0, 0.0)?;
        let (b, lambda) = (
            random(&mut rng, width, 1.0, 0.0)?,
            random(&mut rng, width, 0.2, 0.0)?,
        );
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 1e-2)] {
            let [a, b, lambda] = [&a, &b, &lambda].map(|t| t.to_dtype(dtype));
            let (a, b, lambda) = (a?, b?, lambda?);
            let c = crate::bias_scale_residual(&a, &b, &lambda, &a)?;
            let d = crate::bias_scale_residual(&on(&a)?, &on(&b)?, &on(&lambda)?, &on(&a)?)?;
            let name = format!("bias_scale_residual {dtype:?} (d = {width})");
            push(&mut out, name, &d, &c, tol)?;
            let c = crate::bias_gelu(&a, &b)?;
            let d = crate::bias_gelu(&on(&a)?, &on(&b)?)?;
            push(
                &mut out,
                format!("bias_gelu {dtype:?} (d = {width})"),
                &d,
                &c,
                tol,
            )?;
        }
    }

    let a = random(&mut rng, (3, 77, 768), 3.0, 0.0)?;
    let r = random(&mut rng, (3, 77, 768), 1.0, 0.0)?;
    let b = random(&mut rng, 768, 1.0, 0.0)?;
    let lambda = random(&mut rng, 768, 0.2, 0.0)?;
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 1e-2)] {
        let [a, r, b, lambda] = [&a, &r, &b, &lambda].map(|t| t.to_dtype(dtype));
        let (a, r, b, lambda) = (a?, r?, b?, lambda?);
        let on = |t: &Tensor| t.to_device(device);
        let c = crate::bias_gelu(&a, &b)?;
        let d = crate::bias_gelu(&on(&a)?, &on(&b)?)?;
        push(&mut out, format!("bias_gelu {dtype:?}"), &d, &c, tol)?;
        let c = crate::bias_scale_residual(&a, &b, &lambda, &r)?;
        let d = crate::bias_scale_residual(&on(&a)?, &on(&b)?, &on(&lambda)?, &on(&r)?)?;
        push(
            &mut out,
            format!("bias_scale_residual {dtype:?}"),
            &d,
            &c,
            tol,
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(device: &[f32], cpu: &[f32]) -> ParityCheck {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        compare("t".into(), &t(device), &t(cpu), 1e-3).unwrap()
    }

    #[test]
    fn rel_err_is_relative_to_the_reference() {
        let c = check(&[1.0, -4.0, 2.0], &[1.0, -4.0, 2.002]);
        assert!((c.rel_err - 0.0005).abs() < 1e-6, "{}", c.rel_err);
        assert!(c.passed());
        assert!(!check(&[1.0, -4.0, 2.1], &[1.0, -4.0, 2.0]).passed());
    }

    #[test]
    fn a_nan_anywhere_never_passes() {
        // past the first element, where candle's `max` would drop it
        assert!(!check(&[1.0, f32::NAN, 2.0], &[1.0, 3.0, 2.0]).passed());
        assert!(!check(&[1.0, 3.0, 2.0], &[1.0, 3.0, f32::NAN]).passed());
        assert!(!check(&[f32::NAN, 3.0], &[1.0, 3.0]).passed());
        assert!(check(&[1.0, 3.0], &[1.0, 3.0]).rel_err == 0.0);
    }
}
