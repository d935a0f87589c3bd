"""TFLite 16x8 (ai-edge-quantizer ``static_wi8_ai16``): what the shipped form is measured
against. The float file is the one ``export --format tflite --int8 --int8-int16 all`` converts
(the fused model in the app form: uint8 NHWC image in), calibrated with the running min/max on
the calibration photos by :func:`lsnet_deploy.quantize.tflite_16x8.calibrate_16x8` (what the
export runs); then, written by ``write_16x8``:

* ``shipped``: those ranges widened by the int16 headroom
  (:data:`lsnet_deploy.quantize.headroom.INT16_HEADROOM`, 1.5x: what the export writes);
* ``ranges xF``: the calibrated ranges widened F times (``--headrooms``; x1: as they are,
  what ``--int16-headroom 1`` writes);
* ``stream alpha A``: the residual stream equalized first
  (:func:`lsnet_deploy.quantize.stream.equalize_stream`, ``alpha`` = A; 1 is what every 8-bit
  export applies, with the pair and attention steps), then the headroom.

Usage (from the repository root)::

    .venv/bin/python benchmarks/int8_libraries/tflite_16x8_variants.py [--variants lsnet_t]
        [--weights random-outliers] [--headrooms 1 1.2] [--alphas 0.5 1.0] [--out FILE.md]

Prints a Markdown table: mean / min logit cosine against the unfused PyTorch model on the
held-out photos (each file run in the LiteRT interpreter, 2 threads). About 5 minutes for
LSNet-T.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lsnet_deploy
from lsnet_deploy.exporters.inputs import example_input
from lsnet_deploy.exporters.tflite import TfliteExporter, _to_torch, convertible_module
from lsnet_deploy.fidelity import compare_logits
from lsnet_deploy.pipeline.images import ImageSplit, split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.quantize.headroom import INT16_HEADROOM, resolve_headroom
from lsnet_deploy.quantize.stream import equalize_stream
from lsnet_deploy.quantize.tflite_16x8 import calibrate_16x8, with_headroom, write_16x8
from lsnet_deploy.reparam import reparameterize
from lsnet_deploy.spec import IOSpec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common
from _common import (  # noqa: E402
    base_parser,
    markdown_table,
    progress,
    weights_for,
    write_markdown,
)

os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress lines go to stdout
SPEC = IOSpec(layout="NHWC", dtype="uint8", value_range="0..255")  # the app form
COLUMNS = ["variant", "weights", "16x8 form", "mean cos", "min cos"]


def _score(float_path: Path, ranges: dict[str, Any], widen: float, images: ImageSplit,
           reference: np.ndarray) -> tuple[float, float]:
    """Mean / min cosine of the 16x8 file written with ``ranges`` widened by ``widen``."""
    wide = with_headroom(ranges, widen)
    path = float_path.with_name(f"{float_path.stem}_a16_{widen}.tflite")
    write_16x8(float_path, wide, path)
    run = TfliteExporter().runner(path, threads=2)
    logits = np.concatenate([run(x.numpy()) for x in _to_torch(images.val, SPEC)])
    report = compare_logits(logits.astype(np.float64), reference, "int8", "held-out", 0.0)
    return report.mean_cosine, report.min_cosine


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__)
    ap.set_defaults(variants=["lsnet_t"], weights="random-outliers")
    ap.add_argument("--headrooms", type=float, nargs="*", default=[1.0, 1.2],
                    help="range factors besides the shipped one (default: %(default)s)")
    ap.add_argument("--alphas", type=float, nargs="*", default=[0.5, 1.0],
                    help="residual stream equalization strengths (default: %(default)s; "
                         "none: --alphas with no value)")
    args = ap.parse_args(argv)
    rows = []
    for variant in args.variants:
        model = lsnet_deploy.create_model(variant, weights_for(args.weights, variant)).eval()
        images = split_images(Preprocess(img_size=model.img_size))
        with torch.no_grad():
            reference = model(images.val).numpy().astype(np.float64)
        fused = copy.deepcopy(model)
        reparameterize(fused, check_inputs=None)
        forms: list[tuple[str, torch.nn.Module, float]] = [
            (f"shipped (ranges x{INT16_HEADROOM:g})", fused, INT16_HEADROOM),
            *((f"ranges x{h:g}", fused, resolve_headroom(h)) for h in args.headrooms
              if h != INT16_HEADROOM)]
        for alpha in args.alphas:
            eq = copy.deepcopy(fused)
            assert images.calib is not None
            equalize_stream(eq, images.calib, alpha=alpha)
            forms.append((f"stream alpha {alpha:g}, ranges x{INT16_HEADROOM:g}", eq,
                          INT16_HEADROOM))
        import litert_torch

        with tempfile.TemporaryDirectory(prefix="lsnet-16x8-") as tmp:
            converted: dict[int, tuple[Path, dict[str, Any]]] = {}
            for k, (label, net, widen) in enumerate(forms):
                if id(net) not in converted:
                    path = Path(tmp) / f"form{k}.tflite"
                    litert_torch.convert(convertible_module(net, SPEC),
                                         (example_input(SPEC, 1),)).export(str(path))
                    assert images.calib is not None
                    calib = [x.numpy() for x in _to_torch(images.calib, SPEC)]
                    converted[id(net)] = (path, calibrate_16x8(path, calib, threads=2))
                path, ranges = converted[id(net)]
                mean, low = _score(path, ranges, widen, images, reference)
                rows.append([variant, args.weights, label, f"{mean:.4f}", f"{low:.4f}"])
                progress(rows[-1])
    write_markdown(markdown_table("TFLite 16x8 forms, held-out photos, vs the unfused PyTorch "
                                  "model", COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
