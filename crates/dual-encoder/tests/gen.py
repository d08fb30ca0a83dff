"""Writes the parity fixtures of dual-encoder.

Run by a developer (not by CI), from this directory:

    OMP_NUM_THREADS=2 python gen.py      # needs torch, transformers (5.x), safetensors

Cases (under fixtures/):

- tokenizer/: a tiny CLIP-style byte-level BPE (vocab.json, merges.txt) learned here from a
  few report sentences, the tokenizer.json that transformers' CLIPTokenizer writes for it,
  and the token ids / attention masks transformers gives for a set of sentences.
- text_causal/, text_bidirectional/: the UniCL / MedImageInsight language encoder at a tiny
  width with random weights (checkpoint key names as in UniCLModel's state dict), its
  last hidden state, EOT-pooled and projected embeddings. `causal` is UniCL's
  AUTOGRESSIVE=True; `bidirectional` is MedImageInsight's AUTOGRESSIVE=False (key padding
  mask from the attention mask instead of the causal mask).
- zero_shot/: a whole tiny UniCL model (DINOv2 tiny image tower from transformers, the
  text tower, both projections, logit scale), images, and the reference zero-shot
  probabilities, binary positive-vs-negative scores, similarity matrix and retrieval
  recall@k.
- bert/: a tiny BERT with the CXR-BERT projection head on the CLS token.
- mi2_text_keys.json: every tensor name and shape of MedImageInsight's text side at full
  size (built on the meta device, nothing allocated).

The reference language encoder below is written from the published UniCL /
MedImageInsight description: pre-LN residual blocks around torch's nn.MultiheadAttention
(packed in_proj), TF-style LayerNorm with eps 1e-12 computed in float32, QuickGELU MLP of
width 4x, learned absolute positional embedding, ln_final, pooling at argmax(input_ids)
(the first EOT for CLIP tokenizers), `x @ lang_projection` (no bias), L2 normalisation.
"""

import json
import math
import os
import re
import shutil
from collections import Counter, OrderedDict

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, CLIPTokenizer, Dinov2Config, Dinov2Model

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
torch.manual_seed(0)

CONTEXT = 16

# ---------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------

CORPUS = """
Findings: the lungs are clear. There is no pleural effusion or pneumothorax.
The cardiomediastinal silhouette is within normal limits. Mild cardiomegaly is seen.
Right lower lobe consolidation concerning for pneumonia. Small left pleural effusion.
No acute cardiopulmonary process. Endotracheal tube terminates 4 cm above the carina.
Chest x-ray showing pneumonia. Chest x-ray showing effusion. Chest x-ray showing edema.
Bibasilar atelectasis. Pulmonary edema is present. The heart size is normal.
"""

SENTENCES = [
    "chest x-ray showing pneumonia",
    "No pleural effusion.",
    "  Mild   CARDIOMEGALY,   seen on the PA view!  ",
    "Tube tip 4.5 cm above the carina; line in the SVC (unchanged).",
    "naïve café – résumé 🙂",
    "",
    "the lungs are clear " * 6,
    "isn't it the patient's heart? they'll we've I'm you'd",
]


def bytes_to_unicode():
    """GPT-2 / CLIP byte-to-printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


CLIP_PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def learn_bpe(text, num_merges):
    """Plain BPE learning over words that end in `</w>`, as CLIP's vocabulary was built."""
    b2u = bytes_to_unicode()
    words = Counter()
    for w in CLIP_PATTERN.findall(text.lower()):
        chars = [b2u[b] for b in w.encode("utf-8")]
        chars[-1] = chars[-1] + "</w>"
        words[tuple(chars)] += 1
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for word, freq in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += freq
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        merged = Counter()
        for word, freq in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    vocab_list = list(b2u.values())
    vocab_list += [v + "</w>" for v in vocab_list]
    vocab_list += ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = OrderedDict()
    for tok in vocab_list:
        vocab.setdefault(tok, len(vocab))
    return vocab, merges


def write_tokenizer():
    d = os.path.join(OUT, "tokenizer")
    os.makedirs(d, exist_ok=True)
    vocab, merges = learn_bpe(CORPUS, 160)
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    tok = CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m) for m in merges])
    tok.model_max_length = CONTEXT
    tmp = os.path.join(d, "_hf")
    tok.save_pretrained(tmp)
    shutil.copy(os.path.join(tmp, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    shutil.rmtree(tmp)
    enc = tok(SENTENCES, padding="max_length", max_length=CONTEXT, truncation=True)
    unpadded = [tok(s)["input_ids"] for s in SENTENCES]
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(
            {
                "context_length": CONTEXT,
                "sentences": SENTENCES,
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "unpadded_ids": unpadded,
                "vocab_size": len(vocab),
            },
            f,
            ensure_ascii=False,
            indent=1,
        )
    return tok


# ---------------------------------------------------------------------------------------
# reference UniCL language encoder
# ---------------------------------------------------------------------------------------


class TfLayerNorm(nn.Module):
    def __init__(self, d, eps=1e-12):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        return self.weight * ((x - mu) / torch.sqrt(var + self.eps)).to(dt) + self.bias


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width, heads, mask):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = TfLayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]
            )
        )
        self.ln_2 = TfLayerNorm(width)
        self.mask = mask

    def forward(self, x, key_padding_mask):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class LangEncoder(nn.Module):
    def __init__(self, vocab, context, width, layers, heads, causal):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(context, width))
        mask = torch.full((context, context), float("-inf")).triu_(1) if causal else None
        self.causal = causal
        self.resblocks = nn.ModuleList([Block(width, heads, mask) for _ in range(layers)])
        self.ln_final = TfLayerNorm(width)

    def forward(self, ids, attention_mask):
        kpm = None if self.causal else attention_mask == 0
        x = self.token_embedding(ids) + self.positional_embedding
        x = x.permute(1, 0, 2)
        for b in self.resblocks:
            x = b(x, kpm)
        return self.ln_final(x.permute(1, 0, 2))


