"""Weight rounding for INT8: every convolution and linear weight moved onto the int8 grid the
backends use, each rounding chosen so the layer's output changes least (GPTQ).

The INT8 backends here quantize a weight per output channel, symmetrically, with the scale
``max|w| / 127`` and the integers ``-127..127``: ONNX Runtime's QDQ (``QInt8``, symmetric),
litert-torch's PT2E quantizer, ai-edge-quantizer's 16x8 and ExecuTorch's XNNPACK quantizer
(not Core ML's W8A8: ``max|w| / 127.5`` on ``-128..127``). Each rounds to the nearest step.
Nearest is the best choice for one weight, not for the layer: the errors of a row add up in
its output. On the synthetic outlier family nearest rounding alone (activations left in
float) brings LSNet-B's worst held-out photo to a logit cosine of 0.93, GPTQ to 0.99
(docs/int8.md, "Weight rounding").

:func:`round_weights` instead chooses the roundings with the layer's inputs in view (GPTQ,
Frantar et al. 2022, from Optimal Brain Quantization): for each layer it collects
``H = E[x x^T]`` of its input columns (a convolution's unfolded patches, per group) on the
calibration photos, then rounds one input column at a time and spreads the error it made over
the columns not yet rounded, in proportion to the inverse Hessian, so the output error
``tr(dW H dW^T)`` stays small. The weights it writes are already on the grid (each row's
largest weight is kept, so each row's scale is what the backend computes from it): the
backend's own nearest rounding then reproduces them exactly, and those formats get the same
weights (not Core ML W8A8, whose grid is ``max|w| / 127.5``).

It is not exact (the float logits move, by about as much as int8 weights move them). Exports
apply it to the copy they quantize (after the channel equalization, where there is one) when
activations are int16, or with ``--gptq``. It rounds every layer, the ones an
``--int8-exclude`` keeps in float included (they then carry int8 weights' error). Each row's
largest weight is held, so the spreading skips it: a little less than optimal, the price of
an unchanged grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExportError

__all__ = ["QMAX", "RoundingReport", "nearest_int8", "round_weights", "weight_layers"]

QMAX = 127
"""Largest int8 weight magnitude: the backends' symmetric weight range is ``-127..127``."""

DAMPING = 0.01
"""Added to the Hessian's diagonal, as a fraction of its mean: keeps the inverse stable where
input columns are (nearly) dependent, as constant padding makes them."""

BATCH = 4
"""Calibration photos per forward pass while the Hessians are collected."""

BLOCK = 128
"""Columns GPTQ rounds one by one before it spreads their errors onto the rest at once."""


@dataclass(frozen=True)
class RoundingReport:
    """What :func:`round_weights` did: ``layers`` rounded, their output error (the sum over
    layers of ``tr(dW H dW^T)``, mean over input positions) with nearest rounding and with
    GPTQ, and the seconds it took."""

    method: str
    layers: int
    output_error_nearest: float
    output_error_rounded: float
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """The layers whose weights the backends quantize to int8: every ``Conv2d`` and
    ``Linear``, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _scale(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale ``max|w| / 127``, shaped to broadcast over ``w``."""
    dims = tuple(range(1, w.dim()))
    return torch.clamp(w.abs().amax(dim=dims, keepdim=True) / QMAX, min=1e-12)


