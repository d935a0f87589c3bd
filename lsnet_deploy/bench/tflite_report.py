"""Report: TFLite graph quality, fidelity, size and LiteRT latency of fp32 / fp16 / INT8.

Usage::

    python -m lsnet_deploy.bench.tflite_report [--variants lsnet_t lsnet_s lsnet_b]
        [--weights random|official|DIR] [--auto-variants lsnet_t] [--runs 100] [--out FILE.md]

For every variant:

* ``fp32, canonical fused graph``: the fused model converted as it is (before the
  channels-last rewrite, :mod:`lsnet_deploy.channels_last`): the "before" row;
* ``fp32``, ``fp16``, ``int8`` (full integer, gate reported but not enforced) and, for the
  ``--auto-variants``, ``int8 auto@0.98`` (``--int8-exclude auto``), exported through the
  normal pipeline (NHWC input, batch 1) and validated on the held-out calibration photos.

Latency: LiteRT interpreter (``ai_edge_litert``) with XNNPACK (its default delegate) at 1 and 2
threads, ``--warmup`` untimed runs then ``--runs`` timed runs, median. Prints a Markdown table
(and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..exporters.tflite import TfliteExporter
from ..exporters.tflite_flatbuffer import op_histogram
from ..pipeline import export
from .harness import time_callable
from .report import emit_table, machine


def _latency(path: Path, runs: int, warmup: int) -> dict[int, float]:
    exp = TfliteExporter()
    x = np.zeros((1, 224, 224, 3), np.float32)
    out = {}
    for threads in (1, 2):
        run = exp.runner(path, threads=threads)
        out[threads] = time_callable(lambda r=run: r(x), runs=runs, warmup=warmup).median_ms
    return out


def _canonical_fp32(variant: str, weights: str, folder: Path) -> tuple[Path, float]:
    """Convert the fused model without the channels-last rewrite; return (path, max|diff|)."""
    import litert_torch

    from ..api import create_model
    from ..exporters.tflite import _require

    _require()
    model = create_model(variant, weights if weights != "random" else None,
                         reparameterize=True)
    module = litert_torch.to_channel_last_io(copy.deepcopy(model), args=[0]).eval()
    x = torch.randn(1, 3, 224, 224)
    path = folder / f"{variant}_canonical_fp32.tflite"
    litert_torch.convert(module, (x.permute(0, 2, 3, 1).contiguous(),)).export(str(path))
    run = TfliteExporter().runner(path)
    with torch.no_grad():
        ref = model(x).numpy()
    return path, float(np.abs(run(x.permute(0, 2, 3, 1).contiguous().numpy()) - ref).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    ap.add_argument("--weights", default="random",
                    help="'random', 'official', or a folder holding <variant>.pth files")
    ap.add_argument("--auto-variants", nargs="*", default=["lsnet_t"],
                    help="variants that also get an --int8-exclude auto row (slow)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows: list[str] = []

    def row(variant: str, label: str, path: Path, v: dict[str, Any] | None, diff: float | None,
            extra: str = "-") -> None:
        hist = op_histogram(path)
        lat = _latency(path, args.runs, args.warmup)
        cos = f"{v['mean_cosine']:.4f}" if v else "-"
        top1 = f"{v['top1_agreement']:.0%}" if v else "-"
        maxdiff = diff if diff is not None else (v["max_abs_diff"] if v else float("nan"))
        rows.append(
            f"| {variant} | {label} | {path.stat().st_size / 1e6:.1f} | "
            f"{hist.get('TRANSPOSE', 0)} | {sum(hist.values())} | {maxdiff:.1e} | {cos} | "
            f"{top1} | {lat[1]:.2f} | {lat[2]:.2f} | {extra} |"
        )
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory(prefix="lsnet-tflite-bench-") as tmp:
        folder = Path(tmp)
        for variant in args.variants:
            weights = args.weights
            if weights not in ("random", "official"):
                weights = str(Path(weights) / f"{variant}.pth")
            path, diff = _canonical_fp32(variant, weights, folder)
            row(variant, "fp32, canonical fused graph (before)", path, None, diff)
            runs: list[tuple[str, dict[str, Any]]] = [
                ("fp32", {"precision": "fp32"}),
                ("fp16", {"precision": "fp16", "min_cosine": 0.0}),
                ("int8 (full integer)", {"precision": "int8", "min_cosine": 0.0}),
            ]
            if variant in args.auto_variants:
                runs.append(("int8 (auto, target 0.98)",
                             {"precision": "int8", "int8_exclude": ["auto"], "min_cosine": 0.98}))
            for label, kw in runs:
                [art] = export(variant, "tflite", weights=weights, output_dir=folder,
                               force=True, **kw)
                excluded = art.export_info.get("int8", {}).get("excluded_groups", [])
                row(variant, label, art.path, art.validation, None,
                    ", ".join(excluded) or "-")
    header = [
        f"Machine: {machine()}; weights: {args.weights}; LiteRT "
        f"interpreter with XNNPACK, NHWC input, batch 1, median of {args.runs} runs after "
        f"{args.warmup} warm-up runs. max|diff| and cosine: logits vs unfused PyTorch on the "
        "held-out calibration photos (canonical row: one random input).",
        "",
        "| variant | artifact | MB | TRANSPOSE ops | ops | max abs diff | mean cos | top-1 agree "
        "| 1 thread ms | 2 threads ms | kept in float |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    emit_table(header, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
