//! The dual encoder: an image tower and a text tower joined in one embedding space.

use candle_core::{Device, Tensor};
use candle_nn::{Init, VarBuilder};
use cxr_core::{Encoder, FeatureRequest};

use crate::text_encoder::{TextEncoder, TokenBatch};
use crate::text_transformer::l2_normalize;
use crate::{Error, Result};

/// Normalised embeddings of one forward pass and the temperature that joins them.
#[derive(Debug, Clone)]
pub struct DualOutput {
    /// `[B_img, P]` unit-norm image embeddings.
    pub image: Tensor,
    /// `[B_txt, P]` unit-norm text embeddings.
    pub text: Tensor,
    /// `exp(logit_scale)`, a scalar tensor.
    pub scale: Tensor,
}

/// UniCL / MedImageInsight-style dual encoder over any [`Encoder`] image tower.
///
/// `encode_image = normalize(image_tower.pooled @ image_projection)`,
/// `encode_text = normalize(text_tower.projected)`, and
/// `similarity = exp(logit_scale) · image · textᵀ`.
///
/// Keys read by [`DualEncoder::new`] (UniCLModel's names): `image_projection`
/// `[D_img, P]` and the scalar `logit_scale` (initialised to 1 as UniCL does; keep it out
/// of weight decay).
pub struct DualEncoder {
    image: Box<dyn Encoder>,
    image_projection: Tensor,
    text: Box<dyn TextEncoder>,
    logit_scale: Tensor,
}

impl std::fmt::Debug for DualEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DualEncoder")
            .field("image_dim", &self.image.feature_info().embed_dim)
            .field("image_projection", &self.image_projection.dims())
            .field("text_embed_dim", &self.text.embed_dim())
            .finish()
    }
}

impl DualEncoder {
    /// Joins `image` and `text`, reading `image_projection` and `logit_scale` from `vb`
    /// (at the checkpoint root).
    pub fn new(
        image: Box<dyn Encoder>,
        text: Box<dyn TextEncoder>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let d_img = image.feature_info().embed_dim;
        let p = text.embed_dim();
        let image_projection = vb.get_with_hints(
            (d_img, p),
            "image_projection",
            Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let logit_scale = vb.get_with_hints((), "logit_scale", Init::Const(1.0))?;
        Ok(Self {
            image,
            image_projection,
            text,
            logit_scale,
        })
    }

    /// The image tower.
    pub fn image_encoder(&self) -> &dyn Encoder {
        self.image.as_ref()
    }

    /// The text tower.
    pub fn text_encoder(&self) -> &dyn TextEncoder {
        self.text.as_ref()
    }

    /// Width of the joint embedding space.
    pub fn embed_dim(&self) -> usize {
        self.text.embed_dim()
    }

    /// The device of the image tower.
    pub fn device(&self) -> &Device {
        self.image.device()
    }

    /// `[B, P]` unit-norm image embeddings of preprocessed `pixels` `[B, 3, H, W]`.
    /// `train` switches the image tower to training mode (dropout, stochastic depth).
    pub fn encode_image(&self, pixels: &Tensor, train: bool) -> Result<Tensor> {
        self.project_image(&self.image_features(pixels, train)?)
    }

    /// `[B, P]` unit-norm image embeddings through a *locked* image tower (LiT, Zhai et al.
    /// 2022): the tower runs in inference mode and its features are detached, so a backward
    /// pass reaches `image_projection` but neither the tower's weights nor its activations.
    pub fn encode_image_locked(&self, pixels: &Tensor) -> Result<Tensor> {
        self.project_image(&self.image_features(pixels, false)?.detach())
    }

    /// `[B, D_img]` pooled image-tower features, before the projection.
    pub fn image_features(&self, pixels: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .image
            .forward_features(pixels, &FeatureRequest::default().train(train))?
            .pooled)
    }

    /// `[B, P]` unit-norm embeddings of pooled image features (`image_projection`, then L2).
    pub fn project_image(&self, features: &Tensor) -> Result<Tensor> {
        l2_normalize(&features.matmul(&self.image_projection)?)
    }

    /// `[B, P]` unit-norm text embeddings.
    pub fn encode_text(&self, batch: &TokenBatch) -> Result<Tensor> {
        l2_normalize(&self.text.encode(batch)?.projected)
    }

    /// `exp(logit_scale)`, the similarity temperature, as a scalar tensor.
    pub fn scale(&self) -> Result<Tensor> {
        Ok(self.logit_scale.exp()?)
    }

    /// Both embeddings and the temperature (UniCLModel's `forward`).
    pub fn forward(&self, pixels: &Tensor, batch: &TokenBatch, train: bool) -> Result<DualOutput> {
        Ok(DualOutput {
            image: self.encode_image(pixels, train)?,
            text: self.encode_text(batch)?,
            scale: self.scale()?,
        })
    }

    /// `[B_img, B_txt]` logits `exp(logit_scale) · image · textᵀ` of already normalised
    /// embeddings.
    pub fn logits(&self, image: &Tensor, text: &Tensor) -> Result<Tensor> {
        let (_, pi) = image.dims2()?;
        let (_, pt) = text.dims2()?;
        if pi != pt {
            return Err(Error::bad_input(
                "text embeddings",
                format!("width {pi} like the image embeddings"),
                text.dims(),
            ));
        }
        Ok(image.matmul(&text.t()?)?.broadcast_mul(&self.scale()?)?)
    }

    /// `[B_img, B_txt]` similarity logits of images and texts (inference mode).
    pub fn similarity(&self, pixels: &Tensor, batch: &TokenBatch) -> Result<Tensor> {
        let img = self.encode_image(pixels, false)?;
        let txt = self.encode_text(batch)?;
        self.logits(&img, &txt)
    }
}
