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
