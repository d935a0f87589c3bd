"""LSNet in pure PyTorch: the architecture of "LSNet: See Large, Focus Small" (CVPR 2025).

Paper: Ao Wang, Hui Chen, Zijia Lin, Jungong Han, Guiguang Ding, "LSNet: See Large, Focus
Small", CVPR 2025, arXiv:2503.23135. Official code and weights: github.com/jameslahm/lsnet,
huggingface.co/jameslahm/lsnet.

This file is read top to bottom as blocks -> stages -> network, with the variants registered at
the bottom. Module and parameter names are exactly the official ones, so an official checkpoint
loads with ``load_state_dict(strict=True)`` and no remapping.

Differences from the official code (behaviour, not weights):

* SKA is the portable formulation of :mod:`lsnet_deploy.ska` instead of a Triton GPU kernel.
* The attention bias is gathered from the table on every call (upstream caches it when
  ``.eval()`` is called, so ``.eval()`` before loading weights leaves a stale bias); after
  :func:`lsnet_deploy.reparam.reparameterize` it is a precomputed constant.
* The attention geometry is derived from the real convolution arithmetic of the input size and
  checked on every call: an input that does not give the grid the bias table was built for
  raises :class:`~lsnet_deploy.errors.InputShapeError` instead of running with wrong geometry.

Layout everywhere: NCHW float32. Input ``(B, 3, H, W)`` normalized with the ImageNet mean/std;
output logits ``(B, num_classes)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputShapeError, UnknownVariantError
from .limits import check_img_size
from .ska import SKA, is_fx_tracing

__all__ = [
    "VARIANTS",
    "LSNet",
    "VariantConfig",
    "build_lsnet",
    "conv_out",
    "stage_grid",
    "to_hw",
]


# --------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------


def to_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalize an image size given as ``int`` or ``(H, W)`` to ``(H, W)``."""
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def conv_out(n: int) -> int:
    """Spatial size after a 3x3 convolution with stride 2 and padding 1: ``ceil(n / 2)``."""
    return (n - 1) // 2 + 1


def stage_grid(img_size: int | tuple[int, int], stage: int = 4) -> tuple[int, int]:
    """Feature-map size ``(h, w)`` of stage 1..4 for an input of ``img_size``.

    The stem has three stride-2 convolutions (224 -> 28) and each of stages 2-4 starts with a
    stride-2 downsample, so stage 4 of a 224 input is 4x4 (inputs 193..256 all give 4x4).
    """
    h, w = to_hw(img_size)
    for _ in range(3 + (stage - 1)):
        h, w = conv_out(h), conv_out(w)
    return h, w


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``Conv2d`` (with bias, same geometry, device and dtype) equal to ``bn(conv(x))``
    with ``bn`` in eval mode; ``conv`` may have a bias of its own."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    bias = bn.running_mean if conv.bias is None else bn.running_mean - conv.bias
    fused.bias.copy_(bn.bias - bias * scale)
    return fused


