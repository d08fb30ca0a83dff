//! A Hugging Face image processor (`preprocessor_config.json`), reproducing transformers'
//! PIL-backed `BitImageProcessor` (`BitImageProcessorPil` in transformers 5; the class RAD-DINO
//! and DINOv2 name) to within float rounding.
//!
//! The steps, as transformers runs them on an 8-bit image:
//! 1. `do_convert_rgb`: gray becomes R = G = B; every step below then acts on each channel
//!    alike, so we process the gray plane once and replicate it.
//! 2. `do_resize`: `size = {"shortest_edge": s}` → the short side becomes `s` and the long
//!    side `int(s * long / short)` (truncated); `{"height", "width"}` → that size. Pillow
//!    `resize` with the configured filter, on 8-bit data ([`crate::resize`]).
//! 3. `do_center_crop`: offsets `(H - h) // 2`, `(W - w) // 2`; zero padding when the crop is
//!    larger than the image, as `transformers.image_transforms.center_crop` pads.
//! 4. `do_rescale`: `f32(f64(v) * rescale_factor)`.
//! 5. `do_normalize`: `(x - mean) / std` in `f32`.
//!
//! DICOM and 16-bit inputs enter this 8-bit pipeline through [`GrayImage::to_u8`]
//! (`round(x * 255)` after our windowing), the 8-bit export a user would otherwise make.

use std::path::Path;

use candle_core::{Device, Tensor};
use cxr_core::{Preprocessing, Resample};
use serde_json::Value;

use crate::resize::{resize_u8, Filter};
use crate::{Error, GrayImage, Result};

/// How `size` asks to resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    /// The short side becomes this; the long side keeps the aspect ratio (truncated).
    ShortestEdge(usize),
    /// Exactly `(height, width)`.
    Exact(usize, usize),
}

/// The fields of a `BitImageProcessor` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Resize at all.
    pub do_resize: bool,
    /// The resize target.
    pub size: ResizeTarget,
    /// Resampling filter.
    pub resample: Filter,
    /// Centre-crop at all.
    pub do_center_crop: bool,
    /// `(height, width)` of the crop.
    pub crop_size: (usize, usize),
    /// Multiply by `rescale_factor` at all.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Normalise at all.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation.
    pub image_std: [f32; 3],
}

/// CLIP statistics, `BitImageProcessor`'s defaults when the file names none.
/// The largest `size` or `crop_size` side a configuration may ask for. No encoder takes
/// larger inputs, and the resize allocates for the target: a mistyped size must be a
/// configuration error, not an allocation of tens of gigabytes.
pub const MAX_SIDE: usize = 1 << 14;

/// The most pixels the resize step may produce for one image (a shortest-edge resize of a very
/// elongated image grows its long side in proportion).
pub const MAX_RESIZED_PIXELS: usize = 1 << 28;

const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl Default for ImageProcessor {
    /// transformers' `BitImageProcessor` defaults.
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ResizeTarget::ShortestEdge(224),
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
        }
    }
}

