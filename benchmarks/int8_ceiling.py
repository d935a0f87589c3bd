"""Report: the best fidelity any per-tensor 8-bit calibration can reach on LSNet (an oracle).

Usage (from the repository root)::

    .venv/bin/python benchmarks/int8_ceiling.py [--variants lsnet_t]
        [--families random random-outliers] [--img-size 224] [--out FILE.md]

Issue 13 asks for full-integer INT8 at a mean logit cosine >= 0.99. This script asks whether
*any* choice of per-tensor activation ranges can get there, by simulating the quantization in
PyTorch (fake quantization: quantize, round, dequantize) on the model the exporters quantize
(fused, then channel-equalized: :func:`lsnet_deploy.quantize.prepare.prepare_for_int8`):

* **where**: the op outputs ONNX Runtime's QDQ quantizer requantizes (convolutions, with
  Conv + Relu fused, linear layers, adds, multiplies, activations, normalizations, pooling,
  softmax, matmuls; :data:`QUANTIZED`), and the input; value-preserving ops (reshape, slice,
  pad, concat, ...) are not requantized. A :class:`torch.overrides.TorchFunctionMode` sees
  every call, so SKA's nine products and eight partial sums are each requantized, as in the
  exported graph. Not modelled: ops PyTorch runs as one and ONNX as several (the GroupNorm is
  nine ONNX ops, each requantized), so the simulation has fewer rounding points than the
  artifact;
* **weights**: per-output-channel symmetric int8 (max-abs scale), biases in float (int32 in
  the artifacts);
* **activations**: asymmetric uint8, one range per tensor, chosen by a policy:

  - ``static min/max``: ranges from the calibration photos, as every exporter ships. The first
    row of each family is the real thing, ONNX Runtime's INT8 ``.onnx`` of the same model
    quantized as ``export --int8`` does: the two rows agreeing is what makes the simulation,
    and so the oracle rows, stand for the artifact;
  - ``oracle min/max``: each held-out photo's own range for every tensor (never clipped, never
    wider than needed): no static range can be tighter without clipping that photo;
  - ``oracle best clip``: for each photo and tensor, the clipped range (of 16 candidates from
    the full range down to 5% of it) with the least squared error on that tensor: the best a
    per-tensor range can do locally, calibration-free;
  - the oracle rows again with float weights (activations alone), and with one range per
    *channel* (what ONNX Runtime's static QDQ cannot express: the granularity's share).

The oracle rows show what static per-tensor 8-bit calibration of this graph (MinMax,
percentile, entropy, MSE, moving average, or any library's) could hope for: a static range is
the same for every photo, and these give each photo, tensor by tensor, its own range or its
least-error clip. That is not a strict bound (the least error on each tensor is not always the
best for the logits: "best clip" sometimes scores below "min/max"), but when neither gets
near 0.99, what is left is more bits (int16, TFLite 16x8), fewer quantization points (kept in
float), or training (QAT). No timing; CPU only, a few minutes per variant.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import lsnet_deploy
from lsnet_deploy.exporters import get_exporter
from lsnet_deploy.exporters.base import ExportOptions
from lsnet_deploy.exporters.inputs import calibration_inputs
from lsnet_deploy.exporters.onnx import prepare_int8
from lsnet_deploy.fidelity import compare_logits, run_artifact
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.quantize.onnx_int8 import Int8Config, quantize_int8
from lsnet_deploy.quantize.prepare import prepare_for_int8
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.spec import IOSpec

if str(Path(__file__).resolve().parent) not in sys.path:  # _common, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    add_families,
    base_parser,
    machine,
    markdown_table,
    measuring,
    progress,
    weight_families,
    weights_for,
    write_markdown,
)

COLUMNS = ["variant", "weights", "int8 weights", "activation ranges", "granularity", "mean cos",
           "min cos", "top-1 agree"]

QUANTIZED = frozenset({
    "conv2d", "linear", "add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__",
    "mul", "__mul__", "__rmul__", "__imul__", "div", "__truediv__", "__rtruediv__", "matmul",
    "__matmul__", "bmm", "softmax", "sigmoid", "hardsigmoid", "relu", "relu_", "hardswish",
    "gelu", "silu", "tanh", "group_norm", "batch_norm", "layer_norm", "adaptive_avg_pool2d",
    "avg_pool2d", "mean", "sum", "sqrt", "rsqrt", "pow", "exp",
})
"""Names of the torch functions whose float outputs are requantized (``func.__name__``)."""

ARTIFACT = "ONNX Runtime's INT8 .onnx (the export, not simulated)"
"""The label of the row measured on the real artifact, to check the simulation against."""

NOT_READERS = frozenset({"__get__", "dim", "size", "numel", "is_floating_point"})
"""Calls that read a tensor's metadata, not its values (``x.shape`` is ``__get__``)."""

