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

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids::EXPLICIT_VR_LITTLE_ENDIAN};
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    DecodedPixelData, PhotometricInterpretation, PixelDecoder, PixelRepresentation, VoiLutFunction,
};

use super::dicom_frame::{self, DecodedFrame, FrameLayout, Samples, SizeMismatch};

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

/// The most samples (Rows × Columns × Samples per Pixel, times the number of frames when every
/// frame is decoded) a DICOM object may declare: 2^28, e.g. 16384 × 16384, whose gray `f32`
/// image takes 1 GiB. Chest radiographs are below 2^25. Decoders allocate what the header
/// says, so a forged header (with a forged JPEG frame header to match) could otherwise ask for
/// tens of gigabytes and have the process killed; past this limit the file is refused with
/// [`Error::Unsupported`] before anything is decoded.
pub const MAX_DICOM_SAMPLES: u64 = 1 << 28;

/// Options for DICOM decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DicomOptions {
    /// The VOI choice.
    pub voi: VoiChoice,
    /// Frame of a multi-frame object (0-based).
    pub frame: u32,
    /// JPEG 2000 only, opt-in: discard this many of the finest wavelet resolution levels
    /// while decoding (OpenJPEG's `reduce`), each halving width and height (rounding up), so
    /// the image comes back smaller than Rows × Columns and decodes several times faster.
    /// This is a different image from the full decode, not a faster route to the same one:
    /// on the cxr-mini JPEG 2000 chest film (1841 × 1955), `1` followed by RAD-DINO's resize
    /// to 518 moves the 8-bit input by 0.34 levels on average, 2 levels at the 99th
    /// percentile and 12 at most (at sharp edges); `2` by 1.75 on average and 83 at most
    /// (`tests/decode_parity.rs`). `0` (the default) decodes the full image; other transfer
    /// syntaxes ignore it, and so does the fallback decoder should the direct one refuse a
    /// file.
    pub j2k_reduce: u8,
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
    let (frame_samples, frames) = declared_size(obj, path)?;
    check_size(path, frame_samples, 1, "one frame")?;
    // the direct decoders when they apply, else dicom-pixeldata for everything
    let direct = direct_frame(obj, &ts, opts).map_err(|m| Error::decode(path, m.to_string()))?;
    let (decoded, frame) = match direct {
        Some((attrs, frame)) => (attrs, Some(frame)),
        None => {
            // dicom-pixeldata decodes every frame at once
            check_size(path, frame_samples, frames, "all frames")?;
            (full_decode(obj, path, &ts)?, None)
        }
    };

    // the frame's own size: Rows × Columns unless a reduced JPEG 2000 decode was asked for
    let (rows, cols) = match &frame {
        Some(f) => f.dims(),
        None => (decoded.rows() as usize, decoded.columns() as usize),
    };
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
    let samples = match &frame {
        Some(f) => f.samples(),
        None => Samples::Native {
            bytes: decoded
                .frame_data(opts.frame)
                .map_err(|e| Error::decode(path, format!("frame {}: {e}", opts.frame)))?,
            bits_alloc,
        },
    };
    if samples.len() != rows * cols {
        return Err(Error::decode(
            path,
            format!("{} samples for {rows}x{cols}", samples.len()),
        ));
    }
    let stored = StoredBits::new(bits_alloc, bits_stored, signed);
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

    // VOI fixed by the attributes, or `None` for the image's own min–max
    let fixed_voi = match opts.voi {
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
            Some(if let Some(lut) = lut {
                Voi::Lut(lut)
            } else if let Some(w) = window {
                Voi::Window {
                    center: w.center,
                    width: w.width,
                    function,
                }
            } else {
                Voi::Range(range_min, range_max)
            })
        }
        VoiChoice::BitsStoredRange => Some(Voi::Range(range_min, range_max)),
        VoiChoice::MinMax => None,
    };
    let modality = Modality {
        stored,
        slope,
        intercept,
    };
    let table = modality.table_len().filter(|&t| t <= rows * cols).is_some();
    let data = to_unit(samples, &modality, fixed_voi, invert, table, path)?;
    GrayImage::new(cols, rows, data).map_err(|e| Error::decode(path, e.to_string()))
}

/// Steps 1–2 of the module docs: masking, sign extension, then the rescale.
struct Modality {
    stored: StoredBits,
    slope: f64,
    intercept: f64,
}

impl Modality {
    fn of(&self, masked: u64) -> f64 {
        self.slope * self.stored.value(masked) + self.intercept
    }

    fn table_len(&self) -> Option<usize> {
        self.stored.table_len()
    }
}

