"""Calibration and validation photos of an export: which files calibrate, which are held
out, loaded at the model's input size."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ImageError
from ..paths import calibration_dir
from ..preprocess import Preprocess, list_images, load_files

__all__ = ["ImageSplit", "split_images"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSplit:
    """Calibration and validation images (normalized ``(N, 3, H, W)``) and their sources."""

    calib: torch.Tensor | None
    calib_source: str
    val: torch.Tensor
    val_source: str


def split_images(
    pre: Preprocess,
    calib_dir: Path | None = None,
    val_dir: Path | None = None,
    calib_size: int | None = None,
    need_calib: bool = True,
) -> ImageSplit:
    """Load calibration and validation photos.

    With ``val_dir``, every image of ``calib_dir`` may calibrate and ``val_dir`` validates.
    Without it, the calibration folder is split: every 4th image (sorted by name) is held out
    for validation, the rest calibrates. ``calib_size`` limits the calibration images (a
    warning with the counts when fewer are available).
    """
    cdir = Path(calib_dir) if calib_dir is not None else calibration_dir()
    files = list_images(cdir)
    if not files:
        raise ImageError(f"no image files in calibration folder {cdir}")
    if val_dir is not None:
        val_files, calib_files = list_images(val_dir), files
        val_source = str(val_dir)
    else:
        val_files = files[::4]
        calib_files = [f for i, f in enumerate(files) if i % 4]
        val_source = f"{cdir} (held out: every 4th image)"
        if not calib_files:  # a single image: use it for both, but say so
            calib_files = files
            log.warning("only %d image in %s: calibrating and validating on it", len(files), cdir)
    val = load_files(val_files, pre, source=val_source).tensors
    calib = None
    calib_source = ""
    if need_calib:
        if calib_size is not None and calib_size > len(calib_files):
            log.warning(
                "asked for %d calibration images but %s has %d available; using %d",
                calib_size, cdir, len(calib_files), len(calib_files),
            )
        loaded = load_files(calib_files, pre, limit=calib_size, source=str(cdir))
        calib = loaded.tensors
        calib_source = f"{cdir} ({len(loaded.paths)} images)"
    return ImageSplit(calib, calib_source, val, val_source)
