"""Modules that adapt the network's input to what an app feeds (baked into artifacts)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ImageInput"]


class ImageInput(nn.Module):
    """Normalization inside the graph, for ``--image-input`` artifacts.

    Takes a ``(B, 3, H, W)`` RGB image with values 0..255 (uint8, or float) and computes
    ``(x / 255 - mean) / std`` as one multiply-add per channel before the network:
    ``x * (1 / (255 std)) + (-mean / std)``.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.model = model
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * s))
        self.register_buffer("shift", -m / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(torch.float32) * self.scale + self.shift)