CLIPS = np.linspace(1.0, 0.05, 16)
"""Candidate clipped ranges of ``oracle best clip``, as fractions of the full range."""

Policy = Callable[[int, torch.Tensor], torch.Tensor]
"""``(call index, tensor) -> fake-quantized tensor``: one forward pass's activation rule."""


def _fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Asymmetric uint8 quantize-dequantize of ``x`` in ``[lo, hi]`` (broadcastable), the range
    widened to hold 0 as ONNX Runtime's calibration does."""
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = torch.clamp((hi - lo) / 255.0, min=1e-12)
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(x / scale) + zero, 0, 255)
    return (q - zero) * scale


def _channel_range(x: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The min and max of ``x``, whole (scalars) or per channel (broadcastable)."""
    if not per_channel or x.dim() < 3:
        return x.min(), x.max()
    keep = (1, 2) if x.dim() == 5 else (1,)  # SKA's (B, C // G, G, H, W): a channel is (r, g)
    dims = [d for d in range(x.dim()) if d not in keep]
    return x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)


def _best_clip(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """The candidate clip of ``[lo, hi]`` whose fake quantization of ``x`` errs least."""
    best, err = x, None
    for f in CLIPS:
        q = _fake_quant(x, lo * float(f), hi * float(f))
        e = float(((q - x) ** 2).sum())
        if err is None or e < err:
            best, err = q, e
    return best


class _Quantize(TorchFunctionMode):
    """Apply ``policy`` to the float output of every call named in :data:`QUANTIZED`.

    A convolution's output is quantized when something reads it, and not at all when a ReLU
    reads it: ONNX Runtime fuses Conv + Relu and quantizes only the ReLU's output (its range
    then starts at 0, twice as fine)."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy
        self.calls = 0
        # by id(); every tensor named here stays referenced for the whole pass, so no new
        # tensor can take its id
        self.pending: dict[int, torch.Tensor] = {}
        self.settled: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # (read, quantized)
        self.relu_read: dict[int, torch.Tensor] = {}

    def _quantize(self, out: torch.Tensor) -> torch.Tensor:
        out = self.policy(self.calls, out)
        self.calls += 1
        return out

    def _settle(self, arg: object, name: str) -> object:
        if not isinstance(arg, torch.Tensor) or name in NOT_READERS:
            return arg
        if id(arg) in self.settled:  # a second reader: the same quantized tensor
            return self.settled[id(arg)][1]
        relu = name in ("relu", "relu_")
        if id(arg) in self.pending and relu:  # fused: only the ReLU's output is quantized
            self.relu_read[id(arg)] = self.pending.pop(id(arg))
            return arg
        if id(arg) in self.pending or (id(arg) in self.relu_read and not relu):
            # a conv output that another op reads too is not fused: it is quantized (the ReLU
            # that read it first got it unquantized, a small optimism of the simulation)
            source = self.pending if id(arg) in self.pending else self.relu_read
            read = source.pop(id(arg))
            self.settled[id(arg)] = (read, self._quantize(arg))
            return self.settled[id(arg)][1]
        return arg

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = getattr(func, "__name__", "")
        args = tuple(self._settle(a, name) for a in args)
        kwargs = {k: self._settle(v, name) for k, v in (kwargs or {}).items()}
        out = func(*args, **kwargs)
        if (name in QUANTIZED and isinstance(out, torch.Tensor) and out.is_floating_point()
                and out.dim() >= 2):
            if name == "conv2d":
                self.pending[id(out)] = out  # quantized by its first reader (not a ReLU)
            else:
                out = self._quantize(out)
        return out


def _run(model: nn.Module, images: torch.Tensor, policy: Policy) -> torch.Tensor:
    """``model`` on each photo alone (batch 1: a per-tensor range is then one photo's), the
    input and every quantized op output passed through ``policy``; returns ``(N, classes)``."""
    rows = []
    with torch.no_grad():
        for image in images:
            x = policy(-1, image[None])
            with _Quantize(policy):
                rows.append(model(x))
    return torch.cat(rows)


