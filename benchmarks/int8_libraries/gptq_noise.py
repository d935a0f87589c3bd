"""Research run (issue 13, not adopted): GPTQ told about the activations' 8-bit noise.

Usage (from the repository root, in the project's venv)::

    .venv/bin/python benchmarks/int8_libraries/gptq_noise.py OUT_DIR \
        [--model lsnet_t] [--families random random-outliers] [--format onnx]
        [--modes nearest gptq damp=0.03 damp=0.1 damp=0.3 damp=1 noise=1 noise=4]

``quant-report --compare-gptq`` found that GPTQ helps every weighted group of LSNet-T when that
group alone is quantized, but that on the outlier family the whole 8-bit model gets worse with
it (docs/int8.md, "Per group"). GPTQ collects ``H = E[x x^T]`` of each layer's inputs in the
float model; in the 8-bit artifact those inputs carry the upstream layers' activation error.
To first order that error is independent noise of variance ``s^2 / 12`` per element (``s``:
the per-tensor uint8 step of the layer's input, ``(max - min) / 255`` over the calibration
photos), which adds ``s^2 / 12`` to the diagonal of the Hessian the quantized inputs would
give. This is what "sequential GPTQ with quantized inputs" would see, without running the
quantized model; a larger damping is the same idea without the scale.

Every mode is a real ``export(..., precision="int8")`` of the format (full integer, channel
equalized, default calibration), validated on the held-out photos, with (monkeypatched here;
the package is not changed):

* ``nearest``: no GPTQ (what 8-bit exports ship);
* ``gptq``: GPTQ as shipped with ``--gptq`` (damping 1 % of the Hessian's mean diagonal);
* ``damp=X``: GPTQ with a damping of ``X`` times the mean diagonal;
* ``noise=K``: GPTQ with ``K * s^2 / 12`` added to each layer's Hessian diagonal.

It prints one Markdown row per mode: mean / min logit cosine and top-1 agreement against the
unfused PyTorch model, as the export's validation reports them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

import lsnet_deploy
from lsnet_deploy.quantize import rounding

MODES = ["nearest", "gptq", "damp=0.03", "damp=0.1", "damp=0.3", "damp=1", "noise=1", "noise=4"]
SHIPPED_HESSIANS = rounding._hessians
SHIPPED_DAMPING = rounding.DAMPING


def _input_steps(model: nn.Module, layers: list[tuple[str, nn.Module]],
                 images: torch.Tensor) -> dict[str, float]:
    """Per layer, the per-tensor uint8 step ``(max - min) / 255`` of its input over
    ``images`` (the range always holds 0, as ONNX Runtime's and PT2E's do)."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_layer: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
            x = inputs[0]
            low[name] = min(low.get(name, 0.0), float(x.min()))
            high[name] = max(high.get(name, 0.0), float(x.max()))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    try:
        with torch.no_grad():
            for i in range(0, len(images), rounding.BATCH):
                model(images[i:i + rounding.BATCH])
    finally:
        for h in handles:
            h.remove()
    return {n: (high[n] - low[n]) / 255 for n in low}


def _noisy_hessians(k: float) -> Callable[..., dict[str, torch.Tensor]]:
    """:func:`rounding._hessians` with ``k * s^2 / 12`` on each diagonal."""

    def hessians(model: nn.Module, layers: list[tuple[str, nn.Module]],
                 images: torch.Tensor) -> dict[str, torch.Tensor]:
        steps = _input_steps(model, layers, images)
        out = SHIPPED_HESSIANS(model, layers, images)
        for name, h in out.items():
            torch.diagonal(h, dim1=1, dim2=2).add_(k * steps[name] ** 2 / 12)
        return out

    return hessians


def _apply(mode: str) -> bool:
    """Patch :mod:`rounding` for ``mode``; return whether the export runs GPTQ."""
    rounding._hessians = SHIPPED_HESSIANS
    rounding.DAMPING = SHIPPED_DAMPING
    kind, _, value = mode.partition("=")
    if kind == "damp":
        rounding.DAMPING = float(value)
    elif kind == "noise":
        rounding._hessians = _noisy_hessians(float(value))
    elif mode not in ("nearest", "gptq"):
        raise SystemExit(f"unknown mode {mode!r}; known: nearest, gptq, damp=X, noise=K")
    return mode != "nearest"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--model", default="lsnet_t")
    ap.add_argument("--families", nargs="+", default=["random", "random-outliers"])
    ap.add_argument("--format", default="onnx", choices=["onnx", "tflite"])
    ap.add_argument("--modes", nargs="+", default=MODES)
    args = ap.parse_args(argv)
    print("| weights | mode | mean cos | min cos | top-1 agree | seconds |")
    print("|---|---|---|---|---|---|")
    for family in args.families:
        for mode in args.modes:
            gptq = _apply(mode)
            start = time.perf_counter()
            [art] = lsnet_deploy.export(
                args.model, args.format, weights=family, precision="int8", gptq=gptq,
                min_cosine=0.0, force=True,
                output_dir=args.out_dir / f"{family}_{mode.replace('=', '')}")
            v = art.validation
            print(f"| {family} | {mode} | {v['mean_cosine']:.5f} | {v['min_cosine']:.5f} | "
                  f"{v['top1_agreement']:.0%} | {time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
