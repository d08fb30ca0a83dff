use std::path::Path;

use serde::{Deserialize, Serialize};

/// Resampling filter used when resizing, named as Pillow names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Resample {
    /// Pillow `BILINEAR` (2).
    Bilinear,
    /// Pillow `BICUBIC` (3), the cubic with a = -0.5.
    Bicubic,
}

/// The preprocessing an encoder expects, in the terms of a Hugging Face image processor:
/// resize the shortest edge, centre-crop, rescale to [0, 1], normalise per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Target of the shortest edge before cropping (`None`: resize straight to the crop).
    pub shortest_edge: Option<usize>,
    /// `(height, width)` of the centre crop, which is the encoder's input size.
    pub crop: (usize, usize),
    /// Resampling filter.
    pub resample: Resample,
    /// Multiplier that maps stored 8-bit values to [0, 1] (1/255).
    pub rescale_factor: f64,
    /// Per-channel mean subtracted after rescaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// ImageNet statistics, as DINOv2's `BitImageProcessor` preset uses them at 224.
    pub fn imagenet(size: usize) -> Self {
        Self {
            shortest_edge: Some(size * 256 / 224),
            crop: (size, size),
            resample: Resample::Bicubic,
            rescale_factor: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// The subset of a Hugging Face `preprocessor_config.json` (`BitImageProcessor`,
/// `CLIPImageProcessor`, …) that defines [`Preprocessing`].
#[derive(Debug, Deserialize)]
struct HfProcessorConfig {
    #[serde(default = "yes")]
    do_resize: bool,
    size: Option<HfSize>,
    #[serde(default = "yes")]
    do_center_crop: bool,
    crop_size: Option<HfSize>,
    #[serde(default = "bicubic_code")]
    resample: u8,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "one_over_255")]
    rescale_factor: f64,
    #[serde(default = "yes")]
    do_normalize: bool,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HfSize {
    Square(usize),
    Fields {
        shortest_edge: Option<usize>,
        height: Option<usize>,
        width: Option<usize>,
    },
}

fn yes() -> bool {
    true
}
fn bicubic_code() -> u8 {
    3
}
fn one_over_255() -> f64 {
    1.0 / 255.0
}

fn three(v: Option<Vec<f32>>, default: [f32; 3], what: &str) -> Result<[f32; 3], String> {
    match v {
        None => Ok(default),
        Some(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
        Some(v) if v.len() == 1 => Ok([v[0]; 3]),
        Some(v) => Err(format!("{what} has {} values, expected 1 or 3", v.len())),
    }
}

impl Preprocessing {
    /// Reads a Hugging Face `preprocessor_config.json`.
    pub fn from_hf_config(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        Self::from_hf_json(&text).map_err(|reason| crate::Error::config(path, reason))
    }

    /// Parses the text of a Hugging Face `preprocessor_config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self, String> {
        let cfg: HfProcessorConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let resample = match cfg.resample {
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            other => return Err(format!("resample {other} is not supported (2 or 3)")),
        };
        let (shortest_edge, resized) = match (cfg.do_resize, cfg.size) {
            (false, _) => return Err("do_resize = false is not supported".into()),
            (true, None) => return Err("`size` is missing".into()),
            (true, Some(HfSize::Square(s))) => (None, (s, s)),
            (
                true,
                Some(HfSize::Fields {
                    shortest_edge: Some(s),
                    ..
                }),
            ) => (Some(s), (s, s)),
            (
                true,
                Some(HfSize::Fields {
                    height: Some(h),
                    width: Some(w),
                    ..
                }),
            ) => (None, (h, w)),
            (true, Some(_)) => return Err("`size` needs shortest_edge or height and width".into()),
        };
        let crop = if cfg.do_center_crop {
            match cfg.crop_size {
                Some(HfSize::Square(s)) => (s, s),
                Some(HfSize::Fields {
                    height: Some(h),
                    width: Some(w),
                    ..
                }) => (h, w),
                _ => return Err("do_center_crop needs crop_size with height and width".into()),
            }
        } else if shortest_edge.is_none() {
            resized
        } else {
            return Err("a shortest-edge resize without centre crop gives no fixed size".into());
        };
        let (mean, std) = if cfg.do_normalize {
            (
                three(cfg.image_mean, [0.5; 3], "image_mean")?,
                three(cfg.image_std, [0.5; 3], "image_std")?,
            )
        } else {
            ([0.0; 3], [1.0; 3])
        };
        Ok(Self {
            shortest_edge,
            crop,
            resample,
            rescale_factor: if cfg.do_rescale {
                cfg.rescale_factor
            } else {
                1.0
            },
            mean,
            std,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bit_image_processor_config() {
        let json = r#"{"crop_size":{"height":518,"width":518},"do_center_crop":true,
            "do_convert_rgb":true,"do_normalize":true,"do_rescale":true,"do_resize":true,
            "image_mean":[0.5307,0.5307,0.5307],"image_processor_type":"BitImageProcessor",
            "image_std":[0.2583,0.2583,0.2583],"resample":3,"rescale_factor":0.00392156862745098,
            "size":{"shortest_edge":518}}"#;
        let p = Preprocessing::from_hf_json(json).unwrap();
        assert_eq!(p.shortest_edge, Some(518));
        assert_eq!(p.crop, (518, 518));
        assert_eq!(p.resample, Resample::Bicubic);
        assert_eq!(p.mean, [0.5307; 3]);
        assert_eq!(p.std, [0.2583; 3]);
    }

    #[test]
    fn rejects_what_it_cannot_reproduce() {
        assert!(
            Preprocessing::from_hf_json(r#"{"size":{"shortest_edge":224},"resample":1}"#).is_err()
        );
        assert!(Preprocessing::from_hf_json(
            r#"{"size":{"shortest_edge":224},"do_center_crop":false}"#
        )
        .is_err());
        assert!(Preprocessing::from_hf_json("not json").is_err());
    }
}
