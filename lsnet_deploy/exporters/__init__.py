"""Exporter registry: format name -> exporter.

ONNX, TFLite and CoreML, one module each.
"""

from __future__ import annotations

from ..errors import UnsupportedOptionError
from .base import CalibrationOptions, Capabilities, Exporter, ExportOptions, Precision, Runner

__all__ = [
    "FORMATS",
    "REGISTRY",
    "CalibrationOptions",
    "Capabilities",
    "ExportOptions",
    "Exporter",
    "Precision",
    "Runner",
    "exporter_for_path",
    "get_exporter",
]


def _onnx() -> Exporter:
    from .onnx import OnnxExporter

    return OnnxExporter()


def _tflite() -> Exporter:
    from .tflite import TfliteExporter

    return TfliteExporter()


def _coreml() -> Exporter:
    from .coreml import CoremlExporter

    return CoremlExporter()


REGISTRY = {
    "onnx": _onnx,
    "tflite": _tflite,
    "coreml": _coreml,
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
