"""ONNX exporter: ``torch.onnx.export`` (dynamo), onnxslim, optional INT8 static PTQ.

fp32: the fused model is exported with the dynamo exporter at opset 18 (``--opset``) and
simplified with onnxslim. The dynamo exporter only produces a truly dynamic batch when the
example has batch >= 2 *and* ``dynamic_shapes`` is given (with batch 1 it silently fixes the
batch or the output type), so dynamic exports trace a batch of 2.

int8: the fp32 graph goes through ONNX Runtime's ``quant_pre_process`` and ``quantize_static``
(QDQ, per-channel int8 weights, uint8 activations), see :mod:`lsnet_deploy.quantize.onnx_int8`.

Mobile: every export records ONNX Runtime's usability checker verdict per mobile EP (NNAPI,
CoreML ML Program, CoreML NeuralNetwork) in the sidecar's ``export.mobile``; ``--ort`` also
writes the ORT Mobile ``.ort`` and its ``.required_operators.config`` with ORT's converter,
validated like the ``.onnx`` (``export.ort``); see :mod:`lsnet_deploy.exporters.onnx_mobile`.

Validation runtime: ONNX Runtime CPU.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..deps import require
from ..errors import BenchmarkError, ExportError, UnsupportedOptionError, first_line
from ..fidelity import run_artifact
from ..metadata import io_metadata, tensor_entry
from ..quantize.headroom import check_headroom, refuse_int16_options
from ..spec import IOSpec
from ..threads import default_threads
from .base import (
    CalibrationSet,
    Capabilities,
    Exporter,
    ExportOptions,
    ExportResult,
    ExportTask,
    FormatOptions,
    NameParts,
    Precision,
    ReferenceSet,
    Runner,
)
from .inputs import calibration_inputs, example_input, graph_model
from .session import Session, random_input, static_shape

if TYPE_CHECKING:
    from ..quantize.auto import SensitivityProbe

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_OPSET", "OnnxExporter", "OnnxOptions", "calibration_inputs",
           "example_input", "graph_model", "prepare_int8"]

DEFAULT_OPSET = 18
AUTO = "auto"
"""The ``--int8-int16`` value that searches the int16 groups (:func:`~lsnet_deploy.quantize.
auto.auto_exclude` with ``carry="int16"``)."""


def _require() -> None:
    require("onnx", "onnx", "onnxruntime", "onnxscript", "onnxslim", what="ONNX export")


@dataclass(frozen=True)
class OnnxOptions(FormatOptions):
    """ONNX's own options: the opset (``None``: :data:`DEFAULT_OPSET`)."""

    owner: ClassVar[str] = "ONNX"
    opset: int | None = field(default=None, metadata={"flag": "--opset"})
    ort: bool | None = field(default=None, metadata={"flag": "--ort"})
    """Also write the ONNX Runtime Mobile ``.ort`` file and its operator config."""
    int8_int16: tuple[str, ...] | None = field(default=None, metadata={"flag": "--int8-int16"})
    """INT8: op groups (or node names; ``all``) whose activations are int16 (w8a16); ``auto``
    adds groups, cheap ones first, until the ``--min-cosine`` gate is met."""
    int16_headroom: float | None = field(default=None, metadata={"flag": "--int16-headroom"})
    """How many times its calibrated range each int16 activation range spans (``None``:
    :data:`~lsnet_deploy.quantize.headroom.INT16_HEADROOM`); shared with TFLite."""

    @property
    def opset_version(self) -> int:
        return self.opset if self.opset is not None else DEFAULT_OPSET

    def name_parts(self, precision: Precision, num_classes: int) -> NameParts:
        """``_a16`` for an INT8 graph with int16 activations (``lsnet_t_224_int8_a16.onnx``)."""
        return NameParts(extra="_a16" if self.int8_int16 and precision == "int8" else "")

    def check(self, precision: Precision) -> None:
        if self.opset_version < 18:
            raise UnsupportedOptionError(
                f"--opset {self.opset}: the dynamo exporter needs opset >= 18")
        if self.int8_int16 and precision != "int8":
            raise UnsupportedOptionError("--int8-int16 chooses int16 activations of an INT8 "
                                         "export: add --int8")
        if self.int8_int16 and self.ort:
            raise UnsupportedOptionError("--int8-int16 and --ort: ONNX Runtime Mobile's .ort "
                                         "has no int16 kernels; drop one of them")
        if self.int8_int16 and AUTO in self.int8_int16 and "all" in self.int8_int16:
            raise UnsupportedOptionError("--int8-int16 auto with all: 'all' already carries "
                                         "every activation in int16; drop one of them")
        check_headroom(self.int16_headroom, self.int8_int16)

    def check_quantization(self, precision: Precision, exclude: tuple[str, ...]) -> None:
        if self.int8_int16 and AUTO in self.int8_int16 and AUTO in exclude:
            raise UnsupportedOptionError("--int8-exclude auto and --int8-int16 auto: one "
                                         "search per export (float or int16); drop one of them")

    def refuse_for(self, format_name: str, precision: Precision) -> None:
        # TFLite takes both too (16x8), so the plan never asks TFLite
        refuse_int16_options(self.int8_int16, self.int16_headroom, format_name)
        super().refuse_for(format_name, precision)

    def equalizes(self, precision: Precision) -> bool:
        """Every activation in int16 (``--int8-int16 all``) quantizes the fused model as it
        is: 16-bit steps need no equalization (LSNet-T, mean / min cosine, with a 2x int16
        headroom: 0.9983 / 0.9959 without, 0.9981 / 0.9960 with; without headroom the
        equalized ranges clipped the worst photo, 0.9839 -> 0.9661; docs/int8.md). Named
        groups in int16 leave the rest 8-bit, which the equalization helps."""
        return not (self.int8_int16 and "all" in self.int8_int16)

    def gptq_by_default(self, precision: Precision) -> bool:
        """With int16 activations (``--int8-int16``: groups, ``auto`` or ``all``)."""
        return bool(self.int8_int16)

    def failure_hint(self, precision: Precision) -> str | None:
        if AUTO in (self.int8_int16 or ()):
            return (" the groups carried in int16 were not enough (their int8 weights stay): "
                    "try --int8-exclude auto instead (keeps groups in float) or lower "
                    "--min-cosine")
        return None

    def needs_reference(self, precision: Precision) -> bool:
        """The ``.ort`` is validated against PyTorch inside the export, and ``--int8-int16
        auto`` searches against it: both need the held-out reference."""
        return bool(self.ort) or AUTO in (self.int8_int16 or ())

    def companion_names(self, artifact_name: str) -> tuple[str, ...]:
        if not self.ort:
            return ()
        from .onnx_mobile import ort_files

        files = ort_files(Path(artifact_name))
        return (files.model.name, files.config.name)


