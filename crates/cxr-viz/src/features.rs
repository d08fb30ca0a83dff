//! Encoder outputs as `f64` matrices for the analyses.

use candle_core::{DType, Tensor};
use cxr_core::{Encoder, FeatureRequest};
use ndarray::Array2;

use crate::{Error, Result};

/// One image's encoder outputs.
#[derive(Debug, Clone)]
pub struct ImageFeatures {
    /// `[D]` pooled embedding.
    pub pooled: Vec<f64>,
    /// `[N, D]` final patch tokens.
    pub patches: Array2<f64>,
    /// `(rows, cols)` of the patch grid.
    pub grid: (usize, usize),
}

/// A `[N, D]` tensor as an `f64` matrix.
pub fn to_array2(t: &Tensor) -> Result<Array2<f64>> {
    let (n, d) = t.dims2()?;
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Array2::from_shape_vec((n, d), v).map_err(|e| Error::bad("tensor", e.to_string()))
}

/// Runs `encoder` on a batch of preprocessed `pixels` (`[B, 3, H, W]`) and returns the pooled
/// embedding and the patch tokens of each image.
pub fn image_features(encoder: &dyn Encoder, pixels: &Tensor) -> Result<Vec<ImageFeatures>> {
    if pixels.rank() != 4 {
        return Err(Error::shape("pixels", "[B, 3, H, W]", pixels.dims()));
    }
    let f = encoder.forward_features(pixels, &FeatureRequest::default())?;
    let b = f.pooled.dim(0)?;
    (0..b)
        .map(|i| {
            Ok(ImageFeatures {
                pooled: f.pooled.get(i)?.to_dtype(DType::F64)?.to_vec1::<f64>()?,
                patches: to_array2(&f.patch_tokens.get(i)?)?,
                grid: f.grid,
            })
        })
        .collect()
}
