"""Every kernel of the Core ML reference executor against PyTorch, one MIL op at a time.

Each case builds a one-op ML Program with coremltools' MIL builder (so the op, its argument
encoding and its declared output type are what coremltools writes, type inference included),
serializes it to the protobuf + weight blob a package holds, runs it in the reference
executor and compares with the same computation written in PyTorch (float32 on the same,
fp16-rounded values). fp16 programs must match the PyTorch result rounded to fp16 within one
or two fp16 steps; fp32 programs within float32 rounding. Shapes are those of LSNet's
programs (feature maps ``(1, C, H, W)``, SKA's ``(1, 9, G, H*W)`` views, the head's
``(1, C)``) where the op occurs there.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coremltools as ct
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.backend.mil.load import load as serialize
from coremltools.converters.mil.mil import types

from lsnet_deploy.mil import OPS, Executor, UnsupportedMilOpError, load_program
from lsnet_deploy.mil.package import BlobStore

F16, F32 = np.float16, np.float32
MIL_TYPES = {np.dtype(F16): types.fp16, np.dtype(F32): types.fp32,
             np.dtype(np.int32): types.int32, np.dtype(bool): types.bool}
TARGETS = {17: (ct.target.iOS17, 8), 18: (ct.target.iOS18, 9)}


def run_program(build: Callable[..., Any], inputs: list[np.ndarray], folder: Path,
                ios: int = 17) -> tuple[list[Any], dict[str, int]]:
    """Build a program of ``build(*inputs)``, serialize it into ``folder``, run it in the
    reference executor; returns its outputs (numpy or Python values) and op histogram.

    A model's inputs and outputs can only be fp16 / fp32 / int32: bool inputs are fed as
    int32 and cast inside, other outputs are cast to int32 at the end."""
    specs = [mb.TensorSpec(shape=x.shape, dtype=types.int32 if x.dtype == bool
                           else MIL_TYPES[x.dtype]) for x in inputs]
    opset, version = TARGETS[ios]

    def body(*xs: Any) -> Any:
        xs = tuple(mb.cast(x=v, dtype="bool") if x.dtype == bool else v
                   for v, x in zip(xs, inputs, strict=True))
        out = build(*xs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(o if o.dtype in (types.fp16, types.fp32, types.int32)
                     else mb.cast(x=o, dtype="int32") for o in outs)

    if len(inputs) == 1:
        @mb.program(input_specs=specs, opset_version=opset)
        def prog(x):  # type: ignore[no-untyped-def]
            return body(x)
    else:
        @mb.program(input_specs=specs, opset_version=opset)
        def prog(x, y):  # type: ignore[no-untyped-def]
            return body(x, y)
    spec = serialize(prog, str(folder), specification_version=version)
    program = load_program(spec, BlobStore(folder))
    feeds = [x.astype(np.int32) if x.dtype == bool else x for x in inputs]
    outs = Executor(program).run(dict(zip(program.inputs, feeds, strict=True)))
    values = [v.numpy() if isinstance(v, torch.Tensor) else v for v in outs.values()]
    return values, program.op_histogram()


@dataclass(frozen=True)
class Case:
    op: str
    label: str
    make: Callable[[Any, np.random.Generator], tuple[Callable[..., Any], list[np.ndarray], Any]]
    dtypes: tuple[Any, ...] = (F16, F32)
    ios: int = 17


CASES: list[Case] = []


def case(op: str, label: str = "", dtypes: tuple[Any, ...] = (F16, F32), ios: int = 17
         ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        CASES.append(Case(op, label or fn.__name__, fn, dtypes, ios))
        return fn

    return register


def t(x: np.ndarray) -> torch.Tensor:
    """A numpy array as a float32 (or its own integer type) tensor."""
    return torch.from_numpy(np.asarray(x).astype(np.float32) if np.asarray(x).dtype.kind == "f"
                            else np.asarray(x))


def rand(rng: np.random.Generator, shape: tuple[int, ...], dt: Any, scale: float = 1.0,
         low: float | None = None) -> np.ndarray:
    x = rng.standard_normal(shape) * scale if low is None else rng.uniform(low, scale, shape)
    return x.astype(dt)


# ---- convolutions and dense ops --------------------------------------------------------------

def _conv_case(shape: tuple[int, ...], w_shape: tuple[int, ...], groups: int, **kw: Any
               ) -> Callable[..., Any]:
    def make(dt: Any, rng: np.random.Generator) -> Any:
        x = rand(rng, shape, dt)
        w = rand(rng, w_shape, dt, 1 / math.sqrt(np.prod(w_shape[1:])))
        b = rand(rng, (w_shape[0],), dt, 0.1)
        pad = kw.get("pad", [0] * (2 * (len(shape) - 2)))
        strides = kw.get("strides", [1] * (len(shape) - 2))
        dil = kw.get("dilations", [1] * (len(shape) - 2))
        ptype = kw.get("pad_type", "custom")

        def build(v: Any) -> Any:
            return mb.conv(x=v, weight=w, bias=b, strides=strides, pad_type=ptype, pad=pad,
                           dilations=dil, groups=groups)

        xt = t(x)
        if ptype in ("same", "same_lower"):  # TensorFlow SAME: total pad from the output size
            pad = []
            for size, k, s, d in zip(shape[2:], w_shape[2:], strides, dil, strict=True):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                lo, hi = total // 2, total - total // 2
                pad += [lo, hi] if ptype == "same" else [hi, lo]
        torch_pad = [p for i in reversed(range(len(pad) // 2)) for p in pad[2 * i : 2 * i + 2]]
        conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(shape)]
        ref = conv(F.pad(xt, torch_pad), t(w), t(b), stride=strides, dilation=dil, groups=groups)
        return build, [x], ref

    return make


case("conv", "stem 3x3 s2 pad 1")(_conv_case((1, 3, 32, 32), (4, 3, 3, 3), 1, strides=[2, 2],
                                              pad=[1, 1, 1, 1]))
case("conv", "depthwise 3x3 pad 1")(_conv_case((1, 16, 8, 8), (16, 1, 3, 3), 16,
                                               pad=[1, 1, 1, 1]))
case("conv", "depthwise 7x7 pad 3 (LKP)")(_conv_case((1, 16, 8, 8), (16, 1, 7, 7), 16,
                                                     pad=[3, 3, 3, 3]))
case("conv", "SKA pad conv 1x1 pad 1")(_conv_case((1, 8, 6, 6), (8, 1, 1, 1), 8,
                                                  pad=[1, 1, 1, 1]))
case("conv", "pointwise valid")(_conv_case((1, 32, 8, 8), (64, 32, 1, 1), 1,
                                           pad_type="valid"))
case("conv", "asymmetric pad, dilation 2")(_conv_case((1, 4, 9, 9), (6, 2, 3, 3), 2,
                                                      pad=[0, 2, 1, 0], dilations=[2, 2]))
case("conv", "same, stride 2")(_conv_case((1, 4, 9, 8), (4, 4, 4, 3), 1, pad_type="same",
                                          strides=[2, 2]))
case("conv", "same_lower, stride 2")(_conv_case((1, 4, 9, 8), (4, 4, 4, 3), 1,
                                                pad_type="same_lower", strides=[2, 2]))
case("conv", "1-D")(_conv_case((1, 4, 12), (6, 4, 3), 1, pad=[1, 1]))


@case("linear", "head (1, 64) -> 10")
def _linear(dt: Any, rng: np.random.Generator) -> Any:
    x, w, b = rand(rng, (1, 64), dt), rand(rng, (10, 64), dt, 0.1), rand(rng, (10,), dt)
    return (lambda v: mb.linear(x=v, weight=w, bias=b)), [x], F.linear(t(x), t(w), t(b))


@case("matmul", "attention q^T k, transpose_x")
def _matmul_tx(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rand(rng, (1, 4, 16, 4), dt), rand(rng, (1, 4, 16, 4), dt)
    return (lambda a, b: mb.matmul(x=a, y=b, transpose_x=True)), [x, y], \
        torch.matmul(t(x).transpose(-1, -2), t(y))


@case("matmul", "v attn^T, transpose_y, broadcast")
def _matmul_ty(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rand(rng, (1, 4, 16, 4), dt), rand(rng, (4, 4, 4), dt)
    return (lambda a, b: mb.matmul(x=a, y=b, transpose_y=True)), [x, y], \
        torch.matmul(t(x), t(y).transpose(-1, -2))


# ---- normalizations and pooling --------------------------------------------------------------

@case("batch_norm")
def _batch_norm(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 8, 4, 4), dt)
    mean, var = rand(rng, (8,), dt, 0.5), rand(rng, (8,), dt, 2.0, low=0.5)
    gamma, beta = rand(rng, (8,), dt), rand(rng, (8,), dt)
    ref = F.batch_norm(t(x), t(mean), t(var), t(gamma), t(beta), eps=float(dt(1e-3)))
    return (lambda v: mb.batch_norm(x=v, mean=mean, variance=var, gamma=gamma, beta=beta,
                                    epsilon=dt(1e-3))), [x], ref


@case("instance_norm")
def _instance_norm(dt: Any, rng: np.random.Generator) -> Any:
    x, gamma, beta = rand(rng, (1, 6, 5, 5), dt), rand(rng, (6,), dt), rand(rng, (6,), dt)
    ref = F.instance_norm(t(x), weight=t(gamma), bias=t(beta), eps=float(dt(1e-5)))
    return (lambda v: mb.instance_norm(x=v, gamma=gamma, beta=beta, epsilon=dt(1e-5))), [x], ref


@case("layer_norm", "last two axes")
def _layer_norm(dt: Any, rng: np.random.Generator) -> Any:
    x, gamma, beta = rand(rng, (1, 3, 4, 6), dt), rand(rng, (4, 6), dt), rand(rng, (4, 6), dt)
    ref = F.layer_norm(t(x), (4, 6), t(gamma), t(beta), eps=float(dt(1e-5)))
    return (lambda v: mb.layer_norm(x=v, axes=[2, 3], gamma=gamma, beta=beta,
                                    epsilon=dt(1e-5))), [x], ref


@case("l2_norm")
def _l2_norm(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 3, 4, 5), dt)
    xt = t(x)
    ref = xt / torch.sqrt((xt * xt).sum(dim=(1, 2, 3), keepdim=True) + float(dt(1e-6)))
    return (lambda v: mb.l2_norm(x=v, epsilon=dt(1e-6))), [x], ref


@case("avg_pool", "3x3 s2 pad 1, padding counted")
def _avg_pool(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 7, 7), dt)
    ref = F.avg_pool2d(t(x), 3, 2, padding=1, count_include_pad=True)
    return (lambda v: mb.avg_pool(x=v, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                  pad=[1, 1, 1, 1])), [x], ref


@case("avg_pool", "excluding padding, ceil mode")
def _avg_pool_ceil(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 8, 8), dt)
    ref = F.avg_pool2d(t(x), 3, 2, padding=1, ceil_mode=True, count_include_pad=False)
    return (lambda v: mb.avg_pool(x=v, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                  pad=[1, 1, 1, 1], exclude_padding_from_average=True,
                                  ceil_mode=True)), [x], ref


@case("max_pool", "3x3 s2 pad 1")
def _max_pool(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 7, 7), dt)
    ref = F.max_pool2d(t(x), 3, 2, padding=1)
    return (lambda v: mb.max_pool(x=v, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom",
                                  pad=[1, 1, 1, 1])), [x], ref


@case("l2_pool", "2x2 s2")
def _l2_pool(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 6, 6), dt)
    ref = F.lp_pool2d(t(x), 2, 2, 2)
    return (lambda v: mb.l2_pool(x=v, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid")
            ), [x], ref


# ---- elementwise -----------------------------------------------------------------------------

BINARY_TORCH = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": torch.div,
    "maximum": torch.maximum, "minimum": torch.minimum, "pow": torch.pow,
    "floor_div": lambda a, b: torch.floor(a / b), "mod": torch.remainder,
}
for _name, _ref in BINARY_TORCH.items():
    def _make_binary(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref) -> Any:
        x = rand(rng, (1, 9, 4, 64), dt)
        y = rand(rng, (1, 1, 4, 1), dt)  # SKA / GroupNorm broadcasting
        if _n == "pow":
            x = np.abs(x) + dt(0.5)
        if _n in ("real_div", "floor_div", "mod"):
            y = (np.abs(y) + dt(0.5)) * np.sign(y + dt(1e-3))
        return (lambda a, b: getattr(mb, _n)(x=a, y=b)), [x, y], _r(t(x), t(y))
    case(_name, "broadcast (1,9,4,64) x (1,1,4,1)")(_make_binary)

COMPARE_TORCH = {"equal": torch.eq, "not_equal": torch.ne, "greater": torch.gt,
                 "greater_equal": torch.ge, "less": torch.lt, "less_equal": torch.le}
for _name, _ref in COMPARE_TORCH.items():
    def _make_compare(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref) -> Any:
        x = np.round(rand(rng, (2, 8), dt, 2.0))
        y = np.round(rand(rng, (1, 8), dt, 2.0))
        return (lambda a, b: getattr(mb, _n)(x=a, y=b)), [x, y], _r(t(x), t(y))
    case(_name)(_make_compare)

for _name, _ref in {"logical_and": torch.logical_and, "logical_or": torch.logical_or,
                    "logical_xor": torch.logical_xor}.items():
    def _make_logical(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref) -> Any:
        x, y = rng.random((3, 4)) > 0.5, rng.random((3, 4)) > 0.5
        return (lambda a, b: getattr(mb, _n)(x=a, y=b)), [x, y], _r(t(x), t(y))
    case(_name, dtypes=(bool,))(_make_logical)


@case("logical_not", dtypes=(bool,))
def _logical_not(dt: Any, rng: np.random.Generator) -> Any:
    x = rng.random((3, 4)) > 0.5
    return (lambda v: mb.logical_not(x=v)), [x], torch.logical_not(t(x))


@case("add", "int32 shape arithmetic", dtypes=(np.int32,))
def _add_int(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rng.integers(-50, 50, (4,)).astype(dt), rng.integers(-50, 50, (4,)).astype(dt)
    return (lambda a, b: mb.add(x=a, y=b)), [x, y], t(x) + t(y)


@case("floor_div", "int32", dtypes=(np.int32,))
def _floor_div_int(dt: Any, rng: np.random.Generator) -> Any:
    x = rng.integers(-50, 50, (6,)).astype(dt)
    y = np.array([3, -3, 4, -4, 7, 2], dtype=dt)
    return (lambda a, b: mb.floor_div(x=a, y=b)), [x, y], torch.div(t(x), t(y),
                                                                    rounding_mode="floor")


# name -> (torch reference, input domain (low, high) or None for normal)
UNARY_TORCH: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], tuple[float, float] | None]] = {
    "abs": (torch.abs, None), "acos": (torch.acos, (-0.9, 0.9)), "asin": (torch.asin, (-0.9, 0.9)),
    "atan": (torch.atan, None), "atanh": (torch.atanh, (-0.9, 0.9)), "ceil": (torch.ceil, None),
    "cos": (torch.cos, None), "cosh": (torch.cosh, None), "erf": (torch.erf, None),
    "exp": (torch.exp, None), "exp2": (torch.exp2, None), "floor": (torch.floor, None),
    "round": (torch.round, None), "sign": (torch.sign, None), "sin": (torch.sin, None),
    "sinh": (torch.sinh, None), "sqrt": (torch.sqrt, (0.01, 4.0)), "square": (torch.square, None),
    "tan": (torch.tan, (-1.2, 1.2)), "tanh": (torch.tanh, None),
    "relu": (torch.relu, None), "relu6": (F.relu6, (-8.0, 8.0)), "sigmoid": (torch.sigmoid, None),
    "silu": (F.silu, None), "softplus": (F.softplus, None), "softsign": (F.softsign, None),
    "identity": (lambda x: x, None),
}
for _name, (_ref, _dom) in UNARY_TORCH.items():
    def _make_unary(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref,
                    _d: Any = _dom) -> Any:
        x = rand(rng, (1, 16, 4, 4), dt, 2.0) if _d is None else rand(rng, (1, 16, 4, 4), dt,
                                                                      _d[1], low=_d[0])
        return (lambda v: getattr(mb, _n)(x=v)), [x], _r(t(x))
    case(_name, "(1, 16, 4, 4)")(_make_unary)


def _make_eps(name: str, ref: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    def make(dt: Any, rng: np.random.Generator) -> Any:
        x = rand(rng, (1, 1, 4, 1), dt, 4.0, low=0.05)  # GroupNorm's variance
        return (lambda v: getattr(mb, name)(x=v, epsilon=dt(1e-3))), [x], ref(t(x), float(dt(1e-3)))
    case(name, "epsilon 1e-3")(make)


_make_eps("inverse", lambda x, e: 1.0 / (x + e))
_make_eps("log", lambda x, e: torch.log(x + e))
_make_eps("rsqrt", lambda x, e: torch.rsqrt(x + e))


@case("clip")
def _clip(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 8), dt, 2.0)
    return (lambda v: mb.clip(x=v, alpha=dt(-0.5), beta=dt(1.0))), [x], t(x).clamp(-0.5, 1.0)


@case("threshold")
def _threshold(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 8), dt)
    return (lambda v: mb.threshold(x=v, alpha=dt(0.25))), [x], t(x).clamp(min=0.25)


for _mode, _ref in {"EXACT": lambda x: F.gelu(x),
                    "TANH_APPROXIMATION": lambda x: F.gelu(x, approximate="tanh"),
                    "SIGMOID_APPROXIMATION": lambda x: x * torch.sigmoid(1.702 * x)}.items():
    def _make_gelu(dt: Any, rng: np.random.Generator, _m: str = _mode, _r: Any = _ref) -> Any:
        x = rand(rng, (1, 8, 4, 4), dt, 2.0)
        return (lambda v: mb.gelu(x=v, mode=_m)), [x], _r(t(x))
    case("gelu", _mode)(_make_gelu)

ALPHA_TORCH = {
    "leaky_relu": lambda x, a: F.leaky_relu(x, a),
    "elu": lambda x, a: F.elu(x, a),
    "thresholded_relu": lambda x, a: torch.where(x >= a, x, torch.zeros_like(x)),
}
for _name, _ref in ALPHA_TORCH.items():
    def _make_alpha(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref) -> Any:
        x = rand(rng, (1, 8, 4, 4), dt, 2.0)
        return (lambda v: getattr(mb, _n)(x=v, alpha=dt(0.3))), [x], _r(t(x), float(dt(0.3)))
    case(_name)(_make_alpha)

ALPHA_BETA_TORCH = {
    "sigmoid_hard": lambda x, a, b: torch.clamp(a * x + b, 0, 1),
    "clamped_relu": lambda x, a, b: torch.clamp(torch.where(x >= 0, x, a * x), max=b),
    "scaled_tanh": lambda x, a, b: a * torch.tanh(b * x),
    "linear_activation": lambda x, a, b: a * x + b,
}
for _name, _ref in ALPHA_BETA_TORCH.items():
    def _make_ab(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref) -> Any:
        x = rand(rng, (1, 8, 4, 4), dt, 3.0)
        return (lambda v: getattr(mb, _n)(x=v, alpha=dt(0.2), beta=dt(0.5))), [x], \
            _r(t(x), float(dt(0.2)), float(dt(0.5)))
    case(_name)(_make_ab)


@case("prelu")
def _prelu(dt: Any, rng: np.random.Generator) -> Any:
    x, alpha = rand(rng, (1, 6, 4, 4), dt), rand(rng, (6,), dt, 0.5)
    return (lambda v: mb.prelu(x=v, alpha=alpha)), [x], F.prelu(t(x), t(alpha))


@case("softplus_parametric")
def _softplus_parametric(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 6, 4, 4), dt)
    alpha, beta = rand(rng, (6,), dt, 2.0, low=0.5), rand(rng, (6,), dt, 2.0, low=0.5)
    ref = t(alpha).view(1, 6, 1, 1) * F.softplus(t(beta).view(1, 6, 1, 1) * t(x))
    return (lambda v: mb.softplus_parametric(x=v, alpha=alpha, beta=beta)), [x], ref


@case("softmax", "attention (1, 4, 4, 4), axis -1")
def _softmax(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 4, 4), dt, 3.0)
    return (lambda v: mb.softmax(x=v, axis=-1)), [x], torch.softmax(t(x), -1)


@case("softmax", "classifier (1, 1000), axis 1")
def _softmax_head(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 1000), dt, 3.0)
    return (lambda v: mb.softmax(x=v, axis=1)), [x], torch.softmax(t(x), 1)


CASTS = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int8": np.int8,
         "uint8": np.uint8, "bool": bool}
for _to in CASTS:
    def _make_cast(dt: Any, rng: np.random.Generator, _d: str = _to) -> Any:
        x = rand(rng, (1, 3, 4, 4), dt, 100.0, low=0.0 if _d == "uint8" else -100.0)
        if _d == "bool":
            x = np.round(rand(rng, (1, 3, 4, 4), dt, 1.0))
        ref = t(x).to({"fp16": torch.float16, "fp32": torch.float32, "int32": torch.int32,
                       "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}[_d])
        return (lambda v: mb.cast(x=v, dtype=_d)), [x], ref
    case("cast", f"to {_to}")(_make_cast)


# ---- reductions ------------------------------------------------------------------------------

REDUCE_TORCH: dict[str, Callable[[torch.Tensor, tuple[int, ...]], torch.Tensor]] = {
    "reduce_mean": lambda x, d: x.mean(d, keepdim=True),
    "reduce_sum": lambda x, d: x.sum(d, keepdim=True),
    "reduce_max": lambda x, d: x.amax(d, keepdim=True),
    "reduce_min": lambda x, d: x.amin(d, keepdim=True),
    "reduce_prod": lambda x, d: x.prod(d[1], keepdim=True).prod(d[0], keepdim=True),
    "reduce_l1_norm": lambda x, d: x.abs().sum(d, keepdim=True),
    "reduce_l2_norm": lambda x, d: x.square().sum(d, keepdim=True).sqrt(),
    "reduce_sum_square": lambda x, d: x.square().sum(d, keepdim=True),
    "reduce_log_sum": lambda x, d: x.sum(d, keepdim=True).log(),
    "reduce_log_sum_exp": lambda x, d: x.logsumexp(d, keepdim=True),
}
for _name, _ref in REDUCE_TORCH.items():
    def _make_reduce(dt: Any, rng: np.random.Generator, _n: str = _name, _r: Any = _ref) -> Any:
        x = rand(rng, (1, 9, 4, 8), dt, 1.5, low=0.5)  # GroupNorm: axes 1 and 3
        return (lambda v: getattr(mb, _n)(x=v, axes=[1, 3], keep_dims=True)), [x], \
            _r(t(x), (1, 3))
    case(_name, "axes [1, 3], keep_dims")(_make_reduce)


@case("reduce_mean", "head pooling axes [2, 3], no keep_dims, negative axes")
def _reduce_mean_drop(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 64, 7, 7), dt)
    return (lambda v: mb.reduce_mean(x=v, axes=[-2, -1], keep_dims=False)), [x], \
        t(x).mean((2, 3))


@case("reduce_sum", "all axes")
def _reduce_all(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 3, 4), dt)
    return (lambda v: mb.reduce_sum(x=v)), [x], t(x).sum()


for _name, _fn in {"reduce_argmax": torch.argmax, "reduce_argmin": torch.argmin}.items():
    def _make_arg(dt: Any, rng: np.random.Generator, _n: str = _name, _f: Any = _fn) -> Any:
        x = rng.permutation(40).reshape(1, 5, 8).astype(dt)  # no ties
        return (lambda v: getattr(mb, _n)(x=v, axis=-1)), [x], _f(t(x), -1).int()
    case(_name)(_make_arg)


# ---- shapes and data movement ----------------------------------------------------------------

@case("reshape", "SKA view (1, 36, 8, 8) -> [-1, 9, 4, 64]")
def _reshape(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 36, 8, 8), dt)
    return (lambda v: mb.reshape(x=v, shape=[-1, 9, 4, 64])), [x], t(x).reshape(1, 9, 4, 64)


@case("reshape", "0 keeps the axis")
def _reshape_zero(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 6, 4), dt)
    return (lambda v: mb.reshape(x=v, shape=[0, 3, -1])), [x], t(x).reshape(2, 3, 8)


@case("transpose")
def _transpose(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 16, 4), dt)
    return (lambda v: mb.transpose(x=v, perm=[0, 3, 1, -2])), [x], t(x).permute(0, 3, 1, 2)


@case("squeeze")
def _squeeze(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 3, 1, 4), dt)
    return (lambda v: mb.squeeze(x=v, axes=[2])), [x], t(x).squeeze(2)


@case("expand_dims", "SKA unsqueeze axis 1, and -1")
def _expand_dims(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 8, 8), dt)
    return (lambda v: mb.expand_dims(x=v, axes=[1, -1])), [x], t(x)[:, None, ..., None]


@case("flatten2d")
def _flatten2d(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 3, 4, 5), dt)
    return (lambda v: mb.flatten2d(x=v, axis=-2)), [x], t(x).reshape(6, 20)  # x[:2], x[2:]


@case("slice_by_index", "SKA shifted tap: end_mask, begin 2 of a padded map")
def _slice_tap(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 32, 10, 10), dt)
    return (lambda v: mb.slice_by_index(x=v, begin=[0, 0, 2, 1], end=[1, 32, 1, 9],
                                        end_mask=[True, True, True, False])), [x], \
        t(x)[:, :, 2:, 1:9]


@case("slice_by_index", "squeeze_mask (tap select), stride 2, negative bounds")
def _slice_squeeze(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 9, 8, 8), dt)
    return (lambda v: mb.slice_by_index(
        x=v, begin=[0, 0, 3, -7, 0], end=[1, 4, 4, -1, 8], stride=[1, 1, 1, 2, 1],
        begin_mask=[False, False, False, False, True], end_mask=[True, True, False, False, True],
        squeeze_mask=[False, False, True, False, False])), [x], t(x)[:, :, 3, 1:7:2, :]


@case("slice_by_index", "negative stride")
def _slice_reverse(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 7), dt)
    return (lambda v: mb.slice_by_index(x=v, begin=[0, 5], end=[2, 0], stride=[1, -2])), [x], \
        t(x)[:, [5, 3, 1]]


@case("slice_by_size")
def _slice_by_size(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 6, 5, 5), dt)
    return (lambda v: mb.slice_by_size(x=v, begin=[0, 2, 1, 0], size=[1, 3, -1, 4])), [x], \
        t(x)[:, 2:5, 1:, 0:4]


@case("concat", "channels (SKA zeros formulation)")
def _concat(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rand(rng, (1, 4, 8, 8), dt), rand(rng, (1, 2, 8, 8), dt)
    return (lambda a, b: mb.concat(values=[a, b, a], axis=-3)), [x, y], \
        torch.cat([t(x), t(y), t(x)], 1)


@case("concat", "interleave")
def _concat_interleave(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rand(rng, (3, 2), dt), rand(rng, (3, 2), dt)
    return (lambda a, b: mb.concat(values=[a, b], axis=0, interleave=True)), [x, y], \
        torch.stack([t(x), t(y)], 1).reshape(6, 2)


@case("stack")
def _stack(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rand(rng, (2, 3), dt), rand(rng, (2, 3), dt)
    return (lambda a, b: mb.stack(values=[a, b], axis=-1)), [x, y], torch.stack([t(x), t(y)], -1)


@case("split", "qkv split_sizes")
def _split_sizes(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 48, 4), dt)
    return (lambda v: mb.split(x=v, split_sizes=[16, 16, 16], axis=2)), [x], \
        tuple(torch.split(t(x), [16, 16, 16], 2))


@case("split", "num_splits")
def _split_num(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 6, 4), dt)
    return (lambda v: mb.split(x=v, num_splits=3, axis=1)), [x], tuple(torch.split(t(x), 2, 1))


@case("tile")
def _tile(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 3, 2), dt)
    return (lambda v: mb.tile(x=v, reps=[2, 1, 3])), [x], t(x).repeat(2, 1, 3)


@case("reverse")
def _reverse(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 3, 4), dt)
    return (lambda v: mb.reverse(x=v, axes=[0, -1])), [x], torch.flip(t(x), [0, 2])


for _mode in ("constant", "reflect", "replicate"):
    def _make_pad(dt: Any, rng: np.random.Generator, _m: str = _mode) -> Any:
        x = rand(rng, (1, 4, 6, 6), dt)
        kw = {"constant_val": dt(0.5)} if _m == "constant" else {}
        ref = F.pad(t(x), [2, 1, 0, 3], mode=_m, **({"value": 0.5} if _m == "constant" else {}))
        return (lambda v: mb.pad(x=v, pad=[0, 3, 2, 1], mode=_m, **kw)), [x], ref
    case("pad", f"{_mode}, last two axes")(_make_pad)


@case("pad", "SKA zero pad, all four axes")
def _pad_all(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 32, 8, 8), dt)
    return (lambda v: mb.pad(x=v, pad=[0, 0, 0, 0, 1, 1, 1, 1])), [x], F.pad(t(x), [1, 1, 1, 1])


@case("gather", "axis 1, 2-D indices")
def _gather(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 5, 3), dt)
    idx = np.array([[4, 0], [1, 1]], dtype=np.int32)
    return (lambda v: mb.gather(x=v, indices=idx, axis=1)), [x], t(x)[:, torch.from_numpy(idx).long()]


@case("gather", "batch_dims 1")
def _gather_batch(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 5, 3), dt)
    idx = np.array([[4, 0, 2], [1, 1, 3]], dtype=np.int32)
    ref = torch.stack([t(x)[b, torch.from_numpy(idx[b]).long()] for b in range(2)])
    return (lambda v: mb.gather(x=v, indices=idx, axis=1, batch_dims=1)), [x], ref


@case("gather_along_axis")
def _gather_along_axis(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (3, 4), dt)
    idx = rng.integers(0, 3, (2, 4)).astype(np.int32)
    return (lambda v: mb.gather_along_axis(x=v, indices=idx, axis=0)), [x], \
        torch.gather(t(x), 0, torch.from_numpy(idx).long())


@case("select")
def _select(dt: Any, rng: np.random.Generator) -> Any:
    x, y = rand(rng, (2, 4), dt), rand(rng, (1, 4), dt)
    cond = rng.random((2, 4)) > 0.5
    return (lambda a, b: mb.select(cond=cond, a=a, b=b)), [x, y], \
        torch.where(torch.from_numpy(cond), t(x), t(y))


@case("shape", dtypes=(F32,))
def _shape(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 3, 5, 7), dt)
    return (lambda v: mb.shape(x=v)), [x], torch.tensor([1, 3, 5, 7], dtype=torch.int32)


@case("fill", "shape from a tensor", dtypes=(F32,))
def _fill(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (2, 3), dt)
    return (lambda v: mb.fill(shape=mb.shape(x=v), value=dt(1.5))), [x], torch.full((2, 3), 1.5)


@case("range_1d", dtypes=(np.int32,))
def _range_1d(dt: Any, rng: np.random.Generator) -> Any:
    x = np.array(11, dtype=dt).reshape(1)
    return (lambda v: mb.range_1d(start=np.int32(2), end=mb.squeeze(x=v), step=np.int32(3))
            ), [x], torch.arange(2, 11, 3, dtype=torch.int32)


@case("pixel_shuffle")
def _pixel_shuffle(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 8, 3, 3), dt)
    return (lambda v: mb.pixel_shuffle(x=v, upscale_factor=2)), [x], F.pixel_shuffle(t(x), 2)


@case("pixel_unshuffle")
def _pixel_unshuffle(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 2, 6, 4), dt)
    return (lambda v: mb.pixel_unshuffle(x=v, downscale_factor=np.uint32(2))), [x], \
        F.pixel_unshuffle(t(x), 2)


def _dcr(x: torch.Tensor, f: int) -> torch.Tensor:
    """TensorFlow's depth_to_space (DCR) on NCHW, written out."""
    n, c, h, w = x.shape
    y = torch.empty(n, c // (f * f), h * f, w * f)
    for i in range(f):
        for j in range(f):
            y[:, :, i::f, j::f] = x[:, (i * f + j) * (c // (f * f)):(i * f + j + 1) * (c // (f * f))]
    return y


@case("depth_to_space")
def _depth_to_space(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 8, 3, 3), dt)
    return (lambda v: mb.depth_to_space(x=v, block_size=2)), [x], _dcr(t(x), 2)


@case("space_to_depth")
def _space_to_depth(dt: Any, rng: np.random.Generator) -> Any:
    y = rand(rng, (1, 2, 6, 6), dt)
    # the inverse of depth_to_space: find x with _dcr(x) == y
    x = torch.zeros(1, 8, 3, 3)
    for i in range(2):
        for j in range(2):
            x[:, (i * 2 + j) * 2:(i * 2 + j + 1) * 2] = t(y)[:, :, i::2, j::2]
    return (lambda v: mb.space_to_depth(x=v, block_size=2)), [y], x


# ---- constants, compressed weights, quantization ---------------------------------------------

@case("const", "a weight blob feeding mul")
def _const(dt: Any, rng: np.random.Generator) -> Any:
    x, w = rand(rng, (1, 16, 4, 4), dt), rand(rng, (1, 16, 1, 1), dt)
    return (lambda v: mb.mul(x=v, y=w)), [x], t(x) * t(w)


@case("constexpr_affine_dequantize", "int8 per channel, axis 0 (8-bit conv weight)")
def _affine_int8(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 8, 5, 5), dt)
    q = rng.integers(-127, 128, (8, 8, 3, 3)).astype(np.int8)
    scale = rand(rng, (8,), dt, 0.02, low=0.005)
    w = t(q).float() * t(scale).view(8, 1, 1, 1)
    w = w.half().float() if dt is F16 else w

    def build(v: Any) -> Any:
        weight = mb.constexpr_affine_dequantize(quantized_data=q, zero_point=np.zeros(8, np.int8),
                                                scale=scale, axis=0)
        return mb.conv(x=v, weight=weight, pad_type="valid")

    return build, [x], F.conv2d(t(x), w)


@case("constexpr_affine_dequantize", "uint8 with zero point, axis 1")
def _affine_uint8(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (3, 4), dt)
    q = rng.integers(0, 256, (4, 5)).astype(np.uint8)
    zp = rng.integers(100, 156, (5,)).astype(np.uint8)
    scale = rand(rng, (5,), dt, 0.02, low=0.005)
    w = (t(q).float() - t(zp).float().view(1, 5)) * t(scale).view(1, 5)
    w = w.half().float() if dt is F16 else w
    return (lambda v: mb.matmul(x=v, y=mb.constexpr_affine_dequantize(
        quantized_data=q, zero_point=zp, scale=scale, axis=1))), [x], t(x) @ w


@case("constexpr_blockwise_shift_scale", "int8 per channel (iOS 18 8-bit weights)", ios=18)
def _blockwise(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 5, 5), dt)
    q = rng.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8)
    scale = rand(rng, (6, 2, 1, 1), dt, 0.02, low=0.005)  # blocks of 2 input channels
    offset = rng.integers(-3, 4, (6, 2, 1, 1)).astype(np.int8)
    w = (t(q).float() - t(offset).float().repeat_interleave(2, 1)) * t(
        scale).repeat_interleave(2, 1)
    w = w.half().float() if dt is F16 else w

    def build(v: Any) -> Any:
        weight = mb.constexpr_blockwise_shift_scale(data=q, scale=scale, offset=offset)
        return mb.conv(x=v, weight=weight, pad_type="valid")

    return build, [x], F.conv2d(t(x), w)


