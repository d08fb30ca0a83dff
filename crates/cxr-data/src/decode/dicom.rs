//! DICOM through dicom-rs (`dicom-object` + `dicom-pixeldata`).
//!
//! The transform from stored values to `[0, 1]`, in order (PS3.3 C.11):
//!
//! 1. **Stored value**: the decoded sample, masked to *Bits Stored* bits (bits above *High Bit*
//!    may hold overlays) and sign-extended when *Pixel Representation* is 1.
//! 2. **Modality LUT**: `m = slope * v + intercept` from *Rescale Slope/Intercept*
//!    (identity when absent). A Modality LUT Sequence is not applied (rare in projection
//!    radiography); the decoder reports it as unsupported rather than silently ignoring it.
//! 3. **VOI**, the first that applies, per [`VoiChoice`] (default [`VoiChoice::Auto`]):
//!    - *VOI LUT Sequence* present: the first LUT; `m` is looked up (clamped to the table) and
//!      divided by `2^LUT bits - 1`;
//!    - *Window Center/Width* present: the first pair, with *VOI LUT Function*
//!      `LINEAR` (default; PS3.3 C.11.2.1.2.1: `((m - (c - 0.5)) / (w - 1) + 0.5)` clamped to
//!      `[0, 1]`), `LINEAR_EXACT` (`(m - c) / w + 0.5`, clamped) or `SIGMOID`
//!      (`1 / (1 + exp(-4 (m - c) / w))`);
//!    - neither: the full range the stored bits can express after the modality LUT,
//!      `(m - m_min) / (m_max - m_min)`, so an 8-bit image maps to `v / 255` exactly.
//! 4. **MONOCHROME1** is inverted, `y = 1 - y`, so 0 is always black as in MONOCHROME2.
//!
//! [`VoiChoice::MinMax`] replaces step 3 by the image's own min–max after the modality LUT
//! (the RAD-DINO model card's recipe for DICOM → PNG).

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    PhotometricInterpretation, PixelDecoder, PixelRepresentation, VoiLutFunction,
};

use crate::{Error, GrayImage, Result};

/// How stored DICOM values become display intensities (step 3 of the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoiChoice {
    /// VOI LUT Sequence, else the first window, else the Bits Stored range.
    #[default]
    Auto,
    /// Ignore VOI attributes; scale the Bits Stored range (after the modality LUT).
    BitsStoredRange,
    /// Ignore VOI attributes; min–max over the image's own values.
    MinMax,
}

/// Options for DICOM decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DicomOptions {
    /// The VOI choice.
    pub voi: VoiChoice,
    /// Frame of a multi-frame object (0-based).
    pub frame: u32,
}

/// Decodes a DICOM file held in memory (with or without the 128-byte preamble).
pub fn decode_dicom(bytes: &[u8], path: &Path, opts: &DicomOptions) -> Result<GrayImage> {
    let body = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        &bytes[128..]
    } else {
        bytes
    };
    let obj = OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(body)
        .map_err(|e| Error::decode(path, format!("DICOM parse: {e}")))?;
    decode_object(&obj, path, opts)
}

