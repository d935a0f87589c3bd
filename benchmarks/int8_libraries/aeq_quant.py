"""ai-edge-quantizer (LiteRT's own quantizer) on LSNet's float ``.tflite``: int8 and 16x8.

Usage (from the repository root; ai-edge-quantizer comes with the ``tflite`` extra)::

    .venv/bin/python benchmarks/int8_libraries/aeq_quant.py [--variant lsnet_t]
        [--weights random random-outliers] [--out-dir /tmp/aeq] [--out FILE.md]

Per weight family: the fused model, channel-equalized as ``export --int8`` does
(:func:`lsnet_deploy.quantize.prepare.prepare_for_int8`) or not, in the channels-last form the
TFLite exporter converts, converted to a float ``.tflite`` by litert-torch (normalized float
NCHW input, logits out). ai-edge-quantizer then quantizes that file with two recipes,
``static_wi8_ai8`` (int8 activations, the full-integer graph XNNPACK runs) and
``static_wi8_ai16`` (TFLite's 16x8: int16 activations, int8 weights), calibrated on the
calibration photos, once with the library's default range update (a moving average of each
batch's min/max, smoothing 0.95) and once with the running min/max. Each file is run in the
LiteRT interpreter on the held-out photos and compared with the unfused PyTorch model: mean /
min logit cosine and top-1 agreement, and the cosines once the calibration photos' mean logit
error is subtracted (the part of the error a bias correction could take). The quantized files stay in ``--out-dir`` for timing with
``benchmarks/ab_latency.py``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lsnet_deploy
from lsnet_deploy.channels_last import to_channels_last_form
from lsnet_deploy.exporters.tflite import TfliteExporter
from lsnet_deploy.fidelity import compare_logits
from lsnet_deploy.pipeline.images import ImageSplit, split_images
from lsnet_deploy.preprocess import Preprocess
from lsnet_deploy.quantize.prepare import prepare_for_int8
from lsnet_deploy.reparam import reparameterize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/_common
from _common import markdown_table, progress, write_markdown  # noqa: E402

COLUMNS = ["weights", "equalized", "recipe", "range update", "mean cos", "min cos", "top-1 agree",
           "mean / min cos, head bias corrected"]


def _run(path: Path, images: torch.Tensor) -> np.ndarray:
    """Logits of a ``.tflite`` (float, int8 or int16 input/output) on ``(N, 3, H, W)`` images,
    one image per call (the exporter's runner: inputs quantized, outputs dequantized)."""
    run = TfliteExporter().runner(path, threads=2)
    return np.concatenate([run(x[None].numpy()) for x in images]).astype(np.float64)


def _scores(path: Path, images: ImageSplit, reference: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """Mean / min cosine and top-1 agreement on the held-out photos; then the same cosines
    after the simplest bias correction: the calibration photos' mean logit error subtracted
    (what a corrected classifier bias would give; the share of the error that is a shift)."""
    calib_ref, val_ref = reference
    val = _run(path, images.val)
    report = compare_logits(val, val_ref, "int8", "held-out photos", 0.0)
    shift = (_run(path, images.calib) - calib_ref).mean(0)
    corrected = compare_logits(val - shift, val_ref, "int8", "held-out photos", 0.0)
    return [f"{report.mean_cosine:.4f}", f"{report.min_cosine:.4f}",
            f"{report.top1_agreement:.3f}",
            f"{corrected.mean_cosine:.4f} / {corrected.min_cosine:.4f}"]


def _quantize(float_path: Path, recipe: Any, calib: list[dict[str, np.ndarray]],
              running_minmax: bool, out: Path) -> None:
    from ai_edge_quantizer import calibrator, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    q = quantizer.Quantizer(str(float_path), recipe)
    if running_minmax:
        # Quantizer.calibrate has no argument for it; its Calibrator takes the update function
        cal = calibrator.Calibrator(q._float_model_buffer, num_threads=2,
                                    qsv_update_func=qsv_utils.min_max_update)
        cal.calibrate({"serving_default": calib}, q._recipe_manager)
        ranges = cal.get_model_qsvs()
    else:
        ranges = q.calibrate({"serving_default": calib}, num_threads=2)
    out.write_bytes(q.quantize(ranges, enable_progress_bar=False,
                               enable_progress_report=False).quantized_model)


def _rows(model: torch.nn.Module, stem: str, weights: str, equalize: bool, images: ImageSplit,
          reference: tuple[np.ndarray, np.ndarray], out_dir: Path) -> list[list[str]]:
    """The float file of the fused ``model`` (prepared if ``equalize``) and its four quantized
    files, each scored."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import recipe

    fused = copy.deepcopy(model)
    reparameterize(fused, check_inputs=None)
    if equalize:
        prepare_for_int8(fused, images.calib)
    stem = f"{stem}_{'eq' if equalize else 'plain'}"
    float_path = out_dir / f"{stem}_fp32.tflite"
    litert_torch.convert(to_channels_last_form(fused).eval(), (images.calib[:1],)).export(
        str(float_path))
    signature = Interpreter(model_path=str(float_path)).get_signature_runner()
    name = next(iter(signature.get_input_details()))
    calib = [{name: x[None].numpy()} for x in images.calib]
    rows = [[weights, str(equalize), "fp32", "-", *_scores(float_path, images, reference)]]
    for label, make in (("a8w8", recipe.static_wi8_ai8), ("a16w8 (16x8)", recipe.static_wi8_ai16)):
        for running in (False, True):
            path = out_dir / f"{stem}_{label.split()[0]}_{'minmax' if running else 'movavg'}.tflite"
            _quantize(float_path, make(), calib, running, path)
            rows.append([weights, str(equalize), label,
                         "running min/max" if running else "moving average (default)",
                         *_scores(path, images, reference)])
            progress(rows[-1])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="lsnet_t")
    ap.add_argument("--weights", nargs="+", default=["random", "random-outliers"])
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/aeq"))
    ap.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    images: ImageSplit | None = None
    for weights in args.weights:
        model = lsnet_deploy.create_model(args.variant, weights).eval()
        if images is None:  # the photos once: every weight family has the variant's size
            images = split_images(Preprocess(img_size=model.img_size))
        assert images.calib is not None
        with torch.no_grad():
            reference = (model(images.calib).numpy().astype(np.float64),
                         model(images.val).numpy().astype(np.float64))
        for equalize in (False, True):
            rows += _rows(model, f"{args.variant}_{weights}", weights, equalize, images,
                          reference, args.out_dir)
    write_markdown(markdown_table(f"{args.variant}, ai-edge-quantizer, held-out photos",
                                  COLUMNS, rows), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
