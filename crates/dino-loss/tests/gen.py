"""Writes the parity fixtures of the `dino-loss` crate.

dinov2 (facebookresearch/dinov2) is not on PyPI and needs xFormers, so it cannot be imported
here. The reference functions below are re-implemented from a reading of
`dinov2/layers/dino_head.py`, `dinov2/loss/dino_clstoken_loss.py`,
`dinov2/loss/ibot_patch_loss.py`, `dinov2/loss/koleo_loss.py` and the way
`dinov2/train/ssl_meta_arch.py::forward_backward` combines them (single process,
`world_size = 1`). The head is a real `torch.nn` module with `torch.nn.utils.weight_norm`,
so its state-dict keys are the ones dinov2 checkpoints use.

Inputs are drawn in float32; the references run in float64 on those exact values, and every
tensor is stored as float64 (the Rust tests check both their f64 and f32 paths). Run from the repository root (not part of CI):

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/dino-loss/tests/gen.py
"""

import os
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

warnings.filterwarnings("ignore")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# tiny sizes: in_dim, hidden, bottleneck, prototypes
D, H, BOT, K = 8, 16, 6, 12
B, N_GLOBAL, N_LOCAL, N_PATCH = 3, 2, 2, 4


# ---------------------------------------------------------------- reference re-implementations
class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, nlayers=3, hidden_dim=H, bottleneck_dim=BOT):
        super().__init__()
        if nlayers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                # biases are 0 in dinov2's init; random here so the parity test sees them
                nn.init.uniform_(m.bias, -0.05, 0.05)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        x = F.normalize(x, dim=-1, p=2, eps=eps)
        return self.last_layer(x)


def softmax_center_teacher(t, center, temp):
    return F.softmax((t - center) / temp, dim=-1)


def center_update(center, batch_mean, momentum=0.9):
    return center * momentum + batch_mean * (1 - momentum)


def sinkhorn_knopp_teacher(t, temp, n_samples, n_iterations=3):
    q = torch.exp(t / temp).t()
    b = n_samples
    k = q.shape[0]
    q = q / q.sum()
    for _ in range(n_iterations):
        q = q / q.sum(dim=1, keepdim=True)
        q = q / k
        q = q / q.sum(dim=0, keepdim=True)
        q = q / b
    q = q * b
    return q.t()


def dino_loss(student_list, teacher_list, student_temp=0.1):
    total = 0
    for s in student_list:
        lsm = F.log_softmax(s / student_temp, dim=-1)
        for t in teacher_list:
            total = total - torch.sum(t * lsm, dim=-1).mean()
    return total


def ibot_forward_masked(s, t, masks, student_temp=0.1):
    loss = torch.sum(t * F.log_softmax(s / student_temp, dim=-1), dim=-1)
    w = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
    return -(loss * w).sum() / masks.shape[0]


def koleo(x, eps=1e-8):
    x = F.normalize(x, eps=eps, p=2, dim=-1)
    dots = torch.mm(x, x.t())
    n = x.shape[0]
    dots.view(-1)[:: (n + 1)].fill_(-1)
    _, idx = torch.max(dots, dim=1)
    d = nn.PairwiseDistance(2, eps=1e-8)(x, x[idx])
    return -torch.log(d + eps).mean()


# ---------------------------------------------------------------- helpers
def f32(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).float()


def save(case, tensors):
    os.makedirs(os.path.join(OUT, case), exist_ok=True)
    out = {k: v.detach().to(torch.float64).contiguous() for k, v in tensors.items()}
    save_file(out, os.path.join(OUT, case, "tensors.safetensors"))


def leaf(t):
    return t.double().clone().requires_grad_(True)


def head_case(case, nlayers):
    head = DINOHead(D, K, nlayers=nlayers).double()
    x = leaf(f32(5, D))
    r = f32(5, K).double()
    out = head(x)
    (out * r).sum().backward()
    tensors = {f"param.{k}": v for k, v in head.state_dict().items()}
    tensors.update({"x": x, "r": r, "out": out, "grad.x": x.grad})
    for k, p in head.named_parameters():
        if p.grad is not None:
            tensors[f"grad.{k}"] = p.grad
    save(case, tensors)


def masks_case():
    # per-image masked counts 2, 0, 1, 3, 4, 1: includes an image with nothing masked
    counts = [2, 0, 1, 3, 4, 1]
    masks = torch.zeros(N_GLOBAL * B, N_PATCH, dtype=torch.bool)
    for i, c in enumerate(counts):
        masks[i, torch.randperm(N_PATCH)[:c]] = True
    return masks


