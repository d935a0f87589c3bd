"""Calibration and validation photos of an export: which files calibrate, which are held
out, loaded at the model's input size."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ImageError
from ..paths import calibration_dir
from ..preprocess import (
    PixelBudget,
    Preprocess,
    iter_images,
    list_images,
    load_files,
    no_usable_image,
    warn_skipped,
)

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
    budget: PixelBudget | None = None,
) -> ImageSplit:
    """Load calibration and validation photos.

    With ``val_dir``, every image of ``calib_dir`` may calibrate and ``val_dir`` validates.
    Without it, the calibration folder is split after its unreadable files are dropped (one
    warning names them): every 4th readable image (sorted by name) is held out for
    validation, the rest calibrates; a folder with a single readable image calibrates and
    validates on it (with a warning). ``calib_size`` limits the calibration images (a warning
    with the counts when fewer are available). Every file of the folder is decoded to know
    whether it is readable; only the kept tensors stay in memory. ``budget``: the pixel limits
    of :func:`~lsnet_deploy.preprocess.load_image` (default :class:`PixelBudget`).
    """
    budget = budget or PixelBudget()
    cdir = Path(calib_dir) if calib_dir is not None else calibration_dir()
    files = list_images(cdir)
    if not files:
        raise ImageError(f"no image files in calibration folder {cdir}")
    if val_dir is not None:
        val_source = str(val_dir)
        val = load_files(list_images(val_dir), pre, source=val_source, budget=budget).tensors
        calib, calib_source = None, ""
        if need_calib:
            _warn_short(calib_size, len(files), cdir)
            loaded = load_files(files, pre, limit=calib_size, source=str(cdir), budget=budget)
            calib, calib_source = loaded.tensors, f"{cdir} ({len(loaded.paths)} images)"
        return ImageSplit(calib, calib_source, val, val_source)
    return _split_folder(pre, cdir, files, calib_size, need_calib, budget)


def _warn_short(calib_size: int | None, available: int, cdir: Path) -> None:
    if calib_size is not None and calib_size > available:
        log.warning(
            "asked for %d calibration images but %s has %d available; using %d",
            calib_size, cdir, available, available,
        )


def _split_folder(
    pre: Preprocess,
    cdir: Path,
    files: list[Path],
    calib_size: int | None,
    need_calib: bool,
    budget: PixelBudget,
) -> ImageSplit:
    """Every 4th readable image of ``files`` validates, the others calibrate (up to
    ``calib_size``); decoded in one pass, tensors beyond what is kept are dropped."""
    val: list[torch.Tensor] = []
    calib: list[torch.Tensor] = []
    first: torch.Tensor | None = None
    skipped: list[Path] = []
    readable = 0
    for path, result in iter_images(files, pre, budget):
        if isinstance(result, ImageError):
            skipped.append(path)
            continue
        if readable == 0:
            first = result
        if readable % 4 == 0:
            val.append(result)
        elif need_calib and (calib_size is None or len(calib) < calib_size):
            calib.append(result)
        readable += 1
    warn_skipped(skipped, str(cdir))
    if first is None:
        raise no_usable_image(str(cdir), skipped)
    val_source = f"{cdir} (held out: every 4th image)"
    if not need_calib:
        return ImageSplit(None, "", torch.stack(val), val_source)
    n_calib = readable - len(val)
    if n_calib == 0:  # a single readable image: use it for both, but say so
        log.warning("only 1 readable image in %s: calibrating and validating on it", cdir)
        calib, n_calib = [first], 1
    _warn_short(calib_size, n_calib, cdir)
    calib_source = f"{cdir} ({len(calib)} images)"
    return ImageSplit(torch.stack(calib), calib_source, torch.stack(val), val_source)
