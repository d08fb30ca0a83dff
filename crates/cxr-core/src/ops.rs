//! Differentiable forms of the fused operations candle ships without a backward pass.
//!
//! `candle_nn::ops::layer_norm` and `softmax_last_dim` are fused kernels whose gradient is
//! silently dropped. Every trainable module of the workspace uses the functions here instead;
//! inference paths may keep the fused kernels, and the tests below hold the two forms equal.

use candle_core::{DType, Result, Tensor, D};

/// Layer norm over the last dimension built from primitive ops, so gradients reach `x`,
/// `weight` and `bias`. Half-precision inputs are normalised in f32.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = match dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed
        .to_dtype(dtype)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)
}

/// Softmax over the last dimension built from primitive ops (max-subtracted), differentiable.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

/// Log-softmax over the last dimension, differentiable and stable.
pub fn log_softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Largest absolute element-wise difference of two tensors of the same shape, in f32: the
/// measure every parity check of the workspace states its tolerance in. NaN when either
/// holds a NaN (see [`max_abs`]).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!(
            "max_abs_diff: shapes {:?} and {:?} differ",
            a.dims(),
            b.dims()
        );
    }
    max_abs(&(a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?)
}

/// Largest `|t|`, in f32; NaN when `t` holds a NaN. candle's `max` keeps a NaN only when it
/// is the first element, so a check built on it (`max |a − b| < tol`) would pass a result
/// with NaNs further in.
pub fn max_abs(t: &Tensor) -> Result<f32> {
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(v.iter().fold(0f32, |m, &x| {
        if m.is_nan() || x.is_nan() {
            f32::NAN
        } else {
            m.max(x.abs())
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        // small deterministic pseudo-random values without pulling in a RNG crate
        let n: usize = shape.iter().product();
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn layer_norm_matches_f64_reference() {
        let x = rand(&[3, 5, 16], 1);
        let w = rand(&[16], 2);
        let b = rand(&[16], 3);
        let ours = layer_norm(&x, &w, &b, 1e-6).unwrap();
        let fused = reference_layer_norm(&x, &w, &b, 1e-6);
        assert!(max_diff(&ours, &fused) < 1e-5);
    }

    // Per-row computation in f64, the definition the fused kernels implement.
    fn reference_layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let dims = x.dims().to_vec();
        let d = *dims.last().unwrap();
        let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let ws: Vec<f32> = w.to_vec1().unwrap();
        let bs: Vec<f32> = b.to_vec1().unwrap();
        let mut out = Vec::with_capacity(xs.len());
        for row in xs.chunks(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for (i, &v) in row.iter().enumerate() {
                out.push(
                    ((v as f64 - mean) / (var + eps).sqrt() * ws[i] as f64 + bs[i] as f64) as f32,
                );
            }
        }
        Tensor::from_vec(out, dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_log_softmax() {
        let x = (rand(&[4, 7], 4) * 10.0).unwrap();
        let p = softmax_last_dim(&x).unwrap();
        let sums: Vec<f32> = p.sum(1).unwrap().to_vec1().unwrap();
        for s in sums {
            assert!((s - 1.0).abs() < 1e-6);
        }
        let lp = log_softmax_last_dim(&x).unwrap().exp().unwrap();
        assert!(max_diff(&p, &lp) < 1e-6);
    }

    /// Central finite differences of `sum(f(x) * r)` against autograd, in f64.
    fn check_grad(f: impl Fn(&Tensor) -> Tensor, shape: &[usize]) {
        let x0 = rand(shape, 7).to_dtype(DType::F64).unwrap();
        let r = rand(shape, 8).to_dtype(DType::F64).unwrap();
        let var = Var::from_tensor(&x0).unwrap();
        let loss = (f(var.as_tensor()) * &r).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<f64> = grads
            .get(&var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let xs: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-6;
        for i in 0..xs.len() {
            let eval = |delta: f64| {
                let mut v = xs.clone();
                v[i] += delta;
                let t = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
                (f(&t) * &r)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-6,
                "element {i}: autograd {} vs fd {fd}",
                g[i]
            );
        }
    }

    #[test]
    fn layer_norm_gradient_matches_finite_differences() {
        let w = rand(&[6], 9).to_dtype(DType::F64).unwrap();
        let b = rand(&[6], 10).to_dtype(DType::F64).unwrap();
        check_grad(|x| layer_norm(x, &w, &b, 1e-6).unwrap(), &[2, 6]);
    }

    #[test]
    fn softmax_gradients_match_finite_differences() {
        check_grad(|x| softmax_last_dim(x).unwrap(), &[3, 5]);
        check_grad(|x| log_softmax_last_dim(x).unwrap(), &[3, 5]);
    }

    #[test]
    fn max_abs_diff_sees_a_nan_anywhere() {
        let a = Tensor::new(&[1f32, -3.0, 2.0], &Device::Cpu).unwrap();
        assert_eq!(max_abs(&a).unwrap(), 3.0);
        for at in 0..3 {
            let mut v = vec![1f32, 2.0, 3.0];
            v[at] = f32::NAN;
            let b = Tensor::new(v.as_slice(), &Device::Cpu).unwrap();
            assert!(max_abs_diff(&a, &b).unwrap().is_nan(), "NaN at {at} missed");
        }
    }
}
