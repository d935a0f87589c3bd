"""Report: CoreML packages of fp16 / fp32 / 8-bit weights / W8A8: size, weights, ops, and the
W8A8 fake-quant fidelity (a Core ML model cannot run off macOS; latency is issue 6's harness).

Usage::

    python -m lsnet_deploy.bench.coreml_report [--variants lsnet_t lsnet_s lsnet_b]
        [--weights random|official|DIR] [--out FILE.md]

Every row is one ``lsnet-deploy export --format coreml`` (image input, classifier, iOS 17) with
the gate off for W8A8 (``--min-cosine 0``) to report its raw fidelity: mean logit cosine of the
PyTorch fake-quantized model vs the unfused PyTorch model on the held-out calibration photos.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from ..pipeline import export
from .report import emit_table, machine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["lsnet_t", "lsnet_s", "lsnet_b"])
    ap.add_argument("--weights", default="random",
                    help="'random', 'official', or a folder holding <variant>.pth files")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lsnet-coreml-bench-") as tmp:
        for variant in args.variants:
            weights = args.weights
            if weights not in ("random", "official"):
                weights = str(Path(weights) / f"{variant}.pth")
            for precision in ("fp32", "fp16", "int8", "w8a8"):
                kw = {"min_cosine": 0.0} if precision == "w8a8" else {}
                [art] = export(variant, "coreml", weights=weights, output_dir=Path(tmp),
                               precision=precision, force=True, **kw)
                v = art.validation
                d = v["details"]
                fake = v.get("fake_quant_fidelity")
                ops = d["op_histogram"]
                weights_col = ", ".join(f"{k} {n}" for k, n in d["weight_dtypes"].items())
                fake_col = f"{fake['mean_cosine']:.4f}" if fake else "-"
                rows.append(
                    f"| {variant} | {precision} | {art.size_bytes / 1e6:.1f} | {weights_col} | "
                    f"{ops.get('quantize', 0)} | {d['max_rank']} | "
                    f"{'pass' if all(v['checks'].values()) else 'FAIL'} | {fake_col} |"
                )
                print(rows[-1], flush=True)
    header = [
        f"Machine: {machine()} (Linux: structural checks only); weights: "
        f"{args.weights}; image input, classifier, iOS 17.",
        "",
        "| variant | precision | MB | conv/linear weights | quantize ops | max rank | structural "
        "checks | W8A8 fake-quant mean cos |",
        "|---|---|---|---|---|---|---|---|",
    ]
    emit_table(header, rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
