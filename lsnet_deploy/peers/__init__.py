"""The LSNet paper's comparison networks, in plain PyTorch, for latency benchmarking only.

Each :class:`Peer` builds its architecture with BatchNorm (training-time form, default init);
:func:`create_peer` gives the deploy form the benchmarks time: eval mode, trained-looking random
weights (:func:`~lsnet_deploy.peers.common.init_trained_looking`), every BatchNorm folded into a
conv or linear. The weights mean nothing: the outputs are O(1) logits, never predictions.

Input ``(B, 3, H, W)`` ImageNet-normalized float32 (H, W multiples of 32), output
``(B, 1000)`` logits. Published accuracy, MACs and parameters are the papers' (sources in each
architecture module's docstring); :func:`count_peer_macs` counts conv + linear MACs the way
:mod:`lsnet_deploy.flops` does for LSNet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnknownVariantError
from .common import count_macs, count_params, fold_batchnorms, init_trained_looking
from .efficientnet import efficientnet_b0
from .mobilenetv3 import mobilenetv3_large
from .repvit import repvit_m0_9

__all__ = ["PEERS", "PEER_CLASSES", "Peer", "count_peer_macs", "count_peer_params",
           "create_peer", "get_peer", "peer_names"]

PEER_CLASSES = 1000
"""Output width of every peer (ImageNet-1k logits)."""


@dataclass(frozen=True)
class Peer:
    """A comparison network and its published numbers."""

    name: str  # registry key, e.g. "mobilenetv3_large"
    title: str  # display name, e.g. "MobileNetV3-L"
    reference: str  # paper citation, one line
    top1: float  # published ImageNet-1k top-1 (%)
    paper_gmacs: float  # published MACs (G) at 224
    paper_params_m: float  # published parameters (M)
    build: Callable[[], nn.Module]  # the architecture with BatchNorm (unfused), default init


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("mobilenetv3_large", "MobileNetV3-L",
             "Howard et al., Searching for MobileNetV3, ICCV 2019",
             75.2, 0.219, 5.4, mobilenetv3_large),
        Peer("efficientnet_b0", "EfficientNet-B0",
             "Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019",
             77.1, 0.39, 5.3, efficientnet_b0),
        Peer("repvit_m0_9", "RepViT-M0.9",
             "Wang et al., RepViT: Revisiting Mobile CNN From ViT Perspective, CVPR 2024",
             78.7, 0.8, 5.1, repvit_m0_9),
    )
}
"""Registered peers, in the order the benchmarks list them."""


def peer_names() -> tuple[str, ...]:
    """Names of the registered peers, in registry order."""
    return tuple(PEERS)


def get_peer(name: str) -> Peer:
    """The peer called ``name``; raises :class:`UnknownVariantError` otherwise."""
    try:
        return PEERS[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown peer {name!r}; known: {', '.join(PEERS)}") from None


@torch.no_grad()
def create_peer(name: str, seed: int = 0) -> nn.Module:
    """Eval-mode deploy form of peer ``name``: trained-looking random weights (deterministic
    for ``seed``), every BatchNorm folded into the preceding conv/linear (no ``nn.BatchNorm*``
    left). Input ``(B, 3, H, W)`` ImageNet-normalized float32 (any H, W multiple of 32),
    output ``(B, 1000)`` logits."""
    model = get_peer(name).build()
    init_trained_looking(model, seed)
    return fold_batchnorms(model)


def count_peer_macs(model: nn.Module, img_size: int | tuple[int, int] = 224) -> int:
    """MACs of one image of ``img_size`` (``S`` or ``(H, W)``): every Conv2d and Linear (SE convs/linears included); activations,
    pooling, elementwise free (hooks on one forward pass of a ``(1, 3, H, W)`` input)."""
    return count_macs(model, img_size)


def count_peer_params(model: nn.Module) -> int:
    """Number of ``nn.Parameter`` elements of ``model`` (BN statistics excluded)."""
    return count_params(model)
