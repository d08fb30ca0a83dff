//! Linear probe on frozen features: one linear layer trained with AdamW (candle, CPU),
//! BCE-with-logits for multi-label and cross-entropy for multi-class targets, early
//! stopping on the validation macro AUROC, repeated over seeds.
//!
//! Features are standardized with the training split's statistics before the layer, so a
//! single learning rate suits encoders of any feature scale.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::targets::macro_auroc;
use crate::{Error, Matrix, Result, Targets};

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbeConfig {
    /// AdamW learning rate (RAD-DINO's probes use 5e-5).
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Minibatch size.
    pub batch_size: usize,
    /// Epoch cap.
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation macro AUROC.
    pub patience: usize,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            lr: 5e-5,
            weight_decay: 1e-4,
            batch_size: 32,
            max_epochs: 1000,
            patience: 50,
        }
    }
}

/// A trained probe.
#[derive(Debug, Clone)]
pub struct LinearProbe {
    mean: Vec<f64>,
    std: Vec<f64>,
    weight: Tensor,
    bias: Tensor,
    multiclass: bool,
    /// Epoch of the kept (best validation) weights.
    pub best_epoch: usize,
    /// Validation macro AUROC of the kept weights.
    pub best_val_auroc: f64,
}

fn design(x: &Matrix, mean: &[f64], std: &[f64]) -> Result<Tensor> {
    let v: Vec<f32> = x
        .standardized(mean, std)
        .iter()
        .map(|&v| v as f32)
        .collect();
    Ok(Tensor::from_vec(v, (x.rows, x.cols), &Device::Cpu)?)
}

/// The loss of one minibatch under the probe's weights `w` (`k x d`) and bias `b` (`k`).
fn batch_loss(
    w: &Tensor,
    b: &Tensor,
    x: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    multiclass: bool,
) -> Result<Tensor> {
    let logits = x.matmul(&w.t()?)?.broadcast_add(b)?;
    loss(&logits, targets, mask, multiclass)
}

/// Mean loss over non-missing entries.
fn loss(logits: &Tensor, targets: &Tensor, mask: &Tensor, multiclass: bool) -> Result<Tensor> {
    if multiclass {
        // targets is one-hot; CE = -sum(onehot * log_softmax) / n
        let logp = cxr_core::ops::log_softmax_last_dim(logits)?;
        let n = logits.dim(0)? as f64;
        Ok(((logp * targets)?.sum_all()? / (-n))?)
    } else {
        // BCE with logits, stable: max(z,0) - z*y + log(1 + exp(-|z|))
        let pos = logits.relu()?;
        let soft = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
        let l = ((pos - (logits * targets)?)? + soft)?;
        let count = mask.sum_all()?.to_scalar::<f32>()?.max(1.0);
        Ok(((l * mask)?.sum_all()? / f64::from(count))?)
    }
}

