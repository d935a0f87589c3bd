"""Constants, compressed weights, activation quantization and the classifier, after the MIL op
reference (``const``; iOS 16 ``constexpr_affine_dequantize`` / ``constexpr_cast``; iOS 18
``constexpr_blockwise_shift_scale``; iOS 17 ``quantize`` / ``dequantize``; ``classify``).

* ``constexpr_affine_dequantize`` / ``dequantize``: ``scale * (data - zero_point)``, a scalar or
  a vector along ``axis``;
* ``constexpr_blockwise_shift_scale``: ``scale * (data - offset)`` with the scale (and offset)
  repeated over blocks of ``data.shape / scale.shape``;
* ``quantize``: ``clip(round(x / scale) + zero_point)`` to the int8 / uint8 range, ties to even
  (as ``numpy.around``, which coremltools' own constant folding uses);
* ``classify``: the class label of the highest probability (the first on ties) and the
  label -> probability dictionary.

Arithmetic in float32; the executor rounds the result to the declared fp16 / fp32 type.
"""

from __future__ import annotations

import torch

from .ops import OpArgs, axis_of, kernel

__all__: list[str] = []

Tensor = torch.Tensor
_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
_TYPES = {"int8": torch.int8, "uint8": torch.uint8}


@kernel("const", constexpr=True)
def _const(a: OpArgs) -> object:
    return a.raw("val")


def _along(a: OpArgs, name: str, like: Tensor, axis_param: str = "axis") -> Tensor | None:
    """Parameter ``name`` (scalar, or a vector along ``axis``) broadcastable to ``like``."""
    p = a.tensor(name, None)
    if p is None:
        return None
    p = p.to(torch.float32)
    if p.numel() == 1 and p.dim() <= 1:
        return p.reshape(())
    if p.dim() != 1:
        raise a.error(f"{name!r} must be a scalar or a vector, got shape {tuple(p.shape)}")
    axis = axis_of(a, a.int(axis_param), like.dim())
    if p.numel() != like.shape[axis]:
        raise a.error(f"{name!r} has {p.numel()} values for axis {axis} of size "
                      f"{like.shape[axis]}")
    shape = [1] * like.dim()
    shape[axis] = -1
    return p.reshape(shape)


def _dequantize(a: OpArgs, data_name: str) -> Tensor:
    q = a.tensor(data_name)
    scale = _along(a, "scale", q)
    zero = _along(a, "zero_point", q)
    assert scale is not None
    x = q.to(torch.float32)
    return (x if zero is None else x - zero) * scale


@kernel("constexpr_affine_dequantize", constexpr=True)
def _constexpr_affine_dequantize(a: OpArgs) -> Tensor:
    return _dequantize(a, "quantized_data")


@kernel("dequantize")
def _dequantize_op(a: OpArgs) -> Tensor:
    return _dequantize(a, "input")


@kernel("quantize")
def _quantize(a: OpArgs) -> Tensor:
    x = a.tensor("input")
    dtype = a.str("output_dtype")
    if dtype not in _RANGES:
        raise a.error(f"quantize to {dtype!r}: only int8 and uint8")
    scale = _along(a, "scale", x)
    zero = _along(a, "zero_point", x)
    assert scale is not None
    if bool((scale == 0).any()):
        raise a.error("scale 0")
    q = torch.round(x / scale)
    if zero is not None:
        q = q + zero
    low, high = _RANGES[dtype]
    return torch.clamp(q, low, high).to(_TYPES[dtype])


def _blocks(a: OpArgs, name: str, data: Tensor) -> Tensor | None:
    """Per-block parameter ``name`` repeated to the shape of ``data``."""
    p = a.tensor(name, None)
    if p is None:
        return None
    if p.dim() != data.dim():
        raise a.error(f"{name!r} of rank {p.dim()} for data of rank {data.dim()}")
    p = p.to(torch.float32)
    for d in range(data.dim()):
        if p.shape[d] == 0 or data.shape[d] % p.shape[d]:
            raise a.error(f"{name!r} shape {tuple(p.shape)} does not tile data shape "
                          f"{tuple(data.shape)}")
        p = p.repeat_interleave(data.shape[d] // p.shape[d], dim=d)
    return p


@kernel("constexpr_blockwise_shift_scale", constexpr=True)
def _constexpr_blockwise_shift_scale(a: OpArgs) -> Tensor:
    data = a.tensor("data")
    scale = _blocks(a, "scale", data)
    offset = _blocks(a, "offset", data)
    assert scale is not None
    x = data.to(torch.float32)
    return (x if offset is None else x - offset) * scale


@kernel("constexpr_cast", constexpr=True)
def _constexpr_cast(a: OpArgs) -> Tensor:
    if a.str("output_dtype") not in ("fp16", "fp32"):
        raise a.error("constexpr_cast to a non-float type")
    return a.tensor("source_val").to(torch.float32)


@kernel("classify")
def _classify(a: OpArgs) -> tuple[object, dict[object, float]]:
    probs = a.tensor("probabilities")
    classes = a.raw("classes")
    if isinstance(classes, torch.Tensor):
        classes = classes.reshape(-1).tolist()
    classes = [c.item() if isinstance(c, torch.Tensor) else c for c in classes]
    if probs.dim() == 0 or probs.numel() != probs.shape[-1]:
        raise a.error(f"probabilities of shape {tuple(probs.shape)}: one row expected")
    p = probs.reshape(-1).to(torch.float64)
    if len(classes) != p.numel():
        raise a.error(f"{len(classes)} class labels for {p.numel()} probabilities")
    if len(set(classes)) != len(classes):
        raise a.error("repeated class labels")
    best = int(torch.argmax(p))
    return classes[best], {c: float(v) for c, v in zip(classes, p.tolist(), strict=True)}
