"""The one preprocessing definition of lsnet-deploy (calibration, validation, benchmarks, predict).

ImageNet evaluation transform of the official models: RGB; resize the shorter side to
``floor(size / crop_pct)`` (248 for 224, crop 0.9) with bicubic, antialiased resampling; center
crop ``size``; scale to [0, 1]; normalize with the ImageNet mean/std; NCHW float32.
Any file Pillow reads is accepted (JPEG, PNG, WebP, BMP, ...); EXIF orientation is applied and
every mode (grayscale, palette, RGBA, CMYK, ...) goes through ``Image.convert("RGB")``, as the
official evaluation loader does (the alpha channel is dropped, stored colours are kept).
For a non-square target the image is resized keeping its aspect ratio so that both sides
cover ``floor(side / crop_pct)``, then center-cropped (the square case is the same rule).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .lsnet import to_hw

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "ImageFolder",
    "Preprocess",
    "list_images",
    "load_folder",
    "load_image",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing.

    Attributes:
        img_size: output ``(H, W)``.
        crop_pct: center-crop fraction (resize target = ``floor(size / crop_pct)``).
        mean, std: per-channel normalization of [0, 1] RGB values.

    Resampling is always bicubic with antialiasing (Pillow), as the official models were
    evaluated.
    """

    img_size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.9
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_size(cls, img_size: int | tuple[int, int], crop_pct: float = 0.9) -> Preprocess:
        return cls(img_size=to_hw(img_size), crop_pct=crop_pct)

    def resize_crop(self, img: Image.Image) -> Image.Image:
        """Resize (shorter side, or both sides for a non-square target) and center-crop."""
        th, tw = self.img_size
        w, h = img.size
        if th == tw:  # torchvision Resize(int): shorter side to `scale`, longer side truncated
            scale = math.floor(th / self.crop_pct)
            if w <= h:
                new_w, new_h = scale, int(scale * h / w)
            else:
                new_w, new_h = int(scale * w / h), scale
        else:  # keep the aspect ratio, cover both floor(side / crop_pct)
            sh, sw = math.floor(th / self.crop_pct), math.floor(tw / self.crop_pct)
            ratio = max(sh / h, sw / w)
            new_w, new_h = max(sw, round(w * ratio)), max(sh, round(h * ratio))
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        top = int(round((new_h - th) / 2.0))
        left = int(round((new_w - tw) / 2.0))
        return img.crop((left, top, left + tw, top + th))

    def to_uint8(self, img: Image.Image) -> np.ndarray:
        """Resized and cropped RGB image as ``(H, W, 3)`` uint8 (what ``--image-input`` artifacts
        take)."""
        return np.asarray(self.resize_crop(img), dtype=np.uint8)

    def normalize(self, pixels: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 normalized."""
        x = torch.from_numpy(np.array(pixels, dtype=np.float32)).permute(2, 0, 1) / 255.0
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """PIL RGB image -> ``(3, H, W)`` float32 normalized tensor."""
        return self.normalize(self.to_uint8(img))


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB with EXIF orientation applied; raises :class:`ImageError`."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            img = ImageOps.exif_transpose(im) or im
            return img.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from e


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"image folder not found: {root}")
    return sorted(
        p for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


@dataclass(frozen=True)
class ImageFolder:
    """Images loaded from a folder: ``tensors`` ``(N, 3, H, W)`` normalized float32, the
    matching ``paths`` and the files that were ``skipped`` as unreadable."""

    tensors: torch.Tensor
    paths: tuple[Path, ...]
    skipped: tuple[Path, ...]


def load_folder(
    folder: str | Path,
    preprocess: Preprocess,
    limit: int | None = None,
) -> ImageFolder:
    """Load and preprocess the images of ``folder`` (sorted by name).

    Unreadable image files are skipped with one warning that counts them. Raises
    :class:`ImageError` if the folder has no usable image.
    """
    files = list_images(folder)
    return load_files(files, preprocess, limit=limit, source=str(folder))


def load_files(
    files: Sequence[Path] | Iterable[Path],
    preprocess: Preprocess,
    limit: int | None = None,
    source: str = "the given files",
) -> ImageFolder:
    """Load and preprocess ``files`` (see :func:`load_folder`)."""
    tensors: list[torch.Tensor] = []
    used: list[Path] = []
    skipped: list[Path] = []
    for path in files:
        if limit is not None and len(used) >= limit:
            break
        try:
            tensors.append(preprocess(load_image(path)))
            used.append(Path(path))
        except ImageError as e:
            log.debug("%s", e)
            skipped.append(Path(path))
    if skipped:
        names = ", ".join(p.name for p in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        log.warning("skipped %d unreadable image file(s) in %s: %s", len(skipped), source, names)
    if not tensors:
        raise ImageError(
            f"no usable image in {source} ({len(skipped)} unreadable); "
            f"expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    return ImageFolder(torch.stack(tensors), tuple(used), tuple(skipped))