/// Samples → `[0, 1]` (steps 1–4); `voi` `None` means the image's own min–max.
///
/// With `table` (Bits Stored ≤ 16), the same f64 transform is evaluated once per possible
/// stored value and pixels are looked up: every pixel gets the value the per-pixel path
/// gives it, bit for bit, at a fraction of the cost on large images.
fn to_unit(
    samples: Samples<'_>,
    m: &Modality,
    voi: Option<Voi>,
    invert: bool,
    table: bool,
    path: &Path,
) -> Result<Vec<f32>> {
    let min_max = |values: &mut dyn Iterator<Item = f64>| {
        let (mn, mx) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        Voi::Range(mn, mx)
    };
    let mask = m.stored.mask;
    match m.table_len().filter(|_| table) {
        Some(table_len) => {
            let values: Vec<f64> = (0..table_len as u64).map(|r| m.of(r)).collect();
            let voi = match voi {
                Some(v) => v,
                None => {
                    let mut present = vec![false; table_len];
                    samples.for_each_masked(mask, |r| present[r as usize] = true);
                    min_max(&mut values.iter().zip(&present).filter(|p| *p.1).map(|p| *p.0))
                }
            };
            let lut = apply_voi(&values, &voi, invert, path)?;
            Ok(samples.lookup(&lut, mask))
        }
        None => {
            let values: Vec<f64> = samples.map_masked(mask, |r| m.of(r));
            let voi = match voi {
                Some(v) => v,
                None => min_max(&mut values.iter().copied()),
            };
            apply_voi(&values, &voi, invert, path)
        }
    }
}

/// Rows × Columns × Samples per Pixel and Number of Frames as the header states them (absent
/// or unreadable values count as 1, leaving them to the decoders to judge). A zero among
/// them is an error: dicom-pixeldata's adapters index into the empty buffer it implies.
fn declared_size(obj: &DefaultDicomObject, path: &Path) -> Result<(u64, u64)> {
    let int = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u64>().ok())
            .unwrap_or(1)
    };
    let (rows, cols, spp) = (
        int(tags::ROWS),
        int(tags::COLUMNS),
        int(tags::SAMPLES_PER_PIXEL),
    );
    let frames = int(tags::NUMBER_OF_FRAMES);
    if rows == 0 || cols == 0 || spp == 0 || frames == 0 {
        return Err(Error::decode(
            path,
            format!(
                "the header declares an empty image (Rows {rows}, Columns {cols}, Samples per \
                 Pixel {spp}, Number of Frames {frames})"
            ),
        ));
    }
    Ok((rows.saturating_mul(cols).saturating_mul(spp), frames))
}

