"""An ML Program's function as plain data: its typed inputs, its ops in order (type, name,
parameters, declared outputs) and its outputs, with every constant decoded.

A parameter's arguments are references to named values (function inputs or outputs of
earlier ops) or inline constants. ``inputs`` and ``attributes`` of an op's protobuf are both
parameters here: iOS 16's ``constexpr_*`` ops keep their operands as attributes, iOS 18's as
inputs, and the op semantics do not depend on where the serializer put them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import MilProgramError
from .package import BlobStore
from .values import TensorType, decode_value, tensor_type

__all__ = ["Arg", "Op", "Output", "Program", "load_program"]


@dataclass(frozen=True)
class Arg:
    """One argument: the name of a value, or (``name is None``) an inline constant."""

    name: str | None
    const: Any = None


@dataclass(frozen=True)
class Output:
    """A declared op output: its name and tensor type (``None``: not a tensor, e.g. the
    class label and probability dictionary of ``classify``)."""

    name: str
    type: TensorType | None


@dataclass(frozen=True)
class Op:
    """One operation of a block."""

    type: str
    name: str
    params: dict[str, list[Arg]]
    outputs: list[Output]
    has_blocks: bool = False

    @property
    def where(self) -> str:
        return f"op {self.name!r} ({self.type})"


@dataclass(frozen=True)
class Program:
    """One function of an ML Program (``main`` unless said otherwise)."""

    function: str
    opset: str
    inputs: dict[str, TensorType]
    ops: list[Op]
    outputs: list[str]
    attributes: dict[str, Any] = field(default_factory=dict)

    def op_histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        return counts


def load_program(spec: Any, blobs: BlobStore, function: str | None = None) -> Program:
    """The ML Program function ``function`` (default: the program's default, ``main``) of a
    ``CoreML.Specification.Model`` protobuf, with constants read through ``blobs``."""
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise MilProgramError(f"the model is a {kind}, not an ML Program: the reference "
                              "executor runs ML Programs only")
    program = spec.mlProgram
    name = function or spec.description.defaultFunctionName or "main"
    if name not in program.functions:
        raise MilProgramError(f"the ML Program has no function {name!r} "
                              f"(it has {', '.join(program.functions)})")
    fn = program.functions[name]
    if fn.opset not in fn.block_specializations:
        raise MilProgramError(f"function {name!r} has no block for its opset {fn.opset}")
    block = fn.block_specializations[fn.opset]
    inputs: dict[str, TensorType] = {}
    for item in fn.inputs:
        ttype = tensor_type(item.type, f"input {item.name!r}")
        if ttype is None:
            raise MilProgramError(f"input {item.name!r} is not a tensor (states and lists are "
                                  "not supported)")
        inputs[item.name] = ttype
    ops = [_op(op, blobs) for op in block.operations]
    return Program(name, str(fn.opset), inputs, ops, list(block.outputs))


def _op(proto: Any, blobs: BlobStore) -> Op:
    first = proto.outputs[0].name if proto.outputs else "?"
    name = first
    if "name" in proto.attributes:
        name = str(decode_value(proto.attributes["name"], blobs, f"op {first!r}"))
    where = f"op {name!r} ({proto.type})"
    params: dict[str, list[Arg]] = {}
    for key, value in proto.attributes.items():
        if key != "name":
            params[key] = [Arg(None, decode_value(value, blobs, f"{where}, {key}"))]
    for key, argument in proto.inputs.items():
        if key in params:
            raise MilProgramError(f"{where}: {key!r} is both an input and an attribute")
        args = []
        for binding in argument.arguments:
            if binding.WhichOneof("binding") == "name":
                args.append(Arg(binding.name))
            else:
                args.append(Arg(None, decode_value(binding.value, blobs, f"{where}, {key}")))
        params[key] = args
    outputs = [Output(o.name, tensor_type(o.type, f"{where}, output {o.name!r}"))
               for o in proto.outputs]
    return Op(str(proto.type), name, params, outputs, bool(len(proto.blocks)))
