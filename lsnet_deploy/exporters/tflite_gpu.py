"""The LiteRT model analyzer's GPU-delegate compatibility verdict for a ``.tflite`` file.

The analyzer (``ai_edge_litert``'s native ``ModelAnalyzer``, the tool behind TensorFlow's
``tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)``) checks every op against
the GPU delegate's rules and ends its text report either with "Your model looks compatible with
GPU delegate" or with one ``GPU COMPATIBILITY WARNING`` line per refused op. The verdict goes
to the TFLite sidecar so an app developer knows before trying a phone.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

from ..deps import require
from ..errors import ExportError, first_line

__all__ = ["gpu_compatibility"]

_COMPATIBLE = "looks compatible with GPU delegate"
_WARNING = re.compile(r"GPU COMPATIBILITY WARNING:\s*(.*)")
_MAX_WARNINGS = 20


def gpu_compatibility(path: Path) -> dict[str, Any]:
    """Run the analyzer on ``path``.

    Returns ``{"compatible": bool, "warnings": [...], "analyzer": "ai-edge-litert <version>"}``;
    ``warnings`` holds the first 20 distinct warning texts (op and reason), ``warning_count``
    all of them.
    """
    require("tflite", "ai_edge_litert", what="the LiteRT GPU compatibility check")
    from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer

    try:
        report = analyzer.ModelAnalyzer(str(path), True, True)  # (path, is a file, GPU check)
    except Exception as e:
        raise ExportError(f"the LiteRT analyzer cannot read {path.name}: {first_line(e)}") from e
    warnings = [m.group(1).strip() for m in _WARNING.finditer(report)]
    distinct = list(dict.fromkeys(warnings))
    return {
        "compatible": _COMPATIBLE in report and not warnings,
        "warnings": distinct[:_MAX_WARNINGS],
        "warning_count": len(warnings),
        "analyzer": f"ai-edge-litert {metadata.version('ai-edge-litert')}",
    }
