"""Report: what int8 weights alone cost LSNet's logits, rounded to the nearest step or by GPTQ.

Usage (from the repository root)::

    .venv/bin/python benchmarks/int8_weight_rounding.py [--variants lsnet_t lsnet_s lsnet_b]
        [--families random random-outliers] [--no-equalize] [--out FILE.md]

For every variant and weight family it builds the fused model as INT8 exports quantize it
(channel-equalized unless ``--no-equalize``, as 8-bit exports; int16-everywhere exports are
not equalized), then replaces every convolution and linear weight by its per-output-channel
symmetric int8 value (the grid every backend uses, ``max|w| / 127``), activations left in
float:

* ``nearest``: each weight rounded to the nearest step (what a backend does on its own: 8-bit
  exports by default, ``--no-gptq``);
* ``gptq``: :func:`lsnet_deploy.quantize.rounding.round_weights` on the calibration photos
  (what exports with int16 activations ship by default, and ``--gptq``).

It reports the mean / min logit cosine and the top-1 agreement against the unfused PyTorch
model on the held-out photos, the layers' summed output error on the calibration photos
(``tr(dW H dW^T)``) and the seconds GPTQ took. This isolates the weights' share of the INT8
error: what int16 activations (``--int8-int16 all``, TFLite 16x8) leave.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

import lsnet_deploy
from lsnet_deploy.fidelity import compare_logits
from lsnet_deploy.pipeline.images import split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.quantize.prepare import prepare_for_int8
from lsnet_deploy.quantize.rounding import nearest_int8, round_weights, weight_layers
from lsnet_deploy.reparam import reparameterize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
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

COLUMNS = ["variant", "weights", "equalized", "int8 weights", "mean cos", "min cos",
           "top-1 agree", "output error", "seconds"]


def _logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(images[i:i + 16]) for i in range(0, len(images), 16)])


def _rows(variant: str, weights: str, img_size: int, equalize: bool) -> list[list[str]]:
    model = lsnet_deploy.create_model(variant, weights, img_size=img_size)
    images = split_images(Preprocess(img_size=model.img_size), need_calib=True)
    assert images.calib is not None
    reference = _logits(model, images.val).numpy()
    fused = copy.deepcopy(model)
    reparameterize(fused, None)
    if equalize:
        prepare_for_int8(fused, images.calib)
    nearest = copy.deepcopy(fused)
    with torch.no_grad():
        for _, layer in weight_layers(nearest):
            layer.weight.copy_(nearest_int8(layer.weight))
    rounded = copy.deepcopy(fused)
    report = round_weights(rounded, images.calib)
    rows = []
    for label, net, error, seconds in (
            ("nearest", nearest, report.output_error_nearest, "-"),
            ("gptq", rounded, report.output_error_rounded, f"{report.seconds:.1f}")):
        rep = compare_logits(_logits(net, images.val).numpy(), reference, "int8",
                             "held-out photos", 0.0)
        row = [variant, weights, "yes" if equalize else "no", label, f"{rep.mean_cosine:.4f}",
               f"{rep.min_cosine:.4f}", f"{rep.top1_agreement:.0%}", f"{error:.3g}", seconds]
        progress(row)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = base_parser(__doc__)
    add_families(ap)
    ap.add_argument("--no-equalize", action="store_true",
                    help="round the fused model as it is (what int16-everywhere exports do)")
    args = ap.parse_args(argv)
    rows: list[list[str]] = []
    with measuring():
        for variant in args.variants:
            for weights in weight_families(args):
                rows += _rows(variant, weights_for(weights, variant), args.img_size,
                              not args.no_equalize)
    caption = (f"Machine: {machine()}; int8 weights only (per-output-channel symmetric, "
               "activations in float); cosine and top-1 agreement vs the unfused PyTorch model "
               "on the held-out photos; output error: the layers' summed tr(dW H dW^T) on the "
               "calibration photos.")
    write_markdown(markdown_table(caption, COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
