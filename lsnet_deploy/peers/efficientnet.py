"""EfficientNet-B0 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019), plain PyTorch.

Architecture: Table 1 of the paper, laid out as in torchvision's ``efficientnet_b0``: stem conv
3x3 s2 32 + BN + SiLU; seven MBConv stages (table below); each MBConv is 1x1 expand + BN + SiLU
(when the expansion ratio is not 1), depthwise kxk + BN + SiLU, squeeze-excite with
``max(1, c_in // 4)`` squeeze channels (0.25 of the *block input* channels), SiLU and sigmoid,
1x1 project + BN, identity shortcut when stride 1 and in == out; head 1x1 conv 1280 + BN + SiLU,
global average pool, Linear 1280 -> 1000 (training-time dropout and stochastic depth are the
identity in eval mode and left out).

Input ``(B, 3, H, W)`` ImageNet-normalized, H and W multiples of 32; output ``(B, 1000)``.

Published (paper's ImageNet results table): 77.1 top-1, 0.39 B FLOPS (multiply-adds), 5.3 M params;
torchvision's docs list 5,288,548 params and 0.39 GFLOPS for the same architecture. This
definition counts 0.386 G MACs (conv + linear) and 5,288,548 params unfused (5.27 M folded).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ConvBN, SqueezeExcite

__all__ = ["EfficientNet", "efficientnet_b0"]

# expansion ratio, kernel, stride, out channels, repeats
STAGES_B0: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM = 32
HEAD = 1280


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE: ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.use_res = stride == 1 and c_in == c_out
        exp = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [ConvBN(c_in, exp, 1), nn.SiLU()]
        layers += [
            ConvBN(exp, exp, kernel, stride, groups=exp), nn.SiLU(),
            SqueezeExcite(exp, max(1, c_in // 4), nn.SiLU, nn.Sigmoid),
            ConvBN(exp, c_out, 1, ends_residual=self.use_res),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class EfficientNet(nn.Module):
    """EfficientNet classifier: ``(B, 3, H, W) -> (B, num_classes)`` logits."""

    def __init__(self, stages: tuple[tuple[int, int, int, int, int], ...] = STAGES_B0,
                 num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBN(3, STEM, 3, 2), nn.SiLU()]
        c_in = STEM
        for expand, kernel, stride, c_out, repeats in stages:
            for i in range(repeats):
                layers.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        layers += [ConvBN(c_in, HEAD, 1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def efficientnet_b0() -> EfficientNet:
    """EfficientNet-B0 with BatchNorm (unfused), default init."""
    return EfficientNet(STAGES_B0)
