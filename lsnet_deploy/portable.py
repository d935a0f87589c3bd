"""The portable formulation of the fused LSNet, for the NCHW converters (ONNX, Core ML,
ExecuTorch): rank <= 4 everywhere, no GroupNorm / BatchNorm op, no shape arithmetic.

(Work in progress: identity for now.)
"""

from __future__ import annotations

from torch import nn

__all__ = ["is_portable_form", "to_portable_form"]


def is_portable_form(model: nn.Module) -> bool:
    """Whether :func:`to_portable_form` has been applied."""
    return bool(getattr(model, "portable_form", False))


def to_portable_form(model: nn.Module) -> nn.Module:
    """The portable form of a fused LSNet (a copy; other modules are returned unchanged)."""
    return model
