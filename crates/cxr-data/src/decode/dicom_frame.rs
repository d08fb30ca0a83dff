//! Direct decoders for the encapsulated frames of the common single-channel cases.
//!
//! `dicom-pixeldata` decodes JPEG through `jpeg-decoder` and widens every JPEG 2000 sample into
//! a little-endian byte buffer. For the two transfer syntaxes that carry nearly all compressed
//! chest radiographs we decode the frame ourselves:
//!
//! - JPEG baseline / extended (process 1/2+4), 8-bit, one component: `zune-jpeg` (SIMD IDCT).
//!   Its IDCT rounds differently from `jpeg-decoder` and from libjpeg(-turbo), by at most one
//!   8-bit level on a few percent of the pixels (measured in `tests/decode_parity.rs`).
//! - JPEG 2000 (lossless and lossy), one component: `openjp2` through `jpeg2k`, reading its
//!   `i32` samples directly (the same decoder `dicom-pixeldata` runs, so the same values).
//!
//! Anything else (12-bit or lossless JPEG, colour, fragmented multi-frame objects without one
//! fragment per frame, a decoder error) returns `None`, and the caller falls back to
//! `dicom-pixeldata`, which then either decodes it or reports the error. A frame whose
//! codestream is another size than the header's Rows × Columns is an error here: the file is
//! inconsistent, and `dicom-pixeldata`'s adapters index past their buffers on such files.

use std::borrow::Cow;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// JPEG Baseline (Process 1).
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
/// JPEG Extended (Process 2 & 4); 8-bit files decode like baseline, 12-bit ones fall back.
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
/// JPEG 2000 Image Compression (Lossless Only).
#[cfg(feature = "jpeg2000")]
const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
/// JPEG 2000 Image Compression.
#[cfg(feature = "jpeg2000")]
const J2K: &str = "1.2.840.10008.1.2.4.91";

/// One decoded frame, owned by whichever decoder produced it.
pub(crate) enum DecodedFrame {
    /// 8-bit samples from `zune-jpeg`, `(rows, cols)`.
    U8(Vec<u8>, (usize, usize)),
    /// An `openjp2` image with exactly one component (read in place, not copied).
    #[cfg(feature = "jpeg2000")]
    J2k(jpeg2k::Image),
}