def _ort(options: ExportOptions) -> bool:
    fmt = options.format
    return isinstance(fmt, OnnxOptions) and bool(fmt.ort)


def _opset(options: ExportOptions) -> int:
    fmt = options.format
    return fmt.opset_version if isinstance(fmt, OnnxOptions) else DEFAULT_OPSET


def export_fp32(
    model: torch.nn.Module, spec: IOSpec, out: Path, options: ExportOptions
) -> dict[str, str]:
    """Export + slim to ``out``; returns the scope-derived op group of every original node."""
    import onnx
    import onnxslim

    from ..quantize.onnx_int8 import scope_groups

    module = graph_model(model, spec)
    batch = 2 if options.dynamic_batch else options.batch
    x = example_input(spec, batch)
    kwargs: dict[str, Any] = {}
    if options.dynamic_batch:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                opset_version=_opset(options),
                input_names=[spec.input_name],
                output_names=list(spec.output_names),
                verbose=False,
                **kwargs,
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed: {type(e).__name__}: {e}") from e
    if program is None:  # pragma: no cover - dynamo export always returns a program
        raise ExportError("torch.onnx.export returned no program")
    proto = program.model_proto
    groups = scope_groups(proto)
    try:
        slim = onnxslim.slim(proto)
    except Exception as e:
        raise ExportError(f"onnxslim failed: {type(e).__name__}: {e}") from e
    assert isinstance(slim, onnx.ModelProto)
    onnx.save(slim, str(out))
    return groups


def prepare_int8(
    model: torch.nn.Module, spec: IOSpec, folder: Path, options: ExportOptions
) -> tuple[Path, Path, dict[str, str]]:
    """Export fp32 to ``folder/fp32.onnx``, run ``quant_pre_process`` into ``folder/pre.onnx``
    and assign every node of the latter to its op group. Returns ``(fp32, pre, groups)``."""
    import onnx

    from ..quantize.onnx_int8 import assign_groups, preprocess_for_quant

    fp32, pre = folder / "fp32.onnx", folder / "pre.onnx"
    known = export_fp32(model, spec, fp32, options)
    preprocess_for_quant(fp32, pre)
    return fp32, pre, assign_groups(onnx.load(str(pre)), known)


