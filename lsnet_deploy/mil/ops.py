"""The op table of the reference executor: MIL op type -> kernel.

A kernel takes the op's :class:`OpArgs` (its parameters, already resolved to runtime values:
tensors as described in :mod:`lsnet_deploy.mil.values`, strings, lists) and returns one value,
or a tuple for ops with several outputs. It follows Apple's MIL op reference
(``coremltools.converters.mil.mil.ops.defs``): argument names, defaults and semantics. The
executor then checks each result against the type and shape the program declares and rounds
fp16 results to fp16.

Adding an op: write the kernel in the ``kernels_*`` module of its family, decorate it with
``@kernel("op_type")``, and add a test against PyTorch in ``tests/test_coreml_reference_ops.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .errors import MilProgramError
from .program import Op

__all__ = ["CONSTEXPR_OPS", "OPS", "Kernel", "OpArgs", "kernel"]

Kernel = Callable[["OpArgs"], Any]
OPS: dict[str, Kernel] = {}
"""Every op the executor runs (filled by the ``kernels_*`` modules)."""
CONSTEXPR_OPS: set[str] = set()
"""Ops evaluated once, when the program is loaded (``const`` and the ``constexpr_*`` ops)."""

_MISSING = object()


def kernel(*op_types: str, constexpr: bool = False) -> Callable[[Kernel], Kernel]:
    """Register a kernel for ``op_types``."""

    def register(fn: Kernel) -> Kernel:
        for op_type in op_types:
            if op_type in OPS:
                raise RuntimeError(f"two kernels for MIL op {op_type!r}")
            OPS[op_type] = fn
            if constexpr:
                CONSTEXPR_OPS.add(op_type)
        return fn

    return register


class OpArgs:
    """An op's parameters as runtime values (``values[name]``: one value per argument)."""

    def __init__(self, op: Op, values: dict[str, list[Any]]) -> None:
        self.op = op
        self.values = values

    def error(self, message: str) -> MilProgramError:
        return MilProgramError(f"{self.op.where}: {message}")

    def has(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        """The value of a one-argument parameter (``default`` if absent; required without)."""
        if name not in self.values:
            if default is _MISSING:
                raise self.error(f"missing required parameter {name!r}")
            return default
        args = self.values[name]
        if len(args) != 1:
            raise self.error(f"parameter {name!r} takes one argument, got {len(args)}")
        return args[0]

    def tensor(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is not None and value is not default and not isinstance(value, torch.Tensor):
            raise self.error(f"parameter {name!r} must be a tensor, got {type(value).__name__}")
        return value

    def tensors(self, name: str) -> list[torch.Tensor]:
        """All arguments of a variadic parameter (``concat``'s ``values``)."""
        if name not in self.values:
            raise self.error(f"missing required parameter {name!r}")
        return list(self.values[name])

    def ints(self, name: str, default: Sequence[int] | None | object = _MISSING
             ) -> list[int] | None:
        value = self.raw(name, default)
        if value is default:
            return None if default is None else [int(v) for v in default]  # type: ignore[attr-defined]
        return [int(v) for v in _flat(value)]

    def int(self, name: str, default: int | object = _MISSING) -> int:
        value = self.raw(name, default)
        return int(value) if value is default else int(self._scalar(name, value))

    def float(self, name: str, default: float | object = _MISSING) -> float:
        value = self.raw(name, default)
        return float(value) if value is default else float(self._scalar(name, value))  # type: ignore[arg-type]

    def bool(self, name: str, default: bool | object = _MISSING) -> bool:
        value = self.raw(name, default)
        return bool(value) if value is default else bool(self._scalar(name, value))

    def bools(self, name: str, rank: int) -> list[bool]:
        value = self.raw(name, None)
        return [False] * rank if value is None else [bool(v) for v in _flat(value)]

    def str(self, name: str, default: str | object = _MISSING) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise self.error(f"parameter {name!r} must be a string")
        return value

    def _scalar(self, name: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise self.error(f"parameter {name!r} must be a scalar, got shape "
                                 f"{tuple(value.shape)}")
            return value.reshape(()).item()
        return value


def _flat(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        return value.reshape(-1).tolist()
    return list(value)


def axis_of(a: OpArgs, axis: int, rank: int) -> int:
    """``axis`` normalized to ``[0, rank)`` (negative axes count from the end)."""
    if not -rank <= axis < rank:
        raise a.error(f"axis {axis} out of range for rank {rank}")
    return axis % rank
