"""Independent reference implementation of the official LSNet classifier (ground truth for tests).

Re-implements ``model/lsnet.py`` and ``model/ska.py`` of jameslahm/lsnet (THU-MIG/lsnet) in plain
PyTorch, with the same module tree so that ``state_dict()`` keys are exactly the official ones.
The Triton SKA kernel is replaced by :func:`ska_reference`, which writes the kernel's formula
literally (weight channel = output channel **modulo** the number of weight groups).

This module must never import ``lsnet_deploy``; it only depends on torch, itertools and math.

Usage note (official behaviour, kept on purpose): ``Attention.train(False)`` caches the gathered
attention-bias table in the plain attribute ``ab``.  That cache is not part of the state_dict and
is not refreshed by ``load_state_dict``, so always call ``.eval()`` only AFTER loading weights (and
after moving the model to its device).  :func:`load_reference` does this in the right order.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ska_reference(x: Tensor, w: Tensor) -> Tensor:
    """Small-kernel aggregation: out[b,c,h,w] = sum_k xpad[b,c,h+kh,w+kw] * w[b, c % G, k, h, w].

    ``x``: (B, C, H, W); ``w``: (B, G, ks*ks, H, W) with k = kh*ks + kw and zero padding (ks-1)//2.
    """
    b, c, h, wd = x.shape
    groups, ks = w.shape[1], math.isqrt(w.shape[2])
    pad = (ks - 1) // 2
    gidx = torch.arange(c, device=x.device) % groups      # output channel -> weight channel
    wg = w[:, gidx]                                        # (B, C, ks*ks, H, W)
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.zeros_like(x)
    for kh in range(ks):
        for kw in range(ks):
            out = out + xp[:, :, kh:kh + h, kw:kw + wd] * wg[:, :, kh * ks + kw]
    return out


def ska_naive_loop(x: Tensor, w: Tensor) -> Tensor:
    """Pure-Python loop version of :func:`ska_reference` with explicit bounds checks (tiny inputs only).

    Accumulates in Python floats (double); compare against :func:`ska_reference` in float64.
    """
    b_, c_, h_, w_ = x.shape
    groups, ks = w.shape[1], math.isqrt(w.shape[2])
    pad = (ks - 1) // 2
    out = torch.zeros_like(x)
    for b in range(b_):
        for c in range(c_):
            for i in range(h_):
                for j in range(w_):
                    acc = 0.0
                    for kh in range(ks):
                        for kw in range(ks):
                            y, z = i - pad + kh, j - pad + kw
                            if 0 <= y < h_ and 0 <= z < w_:
                                acc += float(x[b, c, y, z]) * float(w[b, c % groups, kh * ks + kw, i, j])
                    out[b, c, i, j] = acc
    return out


class SKA(nn.Module):
    """Parameter-free module wrapper around :func:`ska_reference` (official ``SKA``)."""

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return ska_reference(x, w)


class Conv2d_BN(nn.Sequential):
    """Conv2d (no bias) 'c' followed by BatchNorm2d 'bn'."""

    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0, dilation: int = 1,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, dilation, groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0.0)


class BN_Linear(nn.Sequential):
    """BatchNorm1d 'bn' followed by Linear 'l' (classification head)."""

    def __init__(self, a: int, b: int, bias: bool = True, std: float = 0.02) -> None:
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(a))
        self.add_module("l", nn.Linear(a, b, bias=bias))
        nn.init.trunc_normal_(self.l.weight, std=std)
        if bias:
            nn.init.constant_(self.l.bias, 0.0)


class Residual(nn.Module):
    """x + m(x) (the official drop-path is never enabled)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: Tensor) -> Tensor:
        return x + self.m(x)


class FFN(nn.Module):
    """1x1 conv-BN, ReLU, 1x1 conv-BN (second BN zero-initialised)."""

    def __init__(self, ed: int, h: int) -> None:
        super().__init__()
        self.pw1 = Conv2d_BN(ed, h)
        self.act = nn.ReLU()
        self.pw2 = Conv2d_BN(h, ed, bn_weight_init=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw2(self.act(self.pw1(x)))


def _make_divisible(v: float, divisor: int = 8) -> int:
    """timm ``make_divisible`` with ``round_limit=0`` (as used by ``SEModule``)."""
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Equivalent of timm's ``SqueezeExcite``/``SEModule`` (fc1, ReLU, fc2, sigmoid gate)."""

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd = _make_divisible(channels * rd_ratio, 8)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.bn = nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.bn(self.fc1(s))))
        return x * torch.sigmoid(s)


