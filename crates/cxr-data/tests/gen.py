"""Writes the parity fixtures of cxr-data (run by hand, not by CI).

    OMP_NUM_THREADS=1 /work/venv/bin/python crates/cxr-data/tests/gen.py

References:
- DICOM: pydicom (+ pylibjpeg-libjpeg / pylibjpeg-openjpeg) decodes; pydicom's
  apply_modality_lut and apply_voi_lut give the windowed values, divided by pydicom's own
  output range (2^BitsStored - 1 after the modality LUT); without VOI attributes the Bits
  Stored range is scaled to [0, 1]; MONOCHROME1 is inverted. Stored: a strided subsample
  plus full-image statistics (mean, std, min, max).
- HF preprocessing: transformers' PIL-backed BitImageProcessor (`BitImageProcessorPil` in
  transformers 5, not the torchvision one) on PIL images; full tensors at a small size, a
  subsample plus statistics at RAD-DINO's 518.
- PNG/JPEG decoding: Pillow on small crops written here (16-bit gray PNG, RGB PNG, RGB JPEG).
"""
import json
import os
from pathlib import Path

import numpy as np
import PIL
import pydicom
import transformers
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from safetensors.numpy import save_file
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures"
# the checkout sits beside shared/ (../shared); worktrees elsewhere set CXR_SHARED
SHARED = Path(os.environ.get("CXR_SHARED", HERE.parents[3] / "shared"))
MINI = SHARED / "data" / "cxr-mini"
FINDINGS = SHARED / "data" / "cxr-findings"
DICOM_STRIDE = 24
BIG_STRIDE = 14


def dicom_reference(path):
    ds = pydicom.dcmread(path)
    return dicom_window(ds, ds.pixel_array)


