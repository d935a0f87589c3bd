"""LiteRT's 16x8 quantization (int16 activations, int8 weights) through ai-edge-quantizer.

Input: a float ``.tflite`` of the fused model in the artifact's IO form (litert-torch's
conversion: a uint8 NHWC image with the normalization in the graph, or a float tensor). Recipe:
ai-edge-quantizer's ``static_wi8_ai16``: symmetric int16 activations, per-channel int8 weights,
int64 biases; every op of LSNet has a 16x8 kernel in LiteRT, so nothing stays in float.

Ranges: the running min/max over the calibration photos, widened by the int16 headroom
(:mod:`~lsnet_deploy.quantize.headroom`: a held-out photo beyond the calibrated range is
clipped). The library's default update, a moving average of each photo's min/max (smoothing
0.95), clips what the calibration set does not cover: on LSNet-T (trained-looking weights)
min logit cosine 0.845 against 0.984 with running min/max and no headroom (docs/int8.md, "TFLite
16x8 and ai-edge-quantizer").

Boundary of the quantized file: the float file's input (a uint8 image input is CAST to float
and then quantized in the graph; a float input is quantized by a QUANTIZE op), and an int16
output (the exporter then adds a DEQUANTIZE to float32,
:func:`~lsnet_deploy.exporters.tflite_flatbuffer.set_io_types`).

Speed: XNNPACK has no 16x8 kernels, so on a CPU every op runs in LiteRT's reference kernels
(LSNet-T/S/B: 17-21x the fp32 latency on 1 thread of this project's x86 host,
docs/benchmarks.md "TFLite 16x8 export"). The file is for int16-capable
accelerators (e.g. Qualcomm's HTP through LiteRT's QNN delegate), where its fidelity is the point.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..deps import require
from ..errors import ExportError, first_line
from ..progress import Say, counted
from .headroom import INT16_HEADROOM, resolve_headroom, widen

__all__ = ["RECIPE", "calibrate_16x8", "quantize_16x8", "with_headroom", "write_16x8"]

RECIPE = "static_wi8_ai16"
"""ai-edge-quantizer's recipe: int16 activations, int8 weights (LiteRT's 16x8)."""
SIGNATURE = "serving_default"
"""The signature litert-torch gives the one function it converts."""


def quantize_16x8(float_path: Path, out: Path, inputs: Sequence[np.ndarray], threads: int,
                  progress: Say | None = None, headroom: float | None = None
                  ) -> dict[str, Any]:
    """Quantize the float ``.tflite`` at ``float_path`` to 16x8 and write it to ``out``
    (:func:`calibrate_16x8`, then :func:`write_16x8`).

    ``inputs``: the calibration photos in the float file's input format, one array per call
    of its static batch (shape and dtype of its input: ``(B, H, W, 3)`` uint8 for an image
    input, ``B`` photos each). ``threads``: the calibration interpreter's thread count.
    ``headroom``: each range spans that many times its calibrated one (:func:`with_headroom`;
    ``None``: :data:`~lsnet_deploy.quantize.headroom.INT16_HEADROOM`).
    Returns the sidecar's ``export.int8`` entries (quantizer, recipe, range update, the number
    of calibration calls). Raises :class:`ExportError` when ai-edge-quantizer fails (its
    message on one line)."""
    headroom = resolve_headroom(headroom)  # refused out of range before the calibration
    write_16x8(float_path, with_headroom(calibrate_16x8(float_path, inputs, threads, progress),
                                         headroom), out)
    return {"quantizer": "ai-edge-quantizer (LiteRT 16x8): int16 activations, per-channel "
                         "int8 weights",
            "recipe": RECIPE, "range_update": "running min/max",
            "int16_headroom": headroom, "int16_activations": ["all"],
            "calibration_calls": len(inputs)}


def calibrate_16x8(float_path: Path, inputs: Sequence[np.ndarray], threads: int,
                   progress: Say | None = None) -> dict[str, Any]:
    """The running min/max of every tensor of the float file over ``inputs`` (as in
    :func:`quantize_16x8`): ai-edge-quantizer's ranges, ``{tensor name: {"min": ..., "max":
    ...}}``."""
    require("tflite", "ai_edge_quantizer", what="TFLite 16x8 quantization")
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    with _library_errors():
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(getattr(recipe, RECIPE)())
        cal = calibrator.Calibrator(str(float_path), num_threads=threads,
                                    qsv_update_func=qsv_utils.min_max_update)
        name = _input_name(float_path)
        for x in counted(progress, "calibrating (16x8)", inputs, lambda _x: "batch"):
            with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar, one per call
                cal.calibrate({SIGNATURE: [{name: x}]}, manager)
        return cal.get_model_qsvs()


def with_headroom(ranges: dict[str, Any], factor: float = INT16_HEADROOM) -> dict[str, Any]:
    """``ranges`` (:func:`calibrate_16x8`) with every ``min`` / ``max`` widened by ``factor``
    (:func:`~lsnet_deploy.quantize.headroom.widen`); other fields, and entries without both,
    kept as they are."""
    out: dict[str, Any] = {}
    for name, qsv in ranges.items():
        if "min" not in qsv or "max" not in qsv:
            out[name] = qsv
            continue
        lo, hi = widen(qsv["min"], qsv["max"], factor)
        out[name] = {**qsv, "min": lo.astype(np.asarray(qsv["min"]).dtype),
                     "max": hi.astype(np.asarray(qsv["max"]).dtype)}
    return out


def write_16x8(float_path: Path, ranges: dict[str, Any], out: Path) -> None:
    """Quantize the float file with ``ranges`` (:func:`calibrate_16x8`) and write ``out``."""
    require("tflite", "ai_edge_quantizer", what="TFLite 16x8 quantization")
    from ai_edge_quantizer import quantizer, recipe

    with _library_errors(), contextlib.redirect_stderr(io.StringIO()):  # it shows a bar anyway
        result = quantizer.Quantizer(str(float_path), getattr(recipe, RECIPE)()).quantize(
            ranges, enable_progress_bar=False, enable_progress_report=False)
    out.write_bytes(bytes(result.quantized_model))


@contextlib.contextmanager
def _library_errors() -> Iterator[None]:
    """ai-edge-quantizer's failures as one-line :class:`ExportError`."""
    try:
        yield
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"ai-edge-quantizer could not quantize to 16x8: "
                          f"{type(e).__name__}: {first_line(e)}") from e


def _input_name(float_path: Path) -> str:
    """The signature's one input name (litert-torch: ``args_0``)."""
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=str(float_path)).get_signature_runner(SIGNATURE)
    names = list(signature.get_input_details())
    if len(names) != 1:
        raise ExportError(f"{float_path.name}: expected one input in signature {SIGNATURE!r}, "
                          f"found {len(names)}")
    return names[0]