@torch.no_grad()
def fold_bn_into_linear(bn: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """A new ``Linear`` equal to ``linear(bn(x))`` with ``bn`` (which comes first) in eval
    mode."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    fused = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device,
                      dtype=linear.weight.dtype)
    fused.weight.copy_(linear.weight * scale[None, :])
    bias = linear.weight @ shift
    fused.bias.copy_(bias if linear.bias is None else bias + linear.bias)
    return fused


class Conv2d_BN(nn.Sequential):
    """Conv2d (no bias) followed by BatchNorm2d; keys ``c.*`` and ``bn.*``."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0.0)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Return one Conv2d (with bias) equal to conv -> BN in eval mode."""
        return fold_bn_into_conv(self.c, self.bn)


class BN_Linear(nn.Sequential):
    """BatchNorm1d followed by Linear (the classifier head); keys ``bn.*`` and ``l.*``."""

    def __init__(self, in_features: int, out_features: int, std: float = 0.02) -> None:
        super().__init__()
        self.add_module("bn", nn.BatchNorm1d(in_features))
        self.add_module("l", nn.Linear(in_features, out_features))
        nn.init.trunc_normal_(self.l.weight, std=std)
        nn.init.constant_(self.l.bias, 0.0)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """Return one Linear equal to BN -> Linear in eval mode."""
        return fold_bn_into_linear(self.bn, self.l)


class Residual(nn.Module):
    """``x + m(x)``; key prefix ``m.``."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class FFN(nn.Module):
    """Pointwise feed-forward: 1x1 C->2C, ReLU, 1x1 2C->C (each Conv+BN). ``(B,C,H,W)`` in/out."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.pw1 = Conv2d_BN(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = Conv2d_BN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), as timm."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite gate: mean -> 1x1 (C -> C/4) -> ReLU -> 1x1 -> sigmoid -> scale.

    Keys ``fc1.*``, ``fc2.*`` (timm's ``SEModule`` with ``rd_ratio=0.25``). ``(B,C,H,W)`` in/out.
    """

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd = make_divisible(channels * rd_ratio, 8)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.fc1(s)))
        return x * torch.sigmoid(s)


class RepVGGDW(nn.Module):
    """Token mixer of even blocks: dw3x3-BN + dw1x1-BN + identity. ``(B,C,H,W)`` in/out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = Conv2d_BN(dim, dim, 1, 1, 0, groups=dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Return one depthwise 3x3 Conv2d equal to the three branches (BNs folded)."""
        conv = self.conv.fuse() if isinstance(self.conv, Conv2d_BN) else self.conv
        conv1 = self.conv1.fuse() if isinstance(self.conv1, Conv2d_BN) else self.conv1
        assert isinstance(conv, nn.Conv2d) and isinstance(conv1, nn.Conv2d)
        assert conv.bias is not None and conv1.bias is not None
        weight = conv.weight + F.pad(conv1.weight, [1, 1, 1, 1])
        weight[:, 0, 1, 1] += 1.0  # identity: a centred 1 in every depthwise kernel
        fused = nn.Conv2d(
            self.dim,
            self.dim,
            3,
            1,
            1,
            groups=self.dim,
            bias=True,
            device=weight.device,
            dtype=weight.dtype,
        )
        fused.weight.copy_(weight)
        fused.bias.copy_(conv.bias + conv1.bias)
        return fused


class LKP(nn.Module):
    """Large-kernel perception: produces SKA's per-pixel kernels.

    ``(B, C, H, W)`` -> 1x1 Conv-BN C->C/2, ReLU, depthwise 7x7 Conv-BN, 1x1 Conv-BN, ReLU,
    1x1 conv C/2 -> 9*C/G' (``G' = groups = 8``), GroupNorm with C/8 groups (9 channels each)
    -> viewed as ``(B, C/8, 9, H, W)``: group ``g`` owns the 9 contiguous channels
    ``9g .. 9g+8``, tap ``k`` is row-major over the 3x3 window.
    """

    def __init__(self, dim: int, lks: int = 7, sks: int = 3, groups: int = 8) -> None:
        super().__init__()
        self.cv1 = Conv2d_BN(dim, dim // 2)
        self.act = nn.ReLU()
        self.cv2 = Conv2d_BN(dim // 2, dim // 2, ks=lks, pad=(lks - 1) // 2, groups=dim // 2)
        self.cv3 = Conv2d_BN(dim // 2, dim // 2)
        self.cv4 = nn.Conv2d(dim // 2, sks**2 * dim // groups, kernel_size=1)
        self.norm = nn.GroupNorm(num_groups=dim // groups, num_channels=sks**2 * dim // groups)
        self.sks = sks
        self.groups = groups
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        w = self.norm(self.cv4(x))
        b, _, h, wd = w.shape
        return w.view(b, self.dim // self.groups, self.sks**2, h, wd)


class LSConv(nn.Module):
    """LS convolution: ``bn(SKA(x, LKP(x))) + x``. ``(B,C,H,W)`` in/out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lkp = LKP(dim, lks=7, sks=3, groups=8)
        self.ska = SKA()
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.ska(x, self.lkp(x))) + x


def relative_position_index(resolution: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """Bias-table index of every (query, key) pair on an ``(h, w)`` grid.

    Offsets ``(|dy|, |dx|)`` are numbered in order of first appearance, which for the first
    query point ``(0, 0)`` is row-major over ``(dy, dx)``: the table of ``h*w`` entries is a
    ``(h, w)`` image indexed by offset. Returns ``(idx (N, N) int64, table_size)``, ``N = h*w``.
    """
    h, w = resolution
    points = list(itertools.product(range(h), range(w)))
    offsets: dict[tuple[int, int], int] = {}
    idxs: list[int] = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            if off not in offsets:
                offsets[off] = len(offsets)
            idxs.append(offsets[off])
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


class Attention(nn.Module):
    """Multi-head self-attention of stage 4 with a learned relative-position bias.

    qkv: one 1x1 Conv-BN C -> 2*nh*kd + dh, split contiguously into q (nh*kd), k (nh*kd),
    v (dh = C); a depthwise 3x3 Conv-BN on q; ``softmax(q^T k * kd**-0.5 + bias)``;
    ``v @ attn^T``; ReLU + 1x1 Conv-BN back to C. ``(B, C, h, w)`` in/out, where ``(h, w)`` must
    equal the grid the bias table was built for.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: tuple[int, int],
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.resolution = resolution
        self.qkv = Conv2d_BN(dim, self.dh + self.nh_kd * 2, ks=1)
        self.proj = nn.Sequential(nn.ReLU(), Conv2d_BN(self.dh, dim, bn_weight_init=0.0))
        self.dw = Conv2d_BN(self.nh_kd, self.nh_kd, 3, 1, 1, groups=self.nh_kd)
        idx, table = relative_position_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, table))
        self.register_buffer("attention_bias_idxs", idx)
        self.fused = False

    def attention_bias(self) -> torch.Tensor:
        """The gathered bias, ``(num_heads, N, N)``; a constant buffer once the module is fused
        (the table and its index are then gone from the state dict)."""
        if self.fused:
            return self.bias_const
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if not is_fx_tracing() and (h, w) != self.resolution:
            raise InputShapeError(
                f"attention got a {h}x{w} grid but its bias table was built for "
                f"{self.resolution[0]}x{self.resolution[1]}; build the model for this input size"
            )
        n = h * w
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q = q.reshape(b, self.num_heads, self.key_dim, n)
        k = k.reshape(b, self.num_heads, self.key_dim, n)
        v = v.reshape(b, self.num_heads, self.d, n)
        attn = q.transpose(-2, -1) @ k
        if self.scale != 1.0:
            attn = attn * self.scale
        attn = (attn + self.attention_bias()).softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(b, self.dh, h, w)
        return self.proj(out)

    @torch.no_grad()
    def fuse(self) -> Attention:
        """Fold BNs, the ``kd**-0.5`` scale (into q's depthwise conv) and the gathered bias."""
        if self.fused:
            return self
        qkv = self.qkv.fuse() if isinstance(self.qkv, Conv2d_BN) else self.qkv
        dw = self.dw.fuse() if isinstance(self.dw, Conv2d_BN) else self.dw
        proj_conv = self.proj[1]
        if isinstance(proj_conv, Conv2d_BN):
            self.proj[1] = proj_conv.fuse()
        assert isinstance(dw, nn.Conv2d) and dw.bias is not None
        dw.weight.mul_(self.scale)
        dw.bias.mul_(self.scale)
        self.qkv, self.dw = qkv, dw
        self.scale = 1.0
        # the gathered bias replaces the table and its index, as a *persistent* buffer: loading a
        # fused state dict restores exactly the constant the forward uses (no stale cache)
        const = self.attention_biases[:, self.attention_bias_idxs].detach().clone()
        del self.attention_biases
        del self.attention_bias_idxs
        self.register_buffer("bias_const", const)
        self.fused = True
        return self


class Block(nn.Module):
    """One LSNet block: token mixer (+ SE on even blocks) then a residual FFN.

    Even index ``depth``: RepVGGDW + SqueezeExcite. Odd index: LSConv in stages 1-3 (``stage``
    0-2), Residual(Attention) in stage 4 (``stage`` 3). ``(B,C,H,W)`` in/out.
    """

    def __init__(
        self,
        dim: int,
        key_dim: int,
        num_heads: int,
        attn_ratio: float,
        resolution: tuple[int, int],
        stage: int,
        depth: int,
    ) -> None:
        super().__init__()
        self.mixer: nn.Module
        self.se: nn.Module
        if depth % 2 == 0:
            self.mixer = RepVGGDW(dim)
            self.se = SqueezeExcite(dim, 0.25)
        else:
            self.se = nn.Identity()
            if stage == 3:
                self.mixer = Residual(Attention(dim, key_dim, num_heads, attn_ratio, resolution))
            else:
                self.mixer = LSConv(dim)
        self.ffn = Residual(FFN(dim, int(dim * 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.se(self.mixer(x)))


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------


class LSNet(nn.Module):
    """LSNet classifier.

    Args:
        img_size: input size the network is built for, ``int`` or ``(H, W)``; it fixes the
            stage-4 grid of the attention bias (224 -> 4x4).
        in_chans: input channels (3, RGB).
        num_classes: classifier outputs (1000 for ImageNet); 0 for a backbone without head.
        embed_dim: channels of stages 1-4 (each a multiple of 8).
        depth: blocks per stage.
        key_dim: attention key dim (stage 4).
        num_heads: attention heads (stage 4).
        distillation: add the second (distillation) head; in eval the two are averaged.

    ``forward(x)``: ``x`` ``(B, in_chans, H, W)`` normalized float -> logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: tuple[int, int, int, int] = (64, 128, 256, 384),
        depth: tuple[int, int, int, int] = (0, 2, 8, 10),
        key_dim: int = 16,
        num_heads: int = 4,
        distillation: bool = False,
    ) -> None:
        super().__init__()
        self.img_size = to_hw(img_size)
        check_img_size(self.img_size)  # before any allocation: bounded work
        self.num_classes = num_classes
        self.embed_dim = tuple(embed_dim)
        self.depth = tuple(depth)
        self.distillation = distillation
        self.num_features = embed_dim[-1]
        for c in embed_dim:
            if c % 8 != 0:
                raise ValueError(f"every embed_dim must be a multiple of 8, got {embed_dim}")
        e0 = embed_dim[0]
        self.patch_embed = nn.Sequential(
            Conv2d_BN(in_chans, e0 // 4, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 4, e0 // 2, 3, 2, 1),
            nn.ReLU(),
            Conv2d_BN(e0 // 2, e0, 3, 2, 1),
        )
        self.attn_resolution = stage_grid(self.img_size, 4)
        self.blocks1 = nn.Sequential()
        self.blocks2 = nn.Sequential()
        self.blocks3 = nn.Sequential()
        self.blocks4 = nn.Sequential()
        stages = [self.blocks1, self.blocks2, self.blocks3, self.blocks4]
        for i, (dim, n_blocks) in enumerate(zip(embed_dim, depth, strict=True)):
            if i > 0:  # downsample first, so blocks of stage i start at index 2
                stages[i].append(Conv2d_BN(embed_dim[i - 1], embed_dim[i - 1], 3, 2, 1,
                                           groups=embed_dim[i - 1]))
                stages[i].append(Conv2d_BN(embed_dim[i - 1], dim, 1, 1, 0))
            attn_ratio = dim / (key_dim * num_heads)
            for d in range(n_blocks):
                stages[i].append(
                    Block(dim, key_dim, num_heads, attn_ratio, self.attn_resolution, i, d)
                )
        self.head: nn.Module = (
            BN_Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        )
        self.head_dist: nn.Module | None = None
        if distillation:
            self.head_dist = (
                BN_Linear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
            )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``x`` is ``(B, C, H, W)`` of a fitting size.
        (Skipped under torch.fx symbolic tracing, where shapes are proxies.)"""
        if is_fx_tracing():
            return
        if x.dim() != 4:
            raise InputShapeError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        grid = stage_grid((h, w), 4)
        if grid != self.attn_resolution:
            ih, iw = self.img_size
            raise InputShapeError(
                f"input {h}x{w} gives a {grid[0]}x{grid[1]} stage-4 grid but this model was "
                f"built for {ih}x{iw} ({self.attn_resolution[0]}x{self.attn_resolution[1]} grid); "
                f"create the model with img_size=({h}, {w})"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> stage-4 features ``(B, embed_dim[3], h4, w4)``."""
        self.check_input(x)
        x = self.patch_embed(x)
        x = self.blocks1(x)
        x = self.blocks2(x)
        x = self.blocks3(x)
        return self.blocks4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> Any:
        """Stage-4 features ``(B, C, h, w)`` -> logits ``(B, num_classes)`` (global average pool,
        BN + Linear; the mean of both heads for distilled models in eval). ``pre_logits``
        returns the pooled ``(B, C)`` features."""
        # keepdim + flatten rather than a 2-D mean: the pooled tensor stays 4-D, which NHWC
        # converters (litert-torch) can reduce without transposing the features back to NCHW
        x = x.mean((2, 3), keepdim=True).reshape(-1, self.num_features)  # no shape arithmetic
        if pre_logits:
            return x
        if self.head_dist is None:
            return self.head(x)
        out, out_dist = self.head(x), self.head_dist(x)
        if self.training and not torch.jit.is_scripting():
            return out, out_dist
        return (out + out_dist) / 2

    def forward(self, x: torch.Tensor) -> Any:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def fuse(self) -> LSNet:
        """Merge the distillation head into the main head (average of weights and biases).

        Expects both heads already fused to ``nn.Linear``; see :mod:`lsnet_deploy.reparam`.
        """
        if self.head_dist is not None and isinstance(self.head, nn.Linear):
            dist = self.head_dist
            assert isinstance(dist, nn.Linear) and dist.bias is not None
            assert self.head.bias is not None
            self.head.weight.copy_((self.head.weight + dist.weight) / 2)
            self.head.bias.copy_((self.head.bias + dist.bias) / 2)
            self.head_dist = None
        return self


# --------------------------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantConfig:
    """Architecture of one registered variant (the kwargs of :class:`LSNet` minus size)."""

    embed_dim: tuple[int, int, int, int]
    depth: tuple[int, int, int, int]
    key_dim: int = 16
    num_heads: int = 4
    distillation: bool = False
    num_classes: int = 1000
    official: bool = True

    def kwargs(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "key_dim": self.key_dim,
            "num_heads": self.num_heads,
            "distillation": self.distillation,
            "num_classes": self.num_classes,
        }


_T = {"embed_dim": (64, 128, 256, 384), "depth": (0, 2, 8, 10)}
_S = {"embed_dim": (96, 192, 320, 448), "depth": (1, 2, 8, 10)}
_B = {"embed_dim": (128, 256, 384, 512), "depth": (4, 6, 8, 10)}
_TINY = {"embed_dim": (16, 32, 48, 64), "depth": (1, 2, 2, 2), "official": False}

VARIANTS: dict[str, VariantConfig] = {
    "lsnet_t": VariantConfig(**_T),
    "lsnet_t_distill": VariantConfig(**_T, distillation=True),
    "lsnet_s": VariantConfig(**_S),
    "lsnet_s_distill": VariantConfig(**_S, distillation=True),
    "lsnet_b": VariantConfig(**_B),
    "lsnet_b_distill": VariantConfig(**_B, distillation=True),
    # tiny configurations for fast tests (not official, no checkpoints)
    "test_lsnet": VariantConfig(**_TINY, num_classes=10),
    "test_lsnet_distill": VariantConfig(**_TINY, num_classes=10, distillation=True),
}


def build_lsnet(variant: str, img_size: int | tuple[int, int] = 224) -> LSNet:
    """Instantiate a registered variant with random weights (upstream initialization)."""
    try:
        cfg = VARIANTS[variant]
    except KeyError:
        known = ", ".join(VARIANTS)
        raise UnknownVariantError(f"unknown variant {variant!r}; known: {known}") from None
    return LSNet(img_size=img_size, **cfg.kwargs())
