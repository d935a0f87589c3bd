"""Exporter registry: format name -> exporter.

ONNX is implemented here; TFLite and CoreML plug in with one module each and one line below.
"""

from __future__ import annotations

from ..errors import UnsupportedOptionError
from .base import Capabilities, CalibrationOptions, Exporter, ExportOptions, Precision, Runner

__all__ = [
    "FORMATS",
    "REGISTRY",
    "CalibrationOptions",
    "Capabilities",
    "ExportOptions",
    "Exporter",
    "Precision",
    "Runner",
    "get_exporter",
    "exporter_for_path",
]


def _onnx() -> Exporter:
    from .onnx import OnnxExporter

    return OnnxExporter()


REGISTRY = {
    "onnx": _onnx,
}
"""Format name -> factory (lazy, so a missing backend only matters when it is used)."""

FORMATS = ("onnx", "tflite", "coreml")
"""Formats the CLI names; those not in :data:`REGISTRY` yet are refused with a clear error."""


def get_exporter(name: str) -> Exporter:
    """The exporter of a format, or :class:`UnsupportedOptionError`."""
    if name not in REGISTRY:
        if name in FORMATS:
            raise UnsupportedOptionError(
                f"--format {name} is not available in this version yet; available: "
                f"{', '.join(REGISTRY)}"
            )
        raise UnsupportedOptionError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return REGISTRY[name]()


def exporter_for_path(path: str) -> Exporter:
    """The exporter whose suffix matches an artifact path."""
    for name in REGISTRY:
        exp = REGISTRY[name]()
        if path.endswith(exp.suffix):
            return exp
    raise UnsupportedOptionError(f"no exporter handles {path}; known suffixes: "
                                 + ", ".join(REGISTRY[n]().suffix for n in REGISTRY))
