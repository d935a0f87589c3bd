"""RepViT-M0.9 (Wang et al., "RepViT: Revisiting Mobile CNN From ViT Perspective", CVPR 2024;
the config that the repository's first release named ``repvit_m1``), plain PyTorch, written
from the architecture of THU-MIG/RepViT ``model/repvit.py`` (``repvit_m0_9``).

Architecture (training-time form, :func:`repvit_m0_9`):

* stem: ConvBN 3x3 s2 3 -> 24, GELU, ConvBN 3x3 s2 24 -> 48 (``(B, 48, H/4, W/4)``);
* 26 RepViT blocks (table below); a block is a token mixer then a residual channel mixer
  ``x + ConvBN 1x1 (c -> 2c), GELU, ConvBN 1x1 (2c -> c)``. Stride-1 token mixer: RepVGGDW
  ``BN(dwConvBN3x3(x) + dwConv1x1(x) + x)`` then optional squeeze-excite; stride-2 token
  mixer: dwConvBN3x3 s2, optional squeeze-excite, ConvBN 1x1 ``c_in -> c_out``. Squeeze-excite
  is timm's ``SqueezeExcite(c, 0.25)``: ``make_divisible(c / 4, 8)`` squeeze channels (never
  bumped), ReLU, sigmoid. Stages of 48 / 96 / 192 / 384 channels at strides 4 / 8 / 16 / 32;
* global average pool, then the distilled classifier: two BN1d + Linear(384, 1000) heads whose
  outputs are averaged (the released checkpoints are the distilled ones).

Deploy (fused) form, after :func:`lsnet_deploy.peers.common.fold_batchnorms`: every RepVGGDW is
one depthwise 3x3 conv with bias, every ConvBN a conv with bias, the classifier one Linear.

Input ``(B, 3, H, W)`` ImageNet-normalized, H and W multiples of 32; output ``(B, 1000)``.

Published (THU-MIG/RepViT README, "Classification on ImageNet-1K" table): M0.9 78.7 top-1
at 300 epochs (79.1 at 450), 5.1 M params, 0.8 G MACs. This definition counts 0.816 G MACs
(conv + linear) and 5,067,056 params fused (0.817 G and 5,489,328 params unfused: the dw 1x1
branches, the BNs and the second head fold away).
"""

from __future__ import annotations

import torch
from torch import nn

from ..lsnet import Residual, fold_bn_into_conv, fold_bn_into_linear
from .common import ConvBN, SqueezeExcite, make_divisible

__all__ = ["RepViT", "repvit_m0_9"]

# kernel, expansion, out channels, squeeze-excite, (hardswish flag: GELU either way), stride
CFG_M0_9: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 2, 48, True, False, 1),
    (3, 2, 48, False, False, 1),
    (3, 2, 48, False, False, 1),
    (3, 2, 96, False, False, 2),
    (3, 2, 96, True, False, 1),
    (3, 2, 96, False, False, 1),
    (3, 2, 96, False, False, 1),
    (3, 2, 192, False, True, 2),
    *(((3, 2, 192, True, True, 1), (3, 2, 192, False, True, 1)) * 7),
    (3, 2, 192, False, True, 1),
    (3, 2, 384, False, True, 2),
    (3, 2, 384, True, True, 1),
    (3, 2, 384, False, True, 1),
)


def _se(channels: int) -> SqueezeExcite:
    return SqueezeExcite(channels, make_divisible(channels * 0.25, 8, round_limit=0.0),
                         nn.ReLU, nn.Sigmoid)


class RepVGGDW(nn.Module):
    """``BN(dwconv3x3_bn(x) + dwconv1x1(x) + x)``: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvBN(channels, channels, 3, groups=channels, ends_residual=True)
        self.conv1 = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """One depthwise 3x3 ``Conv2d`` with bias: the three branches summed, then the BN."""
        conv = self.conv.fuse()
        assert conv.bias is not None and self.conv1.bias is not None
        w1 = nn.functional.pad(self.conv1.weight, [1, 1, 1, 1])
        identity = nn.functional.pad(torch.ones_like(self.conv1.weight), [1, 1, 1, 1])
        conv.weight.add_(w1 + identity)
        conv.bias.add_(self.conv1.bias)
        return fold_bn_into_conv(conv, self.bn)


class RepViTBlock(nn.Module):
    """Token mixer then residual channel mixer: ``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int,
                 use_se: bool) -> None:
        super().__init__()
        se: nn.Module = _se(c_in) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(
                ConvBN(c_in, c_in, kernel, 2, groups=c_in), se, ConvBN(c_in, c_out, 1))
            hidden = 2 * c_out
        else:
            assert c_in == c_out, "a stride-1 RepViT block keeps its width"
            self.token_mixer = nn.Sequential(RepVGGDW(c_in), se)
        self.channel_mixer = Residual(nn.Sequential(
            ConvBN(c_out, hidden, 1), nn.GELU(), ConvBN(hidden, c_out, 1, ends_residual=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


class BNLinear(nn.Sequential):
    """``Linear(BatchNorm1d(x))``: ``(B, c_in) -> (B, c_out)``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(c_in)
        self.linear = nn.Linear(c_in, c_out)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """The equivalent single ``Linear``."""
        return fold_bn_into_linear(self.bn, self.linear)


class DistilledClassifier(nn.Module):
    """Mean of a classification head and a distillation head: ``(B, C) -> (B, num_classes)``
    (the eval-mode output of the reference in train mode too)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = BNLinear(dim, num_classes)
        self.classifier_dist = BNLinear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.classifier(x) + self.classifier_dist(x)) / 2

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """One ``Linear``: the average of the two fused heads' weights and biases."""
        a, b = self.classifier.fuse(), self.classifier_dist.fuse()
        a.weight.add_(b.weight).div_(2)
        a.bias.add_(b.bias).div_(2)
        return a


class RepViT(nn.Module):
    """RepViT classifier: ``(B, 3, H, W) -> (B, num_classes)`` logits."""

    def __init__(self, cfg: tuple[tuple[int, int, int, bool, bool, int], ...] = CFG_M0_9,
                 num_classes: int = 1000) -> None:
        super().__init__()
        c_in = cfg[0][2]
        layers: list[nn.Module] = [nn.Sequential(
            ConvBN(3, c_in // 2, 3, 2), nn.GELU(), ConvBN(c_in // 2, c_in, 3, 2))]
        for kernel, expansion, c, use_se, _hs, stride in cfg:
            c_out = make_divisible(c, 8)
            hidden = make_divisible(c_in * expansion, 8)
            layers.append(RepViTBlock(c_in, hidden, c_out, kernel, stride, use_se))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = DistilledClassifier(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def repvit_m0_9() -> RepViT:
    """RepViT-M0.9 (distilled head) with BatchNorm (unfused), default init."""
    return RepViT(CFG_M0_9)