class TextSide(nn.Module):
    """The text half of UniCLModel (lang_encoder + lang_projection) plus the shared scalars."""

    def __init__(self, vocab, context, width, layers, heads, causal, proj, image_dim):
        super().__init__()
        self.lang_encoder = LangEncoder(vocab, context, width, layers, heads, causal)
        self.lang_projection = nn.Parameter(torch.empty(width, proj))
        self.image_projection = nn.Parameter(torch.empty(image_dim, proj))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def encode_text(self, ids, mask, norm=True):
        h = self.lang_encoder(ids, mask)
        pooled = h[torch.arange(h.size(0)), ids.argmax(dim=-1)]
        x = pooled @ self.lang_projection
        if norm:
            x = x / x.norm(dim=-1, keepdim=True)
        return h, pooled, x


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_final.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name == "logit_scale":
                p.fill_(math.log(1 / 0.07))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def save(path, tensors):
    save_file({k: v.detach().contiguous().float() if v.is_floating_point() else v.contiguous() for k, v in tensors.items()}, path)


TINY = dict(width=16, layers=2, heads=2, proj=12)


def write_text_case(name, tok, causal):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    vocab = len(tok.get_vocab())
    m = TextSide(vocab, CONTEXT, TINY["width"], TINY["layers"], TINY["heads"], causal, TINY["proj"], 8)
    randomise(m, 3 if causal else 4)
    m.eval()
    enc = tok(SENTENCES[:5], padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        h, pooled, proj = m.encode_text(ids, mask, norm=False)
    save(os.path.join(d, "model.safetensors"), {k: v for k, v in m.state_dict().items()})
    save(
        os.path.join(d, "expected.safetensors"),
        {
            "input_ids": ids.to(torch.int64),
            "attention_mask": mask.to(torch.int64),
            "last_hidden_state": h,
            "pooled": pooled,
            "projected": proj,
            "normalized": proj / proj.norm(dim=-1, keepdim=True),
        },
    )
    cfg = dict(
        vocab_size=vocab,
        context_length=CONTEXT,
        width=TINY["width"],
        layers=TINY["layers"],
        heads=TINY["heads"],
        causal=causal,
        projection_dim=TINY["proj"],
    )
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return m


# ---------------------------------------------------------------------------------------
# zero-shot on a whole tiny model
# ---------------------------------------------------------------------------------------

FINDINGS = ["pneumonia", "effusion", "cardiomegaly"]
POSITIVE = ["chest x-ray showing {}", "there is {}"]
NEGATIVE = ["no {}", "chest x-ray without {}"]


def write_zero_shot(tok):
    d = os.path.join(OUT, "zero_shot")
    os.makedirs(d, exist_ok=True)
    vcfg = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        layerscale_value=1.0,
    )
    vision = Dinov2Model(vcfg).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in vision.named_parameters():
            if "mask_token" in n:
                continue
            if n.endswith("norm1.weight") or n.endswith("norm2.weight") or n == "layernorm.weight":
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    text = TextSide(len(tok.get_vocab()), CONTEXT, 16, 2, 2, False, 12, 16)
    randomise(text, 8)
    with torch.no_grad():
        text.logit_scale.fill_(2.3)
    text.eval()
    images = torch.randn(4, 3, 28, 28, generator=g)

    def embed_texts(sentences):
        enc = tok(sentences, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
        return text.encode_text(enc["input_ids"], enc["attention_mask"], norm=True)[2]

    def ensemble(templates, finding):
        e = embed_texts([t.format(finding) for t in templates])
        e = e.mean(0)
        return e / e.norm()

    with torch.no_grad():
        img = vision(pixel_values=images).pooler_output @ text.image_projection
        img = img / img.norm(dim=-1, keepdim=True)
        scale = text.logit_scale.exp()
        classes = torch.stack([ensemble(POSITIVE, f) for f in FINDINGS])
        logits = scale * img @ classes.T
        probs = logits.softmax(-1)
        neg = torch.stack([ensemble(NEGATIVE, f) for f in FINDINGS])
        pos_logit = scale * img @ classes.T
        neg_logit = scale * img @ neg.T
        binary = torch.stack([pos_logit, neg_logit], -1).softmax(-1)[..., 0]
        captions = [
            "chest x-ray showing pneumonia",
            "no pleural effusion",
            "mild cardiomegaly",
            "the lungs are clear",
            "small left pleural effusion",
            "there is edema",
        ]
        txt = embed_texts(captions)
        sim = scale * img @ txt.T

    # caption j describes image j % 4 (images 0 and 1 have two captions each)
    s = sim.numpy()
    text_image = [j % 4 for j in range(6)]
    i2t_gt = [[j for j in range(6) if text_image[j] == i] for i in range(4)]
    t2i_gt = [[i] for i in text_image]

    def recall(scores, gts, k):
        hits = 0
        for row, gt in zip(scores, gts):
            top = np.argsort(-row, kind="stable")[:k]
            hits += any(g in top for g in gt)
        return hits / len(gts)

    retrieval = {
        f"{name}_r@{k}": recall(mat, gts, k)
        for name, mat, gts in [("i2t", s, i2t_gt), ("t2i", s.T, t2i_gt)]
        for k in (1, 2, 5)
    }
    # the checkpoint layout save_pretrained writes (transformers 5 renames modules in memory)
    tmp = os.path.join(d, "_hf")
    vision.save_pretrained(tmp)
    weights = {"image_encoder." + k: v for k, v in load_file(os.path.join(tmp, "model.safetensors")).items()}
    shutil.rmtree(tmp)
    weights.update(text.state_dict())
    save(os.path.join(d, "model.safetensors"), weights)
    save(
        os.path.join(d, "expected.safetensors"),
        {
            "images": images,
            "image_embeddings": img,
            "class_embeddings": classes,
            "probs": probs,
            "binary": binary,
            "similarity": sim,
        },
    )
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(
            {
                "findings": FINDINGS,
                "positive_templates": POSITIVE,
                "negative_templates": NEGATIVE,
                "captions": captions,
                "text_image": text_image,
                "i2t_gt": i2t_gt,
                "t2i_gt": t2i_gt,
                "retrieval": retrieval,
                "logit_scale": 2.3,
            },
            f,
            indent=1,
        )
    vcfg_d = vcfg.to_dict()
    with open(os.path.join(d, "image_config.json"), "w") as f:
        json.dump({k: vcfg_d[k] for k in ["hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size", "layer_norm_eps", "layerscale_value", "mlp_ratio"]}, f, indent=1)


# ---------------------------------------------------------------------------------------
# BERT + CXR-BERT projection head
# ---------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    def __init__(self, hidden, proj):
        super().__init__()
        self.dense_to_hidden = nn.Linear(hidden, proj)
        self.LayerNorm = nn.LayerNorm(proj, eps=1e-12)
        self.dense_to_output = nn.Linear(proj, proj)

    def forward(self, x):
        return self.dense_to_output(self.LayerNorm(nn.functional.gelu(self.dense_to_hidden(x))))


def write_bert():
    d = os.path.join(OUT, "bert")
    os.makedirs(d, exist_ok=True)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        layer_norm_eps=1e-12,
    )
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    head = ProjectionHead(16, 8).eval()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in list(bert.parameters()) + list(head.parameters()):
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    ids = torch.randint(5, 100, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.int64)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    with torch.no_grad():
        h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        cls = h[:, 0]
        proj = head(cls)
    weights = {"bert." + k: v for k, v in bert.state_dict().items() if "position_ids" not in k}
    weights.update({"cls_projection_head." + k: v for k, v in head.state_dict().items()})
    save(os.path.join(d, "model.safetensors"), weights)
    save(
        os.path.join(d, "expected.safetensors"),
        {"input_ids": ids, "attention_mask": mask, "cls": cls, "projected": proj},
    )
    c = cfg.to_dict()
    c["projection_size"] = 8
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f, indent=1, default=str)


# ---------------------------------------------------------------------------------------
# full-size key manifest
# ---------------------------------------------------------------------------------------


def write_manifest():
    with torch.device("meta"):
        # MedImageInsight's LANG_ENCODER: CLIP vocab (49408), context 77, width 1024,
        # 16 layers, 16 heads, not autoregressive; DIM_PROJECTION 1024; DaViT dim_out 2048
        m = TextSide(49408, 77, 1024, 16, 16, False, 1024, 2048)
    keys = {k: list(v.shape) for k, v in m.state_dict().items()}
    n = sum(math.prod(v) for k, v in keys.items() if k.startswith("lang_"))
    with open(os.path.join(OUT, "mi2_text_keys.json"), "w") as f:
        json.dump({"tensors": keys, "text_parameters": n}, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tok = write_tokenizer()
    write_text_case("text_causal", tok, True)
    write_text_case("text_bidirectional", tok, False)
    write_zero_shot(tok)
    write_bert()
    write_manifest()
    print("fixtures written to", OUT)