/// A view of one frame's samples.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Samples<'a> {
    /// 8-bit samples (Bits Allocated 8).
    U8(&'a [u8]),
    /// Decoder-native integers whose low `Bits Allocated` bits are the stored value, as
    /// `dicom-pixeldata` keeps them when it writes its byte buffer.
    #[cfg_attr(not(feature = "jpeg2000"), allow(dead_code))]
    I32(&'a [i32]),
    /// dicom-pixeldata's little-endian buffer of `bits_alloc`-bit samples (8, 16 or 32).
    Native { bytes: &'a [u8], bits_alloc: u16 },
}

impl DecodedFrame {
    /// `(rows, cols)` of the decoded frame.
    pub(crate) fn dims(&self) -> (usize, usize) {
        match self {
            DecodedFrame::U8(_, dims) => *dims,
            #[cfg(feature = "jpeg2000")]
            DecodedFrame::J2k(img) => img
                .components()
                .first()
                .map_or((0, 0), |c| (c.height() as usize, c.width() as usize)),
        }
    }

    pub(crate) fn samples(&self) -> Samples<'_> {
        match self {
            DecodedFrame::U8(v, _) => Samples::U8(v),
            #[cfg(feature = "jpeg2000")]
            DecodedFrame::J2k(img) => {
                Samples::I32(img.components().first().map_or(&[], |c| c.data()))
            }
        }
    }
}

impl Samples<'_> {
    pub(crate) fn len(&self) -> usize {
        match *self {
            Samples::U8(v) => v.len(),
            Samples::I32(v) => v.len(),
            Samples::Native { bytes, bits_alloc } => bytes.len() / usize::from(bits_alloc / 8),
        }
    }

    /// `f(sample & mask)` for every sample, in order. `mask` must not exceed Bits Allocated.
    pub(crate) fn map_masked<T>(&self, mask: u64, mut f: impl FnMut(u64) -> T) -> Vec<T> {
        match *self {
            Samples::U8(v) => v.iter().map(|&x| f(u64::from(x) & mask)).collect(),
            Samples::I32(v) => v.iter().map(|&x| f(u64::from(x as u32) & mask)).collect(),
            Samples::Native { bytes, bits_alloc } => match bits_alloc {
                8 => bytes.iter().map(|&x| f(u64::from(x) & mask)).collect(),
                16 => bytes
                    .chunks_exact(2)
                    .map(|c| f(u64::from(u16::from_le_bytes([c[0], c[1]])) & mask))
                    .collect(),
                _ => bytes
                    .chunks_exact(4)
                    .map(|c| f(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])) & mask))
                    .collect(),
            },
        }
    }

    /// `lut[sample & mask]` for every sample; `lut` has `mask + 1` entries.
    pub(crate) fn lookup(&self, lut: &[f32], mask: u64) -> Vec<f32> {
        // Widened to every value the sample type holds (masking folded in), the table is
        // indexed without masks or bounds checks; this loop runs once per pixel.
        let widen = |i: usize| lut.get(i & mask as usize).copied().unwrap_or(0.0);
        match *self {
            Samples::U8(v)
            | Samples::Native {
                bytes: v,
                bits_alloc: 8,
            } => {
                let t: [f32; 256] = std::array::from_fn(widen);
                v.iter().map(|&x| t[usize::from(x)]).collect()
            }
            Samples::I32(v) if mask <= 0xFFFF => {
                let t = table16(widen);
                let t = &t[..1 << 16]; // a known length lets u16 indices skip bounds checks
                                       // the low 16 bits hold every stored bit (Bits Stored ≤ 16 here)
                v.iter().map(|&x| t[usize::from(x as u16)]).collect()
            }
            Samples::Native {
                bytes,
                bits_alloc: 16,
            } => {
                let t = table16(widen);
                let t = &t[..1 << 16];
                bytes
                    .chunks_exact(2)
                    .map(|c| t[usize::from(u16::from_le_bytes([c[0], c[1]]))])
                    .collect()
            }
            _ => self.map_masked(mask, |r| lut.get(r as usize).copied().unwrap_or(0.0)),
        }
    }

    /// `f(sample & mask)` for every sample, in order.
    pub(crate) fn for_each_masked(&self, mask: u64, f: impl FnMut(u64)) {
        // a Vec of `()` never allocates
        let _: Vec<()> = self.map_masked(mask, f);
    }
}

/// What the direct path needs to know about the object, from its attributes.
pub(crate) struct FrameLayout {
    pub rows: usize,
    pub cols: usize,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub number_of_frames: u32,
    /// Finest JPEG 2000 resolution levels to discard ([`crate::DicomOptions::j2k_reduce`]).
    #[cfg_attr(not(feature = "jpeg2000"), allow(dead_code))]
    pub j2k_reduce: u8,
}

/// A frame whose codestream gives another size than the header's Rows × Columns (after a
/// reduced JPEG 2000 decode, the reduced size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SizeMismatch {
    codec: &'static str,
    /// `(rows, cols)` the codestream declares or decodes to.
    frame: (usize, usize),
    /// `(rows, cols)` the header implies.
    header: (usize, usize),
}

impl std::fmt::Display for SizeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} frame is {} rows x {} columns, the header says {} x {}",
            self.codec, self.frame.0, self.frame.1, self.header.0, self.header.1
        )
    }
}

/// Whether [`decode_frame`] may handle this transfer syntax (so the attributes are worth
/// reading on their own first).
pub(crate) fn handles(ts: &str) -> bool {
    match ts {
        JPEG_BASELINE | JPEG_EXTENDED => true,
        #[cfg(feature = "jpeg2000")]
        J2K_LOSSLESS | J2K => true,
        _ => false,
    }
}

