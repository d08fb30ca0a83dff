"""Writes the parity fixtures of vit-backbone with Hugging Face `transformers`.

Run by a developer (not by CI), from this directory:

    python gen.py            # needs torch, transformers (5.x), safetensors

Each case directory holds a tiny model in Hugging Face layout (`config.json`,
`model.safetensors` as `save_pretrained` writes it), the inputs and the reference outputs of
`transformers` in `expected.safetensors`. `rad_dino_keys.json` lists every tensor name and
shape of the full-size RAD-DINO model as `transformers` creates it.
"""

import json
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
torch.manual_seed(0)


def randomise(model):
    """Random weights everywhere (layer scales, norms and biases included), so that no
    parameter is at an initial value that could hide a wiring mistake."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "layernorm.weight":
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "lambda1" in name:
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def run(model, pixels, mask=None):
    out = model(
        pixel_values=pixels,
        bool_masked_pos=mask,
        output_hidden_states=True,
        output_attentions=True,
    )
    res = {
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
    }
    for i, h in enumerate(out.hidden_states):
        res[f"hidden_states.{i}"] = h
    for i, a in enumerate(out.attentions):
        res[f"attentions.{i}"] = a
    return res


def write_case(name, model, inputs):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d)
    tensors = {}
    for tag, (pixels, mask) in inputs.items():
        tensors[f"{tag}.pixel_values"] = pixels.clone()
        if mask is not None:
            tensors[f"{tag}.bool_masked_pos"] = mask.to(torch.uint8)
        with torch.no_grad():
            for k, v in run(model, pixels, mask).items():
                tensors[f"{tag}.{k}"] = v
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"))
    return d


def original_layout(model):
    """The same weights under facebookresearch/dinov2 names (fused qkv, ls1.gamma, …)."""
    sd = model.state_dict()
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "mask_token": sd["embeddings.mask_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    for i in range(model.config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        q = f"blocks.{i}."
        for kind in ["weight", "bias"]:
            out[q + f"attn.qkv.{kind}"] = torch.cat(
                [sd[p + f"attention.{x}_proj.{kind}"] for x in "qkv"], 0
            )
            out[q + f"attn.proj.{kind}"] = sd[p + f"attention.o_proj.{kind}"]
            out[q + f"norm1.{kind}"] = sd[p + f"norm1.{kind}"]
            out[q + f"norm2.{kind}"] = sd[p + f"norm2.{kind}"]
            out[q + f"mlp.fc1.{kind}"] = sd[p + f"mlp.fc1.{kind}"]
            out[q + f"mlp.fc2.{kind}"] = sd[p + f"mlp.fc2.{kind}"]
        out[q + "ls1.gamma"] = sd[p + "layer_scale1.lambda1"]
        out[q + "ls2.gamma"] = sd[p + "layer_scale2.lambda1"]
    return {k: v.contiguous() for k, v in out.items()}


def main():
    os.makedirs(OUT, exist_ok=True)

    # --- plain DINOv2, the RAD-DINO architecture at a tiny size -----------------------------
    cfg = Dinov2Config(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        mlp_ratio=4,
        image_size=56,
        patch_size=14,
        layer_norm_eps=1e-6,
        attn_implementation="eager",
    )
    model = Dinov2Model(cfg).eval()
    randomise(model)
    native = torch.randn(2, 3, 56, 56)
    nonsquare = torch.randn(2, 3, 42, 70)  # 3x5 grid: forces interpolation
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [1, 5, 6, 10]] = True
    mask[1, [0, 15]] = True
    d = write_case(
        "dinov2_tiny",
        model,
        {"native": (native, None), "nonsquare": (nonsquare, None), "masked": (native, mask)},
    )
    save_file(original_layout(model), os.path.join(d, "original_layout.safetensors"))

    # older transformers / original DINOv2 interpolation: scale_factor with the +0.1 offset
    pos = model.embeddings.position_embeddings[:, 1:].detach()
    grid = pos.reshape(1, 4, 4, 48).permute(0, 3, 1, 2)
    off = F.interpolate(grid, scale_factor=((3 + 0.1) / 4, (5 + 0.1) / 4), mode="bicubic", align_corners=False)
    save_file(
        {"patch_pos_3x5": off.permute(0, 2, 3, 1).reshape(15, 48).contiguous()},
        os.path.join(d, "offset_interpolation.safetensors"),
    )

    # --- registers + SwiGLU: antialiased interpolation, gate/up split -------------------------
    rcfg = Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=4,
        image_size=56,
        patch_size=14,
        num_register_tokens=2,
        use_swiglu_ffn=True,
        attn_implementation="eager",
    )
    rmodel = Dinov2WithRegistersModel(rcfg).eval()
    randomise(rmodel)
    write_case(
        "dinov2_registers_swiglu",
        rmodel,
        {"native": (torch.randn(2, 3, 56, 56), None), "nonsquare": (torch.randn(1, 3, 70, 42), None)},
    )

    # --- full-size RAD-DINO key manifest ---------------------------------------------------
    full = Dinov2Model(Dinov2Config(image_size=518, patch_size=14, layer_norm_eps=1e-6))
    tmp = os.path.join(OUT, "_tmp_full")
    full.save_pretrained(tmp)
    from safetensors import safe_open

    with safe_open(os.path.join(tmp, "model.safetensors"), "pt") as f:
        keys = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    shutil.rmtree(tmp)
    with open(os.path.join(OUT, "rad_dino_keys.json"), "w") as fh:
        json.dump(dict(sorted(keys.items())), fh, indent=1)


if __name__ == "__main__":
    main()
