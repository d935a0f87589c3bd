"""A large depthwise convolution as a sum of small ones, for XNNPACK (LiteRT's CPU delegate).

XNNPACK runs a depthwise convolution of up to 25 taps (3x3, 5x5, 3x7, ...) in one pass of a
vectorized kernel; a larger one (LKP's 7x7: 49 taps) takes a path that is 15-20x slower per
multiply-add on the AMD EPYC (AVX512) host: LSNet-B's 7x7 depthwise on ``(1, 64, 28, 28)``
takes about 1.0 ms in fp32 (1.5-2.2 ms in INT8), more than LiteRT's own kernel without the
delegate (0.3-0.75 ms) (docs/performance.md, "LiteRT: LKP's 7x7 depthwise as three row
bands").

:class:`BandedDepthwise` computes the same function as bands of kernel rows: the input is
padded once, each band of ``rows x kw`` taps (``rows * kw <= 25``) convolves its own row
window of the padded input (a ``SLICE``), and the bands' outputs are summed: LKP's 7x7 becomes
3x7 + 2x7 + 2x7, 3.5-4.5x faster in XNNPACK at LSNet's shapes. Exact up to float32
reordering (~1e-6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_FAST_TAPS", "BandedDepthwise", "band_rows", "banded_if_large"]

MAX_FAST_TAPS = 25
"""The largest depthwise kernel (taps) XNNPACK runs in one pass (its 25-tap microkernels)."""


def band_rows(kh: int, kw: int, max_taps: int = MAX_FAST_TAPS) -> list[tuple[int, int]]:
    """Kernel rows ``[r0, r1)`` of each band: as few bands as keep ``rows * kw <= max_taps``,
    their heights as equal as possible (7x7 -> ``[(0, 3), (3, 5), (5, 7)]``)."""
    if kw > max_taps:
        raise ValueError(f"a {kh}x{kw} kernel has rows wider than {max_taps} taps")
    n = math.ceil(kh / max(1, max_taps // kw))
    base, extra = divmod(kh, n)
    rows, r0 = [], 0
    for i in range(n):
        r1 = r0 + base + (1 if i < extra else 0)
        rows.append((r0, r1))
        r0 = r1
    return rows


def _plain_depthwise(conv: nn.Conv2d) -> bool:
    """A stride-1, undilated depthwise conv with explicit (numeric) zero padding."""
    return (conv.groups == conv.in_channels == conv.out_channels and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple))


class BandedDepthwise(nn.Module):
    """A stride-1 depthwise ``nn.Conv2d`` (symmetric zero padding) as a sum of row bands.

    ``(B, C, H, W)`` -> ``(B, C, H', W')``, the same shapes and function as ``conv``; the
    weight bands ``band{i}`` are ``(C, 1, rows_i, kw)`` buffers, the bias is added once.
    """

    def __init__(self, conv: nn.Conv2d, max_taps: int = MAX_FAST_TAPS) -> None:
        super().__init__()
        c = conv.in_channels
        if not _plain_depthwise(conv):
            raise ValueError("BandedDepthwise takes a stride-1, undilated depthwise conv with "
                             "explicit zero padding")
        kh, kw = conv.kernel_size
        self.channels = c
        self.padding = (int(conv.padding[0]), int(conv.padding[1]))
        self.rows = band_rows(kh, kw, max_taps)
        w = conv.weight.detach()
        for i, (r0, r1) in enumerate(self.rows):
            self.register_buffer(f"band{i}", w[:, :, r0:r1].clone())
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = self.padding
        # padded and sliced channels-last, like SKA (lsnet_deploy.channels_last): in an INT8
        # graph litert-torch would otherwise pad and slice NCHW between layout transposes
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))
        kh = self.rows[-1][1]
        h_out = xp.shape[1] - kh + 1
        out = None
        for i, (r0, r1) in enumerate(self.rows):
            window = xp[:, r0 : r0 + h_out + (r1 - r0) - 1].permute(0, 3, 1, 2)
            term = F.conv2d(window, getattr(self, f"band{i}"),
                            self.bias if out is None else None, groups=self.channels)
            out = term if out is None else out + term
        assert out is not None
        return out


def banded_if_large(conv: nn.Conv2d, max_taps: int = MAX_FAST_TAPS) -> nn.Module:
    """``conv`` as :class:`BandedDepthwise` when it is a depthwise kernel of more than
    ``max_taps`` taps that the bands can express; otherwise ``conv`` itself."""
    kh, kw = conv.kernel_size
    if kh * kw <= max_taps or kw > max_taps or not _plain_depthwise(conv):
        return conv
    return BandedDepthwise(conv, max_taps)
