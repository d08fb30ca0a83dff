"""PyTorch counterpart of benches/train_step.rs: one UniCL training step at the same sizes
(image tower: transformers' Dinov2Model, 6 blocks, 192 wide, 42 px, or with `--tower davit`
the DaViT reference module of crates/vit-backbone/tests/davit_reference.py at widths 64-512,
depths 1-1-3-1, window 7, 112 px, no stochastic depth; the UniCL text tower of
crates/dual-encoder/tests/gen.py, 128 wide, 4 layers, context 24; UniCL loss of
crates/unicl-loss/tests/gen.py; batch 32; clip_grad_norm_ 1.0; torch.optim.AdamW), f32, CPU.

    OMP_NUM_THREADS=2 python train_step.py [--tower vit|davit]
"""

import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "dual-encoder", "tests"))
from gen import TextSide  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "..", "unicl-loss", "tests"))
import importlib.util  # noqa: E402

spec = importlib.util.spec_from_file_location("loss_gen", os.path.join(HERE, "..", "..", "unicl-loss", "tests", "gen.py"))
loss_gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loss_gen)
from transformers import Dinov2Config, Dinov2Model  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
B, VOCAB, CTX = 32, 469, 24
TOWER = sys.argv[sys.argv.index("--tower") + 1] if "--tower" in sys.argv else "vit"

if TOWER == "davit":
    sys.path.insert(0, os.path.join(HERE, "..", "..", "vit-backbone", "tests"))
    from davit_reference import DaViT  # noqa: E402

    SIDE, IMAGE_DIM = 112, 512
    davit = DaViT(dict(
        in_chans=3, embed_dims=[64, 128, 256, 512], depths=[1, 1, 3, 1], num_heads=[2, 4, 8, 16],
        num_groups=[2, 4, 8, 16], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2],
        patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True], window_size=7,
        drop_path_rate=0.0))

    class Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.forward_features(pixel_values)

    image = Pooled(davit)
else:
    SIDE, IMAGE_DIM = 42, 192
    img_cfg = Dinov2Config(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768,
                           image_size=42, patch_size=14, layerscale_value=1e-5, drop_path_rate=0.0)
    dinov2 = Dinov2Model(img_cfg)

    class Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).pooler_output

    image = Pooled(dinov2)
text = TextSide(VOCAB, CTX, 128, 4, 4, True, 128, IMAGE_DIM)
for p in text.parameters():
    if p.dim() > 0 and p.dim() != 1:
        torch.nn.init.normal_(p, std=0.02)
torch.nn.init.normal_(text.lang_encoder.positional_embedding, std=0.02)
with torch.no_grad():
    text.logit_scale.fill_(1.0)
params = list(image.parameters()) + list(text.parameters())
decay = [p for n, p in list(image.named_parameters()) + list(text.named_parameters())
         if not (n.endswith("bias") or "norm" in n or "ln_" in n or "embedding" in n or n == "logit_scale" or "token" in n)]
no_decay = [p for p in params if all(p is not q for q in decay)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)

pixels = torch.randn(B, 3, SIDE, SIDE)
ids = torch.full((B, CTX), VOCAB - 1, dtype=torch.long)
for i in range(B):
    n = 6 + i % 8
    ids[i, 0] = VOCAB - 2
    for j in range(1, n - 1):
        ids[i, j] = (i * 31 + j * 7) % (VOCAB - 2)
mask = torch.ones(B, CTX, dtype=torch.long)
labels = torch.arange(B) % 8


def step():
    opt.zero_grad(set_to_none=True)
    pooled = image(pixels)
    u = pooled @ text.image_projection
    u = u / u.norm(dim=-1, keepdim=True)
    _, _, v = text.encode_text(ids, mask)
    loss = loss_gen.unicl_loss(u.double(), v.double(), labels, text.logit_scale.double())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        text.logit_scale.clamp_(0, 4.6052)


for _ in range(2):
    step()
times = []
for _ in range(10):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
name = "davit64-512 112px" if TOWER == "davit" else "vit6 42px"
print(f"pytorch unicl train step ({name}, text 128x4, batch 32): median {statistics.median(times) * 1e3:.1f} ms "
      f"(min {min(times) * 1e3:.1f}) over 10 steps, torch {torch.__version__}, threads {torch.get_num_threads()}")
