"""Bounds on the work one command may start, checked before anything expensive runs.

LSNet's memory and time grow with the input size (the convolutions with the pixel count, the
last stage's attention bias table with its square); a typo such as ``--img-size 4096`` would
otherwise run for many minutes towards tens of GB. The model input size is bounded per side by
:data:`MAX_IMG_SIDE` (the paper trains at 224; 512 or 768 are common fine-tuning sizes). The
environment variable ``LSNET_DEPLOY_MAX_IMG_SIZE`` raises (or lowers) the bound on purpose.
"""

from __future__ import annotations

import os

from .errors import UnsupportedOptionError

__all__ = ["IMG_SIZE_ENV", "MAX_IMG_SIDE", "MIN_IMG_SIDE", "check_img_size", "max_img_side"]

MAX_IMG_SIDE = 1024
"""Default largest model input side, in pixels."""
MIN_IMG_SIDE = 32
"""Smallest model input side: the network downsamples by 32."""
IMG_SIZE_ENV = "LSNET_DEPLOY_MAX_IMG_SIZE"


def max_img_side() -> int:
    """The bound in force: ``LSNET_DEPLOY_MAX_IMG_SIZE`` if set (an integer), else
    :data:`MAX_IMG_SIDE`."""
    text = os.environ.get(IMG_SIZE_ENV, "").strip()
    if not text:
        return MAX_IMG_SIDE
    try:
        value = int(text)
    except ValueError:
        raise UnsupportedOptionError(f"{IMG_SIZE_ENV}={text!r} is not an integer") from None
    if value < MIN_IMG_SIDE:
        raise UnsupportedOptionError(f"{IMG_SIZE_ENV}={value} is below {MIN_IMG_SIDE}")
    return value


def check_img_size(hw: tuple[int, int]) -> None:
    """Refuse a model input size ``(H, W)`` outside ``[MIN_IMG_SIDE, max_img_side()]`` per
    side, with the way to lift the bound."""
    h, w = hw
    limit = max_img_side()
    if min(h, w) < MIN_IMG_SIDE:
        raise UnsupportedOptionError(
            f"--img-size {h}x{w}: each side must be at least {MIN_IMG_SIDE} pixels")
    if max(h, w) > limit:
        raise UnsupportedOptionError(
            f"--img-size {h}x{w}: the largest side allowed is {limit} pixels (memory and time "
            f"grow with the pixel count; set {IMG_SIZE_ENV}={max(h, w)} to allow it)")
