"""Writes the PyTorch reference fixtures for the seg-decoders tests.

Run by a developer, never by CI: `OMP_NUM_THREADS=2 /work/venv/bin/python tests/gen.py`
from `crates/seg-decoders`. Every fixture is a small safetensors file under
`tests/fixtures/<case>/`, holding inputs, weights, outputs and gradients.
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")


def save(case, name, tensors):
    d = os.path.join(FIX, case)
    os.makedirs(d, exist_ok=True)
    tensors = {k: v.detach().contiguous().to(torch.float32) if v.is_floating_point() else v.detach().contiguous()
               for k, v in tensors.items()}
    save_file(tensors, os.path.join(d, name + ".safetensors"))


def gen_resize():
    cases = {
        "up": ((2, 3, 5, 7), (13, 11)),
        "down": ((1, 2, 13, 11), (5, 4)),
        "mixed": ((1, 2, 6, 9), (11, 4)),
        "one": ((1, 1, 1, 3), (4, 1)),
    }
    g = torch.Generator().manual_seed(0)
    for name, (shape, size) in cases.items():
        for align in (False, True):
            x = torch.randn(shape, generator=g, requires_grad=True)
            y = F.interpolate(x, size=size, mode="bilinear", align_corners=align)
            r = torch.randn(y.shape, generator=g)
            (y * r).sum().backward()
            save("resize", f"{name}_{'ac' if align else 'noac'}", {"x": x, "r": r, "y": y, "grad_x": x.grad})


# ---------------------------------------------------------------- heads (mmseg / detectron2 names)

def up(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvModule(nn.Module):
    """mmcv ConvModule(conv_cfg=None, norm_cfg=BN, act_cfg=ReLU): bias-free conv, BN, ReLU."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class UPerHead(nn.Module):
    """mmsegmentation UPerHead (in_index 0..3, align_corners False), written out.

    `d` is one width for all four inputs (after the ViT neck) or a list of four widths, as
    `in_channels` of mmsegmentation's head on a hierarchical backbone (Swin: [96, 192, 384, 768]).
    """

    def __init__(self, d, ch, scales, k, dropout):
        super().__init__()
        ds = list(d) if isinstance(d, (list, tuple)) else [d] * 4
        self.psp_modules = nn.ModuleList(
            [nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(ds[3], ch, 1)) for s in scales])
        self.bottleneck = ConvModule(ds[3] + len(scales) * ch, ch, 3)
        self.lateral_convs = nn.ModuleList([ConvModule(ds[i], ch, 1) for i in range(3)])
        self.fpn_convs = nn.ModuleList([ConvModule(ch, ch, 3) for _ in range(3)])
        self.fpn_bottleneck = ConvModule(4 * ch, ch, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(ch, k, 1)

    def psp_forward(self, x):
        outs = [x] + [up(m(x), x.shape[2:]) for m in self.psp_modules]
        return self.bottleneck(torch.cat(outs, 1))

    def forward(self, inputs):
        laterals = [c(inputs[i]) for i, c in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[3]))
        for i in range(3, 0, -1):
            laterals[i - 1] = laterals[i - 1] + up(laterals[i], laterals[i - 1].shape[2:])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(3)] + [laterals[3]]
        outs = [outs[0]] + [up(o, outs[0].shape[2:]) for o in outs[1:]]
        feats = self.fpn_bottleneck(torch.cat(outs, 1))
        return self.conv_seg(self.dropout(feats))


class BeitNeck(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2), nn.BatchNorm2d(d), nn.GELU(),
                                  nn.ConvTranspose2d(d, d, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2, 2)

    def forward(self, maps):
        return [self.fpn1(maps[0]), self.fpn2(maps[1]), self.fpn3(maps[2]), self.fpn4(maps[3])]


class UperNet(nn.Module):
    def __init__(self, d, ch, k, dropout=0.1):
        super().__init__()
        self.neck = BeitNeck(d)
        self.decode_head = UPerHead(d, ch, (1, 2, 3, 6), k, dropout)

    def forward(self, maps, size):
        return up(self.decode_head(self.neck(maps)), size)


