"""The one preprocessing definition of lsnet-deploy (calibration, validation, benchmarks, predict).

ImageNet evaluation transform of the official models: RGB; resize the shorter side to
``floor(size / crop_pct)`` (248 for 224, crop 0.9) with bicubic, antialiased resampling; center
crop ``size``; scale to [0, 1]; normalize with the ImageNet mean/std; NCHW float32.
For a non-square target the image is resized keeping its aspect ratio so that both sides
cover ``floor(side / crop_pct)``, then center-cropped (the square case is the same rule).

Decoding (:func:`load_image`) never silently changes an image's content:

- Any regular file Pillow reads is accepted (JPEG, PNG, WebP, BMP, GIF, TIFF, PNM, ...; not
  EPS, which would run Ghostscript); EXIF orientation is applied.
- 8-bit modes (grayscale, palette, RGBA, CMYK, YCbCr, ...) go through ``convert("RGB")``, as
  the official evaluation loader does: the alpha channel is dropped and the stored colours are
  kept (a palette with transparency goes through RGBA first, with the same result).
- High-depth modes are scaled to 8 bits (``round(v * 255 / max)``), never clipped:
  16-bit ``I;16*`` and ``I`` (16-bit PNG/PNM: ``max`` 65535; TIFF: ``2**BitsPerSample - 1``);
  negative or larger values are an :class:`ImageError`. Float ``F`` images must hold values in
  [0, 1] (scaled by 255); NaN/Inf or another range is an :class:`ImageError`, as there is no
  agreed meaning to guess.
- Before decoding, the header's size is checked against a :class:`PixelBudget`: at most
  ``2**27`` (134 M) pixels in the file, and at most ``2**24`` (16.8 M) pixels after the planned
  resize (an extreme aspect ratio: a 1x20000 strip would become 248x4960000 before the crop).
  Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``, an error at twice it) also applies.
- Library warnings (Pillow's DecompressionBombWarning, EXIF warnings) are logged at debug level
  with the file name, never printed.
"""

from __future__ import annotations

