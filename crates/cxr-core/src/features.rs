use candle_core::Tensor;

/// What a caller wants from one forward pass besides the pooled and final patch outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureRequest {
    /// Indices of intermediate layers to return (0-based block index; for hierarchical
    /// encoders, the stage index). Out-of-range indices are an error.
    pub layers: Vec<usize>,
    /// Training mode: stochastic depth and dropout are active.
    pub train: bool,
}

impl FeatureRequest {
    /// Asks for the given intermediate layers, in inference mode.
    pub fn with_layers(layers: impl Into<Vec<usize>>) -> Self {
        Self {
            layers: layers.into(),
            train: false,
        }
    }

    /// The same request with training mode set.
    pub fn train(mut self, train: bool) -> Self {
        self.train = train;
        self
    }
}

/// One intermediate layer's output, as a token map.
#[derive(Debug, Clone)]
pub struct Intermediate {
    /// The layer (block or stage) index it came from.
    pub layer: usize,
    /// `[B, N, C]` spatial tokens (no class or register tokens), before any final norm.
    pub tokens: Tensor,
    /// `(rows, cols)` of the token grid: `N = rows * cols`.
    pub grid: (usize, usize),
    /// The class token of that layer, `[B, C]`, for encoders that have one.
    pub cls: Option<Tensor>,
}

/// The named outputs of [`crate::Encoder::forward_features`].
#[derive(Debug, Clone)]
pub struct Features {
    /// `[B, D]` image embedding: the normed class token for ViTs, the pooled map for CNN-like
    /// encoders.
    pub pooled: Tensor,
    /// `[B, N, D]` final spatial tokens (after the encoder's final norm).
    pub patch_tokens: Tensor,
    /// `(rows, cols)` of `patch_tokens`.
    pub grid: (usize, usize),
    /// The requested intermediate layers, in the order they were requested.
    pub intermediates: Vec<Intermediate>,
}

impl Features {
    /// Patch tokens as a channels-first map `[B, D, rows, cols]`, the layout conv heads use.
    pub fn patch_map(&self) -> candle_core::Result<Tensor> {
        tokens_to_map(&self.patch_tokens, self.grid)
    }

    /// The intermediate for `layer`, if it was requested.
    pub fn intermediate(&self, layer: usize) -> Option<&Intermediate> {
        self.intermediates.iter().find(|i| i.layer == layer)
    }
}

impl Intermediate {
    /// Tokens as a channels-first map `[B, C, rows, cols]`.
    pub fn map(&self) -> candle_core::Result<Tensor> {
        tokens_to_map(&self.tokens, self.grid)
    }
}

fn tokens_to_map(tokens: &Tensor, (rows, cols): (usize, usize)) -> candle_core::Result<Tensor> {
    let (b, n, c) = tokens.dims3()?;
    if n != rows * cols {
        candle_core::bail!("{n} tokens do not fill a {rows}x{cols} grid");
    }
    tokens.transpose(1, 2)?.reshape((b, c, rows, cols))
}

/// Width and stride of one intermediate layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// Channels `C` of the layer's tokens.
    pub channels: usize,
    /// Input pixels per token along each side.
    pub stride: usize,
}

/// Static facts about an encoder's outputs, so heads can size themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureInfo {
    /// Width `D` of `pooled` and `patch_tokens`.
    pub embed_dim: usize,
    /// Input pixels per final patch token along each side.
    pub patch_stride: usize,
    /// One entry per selectable intermediate layer (index = layer index).
    pub layers: Vec<LayerInfo>,
}

impl FeatureInfo {
    /// The number of selectable intermediate layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The `n` last layers spread evenly, the usual choice for four-level decoders
    /// (blocks 2, 5, 8, 11 of a 12-block ViT).
    pub fn evenly_spaced_layers(&self, n: usize) -> Vec<usize> {
        let total = self.layers.len();
        if n == 0 || total == 0 {
            return Vec::new();
        }
        let n = n.min(total);
        let step = total / n;
        (0..n).map(|i| total - 1 - (n - 1 - i) * step).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn evenly_spaced_layers_of_vit_b() {
        let info = FeatureInfo {
            embed_dim: 768,
            patch_stride: 14,
            layers: vec![
                LayerInfo {
                    channels: 768,
                    stride: 14
                };
                12
            ],
        };
        assert_eq!(info.evenly_spaced_layers(4), vec![2, 5, 8, 11]);
        assert_eq!(info.evenly_spaced_layers(1), vec![11]);
        assert_eq!(info.num_layers(), 12);
    }

    #[test]
    fn patch_map_is_row_major() {
        // token i carries value i in every channel
        let t = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((1, 6, 1))
            .unwrap()
            .repeat((1, 1, 2))
            .unwrap();
        let f = Features {
            pooled: Tensor::zeros((1, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
            patch_tokens: t,
            grid: (2, 3),
            intermediates: vec![],
        };
        let m = f.patch_map().unwrap();
        assert_eq!(m.dims(), &[1, 2, 2, 3]);
        let row1: Vec<f32> = m
            .get(0)
            .unwrap()
            .get(1)
            .unwrap()
            .get(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(row1, vec![3., 4., 5.]);
        let bad = Features { grid: (4, 4), ..f };
        assert!(bad.patch_map().is_err());
    }
}