@case("constexpr_cast", "fp16 weight -> fp32", dtypes=(F32,))
def _constexpr_cast(dt: Any, rng: np.random.Generator) -> Any:
    x, w = rand(rng, (2, 8), dt), rand(rng, (2, 8), F16)

    def build(v: Any) -> Any:
        return mb.add(x=v, y=mb.constexpr_cast(source_val=w, output_dtype="fp32"))

    return build, [x], t(x) + t(w)


def _quant_ref(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, lo: int, hi: int
               ) -> torch.Tensor:
    return torch.clamp(torch.round(x / scale) + zp, lo, hi)


@case("quantize", "int8 per tensor (W8A8 activation)")
def _quantize_int8(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 16, 8, 8), dt, 3.0)
    s = dt(0.0213)
    ref = _quant_ref(t(x), t(np.asarray(s)), torch.tensor(0.0), -128, 127).to(torch.int8)
    return (lambda v: mb.quantize(input=v, scale=s, output_dtype="int8")), [x], ref


@case("quantize", "uint8 per channel with zero point")
def _quantize_uint8(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 3, 3), dt, 3.0)
    s = rand(rng, (4,), dt, 0.05, low=0.01)
    zp = np.array([0, 10, 128, 250], dtype=np.uint8)
    ref = _quant_ref(t(x), t(s).view(1, 4, 1, 1), t(zp).float().view(1, 4, 1, 1), 0, 255)
    return (lambda v: mb.quantize(input=v, scale=s, zero_point=zp, axis=1, output_dtype="uint8")
            ), [x], ref.to(torch.uint8)


