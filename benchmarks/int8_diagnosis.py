"""Report: where LSNet's ONNX Runtime INT8 error comes from, per weight family and technique.

Usage (from the repository root)::

    .venv/bin/python benchmarks/int8_diagnosis.py [--variants lsnet_t]
        [--weights random random-outliers] [--img-size 224] [--int16-headroom X]
        [--out FILE.md]

For every variant and weight family it exports the fused model to ONNX once (and once more
after the channel equalization INT8 exports apply by default,
:func:`lsnet_deploy.quantize.prepare.prepare_for_int8`: residual stream, then pairs), quantizes it with ONNX
Runtime (QDQ, per-channel int8 weights) in several ways and validates each on the held-out
calibration photos against the unfused PyTorch model (mean / min logit cosine):

* ``uint8``: today's export (uint8 activations), MinMax and percentile calibration;
* ``equalized``: the same after channel equalization (what ``export --int8`` ships);
* ``int16 residual``, ``int16 residual+se+ska``: those groups' activations in int16 (w8a16);
* ``int16 all``: every activation int16 (with the int16 headroom,
  :mod:`lsnet_deploy.quantize.headroom`, as every int16 export; the weights rounded to the
  nearest step, as ``--no-gptq``: ``int8_weight_rounding.py`` measures GPTQ): what is left is
  the int8 weights' share, and what the headroom does not cover of the held-out photos;
* ``int16 all, ranges from every photo``: also calibrated on the held-out photos, so nothing is
  clipped: the int8 weights' share alone (and the 16-bit steps).

The equalized graph gets ``uint8`` and the two ``int16 all`` rows: with every activation in
int16, what the equalization changes is each channel's headroom above its calibrated range.
The last column names the held-out photo with the lowest cosine.

No timing: ONNX Runtime's CPU provider runs int16 Q/DQ as float, so only the fidelity is read.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

import lsnet_deploy
from lsnet_deploy.exporters import get_exporter
from lsnet_deploy.exporters.base import ExportOptions
from lsnet_deploy.exporters.inputs import calibration_inputs
from lsnet_deploy.exporters.onnx import prepare_int8
from lsnet_deploy.fidelity import compare_logits, run_artifact
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.quantize.headroom import INT16_HEADROOM, resolve_headroom
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

COLUMNS = ["variant", "weights", "graph", "activations", "calibration", "mean cos", "min cos",
           "top-1 agree", "worst photo"]

CASES: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    # (activations label, method, int16 groups, calibrate on the held-out photos too)
    ("uint8", "minmax", (), False),
    ("uint8", "percentile", (), False),
    ("int16 residual", "minmax", ("residual",), False),
    ("int16 residual+se+ska", "minmax", ("residual", "se", "ska"), False),
    ("int16 all", "minmax", ("all",), False),
    ("int16 all", "minmax, ranges from every photo", ("all",), True),
)
EQUALIZED_CASES = (*CASES[:2], *CASES[4:])


def _rows(variant: str, weights: str, img_size: int, tmp: Path,
          headroom: float) -> list[list[str]]:
    model = lsnet_deploy.create_model(variant, weights, img_size=img_size)
    images = split_images(Preprocess(img_size=model.img_size))
    assert images.calib is not None
    with torch.no_grad():
        reference = model(images.val)
    spec = IOSpec(img_size=model.img_size)
    calib = calibration_inputs(images.calib, spec)
    every = calibration_inputs(torch.cat([images.calib, images.val]), spec)
    fused = copy.deepcopy(model)
    reparameterize(fused, None)
    equalized = copy.deepcopy(fused)
    prepare_for_int8(equalized, images.calib)
    rows: list[list[str]] = []
    for graph, net, cases in (("fused", fused, CASES), ("equalized", equalized, EQUALIZED_CASES)):
        folder = tmp / f"{variant}-{weights}-{graph}"
        folder.mkdir()
        _, pre, groups = prepare_int8(net, spec, folder, ExportOptions(precision="int8"))
        for label, method, int16, cover_val in cases:
            out = folder / "q.onnx"
            config = Int8Config(method=method.split(",")[0], int16=int16,
                                int16_headroom=headroom)
            quantize_int8(pre, out, groups, spec.input_name, every if cover_val else calib,
                          config)
            logits = run_artifact(get_exporter("onnx").runner(out), images.val, spec)
            report = compare_logits(logits, reference.numpy(), "int8", "held-out photos", 0.0,
                                    names=images.val_names)
            row = [variant, weights, graph, label, method, f"{report.mean_cosine:.4f}",
                   f"{report.min_cosine:.4f}", f"{report.top1_agreement:.0%}",
                   report.worst_photo or "-"]
            progress(row)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = base_parser(__doc__)
    ap.set_defaults(variants=["lsnet_t"])
    add_families(ap)
    ap.add_argument("--int16-headroom", type=float, default=INT16_HEADROOM,
                    help="the int16 rows' range factor, as the export's option (default: "
                         "%(default)s)")
    args = ap.parse_args(argv)
    headroom = resolve_headroom(args.int16_headroom)
    families = weight_families(args)
    rows: list[list[str]] = []
    with measuring(), tempfile.TemporaryDirectory(prefix="lsnet-diag-") as tmp:
        for variant in args.variants:
            for weights in families:
                rows += _rows(variant, weights_for(weights, variant), args.img_size, Path(tmp),
                              headroom)
    caption = (f"Machine: {machine()}; ONNX Runtime QDQ, per-channel int8 weights; int16 "
               f"ranges x{headroom:g}; cosine vs the unfused PyTorch model on the held-out "
               "calibration photos.")
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
