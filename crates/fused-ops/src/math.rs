//! Scalar kernels that compilers vectorise, shared by the CPU implementations here and in
//! `vit-backbone`'s inference kernels. Each is written branch-free (`max`, `floor`,
//! `copysign`, bit casts) so that a loop over a slice compiled with AVX2/AVX-512 enabled
//! becomes SIMD code.

/// `exp(x)` for `x <= 0` (Cephes' single-precision polynomial after range reduction by ln 2;
/// relative error about 2e-7). Very negative inputs flush to a tiny value, not a denormal;
/// positive ones are treated as 0 (callers pass `x − max`), NaN stays NaN.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // n stays in [-126, 0] (NaN propagates to the result)
    let x = x.clamp(-87.0, 0.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r2 + r + 1.0;
    // 2ⁿ built from bits. `n as i32` would be a saturating cast, which LLVM does not
    // vectorise; adding 1.5·2²³ puts the integer n into the low mantissa bits instead
    const MAGIC: f32 = 12_582_912.0;
    let n_bits = (n + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `(Φ(x), exp(−x²/2))`: the standard normal CDF with erf from Abramowitz & Stegun 7.1.26
/// (|error| < 1.5e-7), and the Gaussian factor it computes on the way, which the GELU's
/// derivative reuses.
#[inline(always)]
fn normal_cdf_and_gauss(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let gauss = exp_nonpositive(-z * z);
    let erf = (1.0 - poly * gauss).copysign(x);
    (0.5 * (1.0 + erf), gauss)
}

/// Exact (erf) GELU, `x · Φ(x)`, as PyTorch's `nn.GELU()`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    x * normal_cdf_and_gauss(x).0
}

/// The derivative of [`gelu_erf`]: `Φ(x) + x · φ(x)` with `φ(x) = exp(−x²/2) / √(2π)`.
#[inline(always)]
pub fn gelu_erf_derivative(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let (cdf, gauss) = normal_cdf_and_gauss(x);
    cdf + x * gauss * INV_SQRT_2PI
}

/// Defines `pub fn $name($args)` whose body is compiled three times (AVX-512F, AVX2+FMA,
/// plain) and picked at run time: the kernels above vectorise only where the target features
/// are enabled in the function they are inlined into.
#[macro_export]
#[doc(hidden)]
macro_rules! simd_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $crate::simd_kernel! { $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret $body
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}

crate::simd_kernel! {
    /// Replaces a row of scores by `exp(scale · (row − max row))` and returns their sum: the
    /// unnormalised softmax of `scale · row` (`scale > 0`), as attention kernels need it.
    pub fn softmax_exp_row(row: &mut [f32], scale: f32) -> f32 {
        softmax_exp_row_portable(row, scale)
    }
}

/// Lanes of the accumulators below: the maximum and the sum run as fixed-width vectors.
const LANES: usize = 16;

/// Written so that LLVM vectorises it: fixed-width lane accumulators, no branches.
#[inline(always)]
fn softmax_exp_row_portable(row: &mut [f32], scale: f32) -> f32 {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in maxes.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
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

crate::simd_kernel! {
    /// The softmax backward of one row: with `p = softmax(scale · s)` and `dp = ∂L/∂p`,
    /// replaces `dp` by `∂L/∂s = scale · p ⊙ (dp − Σ p ⊙ dp)`.
    pub fn softmax_grad_row(p: &[f32], dp: &mut [f32], scale: f32) {
        let mut dots = [0f32; LANES];
        let mut pairs = p.chunks_exact(LANES).zip(dp.chunks_exact(LANES));
        for (pc, gc) in &mut pairs {
            for ((acc, &a), &g) in dots.iter_mut().zip(pc).zip(gc) {
                *acc += a * g;
            }
        }
        let tail = p.len() - p.len() % LANES;
        let mut dot: f32 = p[tail..].iter().zip(&dp[tail..]).map(|(a, g)| a * g).sum();
        dot += dots.iter().sum::<f32>();
        for (g, &a) in dp.iter_mut().zip(p) {
            *g = scale * a * (*g - dot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0f32;
        for i in 0..20_000 {
            let x = -(i as f32) * 0.0043;
            let want = x.exp();
            worst = worst.max(((exp_nonpositive(x) - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_nonpositive(-1e4) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(3.0), 1.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_rows_and_their_gradient_match_f64() {
        for n in [1usize, 5, 16, 37, 130] {
            let s: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7).collect();
            let dy: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.3).collect();
            let scale = 0.125f32;
            let max = s.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let e: Vec<f64> = s
                .iter()
                .map(|&x| ((x as f64 - max) * scale as f64).exp())
                .collect();
            let total: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|x| x / total).collect();
            let dot: f64 = p.iter().zip(&dy).map(|(a, &g)| a * g as f64).sum();
            let mut row = s.clone();
            let sum = softmax_exp_row(&mut row, scale);
            assert!((sum as f64 - total).abs() < 1e-5 * total, "n {n}: sum");
            let p32: Vec<f32> = row.iter().map(|x| x / sum).collect();
            let mut grad = dy.clone();
            softmax_grad_row(&p32, &mut grad, scale);
            for i in 0..n {
                assert!((p32[i] as f64 - p[i]).abs() < 1e-6, "n {n}: p[{i}]");
                let want = scale as f64 * p[i] * (dy[i] as f64 - dot);
                assert!((grad[i] as f64 - want).abs() < 1e-6, "n {n}: grad[{i}]");
            }
        }
    }

    #[test]
    fn gelu_and_its_derivative_match_f64() {
        let erf = candle_core::cpu::erf::erf_f64;
        let (mut worst_y, mut worst_d) = (0f64, 0f64);
        for i in -8000..=8000 {
            let x = i as f64 * 1e-3;
            let cdf = 0.5 * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst_y = worst_y.max((gelu_erf(x as f32) as f64 - x * cdf).abs());
            worst_d = worst_d.max((gelu_erf_derivative(x as f32) as f64 - (cdf + x * pdf)).abs());
        }
        assert!(worst_y < 1e-6, "gelu {worst_y}");
        assert!(worst_d < 1e-6, "gelu' {worst_d}");
    }
}
