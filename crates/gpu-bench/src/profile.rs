//! Per-op times of one ViT-B/14 block at the forward benchmark's shapes, for the fused GPU path
//! and the composed path, so the forward's total can be read op by op.

use candle_core::{DType, Device, Result, Tensor, D};
use serde_json::json;

use fused_ops::attention::Bf16Kernel;

use super::time;

/// `f()` with bf16 attention on `kernel`, the process-wide choice restored afterwards.
fn with_bf16_kernel(kernel: Bf16Kernel, f: &dyn Fn() -> Result<Tensor>) -> Result<Tensor> {
    let chosen = fused_ops::attention::bf16_kernel();
    fused_ops::attention::set_bf16_kernel(kernel);
    let out = f();
    fused_ops::attention::set_bf16_kernel(chosen);
    out
}

/// Times every op of one block (RAD-DINO width 768, 12 heads, MLP 3072, 1370 tokens) on `dev`
/// in f32 and bf16.
pub fn block_ops(dev: &Device, batch: usize, repeats: usize) -> Result<serde_json::Value> {
    let (n, d, heads, hidden) = (1370usize, 768usize, 12usize, 3072usize);
    let hd = d / heads;
    let mut rows = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let rnd = |shape: &[usize], s: f32| -> Result<Tensor> {
            Tensor::randn(0f32, s, shape, dev)?.to_dtype(dtype)
        };
        let x = rnd(&[batch, n, d], 1.0)?;
        let (w_ln, b_ln) = (rnd(&[d], 1.0)?, rnd(&[d], 0.1)?);
        let w_qkv = rnd(&[3 * d, d], 0.02)?;
        let b_qkv = rnd(&[3 * d], 0.02)?;
        let w_o = rnd(&[d, d], 0.02)?;
        let b_d = rnd(&[d], 0.02)?;
        let lambda = rnd(&[d], 0.1)?;
        let w1 = rnd(&[hidden, d], 0.02)?;
        let b1 = rnd(&[hidden], 0.02)?;
        let w2 = rnd(&[d, hidden], 0.02)?;
        let x2 = x.reshape((batch * n, d))?;
        let qkv = x2.matmul(&w_qkv.t()?)?.reshape((batch, n, 3 * d))?;
        let h1 = x2.matmul(&w1.t()?)?;
        let scale = (hd as f64).powf(-0.5);
        let perm = qkv
            .broadcast_add(&b_qkv)?
            .reshape((batch, n, 3, heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (perm.get(0)? * scale)?.contiguous()?;
        let k = perm.get(1)?.contiguous()?;
        let v = perm.get(2)?.contiguous()?;
        let scores = q.matmul(&k.t()?)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?;

        let attend = || fused_ops::attention(&qkv, Some(&b_qkv), heads, scale);
        type Op<'a> = Box<dyn Fn() -> Result<Tensor> + 'a>;
        let ops: Vec<(&str, &str, Op)> = vec![
            (
                "composed",
                "layer_norm (candle_nn)",
                Box::new(|| candle_nn::ops::layer_norm(&x, &w_ln, &b_ln, 1e-6)),
            ),
            (
                "fused",
                "layer_norm (fused_ops)",
                Box::new(|| fused_ops::layer_norm(&x, &w_ln, &b_ln, 1e-6)),
            ),
            (
                "both",
                "qkv GEMM [B*N,768]x[768,2304]",
                Box::new(|| x2.matmul(&w_qkv.t()?)),
            ),
            (
                "composed",
                "qkv bias add",
                Box::new(|| qkv.broadcast_add(&b_qkv)),
            ),
            (
                "composed",
                "q scale + 3 permute copies",
                Box::new(|| {
                    let q = (perm.get(0)? * scale)?.contiguous()?;
                    perm.get(1)?.contiguous()?;
                    perm.get(2)?.contiguous()?;
                    Ok(q)
                }),
            ),
            ("composed", "scores q kT", Box::new(|| q.matmul(&k.t()?))),
            (
                "composed",
                "softmax (candle_nn)",
                Box::new(|| candle_nn::ops::softmax_last_dim(&scores)),
            ),
            ("composed", "probs v", Box::new(|| probs.matmul(&v))),
            (
                "composed",
                "context transpose copy",
                Box::new(|| ctx.transpose(1, 2)?.reshape((batch, n, d))),
            ),
            (
                "fused",
                "attention (fused, qkv bias in)",
                Box::new(|| fused_ops::attention(&qkv, Some(&b_qkv), heads, scale)),
            ),
            (
                "fused",
                "attention, bf16 kernel mma",
                Box::new(|| with_bf16_kernel(Bf16Kernel::Mma, &attend)),
            ),
            (
                "fused",
                "attention, bf16 kernel wmma",
                Box::new(|| with_bf16_kernel(Bf16Kernel::Wmma, &attend)),
            ),
            (
                "both",
                "out GEMM [B*N,768]x[768,768]",
                Box::new(|| x2.matmul(&w_o.t()?)),
            ),
            (
                "composed",
                "bias + layer scale + residual (3 ops)",
                Box::new(|| x.broadcast_add(&b_d)?.broadcast_mul(&lambda)? + &x),
            ),
            (
                "fused",
                "bias_scale_residual",
                Box::new(|| fused_ops::bias_scale_residual(&x, &b_d, &lambda, &x)),
            ),
            (
                "both",
                "fc1 GEMM [B*N,768]x[768,3072]",
                Box::new(|| x2.matmul(&w1.t()?)),
            ),
            (
                "composed",
                "fc1 bias + gelu_erf (2 ops)",
                Box::new(|| h1.broadcast_add(&b1)?.gelu_erf()),
            ),
            (
                "fused",
                "bias_gelu",
                Box::new(|| fused_ops::bias_gelu(&h1, &b1)),
            ),
            (
                "both",
                "fc2 GEMM [B*N,3072]x[3072,768]",
                Box::new(|| h1.matmul(&w2.t()?)),
            ),
        ];
        for (path, name, f) in &ops {
            if dtype != DType::BF16 && name.contains("bf16 kernel") {
                continue; // f32 has one kernel
            }
            let (med, _) = time(dev, 2, repeats, || f().map(|_| ()))?;
            println!("{dtype:?} {path:>8}  {name:<40} {:>8.3} ms", med * 1e3);
            rows.push(
                json!({"dtype": format!("{dtype:?}"), "path": path, "op": name, "ms": med * 1e3}),
            );
        }
        // the attention forms must agree (this is a profile, not the parity check)
        let composed = ctx
            .transpose(1, 2)?
            .reshape((batch, n, d))?
            .to_dtype(DType::F32)?;
        let kernels: &[Bf16Kernel] = match dtype {
            DType::BF16 => &Bf16Kernel::ALL,
            _ => &Bf16Kernel::ALL[..1],
        };
        for &kernel in kernels {
            let fused = with_bf16_kernel(kernel, &attend)?.to_dtype(DType::F32)?;
            let diff = (&composed - fused)?
                .abs()?
                .max_keepdim(D::Minus1)?
                .flatten_all()?
                .max(0)?;
            println!(
                "{dtype:?} max |fused ({}) - composed| attention: {:.3e}",
                kernel.name(),
                diff.to_scalar::<f32>()?
            );
        }
    }
    Ok(json!({ "profile": rows }))
}
