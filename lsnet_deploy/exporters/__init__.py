"""Exporter registry: format name -> the class that owns everything about the format.

One line per format in :data:`REGISTRY` (``"module:Class"``, imported lazily so a missing
backend only matters when the format is used). Everything else the toolkit knows about
formats is derived from the exporter classes: the CLI's ``--format`` choices, the suffix ->
format map, the benchmark runtimes, the tool versions recorded in metadata.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from ..errors import UnsupportedOptionError
from .base import (
    PRECISIONS,
    CalibrationSet,
    Capabilities,
    ExportData,
    Exporter,
    ExportOptions,
    ExportResult,
    ExportTask,
    FormatOptions,
    NameParts,
    NoOptions,
    Precision,
    ReferenceSet,
    Runner,
)

__all__ = [
    "PRECISIONS",
    "REGISTRY",
    "CalibrationSet",
    "Capabilities",
    "ExportData",
    "ExportOptions",
    "ExportResult",
    "ExportTask",
    "Exporter",
    "FormatOptions",
    "NameParts",
    "NoOptions",
    "Precision",
    "ReferenceSet",
    "Runner",
    "exporter_for_path",
    "exporter_for_runtime",
    "exporters",
    "format_names",
    "format_of_suffix",
    "get_exporter",
    "options_types",
    "tool_names",
]

REGISTRY: dict[str, str] = {
    "onnx": "lsnet_deploy.exporters.onnx:OnnxExporter",
    "tflite": "lsnet_deploy.exporters.tflite:TfliteExporter",
    "coreml": "lsnet_deploy.exporters.coreml:CoremlExporter",
    "executorch": "lsnet_deploy.exporters.executorch:ExecutorchExporter",
}
"""Format name -> ``"module:ExporterClass"``; the order is the order of ``--format all``."""


def format_names() -> tuple[str, ...]:
    """The registered formats, in registry order."""
    return tuple(REGISTRY)


@cache
def _exporter_class(name: str) -> type[Exporter]:
    module, _, cls = REGISTRY[name].partition(":")
    exporter: type[Exporter] = getattr(importlib.import_module(module), cls)
    return exporter


def get_exporter(name: str) -> Exporter:
    """The exporter of a format, or :class:`UnsupportedOptionError`."""
    if name not in REGISTRY:
        raise UnsupportedOptionError(f"unknown format {name!r}; known: {', '.join(REGISTRY)}")
    return _exporter_class(name)()


def exporters() -> list[Exporter]:
    """One exporter per registered format."""
    return [get_exporter(n) for n in REGISTRY]


def format_of_suffix() -> dict[str, str]:
    """Every recognized file suffix -> its format (``.mlmodel`` is CoreML too)."""
    return {suffix: exp.name for exp in exporters() for suffix in exp.suffixes}


def exporter_for_path(path: str | Path) -> Exporter:
    """The exporter whose suffix matches an artifact path."""
    text = str(path)
    for exp in exporters():
        if any(text.endswith(s) for s in exp.suffixes):
            return exp
    raise UnsupportedOptionError(f"no exporter handles {text}; known suffixes: "
                                 + ", ".join(format_of_suffix()))


def exporter_for_runtime(runtime: str) -> Exporter | None:
    """The exporter whose runtime has this benchmark name (``None`` if none has)."""
    return next((exp for exp in exporters() if exp.runtime == runtime), None)


def options_types() -> dict[str, type[FormatOptions]]:
    """Format name -> its options class."""
    return {exp.name: exp.options_type for exp in exporters()}


def tool_names() -> tuple[str, ...]:
    """Packages whose versions artifact metadata records: ours, torch, numpy, and every
    format's tools."""
    names = ["lsnet-deploy", "torch"]
    for exp in exporters():
        names += [t for t in exp.tools if t not in names]
    return (*names, "numpy")
