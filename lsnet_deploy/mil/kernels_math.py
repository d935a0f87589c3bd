"""Elementwise kernels (binary with NumPy broadcasting, unary, activations, ``cast``),
reductions and ``softmax``, after the MIL op reference (iOS 15-18 ``elementwise_binary``,
``elementwise_unary``, ``activation``, ``reduction``).

Floating-point operands arrive as float32 (see :mod:`lsnet_deploy.mil.values`); integer
arithmetic stays integer (``floor_div`` / ``mod`` round towards negative infinity, Python's
``//`` and ``%``; ``real_div`` of two integers truncates towards zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .ops import OpArgs, axis_of, kernel

__all__: list[str] = []

Tensor = torch.Tensor


def _is_int(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.dtype == torch.bool)


def _real_div(x: Tensor, y: Tensor) -> Tensor:
    if _is_int(x) and _is_int(y):
        return torch.div(x, y, rounding_mode="trunc")
    return x / y


def _floor_div(x: Tensor, y: Tensor) -> Tensor:
    if _is_int(x) and _is_int(y):
        return torch.div(x, y, rounding_mode="floor")
    return torch.floor(x / y)


_BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": _real_div,
    "floor_div": _floor_div, "mod": torch.remainder, "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum,
    "equal": torch.eq, "not_equal": torch.ne, "greater": torch.gt, "greater_equal": torch.ge,
    "less": torch.lt, "less_equal": torch.le, "logical_and": torch.logical_and,
    "logical_or": torch.logical_or, "logical_xor": torch.logical_xor,
}


@kernel(*_BINARY)
def _binary(a: OpArgs) -> Tensor:
    x, y = a.tensor("x"), a.tensor("y")
    if x.dtype != y.dtype and x.is_floating_point() != y.is_floating_point():
        raise a.error(f"operands of different kinds: {x.dtype} and {y.dtype}")
    return _BINARY[a.op.type](x, y)


_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "abs": torch.abs, "acos": torch.acos, "asin": torch.asin, "atan": torch.atan,
    "atanh": torch.atanh, "ceil": torch.ceil, "cos": torch.cos, "cosh": torch.cosh,
    "erf": torch.erf, "exp": torch.exp, "exp2": torch.exp2, "floor": torch.floor,
    "logical_not": torch.logical_not, "round": torch.round, "sign": torch.sign,
    "sin": torch.sin, "sinh": torch.sinh, "sqrt": torch.sqrt, "square": torch.square,
    "tan": torch.tan, "tanh": torch.tanh,
    "relu": torch.relu, "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "sigmoid": torch.sigmoid, "silu": lambda x: x * torch.sigmoid(x),
    "softplus": lambda x: torch.log1p(torch.exp(-x.abs())) + torch.clamp(x, min=0.0),
    "softsign": lambda x: x / (1.0 + x.abs()),
    "identity": lambda x: x,
}


@kernel(*_UNARY)
def _unary(a: OpArgs) -> Tensor:
    return _UNARY[a.op.type](a.tensor("x"))


@kernel("inverse", "log", "rsqrt")
def _with_epsilon(a: OpArgs) -> Tensor:
    """``1 / (x + eps)``, ``log(x + eps)``, ``1 / sqrt(x + eps)`` (defaults 1e-4, 1e-45,
    1e-12)."""
    default = {"inverse": 1e-4, "log": 1e-45, "rsqrt": 1e-12}[a.op.type]
    x = a.tensor("x") + a.float("epsilon", default)
    return {"inverse": torch.reciprocal, "log": torch.log, "rsqrt": torch.rsqrt}[a.op.type](x)


@kernel("clip")
def _clip(a: OpArgs) -> Tensor:
    return torch.clamp(a.tensor("x"), a.float("alpha"), a.float("beta"))


@kernel("threshold")
def _threshold(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    return torch.maximum(x, torch.tensor(a.float("alpha"), dtype=x.dtype))


@kernel("gelu")
def _gelu(a: OpArgs) -> Tensor:
    x, mode = a.tensor("x"), a.str("mode", "EXACT")
    if mode == "EXACT":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise a.error(f"unknown gelu mode {mode!r}")


@kernel("leaky_relu", "elu", "thresholded_relu")
def _alpha_activation(a: OpArgs) -> Tensor:
    x, alpha = a.tensor("x"), a.float("alpha")
    if a.op.type == "leaky_relu":
        return torch.where(x >= 0, x, alpha * x)
    if a.op.type == "elu":
        return torch.where(x > 0, x, alpha * torch.expm1(x))
    return torch.where(x >= alpha, x, torch.zeros_like(x))


@kernel("sigmoid_hard", "clamped_relu", "scaled_tanh", "linear_activation")
def _alpha_beta_activation(a: OpArgs) -> Tensor:
    x, alpha, beta = a.tensor("x"), a.float("alpha"), a.float("beta")
    if a.op.type == "sigmoid_hard":
        return torch.clamp(alpha * x + beta, 0.0, 1.0)
    if a.op.type == "clamped_relu":
        return torch.clamp(torch.where(x >= 0, x, alpha * x), max=beta)
    if a.op.type == "scaled_tanh":
        return alpha * torch.tanh(beta * x)
    return alpha * x + beta


def _per_channel(a: OpArgs, name: str, x: Tensor) -> Tensor:
    """A ``[C]`` parameter broadcast along axis 1 of ``x``."""
    p = a.tensor(name).reshape(-1)
    if x.dim() < 2 or p.numel() != x.shape[1]:
        raise a.error(f"{name!r} has {p.numel()} values for input shape {tuple(x.shape)}")
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


@kernel("prelu")
def _prelu(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    return torch.where(x > 0, x, _per_channel(a, "alpha", x) * x)


@kernel("softplus_parametric")
def _softplus_parametric(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    z = _per_channel(a, "beta", x) * x
    return _per_channel(a, "alpha", x) * (torch.log1p(torch.exp(-z.abs())) + z.clamp(min=0))


@kernel("softmax")
def _softmax(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    return torch.softmax(x, dim=axis_of(a, a.int("axis", -1), x.dim()))


_CASTS = {"fp16": torch.float32, "fp32": torch.float32, "fp64": torch.float64,
          "int8": torch.int8, "uint8": torch.uint8, "int16": torch.int16,
          "uint16": torch.int32, "int32": torch.int32, "int64": torch.int64,
          "bool": torch.bool}


@kernel("cast")
def _cast(a: OpArgs) -> Tensor:
    """Float to integer truncates towards zero; to ``fp16`` rounds to nearest (done by the
    executor on the declared output type)."""
    x, dtype = a.tensor("x"), a.str("dtype")
    if dtype not in _CASTS:
        raise a.error(f"unknown cast dtype {dtype!r}")
    return x.to(_CASTS[dtype])


def _axes(a: OpArgs, x: Tensor) -> list[int]:
    axes = a.ints("axes", None)
    if axes is None:
        return list(range(x.dim()))
    return sorted({axis_of(a, d, x.dim()) for d in axes})


def _reduce(fn: Callable[[Tensor, list[int]], Tensor]) -> Callable[[OpArgs], Tensor]:
    def run(a: OpArgs) -> Tensor:
        x = a.tensor("x")
        axes = _axes(a, x)
        if not axes:
            return x
        out = fn(x, axes)  # keep_dims=True shape
        return out if a.bool("keep_dims", False) else out.reshape(
            [s for d, s in enumerate(x.shape) if d not in axes])

    return run


def _prod(x: Tensor, axes: list[int]) -> Tensor:
    for d in axes:
        x = torch.prod(x, dim=d, keepdim=True)
    return x


_REDUCTIONS: dict[str, Callable[[Tensor, list[int]], Tensor]] = {
    "reduce_mean": lambda x, d: torch.mean(x, dim=d, keepdim=True),
    "reduce_sum": lambda x, d: torch.sum(x, dim=d, keepdim=True),
    "reduce_max": lambda x, d: torch.amax(x, dim=d, keepdim=True),
    "reduce_min": lambda x, d: torch.amin(x, dim=d, keepdim=True),
    "reduce_prod": _prod,
    "reduce_l1_norm": lambda x, d: torch.sum(x.abs(), dim=d, keepdim=True),
    "reduce_l2_norm": lambda x, d: torch.sqrt(torch.sum(x * x, dim=d, keepdim=True)),
    "reduce_sum_square": lambda x, d: torch.sum(x * x, dim=d, keepdim=True),
    "reduce_log_sum": lambda x, d: torch.log(torch.sum(x, dim=d, keepdim=True)),
    "reduce_log_sum_exp": lambda x, d: torch.logsumexp(x, dim=d, keepdim=True),
}
for _name, _fn in _REDUCTIONS.items():
    kernel(_name)(_reduce(_fn))


@kernel("reduce_argmax", "reduce_argmin")
def _reduce_arg(a: OpArgs) -> Tensor:
    """Index of the first maximum / minimum along ``axis`` (default -1), as int32."""
    x = a.tensor("x")
    axis = axis_of(a, a.int("axis", -1), x.dim())
    keep = a.bool("keep_dims", False)
    fn = torch.argmax if a.op.type == "reduce_argmax" else torch.argmin
    return fn(x, dim=axis, keepdim=keep).to(torch.int32)


@kernel("l2_norm")
def _l2_norm(a: OpArgs) -> Tensor:
    """``x / sqrt(sum(x^2) + eps)`` over the last three axes (batch-wise before them)."""
    x = a.tensor("x")
    if x.dim() < 3:
        raise a.error(f"l2_norm needs rank >= 3, got {x.dim()}")
    dims = [-3, -2, -1]
    return x / torch.sqrt(torch.sum(x * x, dim=dims, keepdim=True) + a.float("epsilon", 1e-6))

