"""The IO spec: what a model (or exported artifact) takes and returns, read by every exporter.

One object says the input name, shape, dtype, layout, value range, mean/std and colour order,
and the output names, so no exporter or runtime has to guess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IOSpec"]


@dataclass(frozen=True)
class IOSpec:
    """Input/output description of an LSNet model or artifact.

    Attributes:
        input_name: graph input name.
        input_shape: ``(B, 3, H, W)`` for NCHW or ``(B, H, W, 3)`` for NHWC; ``B`` is ``None``
            for a dynamic batch.
        dtype: ``float32`` (normalized or 0..255) or ``uint8`` (raw image).
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
    dtype: Literal["float32", "uint8"] = "float32"
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