/// Decodes `frame` directly when the transfer syntax and layout allow it; `Ok(None)` hands
/// it to `dicom-pixeldata`.
pub(crate) fn decode_frame(
    obj: &DefaultDicomObject,
    ts: &str,
    frame: u32,
    layout: &FrameLayout,
) -> Result<Option<DecodedFrame>, SizeMismatch> {
    if layout.samples_per_pixel != 1 || frame >= layout.number_of_frames {
        return Ok(None);
    }
    let bytes = || frame_bytes(obj, frame, layout.number_of_frames);
    match ts {
        JPEG_BASELINE | JPEG_EXTENDED if layout.bits_allocated == 8 => match bytes() {
            Some(b) => decode_jpeg(&b, layout),
            None => Ok(None),
        },
        #[cfg(feature = "jpeg2000")]
        J2K_LOSSLESS | J2K if matches!(layout.bits_allocated, 8 | 16) => match bytes() {
            Some(b) => decode_j2k(&b, layout),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The encoded bytes of one frame: all fragments of a single-frame object (a JPEG may span
/// several), or fragment `frame` when there is exactly one fragment per frame.
fn frame_bytes(obj: &DefaultDicomObject, frame: u32, frames: u32) -> Option<Cow<'_, [u8]>> {
    let elem = obj.element_opt(tags::PIXEL_DATA).ok().flatten()?;
    let fragments = elem.value().fragments()?;
    match (frames, fragments.len()) {
        (_, 0) => None,
        (1, 1) => Some(Cow::Borrowed(fragments[0].as_slice())),
        (1, _) => Some(Cow::Owned(fragments.iter().flatten().copied().collect())),
        (n, k) if n as usize == k => Some(Cow::Borrowed(fragments[frame as usize].as_slice())),
        _ => None,
    }
}

fn decode_jpeg(bytes: &[u8], layout: &FrameLayout) -> Result<Option<DecodedFrame>, SizeMismatch> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    // strict: a truncated or corrupt stream is an error here (then jpeg-decoder judges it),
    // never a grey-filled image. The size limits are JPEG's own: the frame header is checked
    // against Rows x Columns below, before anything is decoded.
    let opts = DecoderOptions::default()
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    if dec.decode_headers().is_err() {
        return Ok(None);
    }
    let Some(info) = dec.info() else {
        return Ok(None);
    };
    let frame = (usize::from(info.height), usize::from(info.width));
    if frame != (layout.rows, layout.cols) {
        return Err(SizeMismatch {
            codec: "JPEG",
            frame,
            header: (layout.rows, layout.cols),
        });
    }
    // a colour JPEG under a one-sample header: let dicom-pixeldata judge it
    if info.components != 1 {
        return Ok(None);
    }
    let Ok(pixels) = dec.decode() else {
        return Ok(None);
    };
    Ok((pixels.len() == layout.rows * layout.cols)
        .then_some(DecodedFrame::U8(pixels, (layout.rows, layout.cols))))
}

#[cfg(feature = "jpeg2000")]
fn decode_j2k(bytes: &[u8], layout: &FrameLayout) -> Result<Option<DecodedFrame>, SizeMismatch> {
    let reduce = u32::from(layout.j2k_reduce);
    let params = jpeg2k::DecodeParameters::new().reduce(reduce);
    let Ok(image) = jpeg2k::Image::from_bytes_with(bytes, params) else {
        return Ok(None);
    };
    let [c] = image.components() else {
        return Ok(None);
    };
    // each discarded level halves the size, rounding up (image origin at 0, as DICOM has it)
    let header = (
        layout.rows.div_ceil(1 << reduce),
        layout.cols.div_ceil(1 << reduce),
    );
    let frame = (c.height() as usize, c.width() as usize);
    if frame != header {
        return Err(SizeMismatch {
            codec: "JPEG 2000",
            frame,
            header,
        });
    }
    Ok(Some(DecodedFrame::J2k(image)))
}

/// The 2^16 values `f(index)`.
fn table16(f: impl Fn(usize) -> f32) -> Vec<f32> {
    (0..1usize << 16).map(f).collect()
}
