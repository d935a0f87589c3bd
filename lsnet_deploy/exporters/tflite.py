"""TFLite exporter: litert-torch conversion (fp32, fp16 weights, full-integer INT8 and 16x8).

The fused model is first rewritten into its channels-last form
(:mod:`lsnet_deploy.channels_last`), so that the NHWC graph litert-torch produces has no
layout transposes in the body. Inputs are NHWC by default (what Android/iOS camera pipelines
hand over; ``--layout nchw`` keeps NCHW and costs one input transpose).

* fp32: ``litert_torch.convert``.
* fp16: the same with ``quant_recipes.full_fp16_recipe()``: fp16 weights, each followed by a
  DEQUANTIZE to fp32 (GPU delegates and XNNPACK then run fp16 or fp32 kernels as they like).
* int8: PT2E static quantization calibrated on real photos
  (:mod:`lsnet_deploy.quantize.tflite_int8`), converted with the quantizer so every op gets an
  integer kernel: int8 activations, per-channel int8 weights, int32 biases.
* int8 with ``--int8-int16 all``: LiteRT's 16x8 (int16 activations, per-channel int8 weights,
  int64 biases), written by ai-edge-quantizer from the float file
  (:mod:`lsnet_deploy.quantize.tflite_16x8`); the fused model is not channel-equalized.

App-ready by default (MediaPipe Tasks ``ImageClassifier``, the LiteRT Support Library): the
input is a uint8 RGB image ``(1, H, W, 3)`` with the normalization inside the graph
(``--tensor-input``: the normalized float tensor), a 1000-class model ends in a SOFTMAX whose
output ``probabilities`` is float32 (``--logits``: the raw ``logits``), and the file carries
standard TFLite Metadata (:mod:`~lsnet_deploy.exporters.tflite_metadata`, with the labels)
next to lsnet-deploy's JSON entry. INT8 keeps the integer body; its boundary type ``--io``
(default ``float32``) is that of the output and of a tensor input, added as QUANTIZE /
DEQUANTIZE ops (:func:`~lsnet_deploy.exporters.tflite_flatbuffer.set_io_types`); the softmax
runs in float on the dequantized int8 logits. ``--io uint8`` / ``int8`` are the raw integer
forms: quantized logits out (their quantization parameters go to the sidecar), and with
``--tensor-input --io int8`` the all-int8 graph.

Every artifact must be builtin-only (no Flex / custom ops): checked on the flatbuffer.
Validation runtime: the LiteRT interpreter (``ai_edge_litert``) with XNNPACK (its default);
a classifier's runner returns log-probabilities (:meth:`TfliteExporter.output_kind`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..deps import require
from ..errors import (
    BenchmarkError,
    ExportError,
    MissingDependencyError,
    UnsupportedOptionError,
    first_line,
)
from ..metadata import from_native, io_metadata, to_native
from ..spec import IOSpec
from ..threads import default_threads
from .base import (
    CalibrationSet,
    Capabilities,
    Exporter,
    ExportOptions,
    ExportResult,
    ExportTask,
    OutputKind,
    ReferenceSet,
    Runner,
)
from .inputs import batched, calibration_inputs, example_input, graph_model
from .session import Session, native_stderr_silenced, random_input
from .tflite_flatbuffer import (
    append_softmax,
    constant_precision,
    embed_metadata,
    fold_transpose_pairs,
    io_details,
    non_builtin_ops,
    op_histogram,
    output_producer,
    read_metadata,
    rename_io,
    set_io_types,
)
from .tflite_metadata import (
    LABELS_FILE,
    STANDARD_METADATA_NAME,
    standard_metadata,
    write_standard_metadata,
)
from .tflite_options import IO_TYPES, TfliteOptions
from .tflite_xnnpack import xnnpack_partitions

if TYPE_CHECKING:
    from ..quantize.auto import SensitivityProbe

log = logging.getLogger(__name__)

__all__ = ["IO_TYPES", "TfliteExporter", "TfliteOptions", "convertible_module",
           "tflite_quant_setup"]


def _require() -> None:
    # litert-torch prints its own progress lines on *stdout* (it would corrupt --json);
    # lsnet-deploy reports progress itself, on stderr
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    require("tflite", "ai_edge_litert", "litert_torch", "torchao", what="TFLite export")


def convertible_module(model: torch.nn.Module, spec: IOSpec, bands: bool = True
                       ) -> torch.nn.Module:
    """The module litert-torch converts: the channels-last form of the fused model (LKP's 7x7
    depthwise in row bands unless ``bands`` is ``False``), with in-graph normalization for
    image input and NHWC input when the spec says so."""
    import litert_torch

    from ..channels_last import to_channels_last_form
    from ..lsnet import LSNet

    module: torch.nn.Module = model
    if isinstance(model, LSNet):
        module = to_channels_last_form(model, bands=bands)
    module = graph_model(module, spec)
    if spec.layout == "NHWC":
        module = litert_torch.to_channel_last_io(module, args=[0])
    return module.eval()


def _to_torch(images: torch.Tensor, spec: IOSpec) -> list[torch.Tensor]:
    """Normalized ``(N, 3, H, W)`` images -> one artifact-layout tensor per image."""
    return [torch.from_numpy(x) for x in calibration_inputs(images, spec)]


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
    from ..quantize.tflite_int8 import (
        TfliteInt8Config,
        exported_graph,
        group_counts,
        quantize_pt2e,
    )

    calib_inputs = _to_torch(calib, spec)
    val_inputs = _to_torch(val, spec)
    example = calib_inputs[0]
    graph = exported_graph(module, example)  # once: each configuration quantizes a copy

    def logits(config: TfliteInt8Config) -> np.ndarray:
        gm, _ = quantize_pt2e(module, example, calib_inputs, config, graph=graph)
        with torch.no_grad():
            return np.concatenate([gm(x).numpy() for x in val_inputs]).astype(np.float64)

    return QuantSetup(logits, group_counts(graph), reference)  # type: ignore[arg-type]


def _gpu_verdict(path: Path) -> dict[str, Any]:
    """The LiteRT analyzer's GPU-delegate verdict (the sidecar's ``export.gpu``); an analyzer
    that fails is recorded and logged, it does not fail the export."""
    from .tflite_gpu import gpu_compatibility

    try:
        verdict = gpu_compatibility(path)
    except ExportError as e:
        log.warning("%s", e)
        return {"error": str(e)}
    if not verdict["compatible"]:
        log.warning("%s: the LiteRT analyzer expects %d op(s) to fall back from the GPU "
                    "delegate: %s", path.name, verdict["warning_count"],
                    "; ".join(verdict["warnings"][:3]))
    return verdict


def _boundary(out: Path, spec: IOSpec, options: ExportOptions) -> dict[str, Any]:
    """The boundary of the converted graph: INT8 input/output types (:data:`IO_TYPES`) and
    the classifier head. Returns the entries for the artifact's metadata (what the standard
    TFLite Metadata is then derived from: :meth:`TfliteExporter.embed_metadata`)."""
    fmt = options.format if isinstance(options.format, TfliteOptions) else TfliteOptions()
    classifier = fmt.is_classifier(spec.num_classes)
    extra: dict[str, Any] = {"classifier": classifier, "standard_metadata": STANDARD_METADATA_NAME,
                             "labels_file": LABELS_FILE,
                             "output_kind": "probabilities" if classifier else "logits"}
    if options.precision == "int8":
        io = fmt.io_type
        in_type = "int8" if spec.value_range == "0..255" else io  # an image input stays uint8
        if (in_type, io) != ("int8", "int8"):
            set_io_types(out, in_type, io)
        extra["io_type"] = io
    if classifier:
        append_softmax(out)
    return extra


class TfliteExporter(Exporter):
    """TFLite (``.tflite``): fp32, fp16, full-integer INT8 (and 16x8); NHWC or NCHW; static
    batch.
    Runtime: the LiteRT interpreter with XNNPACK."""

    name = "tflite"
    suffixes = (".tflite",)
    runtime = "litert"
    extra = "tflite"
    tools = ("litert-torch", "ai-edge-litert", "torchao", "ai-edge-quantizer")
    capabilities = Capabilities(
        precisions=("fp32", "fp16", "int8"),
        dynamic_batch=False,
        image_input=True,
        layouts=("NHWC", "NCHW"),
        default_image_input=True,
        bench_precisions=("fp32", "int8"), sensitivity=True,
    )
    options_type = TfliteOptions

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, task: ExportTask
    ) -> ExportResult:
        _require()
        import litert_torch

        options = task.options
        # GPTQ rounded the weights to each layer's own per-channel grid: a 7x7 split into bands
        # would be quantized again on each band's grid, so it stays one convolution
        bands = not (task.data.preparation or {}).get("weight_rounding")
        module = convertible_module(model, spec, bands)
        example = example_input(spec, options.batch)
        meta: dict[str, Any] = {"converter": "litert-torch", "form": "channels_last",
                                "depthwise_bands": bands}
        try:
            if options.precision == "fp32":
                edge = litert_torch.convert(module, (example,))
            elif options.precision == "fp16":
                from litert_torch.generative.quantize import quant_recipes

                edge = litert_torch.convert(module, (example,),
                                            quant_config=quant_recipes.full_fp16_recipe())
            elif options.precision == "int8" and _a16(options):
                edge, meta["int8"] = None, self._export_16x8(module, spec, example, task, out)
            elif options.precision == "int8":
                edge, meta["int8"] = self._int8(module, spec, example, task)
            else:
                raise UnsupportedOptionError(f"TFLite export does not support {options.precision}")
            if edge is not None:
                edge.export(str(out))
        except (UnsupportedOptionError, ExportError, MissingDependencyError):
            raise
        except Exception as e:
            raise ExportError(f"litert-torch conversion failed: {type(e).__name__}: "
                              f"{first_line(e)}") from e
        extra = _boundary(out, spec, options)
        meta.update(extra, transposes_folded=fold_transpose_pairs(out))
        rename_io(out, [spec.input_name], list(spec.output_names))
        hist = op_histogram(out)
        bad = non_builtin_ops(hist)
        if bad:
            raise ExportError(f"the TFLite graph has non-builtin ops ({', '.join(bad)}); the "
                              "stock runtime cannot run it")
        io_info = io_details(out)  # the boundary as the file declares it: the one input dtype
        extra.update(io_metadata(io_info["inputs"], io_info["outputs"]))
        meta.update({"op_histogram": hist, "transposes": hist.get("TRANSPOSE", 0),
                     "builtin_only": True, **io_info, "gpu": _gpu_verdict(out),
                     "xnnpack": xnnpack_partitions(out)})
        return ExportResult(details=meta, metadata=extra)

    def _int8(
        self, module: torch.nn.Module, spec: IOSpec, example: torch.Tensor, task: ExportTask,
    ) -> tuple[Any, dict[str, Any]]:
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        from ..quantize.auto import auto_exclude
        from ..quantize.tflite_int8 import TfliteInt8Config, group_counts, quantize_pt2e

        options, calibration = task.options, task.data.calibration
        if calibration is None:  # --calib-method: refused by the plan (Capabilities.calib_methods)
            raise UnsupportedOptionError("INT8 export needs calibration images (--calib DIR)")
        calib = batched(_to_torch(calibration.images, spec), int(example.shape[0]))
        exclude: Sequence[str] = tuple(options.int8_exclude)
        info: dict[str, Any] = {"calibration_source": calibration.source,
                                "quantizer": "PT2E (torchao) + litert-torch PT2EQuantizer, "
                                             "symmetric per-channel int8 weights, int8 "
                                             "activations"}
        if options.int8_auto:
            reference = task.data.reference
            if reference is None:
                raise UnsupportedOptionError("--int8-exclude auto needs validation images")
            setup = tflite_quant_setup(module, spec, calibration.images, reference.images,
                                       reference.logits)
            exclude, info["auto"] = auto_exclude(setup, options.min_cosine,
                                                 TfliteInt8Config(exclude=tuple(exclude)),
                                                 task.progress,
                                                 min_photo_cosine=options.min_photo_cosine)
        config = TfliteInt8Config(exclude=tuple(exclude))
        gm, quantizer = quantize_pt2e(module, example, calib, config, task.progress)
        info["excluded_groups"] = list(config.exclude)
        info["group_sizes"] = group_counts(gm)
        edge = litert_torch.convert(gm, (example,),
                                    quant_config=QuantConfig(pt2e_quantizer=quantizer))
        return edge, info

    def _export_16x8(self, module: torch.nn.Module, spec: IOSpec, example: torch.Tensor,
                     task: ExportTask, out: Path) -> dict[str, Any]:
        """16x8 (:mod:`~lsnet_deploy.quantize.tflite_16x8`): the float file of ``module``,
        quantized by ai-edge-quantizer into ``out``. Returns the sidecar's ``export.int8``."""
        import litert_torch

        from ..quantize.tflite_16x8 import quantize_16x8

        calibration = task.data.calibration
        if calibration is None:  # --calib-method: refused by the plan (Capabilities.calib_methods)
            raise UnsupportedOptionError("INT8 export needs calibration images (--calib DIR)")
        calib = batched(_to_torch(calibration.images, spec), int(example.shape[0]))
        with tempfile.TemporaryDirectory(prefix="lsnet-deploy-16x8-") as tmp:
            float_path = Path(tmp) / "float.tflite"
            litert_torch.convert(module, (example,)).export(str(float_path))
            fmt = task.options.format
            info = quantize_16x8(float_path, out, [x.numpy() for x in calib],
                                 default_threads(), task.progress,
                                 fmt.int16_headroom if isinstance(fmt, TfliteOptions) else None)
        info["calibration_photos"] = int(calibration.images.shape[0])  # not batches
        log.warning("%s: 16x8 has no XNNPACK kernels; on a CPU it runs LiteRT's reference "
                    "kernels (LSNet-T/S/B: 17-21x fp32's time). It is a file for "
                    "int16-capable accelerators (docs/benchmarks.md)", out.name)
        return {"calibration_source": calibration.source, **info, "equalized": False}

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        """lsnet-deploy's JSON entry, and the standard TFLite Metadata derived from it (when
        ``metadata`` describes an lsnet-deploy artifact). The entry is one JSON object of
        the decoded values (``"img_size": [224, 224]``), not of the native strings."""
        meta = from_native(metadata)
        embed_metadata(path, meta)
        if "img_size" in meta and meta.get("standard_metadata") == STANDARD_METADATA_NAME:
            write_standard_metadata(path, standard_metadata(meta, bool(meta.get("classifier"))))

    def read_metadata(self, path: Path) -> dict[str, str]:
        """The entry as native strings; files written before it held decoded values stored
        the strings themselves, which are read as they are."""
        return to_native(read_metadata(path))

    def runner(self, path: Path, threads: int | None = None,
               accelerator: str | None = None) -> Runner:
        threads = threads or default_threads()  # a bad budget: its own error, not "cannot load"
        try:
            interp = _interpreter(path, threads)
            interp.allocate_tensors()
        except Exception as e:
            raise ExportError(f"LiteRT cannot load {path}: {type(e).__name__}: "
                              f"{first_line(e)}") from e
        inp = interp.get_input_details()[0]
        outp = interp.get_output_details()[0]
        probabilities = output_producer(path) == "SOFTMAX"

        def run(x: np.ndarray) -> np.ndarray:
            x = quantize_input(x, inp["dtype"], inp["quantization"])
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            y = dequantize_output(interp.get_tensor(outp["index"]), outp["quantization"])
            return log_probabilities(y) if probabilities else y

        return run

    def output_kind(self, details: dict[str, Any]) -> OutputKind:
        """A classifier artifact's runner returns log-probabilities."""
        return "log_probs" if details.get("classifier") else "logits"

    def bench_session(self, path: Path, threads: int | None, batch: int | None,
                      accelerator: str | None = None) -> Session:
        t0 = time.perf_counter()
        try:
            interp = _interpreter(path, threads)
            for d in interp.get_input_details():
                if batch is not None and len(d["shape"]) and int(d["shape"][0]) != batch:
                    interp.resize_tensor_input(d["index"], [batch, *d["shape"][1:]],
                                               strict=True)
            interp.allocate_tensors()
        except MissingDependencyError:
            raise
        except Exception as e:
            what = f" at batch {batch}" if batch is not None else ""
            raise BenchmarkError(
                f"{path}: LiteRT cannot load it{what}: {first_line(e)}") from e
        load_ms = (time.perf_counter() - t0) * 1e3
        rng = np.random.default_rng(0)
        first_shape: list[int] = []
        for d in interp.get_input_details():
            shape = [int(s) for s in d["shape"]]
            interp.set_tensor(d["index"], random_input(shape, d["dtype"], rng))
            first_shape = first_shape or shape
        return Session(interp.invoke, first_shape, first_shape[0] if first_shape else 1, load_ms)

    def sensitivity_probe(self, model: torch.nn.Module, img_size: tuple[int, int],
                          num_classes: int, calibration: CalibrationSet,
                          reference: ReferenceSet, folder: Path) -> SensitivityProbe:
        """PT2E-quantized, measured on the fake-quantized PyTorch model."""
        from ..fidelity import to_artifact_input
        from ..quantize.auto import SensitivityProbe
        from ..quantize.tflite_int8 import TfliteInt8Config

        _require()
        if calibration.method != "minmax":
            raise UnsupportedOptionError("--calib-method applies to ONNX only")
        spec = IOSpec(img_size=img_size, num_classes=num_classes, layout="NHWC")
        module = convertible_module(model, spec)
        with torch.no_grad():
            fp32 = module(torch.from_numpy(to_artifact_input(reference.images, spec))).numpy()
        setup = tflite_quant_setup(module, spec, calibration.images, reference.images,
                                   reference.logits)
        return SensitivityProbe(setup, TfliteInt8Config(), fp32, "PT2E observers")

    def precision_of(self, path: Path) -> str:
        """From the constant tensors' types (int8/uint8 -> int8, float16 -> fp16, else fp32):
        the weights, since a float model may well take a uint8 image."""
        return constant_precision(path)


