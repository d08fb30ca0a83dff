"""Python counterpart of benches/preprocess.rs: file → RAD-DINO 518x518 normalised array.

PNG: PIL open + transformers' PIL-backed BitImageProcessor. DICOM: pydicom (+pylibjpeg)
decode, the same windowing as cxr-data (tests/gen.py), round to 8 bits, same processor.
The `_reduce1` case decodes the JPEG 2000 frame with OpenJPEG's reduce = 1 (Pillow), the
work `DicomOptions::j2k_reduce = 1` does on the Rust side.
One thread:  OMP_NUM_THREADS=1 CXR_SHARED=... python benches/preprocess_py.py
"""
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import openjpeg
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import gen  # noqa: E402

cfg = json.loads((HERE.parent / "tests/fixtures/processor/rad_dino_preprocessor_config.json").read_text())
cfg.pop("image_processor_type")
proc = BitImageProcessorPil(**cfg)
mini = gen.MINI


def png(path):
    return proc(images=Image.open(path), return_tensors="np")["pixel_values"]


def dicom(path):
    y = gen.dicom_reference(path)
    u8 = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
    return proc(images=Image.fromarray(u8), return_tensors="np")["pixel_values"]


def dicom_j2k_reduce1(path):
    # the opt-in reduced decode on this side: OpenJPEG's reduce = 1 through Pillow on the
    # frame's codestream, then the same windowing and processor
    ds = pydicom.dcmread(path)
    im = Image.open(io.BytesIO(next(generate_frames(ds.PixelData, number_of_frames=1))))
    im.reduce = 1
    # Pillow widens the samples to 16 bits (a left shift by 16 - precision); undo it, as
    # pydicom's own Pillow plugin does, to get the stored values back (checked equal to
    # cxr-data's reduce = 1 decode)
    raw = np.asarray(im) >> (16 - int(ds.BitsStored))
    y = gen.dicom_window(ds, raw)
    u8 = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
    return proc(images=Image.fromarray(u8), return_tensors="np")["pixel_values"]


def openjpeg_codestream(path, _frames={}):
    if path not in _frames:
        ds = pydicom.dcmread(path)
        _frames[path] = next(generate_frames(ds.PixelData, number_of_frames=1))
    return openjpeg.decode(_frames[path])


cases = [
    ("png_512x419", png, mini / "images/53c9be49.png"),
    ("dicom_jpeg_1024", dicom, mini / "dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"),
    ("dicom_j2k_1841x1955", dicom, mini / "dicom/wg04_RG1_J2KI.dcm"),
    ("dicom_j2k_1841x1955_reduce1", dicom_j2k_reduce1, mini / "dicom/wg04_RG1_J2KI.dcm"),
    # decode + windowing to [0, 1] alone (no 8-bit rounding, no processor): the counterpart of
    # the Rust bench's decode_only group, which splits the JPEG 2000 row into decoder and rest
    ("decode_only/dicom_j2k_1841x1955", gen.dicom_reference, mini / "dicom/wg04_RG1_J2KI.dcm"),
    # OpenJPEG (C, through pylibjpeg-openjpeg, what pydicom calls) on the bare codestream: the
    # decoder's own share of the line above
    ("codestream_only/j2k_1841x1955", openjpeg_codestream, mini / "dicom/wg04_RG1_J2KI.dcm"),
]
for name, fn, path in cases:
    fn(path)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 4.0:
        fn(path)
        n += 1
    dt = (time.perf_counter() - t0) / n
    print(f"{name}: {dt * 1e3:.2f} ms/image, {1 / dt:.1f} images/s")