@case("dequantize", "quantize -> dequantize pair (W8A8)")
def _dequantize(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 16, 8, 8), dt, 3.0)
    s1, s2 = dt(0.0213), dt(0.0511)
    q = _quant_ref(t(x), t(np.asarray(s1)), torch.tensor(0.0), -128, 127)

    def build(v: Any) -> Any:
        return mb.dequantize(input=mb.quantize(input=v, scale=s1, output_dtype="int8"), scale=s2)

    return build, [x], q * t(np.asarray(s2))


@case("dequantize", "uint8 per channel with zero point")
def _dequantize_channel(dt: Any, rng: np.random.Generator) -> Any:
    x = rand(rng, (1, 4, 3, 3), dt, 3.0)
    s = rand(rng, (4,), dt, 0.05, low=0.01)
    zp = np.array([0, 10, 128, 250], dtype=np.uint8)
    q = _quant_ref(t(x), t(s).view(1, 4, 1, 1), t(zp).float().view(1, 4, 1, 1), 0, 255)

    def build(v: Any) -> Any:
        quantized = mb.quantize(input=v, scale=s, zero_point=zp, axis=1, output_dtype="uint8")
        return mb.dequantize(input=quantized, scale=s, zero_point=zp, axis=1)

    return build, [x], (q - t(zp).float().view(1, 4, 1, 1)) * t(s).view(1, 4, 1, 1)


