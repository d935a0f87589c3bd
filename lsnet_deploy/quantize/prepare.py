"""Quantization-friendly preparation of a fused LSNet: exact channel equalization.

Post-training INT8 quantizes every activation tensor with **one** range (per tensor), while
weights get one range per output channel. A few channels with a range 10-50x the others (the
outlier channels trained networks have) leave the rest of the tensor a handful of levels.

Equalization moves that range from the activation into the next layer's weights, where the
per-channel weight quantization absorbs it. For a pair ``producer -> [ReLU] -> consumer`` in
which the consumer mixes its input channels linearly, channel ``j`` of the producer's output
(weights and bias) is divided by ``s_j > 0`` and the consumer's input channel ``j`` is
multiplied by ``s_j``. ReLU commutes with a positive scale, so the float model is unchanged
(up to rounding: ``tests/test_prepare.py`` holds it to 1e-4 on logits). The scale follows
SmoothQuant (Xiao et al., 2023) and cross-layer equalization (Nagel et al., 2019):

    s_j = a_j ** alpha / w_j ** (1 - alpha)

with ``a_j`` the largest ``|activation|`` of channel ``j`` on calibration images and ``w_j``
the largest ``|weight|`` that reads channel ``j``; ``alpha = 0.5`` gives activation and weight
the same share. The pairs of a fused LSNet (:func:`equalizable_pairs`):

* FFN: ``pw1 -> ReLU -> pw2`` (1x1 -> 1x1);
* LKP: ``cv1 -> ReLU -> cv2`` (1x1 -> depthwise 7x7), ``cv2 -> cv3`` (depthwise -> 1x1, no
  activation), ``cv3 -> ReLU -> cv4`` (1x1 -> 1x1; cv4 feeds a GroupNorm, so its own output
  scale would not matter, but its input range does);
* SE: ``fc1 -> ReLU -> fc2``;
* stem: ``conv -> ReLU -> conv`` (3x3, twice);
* downsample: depthwise stride-2 conv -> 1x1 conv (no activation).

The residual stream itself (the adds) has many readers and writers: :mod:`.stream` equalizes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..lsnet import FFN, LKP, LSNet, SqueezeExcite

__all__ = ["EqualizationReport", "Pair", "equalizable_pairs", "equalize", "prepare_for_int8"]


@dataclass(frozen=True)
class Pair:
    """One equalizable pair: ``producer``'s output channels are ``consumer``'s input channels.

    Attributes:
        name: where it is (``stages.2.ffn.pw1->pw2`` style).
        producer: a Conv2d with bias (any groups: depthwise too).
        consumer: a Conv2d reading ``producer``'s channels, dense (groups 1) or depthwise.
    """

    name: str
    producer: nn.Conv2d
    consumer: nn.Conv2d


@dataclass(frozen=True)
class EqualizationReport:
    """What :func:`equalize` did: pairs equalized, the mean and largest ratio of the largest
    to the median channel range of the equalized activations, before and after."""

    pairs: int
    spread_before: float
    spread_after: float
    max_spread_before: float
    max_spread_after: float

    def to_dict(self) -> dict[str, float | int]:
        return {"pairs": self.pairs, "spread_before": round(self.spread_before, 2),
                "spread_after": round(self.spread_after, 2),
                "max_spread_before": round(self.max_spread_before, 2),
                "max_spread_after": round(self.max_spread_after, 2)}


def _conv(m: nn.Module) -> nn.Conv2d | None:
    return m if isinstance(m, nn.Conv2d) and m.bias is not None else None


def _pair(name: str, producer: nn.Module, consumer: nn.Module) -> Pair | None:
    p = _conv(producer)
    if p is None or not isinstance(consumer, nn.Conv2d):
        return None
    depthwise = consumer.groups == consumer.in_channels == consumer.out_channels
    if p.out_channels != consumer.in_channels or not (consumer.groups == 1 or depthwise):
        return None
    return Pair(name, p, consumer)


def _sequential_pairs(name: str, seq: nn.Sequential) -> list[Pair | None]:
    """The stem's ``conv -> ReLU -> conv`` and a stage's downsample ``dw conv -> 1x1 conv``."""
    mods = list(seq)
    out: list[Pair | None] = []
    for i, first in enumerate(mods[:-1]):
        if not isinstance(first, nn.Conv2d):
            continue
        nxt = mods[i + 1]
        if isinstance(nxt, nn.ReLU) and i + 2 < len(mods):
            out.append(_pair(f"{name}.{i}->{i + 2}", first, mods[i + 2]))
        elif isinstance(nxt, nn.Conv2d) and first.groups == first.in_channels > 1:
            out.append(_pair(f"{name}.{i}->{i + 1}", first, nxt))
    return out


def equalizable_pairs(model: nn.Module) -> list[Pair]:
    """Every pair of a **fused** LSNet that can be equalized exactly (see the module
    docstring); unfused sub-modules (Conv2d_BN) are skipped."""
    pairs: list[Pair | None] = []
    for name, m in model.named_modules():
        if isinstance(m, FFN):
            pairs.append(_pair(f"{name}.pw1->pw2", m.pw1, m.pw2))
        elif isinstance(m, LKP):
            pairs += [_pair(f"{name}.cv1->cv2", m.cv1, m.cv2),
                      _pair(f"{name}.cv2->cv3", m.cv2, m.cv3),
                      _pair(f"{name}.cv3->cv4", m.cv3, m.cv4)]
        elif isinstance(m, SqueezeExcite):
            pairs.append(_pair(f"{name}.fc1->fc2", m.fc1, m.fc2))
        elif isinstance(m, nn.Sequential):
            pairs += _sequential_pairs(name, m)
    return [p for p in pairs if p is not None]


@torch.no_grad()
def run_hooked(model: nn.Module, images: torch.Tensor, batch: int,
               hooks: list[torch.utils.hooks.RemovableHandle]) -> None:
    """Run ``images`` ``(N, 3, H, W)`` through ``model`` ``batch`` at a time (for the ranges the
    ``hooks`` collect), then remove the hooks, also on error."""
    try:
        for i in range(0, images.shape[0], batch):
            model(images[i : i + batch])
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def _channel_max(model: nn.Module, pairs: list[Pair], images: torch.Tensor,
                 batch: int) -> list[torch.Tensor]:
    """Largest |input| per channel of every pair's consumer over ``images``."""
    maxima = [torch.zeros(p.consumer.in_channels) for p in pairs]
    hooks = []
    for k, p in enumerate(pairs):
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], k: int = k) -> None:
            x = args[0].detach().abs().amax(dim=(0, 2, 3))
            maxima[k] = torch.maximum(maxima[k], x.float())
        hooks.append(p.consumer.register_forward_pre_hook(hook))
    run_hooked(model, images, batch, hooks)
    return maxima