impl ImageProcessor {
    /// Reads a `preprocessor_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the JSON text of a `preprocessor_config.json`; `path` names it in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::config(path, format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| Error::config(path, "top level is not an object"))?;
        let err = |m: String| Error::config(path, m);
        let mut p = Self::default();
        let flag = |key: &str, default: bool| -> Result<bool> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(err(format!("`{key}` must be a boolean, got {other}"))),
            }
        };
        p.do_resize = flag("do_resize", p.do_resize)?;
        p.do_center_crop = flag("do_center_crop", p.do_center_crop)?;
        p.do_rescale = flag("do_rescale", p.do_rescale)?;
        p.do_normalize = flag("do_normalize", p.do_normalize)?;
        if !flag("do_convert_rgb", true)? {
            // gray inputs stay single-channel in transformers then, which no 3-channel encoder takes
            return Err(err(
                "`do_convert_rgb: false` is not supported (gray X-rays need RGB replication)"
                    .into(),
            ));
        }
        if let Some(size) = obj.get("size").filter(|s| !s.is_null()) {
            p.size = parse_size(size).map_err(|m| err(format!("`size`: {m}")))?;
        }
        if let Some(crop) = obj.get("crop_size").filter(|s| !s.is_null()) {
            p.crop_size = match parse_size(crop).map_err(|m| err(format!("`crop_size`: {m}")))? {
                ResizeTarget::Exact(h, w) => (h, w),
                ResizeTarget::ShortestEdge(s) => (s, s),
            };
        }
        if let Some(r) = obj.get("resample").filter(|s| !s.is_null()) {
            p.resample = match r.as_u64() {
                Some(2) => Filter::Bilinear,
                Some(3) => Filter::Bicubic,
                _ => {
                    return Err(err(format!(
                        "`resample` {r}: only 2 (bilinear) and 3 (bicubic) are supported"
                    )))
                }
            };
        }
        if let Some(f) = obj.get("rescale_factor").filter(|s| !s.is_null()) {
            p.rescale_factor = f
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| err(format!("`rescale_factor` {f} is not a number")))?;
        }
        if let Some(m) = obj.get("image_mean").filter(|s| !s.is_null()) {
            p.image_mean = parse_triplet(m).map_err(|m| err(format!("`image_mean`: {m}")))?;
        }
        if let Some(s) = obj.get("image_std").filter(|s| !s.is_null()) {
            p.image_std = parse_triplet(s).map_err(|m| err(format!("`image_std`: {m}")))?;
            if p.image_std.contains(&0.0) {
                return Err(err("`image_std` has a zero".into()));
            }
        }
        Ok(p)
    }

    /// The encoder-contract description of this processor.
    pub fn preprocessing(&self) -> Preprocessing {
        Preprocessing {
            shortest_edge: match (self.do_resize, self.size) {
                (true, ResizeTarget::ShortestEdge(s)) => Some(s),
                _ => None,
            },
            crop: self.output_size_hint(),
            resample: match self.resample {
                Filter::Bilinear => Resample::Bilinear,
                Filter::Bicubic => Resample::Bicubic,
            },
            rescale_factor: if self.do_rescale {
                self.rescale_factor
            } else {
                1.0
            },
            mean: if self.do_normalize {
                self.image_mean
            } else {
                [0.0; 3]
            },
            std: if self.do_normalize {
                self.image_std
            } else {
                [1.0; 3]
            },
        }
    }

    /// A processor from the encoder contract (shortest-edge resize, centre crop).
    pub fn from_preprocessing(p: &Preprocessing) -> Self {
        Self {
            do_resize: true,
            size: match p.shortest_edge {
                Some(s) => ResizeTarget::ShortestEdge(s),
                None => ResizeTarget::Exact(p.crop.0, p.crop.1),
            },
            resample: Filter::from(p.resample),
            do_center_crop: true,
            crop_size: p.crop,
            do_rescale: true,
            rescale_factor: p.rescale_factor,
            do_normalize: true,
            image_mean: p.mean,
            image_std: p.std,
        }
    }

    fn output_size_hint(&self) -> (usize, usize) {
        if self.do_center_crop {
            self.crop_size
        } else {
            match self.size {
                ResizeTarget::Exact(h, w) => (h, w),
                ResizeTarget::ShortestEdge(s) => (s, s),
            }
        }
    }

    /// `(height, width)` after the resize step for an input of `(h, w)`.
    pub fn resized_size(&self, (h, w): (usize, usize)) -> (usize, usize) {
        if !self.do_resize {
            return (h, w);
        }
        match self.size {
            ResizeTarget::Exact(th, tw) => (th, tw),
            ResizeTarget::ShortestEdge(s) => {
                // transformers: new_long = int(s * long / short), in Python floats
                let long =
                    |long: usize, short: usize| ((s as f64) * long as f64 / short as f64) as usize;
                if w <= h {
                    (long(h, w), s)
                } else {
                    (s, long(w, h))
                }
            }
        }
    }

    /// The 8-bit stages (resize, crop): returns the plane and its `(height, width)`.
    pub fn resize_and_crop_u8(
        &self,
        src: &[u8],
        (h, w): (usize, usize),
    ) -> Result<(Vec<u8>, (usize, usize))> {
        let (rh, rw) = self.resized_size((h, w));
        if rh.saturating_mul(rw) > MAX_RESIZED_PIXELS {
            return Err(Error::Invalid(format!(
                "a {h}x{w} image resized to {rh}x{rw} is more than {MAX_RESIZED_PIXELS} pixels \
                 (cxr_data::processor::MAX_RESIZED_PIXELS)"
            )));
        }
        let resized = if (rh, rw) != (h, w) {
            resize_u8(src, (w, h), (rw, rh), self.resample, None)?
        } else {
            src.to_vec()
        };
        if !self.do_center_crop {
            return Ok((resized, (rh, rw)));
        }
        let (ch, cw) = self.crop_size;
        Ok((center_crop(&resized, (rh, rw), (ch, cw)), (ch, cw)))
    }

    /// Processes an 8-bit gray plane to `[3, H, W]` `f32` values (channels-first, flat).
    pub fn apply_u8(
        &self,
        src: &[u8],
        (h, w): (usize, usize),
    ) -> Result<(Vec<f32>, (usize, usize))> {
        let (plane, (oh, ow)) = self.resize_and_crop_u8(src, (h, w))?;
        let n = oh * ow;
        let mut out = vec![0f32; 3 * n];
        for c in 0..3 {
            // per-channel lookup: 256 possible inputs, computed with transformers' dtypes
            let lut: Vec<f32> = (0..=255u8)
                .map(|v| {
                    let mut x = if self.do_rescale {
                        (f64::from(v) * self.rescale_factor) as f32
                    } else {
                        f32::from(v)
                    };
                    if self.do_normalize {
                        x = (x - self.image_mean[c]) / self.image_std[c];
                    }
                    x
                })
                .collect();
            for (o, &v) in out[c * n..(c + 1) * n].iter_mut().zip(&plane) {
                *o = lut[usize::from(v)];
            }
        }
        Ok((out, (oh, ow)))
    }

    /// Processes a decoded image (through its 8-bit equivalent) to `[3, H, W]` values.
    pub fn apply(&self, image: &GrayImage) -> Result<(Vec<f32>, (usize, usize))> {
        self.apply_u8(&image.to_u8(), (image.height, image.width))
    }

    /// [`Self::apply`] as a `[3, H, W]` tensor on `device`.
    pub fn apply_tensor(&self, image: &GrayImage, device: &Device) -> Result<Tensor> {
        let (v, (h, w)) = self.apply(image)?;
        Ok(Tensor::from_vec(v, (3, h, w), device)?)
    }

    /// Where this configuration came from, for messages.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// HF's `center_crop`, including its zero padding of too-small images.
