"""PyTorch counterpart of benches/text_tower.rs: the same UniCL-base text tower forward
(width 512, 12 layers x 8 heads, batch 4 x 77 tokens, float32, no grad) with the reference
module of tests/gen.py, and transformers' CLIPTokenizer (tokenizers backend) on 64 sentences
with the crate's test tokenizer.

    OMP_NUM_THREADS=2 python text_tower.py
"""

import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from gen import TextSide  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

SENTENCES = [
    "chest x-ray showing pneumonia",
    "no pleural effusion or pneumothorax",
    "mild cardiomegaly with bibasilar atelectasis",
    "endotracheal tube terminates 4 cm above the carina",
]


def timeit(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    t.sort()
    return t[len(t) // 2]


def main():
    m = TextSide(49408, 77, 512, 12, 8, True, 512, 512).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02)
    ids = torch.tensor(
        [[49407 if i == 10 + 5 * r else (i * 37 + r * 11) % 49000 for i in range(77)] for r in range(4)]
    )
    mask = torch.ones_like(ids)

    def fwd():
        with torch.no_grad():
            m.encode_text(ids, mask, norm=False)

    t = timeit(fwd, 2, 10)
    print(f"text_tower/unicl_base_forward_b4x77: {t * 1e3:.1f} ms (median of 10)")

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(HERE, "..", "tests", "fixtures", "tokenizer", "tokenizer.json"))
    tok.pad_token = "<|endoftext|>"
    texts = [SENTENCES[i % 4] for i in range(64)]
    t = timeit(lambda: tok(texts, padding="max_length", max_length=77, truncation=True), 10, 100)
    print(f"clip_tokenize_64: {t * 1e6:.1f} us (median of 100)")


if __name__ == "__main__":
    main()
