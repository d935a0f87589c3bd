"""Parameter and multiply-accumulate (MAC) counting for LSNet.

``MacReport.total`` counts the MACs of every convolution and linear layer, of the two attention
matmuls (``q^T k`` and ``v attn^T``), and of SKA counted like a depthwise 3x3 convolution (9 MACs
per output element); normalizations, activations, softmax, pooling and elementwise ops are free.
That gives 0.316 / 0.538 / 1.245 G for T / S / B at 224.

``MacReport.paper_total`` adds two ops per BatchNorm output element, as fvcore counts an
eval-mode affine BatchNorm, on the *unfused* model: 0.319 / 0.543 / 1.256 G, which rounds to the paper's
0.3 / 0.5 / 1.3 G (``total`` alone would round B to 1.2). On a fused model ``norm`` is only the
BNs left after SKA. Counting runs one forward pass with hooks on a ``(1, 3, H, W)`` input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .lsnet import Attention, LSNet
from .ska import SKA

__all__ = ["MacReport", "count_macs", "count_params", "hooked_forward"]


@dataclass(frozen=True)
class MacReport:
    """MACs per image by op family, and their total."""

    conv: int
    linear: int
    attention: int
    ska: int
    norm: int  # BatchNorm2d output elements

    @property
    def total(self) -> int:
        """Conv + linear + attention matmuls + SKA."""
        return self.conv + self.linear + self.attention + self.ska

    @property
    def paper_total(self) -> int:
        """``total`` plus two ops per BatchNorm element (fvcore's count; see module doc)."""
        return self.total + 2 * self.norm


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: LSNet, img_size: tuple[int, int] | None = None) -> MacReport:
    """MACs of one image of ``img_size`` (default: the size the model was built for)."""
    size = img_size or model.img_size
    totals = {"conv": 0, "linear": 0, "attention": 0, "ska": 0, "norm": 0}

    def conv_hook(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        per_out = (m.in_channels // m.groups) * kh * kw
        totals["conv"] += out[0].numel() * per_out

    def linear_hook(m: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        totals["linear"] += out[0].numel() * m.in_features

    def ska_hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        totals["ska"] += out[0].numel() * 9

    def attn_hook(m: Attention, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        h, w = inp[0].shape[-2:]
        n = h * w
        totals["attention"] += m.num_heads * n * n * (m.key_dim + m.d)

    def norm_hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        totals["norm"] += out[0].numel()

    hooked_forward(model, [(nn.Conv2d, conv_hook), (nn.Linear, linear_hook), (SKA, ska_hook),
                           (Attention, attn_hook), (nn.BatchNorm2d, norm_hook)], size)
    return MacReport(**totals)


Hook = Callable[[Any, tuple[torch.Tensor, ...], Any], None]


@torch.no_grad()
def hooked_forward(model: nn.Module, hooks: Sequence[tuple[type[nn.Module], Hook]],
                   img_size: tuple[int, int]) -> None:
    """One eval-mode forward pass of a ``(1, 3, H, W)`` zero input with a forward hook on every
    module of the listed types (the first type a module is an instance of); the hooks are
    removed and the model's train/eval mode restored afterwards."""
    handles = []
    for m in model.modules():
        hook = next((h for kind, h in hooks if isinstance(m, kind)), None)
        if hook is not None:
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        model(torch.zeros(1, 3, *img_size, dtype=param.dtype, device=param.device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