class OnnxExporter(Exporter):
    """ONNX (``.onnx``), fp32 and INT8, static or dynamic batch, optional image input.
    Runtime: ONNX Runtime, CPU execution provider."""

    name = "onnx"
    suffixes = (".onnx",)
    runtime = "onnxruntime"
    extra = "onnx"
    tools = ("onnx", "onnxruntime", "onnxscript", "onnxslim")
    capabilities = Capabilities(
        precisions=("fp32", "int8"), dynamic_batch=True, image_input=True, layouts=("NCHW",),
        bench_precisions=("fp32", "int8"), sensitivity=True, int8_exclude_nodes=True,
        calib_methods=("minmax", "percentile"),
    )
    options_type = OnnxOptions

    def export(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, task: ExportTask
    ) -> ExportResult:
        _require()
        import onnx

        options = task.options
        meta: dict[str, Any] = {"opset": _opset(options)}
        if options.precision == "fp32":
            export_fp32(model, spec, out, options)
        elif options.precision == "int8":
            meta["int8"] = self._export_int8(model, spec, out, task)
        else:
            raise UnsupportedOptionError(
                f"ONNX export supports {', '.join(self.capabilities.precisions)}, "
                f"not {options.precision}"
            )
        proto = onnx.load(str(out))
        meta["op_histogram"] = dict(Counter(n.op_type for n in proto.graph.node).most_common())
        meta["mobile"] = _mobile_usability(out)
        companions: tuple[Path, ...] = ()
        if _ort(options):
            meta["ort"], companions = self._export_ort(spec, out, task)
        return ExportResult(details=meta, metadata=_graph_io(proto), companions=companions)

    def _export_ort(self, spec: IOSpec, out: Path, task: ExportTask
                    ) -> tuple[dict[str, Any], tuple[Path, ...]]:
        """The ONNX Runtime Mobile ``.ort`` and its operator config next to ``out``,
        validated against PyTorch with the artifact's own gate."""
        from .onnx_mobile import convert_to_ort, validate_ort

        reference = task.data.reference
        if reference is None:
            raise ExportError("--ort validates the .ort on the held-out images, but the export "
                              "was planned without them (a bug: please report it)")
        files = convert_to_ort(out)
        options = task.options
        record = validate_ort(files, spec, options.precision, options.min_cosine, reference,
                              self.runner(out), options.min_photo_cosine)
        log.info("%s: %s", files.model.name, record["validation"]["summary"])
        return record, (files.model, files.config)

    def _export_int8(
        self, model: torch.nn.Module, spec: IOSpec, out: Path, task: ExportTask
    ) -> dict[str, Any]:
        from ..quantize.auto import CARRIERS, auto_exclude
        from ..quantize.onnx_int8 import Int8Config, onnx_setup, quantize_int8

        options, calibration = task.options, task.data.calibration
        if calibration is None:
            raise UnsupportedOptionError("INT8 export needs calibration images (--calib DIR)")
        with tempfile.TemporaryDirectory(prefix="lsnet-onnx-") as tmp:
            _, pre, groups = prepare_int8(model, spec, Path(tmp), options)
            calib = calibration_inputs(calibration.images, spec)
            fmt = options.format
            int16 = tuple(fmt.int8_int16 or ()) if isinstance(fmt, OnnxOptions) else ()
            carry = "int16" if AUTO in int16 else "float" if options.int8_auto else None
            headroom = fmt.int16_headroom if isinstance(fmt, OnnxOptions) else None
            config = Int8Config(method=calibration.method, percentile=calibration.percentile,
                                exclude=tuple(options.int8_exclude),
                                int16=tuple(g for g in int16 if g != AUTO),
                                int16_headroom=headroom)
            auto_report, ranges = None, {}  # the int16 ranges, if the search computes them
            if carry is not None:
                reference = task.data.reference
                if reference is None:
                    flag = "--int8-int16" if carry == "int16" else "--int8-exclude"
                    raise UnsupportedOptionError(f"{flag} auto needs validation images")
                setup = onnx_setup(pre, groups, spec, calib, reference.images, reference.logits,
                                   self.runner, ranges)
                chosen, auto_report = auto_exclude(setup, options.min_cosine, config,
                                                   task.progress, carry,
                                                   options.min_photo_cosine)
                config = replace(config, **{CARRIERS[carry][0]: chosen})
            info = quantize_int8(pre, out, groups, spec.input_name, calib, config,
                                 task.progress, ranges or None)
            info["calibration_source"] = calibration.source
            info["group_sizes"] = dict(Counter(groups.values()))
            if auto_report is not None:
                info["auto"] = auto_report
            return info

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        import onnx

        proto = onnx.load(str(path))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "lsnet-deploy"
        onnx.save(proto, str(path))
        from .onnx_mobile import refresh_ort

        refresh_ort(path)  # the .ort (--ort) carries the same metadata

    def read_metadata(self, path: Path) -> dict[str, str]:
        require("onnx", "onnx", what="reading ONNX metadata")
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}

    def runner(self, path: Path, threads: int | None = None,
               accelerator: str | None = None) -> Runner:
        try:
            session = _load(path, threads)
        except BenchmarkError as e:
            raise ExportError(str(e)) from e
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {name: x})[0])

        return run

    def bench_session(self, path: Path, threads: int | None, batch: int | None,
                      accelerator: str | None = None) -> Session:
        t0 = time.perf_counter()
        sess = _load(path, threads)
        load_ms = (time.perf_counter() - t0) * 1e3
        rng = np.random.default_rng(0)
        feeds = {}
        first_shape: list[int] = []
        for inp in sess.get_inputs():
            if inp.type not in _ORT_DTYPES:
                raise BenchmarkError(f"{path.name}: input {inp.name!r} has type {inp.type}, "
                                     "which the benchmark cannot fill")
            shape = static_shape(inp.name, list(inp.shape), batch, path)
            feeds[inp.name] = random_input(shape, _ORT_DTYPES[inp.type], rng)
            first_shape = first_shape or shape
        return Session(lambda: sess.run(None, feeds), first_shape,
                       first_shape[0] if first_shape else 1, load_ms)

    def sensitivity_probe(self, model: torch.nn.Module, img_size: tuple[int, int],
                          num_classes: int, calibration: CalibrationSet,
                          reference: ReferenceSet, folder: Path) -> SensitivityProbe:
        """Quantized with ONNX Runtime, each candidate run in ONNX Runtime."""
        from ..quantize.auto import SensitivityProbe
        from ..quantize.onnx_int8 import Int8Config, onnx_setup

        _require()
        spec = IOSpec(img_size=img_size, num_classes=num_classes)
        fp32, prep, groups = prepare_int8(model, spec, folder, ExportOptions())
        fp32_logits = run_artifact(self.runner(fp32), reference.images, spec)
        setup = onnx_setup(prep, groups, spec, calibration_inputs(calibration.images, spec),
                           reference.images, reference.logits, self.runner)
        return SensitivityProbe(setup, Int8Config(method=calibration.method), fp32_logits,
                                calibration.method)

    def precision_of(self, path: Path) -> str:
        """From the graph: quantization ops -> int8, fp16 initializers -> fp16, else fp32."""
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        ops = {n.op_type for n in proto.graph.node}
        if ops & _ONNX_QUANT_OPS:
            return "int8"
        types = {t.data_type for t in proto.graph.initializer}
        if onnx.TensorProto.FLOAT16 in types:
            return "fp16"
        return "fp32" if types else "unknown"


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(double)": np.float64, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
               "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}