def _static_ranges(model: nn.Module, images: torch.Tensor) -> dict[int, tuple[float, float]]:
    """Every quantized tensor's min and max over ``images`` (by call index), as MinMax
    calibration collects them."""
    seen: dict[int, tuple[float, float]] = {}

    def record(i: int, x: torch.Tensor) -> torch.Tensor:
        lo, hi = float(x.min()), float(x.max())
        old = seen.get(i, (lo, hi))
        seen[i] = (min(old[0], lo), max(old[1], hi))
        return x

    _run(model, images, record)
    return seen


def _policies(ranges: dict[int, tuple[float, float]]) -> dict[tuple[str, str], Policy]:
    def static(i: int, x: torch.Tensor) -> torch.Tensor:
        lo, hi = ranges[i]
        return _fake_quant(x, torch.tensor(lo), torch.tensor(hi))

    def oracle(per_channel: bool, clip: bool) -> Policy:
        def policy(i: int, x: torch.Tensor) -> torch.Tensor:
            lo, hi = _channel_range(x, per_channel)
            return _best_clip(x, lo, hi) if clip else _fake_quant(x, lo, hi)
        return policy

    return {
        ("static min/max (calibration photos)", "tensor"): static,
        ("oracle min/max (each photo's own)", "tensor"): oracle(False, False),
        ("oracle best clip (each photo's own)", "tensor"): oracle(False, True),
        ("oracle min/max (each photo's own)", "channel"): oracle(True, False),
    }


def _int8_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose conv and linear weights are per-output-channel symmetric int8
    (fake-quantized in place)."""
    q = copy.deepcopy(model)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = m.weight
                scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127.0
                scale = torch.clamp(scale, min=1e-12)
                w.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
    return q


def _onnx_runtime(model: nn.Module, calib: torch.Tensor, val: torch.Tensor) -> np.ndarray:
    """The logits of ``model`` quantized by ONNX Runtime as ``export --int8`` does (QDQ,
    MinMax on ``calib``), on ``val``: the real artifact beside its simulation."""
    spec = IOSpec(img_size=tuple(val.shape[-2:]))
    with tempfile.TemporaryDirectory(prefix="lsnet-ceiling-") as tmp:
        _, pre, groups = prepare_int8(model, spec, Path(tmp), ExportOptions(precision="int8"))
        out = Path(tmp) / "int8.onnx"
        quantize_int8(pre, out, groups, spec.input_name, calibration_inputs(calib, spec),
                      Int8Config(method="minmax"))
        return run_artifact(get_exporter("onnx").runner(out), val, spec)


def _row(variant: str, weights: str, how: tuple[str, str, str], logits: np.ndarray,
         reference: np.ndarray) -> list[str]:
    report = compare_logits(logits, reference, "int8", "held-out photos", 0.0)
    row = [variant, weights, *how, f"{report.mean_cosine:.4f}", f"{report.min_cosine:.4f}",
           f"{report.top1_agreement:.0%}"]
    progress(row)
    return row


def _rows(variant: str, weights: str, img_size: int) -> list[list[str]]:
    model = lsnet_deploy.create_model(variant, weights, img_size=img_size)
    images = split_images(Preprocess(img_size=model.img_size))
    assert images.calib is not None
    with torch.no_grad():
        reference = model(images.val).numpy()
    prepared = copy.deepcopy(model)
    reparameterize(prepared, None)
    prepare_for_int8(prepared, images.calib)
    shipped = _onnx_runtime(prepared, images.calib, images.val)
    rows = [_row(variant, weights, ("yes", ARTIFACT, "tensor"), shipped, reference)]
    for int8_weights in (True, False):
        net = _int8_weights(prepared) if int8_weights else prepared
        ranges = _static_ranges(net, images.calib)
        for (label, granularity), policy in _policies(ranges).items():
            if not int8_weights and label.startswith("static"):
                continue
            logits = _run(net, images.val, policy).numpy()
            how = ("yes" if int8_weights else "no (float)", label, granularity)
            rows.append(_row(variant, weights, how, logits, reference))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = base_parser(__doc__)
    ap.set_defaults(variants=["lsnet_t"])
    add_families(ap)
    args = ap.parse_args(argv)
    families = weight_families(args)
    rows: list[list[str]] = []
    with measuring():
        for variant in args.variants:
            for weights in families:
                rows += _rows(variant, weights_for(weights, variant), args.img_size)
    caption = (f"Machine: {machine()}; fake quantization in PyTorch of the fused, channel-"
               "equalized model (the op outputs ONNX Runtime requantizes, GroupNorm as one op; "
               "asymmetric uint8); cosine vs the unfused PyTorch model on the held-out photos.")
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