import logging
import math
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import ImageError, UnsupportedOptionError, first_line
from .lsnet import to_hw

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_RESIZED_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "ImageFolder",
    "PixelBudget",
    "Preprocess",
    "check_image_path",
    "iter_images",
    "list_images",
    "load_files",
    "load_folder",
    "load_image",
    "no_usable_image",
    "probe_image",
    "to_rgb",
    "warn_skipped",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"}
)
DEFAULT_MAX_PIXELS = 2**27
"""Most pixels an image file may have (134,217,728: a 108 MP phone photo fits; decoding it as
RGB takes about 400 MB)."""
DEFAULT_MAX_RESIZED_PIXELS = 2**24
"""Most pixels the planned resize may make before the center crop (16,777,216, 48 MB as RGB:
aspect ratios up to about 270:1 at 224)."""
_REFUSED_FORMATS = frozenset({"EPS"})  # decoding runs an external interpreter (Ghostscript)


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

    def __post_init__(self) -> None:
        # an int (what for_size takes) would fail on every image, reported as unreadable
        object.__setattr__(self, "img_size", to_hw(self.img_size))
        if not (math.isfinite(self.crop_pct) and 0 < self.crop_pct <= 1):
            raise UnsupportedOptionError(
                f"crop_pct must be in (0, 1], not {self.crop_pct}; the official models use 0.9"
            )

    @classmethod
    def for_size(cls, img_size: int | tuple[int, int], crop_pct: float = 0.9) -> Preprocess:
        return cls(img_size=to_hw(img_size), crop_pct=crop_pct)

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The ``(width, height)`` an image of ``size`` ``(width, height)`` is resized to before
        the center crop (pure: what :meth:`resize_crop` will allocate)."""
        th, tw = self.img_size
        w, h = size
        if w < 1 or h < 1:
            raise ImageError(f"image has no pixels ({w}x{h})")
        if th == tw:  # torchvision Resize(int): shorter side to `scale`, longer side truncated
            scale = math.floor(th / self.crop_pct)
            if w <= h:
                return scale, int(scale * h / w)
            return int(scale * w / h), scale
        # keep the aspect ratio, cover both floor(side / crop_pct)
        sh, sw = math.floor(th / self.crop_pct), math.floor(tw / self.crop_pct)
        ratio = max(sh / h, sw / w)
        return max(sw, round(w * ratio)), max(sh, round(h * ratio))

    def resize_crop(self, img: Image.Image) -> Image.Image:
        """Resize (shorter side, or both sides for a non-square target) and center-crop.

        Allocates :meth:`resized_size` pixels: check it first (:class:`PixelBudget`) for
        images of unknown origin (:func:`load_image` does)."""
        th, tw = self.img_size
        new_w, new_h = self.resized_size(img.size)
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


@dataclass(frozen=True)
class PixelBudget:
    """Pixel limits of an image, checked from its header before it is decoded.

    Attributes:
        max_pixels: most pixels (``width * height``) of the file; default
            :data:`DEFAULT_MAX_PIXELS` (2**27). Pillow's own limit (an error above
            ``2 * PIL.Image.MAX_IMAGE_PIXELS``, 179 M) applies on top: raise that process-wide
            setting too to go beyond it.
        max_resized_pixels: most pixels of the planned resize before the center crop
            (:meth:`Preprocess.resized_size`); default :data:`DEFAULT_MAX_RESIZED_PIXELS`
            (2**24). Both orientations are checked (EXIF rotation is read only when decoding).

    ``None`` disables a limit (for trusted inputs only).
    """

    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_resized_pixels: int | None = DEFAULT_MAX_RESIZED_PIXELS

    def check(self, name: str | Path, size: tuple[int, int],
              preprocess: Preprocess | None = None) -> None:
        """Raise :class:`ImageError` if an image ``name`` of ``size`` ``(width, height)`` is
        over the budget (the resize limit only when ``preprocess`` is given)."""
        w, h = size
        if w < 1 or h < 1:
            raise ImageError(f"image {name} has no pixels ({w}x{h})")
        if self.max_pixels is not None and w * h > self.max_pixels:
            raise ImageError(
                f"image {name} is {w}x{h} = {w * h:,} pixels, over the limit of "
                f"{self.max_pixels:,} (decoding would take ~{w * h * 3 / 2**20:,.0f} MiB); "
                "downscale it first, or raise PixelBudget.max_pixels"
            )
        if preprocess is None or self.max_resized_pixels is None:
            return
        nw, nh = max((preprocess.resized_size(s) for s in ((w, h), (h, w))),
                     key=lambda s: s[0] * s[1])
        if nw * nh > self.max_resized_pixels:
            th, tw = preprocess.img_size
            raise ImageError(
                f"image {name} is {w}x{h} (aspect ratio {max(w, h) / min(w, h):,.0f}:1): "
                f"resizing it for the {tw}x{th} input makes {nw}x{nh} = {nw * nh:,} pixels, "
                f"over the limit of {self.max_resized_pixels:,}; crop it to a less extreme "
                "aspect ratio, or raise PixelBudget.max_resized_pixels"
            )


_DEFAULT_BUDGET = PixelBudget()


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_image_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a regular, non-empty file (never opened:
    a FIFO would block). Raises :class:`ImageError` saying what it is otherwise: missing, a
    folder (use the folder options), a FIFO or device, empty or inaccessible."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if p.is_symlink() else ""
        raise ImageError(f"image not found: {p}{broken}") from None
    except OSError as e:
        raise ImageError(f"cannot access image {p}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(
            f"{p} is a folder, not an image file; pass its files (e.g. {p}/*.jpg), or use it "
            "as a folder: info --images, export/quant-report --calib or --val"
        )
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{p} is {_file_kind(st.st_mode)}, not a regular file; pass an image "
                         "file")
    if st.st_size == 0:
        raise ImageError(f"image {p} is empty (0 bytes)")
    return p


def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in Image.ID if f not in _REFUSED_FORMATS)


def _open_error(p: Path, e: Exception) -> ImageError:
    if isinstance(e, Image.DecompressionBombError):
        return ImageError(f"image {p} is over Pillow's pixel limit ({first_line(e, 160)}); "
                          "downscale it first")
    if isinstance(e, MemoryError):
        return ImageError(f"not enough memory to decode image {p}; downscale it first")
    text = first_line(e, 160) or type(e).__name__
    return ImageError(f"cannot read image {p}: {text}")


def probe_image(
    path: str | Path,
    preprocess: Preprocess | None = None,
    budget: PixelBudget = _DEFAULT_BUDGET,
) -> tuple[int, int]:
    """Check an image file without decoding it (the header only): a regular file
    (:func:`check_image_path`), a format Pillow identifies, within ``budget`` for
    ``preprocess``. Returns its ``(width, height)``; raises :class:`ImageError`."""
    p = check_image_path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(p, formats=_formats()) as im:
                size = im.size
        except Exception as e:  # Pillow raises many types on malformed headers
            raise _open_error(p, e) from e
    _log_warnings(p, caught)
    budget.check(p, size, preprocess)
    return size


def load_image(
    path: str | Path,
    preprocess: Preprocess | None = None,
    budget: PixelBudget = _DEFAULT_BUDGET,
) -> Image.Image:
    """Open an image as 8-bit RGB with EXIF orientation applied (see the module docstring for
    the modes), after checking the header's size against ``budget`` (the planned resize of
    ``preprocess`` too, if given). Raises :class:`ImageError` naming the file."""
    p = check_image_path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(p, formats=_formats()) as im:
                budget.check(p, im.size, preprocess)
                im.load()
                rgb = to_rgb(im, name=str(p))
        except ImageError:
            raise
        except Exception as e:  # Pillow raises many types on malformed data
            raise _open_error(p, e) from e
    _log_warnings(p, caught)
    return rgb


def _log_warnings(p: Path, caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        log.debug("%s: %s: %s", p, w.category.__name__, w.message)


_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def _nominal_max(img: Image.Image) -> int:
    """Full-scale value of an integer image: for TIFF ``2**BitsPerSample - 1`` (``2**(bits -
    1) - 1`` if signed), else 65535 (Pillow decodes 16-bit PNG and PNM, any maxval, to
    0..65535)."""
    if img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        bits, fmt = tags.get(258), tags.get(339)
        bits = bits[0] if isinstance(bits, tuple) and bits else bits
        fmt = fmt[0] if isinstance(fmt, tuple) and fmt else fmt
        if isinstance(bits, int) and 1 <= bits <= 32:
            return 2 ** (bits - 1) - 1 if fmt == 2 else 2**bits - 1
    return 65535


def _depth_to_8bit(img: Image.Image, full_scale: float, name: str) -> Image.Image:
    """A high-depth single-channel image (``I;16*``, ``I``, ``F``) scaled to an 8-bit ``L``
    image: ``round(v * 255 / full_scale)``. Out-of-range or non-finite values raise."""
    a = np.asarray(img)
    if img.mode == "F":
        with np.errstate(all="ignore"):
            finite = bool(np.isfinite(a).all())
        if not finite:
            raise ImageError(f"{name} is a float image (mode F) with NaN/Inf pixels; save it "
                             "as an 8-bit or 16-bit image")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > full_scale:
        expected = "[0, 1]" if img.mode == "F" else f"[0, {int(full_scale)}]"
        raise ImageError(
            f"{name} is a {img.mode} image with values in [{lo:g}, {hi:g}], outside {expected}: "
            "no known way to show it; save it as an 8-bit or 16-bit image"
        )
    scaled = a.astype(np.float32)  # in place from here: one float copy of the image
    scaled *= np.float32(255.0 / full_scale)
    np.rint(scaled, out=scaled)
    return Image.fromarray(scaled.astype(np.uint8))  # 2-D uint8: mode L


def to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """A decoded image as 8-bit RGB with its EXIF orientation applied, by mode: 16/32-bit
    integer and float images scaled to 8 bits (never clipped), palette images with
    transparency through RGBA, everything else through ``convert("RGB")`` (alpha dropped,
    stored colours kept). Raises :class:`ImageError` (``name`` in the message) for values
    that have no 8-bit meaning or a mode Pillow cannot convert."""
    full_scale = 1.0 if img.mode == "F" else float(_nominal_max(img))
    mode = img.mode
    img = ImageOps.exif_transpose(img) or img
    if mode in _DEPTH_MODES:
        img = _depth_to_8bit(img, full_scale, name)
    elif mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ImageError(f"{name}: cannot convert mode {mode} to RGB ({first_line(e)})") from e


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted by name."""
    root = Path(folder)
    if root.is_file():
        raise ImageError(f"{root} is a file, not an image folder; pass the folder that "
                         "holds it (predict classifies single files)")
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
    budget: PixelBudget = _DEFAULT_BUDGET,
) -> ImageFolder:
    """Load and preprocess the images of ``folder`` (sorted by name).

    Unreadable image files (including those over ``budget``) are skipped with one warning that
    counts and names them. Raises :class:`ImageError` if the folder has no usable image.
    """
    files = list_images(folder)
    return load_files(files, preprocess, limit=limit, source=str(folder), budget=budget)


