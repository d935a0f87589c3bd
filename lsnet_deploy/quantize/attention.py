"""Exact channel equalization inside LSNet's stage-4 attention (fused model).

The attention's ``qkv`` 1x1 conv (a Conv-BN: trained BatchNorms give it outlier channels)
writes three tensors that INT8 quantizes per tensor: ``q`` (before and after its depthwise 3x3
conv), ``k`` and ``v``. None of them is a plain conv -> conv pair, so :mod:`.prepare` leaves
them alone; three exact rescalings reach them:

* **q before its depthwise conv**: channel ``c`` of qkv's q rows is divided by ``u_c`` and the
  depthwise kernel of channel ``c`` multiplied by ``u_c`` (its per-channel weight scale absorbs
  it). ``u_c = max(1, a_c / median(a))`` brings every channel down to the median's range.
* **q against k**: ``softmax(q^T k)`` only sees the products ``q_c k_c`` (channel ``c`` of one
  head's key dimension), so ``q_c / s_c`` and ``k_c * s_c`` leave it unchanged (q's depthwise
  weight and bias are divided, k's qkv rows multiplied). ``s_c = sqrt(a^q_c / a^k_c)`` gives the
  two the same range: a channel large in only one of them loses half its excess there.
* **v -> output conv**: ``out = v @ attn^T`` is linear per channel and the ReLU before the
  output conv commutes with a positive scale, so v's channel ``c`` (qkv rows) is divided by
  ``t_c`` and the output conv's input channel ``c`` multiplied by it; ``t`` is the pair scale of
  :func:`.prepare.equalize` (``alpha = 0.5``).

``a`` are the largest ``|values|`` per channel on calibration images. The float logits do not
change beyond rounding (``tests/test_stream.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..lsnet import Attention
from .prepare import run_hooked

__all__ = ["equalize_attention"]


def _attentions(model: nn.Module) -> list[Attention]:
    found = [m for m in model.modules() if isinstance(m, Attention)]
    for a in found:
        if not (a.fused and isinstance(a.qkv, nn.Conv2d) and isinstance(a.dw, nn.Conv2d)
                and isinstance(a.proj[1], nn.Conv2d)):
            raise ValueError("equalize_attention needs a fused LSNet (reparameterize it first)")
    return found


@torch.no_grad()
def _ranges(model: nn.Module, attentions: list[Attention], images: torch.Tensor,
            batch: int) -> list[dict[str, torch.Tensor]]:
    """Per attention: largest |value| per channel of q before / after its dw conv, k and v."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in attentions]
    hooks = []

    def keep(k: int, name: str, x: torch.Tensor) -> None:
        v = x.detach().abs().amax(dim=(0, 2, 3)).float()
        out[k][name] = v if name not in out[k] else torch.maximum(out[k][name], v)

    for k, a in enumerate(attentions):
        def on_qkv(_m: nn.Module, _i: tuple[torch.Tensor, ...], y: torch.Tensor, k: int = k,
                   a: Attention = a) -> None:
            q, key, v = y.split([a.nh_kd, a.nh_kd, a.dh], dim=1)
            keep(k, "q_pre", q)
            keep(k, "k", key)
            keep(k, "v", v)

        def on_dw(_m: nn.Module, _i: tuple[torch.Tensor, ...], y: torch.Tensor,
                  k: int = k) -> None:
            keep(k, "q", y)

        hooks += [a.qkv.register_forward_hook(on_qkv), a.dw.register_forward_hook(on_dw)]
    run_hooked(model, images, batch, hooks)
    return out


def _rows(conv: nn.Conv2d, start: int, scale: torch.Tensor) -> None:
    """Multiply output channels ``start .. start + len(scale)`` (weight and bias) by ``scale``."""
    assert conv.bias is not None
    end = start + scale.numel()
    conv.weight[start:end].mul_(scale.view(-1, 1, 1, 1))
    conv.bias[start:end].mul_(scale)


@torch.no_grad()
def equalize_attention(model: nn.Module, images: torch.Tensor, batch: int = 8,
                       max_scale: float = 1e3) -> int:
    """Equalize q, k and v of every attention of the fused ``model`` in place (see the module
    docstring). ``images``: ``(N, 3, H, W)`` normalized calibration images. Returns the number
    of attentions equalized (0 for a model without attention).

    Raises:
        ValueError: an unfused attention, or no image.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
    attentions = _attentions(model)
    if not attentions:
        return 0
    model.eval()
    lo, hi = 1.0 / max_scale, max_scale
    # 1. q before the depthwise conv: into the depthwise kernels
    for a, r in zip(attentions, _ranges(model, attentions, images, batch), strict=True):
        pre = r["q_pre"].clamp_min(1e-12)
        u = (pre / pre.median()).clamp(1.0, hi)
        _rows(a.qkv, 0, 1.0 / u)
        a.dw.weight.mul_(u.view(-1, 1, 1, 1))
    # 2. q against k, 3. v into the output conv (ranges after step 1)
    for a, r in zip(attentions, _ranges(model, attentions, images, batch), strict=True):
        s = (r["q"].clamp_min(1e-12) / r["k"].clamp_min(1e-12)).sqrt().clamp(lo, hi)
        a.dw.weight.div_(s.view(-1, 1, 1, 1))
        assert a.dw.bias is not None
        a.dw.bias.div_(s)
        _rows(a.qkv, a.nh_kd, s)
        proj = a.proj[1]
        assert isinstance(proj, nn.Conv2d)
        act = r["v"].clamp_min(1e-12)
        w = proj.weight.abs().amax(dim=(0, 2, 3)).clamp_min(1e-12)
        t = act.sqrt() / w.sqrt()
        t = (t / t.median()).clamp(lo, hi)
        _rows(a.qkv, 2 * a.nh_kd, 1.0 / t)
        proj.weight.mul_(t.view(1, -1, 1, 1))
    return len(attentions)