_ONNX_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                   "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def _graph_io(proto: Any) -> dict[str, Any]:
    """The metadata's ``inputs`` / ``outputs`` as the graph declares them (a symbolic first
    dimension is the dynamic batch, ``"batch"``)."""
    from onnx import helper

    initializers = {i.name for i in proto.graph.initializer}

    def entry(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        shape: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else ("batch" if i == 0 else d.dim_param)
            for i, d in enumerate(tensor.shape.dim)]
        return tensor_entry(value.name, shape,
                            helper.tensor_dtype_to_np_dtype(tensor.elem_type).name)

    return io_metadata([entry(v) for v in proto.graph.input if v.name not in initializers],
                       [entry(v) for v in proto.graph.output])


def _mobile_usability(path: Path) -> dict[str, Any]:
    """ORT's usability checker per mobile EP (the sidecar's ``export.mobile``); a checker that
    fails is recorded (and logged), it does not fail the export."""
    from .onnx_mobile import ASSERTED, check_usability

    try:
        usability = check_usability(path)
    except ExportError as e:
        log.warning("%s", e)
        return {"error": str(e)}
    for key in ASSERTED:
        ep = usability.eps[key]
        log.debug("%s: %s EP: %d partition(s), %d/%d nodes, %s", path.name, ep.ep,
                  ep.partitions, ep.supported_nodes, ep.nodes, ep.verdict)
    return usability.to_dict()


def _load(path: Path, threads: int | None) -> Any:
    """An ONNX Runtime session on the CPU execution provider: ``intra_op_num_threads=threads``
    (``None``: the ``LSNET_DEPLOY_THREADS`` budget, else ONNX Runtime's default),
    ``inter_op_num_threads=1``, all graph optimizations (the default). The one loader of
    validation and benchmarks; raises :class:`BenchmarkError` when the file does not load."""
    [ort] = require("onnx", "onnxruntime", what="running ONNX models")
    opts = ort.SessionOptions()
    threads = threads or default_threads()  # LSNET_DEPLOY_THREADS when none is named
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise BenchmarkError(f"{path}: ONNX Runtime cannot load it: {type(e).__name__}: "
                             f"{first_line(e)}") from e
