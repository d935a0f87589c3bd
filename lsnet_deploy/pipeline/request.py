"""User intent: one frozen :class:`ExportRequest`, built the same way by the CLI and the
Python API (:func:`lsnet_deploy.export`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..exporters import FormatOptions, format_names, options_types
from ..lsnet import LSNet

__all__ = ["ExportRequest"]


@dataclass(frozen=True)
class ExportRequest:
    """What the user asked for, before any default is filled in (``None``: the format's
    default; :func:`~lsnet_deploy.pipeline.plan.plan` resolves and checks everything).

    Attributes:
        model: a variant name (built with ``weights``) or an :class:`LSNet` instance
            (unfused preferred, so the fused-vs-unfused difference can be recorded).
        formats: format names (``--format all``: every registered format).
        weights: for a variant name: checkpoint path, ``"official"`` or ``None``/``"random"``.
        precision: ``fp32``, ``fp16``, ``int8`` or ``w8a8``.
        img_size: the input size to build the variant for (default 224).
        batch / dynamic_batch: static batch size, or a symbolic batch dimension.
        image_input: uint8 / 0..255 image input with the normalization inside.
        layout: ``NCHW`` / ``NHWC``.
        calib / calib_size / calib_method / val: calibration and validation photos.
        val_size: validate on at most this many photos (``None``: all; Python API only).
        min_cosine: the reduced-precision gate (mean logit cosine).
        min_photo_cosine: a second reduced-precision gate, on every photo's cosine (``None``:
            none).
        int8_exclude: op groups or node names kept in float; ``"auto"`` searches them.
        equalize: INT8 / W8A8 quantize an exactly channel-equalized copy of the fused model.
        gptq: calibrated exports round the weights onto the backends' int8 grid with GPTQ
            (:func:`~lsnet_deploy.quantize.rounding.round_weights`; not Core ML W8A8, whose
            grid differs); ``None``: where activations are int16 (``--int8-int16``).
        format_options: typed options of single formats (ONNX opset, TFLite ``--io``,
            CoreML ``--ios`` / ``--classifier``), at most one per format.
        output_dir / force: where artifacts go, and whether existing ones are replaced.
    """

    model: str | LSNet
    formats: tuple[str, ...] = ("onnx",)
    weights: str | Path | None = "official"
    precision: str | None = None
    img_size: int | tuple[int, int] | None = None
    batch: int = 1
    dynamic_batch: bool = False
    image_input: bool | None = None
    layout: str | None = None
    calib: Path | None = None
    calib_size: int | None = None
    calib_method: str = "minmax"
    val: Path | None = None
    val_size: int | None = None
    min_cosine: float | None = None
    min_photo_cosine: float | None = None
    int8_exclude: tuple[str, ...] = ()
    equalize: bool = True
    gptq: bool | None = None
    format_options: tuple[FormatOptions, ...] = ()
    output_dir: Path | None = None
    force: bool = False

    @classmethod
    def build(cls, model: str | LSNet, format: str = "onnx",
              **kwargs: Any) -> ExportRequest:
        """From the keywords of :func:`lsnet_deploy.export`: ``format="all"`` expands to every
        registered format, and the keywords that are fields of a format's options class
        (``opset``, ``io``, ``ios``, ``classifier``) become that format's typed options."""
        typed = []
        for options_type in dict.fromkeys(options_types().values()):
            names = [f.name for f in fields(options_type)]
            given = {n: kwargs.pop(n) for n in names if n in kwargs}
            if any(v is not None for v in given.values()):
                typed.append(options_type(**given))
        formats = format_names() if format == "all" else (format,)
        if "int8_exclude" in kwargs:
            kwargs["int8_exclude"] = tuple(kwargs["int8_exclude"] or ())
        return cls(model=model, formats=formats, format_options=tuple(typed), **kwargs)

    def options_for(self, options_type: type[FormatOptions]) -> FormatOptions | None:
        """The given options of one format (``None`` when none were given)."""
        return next((o for o in self.format_options if type(o) is options_type), None)
