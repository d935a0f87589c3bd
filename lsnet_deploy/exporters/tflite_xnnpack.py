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
    """``{"partitions": n, "cpu_ops": {op: count}, "splitting_ops": {op: count},
    "interpreter_ops": m}`` of the model at ``path`` loaded as ``bench`` and validation load it
    (the interpreter's default XNNPACK delegate).

    * ``cpu_ops``: every op XNNPACK did not take, which LiteRT's own CPU kernels run, wherever
      it sits (the graph's first ``CAST`` of a uint8 image input is one; a 16x8 file, which
      XNNPACK has no kernels for: nearly all of its ops);
    * ``splitting_ops``: those of them whose output is an input of a delegate partition (the
      ones that hand a tensor back to XNNPACK, hence split it);
    * ``interpreter_ops``: the number of ``cpu_ops``.

    An op counts as run by the interpreter when one of its outputs is in the interpreter's
    arena and is not a partition's output. The node list keeps the ops a delegate replaced, but
    the tensors inside a partition get no memory (their data pointer stays null), so those ops
    do not count. (Before 2026-12-07 ``interpreter_ops`` counted the replaced ops too, and
    ``cpu_ops`` only the splitting ones.)"""
    from .tflite import _interpreter

    interp = _interpreter(Path(path), threads)
    interp.allocate_tensors()
    native = interp._interpreter  # the node list after delegation (no public API for it)
    nodes = range(native.NumNodes())
    delegates = [k for k in nodes if native.NodeName(k) == "DELEGATE"]
    into_delegates = {t for k in delegates for t in native.NodeInputs(k)}
    from_delegates = {t for k in delegates for t in native.NodeOutputs(k)}
    cpu: Counter[str] = Counter()
    splitting: Counter[str] = Counter()
    for k in nodes:
        if native.NodeName(k) == "DELEGATE":
            continue
        outs = [t for t in native.NodeOutputs(k) if t >= 0]
        if not any(t not in from_delegates and _allocated(native, t) for t in outs):
            continue  # replaced by a delegate
        cpu[native.NodeName(k)] += 1
        if set(outs) & into_delegates:
            splitting[native.NodeName(k)] += 1
    return {"partitions": len(delegates), "cpu_ops": dict(cpu.most_common()),
            "splitting_ops": dict(splitting.most_common()),
            "interpreter_ops": sum(cpu.values())}


def _allocated(native: Any, tensor: int) -> bool:
    """Whether the interpreter gave ``tensor`` memory (reading it raises when it did not)."""
    try:
        native.GetTensor(tensor, 0)
    except ValueError:
        return False
    return True
