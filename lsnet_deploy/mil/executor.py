"""The interpreter: runs a :class:`~lsnet_deploy.mil.program.Program` op by op.

At load: every op must have a kernel (else :class:`UnsupportedMilOpError` naming it), every
value must be defined before use, and the ``const`` / ``constexpr_*`` ops are evaluated once
(as Core ML decompresses weights when it loads a model). Per run: each op's kernel gets its
parameters, and each result is checked against the op's declared output: the shape must be
the declared one, the kind (float / integer / bool) must match, and a result declared fp16 is
rounded to fp16 (float32 arithmetic inside an op, fp16 storage between ops, as the program
declares it). A mismatch is a :class:`MilProgramError` naming the op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import first_line
from . import kernels_math, kernels_nn, kernels_quant, kernels_shape  # noqa: F401  (fill OPS)
from .errors import MilError, MilProgramError, UnsupportedMilOpError
from .ops import CONSTEXPR_OPS, OPS, Kernel, OpArgs
from .program import Op, Output, Program
from .values import DTYPES, TensorType

__all__ = ["Executor", "conform"]

_Ref = tuple[str | None, Any]  # (value name, None) or (None, constant)


@dataclass(frozen=True)
class _Step:
    op: Op
    kernel: Kernel
    args: dict[str, list[_Ref]]
    release: tuple[str, ...]  # values not needed after this step


class Executor:
    """A program prepared for repeated runs (see the module docstring).

    ``round_fp16=False`` keeps fp16-declared results in float32 (the same program computed
    at fp32 precision): the difference to a normal run is what fp16 storage costs, which
    tells a precision problem of the program from a conversion problem.
    """

    def __init__(self, program: Program, round_fp16: bool = True) -> None:
        self.program = program
        self.round_fp16 = round_fp16
        self.constants: dict[str, Any] = {}
        self._steps: list[_Step] = []
        self._prepare()

    def _prepare(self) -> None:
        known = set(self.program.inputs)
        pending: list[tuple[Op, Kernel, dict[str, list[_Ref]]]] = []
        for op in self.program.ops:
            if op.has_blocks:
                raise UnsupportedMilOpError(op.type, f"{op.where}: nested blocks")
            fn = OPS.get(op.type)
            if fn is None:
                raise UnsupportedMilOpError(op.type, op.where)
            args = {key: [self._ref(op, arg.name, arg.const, known) for arg in values]
                    for key, values in op.params.items()}
            if op.type in CONSTEXPR_OPS:
                if any(name is not None for refs in args.values() for name, _ in refs):
                    raise MilProgramError(f"{op.where}: a constant op with a runtime input")
                values = {key: [c for _, c in refs] for key, refs in args.items()}
                for out, value in zip(op.outputs, _outputs(op, _call(op, fn, values)),
                                      strict=True):
                    self.constants[out.name] = conform(op, out, value, self.round_fp16)
            else:
                pending.append((op, fn, args))
                known.update(o.name for o in op.outputs)
        for name in self.program.outputs:
            if name not in known and name not in self.constants:
                raise MilProgramError(f"the program output {name!r} is never computed")
        last: dict[str, int] = {}
        for i, (_, _, args) in enumerate(pending):
            for refs in args.values():
                last.update({name: i for name, _ in refs if name is not None})
        keep = set(self.program.outputs)
        for i, (op, fn, args) in enumerate(pending):
            release = tuple(n for n, j in last.items() if j == i and n not in keep)
            self._steps.append(_Step(op, fn, args, release))

    def _ref(self, op: Op, name: str | None, const: Any, known: set[str]) -> _Ref:
        if name is None:
            return None, const
        if name in self.constants:
            return None, self.constants[name]
        if name not in known:
            raise MilProgramError(f"{op.where} uses {name!r} before it is defined")
        return name, None

    def run(self, feeds: dict[str, Any],
            observe: Callable[[Op, str, Any], None] | None = None) -> dict[str, Any]:
        """The program's outputs for ``feeds`` (input name -> array or tensor, converted to
        the declared input type and checked against its shape); ``observe(op, name, value)``
        sees every op result (to trace a program)."""
        env: dict[str, Any] = {}
        for name, ttype in self.program.inputs.items():
            if name not in feeds:
                raise MilProgramError(f"missing input {name!r}")
            env[name] = conform_input(name, ttype, feeds[name])
        for step in self._steps:
            values = {key: [env[n] if n is not None else c for n, c in refs]
                      for key, refs in step.args.items()}
            result = _call(step.op, step.kernel, values)
            for out, value in zip(step.op.outputs, _outputs(step.op, result), strict=True):
                env[out.name] = conform(step.op, out, value, self.round_fp16)
                if observe is not None:
                    observe(step.op, out.name, env[out.name])
            for name in step.release:
                env.pop(name, None)
        return {name: env[name] if name in env else self.constants[name]
                for name in self.program.outputs}


def _call(op: Op, fn: Kernel, values: dict[str, list[Any]]) -> Any:
    try:
        return fn(OpArgs(op, values))
    except MilError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise MilProgramError(f"{op.where} failed: {first_line(e, 300)}") from e


def _outputs(op: Op, result: Any) -> tuple[Any, ...]:
    outs = result if isinstance(result, tuple) else (result,)
    if len(outs) != len(op.outputs):
        raise MilProgramError(f"{op.where}: computed {len(outs)} outputs, the program "
                              f"declares {len(op.outputs)}")
    return outs


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "float"
    return "bool" if dtype == torch.bool else "int"


def conform(op: Op, out: Output, value: Any, round_fp16: bool = True) -> Any:
    """``value`` checked against the declared output ``out`` and stored as its type."""
    ttype = out.type
    if ttype is None or ttype.dtype == "STRING":
        return value
    if not isinstance(value, torch.Tensor):
        raise MilProgramError(f"{op.where}: output {out.name!r} is not a tensor")
    return _as_type(value, ttype, f"{op.where}: output {out.name!r}", round_fp16)


def _as_type(value: torch.Tensor, ttype: TensorType, where: str,
             round_fp16: bool = True) -> torch.Tensor:
    shape = tuple(value.shape)
    declared = ttype.shape
    if len(shape) != len(declared) or any(d is not None and d != s
                                          for d, s in zip(declared, shape, strict=True)):
        raise MilProgramError(f"{where}: computed shape {list(shape)}, the program declares "
                              f"{ttype.describe()}")
    if ttype.dtype not in DTYPES:
        raise MilProgramError(f"{where}: type {ttype.dtype} is not supported")
    want = "float" if ttype.is_float else ("bool" if ttype.dtype == "BOOL" else "int")
    if _kind(value.dtype) != want:
        raise MilProgramError(f"{where}: computed {value.dtype} values, the program declares "
                              f"{ttype.dtype.lower()}")
    if ttype.dtype == "FLOAT16" and round_fp16:
        return value.to(torch.float16).to(torch.float32)
    return value.to(DTYPES[ttype.dtype][1])


def conform_input(name: str, ttype: TensorType, feed: Any) -> torch.Tensor:
    """A fed array as the runtime value of input ``name`` (rounded to fp16 if declared so)."""
    if isinstance(feed, torch.Tensor):
        value = feed.detach()
    else:
        value = torch.from_numpy(np.ascontiguousarray(feed))
    if ttype.is_float:
        value = value.to(torch.float32)
    return _as_type(value, ttype, f"input {name!r}")
