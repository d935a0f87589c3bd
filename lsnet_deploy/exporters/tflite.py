"""TFLite exporter: litert-torch conversion (fp32, fp16 weights, full-integer INT8).

The fused model is first rewritten into its channels-last form
(:mod:`lsnet_deploy.channels_last`), so that the NHWC graph litert-torch produces has no
layout transposes in the body. Inputs are NHWC by default (what Android/iOS camera pipelines
hand over; ``--layout nchw`` keeps NCHW and costs one input transpose).

* fp32: ``litert_torch.convert``.
* fp16: the same with ``quant_recipes.full_fp16_recipe()``: fp16 weights, each followed by a
  DEQUANTIZE to fp32 (GPU delegates and XNNPACK then run fp16 or fp32 kernels as they like).
* int8: PT2E static quantization calibrated on real photos
  (:mod:`lsnet_deploy.quantize.tflite_int8`), converted with the quantizer so every op gets an
  integer kernel: int8 activations, per-channel int8 weights, int32 biases. The boundary is
  int8 by default (``--io int8``); ``--io float32`` / ``uint8`` add QUANTIZE/DEQUANTIZE ops at
  the boundary (:func:`~lsnet_deploy.exporters.tflite_flatbuffer.set_io_types`), and the input
  and output quantization parameters go to the sidecar so an app can quantize camera frames
  itself. ``--image-input`` takes uint8 RGB pixels and normalizes inside the graph.

Every artifact must be builtin-only (no Flex / custom ops): checked on the flatbuffer.
Validation runtime: the LiteRT interpreter (``ai_edge_litert``) with XNNPACK (its default).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ExportError, MissingDependencyError, UnsupportedOptionError, first_line
from ..spec import IOSpec
from .base import Capabilities, ExportOptions, Runner
from .onnx import example_input, graph_model
from .tflite_flatbuffer import (
    embed_metadata,
    fold_transpose_pairs,
    io_details,
    non_builtin_ops,
    op_histogram,
    read_metadata,
    rename_io,
    set_io_types,
)

log = logging.getLogger(__name__)

__all__ = ["TfliteExporter", "convertible_module", "tflite_quant_setup"]


def _require() -> None:
    # litert-torch prints its own progress lines on *stdout* (it would corrupt --json);
    # lsnet-deploy reports progress itself, on stderr
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import ai_edge_litert  # noqa: F401
        import litert_torch  # noqa: F401
        import torchao  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"TFLite export needs {e.name}: pip install -c constraints.txt 'lsnet-deploy[tflite]'"
        ) from e


def convertible_module(model: torch.nn.Module, spec: IOSpec) -> torch.nn.Module:
    """The module litert-torch converts: the channels-last form of the fused model, with
    in-graph normalization for image input and NHWC input when the spec says so."""
    import litert_torch

    from ..channels_last import to_channels_last_form
    from ..lsnet import LSNet

    module: torch.nn.Module = model
    if isinstance(model, LSNet):
        module = to_channels_last_form(model)
    module = graph_model(module, spec)
    if spec.layout == "NHWC":
        module = litert_torch.to_channel_last_io(module, args=[0])
    return module.eval()


def _to_torch(images: torch.Tensor, spec: IOSpec) -> list[torch.Tensor]:
    """Normalized ``(N, 3, H, W)`` images -> one artifact-layout tensor per image."""
    from .onnx import calibration_inputs

    return [torch.from_numpy(x) for x in calibration_inputs(images, spec)]


def _batched(tensors: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Group one-image tensors into ``batch``-image tensors for a static-batch graph; the last
    group is filled up with images from the start (every image is seen at least once)."""
    if batch <= 1 or not tensors:
        return tensors
    padded = list(tensors)
    while len(padded) % batch:
        padded.append(tensors[len(padded) % len(tensors)])
    return [torch.cat(padded[i : i + batch]) for i in range(0, len(padded), batch)]


def tflite_quant_setup(
    module: torch.nn.Module,
    spec: IOSpec,
    calib: torch.Tensor,
    val: torch.Tensor,
    reference: np.ndarray,
) -> Any:
    """A :class:`~lsnet_deploy.quantize.auto.QuantSetup` measuring TFLite INT8 configurations
    on the PT2E fake-quantized PyTorch model (what the integer TFLite graph computes up to
    rounding; ~10x faster than converting each candidate). ``calib`` and ``val`` are
    normalized ``(N, 3, H, W)`` images, ``reference`` the PyTorch logits on ``val``."""
    from ..quantize.auto import QuantSetup
    from ..quantize.tflite_int8 import TfliteInt8Config, group_counts, quantize_pt2e

    calib_inputs = _to_torch(calib, spec)
    val_inputs = _to_torch(val, spec)
    example = calib_inputs[0]

    def logits(config: TfliteInt8Config) -> np.ndarray:
        gm, _ = quantize_pt2e(module, example, calib_inputs, config)
        with torch.no_grad():
            return np.concatenate([gm(x).numpy() for x in val_inputs]).astype(np.float64)

    with torch.no_grad():
        graph = torch.export.export(module, (example,)).module()
    return QuantSetup(logits, group_counts(graph), reference)  # type: ignore[arg-type]


