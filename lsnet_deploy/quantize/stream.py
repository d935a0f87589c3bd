"""Exact equalization of a fused LSNet's residual stream, stage by stage.

Every block of a stage reads and writes one tensor, the residual stream ``(B, C, H, W)``. On
trained networks (and on the ``random-outliers`` family) a few of its ``C`` channels carry a
range 20-60x the median channel's; INT8 quantizes the stream **per tensor** at every residual
add, so those channels leave the others a handful of levels. Channel equalization of pairs
(:mod:`.prepare`) cannot reach it: the stream has many readers and writers.

It can still be rescaled exactly. Every op that touches the stream is linear per channel or
mixes channels linearly, so dividing channel ``c`` of stage ``i``'s stream by ``s_c > 0`` is
undone inside the readers, and the writers produce the scaled stream directly:

* **writers** divide output channel ``c`` (weight and bias) by ``s_c``: the stage's first
  convolution (the stem's last conv, or the downsample's 1x1 conv), every FFN's ``pw2`` and the
  attention's output conv;
* **channel-wise ops** commute with the scale: the fused RepVGG depthwise conv (its bias is
  divided by ``s``), squeeze-excite's gate multiply, SKA (``out_c`` is linear in ``x_c``) and the
  BatchNorm after it (its mean and bias are divided by ``s``);
* **readers** multiply input channel ``c`` by ``s_c``: FFN ``pw1``, LKP ``cv1``, SE ``fc1``, the
  attention's ``qkv``, the next stage's downsample (its depthwise conv's bias is divided, its
  1x1 conv reads the scaled channels) and the classifier after global pooling.

The scale brings every channel above the median down to it: ``s_c = max(1, (a_c / median(a))
** alpha)``, ``a_c`` the largest ``|value|`` of channel ``c`` over every stream tensor of the
stage on the calibration photos; ``alpha = 1`` (the default) equalizes fully. The readers'
weights then carry the range, where per-channel weight quantization absorbs much of it.
LSNet-T, ONNX Runtime INT8 (docs/int8.md has the table and the command): mean logit cosine
0.42 -> 0.88 on the outlier family, 0.976 -> 0.982 on the trained-looking one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..lsnet import Attention, Block, LSConv, LSNet, Residual, SqueezeExcite
from .prepare import run_hooked

__all__ = ["StreamReport", "equalize_stream", "stream_channel_max"]


@dataclass(frozen=True)
class StreamReport:
    """What :func:`equalize_stream` did: stages equalized, and per stage the ratio of the largest
    to the median channel range of the stream, before and after."""

    stages: int
    spread_before: tuple[float, ...]
    spread_after: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return {"stages": self.stages,
                "spread_before": [round(s, 2) for s in self.spread_before],
                "spread_after": [round(s, 2) for s in self.spread_after]}


def _stages(model: LSNet) -> list[nn.Sequential]:
    return [model.blocks1, model.blocks2, model.blocks3, model.blocks4]


def _blocks(stage: nn.Sequential) -> list[Block]:
    return [b for b in stage if isinstance(b, Block)]


def _producer(model: LSNet, i: int) -> nn.Conv2d:
    conv = model.patch_embed[-1] if i == 0 else _stages(model)[i][1]
    if not isinstance(conv, nn.Conv2d) or conv.bias is None:
        raise ValueError("equalize_stream needs a fused LSNet (reparameterize it first)")
    return conv


def _next_stage(model: LSNet, i: int) -> int | None:
    return next((j for j in range(i + 1, 4) if len(_stages(model)[j]) > 0), None)


def _streams(model: LSNet) -> list[int]:
    """Stages whose stream can be rescaled: stage 0 (the stem output) and every non-empty
    stage; the last one only when a linear classifier reads it (``num_classes > 0``)."""
    out = [i for i in range(4) if i == 0 or len(_stages(model)[i]) > 0]
    last = out[-1]
    if _next_stage(model, last) is None and not isinstance(model.head, nn.Linear):
        out.remove(last)
    return out


def _check_fused(model: LSNet) -> None:
    if not isinstance(model, LSNet):
        raise ValueError(f"equalize_stream takes an LSNet, got {type(model).__name__}")
    if model.head_dist is not None:
        raise ValueError("equalize_stream needs a fused LSNet (reparameterize it first)")
    for i in _streams(model):
        _producer(model, i)
        for b in _blocks(_stages(model)[i]):
            mixer = b.mixer
            ok = (isinstance(mixer, nn.Conv2d) and mixer.bias is not None) or (
                isinstance(mixer, LSConv) and isinstance(mixer.lkp.cv1, nn.Conv2d)
                and isinstance(mixer.bn, nn.BatchNorm2d)) or (
                isinstance(mixer, Residual) and isinstance(mixer.m, Attention)
                and mixer.m.fused)
            if not ok or not isinstance(b.ffn.m.pw1, nn.Conv2d):
                raise ValueError("equalize_stream needs a fused LSNet (reparameterize it first)")


@torch.no_grad()
def stream_channel_max(model: LSNet, images: torch.Tensor, batch: int = 8
                       ) -> dict[int, torch.Tensor]:
    """Largest ``|value|`` per channel of each stage's stream over ``images``: stage index ->
    ``(C,)``. The stream tensors are the stage's first conv output and every block's mixer, SE
    and FFN outputs."""
    maxima: dict[int, torch.Tensor] = {}
    hooks = []
    for i in _streams(model):
        mods: list[nn.Module] = [_producer(model, i)]
        for b in _blocks(_stages(model)[i]):
            mods += [b.mixer, b.se, b.ffn]
        for m in mods:
            def hook(_m: nn.Module, _a: tuple[torch.Tensor, ...], out: torch.Tensor,
                     i: int = i) -> None:
                v = out.detach().abs().amax(dim=(0, 2, 3)).float()
                maxima[i] = v if i not in maxima else torch.maximum(maxima[i], v)
            hooks.append(m.register_forward_hook(hook))
    run_hooked(model, images, batch, hooks)
    return maxima


@torch.no_grad()
def _rescale(model: LSNet, i: int, s: torch.Tensor) -> None:
    """Stage ``i``'s stream becomes ``stream / s`` (``s`` ``(C,)``, positive); logits unchanged."""
    col, row = s.view(1, -1, 1, 1), s.view(-1, 1, 1, 1)

    def write(conv: nn.Conv2d) -> None:
        assert conv.bias is not None
        conv.weight.div_(row)
        conv.bias.div_(s)

    write(_producer(model, i))
    for b in _blocks(_stages(model)[i]):
        mixer = b.mixer
        if isinstance(mixer, nn.Conv2d):  # fused RepVGG: depthwise, channel-wise
            assert mixer.bias is not None
            mixer.bias.div_(s)
        elif isinstance(mixer, LSConv):
            mixer.lkp.cv1.weight.mul_(col)
            bn = mixer.bn
            assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None
            bn.running_mean.div_(s)
            bn.bias.div_(s)
        else:
            assert isinstance(mixer, Residual) and isinstance(mixer.m, Attention)
            mixer.m.qkv.weight.mul_(col)
            write(mixer.m.proj[1])
        if isinstance(b.se, SqueezeExcite):
            b.se.fc1.weight.mul_(col)
        b.ffn.m.pw1.weight.mul_(col)
        write(b.ffn.m.pw2)
    nxt = _next_stage(model, i)
    if nxt is None:
        assert isinstance(model.head, nn.Linear)
        model.head.weight.mul_(s.view(1, -1))
    else:
        dw, pw = _stages(model)[nxt][0], _stages(model)[nxt][1]
        assert isinstance(dw, nn.Conv2d) and dw.bias is not None and isinstance(pw, nn.Conv2d)
        dw.bias.div_(s)
        pw.weight.mul_(col)


