//! cxr-mini lung masks: which images have them, their ROI boxes, and the square encoder
//! inputs and training targets (the data side of the lung-segmentation protocol, shared by
//! the `lung_segmentation` example and the scaling study).

use std::collections::HashMap;
use std::path::Path;

use crate::{Error, Result, SegBatch};
use candle_core::{Device, Tensor};
use cxr_data::processor::ResizeTarget;
use cxr_data::resize::{resize_u8, Filter};
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Manifest, ManifestSpec, Split};

/// One image with a lung mask.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Image id (file stem).
    pub id: String,
    /// Patient id.
    pub patient: String,
    /// Split of the manifest.
    pub split: Split,
    /// `mask_complete = 1`: the mask covers the whole lung.
    pub complete: bool,
    /// Native size of the image and its mask.
    pub height: usize,
    /// Native width.
    pub width: usize,
    /// The ground-truth mask at native size, row-major.
    pub mask: Vec<bool>,
    /// Native pixels whose centre lies in the annotated ROI box (row-major).
    pub in_roi: Vec<bool>,
    /// Encoder input `[3, S, S]` (the whole image resized to a square, then normalised).
    pub input: Vec<f32>,
    /// Training target `[S, S]` (the mask resized with the same geometry, 0/1).
    pub target: Vec<f32>,
}

/// The encoder's processor with its resize replaced by "whole image to S×S, no crop": a
/// centre crop of a 512×419 radiograph would cut off the lateral lung edges.
pub fn square_processor(encoder_pre: &cxr_core::Preprocessing, size: usize) -> ImageProcessor {
    let mut p = ImageProcessor::from_preprocessing(encoder_pre);
    p.size = ResizeTarget::Exact(size, size);
    p.do_center_crop = false;
    p
}

fn roi_boxes(path: &Path) -> Result<HashMap<String, [f64; 4]>> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let bad = |msg: String| Error::Config(format!("{}: {msg}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(format!("no column `{name}`")))
    };
    let (id, x0, y0, x1, y1) = (
        col("id")?,
        col("roi_x0")?,
        col("roi_y0")?,
        col("roi_x1")?,
        col("roi_y1")?,
    );
    let mut out = HashMap::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let cell = |i: usize| {
            cells
                .get(i)
                .ok_or_else(|| bad(format!("line {}: too few cells", n + 2)))
        };
        let num = |i: usize| -> Result<f64> {
            cell(i)?
                .parse::<f64>()
                .map_err(|e| bad(format!("line {}: {e}", n + 2)))
        };
        out.insert(
            (*cell(id)?).to_string(),
            [num(x0)?, num(y0)?, num(x1)?, num(y1)?],
        );
    }
    Ok(out)
}

/// Every manifest image with a mask, preprocessed for an `size`×`size` encoder input.
pub fn load(data: &Path, processor: &ImageProcessor, size: usize) -> Result<Vec<Sample>> {
    let bad = |msg: String| Error::Config(format!("{}: {msg}", data.display()));
    let manifest = Manifest::from_csv(data.join("labels.csv"), &ManifestSpec::cxr_mini())?;
    let has_mask = manifest
        .label_index("has_mask")
        .ok_or_else(|| bad("no has_mask label".into()))?;
    let complete = manifest
        .label_index("mask_complete")
        .ok_or_else(|| bad("no mask_complete label".into()))?;
    let rois = roi_boxes(&data.join("masks/masks.csv"))?;
    let opts = DecodeOptions::default();
    let mut out = Vec::new();
    for r in &manifest.records {
        if r.labels[has_mask] != Some(1.0) {
            continue;
        }
        let id = r
            .image
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| bad(format!("bad image path {}", r.image.display())))?
            .to_string();
        let split = r
            .split
            .ok_or_else(|| bad(format!("{id}: no split (line {})", r.line)))?;
        let image = decode_file(&r.image, &opts)?;
        let mask_path = data.join("masks").join(format!("{id}.png"));
        let mask_img = decode_file(&mask_path, &opts)?;
        let (h, w) = (image.height, image.width);
        if (mask_img.height, mask_img.width) != (h, w) {
            return Err(bad(format!(
                "{}: mask is {}x{}, image {w}x{h}",
                mask_path.display(),
                mask_img.width,
                mask_img.height
            )));
        }
        let mask: Vec<bool> = mask_img.data.iter().map(|&v| v > 0.5).collect();
        let [x0, y0, x1, y1] = *rois
            .get(&id)
            .ok_or_else(|| bad(format!("{id}: no ROI row in masks.csv")))?;
        let in_roi = (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f64 + 0.5, (i % w) as f64 + 0.5);
                x >= x0 && x < x1 && y >= y0 && y < y1
            })
            .collect();
        let (input, _) = processor.apply(&image)?;
        let mask_u8: Vec<u8> = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
        let target = resize_u8(&mask_u8, (w, h), (size, size), Filter::Bilinear, None)?
            .into_iter()
            .map(|v| if v >= 128 { 1.0 } else { 0.0 })
            .collect();
        out.push(Sample {
            id,
            patient: r.patient.clone(),
            split,
            complete: r.labels[complete] == Some(1.0),
            height: h,
            width: w,
            mask,
            in_roi,
            input,
            target,
        });
    }
    Ok(out)
}

/// Batches of at most `batch` samples: images `[B, 3, S, S]`, masks `[B, 1, S, S]`.
pub fn batches(
    samples: &[&Sample],
    size: usize,
    batch: usize,
    device: &Device,
) -> Result<Vec<SegBatch>> {
    samples
        .chunks(batch.max(1))
        .map(|chunk| {
            let b = chunk.len();
            let px: Vec<f32> = chunk.iter().flat_map(|s| s.input.iter().copied()).collect();
            let mk: Vec<f32> = chunk
                .iter()
                .flat_map(|s| s.target.iter().copied())
                .collect();
            Ok(SegBatch {
                images: Tensor::from_vec(px, (b, 3, size, size), device)?,
                masks: Tensor::from_vec(mk, (b, 1, size, size), device)?,
            })
        })
        .collect()
}