class PyramidUperNet(nn.Module):
    """UPerHead straight on a hierarchical encoder's four stages (no neck)."""

    def __init__(self, ds, ch, k, dropout=0.1):
        super().__init__()
        self.decode_head = UPerHead(ds, ch, (1, 2, 3, 6), k, dropout)

    def forward(self, maps, size):
        return up(self.decode_head(maps), size)


class LN2d(nn.Module):
    """detectron2 LayerNorm over channels of a NCHW map."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvLN(nn.Conv2d):
    """detectron2 Conv2d(bias=False, norm=LN)."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=k // 2, bias=False)
        self.norm = LN2d(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class Upsample2(nn.Module):
    def forward(self, x):
        return up(x, (2 * x.shape[2], 2 * x.shape[3]))


class SimpleFeaturePyramid(nn.Module):
    def __init__(self, d, out):
        super().__init__()
        self.simfp_2 = nn.Sequential(nn.ConvTranspose2d(d, d // 2, 2, 2), LN2d(d // 2), nn.GELU(),
                                     nn.ConvTranspose2d(d // 2, d // 4, 2, 2), ConvLN(d // 4, out, 1),
                                     ConvLN(out, out, 3))
        self.simfp_3 = nn.Sequential(nn.ConvTranspose2d(d, d // 2, 2, 2), ConvLN(d // 2, out, 1),
                                     ConvLN(out, out, 3))
        self.simfp_4 = nn.Sequential(ConvLN(d, out, 1), ConvLN(out, out, 3))
        self.simfp_5 = nn.Sequential(nn.MaxPool2d(2, 2), ConvLN(d, out, 1), ConvLN(out, out, 3))

    def forward(self, x):
        return [self.simfp_2(x), self.simfp_3(x), self.simfp_4(x), self.simfp_5(x)]


class FPNHead(nn.Module):
    """mmsegmentation FPNHead, feature_strides (4, 8, 16, 32)."""

    def __init__(self, cin, ch, k, dropout):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for i, stride in enumerate((4, 8, 16, 32)):
            length = max(1, int(math.log2(stride) - 2))
            layers = []
            for j in range(length):
                layers.append(ConvModule(cin if j == 0 else ch, ch, 3))
                if stride != 4:
                    layers.append(Upsample2())
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(ch, k, 1)

    def forward(self, xs):
        out = self.scale_heads[0](xs[0])
        for i in range(1, 4):
            out = out + up(self.scale_heads[i](xs[i]), out.shape[2:])
        return self.conv_seg(self.dropout(out))


class VitDet(nn.Module):
    def __init__(self, d, out, ch, k, dropout=0.1):
        super().__init__()
        self.neck = SimpleFeaturePyramid(d, out)
        self.decode_head = FPNHead(out, ch, k, dropout)

    def forward(self, x, size):
        return up(self.decode_head(self.neck(x)), size)


class Linear(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.conv_seg = nn.Conv2d(d, k, 1)

    def forward(self, x, size):
        return up(self.conv_seg(x), size)


def randomise_norms(model, g):
    """Non-trivial norm parameters and running statistics, so parity means something."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, LN2d)):
            with torch.no_grad():
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=g))


def float_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def run_head(case, model, inputs, size, g):
    """Eval and train (dropout off) passes: outputs, parameter/input gradients, BN stats."""
    params = float_state(model)
    for mode in ("eval", "train"):
        model.load_state_dict(params, strict=False)
        model.zero_grad()
        model.train(mode == "train")
        for m in model.modules():
            if isinstance(m, nn.Dropout2d):
                m.eval()
        xs = [x.clone().requires_grad_(True) for x in inputs]
        out = model(xs if len(xs) > 1 else xs[0], size)
        r = torch.randn(out.shape, generator=g)
        (out * r).sum().backward()
        t = {"out": out, "r": r}
        t.update({f"input.{i}": x for i, x in enumerate(inputs)})
        t.update({f"grad_input.{i}": x.grad for i, x in enumerate(xs)})
        if mode == "eval":
            t.update({f"param.{k}": v for k, v in params.items()})
        t.update({f"grad.{n}": p.grad for n, p in model.named_parameters()})
        if mode == "train":
            t.update({f"after.{k}": v for k, v in model.state_dict().items() if "running" in k})
        save(case, mode, t)


def gen_heads():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    d, b, grid, size = 16, 2, (7, 6), (30, 34)

    lin = Linear(32, 3)
    run_head("linear", lin, [torch.randn(b, 32, *grid, generator=g)], size, g)

    vd = VitDet(d, 8, 8, 3)
    randomise_norms(vd, g)
    run_head("vitdet", vd, [torch.randn(b, d, *grid, generator=g)], size, g)

    un = UperNet(d, 8, 3)
    randomise_norms(un, g)
    maps = [torch.randn(b, d, *grid, generator=g) for _ in range(4)]
    run_head("upernet", un, maps, size, g)


def gen_pyramid():
    """UPerNet on four stages of strides 4, 8, 16, 32 and different widths (a DaViT's)."""
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    widths, grids, size = [8, 12, 16, 24], [(16, 14), (8, 7), (4, 4), (2, 2)], (64, 56)
    un = PyramidUperNet(widths, 8, 3)
    randomise_norms(un, g)
    maps = [torch.randn(2, c, *hw, generator=g) for c, hw in zip(widths, grids)]
    run_head("upernet_pyramid", un, maps, size, g)


# ---------------------------------------------------------------- losses

def dice_loss(logits, target, act, smooth, w=None):
    """MONAI DiceLoss(sigmoid|softmax, batch=False, smooth_nr=smooth_dr=smooth), class-weighted."""
    p = torch.sigmoid(logits) if act == "sigmoid" else torch.softmax(logits, 1)
    inter = (p * target).sum((2, 3))
    denom = p.sum((2, 3)) + target.sum((2, 3))
    per_class = (1 - (2 * inter + smooth) / (denom + smooth)).mean(0)
    return per_class.mean() if w is None else (per_class * w).sum() / w.sum()


def gen_losses():
    g = torch.Generator().manual_seed(2)
    b, k, h, w = 2, 3, 9, 10
    logits = (2 * torch.randn(b, k, h, w, generator=g)).requires_grad_(True)
    multi = (torch.rand(b, k, h, w, generator=g) > 0.6).float()
    labels = torch.randint(0, k, (b, h, w), generator=g)
    labels_ign = labels.clone()
    labels_ign[torch.rand(b, h, w, generator=g) < 0.2] = 255
    onehot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()
    cw = torch.tensor([0.5, 1.0, 2.0])
    out = {"logits": logits, "multi": multi, "labels": labels.to(torch.int64),
           "labels_ign": labels_ign.to(torch.int64), "onehot": onehot, "class_weights": cw}
    terms = {
        "bce": lambda x: F.binary_cross_entropy_with_logits(x, multi),
        "bce_w": lambda x: F.binary_cross_entropy_with_logits(x, multi, weight=cw[None, :, None, None]),
        "ce": lambda x: F.cross_entropy(x, labels),
        "ce_w_ign": lambda x: F.cross_entropy(x, labels_ign, weight=cw, ignore_index=255),
        "dice_sig": lambda x: dice_loss(x, multi, "sigmoid", 1e-5),
        "dice_sig_w": lambda x: dice_loss(x, multi, "sigmoid", 1.0, cw),
        "dice_soft": lambda x: dice_loss(x, onehot, "softmax", 1e-5),
        # the combined losses of LossConfig: BCE + Dice (sigmoid) and CE + 0.5 Dice (softmax)
        "combo_sig": lambda x: F.binary_cross_entropy_with_logits(x, multi) + dice_loss(x, multi, "sigmoid", 1e-5),
        "combo_soft_w": lambda x: F.cross_entropy(x, labels, weight=cw) + 0.5 * dice_loss(x, onehot, "softmax", 1e-5, cw),
    }
    for name, f in terms.items():
        x = logits.detach().clone().requires_grad_(True)
        v = f(x)
        v.backward()
        out[f"{name}.value"] = v.reshape(1)
        out[f"{name}.grad"] = x.grad
    save("losses", "losses", out)


if __name__ == "__main__":
    torch.manual_seed(0)
    gen_resize()
    gen_heads()
    gen_losses()
    gen_pyramid()
