//! Support for the workspace's tests, benches and examples (a dev-dependency only): where the
//! real data packs are, the tensors a `gen.py` wrote, and the tolerance check the parity tests
//! share, and seeded random tensors.
//!
//! The fixture readers and checks panic, with the file or key in the message, where a library
//! would return an error.
#![deny(missing_docs)]
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

/// The `shared/` folder with the data packs: `$CXR_SHARED` when set, else the `shared/` beside
/// the checkout, else the one beside the folder holding the checkout (a worktree's layout).
pub fn shared_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CXR_SHARED") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let beside = root.join("../shared");
    if beside.is_dir() {
        beside
    } else {
        root.join("../../shared")
    }
}

/// `shared/data/<name>` (e.g. `cxr-mini`), which must exist.
pub fn pack(name: &str) -> PathBuf {
    let p = shared_dir().join("data").join(name);
    assert!(
        p.is_dir(),
        "{} not found: set CXR_SHARED to the folder holding data/{name}",
        p.display()
    );
    p
}

/// The tensors `gen.py` wrote for one case of a crate's parity tests:
/// `<crate_dir>/tests/fixtures/<case>/tensors.safetensors` (pass `env!("CARGO_MANIFEST_DIR")`).
pub fn gen_case(crate_dir: &str, case: &str) -> Tensors {
    Tensors::load(format!(
        "{crate_dir}/tests/fixtures/{case}/tensors.safetensors"
    ))
}

/// The named tensors of one safetensors fixture file.
#[derive(Debug)]
pub struct Tensors {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Tensors {
    /// Reads `path` onto the CPU.
    pub fn load(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { path, tensors }
    }

    /// The tensor `key` converted to `dtype`.
    pub fn get(&self, key: &str, dtype: DType) -> Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: no tensor {key}", self.path.display()))
            .to_dtype(dtype)
            .unwrap()
    }

    /// The tensor `key` as a trainable variable of `dtype`.
    pub fn var(&self, key: &str, dtype: DType) -> Var {
        Var::from_tensor(&self.get(key, dtype)).unwrap()
    }

    /// Whether the file holds `key`.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The keys starting with `prefix`, with the prefix stripped, sorted.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
}

/// Asserts that the gradient `g` of `what` is finite everywhere and not all zero: the check of
/// every trainable module's test (an op built without a backward pass gives no gradient or
/// zeros).
pub fn assert_finite_nonzero_gradient(what: &str, g: &Tensor) {
    let v: Vec<f32> = g
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(
        v.iter().all(|x| x.is_finite()),
        "{what}: non-finite gradient"
    );
    assert!(v.iter().any(|&x| x != 0.0), "{what}: zero gradient");
}

/// Asserts that `got` matches the reference `want`: the same shape, every value finite, and
/// the largest absolute difference at most `tol`, scaled by the reference's largest magnitude
/// when that is above 1 (so large losses and logits are held to a relative bound).
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let flat = |t: &Tensor| -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (g, w) = (flat(got), flat(want));
    if let Some(v) = g.iter().find(|v| !v.is_finite()) {
        panic!("{what}: non-finite value {v}");
    }
    let scale = w.iter().fold(1f64, |m, v| m.max(v.abs()));
    let worst = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= tol * scale,
        "{what}: max abs diff {worst:e} > {:e}",
        tol * scale
    );
}

/// `Tensor::randn(mean, std, shape, &Device::Cpu)` drawn from a stream seeded by `seed` (see
/// [`seeded_normal`]): the drop-in for tests that compare two computations on random inputs.
pub fn seeded_randn(
    mean: f32,
    std: f32,
    shape: impl Into<candle_core::Shape>,
    seed: u64,
) -> candle_core::Result<Tensor> {
    let shape: candle_core::Shape = shape.into();
    seeded_normal(shape.dims(), seed).affine(std as f64, mean as f64)
}

/// A `shape` f32 tensor (CPU) of standard normal draws from a stream seeded by `seed`
/// (Box–Muller over ChaCha8). candle's CPU `randn` cannot be seeded, and a tolerance that most
/// draws meet fails on some: tests that compare two computations draw from here, so every run
/// checks the same numbers.
pub fn seeded_normal(shape: &[usize], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        v.extend([(r * t.cos()) as f32, (r * t.sin()) as f32]);
    }
    v.truncate(n);
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_tolerance_scales_with_large_references() {
        // 5e-4 off at a reference magnitude of 100: within 1e-5 · 100
        assert_close("scaled", &t(&[100.0005, 1.0]), &t(&[100.0, 1.0]), 1e-5);
    }

    #[test]
    #[should_panic(expected = "small: max abs diff")]
    fn small_references_are_held_to_the_absolute_tolerance() {
        assert_close("small", &t(&[0.5, 0.2501]), &t(&[0.5, 0.25]), 1e-5);
    }

    #[test]
    #[should_panic(expected = "nan: non-finite value")]
    fn a_nan_fails_whatever_the_tolerance() {
        assert_close("nan", &t(&[0.5, f32::NAN]), &t(&[0.5, 0.25]), 1.0);
    }

    #[test]
    fn shared_data_is_found() {
        assert!(pack("cxr-mini").join("labels.csv").is_file());
    }

    #[test]
    fn seeded_normal_repeats_and_looks_standard_normal() {
        let a = seeded_normal(&[3, 1001], 5);
        let v: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let again: Vec<f32> = seeded_normal(&[3, 1001], 5)
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(v, again);
        let other: Vec<f32> = seeded_normal(&[3, 1001], 6)
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_ne!(v, other);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // 3003 draws: the standard errors are 0.018 (mean) and 0.026 (variance)
        assert!(
            mean.abs() < 0.08 && (var - 1.0).abs() < 0.12,
            "{mean} {var}"
        );
    }
}
