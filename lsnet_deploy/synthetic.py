"""Synthetic "trained-looking" weights for LSNet, for tests and offline demos.

Freshly initialized LSNet is degenerate for numerical checks: every residual branch ends in a
BatchNorm with weight 0 and every BN has mean 0 / var 1, so fusion bugs and quantization error
hide. :func:`init_trained_looking` gives a model whose statistics look like a trained one:

* conv/linear weights with fan-in scaling, so activations stay O(1);
* BatchNorm running mean/var *estimated* by a forward pass (train mode, cumulative average) on
  the given images (real photos or a smooth synthetic batch), then perturbed;
* random BN affine parameters, with the last BN of every residual branch scaled to 0.1-0.3
  (as trained residual networks have), and random attention biases and GroupNorm affines;
* squeeze-excite gates that mostly pass the signal (sigmoid around 0.7-0.95), as trained ones
  do: random gates near 0.5 would halve the features in every other block.

Two families (:data:`FAMILIES`): ``trained-looking`` (the above) and ``outliers``, the same plus
the outlier channels real trained networks have and post-training quantization suffers from:
in every BatchNorm that does not end a residual branch, a few channels (2%, at least one) get a
scale 10-50x the others (:func:`add_outlier_channels`). The statistics are estimated after that,
so the next BatchNorm sees them as they are; the outliers live in the activations between
a BatchNorm and the next convolution (a per-tensor activation range 10-50x the typical one).

The logits of the result are O(1). The weights mean nothing: never ship them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lsnet import FFN, Attention, LSConv, LSNet, RepVGGDW, SqueezeExcite

__all__ = ["FAMILIES", "add_outlier_channels", "init_trained_looking", "smooth_noise_images"]

FAMILIES = ("trained-looking", "outliers")
"""Synthetic weight families: see the module docstring."""

OUTLIER_FRACTION = 0.02
"""Share of the channels of a BatchNorm given an outlier scale (at least one)."""
OUTLIER_SCALE = (10.0, 50.0)
"""Range of the factor an outlier channel's BatchNorm scale is multiplied by."""


def smooth_noise_images(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``(n, 3, H, W)`` smooth random images, roughly zero-mean unit-variance per channel.

    Low-resolution noise upsampled bicubically plus a little fine noise: structure at several
    scales, like a normalized photo, without needing any file.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    out = torch.zeros(n, 3, h, w)
    for cells in (4, 16, 64):
        coarse = torch.randn(n, 3, cells, cells, generator=g)
        out += F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    out += 0.2 * torch.randn(n, 3, h, w, generator=g)
    return (out - out.mean((2, 3), keepdim=True)) / out.std((2, 3), keepdim=True)


def _residual_end_bns(model: LSNet) -> set[nn.BatchNorm2d]:
    """BatchNorms that end a residual branch (they get small scales)."""
    ends: set[nn.BatchNorm2d] = set()
    for m in model.modules():
        if isinstance(m, FFN):
            ends.add(m.pw2.bn)
        elif isinstance(m, Attention):
            ends.add(m.proj[1].bn)
        elif isinstance(m, LSConv):
            ends.add(m.bn)
        elif isinstance(m, RepVGGDW):
            ends.add(m.conv.bn)
            ends.add(m.conv1.bn)
    return ends


@torch.no_grad()
def init_trained_looking(
    model: LSNet,
    seed: int = 0,
    images: torch.Tensor | None = None,
    residual_scale: tuple[float, float] = (0.1, 0.3),
    family: str = "trained-looking",
) -> LSNet:
    """Overwrite every weight of an unfused ``model`` in place; returns it in eval mode.

    Args:
        model: an unfused :class:`LSNet`.
        seed: RNG seed (the result is deterministic for a seed and images).
        images: ``(B, 3, H, W)`` normalized images used to estimate BN statistics; default 8
            :func:`smooth_noise_images` of the model's size.
        residual_scale: range of the |weight| of residual-branch-final BatchNorms.
        family: one of :data:`FAMILIES`; ``outliers`` adds :func:`add_outlier_channels`.

    Raises:
        ValueError: an unknown ``family``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown synthetic weight family {family!r}; use one of "
                         f"{', '.join(FAMILIES)}")
    g = torch.Generator().manual_seed(seed)

    def uniform(shape: torch.Size, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return std * torch.randn(shape, generator=g)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(normal(m.weight.shape, (2.0 / fan_in) ** 0.5))
            if m.bias is not None:
                m.bias.copy_(normal(m.bias.shape, 0.05))
        elif isinstance(m, nn.Linear):
            m.weight.copy_(normal(m.weight.shape, 0.5 / m.in_features**0.5))
            m.bias.copy_(normal(m.bias.shape, 0.1))
        elif isinstance(m, nn.GroupNorm):
            m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
            m.bias.copy_(normal(m.bias.shape, 0.1))
        elif isinstance(m, Attention):
            m.attention_biases.copy_(normal(m.attention_biases.shape, 0.5))
    for m in model.modules():
        if isinstance(m, SqueezeExcite):
            # trained SE gates mostly pass the signal (sigmoid ~0.7-0.95); a random gate of ~0.5
            # in every other block would shrink the features geometrically with depth
            fc2 = m.fc2
            fc2.weight.copy_(normal(fc2.weight.shape, 0.5 / fc2.in_channels**0.5))
            assert fc2.bias is not None
            fc2.bias.copy_(2.0 + normal(fc2.bias.shape, 0.5))

    # BN affine parameters first, then statistics: exact averages over the images in train mode
    # (each layer sees inputs normalized by batch statistics, which equal the running ones on
    # the same batch), so every BN's running stats match what it sees in eval mode.
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    ends = _residual_end_bns(model)
    lo, hi = residual_scale
    for bn in bns:
        if bn in ends:
            bn.weight.copy_(uniform(bn.weight.shape, lo, hi))
        else:
            bn.weight.copy_(uniform(bn.weight.shape, 0.6, 1.4))
        bn.bias.copy_(normal(bn.bias.shape, 0.1))
        bn.reset_running_stats()
        bn.momentum = None
    if family == "outliers":
        add_outlier_channels([bn for bn in bns if bn not in ends], g)
    if images is None:
        images = smooth_noise_images(8, model.img_size, seed)
    model.train()
    model(images)
    for bn in bns:  # then a small perturbation, so stats are not exactly the batch's
        bn.momentum = 0.1
        bn.running_mean.add_(normal(bn.running_mean.shape, 0.05) * bn.running_var.sqrt())
        bn.running_var.mul_(uniform(bn.running_var.shape, 0.9, 1.1))
    return model.eval()


@torch.no_grad()
def add_outlier_channels(bns: list[nn.modules.batchnorm._BatchNorm], g: torch.Generator,
                         fraction: float = OUTLIER_FRACTION,
                         scale: tuple[float, float] = OUTLIER_SCALE) -> int:
    """Multiply the affine scale of ``max(1, round(fraction * C))`` random channels of every
    BatchNorm in ``bns`` by a factor drawn uniformly from ``scale``; returns how many channels
    were changed. Call it before the statistics are estimated."""
    changed = 0
    lo, hi = scale
    for bn in bns:
        c = bn.weight.numel()
        k = max(1, round(fraction * c))
        idx = torch.randperm(c, generator=g)[:k]
        bn.weight[idx] *= lo + (hi - lo) * torch.rand(k, generator=g)
        changed += k
    return changed
