"""Writes the parity fixtures of llava-bridge (run by hand, not by CI):

    OMP_NUM_THREADS=2 /work/venv/bin/python crates/llava-bridge/tests/gen.py

Case `fixtures/llava/`:
- `lm/`: a tiny random `LlamaForCausalLM` (GQA 4 query / 2 kv heads, untied head, perturbed
  RMSNorm weights) saved with `save_pretrained` in small shards (exercises
  `model.safetensors.index.json`).
- `projector.safetensors`: transformers' `LlavaMultiModalProjector` (mlp2x_gelu) weights.
- `data.safetensors`: image features, projector output, token-only logits, the logits of two
  LLaVA-style spliced sequences (`inputs_embeds` with the projected image tokens put where the
  image token ids stand, as `LlavaModel`'s `masked_scatter`), the report-token loss and its
  projector gradients, greedy and beam (num_beams=3) generations from the spliced prompt.
- `meta.json`: token ids of the examples and generation settings.
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlamaForCausalLM, LlavaConfig
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "llava")
os.makedirs(OUT, exist_ok=True)

D_VISION, N_IMAGE = 24, 9
cfg = LlamaConfig(
    vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0,
    max_position_embeddings=256, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    pad_token_id=0, initializer_range=0.3, attn_implementation="eager",
)
lm = LlamaForCausalLM(cfg).eval()
with torch.no_grad():
    for name, p in lm.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
lm.save_pretrained(os.path.join(OUT, "lm"), max_shard_size="40KB")
# every reference below comes from the saved files, loaded as a user would
lm = LlamaForCausalLM.from_pretrained(os.path.join(OUT, "lm"), attn_implementation="eager").eval()

llava_cfg = LlavaConfig(
    vision_config=CLIPVisionConfig(hidden_size=D_VISION, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=28, patch_size=14),
    text_config=LlamaConfig(**cfg.to_dict()), projector_hidden_act="gelu", multimodal_projector_bias=True,
    vision_feature_layer=-1, vision_feature_select_strategy="full",
)
proj = LlavaMultiModalProjector(llava_cfg).eval()
with torch.no_grad():
    for p in proj.parameters():
        p.mul_(3.0)  # larger image embeddings so the splice matters in the logits
save_file({f"multi_modal_projector.{k}": v.contiguous() for k, v in proj.state_dict().items()},
          os.path.join(OUT, "projector.safetensors"))

feats = torch.randn(2, N_IMAGE, D_VISION)
proj_out = proj(feats)

IMAGE_ID = 95  # placeholder id, replaced by image embeddings
EOS_ALT = 23  # a token the model does produce: an EOS that ends generation early
before = [1, 10, 11, 12, 13]
after = [20, 21, 22]
targets = [[30, 31, 32, 33, 2], [40, 41, 2]]


def spliced(i, with_target=True):
    ids = before + [IMAGE_ID] * N_IMAGE + after + (targets[i] if with_target else [])
    ids = torch.tensor([ids])
    emb = lm.get_input_embeddings()(ids)
    mask = (ids == IMAGE_ID).unsqueeze(-1).expand_as(emb)
    return ids, emb.masked_scatter(mask, proj(feats[i : i + 1]).to(emb.dtype))


tensors = {"image_features": feats, "projector_out": proj_out.detach()}

ids_plain = torch.randint(3, 96, (2, 12))
with torch.no_grad():
    tensors["plain_ids"] = ids_plain.to(torch.int64)
    tensors["plain_logits"] = lm(input_ids=ids_plain).logits

# spliced forward, loss on report tokens only, projector gradients
proj.zero_grad()
logps = []
for i in range(2):
    ids, emb = spliced(i)
    logits = lm(inputs_embeds=emb).logits[0]
    tensors[f"spliced_logits_{i}"] = logits.detach()
    start = len(before) + N_IMAGE + len(after)
    lp = torch.log_softmax(logits.float(), -1)
    for j, t in enumerate(targets[i]):
        logps.append(lp[start + j - 1, t])
loss = -torch.stack(logps).mean()
loss.backward()
tensors["loss"] = loss.detach().reshape(1)
for k, p in proj.named_parameters():
    tensors[f"grad.multi_modal_projector.{k}"] = p.grad.detach().clone()

# generation from the prompt (no target), KV-cached, as transformers' generate
gen_cfg = dict(max_new_tokens=12, eos_token_id=2, pad_token_id=0)
with torch.no_grad():
    for i in range(2):
        _, emb = spliced(i, with_target=False)
        g = lm.generate(inputs_embeds=emb, do_sample=False, num_beams=1, **gen_cfg)
        tensors[f"greedy_{i}"] = g[0].to(torch.int64)
        b = lm.generate(inputs_embeds=emb, do_sample=False, num_beams=3, length_penalty=1.0,
                        early_stopping=False, **gen_cfg)
        tensors[f"beam3_{i}"] = b[0].to(torch.int64)
        print(f"sample {i}: greedy {g[0].tolist()} beam3 {b[0].tolist()}")
    # an EOS that the model does produce: generation stops early, beams finish at different
    # lengths and the length penalty decides
    _, emb = spliced(1, with_target=False)
    for lp in (1.0, 0.5):
        b = lm.generate(inputs_embeds=emb, do_sample=False, num_beams=3, length_penalty=lp,
                        early_stopping=False, max_new_tokens=12, eos_token_id=EOS_ALT, pad_token_id=0)
        tensors[f"beam3_eos_alt_lp{lp}_1"] = b[0].to(torch.int64)
        print(f"eos {EOS_ALT}, length_penalty {lp}: beam3 {b[0].tolist()}")
    g = lm.generate(inputs_embeds=emb, do_sample=False, max_new_tokens=12, eos_token_id=EOS_ALT,
                    pad_token_id=0)
    tensors["greedy_eos_alt_1"] = g[0].to(torch.int64)
    print(f"eos {EOS_ALT} greedy", g[0].tolist())

save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "data.safetensors"))
with open(os.path.join(OUT, "meta.json"), "w") as f:
    json.dump({"before": before, "after": after, "targets": targets, "n_image": N_IMAGE,
               "d_vision": D_VISION, "max_new_tokens": 12, "eos": 2, "eos_alt": EOS_ALT, "pad": 0}, f, indent=1)
print("loss", loss.item(), "attention:", lm.config._attn_implementation)
