"""Small-kernel aggregation (SKA): the per-pixel dynamic 3x3 convolution of LSNet.

Semantics (identical to the official Triton kernel)::

    out[b, c, h, w] = sum_{k in 3x3} x[b, c, h + dh_k, w + dw_k] * w[b, c % G, k, h, w]

with zero padding, ``G = C // 8`` weight groups and ``k = 3 * (dh + 1) + (dw + 1)`` running over
the window row-major. Channel ``c`` uses weight group ``c % G`` (the groups are *tiled* over the
channels), not ``c // 8``.

The formulation here is the one that exports everywhere: pad, nine shifted slices, a broadcast
multiply and a sum. Viewing ``x`` as ``(B, C // G, G, H, W)`` puts channel ``c = r * G + g`` at
``[:, r, g]``, so the weight of tap ``k`` broadcasts as ``w[:, :, k].unsqueeze(1)`` of shape
``(B, 1, G, H, W)``: no tensor exceeds rank 5 (Core ML's limit), there is no ``repeat`` (which
litert-torch cannot convert along channels) and no ``unfold``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing as is_fx_tracing

__all__ = ["SKA", "ska"]


def ska(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Apply SKA.

    Args:
        x: features, ``(B, C, H, W)``.
        w: per-pixel kernels, ``(B, G, K*K, H, W)`` with ``C % G == 0`` and ``K`` odd (3 in LSNet).

    Returns:
        ``(B, C, H, W)``, same dtype as ``x``.
    """
    b, c, h, wd = x.shape
    groups, taps = w.shape[1], w.shape[2]
    if is_fx_tracing():
        # torch.fx symbolic tracing (coremltools' LinearQuantizer): shapes are proxies, so the
        # checks cannot run and the tap count is LSNet's fixed 3x3 window
        taps, ks = 9, 3
    else:
        ks = int(round(taps**0.5))
        if ks * ks != taps or ks % 2 == 0:
            raise ValueError(f"SKA weights must hold K*K taps with K odd, got {taps}")
        if c % groups != 0:
            raise ValueError(f"SKA: {c} channels are not a multiple of {groups} weight groups")
    pad = ks // 2
    xp = F.pad(x, (pad, pad, pad, pad))
    reps = c // groups
    out = None
    for k in range(taps):
        dy, dx = divmod(k, ks)
        tap = xp[:, :, dy : dy + h, dx : dx + wd].reshape(b, reps, groups, h, wd)
        term = tap * w[:, :, k].unsqueeze(1)
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(b, c, h, wd)


class SKA(nn.Module):
    """Module wrapper of :func:`ska` (no parameters), so the op shows up in module walks."""

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, H, W)``; ``w``: ``(B, G, 9, H, W)``; returns ``(B, C, H, W)``."""
        return ska(x, w)
