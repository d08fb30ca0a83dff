"""Writes tests/fixtures/reference.safetensors: PyTorch outputs and gradients for the fused
operations (run by a developer, not by CI):

    /work/venv/bin/python crates/fused-ops/tests/gen.py

- layer norm: torch.nn.functional.layer_norm forward, and the gradients of sum(y * r) with
  respect to x, weight and bias;
- bilinear resize: F.interpolate(mode="bilinear", antialias=False) for up- and downsampling,
  align_corners False and True, and the gradient of sum(y * r) with respect to x;
- teacher: dinov2's softmax_center_teacher and sinkhorn_knopp_teacher (single process, the
  code of dinov2/loss/dino_clstoken_loss.py restated), in float64 and cast to float32.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}

# layer norm
x = torch.randn(3, 5, 24, dtype=torch.float64) * 2 + 0.5
w = torch.randn(24, dtype=torch.float64)
b = torch.randn(24, dtype=torch.float64)
r = torch.randn(3, 5, 24, dtype=torch.float64)
xv, wv, bv = (t.clone().requires_grad_(True) for t in (x, w, b))
y = F.layer_norm(xv, (24,), wv, bv, eps=1e-6)
(y * r).sum().backward()
out.update({"ln.x": x, "ln.w": w, "ln.b": b, "ln.r": r, "ln.y": y.detach(),
            "ln.dx": xv.grad, "ln.dw": wv.grad, "ln.db": bv.grad})

# bilinear resize
img = torch.randn(2, 3, 7, 9, dtype=torch.float64)
for name, size in [("up", (16, 20)), ("down", (4, 5)), ("mixed", (11, 6))]:
    for align in (False, True):
        key = f"resize.{name}.{int(align)}"
        xv = img.clone().requires_grad_(True)
        y = F.interpolate(xv, size=size, mode="bilinear", align_corners=align)
        rr = torch.randn_like(y)
        (y * rr).sum().backward()
        out.update({f"{key}.y": y.detach(), f"{key}.r": rr, f"{key}.dx": xv.grad})
out["resize.x"] = img

# DINO teacher (dinov2: teacher_output.float(); softmax((t - center) / temp); Sinkhorn)
t = torch.randn(6, 50, dtype=torch.float64) * 3
center = torch.randn(1, 50, dtype=torch.float64) * 0.5
out["teacher.t"] = t
out["teacher.center"] = center
out["teacher.softmax"] = F.softmax((t - center) / 0.04, dim=-1)


def sinkhorn_knopp_teacher(teacher_output, teacher_temp, n_iterations=3):
    Q = torch.exp(teacher_output / teacher_temp).t()
    B = Q.shape[1]
    K = Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(n_iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


# temp 0.5 keeps exp(t / temp) finite in dinov2's formulation (it subtracts no maximum)
for iters in (0, 1, 3):
    out[f"teacher.sinkhorn.{iters}"] = sinkhorn_knopp_teacher(t.clone(), 0.5, iters)

# fused attention: the qkv projection [B, N, 3*H*d] as transformers' Dinov2 builds it from the
# query/key/value Linear layers, attention by F.scaled_dot_product_attention
B, N, H, D = 2, 11, 2, 8
qkv = torch.randn(B, N, 3 * H * D, dtype=torch.float64)
qkv_bias = torch.randn(3 * H * D, dtype=torch.float64) * 0.3
q, k, v = (qkv + qkv_bias).split(H * D, dim=-1)
heads = lambda t: t.view(B, N, H, D).transpose(1, 2)
ctx = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), scale=D ** -0.5)
out["attention.qkv"] = qkv
out["attention.bias"] = qkv_bias
out["attention.out"] = ctx.transpose(1, 2).reshape(B, N, H * D)

# the block's epilogues: GELU(x + b) as nn.GELU() (erf), and r + lambda * (a + b)
a = torch.randn(3, 5, 16, dtype=torch.float64) * 2
eb = torch.randn(16, dtype=torch.float64)
lam = torch.randn(16, dtype=torch.float64) * 0.1
res = torch.randn(3, 5, 16, dtype=torch.float64)
out["epilogue.a"], out["epilogue.b"], out["epilogue.lambda"], out["epilogue.r"] = a, eb, lam, res
out["epilogue.gelu"] = torch.nn.GELU()(a + eb)
out["epilogue.residual"] = res + lam * (a + eb)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "reference.safetensors")
save_file({k: v.to(torch.float32).contiguous() for k, v in out.items()}, path)
print(f"wrote {len(out)} tensors to {path}")