def _weight_max(consumer: nn.Conv2d) -> torch.Tensor:
    """Largest |weight| reading each input channel of ``consumer``."""
    w = consumer.weight.detach().abs()
    if consumer.groups == 1:
        return w.amax(dim=(0, 2, 3))
    return w.amax(dim=(1, 2, 3))  # depthwise: channel j's own kernel


def _spread(maxima: torch.Tensor) -> float:
    median = maxima.median().clamp_min(1e-12)
    return float(maxima.max() / median)


@torch.no_grad()
def _scale(pair: Pair, s: torch.Tensor) -> None:
    p, c = pair.producer, pair.consumer
    assert p.bias is not None
    p.weight.div_(s.view(-1, 1, 1, 1))
    p.bias.div_(s)
    if c.groups == 1:
        c.weight.mul_(s.view(1, -1, 1, 1))
    else:
        c.weight.mul_(s.view(-1, 1, 1, 1))


@torch.no_grad()
def equalize(model: LSNet, images: torch.Tensor, alpha: float = 0.5,
             batch: int = 8, max_scale: float = 1e3) -> EqualizationReport:
    """Equalize every pair of the fused ``model`` in place (float logits unchanged).

    Args:
        model: a fused (reparameterized) LSNet in eval mode.
        images: ``(N, 3, H, W)`` normalized calibration images (the activation ranges).
        alpha: the activations' share of the range, in ``[0, 1]``; ``0.5`` balances both.
        batch: images per forward pass.
        max_scale: ``s_j`` is clamped to ``[1 / max_scale, max_scale]`` (dead channels).

    Raises:
        ValueError: ``alpha`` outside ``[0, 1]`` or no image.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
    model.eval()
    pairs = equalizable_pairs(model)
    if not pairs:
        return EqualizationReport(0, 1.0, 1.0, 1.0, 1.0)
    before: list[float] = []
    # one pair at a time, in model order: a pair's activations depend on the pairs before it
    # only through values that equalization leaves unchanged, so one calibration pass suffices
    act = _channel_max(model, pairs, images, batch)
    for pair, a in zip(pairs, act, strict=True):
        before.append(_spread(a))
        w = _weight_max(pair.consumer).clamp_min(1e-12)
        s = (a.clamp_min(1e-12) ** alpha) / (w ** (1.0 - alpha))
        s = s / s[a > 0].median() if bool((a > 0).any()) else torch.ones_like(s)
        _scale(pair, s.clamp(1.0 / max_scale, max_scale))
    after = [_spread(a) for a in _channel_max(model, pairs, images, batch)]
    return EqualizationReport(len(pairs), sum(before) / len(before), sum(after) / len(after),
                              max(before), max(after))


@torch.no_grad()
def prepare_for_int8(model: LSNet, images: torch.Tensor) -> dict[str, object]:
    """The preparation the exporters apply before INT8 calibration, in place on the fused
    ``model``: the residual stream first (:func:`~.stream.equalize_stream`, ``alpha = 1``),
    then q, k and v inside the attentions (:func:`~.attention.equalize_attention`), then every
    conv pair (:func:`equalize`, ``alpha = 0.5``). All are exact, so the float logits do not
    change (beyond rounding). ``images``: ``(N, 3, H, W)`` normalized calibration images.

    Returns the JSON-able record of the steps (``{"stream", "attentions", "pairs"}``).
    """
    from .attention import equalize_attention
    from .stream import equalize_stream

    stream = equalize_stream(model, images)
    attentions = equalize_attention(model, images)
    pairs = equalize(model, images)
    return {"stream": stream.to_dict(), "attentions": attentions, "pairs": pairs.to_dict()}