def _a16(options: ExportOptions) -> bool:
    return isinstance(options.format, TfliteOptions) and options.format.a16


def _interpreter(path: Path, threads: int | None) -> Any:
    """The LiteRT interpreter (``num_threads=threads``, ``None``: the ``LSNET_DEPLOY_THREADS``
    budget, else LiteRT's default; its default XNNPACK delegate), not yet
    allocated: the one loader of validation and benchmarks."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    require("tflite", "ai_edge_litert", what="running TFLite models")
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
        return Interpreter(model_path=str(path), num_threads=threads or default_threads())


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


def log_probabilities(p: np.ndarray) -> np.ndarray:
    """Float32 probabilities -> log-probabilities (float64). A float32 softmax underflows to 0
    only below ~1e-38 (log-probability < -87, far below any top-5 class); such entries become
    ``log`` of the smallest normal float32 instead of ``-inf``, so the comparison stays finite
    and still fails when the artifact's probabilities are wrong."""
    tiny = float(np.finfo(np.float32).tiny)
    return np.log(np.maximum(p.astype(np.float64), tiny))


def dequantize_output(y: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    """Interpreter output -> float32 (dequantized when integer)."""
    if y.dtype.kind in "iu":
        scale, zp = quantization
        return (y.astype(np.float32) - zp) * scale
    return y.astype(np.float32)