/// Decodes an already parsed DICOM object.
pub fn decode_object(
    obj: &DefaultDicomObject,
    path: &Path,
    opts: &DicomOptions,
) -> Result<GrayImage> {
    if obj
        .element_opt(tags::MODALITY_LUT_SEQUENCE)
        .ok()
        .flatten()
        .is_some()
    {
        return Err(Error::unsupported(path, "Modality LUT Sequence"));
    }
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let decoded = obj.decode_pixel_data().map_err(|e| {
        let msg = e.to_string();
        if msg.contains("nsupported")
            || msg.contains("not supported")
            || msg.contains("Unknown transfer syntax")
        {
            Error::unsupported(path, format!("transfer syntax {ts}: {msg}"))
        } else {
            Error::decode(path, format!("pixel data (transfer syntax {ts}): {msg}"))
        }
    })?;

    let (rows, cols) = (decoded.rows() as usize, decoded.columns() as usize);
    let pi = decoded.photometric_interpretation().clone();
    let invert = match pi {
        PhotometricInterpretation::Monochrome1 => true,
        PhotometricInterpretation::Monochrome2 => false,
        other => {
            return Err(Error::unsupported(
                path,
                format!("photometric interpretation {other:?} (only MONOCHROME1/2)"),
            ))
        }
    };
    if decoded.samples_per_pixel() != 1 {
        return Err(Error::unsupported(
            path,
            format!("{} samples per pixel", decoded.samples_per_pixel()),
        ));
    }
    if opts.frame >= decoded.number_of_frames() {
        return Err(Error::Invalid(format!(
            "{}: frame {} of a {}-frame object",
            path.display(),
            opts.frame,
            decoded.number_of_frames()
        )));
    }
    let bits_alloc = decoded.bits_allocated();
    let bits_stored = decoded.bits_stored();
    if bits_stored == 0
        || bits_stored > bits_alloc
        || !(bits_alloc == 8 || bits_alloc == 16 || bits_alloc == 32)
    {
        return Err(Error::unsupported(
            path,
            format!("Bits Allocated {bits_alloc} / Bits Stored {bits_stored}"),
        ));
    }
    let signed = decoded.pixel_representation() == PixelRepresentation::Signed;
    let frame = decoded
        .frame_data(opts.frame)
        .map_err(|e| Error::decode(path, format!("frame {}: {e}", opts.frame)))?;
    let stored = stored_values(frame, bits_alloc, bits_stored, signed);
    if stored.len() != rows * cols {
        return Err(Error::decode(
            path,
            format!("{} samples for {rows}x{cols}", stored.len()),
        ));
    }

    let frame_idx = opts.frame as usize;
    let rescale = decoded
        .rescale()
        .map_err(|e| Error::decode(path, format!("rescale: {e}")))?;
    let r = rescale
        .get(frame_idx)
        .or_else(|| rescale.first())
        .copied()
        .unwrap_or(dicom_pixeldata::Rescale::new(1.0, 0.0));
    let (slope, intercept) = (r.slope, r.intercept);
    if !slope.is_finite() || !intercept.is_finite() || slope == 0.0 {
        return Err(Error::decode(
            path,
            format!("Rescale Slope {slope} / Intercept {intercept}"),
        ));
    }
    let modality: Vec<f64> = stored.iter().map(|&v| slope * v + intercept).collect();

    let (lo, hi) = if signed {
        (
            -(1i64 << (bits_stored - 1)) as f64,
            ((1i64 << (bits_stored - 1)) - 1) as f64,
        )
    } else {
        (0.0, ((1u64 << bits_stored) - 1) as f64)
    };
    let (range_a, range_b) = (slope * lo + intercept, slope * hi + intercept);
    let (range_min, range_max) = (range_a.min(range_b), range_a.max(range_b));

    let voi = match opts.voi {
        VoiChoice::Auto => {
            let lut = decoded
                .voi_lut_sequence()
                .map_err(|e| Error::decode(path, format!("VOI LUT Sequence: {e}")))?
                .and_then(|l| l.get(frame_idx).or_else(|| l.first()))
                .map(|l| VoiTable {
                    min_pixel_value: l.min_pixel_value,
                    bits: l.bits_stored,
                    data: l.data.clone(),
                });
            let window = decoded
                .window()
                .map_err(|e| Error::decode(path, format!("window: {e}")))?
                .and_then(|w| w.get(frame_idx).or_else(|| w.first()).copied());
            let function = decoded
                .voi_lut_function()
                .map_err(|e| Error::decode(path, format!("VOI LUT Function: {e}")))?
                .and_then(|f| f.get(frame_idx).or_else(|| f.first()).copied())
                .unwrap_or_default();
            if let Some(lut) = lut {
                Voi::Lut(lut)
            } else if let Some(w) = window {
                Voi::Window {
                    center: w.center,
                    width: w.width,
                    function,
                }
            } else {
                Voi::Range(range_min, range_max)
            }
        }
        VoiChoice::BitsStoredRange => Voi::Range(range_min, range_max),
        VoiChoice::MinMax => {
            let (mn, mx) = modality
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            Voi::Range(mn, mx)
        }
    };
    let data = apply_voi(&modality, &voi, invert, path)?;
    GrayImage::new(cols, rows, data).map_err(|e| Error::decode(path, e.to_string()))
}

struct VoiTable {
    min_pixel_value: i32,
    bits: u8,
    data: Vec<u16>,
}

enum Voi {
    Lut(VoiTable),
    Window {
        center: f64,
        width: f64,
        function: VoiLutFunction,
    },
    Range(f64, f64),
}

