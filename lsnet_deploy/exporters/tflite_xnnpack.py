"""How the LiteRT interpreter's default XNNPACK delegate takes a ``.tflite``: how many partitions
it makes and which ops it leaves to LiteRT's own CPU kernels.

XNNPACK replaces each maximal run of ops it supports by one ``DELEGATE`` node; an op it refuses
(a ``FULLY_CONNECTED`` whose weights are not constant, a concatenation of more inputs than it
takes, ...) stays a plain node and splits the graph, and every split costs a hand-over between
the delegate and the interpreter. One partition and no CPU op is the ideal; the sidecar records
what an artifact gets (``export.xnnpack``) and docs/performance.md what it costs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["xnnpack_partitions"]


def xnnpack_partitions(path: Path, threads: int = 1) -> dict[str, Any]:
    """``{"partitions": n, "cpu_ops": {op: count}, "interpreter_ops": m}`` of the model at
    ``path`` loaded as ``bench`` and validation load it (the interpreter's default XNNPACK
    delegate). An op counts in ``cpu_ops`` when an output of it is an input of a delegate
    partition without being produced by one (the interpreter ran it between partitions); the
    graph's first ``CAST`` of a uint8 image input is one of them. ``interpreter_ops``: every op
    XNNPACK did not take, wherever it sits (a 16x8 file, which XNNPACK has no kernels for:
    nearly all of them)."""
    from .tflite import _interpreter

    interp = _interpreter(Path(path), threads)
    interp.allocate_tensors()
    native = interp._interpreter  # the node list after delegation (no public API for it)
    nodes = range(native.NumNodes())
    delegates = [k for k in nodes if native.NodeName(k) == "DELEGATE"]
    into_delegates = {t for k in delegates for t in native.NodeInputs(k)}
    from_delegates = {t for k in delegates for t in native.NodeOutputs(k)}
    cpu: Counter[str] = Counter()
    for k in nodes:
        if native.NodeName(k) == "DELEGATE":
            continue
        outs = set(native.NodeOutputs(k))
        if outs & into_delegates and not outs <= from_delegates:
            cpu[native.NodeName(k)] += 1
    return {"partitions": len(delegates), "cpu_ops": dict(cpu.most_common()),
            "interpreter_ops": len(nodes) - len(delegates)}
