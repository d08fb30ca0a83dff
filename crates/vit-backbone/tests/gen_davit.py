"""Writes the DaViT (MI2 image tower) fixtures of vit-backbone.

Run by a developer (not by CI), from this directory:

    python gen_davit.py        # needs torch, safetensors

- `fixtures/davit_tiny/`: a tiny tower with random weights in the released checkpoint's key
  layout (`model.safetensors`), its config (`config.json`, the serde form of `DavitConfig`),
  and the inputs and reference outputs of `davit_reference.py` (`expected.safetensors`):
  every stage map, the pooled feature and the projected L2-normalised embedding, for a
  window-aligned input and one whose grids are not multiples of the window.
- `fixtures/davit_tiny/subset.pt`: a few of those tensors saved with `torch.save`, for the
  pickle-free `.pt` reader.
- `fixtures/mi2_image_keys.json`: every tensor name and shape of the full MI2 image tower,
  from the module built on the meta device (no weights are created or stored).
"""

import json
import os
import shutil

import torch
from safetensors.torch import save_file

from davit_reference import MI2, ImageTower

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

TINY = dict(
    in_chans=3, image_size=64, embed_dims=[8, 16, 24, 32], depths=[1, 1, 2, 1],
    num_heads=[2, 2, 4, 4], num_groups=[2, 4, 4, 8], patch_size=[7, 3, 3, 3],
    patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True],
    window_size=4, drop_path_rate=0.1, projection_dim=12,
)


def randomise(model):
    """Random values everywhere (norm weights near 1), so no parameter hides at its init."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norms.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tiny_case():
    torch.manual_seed(0)
    model = ImageTower(TINY).eval()
    randomise(model)
    d = os.path.join(OUT, "davit_tiny")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(d, "model.safetensors"))
    cfg = {k: v for k, v in TINY.items()}
    cfg["mlp_ratio"] = 4.0
    cfg["qkv_bias"] = True
    cfg["conv_at_attn"] = True
    cfg["conv_at_ffn"] = True
    cfg["dynamic_scale"] = True
    cfg["layer_norm_eps"] = 1e-5
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tensors = {}
    # 64x64: grids 16, 8, 4, 2 (the last pads to 4); 52x84: grids 13x21, 7x11, 4x6, 2x3
    for tag, (h, w) in {"square": (64, 64), "odd": (52, 84)}.items():
        x = torch.randn(2, 3, h, w)
        tensors[f"{tag}.pixel_values"] = x
        with torch.no_grad():
            for i, (t, size) in enumerate(model.image_encoder.stages(x)):
                tensors[f"{tag}.stage{i}"] = t
            tensors[f"{tag}.pooled"] = model.image_encoder.forward_features(x)
            tensors[f"{tag}.embedding"] = model.encode_image(x)
    save_file({k: v.contiguous().clone() for k, v in tensors.items()},
              os.path.join(d, "expected.safetensors"))
    subset = {k: state[k] for k in [
        "image_encoder.convs.0.proj.weight", "image_encoder.norms.bias", "image_projection",
        "image_encoder.blocks.2.1.channel_block.channel_attn.fn.qkv.weight"]}
    # a transposed view: the reader must honour the stored strides
    subset["transposed"] = state["image_projection"].t()
    torch.save(subset, os.path.join(d, "subset.pt"))


def manifest():
    with torch.device("meta"):
        model = ImageTower(MI2)
    keys = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    total = sum(v.numel() for v in model.state_dict().values())
    with open(os.path.join(OUT, "mi2_image_keys.json"), "w") as f:
        json.dump({"config": MI2, "parameters": total, "tensors": keys}, f, indent=0)
    print(f"MI2 image tower: {len(keys)} tensors, {total} parameters")


if __name__ == "__main__":
    tiny_case()
    manifest()