def nearest_int8(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to the nearest step of its per-output-channel symmetric int8 grid (what
    the backends do), as floats of ``w``'s dtype."""
    s = _scale(w)
    return torch.clamp(torch.round(w / s), -QMAX, QMAX) * s


def _columns(layer: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as GEMM columns, per group: ``(groups, positions, K)``, K =
    in_channels / groups * kernel area (a convolution's patches, unfolded)."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])[None]
    u = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                 stride=layer.stride)  # (N, C/g*g*k*k, L)
    n, ck, length = u.shape
    g = layer.groups
    return u.reshape(n, g, ck // g, length).permute(1, 0, 3, 2).reshape(g, n * length, ck // g)


def _hessians(model: nn.Module, layers: list[tuple[str, nn.Conv2d | nn.Linear]],
              images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``E[x x^T]`` of every layer's input columns over ``images`` (float model), per group:
    ``(groups, K, K)`` float64."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(layer: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
            u = _columns(layer, inputs[0])  # type: ignore[arg-type]
            h = torch.bmm(u.transpose(1, 2), u).double()  # float32 per batch, float64 across
            sums[name] = sums[name] + h if name in sums else h
            counts[name] = counts.get(name, 0) + u.shape[1]
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    try:
        with torch.no_grad():
            for i in range(0, len(images), BATCH):
                model(images[i:i + BATCH])
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in sums}


def _gptq(w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``w`` (``(out, ...)``) rounded to its int8 grid column by column, each rounding error
    spread over the columns still to round (GPTQ, in blocks of :data:`BLOCK` columns: the
    spreading within a block column by column, onto the later blocks as one product), for
    input second moments ``h`` (``(groups, K, K)``). Each row's largest weight is rounded as
    it is (never moved by the spreading), so the grid's scale is unchanged. Returns the
    rounded weights, ``w``'s shape and dtype."""
    g, k = h.shape[0], h.shape[1]
    rows = w.double().reshape(g, w.shape[0] // g, k).clone()  # (G, R, K)
    s = _scale(rows.reshape(w.shape[0], k)).reshape(g, -1, 1)  # (G, R, 1)
    h = h.clone()
    diag = torch.diagonal(h, dim1=1, dim2=2)
    dead = diag == 0  # an input column that is always zero: its weights cannot matter
    diag.add_(DAMPING * diag.mean(dim=1, keepdim=True) + dead.double() + 1e-12)
    inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    u = torch.linalg.cholesky(inv, upper=True)  # (G, K, K)
    free = torch.ones_like(rows)  # the row maxima are never moved
    free.scatter_(2, rows.abs().argmax(dim=2, keepdim=True), 0.0)
    out = torch.empty_like(rows)
    for b0 in range(0, k, BLOCK):
        b1 = min(b0 + BLOCK, k)
        block, errs = rows[:, :, b0:b1], torch.empty_like(rows[:, :, b0:b1])
        for i in range(b1 - b0):
            col = block[:, :, i:i + 1]
            q = torch.clamp(torch.round(col / s), -QMAX, QMAX) * s
            out[:, :, b0 + i:b0 + i + 1] = q
            err = (col - q) / u[:, b0 + i, b0 + i].view(g, 1, 1)  # (G, R, 1)
            errs[:, :, i:i + 1] = err
            block[:, :, i + 1:] -= err * u[:, b0 + i:b0 + i + 1, b0 + i + 1:b1] * free[
                :, :, b0 + i + 1:b1]
        if b1 < k:
            rows[:, :, b1:] -= torch.bmm(errs, u[:, b0:b1, b1:]) * free[:, :, b1:]
    return out.reshape(w.shape).to(w.dtype)


def _output_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """``tr(dW H dW^T)``, ``dW = w - q``, per group: the layer's mean squared output change."""
    d = (w.double() - q.double()).reshape(h.shape[0], w.shape[0] // h.shape[0], h.shape[1])
    return float(torch.einsum("grk,gkj,grj->", d, h, d))


def round_weights(model: nn.Module, images: torch.Tensor,
                  say: Callable[[str], None] = lambda _m: None) -> RoundingReport:
    """Round every ``Conv2d`` / ``Linear`` weight of ``model`` (in place) to its per-output-
    channel symmetric int8 grid with GPTQ, for inputs like ``images`` (``(N, 3, H, W)``, the
    model's normalized input; the calibration photos). Biases are kept. Returns the report.

    Raises :class:`~lsnet_deploy.errors.ExportError` for an empty ``images`` or a layer whose
    input moments cannot be factorized.
    """
    if len(images) == 0:
        raise ExportError("GPTQ weight rounding needs calibration photos (--calib DIR)")
    start = time.perf_counter()
    layers = weight_layers(model)
    say(f"rounding weights (GPTQ): {len(layers)} layers")
    hessians = _hessians(model, layers, images)
    nearest = rounded = 0.0
    with torch.no_grad():
        for name, layer in layers:
            if name not in hessians:  # not run by the forward pass: nearest, as the backend
                layer.weight.copy_(nearest_int8(layer.weight))
                continue
            h, w = hessians[name], layer.weight.detach()
            try:
                q = _gptq(w, h)
            except torch.linalg.LinAlgError as e:  # non-finite activations
                raise ExportError(f"GPTQ weight rounding failed at layer {name} (its inputs on "
                                  "the calibration photos are not finite?); --no-gptq exports "
                                  "without it") from e
            nearest += _output_error(w, nearest_int8(w), h)
            rounded += _output_error(w, q, h)
            layer.weight.copy_(q)
    return RoundingReport("gptq", len(layers), nearest, rounded, time.perf_counter() - start)