# ---- the tests -------------------------------------------------------------------------------

PARAMS = [pytest.param(c, np.dtype(dt).name, id=f"{c.op}-{c.label}-{np.dtype(dt).name}")
          for c in CASES for dt in c.dtypes]


def _close(got: np.ndarray, ref: torch.Tensor, dtype: str, where: str) -> None:
    assert got.shape == tuple(ref.shape), f"{where}: shape {got.shape} vs {tuple(ref.shape)}"
    r = ref.detach()
    if not r.is_floating_point():
        np.testing.assert_array_equal(got, r.numpy().astype(got.dtype), err_msg=where)
        return
    r64 = r.double().numpy()
    if dtype == "float16":
        expected = r.half().double().numpy()  # the PyTorch result stored as fp16
        tol = np.abs(expected) * 2.0**-10 + 1e-5 * max(1.0, float(np.abs(r64).max()))  # 1 ulp
        bad = np.abs(got.astype(np.float64) - expected) > tol
        assert not bad.any(), (f"{where}: max diff {np.abs(got - expected).max():.3g} "
                               f"at {np.argwhere(bad)[:3].tolist()}")
    else:
        np.testing.assert_allclose(got.astype(np.float64), r64, rtol=2e-5,
                                   atol=2e-5 * max(1.0, float(np.abs(r64).max())), err_msg=where)


