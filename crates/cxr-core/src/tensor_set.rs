//! Checking a loaded checkpoint against the tensors a model expects.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::Tensor;

use crate::{Error, Result};

/// Checks that `tensors` (read from `file`) hold every `(name, shape)` of `expected`: a missing
/// or mis-shaped tensor is an error naming the tensor and both shapes. Tensors beyond
/// `expected` are an error listing them all (sorted), unless `allow_unexpected`.
pub fn check_tensors(
    expected: &[(String, Vec<usize>)],
    tensors: &HashMap<String, Tensor>,
    file: &Path,
    allow_unexpected: bool,
) -> Result<()> {
    for (name, shape) in expected {
        match tensors.get(name) {
            None => {
                return Err(Error::MissingTensor {
                    file: file.to_path_buf(),
                    tensor: name.clone(),
                    expected: shape.clone(),
                })
            }
            Some(t) if t.dims() != shape.as_slice() => {
                return Err(Error::ShapeMismatch {
                    file: file.to_path_buf(),
                    tensor: name.clone(),
                    expected: shape.clone(),
                    found: t.dims().to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    if allow_unexpected {
        return Ok(());
    }
    let known: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<String> = tensors
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    extra.sort();
    Err(Error::UnexpectedTensors {
        file: file.to_path_buf(),
        tensors: extra,
    })
}
