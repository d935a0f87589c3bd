"""Shared pieces of the peer networks: channel rounding, conv+BN, squeeze-excite, BN folding,
trained-looking random weights and MAC/parameter counting.

Layout conventions (all three peers): tensors are NCHW float32; a :class:`ConvBN` is a bias-free
``Conv2d`` followed by ``BatchNorm2d``; a ``ConvBN`` whose ``ends_residual`` is set is the last
op of a branch that is added to an identity path (it gets small BN scales, as trained residual
networks have). Every module that holds a BatchNorm has a ``fuse() -> nn.Module`` method that
returns its BN-free equivalent in eval mode; :func:`fold_batchnorms` calls them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ReparamError
from ..flops import count_params, hooked_forward
from ..lsnet import fold_bn_into_conv, fold_bn_into_linear
from ..reparam import remaining_batchnorms

__all__ = [
    "ConvBN",
    "SqueezeExcite",
    "count_macs",
    "count_params",
    "fold_batchnorms",
    "fold_bn_into_conv",
    "fold_bn_into_linear",
    "init_trained_looking",
    "make_divisible",
    "remaining_batchnorms",
]

STATS_BATCH = 8
"""Images in the forward pass that sets BN running statistics."""
STATS_SIZE = 224


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), bumped up one step if that loses more than ``1 - round_limit`` of ``v``
    (the TF-slim MobileNet rule; timm's SE uses ``round_limit=0``: never bumped)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class ConvBN(nn.Sequential):
    """``Conv2d(bias=False)`` then ``BatchNorm2d``: ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``
    with "same" padding ``(k - 1) // 2``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 ends_residual: bool = False) -> None:
        super().__init__()
        self.c = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups,
                           bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.ends_residual = ends_residual

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The equivalent single ``Conv2d`` with bias."""
        return fold_bn_into_conv(self.c, self.bn)


class SqueezeExcite(nn.Module):
    """``x * gate(fc2(act(fc1(mean_hw(x)))))`` with 1x1 convs (bias) ``c -> squeeze -> c``:
    ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module],
                 gate: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def _fuse_children(module: nn.Module) -> None:
    """Pre-order: a child with ``fuse()`` is replaced by its result (which folds everything
    inside it); other children are walked."""
    for name, child in list(module.named_children()):
        fuse = getattr(child, "fuse", None)
        if callable(fuse):
            setattr(module, name, fuse())
        else:
            _fuse_children(child)


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm of ``model`` into its neighbouring conv/linear, in place; returns
    ``model`` in eval mode. Raises :class:`ReparamError` if a BatchNorm is left."""
    model.eval()
    _fuse_children(model)
    left = remaining_batchnorms(model)
    if left:
        raise ReparamError(f"BatchNorms left after folding: {', '.join(left)}")
    return model


def _kaiming(shape: torch.Size, fan_in: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5


def _uniform(shape: torch.Size, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


@torch.no_grad()
def init_trained_looking(model: nn.Module, seed: int = 0,
                         residual_scale: tuple[float, float] = (0.05, 0.25)) -> nn.Module:
    """Overwrite every weight of an unfused peer in place; returns it in eval mode.

    * conv/linear weights kaiming-normal (fan-in), biases N(0, 0.05); squeeze-excite output
      biases around +2 so the gates mostly pass the signal (as trained gates do);
    * BN weight U(0.5, 1.5) (``residual_scale`` for the BN of a ``ConvBN`` that ends a residual
      branch), bias N(0, 0.1);
    * BN running statistics = those of one train-mode pass over ``STATS_BATCH`` N(0, 1) images
      of ``STATS_SIZE`` (cumulative average, so exactly that batch's), then running_var
      multiplied by U(0.8, 1.2).

    Deterministic for a seed (a private ``torch.Generator``; the global RNG is untouched).
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.copy_(_kaiming(m.weight.shape, m.weight[0].numel(), g))
            if m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
    for m in model.modules():
        if isinstance(m, SqueezeExcite):
            m.fc2.weight.mul_(0.25)
            m.fc2.bias.add_(2.0)
    ends = {m.bn for m in model.modules() if isinstance(m, ConvBN) and m.ends_residual}
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        lo, hi = residual_scale if bn in ends else (0.5, 1.5)
        bn.weight.copy_(_uniform(bn.weight.shape, lo, hi, g))
        bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=g))
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch -> exactly its statistics
    images = torch.randn(STATS_BATCH, 3, STATS_SIZE, STATS_SIZE, generator=g)
    model.train()
    model(images)
    for bn in bns:
        bn.momentum = 0.1
        assert bn.running_var is not None
        bn.running_var.mul_(_uniform(bn.running_var.shape, 0.8, 1.2, g))
    return model.eval()


@torch.no_grad()
def count_macs(model: nn.Module, img_size: int | tuple[int, int] = 224) -> int:
    """MACs of one image of ``img_size`` (``S`` or ``(H, W)``): every Conv2d and Linear; the
    rest is free. One eval-mode forward pass of a ``(1, 3, H, W)`` zero input with hooks."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel() * m.in_features

    hooked_forward(model, [(nn.Conv2d, conv_hook), (nn.Linear, linear_hook)], (h, w))
    return total