impl LinearProbe {
    /// Trains on `(x, y)` with early stopping on `(val_x, val_y)`; `seed` fixes the
    /// initialisation and the minibatch order.
    pub fn fit(
        x: &Matrix,
        y: &Targets,
        val_x: &Matrix,
        val_y: &Targets,
        cfg: &LinearProbeConfig,
        seed: u64,
    ) -> Result<Self> {
        y.check(x.rows)?;
        val_y.check(val_x.rows)?;
        if x.cols != val_x.cols || y.width() != val_y.width() {
            return Err(Error::bad("linear probe", "train and val widths differ"));
        }
        if cfg.batch_size == 0 || cfg.lr.is_nan() || cfg.lr <= 0.0 {
            return Err(Error::bad("linear probe", "batch_size and lr must be > 0"));
        }
        let (d, k) = (x.cols, y.width());
        let multiclass = matches!(y, Targets::MultiClass { .. });
        let (mean, std) = x.column_stats();
        let xt = design(x, &mean, &std)?;
        let xv = design(val_x, &mean, &std)?;
        let hot = y.one_hot();
        let yt: Vec<f32> = hot
            .iter()
            .map(|v| f32::from(u8::from(*v == Some(true))))
            .collect();
        let mt: Vec<f32> = hot
            .iter()
            .map(|v| f32::from(u8::from(v.is_some())))
            .collect();
        let yt = Tensor::from_vec(yt, (x.rows, k), &Device::Cpu)?;
        let mt = Tensor::from_vec(mt, (x.rows, k), &Device::Cpu)?;

        // torch.nn.Linear's default init: U(-1/sqrt(d), 1/sqrt(d)), from a seeded generator.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bound = 1.0 / (d as f32).sqrt();
        let w: Vec<f32> = (0..k * d)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let b: Vec<f32> = (0..k).map(|_| rng.random_range(-bound..bound)).collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (k, d), &Device::Cpu)?)?;
        let b = Var::from_tensor(&Tensor::from_vec(b, k, &Device::Cpu)?)?;
        let mut opt = AdamW::new(
            vec![w.clone(), b.clone()],
            ParamsAdamW {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let scores_of = |w: &Tensor, b: &Tensor, x: &Tensor| -> Result<Vec<f64>> {
            let z = x.matmul(&w.t()?)?.broadcast_add(b)?;
            let p = if multiclass {
                candle_nn::ops::softmax_last_dim(&z)?
            } else {
                candle_nn::ops::sigmoid(&z)?
            };
            Ok(p.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
        };
        let mut best = (
            f64::NEG_INFINITY,
            0usize,
            w.as_tensor().copy()?,
            b.as_tensor().copy()?,
        );
        let mut order: Vec<usize> = (0..x.rows).collect();
        for epoch in 1..=cfg.max_epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(cfg.batch_size) {
                let idx = Tensor::from_vec(
                    chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    chunk.len(),
                    &Device::Cpu,
                )?;
                let l = batch_loss(
                    w.as_tensor(),
                    b.as_tensor(),
                    &xt.index_select(&idx, 0)?,
                    &yt.index_select(&idx, 0)?,
                    &mt.index_select(&idx, 0)?,
                    multiclass,
                )?;
                opt.backward_step(&l)?;
            }
            let val = macro_auroc(val_y, &scores_of(w.as_tensor(), b.as_tensor(), &xv)?)
                .unwrap_or(f64::NEG_INFINITY);
            if val > best.0 {
                best = (val, epoch, w.as_tensor().copy()?, b.as_tensor().copy()?);
            } else if epoch - best.1 >= cfg.patience {
                break;
            }
        }
        Ok(Self {
            mean,
            std,
            weight: best.2,
            bias: best.3,
            multiclass,
            best_epoch: best.1,
            best_val_auroc: best.0,
        })
    }

    /// Probabilities (sigmoid per label, or softmax over classes), `n x k` row-major.
    pub fn predict(&self, x: &Matrix) -> Result<Vec<f64>> {
        if x.cols != self.mean.len() {
            return Err(Error::bad(
                "linear probe",
                format!("{} features, probe has {}", x.cols, self.mean.len()),
            ));
        }
        let xt = design(x, &self.mean, &self.std)?;
        let z = xt.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        let p = if self.multiclass {
            candle_nn::ops::softmax_last_dim(&z)?
        } else {
            candle_nn::ops::sigmoid(&z)?
        };
        Ok(p.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
    }
}

/// Test scores of one probe per seed (`seeds` runs, seeds `0..seeds`).
pub fn fit_seeds(
    train: (&Matrix, &Targets),
    val: (&Matrix, &Targets),
    test: &Matrix,
    cfg: &LinearProbeConfig,
    seeds: usize,
) -> Result<Vec<Vec<f64>>> {
    (0..seeds as u64)
        .map(|s| LinearProbe::fit(train.0, train.1, val.0, val.1, cfg, s)?.predict(test))
        .collect()
}

/// Mean and sample standard deviation (`ddof = 1`; 0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One backward step gives both variables the gradient of the masked BCE (multi-label)
    /// and of the cross-entropy (multi-class), in closed form: dL/dz = (p − y)·mask / count,
    /// dW = dZᵀ X, db = Σ_rows dZ.
    #[test]
    fn one_backward_step_gives_w_and_b_their_closed_form_gradients() {
        let dev = Device::Cpu;
        let (n, d, k) = (5, 3, 2);
        let x = cxr_testkit::seeded_normal(&[n, d], 1);
        let w = Var::from_tensor(&cxr_testkit::seeded_normal(&[k, d], 2)).unwrap();
        let b = Var::from_tensor(&cxr_testkit::seeded_normal(&[k], 3)).unwrap();
        let z = x
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        for multiclass in [false, true] {
            // multi-label: one missing entry; multi-class: one-hot rows, nothing missing
            let y: Vec<f32> = (0..n * k)
                .map(|i| {
                    f32::from(u8::from(if multiclass {
                        i % k == (i / k) % k
                    } else {
                        i % 3 == 0
                    }))
                })
                .collect();
            let m: Vec<f32> = (0..n * k)
                .map(|i| if !multiclass && i == 4 { 0.0 } else { 1.0 })
                .collect();
            let (y, m) = (
                Tensor::from_vec(y, (n, k), &dev).unwrap(),
                Tensor::from_vec(m, (n, k), &dev).unwrap(),
            );
            let l = batch_loss(w.as_tensor(), b.as_tensor(), &x, &y, &m, multiclass).unwrap();
            let grads = l.backward().unwrap();
            let (p, count) = if multiclass {
                (candle_nn::ops::softmax_last_dim(&z).unwrap(), n as f64)
            } else {
                let count = f64::from(m.sum_all().unwrap().to_scalar::<f32>().unwrap());
                (candle_nn::ops::sigmoid(&z).unwrap(), count)
            };
            let dz = (((p - &y).unwrap() * &m).unwrap() / count).unwrap();
            let want_w = dz.t().unwrap().matmul(&x).unwrap();
            let want_b = dz.sum(0).unwrap();
            for (name, var, want) in [("w", &w, want_w), ("b", &b, want_b)] {
                let g = grads.get(var.as_tensor()).unwrap();
                cxr_testkit::assert_finite_nonzero_gradient(name, g);
                cxr_testkit::assert_close(
                    &format!("{name} (multiclass {multiclass})"),
                    g,
                    &want,
                    1e-6,
                );
            }
        }
    }
}
