"""Tensor ranks of an exported artifact, read from the file itself (not from the PyTorch graph
it came from): what a phone accelerator's compiler sees.

Phone GPU delegates and NPUs are built around 4-D tensors; :func:`rank_histogram` counts the
tensors of every rank in an ``.onnx`` (inputs, outputs, initializers and every shape-inferred
value), a ``.tflite`` (every tensor of every subgraph), an ``.mlpackage`` (every op output of
the ML Program, nested blocks included) or a ``.pte`` (every tensor value of the execution
plans).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ExportError, first_line

__all__ = ["max_rank", "rank_histogram"]


def _onnx(path: Path) -> Counter[int]:
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    ranks: Counter[int] = Counter(len(t.dims) for t in graph.initializer)
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            ranks[len(value.type.tensor_type.shape.dim)] += 1
    return ranks


def _tflite(path: Path) -> Counter[int]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return Counter(len(d["shape"]) for d in interp.get_tensor_details())


def _coreml(path: Path) -> Counter[int]:
    from coremltools.models.utils import load_spec

    spec: Any = load_spec(str(path))
    ranks: Counter[int] = Counter()

    def walk(block: Any) -> None:
        for op in block.operations:
            for out in op.outputs:
                if out.type.HasField("tensorType"):
                    ranks[int(out.type.tensorType.rank)] += 1
            for nested in op.blocks:
                walk(nested)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    return ranks


def _executorch(path: Path) -> Counter[int]:
    from executorch.exir._serialize._program import deserialize_pte_binary

    program: Any = deserialize_pte_binary(path.read_bytes())
    program = getattr(program, "program", program)  # newer releases wrap the Program
    ranks: Counter[int] = Counter()
    for plan in program.execution_plan:
        for value in plan.values:
            tensor = value.val
            if type(tensor).__name__ == "Tensor":
                ranks[len(tensor.sizes)] += 1
    return ranks


_READERS: dict[str, Callable[[Path], Counter[int]]] = {
    ".onnx": _onnx, ".tflite": _tflite, ".mlpackage": _coreml,
    ".pte": _executorch,
}


def rank_histogram(path: Path) -> dict[str, int] | None:
    """``{"rank": number of tensors}`` of the artifact at ``path``, sorted by rank (string keys,
    as in the JSON sidecar); ``None`` for a file type whose ranks this module cannot read."""
    reader = _READERS.get(path.suffix)
    if reader is None:
        return None
    try:
        ranks = reader(path)
    except Exception as e:
        raise ExportError(f"{path.name}: cannot read its tensor ranks: {first_line(e)}") from e
    return {str(k): v for k, v in sorted(ranks.items())}


def max_rank(path: Path) -> int:
    """The highest tensor rank in the artifact at ``path`` (``.onnx``, ``.tflite``,
    ``.mlpackage`` or ``.pte``)."""
    ranks = rank_histogram(path)
    if ranks is None:
        raise ExportError(f"{path.name}: cannot read tensor ranks of {path.suffix} files "
                          f"(known: {', '.join(_READERS)})")
    return max((int(k) for k in ranks), default=0)