pub fn center_crop(src: &[u8], (h, w): (usize, usize), (ch, cw): (usize, usize)) -> Vec<u8> {
    // offsets in the (possibly padded) frame, as transformers computes them
    let (nh, nw) = (ch.max(h), cw.max(w));
    let top_pad = (nh - h).div_ceil(2);
    let left_pad = (nw - w).div_ceil(2);
    let top = (h as i64 - ch as i64).div_euclid(2) + top_pad as i64;
    let left = (w as i64 - cw as i64).div_euclid(2) + left_pad as i64;
    let mut out = vec![0u8; ch * cw];
    for y in 0..ch {
        let py = top + y as i64 - top_pad as i64; // row in src
        if py < 0 || py >= h as i64 {
            continue;
        }
        for x in 0..cw {
            let px = left + x as i64 - left_pad as i64;
            if px >= 0 && px < w as i64 {
                out[y * cw + x] = src[py as usize * w + px as usize];
            }
        }
    }
    out
}

fn parse_size(v: &Value) -> std::result::Result<ResizeTarget, String> {
    let pos = |v: &Value| {
        v.as_u64()
            .filter(|&x| x > 0 && x <= MAX_SIDE as u64)
            .map(|x| x as usize)
    };
    if let Some(s) = pos(v) {
        return Ok(ResizeTarget::Exact(s, s));
    }
    let o = v
        .as_object()
        .ok_or_else(|| format!("{v} is neither a number nor an object"))?;
    if let Some(s) = o.get("shortest_edge").filter(|x| !x.is_null()) {
        if o.get("longest_edge").is_some_and(|x| !x.is_null()) {
            return Err("`longest_edge` is not supported".into());
        }
        return pos(s)
            .map(ResizeTarget::ShortestEdge)
            .ok_or_else(|| format!("shortest_edge {s} is not an integer in 1..={MAX_SIDE}"));
    }
    match (o.get("height").and_then(pos), o.get("width").and_then(pos)) {
        (Some(h), Some(w)) => Ok(ResizeTarget::Exact(h, w)),
        _ => Err(format!(
            "{v} has neither `shortest_edge` nor `height` and `width` (integers in \
             1..={MAX_SIDE})"
        )),
    }
}