@pytest.mark.parametrize(("c", "dtype"), PARAMS)
def test_op_matches_pytorch(c: Case, dtype: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{c.op} {c.label} {dtype}".encode()))
    build, inputs, ref = c.make(np.dtype(dtype).type, rng)
    outputs, ops = run_program(build, inputs, tmp_path, ios=c.ios)
    assert c.op in ops, f"the program holds {ops}, not {c.op}"  # no folding behind our back
    refs = ref if isinstance(ref, tuple) else (ref,)
    assert len(outputs) == len(refs)
    for got, r in zip(outputs, refs, strict=True):
        if dtype == "float16" and np.asarray(got).dtype.kind == "f":
            assert np.array_equal(np.asarray(got), np.asarray(got).astype(np.float16)), \
                "fp16 results must be fp16 values"
        _close(np.asarray(got), r, dtype if r.is_floating_point() else "exact", c.label)


def test_classify_op(tmp_path: Path) -> None:
    """``classify``: the label of the highest probability and the label -> probability map."""
    labels = ["cat", "dog", "crane (bird)", "crane (machine)"]
    probs = np.array([[0.1, 0.2, 0.6, 0.1]], dtype=np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4), dtype=types.fp32)],
                opset_version=ct.target.iOS17)
    def prog(x):  # type: ignore[no-untyped-def]
        return mb.softmax(x=x, axis=-1)

    spec = serialize(prog, str(tmp_path), specification_version=8,
                     classifier_config=ct.ClassifierConfig(labels))
    program = load_program(spec, BlobStore(tmp_path))
    assert "classify" in program.op_histogram()
    out = Executor(program).run({"x": np.log(probs)})
    [label, table] = [out[n] for n in program.outputs]
    assert label == "crane (bird)"
    assert list(table) == labels
    assert np.allclose([table[k] for k in labels], probs[0], atol=1e-6)


def test_every_kernel_has_a_test() -> None:
    tested = {c.op for c in CASES} | {"classify"}
    assert sorted(set(OPS) - tested) == []


def test_an_unknown_op_is_an_error_naming_it(tmp_path: Path) -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 4, 4), dtype=types.fp32)],
                opset_version=ct.target.iOS17)
    def prog(x):  # type: ignore[no-untyped-def]
        return mb.relu(x=mb.upsample_nearest_neighbor(x=x, scale_factor_height=2,
                                                      scale_factor_width=2))

    spec = serialize(prog, str(tmp_path), specification_version=8)
    with pytest.raises(UnsupportedMilOpError, match="'upsample_nearest_neighbor'") as info:
        Executor(load_program(spec, BlobStore(tmp_path)))
    assert info.value.op_type == "upsample_nearest_neighbor"
