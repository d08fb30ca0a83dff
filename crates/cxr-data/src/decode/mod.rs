//! Decoding PNG, JPEG and DICOM files to [`GrayImage`].
//!
//! The format is sniffed from the bytes (PNG and JPEG signatures, `DICM` at offset 128),
//! falling back to the extension (`.dcm`/`.dicom` → DICOM without preamble). Third-party
//! decoders run under `catch_unwind`, so a decoder bug on a hostile file becomes an
//! [`Error::Decode`] instead of a panic in the loader.

mod dicom;
mod dicom_frame;
mod raster;

use std::path::Path;

pub use dicom::{decode_dicom, decode_object, DicomOptions, VoiChoice, MAX_DICOM_SAMPLES};
pub use raster::decode_raster;

use crate::{Error, GrayImage, Result};

/// A file format the decoders know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF/Exif).
    Jpeg,
    /// DICOM Part 10 (or a bare data set).
    Dicom,
}

/// Options for [`decode_file`] and [`decode_bytes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// DICOM-specific options.
    pub dicom: DicomOptions,
}

/// Guesses the format from the leading bytes, then from the file name.
pub fn sniff(bytes: &[u8], path: &Path) -> Option<Format> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Format::Jpeg);
    }
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return Some(Format::Dicom);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("dcm" | "dicom" | "dic") => Some(Format::Dicom),
        Some("png") => Some(Format::Png),
        Some("jpg" | "jpeg") => Some(Format::Jpeg),
        _ => None,
    }
}

/// Reads and decodes `path`.
pub fn decode_file(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<GrayImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes, path, opts)
}

/// Decodes an in-memory file; `path` names it in errors and helps sniffing.
pub fn decode_bytes(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<GrayImage> {
    let format = sniff(bytes, path).ok_or_else(|| {
        Error::unsupported(path, "not a PNG, JPEG or DICOM file (unknown signature)")
    })?;
    guarded(path, || match format {
        Format::Png => decode_raster(bytes, image::ImageFormat::Png, path),
        Format::Jpeg => decode_raster(bytes, image::ImageFormat::Jpeg, path),
        Format::Dicom => decode_dicom(bytes, path, &opts.dicom),
    })
}

/// Runs a decoder, turning a panic inside a dependency into a decode error.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "decoder panicked".to_string());
            Err(Error::decode(path, format!("decoder failure: {msg}")))
        }
    }
}
