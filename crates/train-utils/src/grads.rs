//! Gradients keyed by parameter name.

use std::collections::{BTreeMap, HashMap};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::Result;

/// Named trainable variables, sorted by name.
pub type NamedVars = Vec<(String, Var)>;

/// The variables of `varmap`, sorted by name (a deterministic order for optimizers,
/// checkpoints and gradient norms).
pub fn named_vars(varmap: &VarMap) -> NamedVars {
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut out: NamedVars = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The variables' current values as plain tensors by name: the weights of an inference model
/// on the same parameters (`VarBuilder::from_tensors`), which then records no graph, or of an
/// export.
pub fn detached_tensors(vars: &[(String, Var)]) -> HashMap<String, Tensor> {
    vars.iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect()
}

/// Gradients by parameter name; a parameter without an entry received no gradient.
#[derive(Debug, Clone, Default)]
pub struct NamedGrads {
    grads: BTreeMap<String, Tensor>,
}

impl NamedGrads {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks the gradients of `vars` out of a backward pass, detached: backward builds them
    /// with ops on the step's graph, and anything kept from them (optimizer moments, EMA
    /// state) would otherwise keep that whole graph alive.
    pub fn from_store(store: &GradStore, vars: &[(String, Var)]) -> Self {
        let grads = vars
            .iter()
            .filter_map(|(name, var)| {
                store
                    .get(var.as_tensor())
                    .map(|g| (name.clone(), g.detach()))
            })
            .collect();
        Self { grads }
    }

    /// The gradient of `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.grads.get(name)
    }

    /// Sets the gradient of `name`.
    pub fn insert(&mut self, name: impl Into<String>, grad: Tensor) {
        self.grads.insert(name.into(), grad);
    }

    /// Removes the gradient of `name`.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.grads.remove(name)
    }

    /// `(name, gradient)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.grads.iter()
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// True when no parameter has a gradient.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// Multiplies every gradient by `factor`.
    pub fn scale(&mut self, factor: f64) -> Result<()> {
        for g in self.grads.values_mut() {
            *g = (&*g * factor)?;
        }
        Ok(())
    }
}