fn parse_triplet(v: &Value) -> std::result::Result<[f32; 3], String> {
    // the values are applied in f32, as transformers does: 1e308 is a number in JSON, not in f32
    let finite = |x: &Value| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite());
    if v.is_number() {
        return finite(v)
            .map(|x| [x; 3])
            .ok_or_else(|| format!("{v} is not a finite f32"));
    }
    let a = v
        .as_array()
        .ok_or_else(|| format!("{v} is not a number or a list"))?;
    match a.iter().map(finite).collect::<Option<Vec<_>>>() {
        Some(x) if x.len() == 3 => Ok([x[0], x[1], x[2]]),
        Some(x) if x.len() == 1 => Ok([x[0]; 3]),
        _ => Err(format!("{v} is not a list of 3 finite f32 numbers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_size_truncates_like_python() {
        let p = ImageProcessor {
            size: ResizeTarget::ShortestEdge(518),
            ..Default::default()
        };
        // 512x419 (w x h): short = 419 → long = int(518 * 512 / 419) = 632
        assert_eq!(p.resized_size((419, 512)), (518, 632));
        assert_eq!(p.resized_size((512, 474)), (559, 518));
        assert_eq!(p.resized_size((100, 100)), (518, 518));
    }

    #[test]
    fn center_crop_offsets_and_padding() {
        let src: Vec<u8> = (0..20).collect(); // 4 rows x 5 cols
        assert_eq!(center_crop(&src, (4, 5), (2, 2)), vec![6, 7, 11, 12]);
        // 3x3 crop of a 2x2 image: numpy pads 1 before (ceil(1/2)), crop starts at -1//2 = -1 + 1
        let src = [1u8, 2, 3, 4];
        assert_eq!(
            center_crop(&src, (2, 2), (3, 3)),
            vec![0, 0, 0, 0, 1, 2, 0, 3, 4]
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let p = Path::new("cfg.json");
        let e = ImageProcessor::from_json_str(r#"{"resample": 1}"#, p).unwrap_err();
        assert!(
            e.to_string().contains("resample") && e.to_string().contains("cfg.json"),
            "{e}"
        );
        let e = ImageProcessor::from_json_str(r#"{"image_mean": [1, 2]}"#, p).unwrap_err();
        assert!(e.to_string().contains("image_mean"), "{e}");
        assert!(ImageProcessor::from_json_str("[", p).is_err());
        let ok = ImageProcessor::from_json_str(
            r#"{"size": {"height": 7, "width": 9}, "crop_size": 5}"#,
            p,
        )
        .unwrap();
        assert_eq!(ok.size, ResizeTarget::Exact(7, 9));
        assert_eq!(ok.crop_size, (5, 5));
    }

    /// Sizes that would allocate tens of gigabytes, and means or stds that are numbers in JSON
    /// but not in f32, are configuration errors naming the field (a 4e9 shortest edge used to
    /// abort the process on a failed 68 GB allocation; a 1e308 mean gave infinite inputs).
    #[test]
    fn out_of_range_values_are_config_errors() {
        let p = Path::new("cfg.json");
        for (json, field) in [
            (
                r#"{"size": {"shortest_edge": 4000000000}}"#,
                "`size`: shortest_edge 4000000000 is not an integer in 1..=16384",
            ),
            (
                r#"{"size": {"shortest_edge": 0}}"#,
                "`size`: shortest_edge 0",
            ),
            (
                r#"{"crop_size": {"height": 16385, "width": 5}}"#,
                "`crop_size`",
            ),
            (r#"{"crop_size": 20000}"#, "`crop_size`"),
            (
                r#"{"image_mean": [-1e308, 0, 0]}"#,
                "`image_mean`: [-1e+308,0,0] is not a list of 3 finite f32",
            ),
            (
                r#"{"image_std": 1e39}"#,
                "`image_std`: 1e+39 is not a finite f32",
            ),
        ] {
            let e = ImageProcessor::from_json_str(json, p).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{json}: {e:?}");
            assert!(e.to_string().contains(field), "{json}: {e}");
        }
        let edge = ImageProcessor::from_json_str(r#"{"size": {"shortest_edge": 16384}}"#, p);
        assert_eq!(edge.unwrap().size, ResizeTarget::ShortestEdge(16384));
    }

    /// A shortest-edge resize of a very elongated image is refused before it allocates.
    #[test]
    fn elongated_resize_beyond_the_limit_is_refused() {
        let p = ImageProcessor {
            size: ResizeTarget::ShortestEdge(16384),
            ..Default::default()
        };
        let e = p
            .resize_and_crop_u8(&[0u8; 4 * 1000], (4, 1000))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: a 4x1000 image resized to 16384x4096000 is more than 268435456 \
             pixels (cxr_data::processor::MAX_RESIZED_PIXELS)"
        );
        let ok = ImageProcessor::default().resize_and_crop_u8(&[0u8; 4 * 100], (4, 100));
        assert!(ok.is_ok());
    }
}