fn apply_voi(m: &[f64], voi: &Voi, invert: bool, path: &Path) -> Result<Vec<f32>> {
    let finish = |y: f64| -> f32 {
        let y = y.clamp(0.0, 1.0);
        (if invert { 1.0 - y } else { y }) as f32
    };
    match voi {
        Voi::Lut(lut) => {
            if lut.data.is_empty() || lut.bits == 0 || lut.bits > 16 {
                return Err(Error::decode(path, "empty or malformed VOI LUT"));
            }
            let top = ((1u32 << lut.bits) - 1) as f64;
            let last = (lut.data.len() - 1) as f64;
            Ok(m.iter()
                .map(|&v| {
                    let idx =
                        (v.round() - f64::from(lut.min_pixel_value)).clamp(0.0, last) as usize;
                    finish(f64::from(lut.data[idx]) / top)
                })
                .collect())
        }
        Voi::Window {
            center,
            width,
            function,
        } => {
            let (c, w) = (*center, *width);
            match function {
                VoiLutFunction::Linear => {
                    if w < 1.0 {
                        return Err(Error::decode(
                            path,
                            format!("Window Width {w} < 1 for LINEAR"),
                        ));
                    }
                    let (c0, w0) = (c - 0.5, w - 1.0);
                    Ok(m.iter()
                        .map(|&v| {
                            if v <= c0 - w0 / 2.0 {
                                finish(0.0)
                            } else if v > c0 + w0 / 2.0 {
                                finish(1.0)
                            } else {
                                finish((v - c0) / w0 + 0.5)
                            }
                        })
                        .collect())
                }
                VoiLutFunction::LinearExact => {
                    if w <= 0.0 {
                        return Err(Error::decode(path, format!("Window Width {w} <= 0")));
                    }
                    Ok(m.iter().map(|&v| finish((v - c) / w + 0.5)).collect())
                }
                VoiLutFunction::Sigmoid => {
                    if w <= 0.0 {
                        return Err(Error::decode(path, format!("Window Width {w} <= 0")));
                    }
                    Ok(m.iter()
                        .map(|&v| finish(1.0 / (1.0 + (-4.0 * (v - c) / w).exp())))
                        .collect())
                }
            }
        }
        Voi::Range(lo, hi) => {
            let span = hi - lo;
            if span <= 0.0 || !span.is_finite() {
                // a constant image: all black rather than a division by zero
                return Ok(m.iter().map(|_| finish(0.0)).collect());
            }
            Ok(m.iter().map(|&v| finish((v - lo) / span)).collect())
        }
    }
}

/// Stored values masked to `bits_stored` bits, sign-extended when `signed`.
fn stored_values(frame: &[u8], bits_alloc: u16, bits_stored: u16, signed: bool) -> Vec<f64> {
    let bytes = usize::from(bits_alloc / 8);
    let mask: u64 = if bits_stored >= 32 {
        u32::MAX as u64
    } else {
        (1u64 << bits_stored) - 1
    };
    let sign_bit = 1u64 << (bits_stored - 1);
    frame
        .chunks_exact(bytes)
        .map(|c| {
            let raw: u64 = match bytes {
                1 => u64::from(c[0]),
                2 => u64::from(u16::from_le_bytes([c[0], c[1]])),
                _ => u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            };
            let v = raw & mask;
            if signed && v & sign_bit != 0 {
                v as f64 - (mask + 1) as f64
            } else {
                v as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_mask_and_sign_extend() {
        // 12 bits stored in 16: an overlay bit 15 set must be dropped
        let v = stored_values(&[0xFF, 0x8F], 16, 12, false);
        assert_eq!(v, vec![0x0FFF as f64]);
        let v = stored_values(&[0xFF, 0x0F], 16, 12, true);
        assert_eq!(v, vec![-1.0]);
        let v = stored_values(&[0x00, 0x08], 16, 12, true);
        assert_eq!(v, vec![-2048.0]);
    }

    #[test]
    fn linear_window_follows_ps3_3() {
        let p = Path::new("x");
        let voi = Voi::Window {
            center: 100.0,
            width: 11.0,
            function: VoiLutFunction::Linear,
        };
        // c - 0.5 - (w-1)/2 = 94.5 → 0 at and below; above 104.5 → 1; 99.5 → 0.5
        let y = apply_voi(&[94.5, 99.5, 104.5, 105.0], &voi, false, p).unwrap();
        assert_eq!(y, vec![0.0, 0.5, 1.0, 1.0]);
        let y = apply_voi(&[94.5, 105.0], &voi, true, p).unwrap();
        assert_eq!(y, vec![1.0, 0.0]);
    }
}
