"""Calibration and validation photos of an export: which files calibrate, which are held
out, loaded at the model's input size.

A folder with a split manifest (``SOURCES.json`` with ``"split"`` fields, like the default
``calibration/``; see :mod:`.image_manifest`) is split as recorded there; any other folder
holds out every 4th readable image."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ImageError, UnsupportedOptionError
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
from .image_manifest import ManifestSplit, read_split

__all__ = ["ImageSplit", "split_images"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageSplit:
    """Calibration and validation images (normalized ``(N, 3, H, W)``), their sources, and
    the file name of each validation image, in order."""

    calib: torch.Tensor | None
    calib_source: str
    val: torch.Tensor
    val_source: str
    val_names: tuple[str, ...] = ()


def split_images(
    pre: Preprocess,
    calib_dir: Path | None = None,
    val_dir: Path | None = None,
    calib_size: int | None = None,
    need_calib: bool = True,
    budget: PixelBudget | None = None,
    val_size: int | None = None,
) -> ImageSplit:
    """Load calibration and validation photos.

    With ``val_dir``, every image of ``calib_dir`` may calibrate and ``val_dir`` validates.
    Without it, the calibration folder is split:

    * a folder whose ``SOURCES.json`` has ``"split"`` fields (the default ``calibration/``
      has): the files marked ``"validation"`` validate, the others calibrate; a malformed
      manifest, or one naming files that are not in the folder, raises :class:`ImageError`;
    * any other folder, after its unreadable files are dropped (one warning names them):
      every 4th readable image (sorted by name) is held out for validation, the rest
      calibrates; a folder with a single readable image calibrates and validates on it (with
      a warning). Every file is decoded to know whether it is readable; only the kept
      tensors stay in memory.

    ``calib_size`` limits the calibration images (a warning with the counts when fewer are
    available), ``val_size`` the validation images (the first ones by name, silently: a
    faster, smaller check). ``budget``: the pixel limits of
    :func:`~lsnet_deploy.preprocess.load_image` (default :class:`PixelBudget`).
    """
    if val_size is not None and val_size < 1:
        raise UnsupportedOptionError(f"val_size must be at least 1, not {val_size}")
    budget = budget or PixelBudget()
    cdir = Path(calib_dir) if calib_dir is not None else calibration_dir()
    files = list_images(cdir)
    if not files:
        raise ImageError(f"no image files in calibration folder {cdir}")
    if val_dir is not None:
        val_source = str(val_dir)
        held = load_files(list_images(val_dir), pre, limit=val_size, source=val_source,
                          budget=budget)
        val, names = held.tensors, tuple(f.name for f in held.paths)
        calib, calib_source = None, ""
        if need_calib:
            _warn_short(calib_size, len(files), cdir)
            loaded = load_files(files, pre, limit=calib_size, source=str(cdir), budget=budget)
            calib, calib_source = loaded.tensors, f"{cdir} ({len(loaded.paths)} images)"
        return ImageSplit(calib, calib_source, val, val_source, names)
    manifest = read_split(cdir, (f.name for f in files))
    if manifest is not None:
        return _split_manifest(pre, files, manifest, (calib_size, val_size), need_calib, budget)
    return _split_folder(pre, cdir, files, (calib_size, val_size), need_calib, budget)


def _warn_short(calib_size: int | None, available: int, cdir: Path) -> None:
    if calib_size is not None and calib_size > available:
        log.warning(
            "asked for %d calibration images but %s has %d available; using %d",
            calib_size, cdir, available, available,
        )


def _split_manifest(
    pre: Preprocess,
    files: list[Path],
    manifest: ManifestSplit,
    sizes: tuple[int | None, int | None],
    need_calib: bool,
    budget: PixelBudget,
) -> ImageSplit:
    """The files ``manifest`` marks ``"validation"`` validate (up to ``sizes[1]``), the
    others calibrate (up to ``sizes[0]``); only the files kept are decoded."""
    calib_size, val_size = sizes
    cdir, name = manifest.path.parent, manifest.path.name
    val_files = [f for f in files if f.name in manifest.validation]
    if not val_files:
        raise ImageError(f"{manifest.path} marks no image \"validation\"; mark some, or "
                         "pass a validation folder (--val)")
    val = load_files(val_files, pre, limit=val_size, source=f"{cdir} (validation)",
                     budget=budget)
    val_source = f"{cdir} (held out: {len(val.paths)} photos marked validation in {name})"
    names = tuple(f.name for f in val.paths)
    if not need_calib:
        return ImageSplit(None, "", val.tensors, val_source, names)
    calib_files = [f for f in files if f.name not in manifest.validation]
    if not calib_files:
        raise ImageError(f"{manifest.path} marks every image \"validation\"; mark some "
                         "\"calibration\", or pass another calibration folder (--calib)")
    unlisted = [f.name for f in calib_files if f.name not in manifest.calibration]
    if unlisted:
        log.info("%d image file(s) of %s not listed in %s calibrate: %s", len(unlisted), cdir,
                 name, ", ".join(unlisted[:5]))
    _warn_short(calib_size, len(calib_files), cdir)
    calib = load_files(calib_files, pre, limit=calib_size, source=str(cdir), budget=budget)
    calib_source = f"{cdir} ({len(calib.paths)} images)"
    return ImageSplit(calib.tensors, calib_source, val.tensors, val_source, names)


def _split_folder(
    pre: Preprocess,
    cdir: Path,
    files: list[Path],
    sizes: tuple[int | None, int | None],
    need_calib: bool,
    budget: PixelBudget,
) -> ImageSplit:
    """Every 4th readable image of ``files`` validates (up to ``sizes[1]``), the others
    calibrate (up to ``sizes[0]``); decoded in one pass, tensors beyond what is kept are
    dropped."""
    calib_size, val_size = sizes
    val: list[torch.Tensor] = []
    names: list[str] = []
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
            if val_size is None or len(val) < val_size:
                val.append(result)
                names.append(path.name)
        elif need_calib and (calib_size is None or len(calib) < calib_size):
            calib.append(result)
        readable += 1
    warn_skipped(skipped, str(cdir))
    if first is None:
        raise no_usable_image(str(cdir), skipped)
    val_source = f"{cdir} (held out: every 4th image)"
    if not need_calib:
        return ImageSplit(None, "", torch.stack(val), val_source, tuple(names))
    n_calib = readable - (readable + 3) // 4  # every 4th held out, counted even past val_size
    if n_calib == 0:  # a single readable image: use it for both, but say so
        log.warning("only 1 readable image in %s: calibrating and validating on it", cdir)
        calib, n_calib = [first], 1
    _warn_short(calib_size, n_calib, cdir)
    calib_source = f"{cdir} ({len(calib)} images)"
    return ImageSplit(torch.stack(calib), calib_source, torch.stack(val), val_source,
                      tuple(names))