def main():
    torch.manual_seed(0)
    head_case("head", 3)
    head_case("head_nlayers1", 1)

    # DINO CLS loss, centering teacher, two consecutive steps (tests the center update)
    temp = 0.05
    center = f32(1, K, scale=0.1).double()
    tensors = {"center0": center}
    for step in range(2):
        t = f32(N_GLOBAL * B, K, scale=0.5).double()
        sg = leaf(f32(N_GLOBAL * B, K, scale=0.5))
        sl = leaf(f32(N_LOCAL * B, K, scale=0.5))
        # ssl_meta_arch swaps the two global crops so that crop A is matched to crop B
        t_rev = torch.cat(t.chunk(2)[::-1])
        probs_rev = softmax_center_teacher(t_rev, center, temp)
        center = center_update(center, t_rev.mean(0, keepdim=True))
        terms = N_GLOBAL * (N_GLOBAL - 1) + N_LOCAL * N_GLOBAL
        glob = dino_loss([sg], [probs_rev]) * 2 / terms
        loc = dino_loss(sl.chunk(N_LOCAL), list(probs_rev.view(N_GLOBAL, B, K))) / terms
        (glob + loc).backward()
        probs = torch.cat(probs_rev.chunk(2)[::-1])
        tensors.update({
            f"s{step}.teacher": t, f"s{step}.student_global": sg, f"s{step}.student_local": sl,
            f"s{step}.teacher_probs": probs, f"s{step}.center_after": center,
            f"s{step}.global_loss": glob, f"s{step}.local_loss": loc,
            f"s{step}.grad.student_global": sg.grad, f"s{step}.grad.student_local": sl.grad,
        })
    save("dino_centering", tensors)

    # Sinkhorn-Knopp teacher on the CLS outputs of both global crops
    t = f32(N_GLOBAL * B, K, scale=0.5).double()
    save("sinkhorn", {"teacher": t, "probs": sinkhorn_knopp_teacher(t, temp, t.shape[0])})

    # iBOT masked-patch loss, centering and Sinkhorn variants
    masks = masks_case()
    m = int(masks.sum())
    t = f32(m, K, scale=0.5).double()
    s = leaf(f32(m, K, scale=0.5))
    center = f32(1, 1, K, scale=0.1).double()
    probs = softmax_center_teacher(t.unsqueeze(0), center, temp).squeeze(0)
    center_after = center_update(center, t.unsqueeze(0).mean(1).sum(0, keepdim=True))
    loss = ibot_forward_masked(s, probs, masks) * 2 * (1.0 / N_GLOBAL)
    loss.backward()
    sk = sinkhorn_knopp_teacher(t, temp, m)
    s2 = leaf(s.detach())
    loss_sk = ibot_forward_masked(s2, sk, masks) * 2 * (1.0 / N_GLOBAL)
    loss_sk.backward()
    save("ibot", {
        "masks": masks.float(), "teacher": t, "student": s, "center0": center.view(1, K),
        "teacher_probs": probs, "center_after": center_after.view(1, K), "loss": loss,
        "grad.student": s.grad, "sinkhorn_probs": sk, "loss_sinkhorn": loss_sk,
        "grad_sinkhorn.student": s2.grad,
    })

    # KoLeo, with a near-duplicate pair
    x = f32(6, D)
    x[4] = x[1] + 0.01 * f32(D)
    x = leaf(x)
    loss = koleo(x)
    loss.backward()
    save("koleo", {"x": x, "loss": loss, "grad.x": x.grad})

    # the full objective of ssl_meta_arch: shared head, centering teacher, DINO + KoLeo + iBOT
    student = DINOHead(D, K).double()
    teacher = DINOHead(D, K).double()
    for p in teacher.parameters():
        p.requires_grad_(False)
    temp = 0.04
    dino_center = f32(1, K, scale=0.1).double()
    ibot_center = f32(1, 1, K, scale=0.1).double()
    masks = masks_case()
    m = int(masks.sum())
    sg_tok = leaf(f32(N_GLOBAL * B, D))
    sl_tok = leaf(f32(N_LOCAL * B, D))
    sp_tok = leaf(f32(m, D))
    tg_tok = f32(N_GLOBAL * B, D).double()
    tp_tok = f32(m, D).double()
    with torch.no_grad():
        t_cls = teacher(torch.cat(tg_tok.chunk(2)[::-1]))
        t_patch = teacher(tp_tok)
        t_probs = softmax_center_teacher(t_cls, dino_center, temp).view(N_GLOBAL, B, K)
        t_patch_probs = softmax_center_teacher(t_patch.unsqueeze(0), ibot_center, temp).squeeze(0)
        dino_center_after = center_update(dino_center, t_cls.mean(0, keepdim=True))
        ibot_center_after = center_update(ibot_center, t_patch.unsqueeze(0).mean(1).sum(0, keepdim=True))
    s_local = student(sl_tok)
    s_global = student(sg_tok)
    s_patch = student(sp_tok)
    terms = N_GLOBAL * (N_GLOBAL - 1) + N_LOCAL * N_GLOBAL
    local_loss = dino_loss(s_local.chunk(N_LOCAL), list(t_probs)) / terms
    global_loss = dino_loss([s_global], [t_probs.flatten(0, 1)]) * 2 / terms
    koleo_loss = 0.1 * sum(koleo(p) for p in sg_tok.chunk(2))
    ibot_loss = ibot_forward_masked(s_patch, t_patch_probs, masks) * 2 * (1.0 / N_GLOBAL)
    total = 1.0 * local_loss + 1.0 * global_loss + koleo_loss + 1.0 * ibot_loss
    total.backward()
    tensors = {f"student.{k}": v for k, v in student.state_dict().items()}
    tensors.update({f"teacher.{k}": v for k, v in teacher.state_dict().items()})
    tensors.update({
        "masks": masks.float(), "student_global": sg_tok, "student_local": sl_tok,
        "student_patches": sp_tok, "teacher_global": tg_tok, "teacher_patches": tp_tok,
        "dino_center0": dino_center, "ibot_center0": ibot_center.view(1, K),
        "dino_center_after": dino_center_after, "ibot_center_after": ibot_center_after.view(1, K),
        "dino_local_loss": local_loss, "dino_global_loss": global_loss, "koleo_loss": koleo_loss,
        "ibot_loss": ibot_loss, "total": total,
        "grad.student_global": sg_tok.grad, "grad.student_local": sl_tok.grad,
        "grad.student_patches": sp_tok.grad,
    })
    for k, p in student.named_parameters():
        if p.grad is not None:
            tensors[f"grad.{k}"] = p.grad
    save("objective", tensors)
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