def _spread(maxima: torch.Tensor) -> float:
    return float(maxima.max() / maxima.median().clamp_min(1e-12))


@torch.no_grad()
def equalize_stream(model: LSNet, images: torch.Tensor, alpha: float = 1.0, batch: int = 8,
                    max_scale: float = 1e3) -> StreamReport:
    """Equalize the residual stream of every stage of the fused ``model`` in place.

    Args:
        model: a fused (reparameterized) LSNet in eval mode.
        images: ``(N, 3, H, W)`` normalized calibration images (the stream's ranges).
        alpha: share of each channel's excess range that is moved into the readers, in
            ``[0, 1]``; ``1`` brings every channel down to the median channel's range.
        batch: images per forward pass.
        max_scale: ``s_c`` is clamped to ``[1, max_scale]``.

    Raises:
        ValueError: ``alpha`` outside ``[0, 1]``, no image, or a model that is not a fused LSNet.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
    _check_fused(model)
    model.eval()
    before = stream_channel_max(model, images, batch)
    # stages are independent: rescaling stage i leaves every other stage's stream unchanged
    for i, a in before.items():
        ratio = a / a.median().clamp_min(1e-12)
        _rescale(model, i, (ratio**alpha).clamp(1.0, max_scale))
    after = stream_channel_max(model, images, batch)
    keys = sorted(before)
    return StreamReport(len(keys), tuple(_spread(before[k]) for k in keys),
                        tuple(_spread(after[k]) for k in keys))
