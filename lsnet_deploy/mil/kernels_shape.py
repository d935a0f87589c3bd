"""Shape and data-movement kernels, after the MIL op reference (iOS 15-17
``tensor_transformation``, ``tensor_operation``, ``scatter_gather``, ``control_flow.select``).

Index conventions: negative axes and indices count from the end (Python's rules); a
``slice_by_index`` is ``x[begin:end:stride]`` per axis with ``begin_mask`` / ``end_mask``
replacing the bound by the axis' start / end and ``squeeze_mask`` taking the index ``begin``;
``pad`` pads the *last* ``len(pad) / 2`` axes, its before/after pairs in axis order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ops import OpArgs, axis_of, kernel

__all__: list[str] = []

Tensor = torch.Tensor


@kernel("reshape")
def _reshape(a: OpArgs) -> Tensor:
    """``shape`` entries: positive sizes, one ``-1`` (inferred), ``0`` (keep the input's size
    at that axis, when ``len(shape) == rank(x)``)."""
    x = a.tensor("x")
    shape = a.ints("shape")
    assert shape is not None
    if 0 in shape:
        if len(shape) != x.dim():
            raise a.error(f"shape {shape} has a 0 but not the input's rank {x.dim()}")
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    if shape.count(-1) > 1 or any(s < -1 for s in shape):
        raise a.error(f"invalid shape {shape}")
    known = math.prod(s for s in shape if s != -1)
    if (-1 in shape and (known == 0 or x.numel() % known)) or (
            -1 not in shape and known != x.numel()):
        raise a.error(f"cannot reshape {tuple(x.shape)} to {shape}")
    return x.reshape(shape)


@kernel("transpose")
def _transpose(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    perm = [axis_of(a, p, x.dim()) for p in a.ints("perm") or []]
    if sorted(perm) != list(range(x.dim())):
        raise a.error(f"perm {perm} is not a permutation of {x.dim()} axes")
    return x.permute(perm)


@kernel("squeeze")
def _squeeze(a: OpArgs) -> Tensor:
    """Removes the given (default: all) size-1 axes; axes of another size stay (PyTorch)."""
    x = a.tensor("x")
    axes = a.ints("axes", None)
    chosen = range(x.dim()) if axes is None else {axis_of(a, d, x.dim()) for d in axes}
    return x.reshape([s for d, s in enumerate(x.shape) if not (d in chosen and s == 1)])


@kernel("expand_dims")
def _expand_dims(a: OpArgs) -> Tensor:
    """Inserts size-1 axes at ``axes``, positions in the output (``-rank - 1 <= axis <= rank``
    of the input)."""
    x = a.tensor("x")
    axes = a.ints("axes") or []
    rank = x.dim() + len(axes)
    where = sorted(axis_of(a, d, rank) for d in axes)
    if len(set(where)) != len(where):
        raise a.error(f"repeated axes {axes}")
    shape = list(x.shape)
    for d in where:
        shape.insert(d, 1)
    return x.reshape(shape)


@kernel("flatten2d")
def _flatten2d(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    axis = a.int("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _dim_index(size: int, begin: int | None, end: int | None, stride: int) -> range:
    return range(*slice(begin, end, stride).indices(size))


@kernel("slice_by_index")
def _slice_by_index(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    rank = x.dim()
    begin, end = a.ints("begin") or [], a.ints("end") or []
    stride = a.ints("stride", None) or [1] * rank
    begin_mask, end_mask = a.bools("begin_mask", rank), a.bools("end_mask", rank)
    squeeze = a.bools("squeeze_mask", rank)
    if not len(begin) == len(end) == len(stride) == rank:
        raise a.error(f"begin/end/stride of lengths {len(begin)}/{len(end)}/{len(stride)} "
                      f"for rank {rank}")
    keep = []
    for d in range(rank):
        size = x.shape[d]
        if squeeze[d]:
            i = begin[d] + size if begin[d] < 0 else begin[d]
            if not 0 <= i < size:
                raise a.error(f"index {begin[d]} out of range for axis {d} of size {size}")
            x = x.narrow(d, i, 1)
            continue
        keep.append(d)
        if stride[d] == 0:
            raise a.error("stride 0")
        idx = _dim_index(size, None if begin_mask[d] else begin[d],
                         None if end_mask[d] else end[d], stride[d])
        if stride[d] == 1:
            x = x.narrow(d, idx.start, len(idx)) if len(idx) else x.narrow(d, 0, 0)
        else:
            x = x.index_select(d, torch.tensor(list(idx), dtype=torch.long))
    return x.reshape([x.shape[d] for d in keep])


@kernel("slice_by_size")
def _slice_by_size(a: OpArgs) -> Tensor:
    """``x[begin : begin + size]`` per axis (``size == -1``: to the end)."""
    x = a.tensor("x")
    begin, size = a.ints("begin") or [], a.ints("size") or []
    if not len(begin) == len(size) == x.dim():
        raise a.error(f"begin/size of lengths {len(begin)}/{len(size)} for rank {x.dim()}")
    for d, (b, s) in enumerate(zip(begin, size, strict=True)):
        b = b + x.shape[d] if b < 0 else b
        s = x.shape[d] - b if s == -1 else s
        if b < 0 or s < 0 or b + s > x.shape[d]:
            raise a.error(f"slice [{b}, {b + s}) out of range for axis {d} of size {x.shape[d]}")
        x = x.narrow(d, b, s)
    return x


@kernel("concat")
def _concat(a: OpArgs) -> Tensor:
    """Along ``axis``; ``interleave``: the inputs' slices alternate along the axis."""
    values = a.tensors("values")
    axis = axis_of(a, a.int("axis"), values[0].dim())
    if a.bool("interleave", False):
        stacked = torch.stack(values, dim=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return torch.cat(values, dim=axis)


@kernel("stack")
def _stack(a: OpArgs) -> Tensor:
    values = a.tensors("values")
    return torch.stack(values, dim=axis_of(a, a.int("axis"), values[0].dim() + 1))


@kernel("split")
def _split(a: OpArgs) -> tuple[Tensor, ...]:
    """Into ``split_sizes``, or ``num_splits`` equal parts, along ``axis``."""
    x = a.tensor("x")
    axis = axis_of(a, a.int("axis"), x.dim())
    sizes = a.ints("split_sizes", None)
    if sizes is None:
        parts = a.int("num_splits", len(a.op.outputs))
        if parts <= 0 or x.shape[axis] % parts:
            raise a.error(f"cannot split axis of size {x.shape[axis]} into {parts} equal parts")
        sizes = [x.shape[axis] // parts] * parts
    if sum(sizes) != x.shape[axis]:
        raise a.error(f"split sizes {sizes} do not add up to {x.shape[axis]}")
    return tuple(torch.split(x, sizes, dim=axis))


@kernel("tile")
def _tile(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    reps = a.ints("reps") or []
    if len(reps) != x.dim():
        raise a.error(f"reps {reps} for rank {x.dim()}")
    return x.repeat(reps)


@kernel("reverse")
def _reverse(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    axes = a.ints("axes", None)
    dims = list(range(x.dim())) if axes is None else [axis_of(a, d, x.dim()) for d in axes]
    return torch.flip(x, dims)


def _pad_index(size: int, before: int, after: int, mode: str) -> Tensor:
    """Source indices of a padded axis (``reflect``: mirror without the edge; ``replicate``:
    the edge repeated)."""
    i = torch.arange(-before, size + after)
    if mode == "replicate":
        return i.clamp(0, size - 1)
    period = 2 * (size - 1)
    i = torch.remainder(i, period) if period else torch.zeros_like(i)
    return torch.where(i >= size, period - i, i)


@kernel("pad")
def _pad(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    pad = a.ints("pad") or []
    mode = a.str("mode", "constant")
    n = len(pad) // 2
    if len(pad) % 2 or n > x.dim() or min(pad, default=0) < 0:
        raise a.error(f"pad {pad} for rank {x.dim()}")
    first = x.dim() - n
    if mode == "constant":
        flat = [p for i in reversed(range(n)) for p in pad[2 * i : 2 * i + 2]]
        return F.pad(x, flat, value=a.float("constant_val", 0.0))
    if mode not in ("reflect", "replicate"):
        raise a.error(f"unknown pad mode {mode!r}")
    for i in range(n):
        d, before, after = first + i, pad[2 * i], pad[2 * i + 1]
        limit = x.shape[d] - (1 if mode == "reflect" else 0)
        if before > limit or after > limit:
            raise a.error(f"{mode} pad of {before}/{after} on an axis of size {x.shape[d]}")
        x = x.index_select(d, _pad_index(x.shape[d], before, after, mode))
    return x


def _indices(a: OpArgs, size: int) -> Tensor:
    idx = a.tensor("indices").to(torch.long)
    idx = torch.where(idx < 0, idx + size, idx)
    if idx.numel() and (idx.min() < 0 or idx.max() >= size):
        raise a.error(f"gather index out of range for an axis of size {size}")
    return idx


@kernel("gather")
def _gather(a: OpArgs) -> Tensor:
    """``x`` indexed along ``axis`` by ``indices``: output shape ``D[:axis] +
    N[batch_dims:] + D[axis+1:]``."""
    x = a.tensor("x")
    axis = axis_of(a, a.int("axis", 0), x.dim())
    batch = a.int("batch_dims", 0)
    idx = _indices(a, x.shape[axis])
    if batch == 0:
        out = x.index_select(axis, idx.reshape(-1))
        return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])
    if batch > axis or tuple(idx.shape[:batch]) != tuple(x.shape[:batch]):
        raise a.error(f"batch_dims {batch} for input {tuple(x.shape)} and indices "
                      f"{tuple(idx.shape)}")
    xs, ids = x.reshape(-1, *x.shape[batch:]), idx.reshape(-1, *idx.shape[batch:])
    rows = [xi.index_select(axis - batch, ii.reshape(-1)).reshape(
        *xi.shape[: axis - batch], *ii.shape, *xi.shape[axis - batch + 1:])
        for xi, ii in zip(xs, ids, strict=True)]
    return torch.stack(rows).reshape(*x.shape[:batch], *rows[0].shape)


@kernel("gather_along_axis")
def _gather_along_axis(a: OpArgs) -> Tensor:
    x = a.tensor("x")
    axis = axis_of(a, a.int("axis", 0), x.dim())
    return torch.gather(x, axis, _indices(a, x.shape[axis]))


@kernel("select")
def _select(a: OpArgs) -> Tensor:
    """``a`` where ``cond`` else ``b``, broadcast."""
    cond, x, y = a.tensor("cond"), a.tensor("a"), a.tensor("b")
    return torch.where(cond.to(torch.bool), x, y)


@kernel("shape")
def _shape(a: OpArgs) -> Tensor:
    return torch.tensor(list(a.tensor("x").shape), dtype=torch.int32)


@kernel("fill")
def _fill(a: OpArgs) -> Tensor:
    value = a.tensor("value", None)
    if value is None:
        return torch.zeros(a.ints("shape") or [])
    return torch.full(a.ints("shape") or [], value.reshape(()).item(), dtype=value.dtype)


@kernel("range_1d")
def _range_1d(a: OpArgs) -> Tensor:
    start, end, step = a.tensor("start"), a.tensor("end"), a.tensor("step")
    return torch.arange(start.item(), end.item(), step.item(),
                        dtype=torch.float32 if start.is_floating_point() else torch.int32)


@kernel("pixel_shuffle", "depth_to_space")
def _to_space(a: OpArgs) -> Tensor:
    """``[n, C f^2, H, W] -> [n, C, H f, W f]``: ``pixel_shuffle`` as PyTorch (channel
    ``c f^2 + i f + j``), ``depth_to_space`` as TensorFlow's DCR (channel ``(i f + j) C + c``)."""
    x = a.tensor("x")
    f = a.int("upscale_factor" if a.op.type == "pixel_shuffle" else "block_size")
    n, c, h, w = x.shape
    if c % (f * f):
        raise a.error(f"{c} channels are not divisible by {f}^2")
    if a.op.type == "pixel_shuffle":
        y = x.reshape(n, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
    else:
        y = x.reshape(n, f, f, c // (f * f), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (f * f), h * f, w * f)


@kernel("pixel_unshuffle", "space_to_depth")
def _to_depth(a: OpArgs) -> Tensor:
    """The inverses of ``pixel_shuffle`` and ``depth_to_space``."""
    x = a.tensor("x")
    f = a.int("downscale_factor" if a.op.type == "pixel_unshuffle" else "block_size")
    n, c, h, w = x.shape
    if h % f or w % f:
        raise a.error(f"spatial size {h}x{w} is not divisible by {f}")
    y = x.reshape(n, c, h // f, f, w // f, f)
    y = y.permute(0, 1, 3, 5, 2, 4) if a.op.type == "pixel_unshuffle" else y.permute(
        0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * f * f, h // f, w // f)
