"""Headroom for int16 activation ranges: calibrated ranges widened so unseen photos fit.

A calibrated range is the min/max the calibration photos reached. A held-out photo that goes
beyond it is clipped, and clipping, not resolution, is what limits int16 activations: with
65,536 levels a step is small, while a clipped tensor costs the photo that overshot. On
LSNet-T (trained-looking synthetic weights) one held-out photo reaches about twice the
calibrated range of most last-stage tensors; every activation in int16 then gives it a logit
cosine of 0.984 (0.966 channel-equalized), against 0.996 with ranges that also cover the
held-out photos (docs/int8.md, "The worst photo"). 8-bit ranges get none: there the step is
what limits, and a wider range lowers every photo's cosine (docs/int8.md).

The factor, :data:`INT16_HEADROOM` by default, is an export option (``--int16-headroom``,
:func:`resolve_headroom`). Too wide costs too: a model with outlier channels gives its
ordinary channels fewer steps. Over LSNet-T/S/B on both synthetic weight families, x1.5
keeps nearly all of x2's gain where the worst photo is clipped (LSNet-T 16x8: min cosine
0.9955, x2 0.9959, x1 0.9837) and nearly all of x1.2's where it is not (LSNet-B, outlier
channels: 0.9289, x1.2 0.9326, x2 0.8989); docs/int8.md, "The headroom factor".
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedOptionError

__all__ = ["INT16_HEADROOM", "MAX_HEADROOM", "check_headroom", "refuse_int16_options",
           "resolve_headroom", "widen"]

INT16_HEADROOM = 1.5
"""How many times its calibrated range an int16 activation range spans (each side), by
default."""
MAX_HEADROOM = 64.0
"""The largest ``--int16-headroom``: x64 leaves the calibrated range 1,024 of int16's 65,536
steps (10 bits); wider gives away the resolution int16 is chosen for."""


def resolve_headroom(factor: float | None) -> float:
    """``factor`` (``None``: :data:`INT16_HEADROOM`) checked: 1 (the calibrated ranges as
    they are) to :data:`MAX_HEADROOM`. Raises :class:`UnsupportedOptionError` otherwise
    (below 1 would clip what the calibration photos reached)."""
    if factor is None:
        return INT16_HEADROOM
    if not (math.isfinite(factor) and 1.0 <= factor <= MAX_HEADROOM):
        raise UnsupportedOptionError(
            f"--int16-headroom {factor:g}: give 1 (the calibrated ranges as they are) to "
            f"{MAX_HEADROOM:g} (each int16 range spans that many times its calibrated one)")
    return float(factor)


def check_headroom(factor: float | None, int16: tuple[str, ...] | None) -> None:
    """Refuse ``--int16-headroom`` without int16 activations (``int16``: the
    ``--int8-int16`` values) or out of range (:func:`resolve_headroom`)."""
    if factor is None:
        return
    if not int16:
        raise UnsupportedOptionError("--int16-headroom widens the ranges of int16 "
                                     "activations: add --int8-int16")
    resolve_headroom(factor)


def refuse_int16_options(int16: tuple[str, ...] | None, factor: float | None,
                         format_name: str) -> None:
    """Refuse ``--int8-int16`` or ``--int16-headroom`` given while ``format_name`` (neither
    ONNX nor TFLite, the formats with int16 activations) is exported."""
    if int16 or factor is not None:
        flag = "--int8-int16" if int16 else "--int16-headroom"
        raise UnsupportedOptionError(f"{flag} applies to ONNX and TFLite, not {format_name} "
                                     "(--format onnx or tflite)")


def widen(lo: np.ndarray | float, hi: np.ndarray | float,
          factor: float = INT16_HEADROOM) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` (scalars or per-channel arrays) with each side's distance from zero
    multiplied by ``factor``; a side that does not cross zero stays (a ReLU's ``0`` stays
    ``0``, a positive minimum is not pushed up), so the result always contains the input
    range and zero's side of it."""
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return (np.where(lo_a < 0, lo_a * factor, lo_a).astype(np.float32),
            np.where(hi_a > 0, hi_a * factor, hi_a).astype(np.float32))
