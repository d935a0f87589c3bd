"""The IO spec: what a model (or exported artifact) takes and returns, read by every exporter,
and the preprocessing recipe that turns a photo into that input.

One object says the input name, shape, dtype, layout, value range, mean/std and colour order,
and the output names, so no exporter or runtime has to guess. :func:`preprocessing_recipe`
writes the image preprocessing of :class:`~lsnet_deploy.preprocess.Preprocess` for an IO spec
as JSON (the metadata's ``preprocessing``, docs/sidecar.md), and :func:`preprocess_from_recipe`
reads it back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import UnsupportedOptionError
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

__all__ = ["INTERPOLATION", "PIXEL_SCALE", "IOSpec", "preprocess_from_recipe",
           "preprocessing_recipe"]

INTERPOLATION = "bicubic"
"""The resampling of :meth:`Preprocess.resize_crop`: Pillow's ``BICUBIC``, which antialiases
(its filter widens with the downscale factor, like torchvision's ``antialias=True``)."""
PIXEL_SCALE = 1.0 / 255.0
"""8-bit pixel values -> [0, 1], before the mean/std normalization."""


@dataclass(frozen=True)
class IOSpec:
    """Input/output description of an LSNet model or artifact.

    Attributes:
        input_name: graph input name.
        input_shape: ``(B, 3, H, W)`` for NCHW or ``(B, H, W, 3)`` for NHWC; ``B`` is ``None``
            for a dynamic batch.
        dtype: ``float32`` (normalized or 0..255) or ``uint8`` (raw image) as an export asks
            for it. Read back from an artifact's metadata it is the element type the file really
            takes, which a format may change: ``float16`` (CoreML tensor input), ``int8`` or
            ``uint8`` holding the quantized normalized tensor (TFLite INT8 ``--io``).
        layout: ``NCHW`` or ``NHWC``.
        value_range: ``normalized`` (ImageNet mean/std already applied) or ``0..255``
            (normalization inside the graph).
        mean, std: normalization of [0, 1] RGB values.
        colour_order: channel order, ``RGB``.
        output_names: graph outputs; ``logits`` is ``(B, num_classes)`` float32.
    """

    img_size: tuple[int, int] = (224, 224)
    batch: int | None = 1
    input_name: str = "image"
    dtype: Literal["float32", "uint8", "int8", "float16"] = "float32"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    value_range: Literal["normalized", "0..255"] = "normalized"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    colour_order: Literal["RGB"] = "RGB"
    output_names: tuple[str, ...] = field(default=("logits",))
    num_classes: int = 1000

    @property
    def input_shape(self) -> tuple[int | None, int, int, int]:
        h, w = self.img_size
        if self.layout == "NCHW":
            return (self.batch, 3, h, w)
        return (self.batch, h, w, 3)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def preprocessing_recipe(spec: IOSpec, preprocess: Preprocess | None = None) -> dict[str, Any]:
    """The preprocessing an app must reproduce to feed an artifact of ``spec``: that of
    ``preprocess`` (default: :class:`Preprocess` at the spec's size, mean and std, as exports
    calibrate and validate with), as JSON values. The steps, in order (docs/sidecar.md):

    1. decode to 8-bit ``colour_order`` pixels;
    2. resize with ``interpolation`` (``antialias``: the filter widens with the downscale
       factor, as Pillow's and torchvision's ``antialias=True`` do). ``resize_mode``
       ``shorter_side`` (a square crop) scales the shorter side to ``resize_size[0]`` and the
       longer one to ``int(resize_size[0] * long / short)``; ``cover`` keeps the aspect ratio
       and scales so that both sides cover ``resize_size`` ``[H, W]`` (rounded). Either way
       ``resize_size`` is ``floor(crop_size / crop_pct)``;
    3. ``center`` crop ``crop_size`` ``[H, W]``, offsets ``round((resized - crop) / 2)``;
    4. for ``value_range`` ``normalized`` only: ``(pixel * pixel_scale - mean) / std`` per
       channel (``0..255``: the model normalizes, feed the pixels);
    5. lay the channels out as ``layout``.

    The artifact's input dtype and quantization (``inputs[0]``) say how the values are stored.

    Raises:
        UnsupportedOptionError: ``preprocess`` crops another size or normalizes with another
            mean/std than ``spec``.
    """
    pre = preprocess or Preprocess(img_size=spec.img_size, mean=spec.mean, std=spec.std)
    if (tuple(pre.img_size), tuple(pre.mean), tuple(pre.std)) != (
            tuple(spec.img_size), tuple(spec.mean), tuple(spec.std)):
        raise UnsupportedOptionError(
            f"the preprocessing (crop {list(pre.img_size)}, mean {list(pre.mean)}, std "
            f"{list(pre.std)}) does not fit the input (size {list(spec.img_size)}, mean "
            f"{list(spec.mean)}, std {list(spec.std)}); build both from the same values")
    h, w = pre.img_size
    return {
        "colour_order": spec.colour_order,
        "resize_mode": "shorter_side" if h == w else "cover",
        "resize_size": [math.floor(h / pre.crop_pct), math.floor(w / pre.crop_pct)],
        "interpolation": INTERPOLATION,
        "antialias": True,
        "crop_mode": "center",
        "crop_size": [h, w],
        "crop_pct": pre.crop_pct,
        "pixel_scale": PIXEL_SCALE,
        "mean": list(pre.mean),
        "std": list(pre.std),
        "value_range": spec.value_range,
        "layout": spec.layout,
    }


def preprocess_from_recipe(recipe: dict[str, Any]) -> Preprocess:
    """The :class:`Preprocess` a :func:`preprocessing_recipe` describes.

    Raises:
        UnsupportedOptionError: a recipe that :class:`Preprocess` cannot reproduce (another
            interpolation, crop or scale, a resize size that is not ``floor(crop / crop_pct)``)
            or that misses a field, naming the first such field.
    """
    try:
        crop = (int(recipe["crop_size"][0]), int(recipe["crop_size"][1]))
        pre = Preprocess(img_size=crop, crop_pct=float(recipe["crop_pct"]),
                         mean=tuple(float(v) for v in recipe["mean"]),  # type: ignore[arg-type]
                         std=tuple(float(v) for v in recipe["std"]))  # type: ignore[arg-type]
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise UnsupportedOptionError(f"not a preprocessing recipe ({type(e).__name__}: {e}); "
                                     "expected the fields of docs/sidecar.md") from None
    # the fields Preprocess does not hold: one of the values lsnet-deploy writes
    value_range, layout = recipe.get("value_range"), recipe.get("layout")
    spec = IOSpec(img_size=crop, mean=pre.mean, std=pre.std,
                  value_range="0..255" if value_range == "0..255" else "normalized",
                  layout="NHWC" if layout == "NHWC" else "NCHW")
    expected = preprocessing_recipe(spec, pre)
    for key, value in expected.items():
        if key not in recipe:
            raise UnsupportedOptionError(f"the preprocessing recipe has no {key} (expected "
                                         f"{value!r} for this crop)")
        if recipe[key] != value:
            raise UnsupportedOptionError(
                f"preprocessing {key} {recipe[key]!r} cannot be reproduced (lsnet-deploy's "
                f"Preprocess has {value!r} for this crop)")
    return pre
