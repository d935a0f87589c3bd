"""Report: TFLite graph quality, fidelity, size and LiteRT latency of fp32 / fp16 / INT8.

Usage (from the repository root)::

    .venv/bin/python benchmarks/tflite_report.py [--variants lsnet_t lsnet_s lsnet_b]
        [--weights random|official|DIR] [--img-size 224] [--precisions fp32 fp16 int8]
        [--auto-variants lsnet_t] [--runs 100] [--warmup 20] [--out FILE.md]

For every variant:

* ``fp32, canonical fused graph``: the fused model converted as it is (before the
  channels-last rewrite, ``lsnet_deploy/channels_last.py``): the "before" row;
* ``fp32``, ``fp16``, ``int8`` (full integer, gate reported but not enforced; ``--precisions``
  picks among them) and, for the ``--auto-variants``, ``int8 auto@0.98``
  (``--int8-exclude auto``), exported through the normal pipeline (NHWC input, batch 1) and
  validated on the held-out calibration photos.

Latency: LiteRT interpreter (``ai_edge_litert``) with XNNPACK (its default delegate) at 1 and 2
threads, ``--warmup`` untimed runs then ``--runs`` timed runs, median. Writes a Markdown table
to stdout (or ``--out``); rows are shown on stderr as they are measured.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lsnet_deploy
from lsnet_deploy.bench.harness import time_callable
from lsnet_deploy.exporters import get_exporter
from lsnet_deploy.exporters.tflite_flatbuffer import op_histogram

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

COLUMNS = ["variant", "artifact", "MB", "TRANSPOSE ops", "ops", "max abs diff", "mean cos",
           "top-1 agree", "1 thread ms", "2 threads ms", "kept in float"]
PRECISIONS = {  # --precisions choice -> (row label, export keywords)
    "fp32": ("fp32", {"precision": "fp32"}),
    "fp16": ("fp16", {"precision": "fp16", "min_cosine": 0.0}),
    "int8": ("int8 (full integer)", {"precision": "int8", "min_cosine": 0.0}),
}
AUTO_ROW = ("int8 (auto, target 0.98)",
            {"precision": "int8", "int8_exclude": ["auto"], "min_cosine": 0.98})
THREADS = (1, 2)


def latency(path: Path, img_size: int, runs: int, warmup: int) -> dict[int, float]:
    """Median LiteRT latency (ms) of one NHWC batch-1 call, per thread count."""
    x = np.zeros((1, img_size, img_size, 3), np.float32)
    out = {}
    for threads in THREADS:
        run = get_exporter("tflite").runner(path, threads=threads)
        out[threads] = time_callable(lambda r=run: r(x), runs=runs, warmup=warmup).median_ms
    return out


def canonical_fp32(variant: str, weights: str, img_size: int, folder: Path) -> tuple[Path, float]:
    """Convert the fused model without the channels-last rewrite (NHWC input wrapped around
    the NCHW graph); return ``(path, max|diff|)`` against the fused PyTorch model on one random
    input."""
    from lsnet_deploy.exporters.tflite import _require  # MissingDependencyError with the extra

    _require()
    import litert_torch

    model = lsnet_deploy.create_model(variant, weights, img_size=img_size, reparameterize=True)
    module = litert_torch.to_channel_last_io(copy.deepcopy(model), args=[0]).eval()
    x = torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    path = folder / f"{variant}_{img_size}_canonical_fp32.tflite"
    litert_torch.convert(module, (x_nhwc,)).export(str(path))
    run = get_exporter("tflite").runner(path)
    with torch.no_grad():
        ref = model(x).numpy()
    return path, float(np.abs(run(x_nhwc.numpy()) - ref).max())


def row(variant: str, label: str, path: Path, lat: dict[int, float],
        validation: dict[str, Any] | None, diff: float | None, kept: str = "-") -> list[str]:
    """The table cells of one artifact (``validation`` is ``None`` for the canonical row)."""
    hist = op_histogram(path)
    v = validation
    maxdiff = diff if diff is not None else (v["max_abs_diff"] if v else float("nan"))
    return [
        variant, label, f"{path.stat().st_size / 1e6:.1f}", str(hist.get("TRANSPOSE", 0)),
        str(sum(hist.values())), f"{maxdiff:.1e}",
        f"{v['mean_cosine']:.4f}" if v else "-", f"{v['top1_agreement']:.0%}" if v else "-",
        f"{lat[1]:.2f}", f"{lat[2]:.2f}", kept,
    ]


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__)
    ap.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS),
                    help="pipeline rows besides the canonical one (default: all)")
    ap.add_argument("--auto-variants", nargs="*", default=["lsnet_t"],
                    help="variants that also get an --int8-exclude auto row (slow)")
    add_timing_options(ap, runs=100, warmup=20)
    args = ap.parse_args(argv)
    size = args.img_size
    rows: list[list[str]] = []

    with measuring(), tempfile.TemporaryDirectory(prefix="lsnet-tflite-bench-") as tmp:
        folder = Path(tmp)
        for variant in args.variants:
            weights = weights_for(args.weights, variant)
            path, diff = canonical_fp32(variant, weights, size, folder)
            lat = latency(path, size, args.runs, args.warmup)
            rows.append(row(variant, "fp32, canonical fused graph (before)", path, lat, None,
                            diff))
            progress(rows[-1])
            configs = [PRECISIONS[p] for p in args.precisions]
            if variant in args.auto_variants:
                configs.append(AUTO_ROW)
            for label, kw in configs:
                [art] = lsnet_deploy.export(variant, "tflite", weights=weights, img_size=size,
                                            output_dir=folder, force=True, **kw)
                excluded = art.export_info.get("int8", {}).get("excluded_groups", [])
                lat = latency(art.path, size, args.runs, args.warmup)
                rows.append(row(variant, label, art.path, lat, art.validation, None,
                                ", ".join(excluded) or "-"))
                progress(rows[-1])
    caption = (
        f"Machine: {machine()}; weights: {args.weights}; LiteRT interpreter with XNNPACK, "
        f"NHWC input, batch 1, {size}x{size}, median of {args.runs} runs after {args.warmup} "
        "warm-up runs. max|diff| and cosine: logits vs unfused PyTorch on the held-out "
        "calibration photos (canonical row: one random input)."
    )
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
