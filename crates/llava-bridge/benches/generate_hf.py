"""transformers' counterpart of benches/generate.rs: greedy `generate` of a random
LlamaForCausalLM (4 layers, width 256, 4 heads, intermediate 682, vocabulary 8000), 32-token
prompt, 64 new tokens, batch 1, f32 on the CPU, KV cache on, default attention (sdpa).

    /work/venv/bin/python crates/llava-bridge/benches/generate_hf.py [THREADS]
"""
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PROMPT, NEW = 32, 64
if len(sys.argv) > 1:
    torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=8000, hidden_size=256, intermediate_size=682, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6,
                  rope_theta=10000.0, tie_word_embeddings=False)
lm = LlamaForCausalLM(cfg).eval()
ids = torch.tensor([[(i * 97 + 5) % 8000 for i in range(PROMPT)]])
kw = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, num_beams=1,
          eos_token_id=None, pad_token_id=0)
times = []
with torch.inference_mode():
    for r in range(23):
        t = time.perf_counter()
        out = lm.generate(ids, **kw)
        dt = time.perf_counter() - t
        assert out.shape[1] == PROMPT + NEW
        if r >= 3:  # warm-up
            times.append(dt)
med = statistics.median(times)
print(f"transformers {torch.__version__} threads={torch.get_num_threads()}: "
      f"median {med * 1e3:.1f} ms per 64 tokens = {NEW / med:.0f} tokens/s")
