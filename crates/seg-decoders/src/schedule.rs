//! Learning-rate schedules: linear warm-up, then cosine or polynomial decay.

use serde::{Deserialize, Serialize};

/// The decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Decay {
    /// Half-cosine from the base rate to `min_lr`.
    Cosine,
    /// mmsegmentation's `PolyLR`: `(base − min) · (1 − t/T)^power + min`.
    Poly {
        /// The exponent (mmsegmentation: 0.9 or 1.0).
        power: f64,
    },
    /// No decay.
    Constant,
}

/// Learning rate as a function of the optimiser step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate (reached at the end of warm-up).
    pub base_lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Steps of linear warm-up from `base_lr / warmup_steps`.
    pub warmup_steps: usize,
    /// Total number of steps.
    pub total_steps: usize,
    /// Decay after warm-up.
    pub decay: Decay,
}

impl LrSchedule {
    /// The learning rate at `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let range = self.base_lr - self.min_lr;
        match self.decay {
            Decay::Cosine => self.min_lr + 0.5 * range * (1.0 + (std::f64::consts::PI * t).cos()),
            Decay::Poly { power } => self.min_lr + range * (1.0 - t).powf(power),
            Decay::Constant => self.base_lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule {
            base_lr: 5e-4,
            min_lr: 0.0,
            warmup_steps: 10,
            total_steps: 110,
            decay: Decay::Cosine,
        };
        assert!((s.lr(0) - 5e-5).abs() < 1e-12);
        assert!((s.lr(9) - 5e-4).abs() < 1e-12);
        assert!((s.lr(10) - 5e-4).abs() < 1e-12);
        assert!((s.lr(60) - 2.5e-4).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12);
        let p = LrSchedule {
            decay: Decay::Poly { power: 1.0 },
            ..s
        };
        assert!((p.lr(60) - 2.5e-4).abs() < 1e-12);
    }
}
