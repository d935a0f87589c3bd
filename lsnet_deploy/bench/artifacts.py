"""What an artifact file is, for labelling benchmark results: format, model label, precision.

Works for any file of a registered format (``.onnx``, ``.tflite``, ``.mlpackage``, ...), not only lsnet-deploy's:
the JSON sidecar written by ``lsnet-deploy export`` is read first; otherwise the file itself is
inspected by its format's exporter (``precision_of``: ONNX quantization ops and initializer
types, TFLite weight types);
what cannot be told is ``"unknown"``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BenchmarkError
from ..exporters import format_of_suffix, get_exporter
from ..metadata import from_native, read_sidecar

__all__ = ["ArtifactInfo", "describe_artifact", "format_of"]

log = logging.getLogger(__name__)

_PRECISION_IN_NAME = re.compile(r"(?:^|[_\-.])(fp32|fp16|int8|w8a8)(?:$|[_\-.])")


@dataclass(frozen=True)
class ArtifactInfo:
    """``fmt``: the format name; ``model``: the LSNet variant when the
    artifact says so, else the file stem; ``precision``: ``fp32`` / ``fp16`` / ``int8`` /
    ``w8a8`` / ``unknown``; ``from_sidecar``: whether lsnet-deploy's sidecar was found;
    ``mean_cosine``: the sidecar's validation cosine vs PyTorch (``None`` if unknown)."""

    path: Path
    fmt: str
    model: str
    precision: str
    from_sidecar: bool = False
    mean_cosine: float | None = None


def format_of(path: Path) -> str:
    """The format of a file by suffix, or :class:`BenchmarkError`."""
    suffixes = format_of_suffix()
    fmt = suffixes.get(Path(path).suffix.lower())
    if fmt is None:
        raise BenchmarkError(
            f"{path}: not a model file lsnet-deploy can benchmark "
            f"(known suffixes: {', '.join(suffixes)})"
        )
    return fmt


def describe_artifact(path: Path) -> ArtifactInfo:
    """Format, model label and precision of ``path`` (which must exist)."""
    path = Path(path)
    fmt = format_of(path)
    if not path.exists():
        raise BenchmarkError(f"{path}: no such file")
    try:
        sidecar = read_sidecar(path)
    except (OSError, ValueError):
        sidecar = None
    if sidecar:
        meta = sidecar.get("metadata") or {}
        variant = meta.get("variant") or sidecar.get("variant")
        precision = sidecar.get("precision") or meta.get("precision") or "unknown"
        cosine = (sidecar.get("validation") or {}).get("mean_cosine")
        if variant:
            return ArtifactInfo(path, fmt, str(variant), str(precision), True,
                                float(cosine) if isinstance(cosine, (int, float)) else None)
    model, precision = None, "unknown"
    try:  # the metadata lsnet-deploy embeds natively (what `validate` reads without a sidecar)
        exp = get_exporter(fmt)
        native = from_native(exp.read_metadata(path))
        model, precision = native.get("variant"), str(native.get("precision") or "unknown")
        if precision == "unknown":
            precision = exp.precision_of(path)
    except Exception as e:  # a foreign or broken file: label it, the runtime will complain
        log.debug("could not inspect %s: %s", path, e)
    if precision == "unknown":
        match = _PRECISION_IN_NAME.search(path.stem.lower())
        precision = match.group(1) if match else "unknown"
    return ArtifactInfo(path, fmt, str(model) if model else path.stem, precision)
