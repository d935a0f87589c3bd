"""What an artifact file is, for labelling benchmark results: format, model label, precision.

Works for any ``.onnx`` / ``.tflite`` / ``.mlpackage`` (``.mlmodel``), not only lsnet-deploy's:
the JSON sidecar written by ``lsnet-deploy export`` is read first; otherwise the file itself is
inspected (ONNX quantization ops and initializer types, TFLite tensor types, CoreML metadata);
what cannot be told is ``"unknown"``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchmarkError
from ..exporters import get_exporter
from ..metadata import from_native, read_sidecar

__all__ = ["FORMAT_OF_SUFFIX", "ArtifactInfo", "describe_artifact", "format_of"]

log = logging.getLogger(__name__)

FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".mlpackage": "coreml",
                    ".mlmodel": "coreml"}

_ONNX_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                   "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
_PRECISION_IN_NAME = re.compile(r"(?:^|[_\-.])(fp32|fp16|int8|w8a8)(?:$|[_\-.])")


@dataclass(frozen=True)
class ArtifactInfo:
    """``fmt``: ``onnx`` / ``tflite`` / ``coreml``; ``model``: the LSNet variant when the
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
    fmt = FORMAT_OF_SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        raise BenchmarkError(
            f"{path}: not a model file lsnet-deploy can benchmark "
            f"(known suffixes: {', '.join(FORMAT_OF_SUFFIX)})"
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
        native = from_native(get_exporter(fmt).read_metadata(path))
        model, precision = native.get("variant"), str(native.get("precision") or "unknown")
        if precision == "unknown" and fmt != "coreml":
            precision = {"onnx": _onnx_precision, "tflite": _tflite_precision}[fmt](path)
    except Exception as e:  # a foreign or broken file: label it, the runtime will complain
        log.debug("could not inspect %s: %s", path, e)
    if precision == "unknown":
        match = _PRECISION_IN_NAME.search(path.stem.lower())
        precision = match.group(1) if match else "unknown"
    return ArtifactInfo(path, fmt, str(model) if model else path.stem, precision)


def _onnx_precision(path: Path) -> str:
    """From the graph: quantization ops -> int8, fp16 initializers -> fp16, else fp32."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    if ops & _ONNX_QUANT_OPS:
        return "int8"
    types = {t.data_type for t in proto.graph.initializer}
    if onnx.TensorProto.FLOAT16 in types:
        return "fp16"
    return "fp32" if types else "unknown"


def _tflite_precision(path: Path) -> str:
    """From the constant tensors' types (int8/uint8 -> int8, float16 -> fp16, else fp32)."""
    from ..exporters.tflite_flatbuffer import _read

    model = _read(path)
    # TensorType enum of the TFLite schema: FLOAT32 0, FLOAT16 1, INT8 9, UINT8 3. Judge by the
    # constant tensors (the weights): a float model may well take a uint8 image.
    buffers = model.buffers or []

    def constant(t: Any) -> bool:
        data = buffers[t.buffer].data if 0 < t.buffer < len(buffers) else None
        return data is not None and len(data) > 0

    types = {t.type for g in model.subgraphs for t in g.tensors if constant(t)}
    if 9 in types or 3 in types:
        return "int8"
    if 1 in types:
        return "fp16"
    return "fp32"