class TfliteExporter:
    """TFLite (``.tflite``): fp32, fp16, full-integer INT8; NHWC or NCHW; static batch."""

    name = "tflite"
    suffix = ".tflite"
    capabilities = Capabilities(
        precisions=("fp32", "fp16", "int8"),
        dynamic_batch=False,
        image_input=True,
        layouts=("NHWC", "NCHW"),
        io_types=("int8", "float32", "uint8"),
    )

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
    ) -> dict[str, Any]:
        _require()
        import litert_torch

        module = convertible_module(model, spec)
        example = example_input(spec, options.batch)
        meta: dict[str, Any] = {"converter": "litert-torch", "form": "channels_last"}
        try:
            if options.precision == "fp32":
                edge = litert_torch.convert(module, (example,))
            elif options.precision == "fp16":
                from litert_torch.generative.quantize import quant_recipes

                edge = litert_torch.convert(module, (example,),
                                            quant_config=quant_recipes.full_fp16_recipe())
            elif options.precision == "int8":
                edge, meta["int8"] = self._int8(module, spec, example, options)
            else:
                raise UnsupportedOptionError(f"TFLite export does not support {options.precision}")
            edge.export(str(out))
        except (UnsupportedOptionError, ExportError, MissingDependencyError):
            raise
        except Exception as e:
            raise ExportError(f"litert-torch conversion failed: {type(e).__name__}: "
                              f"{first_line(e)}") from e
        if options.precision == "int8":
            io = options.io_type or "int8"
            in_type = "int8" if spec.value_range == "0..255" else io  # image input stays uint8
            if (in_type, io) != ("int8", "int8"):
                set_io_types(out, in_type, io)
            meta["io_type"] = io
        meta["transposes_folded"] = fold_transpose_pairs(out)
        rename_io(out, [spec.input_name], list(spec.output_names))
        hist = op_histogram(out)
        bad = non_builtin_ops(hist)
        if bad:
            raise ExportError(f"the TFLite graph has non-builtin ops ({', '.join(bad)}); the "
                              "stock runtime cannot run it")
        io_info = io_details(out)
        meta.update({
            "op_histogram": hist,
            "transposes": hist.get("TRANSPOSE", 0),
            "builtin_only": True,
            "inputs": io_info["inputs"],
            "outputs": io_info["outputs"],
        })
        return meta

    def _int8(
        self, module: torch.nn.Module, spec: IOSpec, example: torch.Tensor,
        options: ExportOptions,
    ) -> tuple[Any, dict[str, Any]]:
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        from ..quantize.auto import auto_exclude
        from ..quantize.tflite_int8 import TfliteInt8Config, group_counts, quantize_pt2e

        if options.calibration is None:
            raise UnsupportedOptionError("INT8 export needs calibration images (--calib DIR)")
        if options.calibration.method != "minmax":
            raise UnsupportedOptionError(
                "TFLite INT8 calibrates with the PT2E observers (histogram for activations, "
                "min/max for weights); --calib-method applies to ONNX only"
            )
        calib = _batched(_to_torch(options.calibration.images, spec), int(example.shape[0]))
        exclude: Sequence[str] = tuple(options.int8_exclude)
        info: dict[str, Any] = {"calibration_source": options.calibration.source,
                                "quantizer": "PT2E (torchao) + litert-torch PT2EQuantizer, "
                                             "symmetric per-channel int8 weights, int8 "
                                             "activations"}
        if options.int8_auto:
            if options.auto_reference is None:
                raise UnsupportedOptionError("--int8-exclude auto needs validation images")
            val, reference = options.auto_reference
            setup = tflite_quant_setup(module, spec, options.calibration.images, val, reference)
            exclude, info["auto"] = auto_exclude(setup, options.min_cosine,
                                                 TfliteInt8Config(exclude=tuple(exclude)))
        config = TfliteInt8Config(exclude=tuple(exclude))
        gm, quantizer = quantize_pt2e(module, example, calib, config)
        info["excluded_groups"] = list(config.exclude)
        info["group_sizes"] = group_counts(gm)
        edge = litert_torch.convert(gm, (example,),
                                    quant_config=QuantConfig(pt2e_quantizer=quantizer))
        return edge, info

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        embed_metadata(path, metadata)

    def read_metadata(self, path: Path) -> dict[str, str]:
        return {k: str(v) for k, v in read_metadata(path).items()}

    def can_run(self) -> bool:
        return True

    def runner(self, path: Path, threads: int | None = None) -> Runner:
        _require()
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
        except Exception as e:
            raise ExportError(f"LiteRT cannot load {path}: {type(e).__name__}: {e}") from e
        inp = interp.get_input_details()[0]
        outp = interp.get_output_details()[0]

        def run(x: np.ndarray) -> np.ndarray:
            x = quantize_input(x, inp["dtype"], inp["quantization"])
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return dequantize_output(interp.get_tensor(outp["index"]), outp["quantization"])

        return run


def quantize_input(x: np.ndarray, dtype: Any, quantization: tuple[float, int]) -> np.ndarray:
    """Bring ``x`` (float, or uint8 pixels) to the dtype of an interpreter input, quantizing
    float values with the input's ``(scale, zero_point)``."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype.kind in "iu" and x.dtype.kind == "f":
        scale, zp = quantization
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def dequantize_output(y: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    """Interpreter output -> float32 (dequantized when integer)."""
    if y.dtype.kind in "iu":
        scale, zp = quantization
        return (y.astype(np.float32) - zp) * scale
    return y.astype(np.float32)
