"""Network kernels: ``conv``, ``linear``, ``matmul``, the normalizations (``batch_norm``,
``instance_norm``, ``layer_norm``) and pooling (``avg_pool``, ``max_pool``, ``l2_pool``),
after the MIL op reference (iOS 15 / 17 ``conv``, ``linear``, ``normalization``, ``pool``).

Padding is the executor's own: ``pad_type`` ``valid`` / ``custom`` (``pad`` = before/after
pairs per spatial axis, in axis order) / ``same`` (``d_out = ceil(d_in / stride)``, the odd
pad after) / ``same_lower`` (the odd pad before) is applied explicitly with zeros, then
PyTorch's convolution runs unpadded as the arithmetic kernel (float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ops import OpArgs, axis_of, kernel

__all__ = ["spatial_padding"]

Tensor = torch.Tensor
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def spatial_padding(a: OpArgs, sizes: list[int], kernel_sizes: list[int], strides: list[int],
                    dilations: list[int]) -> list[int]:
    """``[before_0, after_0, before_1, after_1, ...]`` for ``pad_type`` of op ``a``."""
    n = len(sizes)
    pad_type = a.str("pad_type", "valid")
    if pad_type == "valid":
        return [0] * (2 * n)
    if pad_type == "custom":
        pad = a.ints("pad", [0] * (2 * n))
        if pad is None or len(pad) != 2 * n or min(pad) < 0:
            raise a.error(f"custom pad {pad} for {n} spatial axes")
        return pad
    if pad_type not in ("same", "same_lower"):
        raise a.error(f"unknown pad_type {pad_type!r}")
    out = []
    for size, k, s, d in zip(sizes, kernel_sizes, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        out += [small, large] if pad_type == "same" else [large, small]
    return out


def _torch_pad(pad: list[int]) -> list[int]:
    """MIL's axis-ordered before/after pairs -> ``F.pad``'s last-axis-first order."""
    pairs = [pad[i : i + 2] for i in range(0, len(pad), 2)]
    return [p for pair in reversed(pairs) for p in pair]


@kernel("conv")
def _conv(a: OpArgs) -> Tensor:
    x, w = a.tensor("x"), a.tensor("weight")
    n = x.dim() - 2
    if n not in _CONV or w.dim() != x.dim():
        raise a.error(f"conv of input {tuple(x.shape)} with weight {tuple(w.shape)}")
    strides = a.ints("strides", [1] * n) or [1] * n
    dilations = a.ints("dilations", [1] * n) or [1] * n
    groups = a.int("groups", 1)
    if x.shape[1] != w.shape[1] * groups:
        raise a.error(f"{x.shape[1]} input channels, weight {tuple(w.shape)}, groups {groups}")
    pad = spatial_padding(a, list(x.shape[2:]), list(w.shape[2:]), strides, dilations)
    if any(pad):
        x = F.pad(x, _torch_pad(pad))
    bias = a.tensor("bias", None)
    if bias is not None:
        bias = bias.reshape(-1)
    return _CONV[n](x, w, bias, stride=strides, dilation=dilations, groups=groups)


@kernel("linear")
def _linear(a: OpArgs) -> Tensor:
    """``x @ weight.T + bias`` (``weight``: ``[D_out, D_in]``)."""
    x, w = a.tensor("x"), a.tensor("weight")
    if w.dim() != 2 or x.shape[-1] != w.shape[1]:
        raise a.error(f"linear of input {tuple(x.shape)} with weight {tuple(w.shape)}")
    bias = a.tensor("bias", None)
    y = torch.matmul(x, w.t())
    return y if bias is None else y + bias.reshape(-1)


@kernel("matmul")
def _matmul(a: OpArgs) -> Tensor:
    """NumPy ``matmul`` broadcasting; ``transpose_x`` / ``transpose_y`` swap the last two
    axes of a rank >= 2 operand first."""
    x, y = a.tensor("x"), a.tensor("y")
    if a.bool("transpose_x", False) and x.dim() >= 2:
        x = x.transpose(-1, -2)
    if a.bool("transpose_y", False) and y.dim() >= 2:
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


@kernel("batch_norm")
def _batch_norm(a: OpArgs) -> Tensor:
    """``gamma * (x - mean) / sqrt(variance + epsilon) + beta`` per channel (axis 1)."""
    x = a.tensor("x")
    c = x.shape[1]

    def channel(name: str, default: float) -> Tensor:
        p = a.tensor(name, None)
        p = torch.full((c,), default) if p is None else p.reshape(-1)
        if p.numel() != c:
            raise a.error(f"{name!r} has {p.numel()} values for {c} channels")
        return p.reshape(1, c, *([1] * (x.dim() - 2)))

    scale = channel("gamma", 1.0) / torch.sqrt(channel("variance", 1.0) + a.float("epsilon", 1e-5))
    return (x - channel("mean", 0.0)) * scale + channel("beta", 0.0)


def _normalize(x: Tensor, dims: list[int], eps: float) -> Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    d = x - mean
    return d / torch.sqrt((d * d).mean(dim=dims, keepdim=True) + eps)


@kernel("instance_norm")
def _instance_norm(a: OpArgs) -> Tensor:
    """Per sample and channel over the spatial axes (biased variance), then the affine."""
    x = a.tensor("x")
    y = _normalize(x, list(range(2, x.dim())), a.float("epsilon", 1e-5))
    shape = (1, x.shape[1], *([1] * (x.dim() - 2)))
    gamma, beta = a.tensor("gamma", None), a.tensor("beta", None)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)


@kernel("layer_norm")
def _layer_norm(a: OpArgs) -> Tensor:
    """Over ``axes`` (default: all); ``gamma`` / ``beta`` have the shape of those axes."""
    x = a.tensor("x")
    axes = a.ints("axes", None)
    dims = sorted({axis_of(a, d, x.dim()) for d in axes}) if axes else list(range(x.dim()))
    y = _normalize(x, dims, a.float("epsilon", 1e-5))
    shape = [x.shape[d] if d in dims else 1 for d in range(x.dim())]
    gamma, beta = a.tensor("gamma", None), a.tensor("beta", None)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)


def _pool_geometry(a: OpArgs, x: Tensor) -> tuple[list[int], list[int], list[int], list[int]]:
    """Kernel sizes, strides, the explicit padding and the extra end padding of ceil mode."""
    n = x.dim() - 2
    sizes = list(x.shape[2:])
    ks = a.ints("kernel_sizes")
    assert ks is not None
    strides = a.ints("strides", [1] * n) or [1] * n
    pad = spatial_padding(a, sizes, ks, strides, [1] * n)
    extra = [0] * n
    if a.bool("ceil_mode", False):
        for i in range(n):
            span = sizes[i] + pad[2 * i] + pad[2 * i + 1] - ks[i]
            out = math.ceil(span / strides[i]) + 1
            if (out - 1) * strides[i] >= sizes[i] + pad[2 * i] and (pad[2 * i] or pad[2 * i + 1]):
                out -= 1
            extra[i] = max((out - 1) * strides[i] - span, 0)
    return ks, strides, pad, extra


@kernel("avg_pool", "max_pool", "l2_pool")
def _pool(a: OpArgs) -> Tensor:
    """Windows over the explicitly padded input; ``avg_pool`` divides by the window's count
    of input elements plus padding (padding excluded with ``exclude_padding_from_average``),
    the ceil-mode overhang never counts."""
    x = a.tensor("x")
    n = x.dim() - 2
    ks, strides, pad, extra = _pool_geometry(a, x)
    overhang = [0 if i % 2 == 0 else extra[i // 2] for i in range(2 * n)]
    full = _torch_pad([p + o for p, o in zip(pad, overhang, strict=True)])
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    if a.op.type == "max_pool":
        windows = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
        return windows(F.pad(x, full, value=-math.inf), ks, strides)
    if a.op.type == "l2_pool":
        return torch.sqrt(pool(F.pad(x * x, full), ks, strides) * math.prod(ks))
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    if a.bool("exclude_padding_from_average", False):
        counts = F.pad(ones, full)
    else:
        counts = F.pad(F.pad(ones, _torch_pad(pad), value=1.0), _torch_pad(overhang))
    return pool(F.pad(x, full), ks, strides) / pool(counts, ks, strides)
