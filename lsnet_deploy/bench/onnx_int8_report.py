"""Report: ONNX Runtime fidelity and latency of fp32, full INT8 and mixed-precision INT8.

Usage::

    python -m lsnet_deploy.bench.onnx_int8_report [--variants lsnet_t lsnet_s lsnet_b]
        [--weights random|official|DIR] [--targets 0.98 0.99] [--runs 50] [--out FILE.md]

For every variant it exports fp32, INT8 and INT8 with ``--int8-exclude auto`` (one per target
mean cosine in ``--targets``) into a temporary folder, validates them on the held-out calibration photos
and times ONNX Runtime CPU at 1 and 2 threads (batch 1, ``--runs`` timed runs after 10 warm-up
runs, median). Prints a Markdown table (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from ..exporters.onnx import OnnxExporter
from ..pipeline import export
from .harness import time_callable
from .report import emit_table, machine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    ap.add_argument("--weights", default="random",
                    help="'random', 'official', or a folder holding <variant>.pth files")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.98, 0.99])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    exp = OnnxExporter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="lsnet-bench-") as tmp:
        for variant in args.variants:
            weights = args.weights
            if weights not in ("random", "official"):
                weights = str(Path(weights) / f"{variant}.pth")
            runs = [
                ("fp32", dict(precision="fp32")),
                ("int8 (full)", dict(precision="int8", min_cosine=0.0)),
            ] + [
                (f"int8 (auto, target {t})",
                 dict(precision="int8", int8_exclude=["auto"], min_cosine=t))
                for t in args.targets
            ]
            for label, kw in runs:
                [art] = export(variant, "onnx", weights=weights, output_dir=Path(tmp),
                               force=True, **kw)  # type: ignore[arg-type]
                x = np.zeros((1, 3, 224, 224), np.float32)
                lat = {}
                for threads in (1, 2):
                    run = exp.runner(art.path, threads=threads)
                    lat[threads] = time_callable(lambda r=run, a=x: r(a), runs=args.runs).median_ms
                v = art.validation
                excluded = art.export_info.get("int8", {}).get("excluded_groups", [])
                rows.append(
                    f"| {variant} | {label} | {art.size_bytes / 1e6:.1f} | {v['mean_cosine']:.4f} "
                    f"| {v['min_cosine']:.4f} | {v['top1_agreement']:.0%} | {lat[1]:.2f} "
                    f"| {lat[2]:.2f} | {', '.join(excluded) or '-'} |"
                )
                print(rows[-1], flush=True)
    header = [
        f"Machine: {machine()}; weights: {args.weights}; ONNX Runtime CPU, "
        f"batch 1, median of {args.runs} runs after 10 warm-up runs.",
        "",
        "| variant | artifact | MB | mean cos | min cos | top-1 agree | 1 thread ms "
        "| 2 threads ms | kept in float |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    emit_table(header, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
