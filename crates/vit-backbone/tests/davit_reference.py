"""A PyTorch reference of MedImageInsight's DaViT image tower (`davit_v1`, standard
parametrisation), written for the parity fixtures and the benchmark of `vit_backbone::davit`.

It follows the math of the open MedImageInsight code (ImageEncoder/davit_v1.py, UniCLModel.py)
and reproduces its module tree, so `ImageTower(...).state_dict()` has exactly the key names of the
released checkpoint (`image_encoder.convs.0.proj.weight`, `image_encoder.blocks.2.4.channel_block.
channel_attn.fn.qkv.weight`, ..., `image_projection`). timm's DaViT is not used: its channel
attention scales by the head width and multiplies k^T v, MI2's scales by the token count and
multiplies q^T k, so the two disagree numerically.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Residual(nn.Module):
    """`x + drop_path(fn(norm(x)))`; the parameter names `norm` and `fn` match the checkpoint."""

    def __init__(self, norm, fn, drop_prob=0.0):
        super().__init__()
        self.norm = norm
        self.fn = fn
        self.drop_prob = drop_prob

    def forward(self, x, size):
        y = self.fn(self.norm(x) if self.norm is not None else x, size)
        if self.training and self.drop_prob > 0.0:
            keep = 1.0 - self.drop_prob
            mask = torch.rand(x.shape[0], 1, 1, dtype=x.dtype).add_(keep).floor_()
            y = y * mask / keep
        return x + y


class DepthwiseConv(nn.Module):
    """3x3 depthwise convolution over the token grid (the conditional position encoding)."""

    def __init__(self, dim):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=True)

    def forward(self, x, size):
        b, n, c = x.shape
        h, w = size
        y = self.dw(x.transpose(1, 2).reshape(b, c, h, w))
        return y.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential()
        self.net.add_module("fc1", nn.Linear(dim, hidden))
        self.net.add_module("act", nn.GELU())
        self.net.add_module("fc2", nn.Linear(hidden, dim))

    def forward(self, x, size):
        return self.net(x)


class PatchEmbed(nn.Module):
    """Strided conv; the LayerNorm runs on the incoming tokens (pre) or the new ones (post)."""

    def __init__(self, kernel, stride, padding, cin, cout, pre_norm):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(cin if pre_norm else cout)
        self.pre_norm = pre_norm

    def forward(self, x, size):
        if x.dim() == 3:  # tokens of the previous stage; the image itself is never pre-normed
            if self.pre_norm:
                x = self.norm(x)
            b, n, c = x.shape
            x = x.transpose(1, 2).reshape(b, c, size[0], size[1])
        x = self.proj(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        if not self.pre_norm:
            x = self.norm(x)
        return x, (h, w)


class WindowAttention(nn.Module):
    def __init__(self, dim, heads, window):
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, size):
        b, n, c = x.shape
        h, w = size
        ws = self.window
        x = x.reshape(b, h, w, c)
        # zero tokens on the right and bottom fill the last windows; they are attended to
        ph, pw = (-h) % ws, (-w) % ws
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        x = x.reshape(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(-1, ws * ws, c)
        t = x.shape[1]
        qkv = self.qkv(x).reshape(-1, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)).softmax(-1)
        y = self.proj((a @ v).transpose(1, 2).reshape(-1, t, c))
        y = y.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, hp, wp, c)[:, :h, :w, :]
        return y.reshape(b, h * w, c)


class ChannelAttention(nn.Module):
    """Attention among the channels of each group; scores scaled by N^-1/2 (dynamic scale)."""

    def __init__(self, dim, groups):
        super().__init__()
        self.groups = groups
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, size):
        b, n, c = x.shape
        g = self.groups
        qkv = self.qkv(x).reshape(b, n, 3, g, c // g).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * n ** -0.5, qkv[1], qkv[2]  # [b, g, n, d]
        a = (q.transpose(-1, -2) @ k).softmax(-1)  # [b, g, d, d]
        y = (a @ v.transpose(-1, -2)).transpose(-1, -2)  # [b, g, n, d]
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class DualBlock(nn.Module):
    """conv1 (+x), attention (pre-norm, +x), conv2 (+x), MLP (pre-norm, +x)."""

    def __init__(self, dim, attn, attn_name, drop_prob, mlp_ratio=4.0):
        super().__init__()
        self.conv1 = Residual(None, DepthwiseConv(dim))
        setattr(self, attn_name, Residual(nn.LayerNorm(dim), attn, drop_prob))
        self.attn_name = attn_name
        self.conv2 = Residual(None, DepthwiseConv(dim))
        self.ffn = Residual(nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio)), drop_prob)

    def forward(self, x, size):
        x = self.conv1(x, size)
        x = getattr(self, self.attn_name)(x, size)
        x = self.conv2(x, size)
        return self.ffn(x, size)


class Pair(nn.Module):
    def __init__(self, spatial, channel):
        super().__init__()
        self.spatial_block = spatial
        self.channel_block = channel

    def forward(self, x, size):
        return self.channel_block(self.spatial_block(x, size), size)


class DaViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        depths = cfg["depths"]
        dims = cfg["embed_dims"]
        dpr = torch.linspace(0, cfg["drop_path_rate"], 2 * sum(depths), device="cpu").tolist()
        self.convs = nn.ModuleList()
        self.blocks = nn.ModuleList()
        offset = 0
        for i, d in enumerate(dims):
            self.convs.append(PatchEmbed(
                cfg["patch_size"][i], cfg["patch_stride"][i], cfg["patch_padding"][i],
                cfg["in_chans"] if i == 0 else dims[i - 1], d, cfg["patch_prenorm"][i]))
            pairs = nn.ModuleList()
            for j in range(depths[i]):
                pairs.append(Pair(
                    DualBlock(d, WindowAttention(d, cfg["num_heads"][i], cfg["window_size"]),
                              "window_attn", dpr[offset + 2 * j]),
                    DualBlock(d, ChannelAttention(d, cfg["num_groups"][i]),
                              "channel_attn", dpr[offset + 2 * j + 1])))
            self.blocks.append(pairs)
            offset += 2 * depths[i]
        self.norms = nn.LayerNorm(dims[-1])

    def stages(self, x):
        size = x.shape[-2:]
        outs = []
        for conv, pairs in zip(self.convs, self.blocks):
            x, size = conv(x, size)
            for p in pairs:
                x = p(x, size)
            outs.append((x, size))
        return outs

    def forward_features(self, x):
        x = self.stages(x)[-1][0]
        return self.norms(x.mean(1))


class ImageTower(nn.Module):
    """The image half of UniCL: `image_encoder` + `image_projection` (x @ P, then L2 norm)."""

    def __init__(self, cfg):
        super().__init__()
        self.image_encoder = DaViT(cfg)
        self.image_projection = nn.Parameter(torch.empty(cfg["embed_dims"][-1], cfg["projection_dim"]))
        nn.init.trunc_normal_(self.image_projection, std=0.02)

    def encode_image(self, x):
        z = self.image_encoder.forward_features(x) @ self.image_projection
        return z / z.norm(dim=-1, keepdim=True)


MI2 = dict(
    in_chans=3, image_size=480, embed_dims=[256, 512, 1024, 2048], depths=[1, 1, 9, 1],
    num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64], patch_size=[7, 3, 3, 3],
    patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True],
    window_size=12, drop_path_rate=0.2, projection_dim=1024,
)