/// Refuses objects above [`MAX_DICOM_SAMPLES`] before a decoder allocates for them.
fn check_size(path: &Path, frame_samples: u64, frames: u64, what: &str) -> Result<()> {
    let n = frame_samples.saturating_mul(frames);
    if n > MAX_DICOM_SAMPLES {
        return Err(Error::unsupported(
            path,
            format!(
                "the header declares {n} samples for {what} (Rows x Columns x Samples per \
                 Pixel{}), more than the limit of {MAX_DICOM_SAMPLES} \
                 (cxr_data::decode::MAX_DICOM_SAMPLES)",
                if frames > 1 {
                    " x Number of Frames"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// The attributes with the frame decoded by [`dicom_frame`], when that path applies
/// (`Ok(None)` when it does not); a frame of another size than the header's is an error.
fn direct_frame(
    obj: &DefaultDicomObject,
    ts: &str,
    opts: &DicomOptions,
) -> std::result::Result<Option<(DecodedPixelData<'static>, DecodedFrame)>, SizeMismatch> {
    if !dicom_frame::handles(ts) {
        return Ok(None);
    }
    let Some(attrs) = attributes(obj) else {
        return Ok(None);
    };
    let layout = FrameLayout {
        rows: attrs.rows() as usize,
        cols: attrs.columns() as usize,
        samples_per_pixel: attrs.samples_per_pixel(),
        bits_allocated: attrs.bits_allocated(),
        number_of_frames: attrs.number_of_frames(),
        j2k_reduce: opts.j2k_reduce,
    };
    Ok(dicom_frame::decode_frame(obj, ts, opts.frame, &layout)?.map(|frame| (attrs, frame)))
}

/// dicom-pixeldata's reading of the imaging attributes (rescale, windows, VOI LUTs,
/// photometric interpretation, ...) without decoding the pixel data: the same object with
/// empty native pixel data, so both decoding paths interpret attributes with one code.
fn attributes(obj: &DefaultDicomObject) -> Option<DecodedPixelData<'static>> {
    let mut meta = obj.meta().clone();
    meta.transfer_syntax = EXPLICIT_VR_LITTLE_ENDIAN.to_string();
    let mut bare = DefaultDicomObject::new_empty_with_meta(meta);
    for elem in obj.iter().filter(|e| e.tag() != tags::PIXEL_DATA) {
        bare.put(elem.clone());
    }
    bare.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(Vec::<u8>::new()),
    ));
    bare.decode_pixel_data().ok().map(|d| d.to_owned())
}

/// All frames through dicom-pixeldata's registered decoders.
fn full_decode<'a>(
    obj: &'a DefaultDicomObject,
    path: &Path,
    ts: &str,
) -> Result<DecodedPixelData<'a>> {
    obj.decode_pixel_data().map_err(|e| {
        let msg = e.to_string();
        if msg.contains("nsupported")
            || msg.contains("not supported")
            || msg.contains("Unknown transfer syntax")
        {
            Error::unsupported(path, format!("transfer syntax {ts}: {msg}"))
        } else {
            Error::decode(path, format!("pixel data (transfer syntax {ts}): {msg}"))
        }
    })
}

#[derive(Clone)]
struct VoiTable {
    min_pixel_value: i32,
    bits: u8,
    data: Vec<u16>,
}

#[derive(Clone)]
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

/// Bits Stored masking and sign extension (step 1 of the module docs).
struct StoredBits {
    /// `2^bits_stored - 1`.
    mask: u64,
    sign_bit: u64,
    signed: bool,
}

impl StoredBits {
    fn new(bits_alloc: u16, bits_stored: u16, signed: bool) -> Self {
        let bits = bits_stored.min(bits_alloc).clamp(1, 32);
        let mask = if bits >= 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << bits) - 1
        };
        Self {
            mask,
            sign_bit: 1u64 << (bits - 1),
            signed,
        }
    }

    /// The stored value of a sample already masked to Bits Stored.
    fn value(&self, masked: u64) -> f64 {
        if self.signed && masked & self.sign_bit != 0 {
            masked as f64 - (self.mask + 1) as f64
        } else {
            masked as f64
        }
    }

    /// The number of distinct masked values when a lookup table is reasonable (≤ 16 bits).
    fn table_len(&self) -> Option<usize> {
        (self.mask <= u64::from(u16::MAX)).then_some(self.mask as usize + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_mask_and_sign_extend() {
        let stored_values = |bytes: &[u8], bits_alloc, bits_stored, signed| {
            let bits = StoredBits::new(bits_alloc, bits_stored, signed);
            Samples::Native { bytes, bits_alloc }.map_masked(bits.mask, |r| bits.value(r))
        };
        // 12 bits stored in 16: an overlay bit 15 set must be dropped
        let v = stored_values(&[0xFF, 0x8F], 16, 12, false);
        assert_eq!(v, vec![0x0FFF as f64]);
        let v = stored_values(&[0xFF, 0x0F], 16, 12, true);
        assert_eq!(v, vec![-1.0]);
        let v = stored_values(&[0x00, 0x08], 16, 12, true);
        assert_eq!(v, vec![-2048.0]);
        // decoder integers keep their low bits, as dicom-pixeldata's byte buffer does
        let bits = StoredBits::new(16, 12, true);
        let v = Samples::I32(&[0x8FFF, -1, 0x0800]).map_masked(bits.mask, |r| bits.value(r));
        assert_eq!(v, vec![-1.0, -1.0, -2048.0]);
    }

    #[test]
    fn lookup_table_equals_per_pixel_transform() {
        // pseudo-random 16-bit samples, a few stored-bit layouts, every VOI kind
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let bytes: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let samples = Samples::Native {
            bytes: &bytes,
            bits_alloc: 16,
        };
        let vois = {
            let window = |function| Voi::Window {
                center: 700.5,
                width: 1500.0,
                function,
            };
            vec![
                None,
                Some(Voi::Range(-2048.0, 4095.0)),
                Some(window(VoiLutFunction::Linear)),
                Some(window(VoiLutFunction::LinearExact)),
                Some(window(VoiLutFunction::Sigmoid)),
                Some(Voi::Lut(VoiTable {
                    min_pixel_value: -100,
                    bits: 12,
                    data: (0..3000u16).map(|v| v.min(4095)).collect(),
                })),
            ]
        };
        for (bits_stored, signed, slope, intercept) in [
            (12, false, 1.0, 0.0),
            (12, true, 0.5, -1024.0),
            (15, false, -2.0, 3.0),
        ] {
            let m = Modality {
                stored: StoredBits::new(16, bits_stored, signed),
                slope,
                intercept,
            };
            for voi in &vois {
                for invert in [false, true] {
                    let p = Path::new("x");
                    let fast = to_unit(samples, &m, voi.clone(), invert, true, p).unwrap();
                    let slow = to_unit(samples, &m, voi.clone(), invert, false, p).unwrap();
                    assert_eq!(fast, slow, "bits {bits_stored} signed {signed}");
                }
            }
        }
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