def dicom_window(ds, raw):
    """Decoded stored values `raw` of `ds` -> [0, 1] (modality LUT, VOI, MONOCHROME1)."""
    m = apply_modality_lut(raw, ds).astype(np.float64)
    bits = int(ds.BitsStored)
    if ds.PixelRepresentation == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    lo, hi = sorted((lo * slope + inter, hi * slope + inter))
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        y = apply_voi_lut(m, ds, index=0, prefer_lut=True).astype(np.float64)
        if "VOILUTSequence" in ds:
            item = ds.VOILUTSequence[0]
            y = y / float(2 ** int(item.LUTDescriptor[2]) - 1)
        else:
            y = (y - lo) / (hi - lo)
    else:
        y = (m - lo) / (hi - lo)
    y = np.clip(y, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    return y


def stats(a):
    a = a.astype(np.float64)
    return np.array([a.mean(), a.std(), a.min(), a.max()], dtype=np.float64)


JPEG_CROP = (448, 448, 128)  # top, left, size of the crop kept from each JPEG decoder


def write_jpeg_decoder_fixture():
    """The SIIM JPEG fragment decoded by libjpeg (pylibjpeg) and libjpeg-turbo (Pillow): a
    central crop of the raw 8-bit samples, plus full-image digests, to bound our IDCT's
    rounding differences against both."""
    import io

    from pydicom.encaps import generate_frames

    f = MINI / "dicom/siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
    ds = pydicom.dcmread(f)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    turbo = np.asarray(Image.open(io.BytesIO(frame)))
    libjpeg = pydicom.pixels.pixel_array(f, decoding_plugin="pylibjpeg")
    assert turbo.shape == libjpeg.shape == (ds.Rows, ds.Columns)
    t, l, n = JPEG_CROP
    save_file(
        {
            "turbo": np.ascontiguousarray(turbo[t : t + n, l : l + n]),
            "libjpeg": np.ascontiguousarray(libjpeg[t : t + n, l : l + n]),
            "crop": np.array(JPEG_CROP, dtype=np.int64),
            "turbo_sum": np.array([turbo.astype(np.int64).sum()], dtype=np.int64),
            "libjpeg_sum": np.array([libjpeg.astype(np.int64).sum()], dtype=np.int64),
        },
        str(FIX / "dicom/siim_jpeg_decoders.safetensors"),
        metadata={"file": f.name, "turbo": PIL.__version__},
    )
    d = turbo.astype(int) - libjpeg.astype(int)
    print("libjpeg-turbo vs libjpeg: max", np.abs(d).max(), "differing", (d != 0).mean())


def write_dicom_fixtures():
    out = FIX / "dicom"
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted((MINI / "dicom").glob("*.dcm")):
        y = dicom_reference(f)
        u8 = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
        name = f.stem.split("_")[0] + "_" + f.stem.split("_")[-1] if f.stem.startswith("wg04") else f.stem.split("_")[0] if f.stem.startswith("siim") else "txv_mono1"
        save_file(
            {
                "sub": np.ascontiguousarray(y[::DICOM_STRIDE, ::DICOM_STRIDE]).astype(np.float32),
                "stats": stats(y),
                "u8_stats": stats(u8),
                "shape": np.array(y.shape, dtype=np.int64),
                "stride": np.array([DICOM_STRIDE], dtype=np.int64),
            },
            str(out / f"{name}.safetensors"),
            metadata={"file": f.name},
        )
        print(f.name, "->", name, y.shape, stats(y))


SMALL_CFG = {
    "image_processor_type": "BitImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 40},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 33, "width": 33},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5307, 0.5307, 0.5307],
    "image_std": [0.2583, 0.2583, 0.2583],
    "do_convert_rgb": True,
}
# distinct channel statistics so that a channel mix-up shows
SMALL_CFG["image_mean"] = [0.485, 0.456, 0.406]
SMALL_CFG["image_std"] = [0.229, 0.224, 0.225]
# bilinear, exact size and a crop larger than the image (padding path)
SMALL_BILINEAR_CFG = dict(SMALL_CFG, resample=2, size={"height": 40, "width": 30}, crop_size={"height": 44, "width": 28})
# RAD-DINO-like; the values follow microsoft/rad-dino's published card but were not read
# from its primary preprocessor_config.json here (no network).
RAD_DINO_CFG = dict(SMALL_CFG, size={"shortest_edge": 518}, crop_size={"height": 518, "width": 518},
                    image_mean=[0.5307] * 3, image_std=[0.2583] * 3)

SMALL_IMAGES = {
    "mini_portrait": MINI / "images" / "fff13f3a.png",
    "mini_landscape": MINI / "images" / "53c9be49.png",
    "nih_square": MINI / "nih" / "00000001_000.png",
    "findings": FINDINGS / "images" / "00000075_000.png",
}


def run_processor(cfg, img):
    proc = BitImageProcessorPil(**{k: v for k, v in cfg.items() if k != "image_processor_type"})
    return proc(images=img, return_tensors="np")["pixel_values"].astype(np.float32)


def write_processor_fixtures():
    out = FIX / "processor"
    out.mkdir(parents=True, exist_ok=True)
    for name, cfg in [("small", SMALL_CFG), ("small_bilinear", SMALL_BILINEAR_CFG), ("rad_dino", RAD_DINO_CFG)]:
        (out / f"{name}_preprocessor_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tensors = {}
    for key, path in SMALL_IMAGES.items():
        img = Image.open(path)
        tensors[f"{key}.small"] = run_processor(SMALL_CFG, img)
        if key in ("mini_landscape", "nih_square"):
            tensors[f"{key}.small_bilinear"] = run_processor(SMALL_BILINEAR_CFG, img)
    # DICOM through the documented 8-bit bridge: windowed [0,1] → round(x*255) → same pipeline
    for key, f in [("dicom_j2k", "wg04_RG1_J2KI.dcm"), ("dicom_siim", "siim_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")]:
        y = dicom_reference(MINI / "dicom" / f)
        u8 = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
        tensors[f"{key}.small"] = run_processor(SMALL_CFG, Image.fromarray(u8))
    versions = {"pillow": PIL.__version__, "transformers": transformers.__version__}
    save_file(tensors, str(out / "small.safetensors"), metadata=versions)
    big = {}
    for key in ["mini_landscape"]:
        pv = run_processor(RAD_DINO_CFG, Image.open(SMALL_IMAGES[key]))
        big[f"{key}.sub"] = np.ascontiguousarray(pv[:, :, ::BIG_STRIDE, ::BIG_STRIDE])
        big[f"{key}.stats"] = np.array(
            [[pv[0, c].astype(np.float64).mean(), pv[0, c].astype(np.float64).std(), pv[0, c].min(), pv[0, c].max()] for c in range(3)]
        )
        big[f"{key}.shape"] = np.array(pv.shape, dtype=np.int64)
    big["stride"] = np.array([BIG_STRIDE], dtype=np.int64)
    save_file(big, str(out / "rad_dino.safetensors"), metadata=versions)
    # Pillow's raw resize outputs (no processor) for the resampler, incl. a box (crop) resize
    src = np.array(Image.open(SMALL_IMAGES["mini_landscape"]))
    im = Image.fromarray(src)
    rs = {
        "bicubic_down_37x29": np.array(im.resize((37, 29), Image.BICUBIC)),
        "bilinear_down_37x29": np.array(im.resize((37, 29), Image.BILINEAR)),
        "bicubic_up_box": np.array(im.resize((50, 45), Image.BICUBIC, box=(100, 80, 130, 120))),
        "bicubic_fbox": np.array(im.resize((33, 21), Image.BICUBIC, box=(10.5, 20.25, 300.75, 200.0))),
        "bicubic_wide": np.array(im.resize((700, 13), Image.BICUBIC)),
    }
    save_file({k: v.astype(np.uint8) for k, v in rs.items()}, str(out / "pillow_resize.safetensors"), metadata=versions)


def write_raster_fixtures():
    out = FIX / "raster"
    out.mkdir(parents=True, exist_ok=True)
    src = np.array(Image.open(SMALL_IMAGES["nih_square"]))[200:232, 180:220]  # 32 x 40
    g16 = (src.astype(np.uint16) * 257 + np.arange(40, dtype=np.uint16)[None, :]).astype(np.uint16)
    Image.fromarray(g16).save(out / "gray16.png")
    rgb = np.stack([src, np.roll(src, 3, axis=1), 255 - src], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(out / "rgb.png")
    Image.fromarray(rgb).save(out / "rgb.jpg", quality=92)
    Image.fromarray(src).save(out / "gray.jpg", quality=92)
    exp = {
        "gray16": (np.array(Image.open(out / "gray16.png")).astype(np.float64) / 65535.0).astype(np.float32),
        "rgb_png": (np.array(Image.open(out / "rgb.png").convert("L")).astype(np.float32) / 255.0),
        "rgb_jpg": (np.array(Image.open(out / "rgb.jpg").convert("L")).astype(np.float32) / 255.0),
        "gray_jpg": (np.array(Image.open(out / "gray.jpg")).astype(np.float32) / 255.0),
    }
    save_file(exp, str(out / "expected.safetensors"))


if __name__ == "__main__":
    write_dicom_fixtures()
    write_jpeg_decoder_fixture()
    write_processor_fixtures()
    write_raster_fixtures()