def iter_images(
    files: Iterable[Path],
    preprocess: Preprocess,
    budget: PixelBudget = _DEFAULT_BUDGET,
) -> Iterator[tuple[Path, torch.Tensor | ImageError]]:
    """Decode and preprocess ``files`` one by one: yields ``(path, (3, H, W) tensor)`` for a
    readable file and ``(path, ImageError)`` for an unreadable one (logged at debug level)."""
    for path in files:
        p = Path(path)
        result: torch.Tensor | ImageError
        try:
            result = preprocess(load_image(p, preprocess, budget))
        except ImageError as e:
            log.debug("%s", e)
            result = e
        yield p, result


def warn_skipped(skipped: Sequence[Path], source: str, n: int = 5) -> None:
    """One warning naming the unreadable files of ``source`` that were left out."""
    if not skipped:
        return
    names = ", ".join(p.name for p in skipped[:n])
    more = f", +{len(skipped) - n} more" if len(skipped) > n else ""
    log.warning("skipped %d unreadable image file(s) in %s: %s%s (--verbose shows why)",
                len(skipped), source, names, more)


def no_usable_image(source: str, skipped: Sequence[Path]) -> ImageError:
    """The error for a source without any readable image."""
    names = f": {', '.join(p.name for p in skipped[:3])}" if skipped else ""
    more = " ..." if len(skipped) > 3 else ""
    return ImageError(
        f"no usable image in {source} ({len(skipped)} unreadable{names}{more}); "
        f"expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}"
    )


def load_files(
    files: Sequence[Path] | Iterable[Path],
    preprocess: Preprocess,
    limit: int | None = None,
    source: str = "the given files",
    budget: PixelBudget = _DEFAULT_BUDGET,
) -> ImageFolder:
    """Load and preprocess ``files``, at most ``limit`` readable ones (see :func:`load_folder`)."""
    tensors: list[torch.Tensor] = []
    used: list[Path] = []
    skipped: list[Path] = []
    for path, result in iter_images(files, preprocess, budget):  # lazy: stops at the limit
        if isinstance(result, ImageError):
            skipped.append(path)
        else:
            tensors.append(result)
            used.append(path)
            if limit is not None and len(used) >= limit:
                break
    warn_skipped(skipped, source)
    if not tensors:
        raise no_usable_image(source, skipped)
    return ImageFolder(torch.stack(tensors), tuple(used), tuple(skipped))
