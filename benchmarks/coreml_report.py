"""Report: CoreML packages of fp16 / fp32 / 8-bit weights / W8A8: size, weights, ops, and their
fidelity vs PyTorch, measured by running the saved package (Core ML on macOS, the MIL reference
executor elsewhere), next to the W8A8 fake-quant fidelity (latency is the iOS harness's).

Usage (from the repository root)::

    .venv/bin/python benchmarks/coreml_report.py [--variants lsnet_t lsnet_s lsnet_b]
        [--weights random|official|DIR] [--img-size 224] [--precisions fp32 fp16 int8 w8a8]
        [--out FILE.md]

Every row is one ``lsnet-deploy export --format coreml`` (image input, classifier for 1000-class
variants, iOS 17) with the gate off for W8A8 (``--min-cosine 0``) to report its raw fidelity.
Fidelity: mean logit cosine and top-1 agreement of the package's log-probabilities vs the
unfused PyTorch model's on the held-out calibration photos; for W8A8 also that of the PyTorch
fake-quantized model. Writes a Markdown table to stdout (or ``--out``); rows are shown on
stderr as they are exported.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import lsnet_deploy

if str(Path(__file__).resolve().parent) not in sys.path:  # _common, without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    base_parser,
    machine,
    markdown_table,
    measuring,
    progress,
    weights_for,
    write_markdown,
)

COLUMNS = ["variant", "precision", "MB", "conv/linear weights", "quantize ops", "max rank",
           "run by", "mean cos", "top-1 agree", "W8A8 fake-quant mean cos"]
PRECISIONS = ["fp32", "fp16", "int8", "w8a8"]


def row(variant: str, precision: str, path: Path, size_bytes: int, validation: dict[str, Any],
        export_info: dict[str, Any]) -> list[str]:
    """The table cells of one package, from its validation record and its MIL program."""
    import coremltools as ct

    from lsnet_deploy.exporters.coreml import mil_summary

    summary = mil_summary(ct.utils.load_spec(str(path)))
    fake = export_info.get("w8a8", {}).get("fake_quant_fidelity")
    weights = ", ".join(f"{dtype} {n}" for dtype, n in summary["weight_dtypes"].items())
    return [
        variant, precision, f"{size_bytes / 1e6:.1f}", weights,
        str(summary["op_histogram"].get("quantize", 0)), str(summary["max_rank"]),
        validation.get("mode", "?"), f"{validation['mean_cosine']:.4f}",
        f"{validation['top1_agreement']:.0%}",
        f"{fake['mean_cosine']:.4f}" if fake else "-",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__)
    ap.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=PRECISIONS,
                    help="packages per variant (default: all)")
    args = ap.parse_args(argv)
    rows: list[list[str]] = []
    with measuring(), tempfile.TemporaryDirectory(prefix="lsnet-coreml-bench-") as tmp:
        for variant in args.variants:
            weights = weights_for(args.weights, variant)
            for precision in args.precisions:
                kw = {"min_cosine": 0.0} if precision == "w8a8" else {}
                [art] = lsnet_deploy.export(variant, "coreml", weights=weights,
                                            img_size=args.img_size, output_dir=Path(tmp),
                                            precision=precision, force=True, **kw)
                rows.append(row(variant, precision, art.path, art.size_bytes, art.validation,
                                art.export_info))
                progress(rows[-1])
    caption = (
        f"Machine: {machine()}; weights: {args.weights}; "
        f"image input, {args.img_size}x{args.img_size}, classifier, iOS 17."
    )
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
