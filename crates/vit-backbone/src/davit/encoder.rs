//! [`cxr_core::Encoder`] for the DaViT tower.
//!
//! - `pooled`: the post-norm average pool of the last stage (`[B, 2048]` for MI2), the
//!   feature *before* the UniCL projection (use [`DavitModel::encode_image`] or
//!   [`DavitModel::project`] for the projected, L2-normalised 1024-d embedding);
//! - `patch_tokens`: the last stage's map (`[B, 15·15, 2048]` at 480²) with its grid. DaViT
//!   has no token-level final norm (its LayerNorm acts on the pooled vector), so these are the
//!   stage's raw output;
//! - intermediates: layer `i` is stage `i` (`[B, H_i·W_i, C_i]`, strides 4, 8, 16, 32),
//!   so four-level decoders take `layers = [0, 1, 2, 3]`.

use candle_core::{Device, Tensor};
use cxr_core::{
    Encoder, FeatureInfo, FeatureRequest, Features, Intermediate, LayerInfo, Preprocessing,
};

use super::model::DavitModel;

impl Encoder for DavitModel {
    fn forward_features(
        &self,
        pixels: &Tensor,
        request: &FeatureRequest,
    ) -> cxr_core::Result<Features> {
        let in_chans = self.config().in_chans;
        if pixels.rank() != 4 || pixels.dim(1)? != in_chans {
            return Err(cxr_core::Error::BadInput {
                name: "pixels".into(),
                expected: format!("[B, {in_chans}, H, W]"),
                found: pixels.dims().to_vec(),
            });
        }
        let stages = self.config().num_stages();
        if let Some(&bad) = request.layers.iter().find(|&&l| l >= stages) {
            return Err(cxr_core::Error::BadInput {
                name: "request.layers".into(),
                expected: format!("stage indices below {stages}"),
                found: vec![bad],
            });
        }
        let out = self.forward(pixels, request.train)?;
        let intermediates = request
            .layers
            .iter()
            .map(|&layer| Intermediate {
                layer,
                tokens: out.stages[layer].tokens.clone(),
                grid: out.stages[layer].grid,
                cls: None,
            })
            .collect();
        let last = out
            .stages
            .last()
            .ok_or_else(|| candle_core::Error::Msg("DaViT without stages".into()))?;
        Ok(Features {
            patch_tokens: last.tokens.clone(),
            grid: last.grid,
            pooled: out.pooled,
            intermediates,
        })
    }

    fn feature_info(&self) -> FeatureInfo {
        let cfg = self.config();
        let layers: Vec<LayerInfo> = cfg
            .embed_dims
            .iter()
            .zip(cfg.stage_strides())
            .map(|(&channels, stride)| LayerInfo { channels, stride })
            .collect();
        FeatureInfo {
            embed_dim: cfg.out_dim(),
            patch_stride: layers.last().map_or(1, |l| l.stride),
            layers,
        }
    }

    fn preprocessing(&self) -> Preprocessing {
        self.preprocessing_ref().clone()
    }

    fn device(&self) -> &Device {
        DavitModel::device(self)
    }
    fn stochastic_depth_state(&self) -> Option<(u64, u64)> {
        Some(self.drop_path_state())
    }

    fn set_stochastic_depth_state(&self, seed: u64, calls: u64) {
        self.set_drop_path_state(seed, calls);
    }
}
