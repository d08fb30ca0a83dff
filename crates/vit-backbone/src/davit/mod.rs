//! DaViT, the image tower of MI2 (MedImageInsight), in candle.
//!
//! MI2's open release is a UniCL model whose image encoder is `davit_v1`: four stages of
//! widths 256, 512, 1024, 2048 with 1, 1, 9, 1 (spatial, channel) block pairs, input
//! 480×480. [`DavitModel`] reproduces the MedImageInsight code's math and state-dict names, so
//! the released weights load as they are.
//!
//! # Architecture (as the reference computes it)
//! - Stage `i` starts with a `ConvEmbed` (`convs.{i}`): Conv2d kernel 7/3/3/3, stride
//!   4/2/2/2, padding 3/1/1/1. Stage 0 normalises *after* the conv (LayerNorm(256) on the new
//!   tokens); stages 1–3 *before* it (LayerNorm over the previous stage's width).
//! - Each block, spatial or channel: `x += dw3x3(x)`, `x += drop_path(attn(LN(x)))`,
//!   `x += dw3x3(x)`, `x += drop_path(MLP(LN(x)))`; MLP ratio 4, exact GELU; LayerNorm eps 1e-5.
//! - Spatial blocks: multi-head attention in 12×12 windows, scale `head_dim^-1/2`; grids that
//!   are not multiples of 12 (30×30 and 15×15 at 480²) are zero-padded right/bottom after
//!   the norm, unmasked, and cropped back.
//! - Channel blocks: per group of `C/groups` channels, `softmax(qᵀk · N^-1/2) vᵀ` with `N` the
//!   current token count (dynamic scale). Groups equal heads (8, 16, 32, 64).
//! - Stochastic depth: rates `linspace(0, 0.2, 24)` over the blocks in order (spatial block
//!   `j` of a stage takes entry `offset + 2j`, the channel block `offset + 2j + 1`).
//! - Head: mean over the last map's tokens, LayerNorm (`norms`) → 2048-d `pooled`; UniCL
//!   projects with `pooled @ image_projection` (`[2048, 1024]`) and L2-normalises
//!   ([`DavitModel::encode_image`]).
//!
//! # Key map
//! Parameter names are those of the released checkpoint (`UniCLModel.state_dict()`);
//! [`weights::expected_tensors`] lists them and `tests/fixtures/mi2_image_keys.json` (written
//! by `tests/gen_davit.py` from the PyTorch module on the meta device) holds all 403 names and
//! shapes (362,733,568 parameters), checked by a test:
//!
//! | module | keys |
//! |---|---|
//! | patch embedding `i` | `image_encoder.convs.{i}.proj.{weight,bias}`, `image_encoder.convs.{i}.norm.{weight,bias}` |
//! | spatial block | `image_encoder.blocks.{i}.{j}.spatial_block.{conv1.fn.dw, window_attn.norm, window_attn.fn.qkv, window_attn.fn.proj, conv2.fn.dw, ffn.norm, ffn.fn.net.fc1, ffn.fn.net.fc2}.{weight,bias}` |
//! | channel block | the same under `channel_block` with `channel_attn` for `window_attn` |
//! | final norm | `image_encoder.norms.{weight,bias}` |
//! | projection | `image_projection` `[2048, 1024]`, used as `x @ P` |
//!
//! [`weights::to_canonical`] also accepts the older names the MedImageInsight loader renames
//! (`visual.` → `image_encoder.`, `vision_projection`, the original DaViT `conv_embeds`,
//! `main_blocks`, `cpe.{0,1}.proj`, `attn`, `mlp`, `norm{1,2}`), a bare tower without the
//! `image_encoder.` prefix, and a DDP `module.` prefix. The text tower's tensors
//! (`lang_encoder.*`, `lang_projection`, `logit_scale`) are set aside; anything else unknown
//! is an [`cxr_core::Error::UnexpectedTensors`] error, a missing or mis-shaped tensor a
//! `MissingTensor` / `ShapeMismatch` error naming it.
//!
//! # Weights
//! The release's `vision_model/medimageinsigt-v1.0.0.pt` is, despite its extension, a
//! safetensors file (MedImageInsight reads it with `safetensors.torch.load_file`), so
//! [`DavitModel::from_file`] / [`DavitModel::from_dir`] load it directly: the loader looks at
//! the content, not the name. Genuine PyTorch zip checkpoints (`torch.save`) load too, read by
//! `candle_core::pickle`, which never executes pickle code; to convert one once, run
//! `cargo run --release -p vit-backbone --example convert_pt -- in.pt out.safetensors`.
//!
//! # Preprocessing
//! MI2's evaluation transform (`TEST.CENTER_CROP: false`): resize to 480×480 (bicubic, no
//! crop, aspect not kept), scale to [0, 1], ImageNet mean (0.485, 0.456, 0.406) and std
//! (0.229, 0.224, 0.225); [`mi2_preprocessing`].
//!
//! # Encoder
//! `pooled` is the 2048-d post-norm pool (before projection), `patch_tokens` the last stage's
//! map, intermediates are stages (`layers = [0, 1, 2, 3]`, strides 4, 8, 16, 32); see
//! [`encoder`].
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use vit_backbone::davit::{DavitConfig, DavitModel};
//!
//! let model = DavitModel::from_file(
//!     DavitConfig::mi2(),
//!     "MedImageInsights/2024.09.27/vision_model/medimageinsigt-v1.0.0.pt".as_ref(),
//!     DType::F32,
//!     &Device::Cpu,
//! )?;
//! let pixels = Tensor::zeros((1, 3, 480, 480), DType::F32, &Device::Cpu)?;
//! let embedding = model.encode_image(&pixels)?; // [1, 1024], unit norm
//! # Ok::<(), cxr_core::Error>(())
//! ```

pub mod block;
pub mod channel_attention;
pub mod config;
pub mod conv_embed;
pub mod drop_path;
pub mod dwconv;
pub mod encoder;
pub mod loading;
pub mod model;
pub mod weights;
pub mod window_attention;

pub use config::DavitConfig;
pub use loading::DavitCheckpoint;
pub use model::{mi2_preprocessing, DavitModel, DavitOutput, StageOutput};
