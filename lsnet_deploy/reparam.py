"""Inference reparameterization of LSNet: one entry point, in place and idempotent.

What is folded:

* every Conv2d+BatchNorm2d pair (stem, downsamples, FFN, LKP, SE-less convs, attention qkv/dw/proj)
  into one Conv2d with bias;
* RepVGGDW's dw3x3-BN + dw1x1-BN + identity into one depthwise 3x3 Conv2d;
* the head's BatchNorm1d into its Linear, and the two heads of ``_distill`` variants into one
  Linear (average of weights and biases, which equals the eval-mode average of the outputs);
* the attention scale ``key_dim**-0.5`` into the depthwise conv on q, and the relative-position
  bias gathered once into a constant buffer.

What is not folded (see docs/reparameterization.md): LKP's GroupNorm (its statistics depend on
the input), and the BatchNorm2d after SKA in LSConv (it follows a data-dependent op and the
residual shares its input, so its per-channel affine has nowhere to go; exporters lower it to one
multiply-add). The stride-2 depthwise 3x3 + 1x1 downsample pair could be merged into one dense
3x3 conv, but that costs ``9x`` the MACs, so it is kept.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .errors import ImageError, ReparamError
from .lsnet import LSNet

__all__ = ["ReparamReport", "is_reparameterized", "remaining_batchnorms", "reparameterize"]

log = logging.getLogger(__name__)

# BatchNorms that are allowed to survive fusion: the BN after SKA in every LSConv.
_ALLOWED_BN_SUFFIX = ".mixer.bn"


@dataclass(frozen=True)
class ReparamReport:
    """What :func:`reparameterize` did.

    ``max_abs_diff`` / ``max_abs_logit`` are over the check inputs (``None`` without inputs).
    """

    params_before: int
    params_after: int
    remaining_batchnorms: tuple[str, ...]
    max_abs_diff: float | None
    max_abs_logit: float | None
    already_fused: bool


def _fuse_children(module: nn.Module) -> None:
    """Post-order walk: fuse grandchildren first, then replace each fusable child."""
    for name, child in list(module.named_children()):
        _fuse_children(child)
        fuse = getattr(child, "fuse", None)
        if callable(fuse):
            replacement = fuse()
            if replacement is not child:
                setattr(module, name, replacement)


def is_reparameterized(model: nn.Module) -> bool:
    """True once :func:`reparameterize` has run on ``model``."""
    return bool(getattr(model, "_lsnet_reparameterized", False))


def remaining_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm modules still in ``model``."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


CALIBRATION = "calibration"
_DEFAULT_CHECK_IMAGES = 4


def _calibration_inputs(model: LSNet) -> torch.Tensor | None:
    """A few real photos from the calibration folder at the model's size (None if absent)."""
    from .paths import calibration_dir
    from .preprocess import Preprocess, load_folder

    try:
        pre = Preprocess.for_size(model.img_size)
        return load_folder(calibration_dir(), pre, limit=_DEFAULT_CHECK_IMAGES).tensors
    except ImageError as e:
        log.warning("reparameterize: no real images for the fused-vs-unfused check (%s)", e)
        return None


@torch.no_grad()
def reparameterize(
    model: LSNet,
    check_inputs: torch.Tensor | Literal["calibration"] | None = CALIBRATION,
) -> ReparamReport:
    """Fuse ``model`` for inference, in place (calling it again is a no-op).

    Args:
        model: an :class:`LSNet` (put in eval mode by this call).
        check_inputs: ``(B, 3, H, W)`` normalized images on which the unfused and fused logits
            are compared; the max absolute difference is reported and logged. Default: 4 photos
            of the calibration folder at the model's size. ``None`` skips the check.

    Returns:
        A :class:`ReparamReport`.
    """
    model.eval()
    params_before = _n_params(model)
    if is_reparameterized(model):
        return ReparamReport(
            params_before, params_before, tuple(remaining_batchnorms(model)), None, None, True
        )
    if isinstance(check_inputs, str):
        check_inputs = _calibration_inputs(model)
    reference = copy.deepcopy(model) if check_inputs is not None else None
    _fuse_children(model)
    model.fuse()
    model._lsnet_reparameterized = True  # type: ignore[assignment]
    leftovers = remaining_batchnorms(model)
    unexpected = [n for n in leftovers if not n.endswith(_ALLOWED_BN_SUFFIX)]
    if unexpected:
        raise ReparamError(f"reparameterize left unexpected BatchNorms: {unexpected}")
    max_diff = max_logit = None
    if reference is not None and check_inputs is not None:
        ref = reference(check_inputs)
        out = model(check_inputs)
        max_diff = float((ref - out).abs().max())
        max_logit = float(ref.abs().max())
        log.info(
            "reparameterized: max |fused - unfused| = %.3g on %d images (max |logit| %.3g)",
            max_diff, check_inputs.shape[0], max_logit,
        )
    return ReparamReport(
        params_before, _n_params(model), tuple(leftovers), max_diff, max_logit, False
    )