class RepVGGDW(nn.Module):
    """Depthwise 3x3 conv-BN + depthwise 1x1 conv-BN + identity."""

    def __init__(self, ed: int) -> None:
        super().__init__()
        self.conv = Conv2d_BN(ed, ed, 3, 1, 1, groups=ed)
        self.conv1 = Conv2d_BN(ed, ed, 1, 1, 0, groups=ed)
        self.dim = ed

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.conv1(x) + x


class LKP(nn.Module):
    """Large-kernel perception: predicts per-pixel sks x sks kernels for dim // groups weight groups."""

    def __init__(self, dim: int, lks: int = 7, sks: int = 3, groups: int = 8) -> None:
        super().__init__()
        self.cv1 = Conv2d_BN(dim, dim // 2)
        self.act = nn.ReLU()
        self.cv2 = Conv2d_BN(dim // 2, dim // 2, ks=lks, pad=(lks - 1) // 2, groups=dim // 2)
        self.cv3 = Conv2d_BN(dim // 2, dim // 2)
        self.cv4 = nn.Conv2d(dim // 2, sks ** 2 * dim // groups, kernel_size=1)
        self.norm = nn.GroupNorm(num_groups=dim // groups, num_channels=sks ** 2 * dim // groups)
        self.sks, self.groups, self.dim = sks, groups, dim

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        w = self.norm(self.cv4(x))
        b, _, h, wd = w.size()
        return w.view(b, self.dim // self.groups, self.sks ** 2, h, wd)


class LSConv(nn.Module):
    """LS convolution: bn(SKA(x, LKP(x))) + x."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lkp = LKP(dim, lks=7, sks=3, groups=8)
        self.ska = SKA()
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.ska(x, self.lkp(x))) + x


class Attention(nn.Module):
    """LeViT-style multi-head self-attention with relative-position biases and a dw conv on q."""

    ab: Tensor

    def __init__(self, dim: int, key_dim: int, num_heads: int = 8, attn_ratio: float = 4,
                 resolution: int = 14) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.nh_kd = nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.attn_ratio = attn_ratio
        self.qkv = Conv2d_BN(dim, self.dh + nh_kd * 2, ks=1)
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.dh, dim, bn_weight_init=0.0))
        self.dw = Conv2d_BN(nh_kd, nh_kd, 3, 1, 1, groups=nh_kd)
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets: dict[tuple[int, int], int] = {}  # |dy|,|dx| -> bias column, in first-seen order
        idxs = [offsets.setdefault((abs(p1[0] - p2[0]), abs(p1[1] - p2[1])), len(offsets))
                for p1 in points for p2 in points]
        n = len(points)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(n, n))

    @torch.no_grad()
    def train(self, mode: bool = True) -> Attention:
        """Official override: cache the gathered bias table when leaving training mode."""
        super().train(mode)
        if mode and hasattr(self, "ab"):
            del self.ab
        else:
            self.ab = self.attention_biases[:, self.attention_bias_idxs]
        return self

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).view(b, -1, h, w).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q = q.view(b, self.num_heads, -1, n)
        k = k.view(b, self.num_heads, -1, n)
        v = v.view(b, self.num_heads, -1, n)
        bias = self.attention_biases[:, self.attention_bias_idxs] if self.training else self.ab
        attn = ((q.transpose(-2, -1) @ k) * self.scale + bias).softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).reshape(b, -1, h, w)
        return self.proj(x)


class Block(nn.Module):
    """mixer -> se -> residual FFN; mixer alternates RepVGGDW(+SE) and LSConv/Attention by depth."""

    def __init__(self, ed: int, kd: int, nh: int = 8, ar: float = 4, resolution: int = 14,
                 stage: int = -1, depth: int = -1) -> None:
        super().__init__()
        if depth % 2 == 0:
            self.mixer: nn.Module = RepVGGDW(ed)
            self.se: nn.Module = SqueezeExcite(ed, 0.25)
        else:
            self.se = nn.Identity()
            if stage == 3:
                self.mixer = Residual(Attention(ed, kd, nh, ar, resolution=resolution))
            else:
                self.mixer = LSConv(ed)
        self.ffn = Residual(FFN(ed, int(ed * 2)))

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn(self.se(self.mixer(x)))


class LSNet(nn.Module):
    """LSNet classifier with the official module layout (blocks1..blocks4, head, head_dist)."""

    def __init__(self, img_size: int = 224, patch_size: int = 8, in_chans: int = 3,
                 num_classes: int = 1000, embed_dim: list[int] | None = None,
                 key_dim: list[int] | None = None, depth: list[int] | None = None,
                 num_heads: list[int] | None = None, distillation: bool = False) -> None:
        super().__init__()
        embed_dim = embed_dim or [64, 128, 256, 384]
        key_dim = key_dim or [16, 16, 16, 16]
        depth = depth or [0, 2, 8, 10]
        num_heads = num_heads or [3, 3, 3, 4]
        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            Conv2d_BN(in_chans, e0 // 4, 3, 2, 1), nn.ReLU(),
            Conv2d_BN(e0 // 4, e0 // 2, 3, 2, 1), nn.ReLU(),
            Conv2d_BN(e0 // 2, e0, 3, 2, 1))
        resolution = img_size // patch_size
        attn_ratio = [embed_dim[i] / (key_dim[i] * num_heads[i]) for i in range(len(embed_dim))]
        self.blocks1, self.blocks2 = nn.Sequential(), nn.Sequential()
        self.blocks3, self.blocks4 = nn.Sequential(), nn.Sequential()
        stages = [self.blocks1, self.blocks2, self.blocks3, self.blocks4]
        for i, (ed, kd, dpth, nh, ar) in enumerate(zip(embed_dim, key_dim, depth, num_heads, attn_ratio, strict=True)):
            for d in range(dpth):
                stages[i].append(Block(ed, kd, nh, ar, resolution, stage=i, depth=d))
            if i != len(depth) - 1:
                nxt = stages[i + 1]
                nxt.append(Conv2d_BN(ed, ed, ks=3, stride=2, pad=1, groups=ed))
                nxt.append(Conv2d_BN(ed, embed_dim[i + 1], ks=1, stride=1, pad=0))
                resolution = (resolution - 1) // 2 + 1
        self.head: nn.Module = BN_Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.distillation = distillation
        if distillation:
            self.head_dist: nn.Module = (BN_Linear(embed_dim[-1], num_classes) if num_classes > 0
                                         else nn.Identity())

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        x = self.patch_embed(x)
        x = self.blocks4(self.blocks3(self.blocks2(self.blocks1(x))))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if self.distillation:
            out = self.head(x), self.head_dist(x)
            return out if self.training else (out[0] + out[1]) / 2
        return self.head(x)


_CONFIGS: dict[str, dict] = {
    "lsnet_t": dict(embed_dim=[64, 128, 256, 384], depth=[0, 2, 8, 10], num_heads=[3, 3, 3, 4]),
    "lsnet_s": dict(embed_dim=[96, 192, 320, 448], depth=[1, 2, 8, 10], num_heads=[3, 3, 3, 4]),
    "lsnet_b": dict(embed_dim=[128, 256, 384, 512], depth=[4, 6, 8, 10], num_heads=[3, 3, 3, 4]),
    "test_lsnet": dict(embed_dim=[16, 32, 48, 64], depth=[1, 2, 2, 2], num_heads=[4, 4, 4, 4],
                       key_dim=[16, 16, 16, 16], img_size=128),
}


def _build(base: str, num_classes: int, distillation: bool) -> LSNet:
    cfg = dict(img_size=224, patch_size=8)
    cfg.update(_CONFIGS[base])
    return LSNet(num_classes=num_classes, distillation=distillation, **cfg)


def lsnet_t(num_classes: int = 1000, distillation: bool = False) -> LSNet:
    """LSNet-T (official config)."""
    return _build("lsnet_t", num_classes, distillation)


def lsnet_s(num_classes: int = 1000, distillation: bool = False) -> LSNet:
    """LSNet-S (official config)."""
    return _build("lsnet_s", num_classes, distillation)


def lsnet_b(num_classes: int = 1000, distillation: bool = False) -> LSNet:
    """LSNet-B (official config)."""
    return _build("lsnet_b", num_classes, distillation)


def create_reference(name: str, num_classes: int | None = None) -> LSNet:
    """Build 'lsnet_{t,s,b}[_distill]' (default 1000 classes) or 'test_lsnet[_distill]' (default 10)."""
    distill = name.endswith("_distill")
    base = name[: -len("_distill")] if distill else name
    if base not in _CONFIGS:
        raise ValueError(f"unknown reference model {name!r}")
    if num_classes is None:
        num_classes = 10 if base == "test_lsnet" else 1000
    return _build(base, num_classes, distill)


def load_reference(name: str, state_dict: dict[str, Tensor], num_classes: int | None = None) -> LSNet:
    """Build ``name``, load ``state_dict`` strictly, THEN call ``.eval()`` (refreshes the bias cache)."""
    if num_classes is None:
        head_w = state_dict.get("head.l.weight")
        num_classes = int(head_w.shape[0]) if head_w is not None else None
    model = create_reference(name, num_classes)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
