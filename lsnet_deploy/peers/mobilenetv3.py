"""MobileNetV3-Large 1.0 (Howard et al., "Searching for MobileNetV3", ICCV 2019), plain PyTorch.

Architecture: Table 1 of the paper (the bneck table below), laid out as in torchvision's
``mobilenet_v3_large``: stem conv 3x3 s2 16 + BN + hardswish; 15 inverted-residual blocks
(1x1 expand + BN + act if the expansion differs from the input, depthwise kxk + BN + act,
squeeze-excite with ``make_divisible(exp // 4, 8)`` squeeze channels, ReLU and hardsigmoid,
1x1 project + BN; identity shortcut when stride 1 and in == out); 1x1 conv 960 + BN + hardswish;
global average pool; Linear 960 -> 1280 + hardswish; Linear 1280 -> 1000 (the training-time
dropout is left out: it is the identity in eval mode).

Input ``(B, 3, H, W)`` ImageNet-normalized, H and W multiples of 32; output ``(B, 1000)``.

Published (paper; the same numbers are quoted e.g. by the randl/mobilenetv3-pytorch
README): 75.2 top-1, 219 M MAdds, 5.4 M params; torchvision's ``mobilenet_v3_large`` docs list
5,483,032 params and 0.22 GFLOPS for the same architecture. This definition counts
217 M MACs (conv + linear) and 5,483,032 params unfused (5.47 M with every BN folded).
"""

from __future__ import annotations

import torch
from torch import nn

from .common import ConvBN, SqueezeExcite, make_divisible

__all__ = ["MobileNetV3", "mobilenetv3_large"]

# kernel, expanded channels, out channels, squeeze-excite, activation (RE/HS), stride
BNECK_LARGE: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
STEM = 16
LAST_CONV = 960
LAST_LINEAR = 1280


def _act(kind: str) -> nn.Module:
    return nn.Hardswish() if kind == "HS" else nn.ReLU()


class InvertedResidual(nn.Module):
    """One bneck: ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``."""

    def __init__(self, c_in: int, kernel: int, exp: int, c_out: int, use_se: bool, act: str,
                 stride: int) -> None:
        super().__init__()
        self.use_res = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if exp != c_in:
            layers += [ConvBN(c_in, exp, 1), _act(act)]
        layers += [ConvBN(exp, exp, kernel, stride, groups=exp), _act(act)]
        if use_se:
            layers.append(SqueezeExcite(exp, make_divisible(exp // 4, 8), nn.ReLU, nn.Hardsigmoid))
        layers.append(ConvBN(exp, c_out, 1, ends_residual=self.use_res))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3(nn.Module):
    """MobileNetV3 classifier: ``(B, 3, H, W) -> (B, num_classes)`` logits."""

    def __init__(self, bneck: tuple[tuple[int, int, int, bool, str, int], ...] = BNECK_LARGE,
                 num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBN(3, STEM, 3, 2), nn.Hardswish()]
        c_in = STEM
        for kernel, exp, c_out, use_se, act, stride in bneck:
            layers.append(InvertedResidual(c_in, kernel, exp, c_out, use_se, act, stride))
            c_in = c_out
        layers += [ConvBN(c_in, LAST_CONV, 1), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(LAST_CONV, LAST_LINEAR), nn.Hardswish(), nn.Linear(LAST_LINEAR, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenetv3_large() -> MobileNetV3:
    """MobileNetV3-Large 1.0 with BatchNorm (unfused), default init."""
    return MobileNetV3(BNECK_LARGE)
