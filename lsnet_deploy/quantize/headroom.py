"""Headroom for int16 activation ranges: calibrated ranges widened so unseen photos fit.

A calibrated range is the min/max the calibration photos reached. A held-out photo that goes
beyond it is clipped, and clipping, not resolution, is what limits int16 activations: with
65,536 levels the step is negligible, so a wider range costs almost nothing, while a clipped
tensor costs the photo that overshot. On LSNet-T (trained-looking synthetic weights) one
held-out photo reaches about twice the calibrated range of most last-stage tensors; every
activation in int16 then gives it a logit cosine of 0.984 (0.966 channel-equalized), against
0.996 with ranges that also cover the held-out photos, and 0.996 with this headroom
(docs/int8.md, "The worst photo"). 8-bit ranges get none: there the step is what limits, and
a wider range lowers every photo's cosine (docs/int8.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["INT16_HEADROOM", "widen"]

INT16_HEADROOM = 2.0
"""How many times its calibrated range an int16 activation range spans (each side)."""


def widen(lo: np.ndarray | float, hi: np.ndarray | float,
          factor: float = INT16_HEADROOM) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` (scalars or per-channel arrays) with each side's distance from zero
    multiplied by ``factor``; a side that does not cross zero stays (a ReLU's ``0`` stays
    ``0``, a positive minimum is not pushed up), so the result always contains the input
    range and zero's side of it."""
    lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return (np.where(lo_a < 0, lo_a * factor, lo_a).astype(np.float32),
            np.where(hi_a > 0, hi_a * factor, hi_a).astype(np.float32))
