"""Report: ONNX Runtime fidelity and latency of fp32, full INT8 and mixed-precision INT8.

Usage (from the repository root)::

    .venv/bin/python benchmarks/onnx_int8_report.py [--variants lsnet_t lsnet_s lsnet_b]
        [--weights random|official|DIR] [--img-size 224] [--targets 0.98 0.99]
        [--runs 50] [--warmup 10] [--out FILE.md]

For every variant it exports fp32, INT8 and INT8 with ``--int8-exclude auto`` (one per target
mean cosine in ``--targets``; none with a bare ``--targets``) into a temporary folder, validates
them on the held-out calibration photos and times ONNX Runtime CPU at 1 and 2 threads (batch 1,
``--warmup`` untimed runs then ``--runs`` timed runs, median). Writes a Markdown table to stdout
(or ``--out``); rows are shown on stderr as they are measured.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import lsnet_deploy
from lsnet_deploy.bench.harness import time_callable
from lsnet_deploy.exporters import get_exporter

if str(Path(__file__).resolve().parent) not in sys.path:  # _common, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    add_timing_options,
    base_parser,
    machine,
    markdown_table,
    measuring,
    progress,
    weights_for,
    write_markdown,
)

COLUMNS = ["variant", "artifact", "MB", "mean cos", "min cos", "top-1 agree", "1 thread ms",
           "2 threads ms", "kept in float"]
THREADS = (1, 2)


def configurations(targets: list[float]) -> list[tuple[str, dict[str, Any]]]:
    """(row label, export keywords) of every artifact of one variant."""
    return [
        ("fp32", {"precision": "fp32"}),
        ("int8 (full)", {"precision": "int8", "min_cosine": 0.0}),
    ] + [
        (f"int8 (auto, target {t})",
         {"precision": "int8", "int8_exclude": ["auto"], "min_cosine": t})
        for t in targets
    ]


def latency(path: Path, img_size: int, runs: int, warmup: int) -> dict[int, float]:
    """Median ONNX Runtime CPU latency (ms) of one NCHW batch-1 call, per thread count."""
    x = np.zeros((1, 3, img_size, img_size), np.float32)
    out = {}
    for threads in THREADS:
        run = get_exporter("onnx").runner(path, threads=threads)
        out[threads] = time_callable(lambda r=run: r(x), runs=runs, warmup=warmup).median_ms
    return out


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__)
    ap.add_argument("--targets", type=float, nargs="*", default=[0.98, 0.99],
                    help="mean-cosine targets of the --int8-exclude auto rows (slow; "
                         "default: %(default)s)")
    add_timing_options(ap, runs=50, warmup=10)
    args = ap.parse_args(argv)
    size = args.img_size
    rows: list[list[str]] = []
    with measuring(), tempfile.TemporaryDirectory(prefix="lsnet-bench-") as tmp:
        for variant in args.variants:
            weights = weights_for(args.weights, variant)
            for label, kw in configurations(args.targets):
                [art] = lsnet_deploy.export(variant, "onnx", weights=weights, img_size=size,
                                            output_dir=Path(tmp), force=True, **kw)
                lat = latency(art.path, size, args.runs, args.warmup)
                v = art.validation
                excluded = art.export_info.get("int8", {}).get("excluded_groups", [])
                rows.append([
                    variant, label, f"{art.size_bytes / 1e6:.1f}", f"{v['mean_cosine']:.4f}",
                    f"{v['min_cosine']:.4f}", f"{v['top1_agreement']:.0%}", f"{lat[1]:.2f}",
                    f"{lat[2]:.2f}", ", ".join(excluded) or "-",
                ])
                progress(rows[-1])
    caption = (
        f"Machine: {machine()}; weights: {args.weights}; ONNX Runtime CPU, batch 1, "
        f"{size}x{size}, median of {args.runs} runs after {args.warmup} warm-up runs."
    )
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
