"""ExecuTorch exporter: ``torch.export`` + ``to_edge_transform_and_lower`` to a ``.pte`` program
with the XNNPACK backend (fp32 and INT8).

The format: an ExecuTorch program (a flatbuffer ``Program`` plus data segments) that the
ExecuTorch runtime (Android, iOS, embedded, or the Python ``executorch.runtime`` here) loads and
runs. The input is static: ``(B, 3, H, W)`` NCHW float32 normalized images, or uint8 0..255
RGB pixels with ``--image-input`` (normalized inside the graph); the output is ``(B, classes)``
float32 logits.

* fp32: the fused model in its portable form (:mod:`lsnet_deploy.portable`: no tensor of
  rank > 4, SKA's zero padding as a ``pad`` op) is exported with ``torch.export`` and lowered
  with the ``XnnpackPartitioner``: every subgraph XNNPACK supports becomes a delegate blob.
* int8: the same portable form, PT2E static quantization (torchao's ``prepare_pt2e`` /
  ``convert_pt2e``) with the ``XNNPACKQuantizer`` (symmetric per-channel int8 weights, int8
  activations), calibrated on the calibration photos at the static batch, then lowered like
  fp32 (without XNNPACK's ``pad``, :func:`_partitioner`). Two additions to the stock
  quantizer: slices share their input's quantization parameters, as XNNPACK's quantized slice
  requires (:func:`_share_slice_qparams`; without it the program does not load), and the
  written-out GroupNorm stays float, as the canonical model's ``native_group_norm`` always did
  (:data:`_FLOAT_MODULES`).

What is delegated: convolutions, linear layers, element-wise ops, slices, pooling, softmax (and
their quantized forms). What XNNPACK does not take (on LSNet's portable form: the GroupNorm's
``mean`` over axes 1 and 3, the rank-4 ``matmul``'s ``expand_copy``, the attention's
``split``; in INT8 also the ``pad``) runs on ExecuTorch's portable CPU kernels: correct,
slower. The export details count both (``delegated_subgraphs``, ``non_delegated_ops``).

Native metadata: an extra *constant method* ``lsnet_deploy_metadata`` (an execution plan
without inputs or instructions that returns one string EValue, the JSON of the metadata dict),
the same structure ``to_edge(..., constant_methods=...)`` emits. It is added after export by
deserializing the program with ExecuTorch's own serializer
(``executorch.exir._serialize._program``), appending the plan and serializing it again
(segments re-extracted, 128-byte segment alignment, as ``to_executorch`` writes them). Apps read
it with ``program.load_method("lsnet_deploy_metadata").execute([])``; :meth:`read_metadata`
reads it from the file without running anything.

Runtime and threads: validation and benchmarks run the program in ``executorch.runtime``
(XNNPACK kernels, portable kernels for the rest). XNNPACK's thread pool is process-wide:
``threads=n`` resets it to ``n`` threads; ``None`` uses the default, one per core (and a
benchmark session restores that default when closed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from ..metadata import from_native, to_native
from ..portable import GroupNormRank4
from ..spec import IOSpec
from ..threads import default_threads
from .base import Capabilities, Exporter, ExportResult, ExportTask, Runner
from .inputs import batched, calibration_inputs, example_input, graph_model
from .session import Session, native_stderr_silenced, random_input

log = logging.getLogger(__name__)

__all__ = ["METADATA_METHOD", "ExecutorchExporter", "delegation_summary"]

METADATA_METHOD = "lsnet_deploy_metadata"
"""Name of the constant method that holds the metadata JSON."""

QUANTIZER = ("PT2E (torchao) + XNNPACKQuantizer, symmetric per-channel int8 weights, "
             "int8 activations; slices keep their input's quantization, GroupNorm in float")

_SCALAR_TYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64,
                 5: np.float16, 6: np.float32, 7: np.float64, 11: np.bool_}
"""ExecuTorch ``ScalarType`` codes (``TensorInfo.dtype()``) -> numpy dtypes."""


def _require() -> None:
    require("executorch", "executorch.exir", "executorch.runtime", "torchao",
            what="ExecuTorch export")


def _version() -> str:
    from executorch.version import __version__

    return str(__version__)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the pytree ``FutureWarning`` flood of the lowering passes (errors still raise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def delegation_summary(edge: Any) -> dict[str, Any]:
    """What XNNPACK took: the number of delegate calls (``delegated_subgraphs``) and the count
    of every other op left to the portable kernels (``non_delegated_ops``), from the lowered
    edge program's graph."""
    delegated = 0
    rest: Counter[str] = Counter()
    for node in edge.exported_program().graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            delegated += 1
        elif name != "getitem":
            rest[name] += 1
    return {"delegated_subgraphs": delegated, "non_delegated_ops": dict(rest.most_common())}


def _partitioner(int8: bool) -> Any:
    """The XNNPACK partitioner. For INT8 without its zero-padding config: XNNPACK (executorch
    1.4) takes ``constant_pad_nd`` as an fp32-only op, yet in a quantized graph it is handed
    int8 tensors and the program then fails to load ("Failed to create StaticConstantPad
    node ... xnn_status_invalid_parameter"); left to the portable kernels, it runs."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    if not int8:
        return XnnpackPartitioner()
    configs = [c for c in ALL_PARTITIONER_CONFIGS
               if getattr(c, "target_name", "") != "constant_pad_nd.default"]
    return XnnpackPartitioner(configs=configs)


def _lower(module: torch.nn.Module, example: torch.Tensor,
           int8: bool) -> tuple[dict[str, Any], bytes]:
    """``torch.export`` + XNNPACK lowering of ``module`` at ``example``'s shape; returns the
    :func:`delegation_summary` (taken before ``to_executorch`` rewrites ops into their ``out``
    variants) and the ``.pte`` bytes."""
    from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad():
        program = torch.export.export(module, (example,))
    edge = to_edge_transform_and_lower(program, partitioner=[_partitioner(int8)])
    summary = delegation_summary(edge)
    return summary, bytes(edge.to_executorch().buffer)

def _share_slice_qparams(graph: torch.fx.GraphModule) -> None:
    """Give every ``aten.slice.Tensor`` whose input is quantized its input's quantization
    parameters (a :class:`SharedQuantizationSpec`), as ``propagate_annotation`` does for the
    other data-movement ops, then propagate again to the views after them.

    Why: XNNPACK's static slice requires equal input and output quantization parameters, and
    executorch 1.4's ``XNNPACKQuantizer`` shares them only for ``slice_copy`` (the edge op
    name, which it never sees before ``to_edge``), not for ``aten.slice.Tensor``. With the
    stock quantizer, the portable form's tap slices of SKA's (quantized) kernels,
    ``w[:, k : k + 1]``, each get their own observer, and the program builds but does not load
    ("Failed to create static slice node ... xnn_status_invalid_parameter"). Upstream fix:
    pytorch/executorch#21568. (With the GroupNorm float, :data:`_FLOAT_MODULES`, those slices
    take float kernels; this keeps every slice of a quantized tensor loadable.)"""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        propagate_annotation,
    )
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    for node in graph.graph.nodes:  # topological order: chained slices share in turn
        if node.op != "call_function" or node.target != torch.ops.aten.slice.Tensor:
            continue
        prev = node.args[0]
        if not isinstance(prev, torch.fx.Node):
            continue
        annotation = prev.meta.get(Q_ANNOTATION_KEY)
        if annotation is None or annotation.output_qspec is None:
            continue
        own = node.meta.get(Q_ANNOTATION_KEY)
        if own is not None and own._annotated:
            continue
        shared = SharedQuantizationSpec(prev)
        node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            input_qspec_map={prev: shared}, output_qspec=shared, _annotated=True)
    propagate_annotation(graph)


_FLOAT_MODULES = frozenset({f"{GroupNormRank4.__module__}.{GroupNormRank4.__qualname__}"})
"""Modules whose ops stay float in INT8: the portable form's GroupNorm, written out as
element-wise ops the quantizer would otherwise quantize one by one (its variance included),
where the canonical model's ``native_group_norm`` was never quantized. Quantized, it costs
~0.002 of mean logit cosine on the tiny model (0.9865 vs 0.9886)."""


def _quantized_node(node: torch.fx.Node) -> bool:
    """The quantizer's filter: ``False`` for the nodes of a :data:`_FLOAT_MODULES` module."""
    stack = node.meta.get("nn_module_stack") or {}
    return not any((t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}")
                   in _FLOAT_MODULES for _, t in stack.values())


def _quantizer() -> Any:
    """executorch's ``XNNPACKQuantizer`` (symmetric per-channel int8 weights, int8
    activations) whose slices keep their input's quantization (:func:`_share_slice_qparams`),
    with the GroupNorm kept in float (:data:`_FLOAT_MODULES`)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    class _Quantizer(XNNPACKQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            _share_slice_qparams(model)
            return model

    quantizer = _Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return quantizer.set_filter_function(_quantized_node)


def _quantize(module: torch.nn.Module, spec: IOSpec, example: torch.Tensor,
              task: ExportTask) -> tuple[torch.nn.Module, dict[str, Any]]:
    """PT2E INT8 of ``module``, calibrated on ``task``'s photos in the artifact's input format
    (batches of ``example.shape[0]``); returns the converted (Q/DQ) module and its facts."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    calibration = task.data.calibration
    assert calibration is not None  # checked by the caller
    images = [torch.from_numpy(x) for x in calibration_inputs(calibration.images, spec)]
    batches = batched(images, int(example.shape[0]))
    quantizer = _quantizer()
    with torch.no_grad():
        graph = torch.export.export(module, (example,)).module()
        prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
        for x in batches:
            prepared(x)
        converted = convert_pt2e(prepared)
    info = {"quantizer": QUANTIZER, "calibration_source": calibration.source,
            "calibration_images": len(images), "calibration_batches": len(batches)}
    return converted, info


def _check_int8(task: ExportTask) -> None:
    calibration = task.data.calibration
    if calibration is None:  # --calib-method: refused by the plan (Capabilities.calib_methods)
        raise UnsupportedOptionError("INT8 export needs calibration images (--calib DIR)")


# --- native metadata: a constant method in the program ------------------------------------


def _metadata_plan(text: str) -> Any:
    """The execution plan of a constant method returning the string ``text`` (what the
    emitter builds for ``constant_methods``: no inputs, one empty chain, one output value)."""
    import executorch.extension.pytree as ex_pytree
    from executorch.exir import schema

    _, out_spec = ex_pytree.tree_flatten(text)
    return schema.ExecutionPlan(
        name=METADATA_METHOD,
        values=[schema.EValue(schema.String(text))],
        inputs=[],
        outputs=[0],
        chains=[schema.Chain(inputs=[], outputs=[], instructions=[], stacktrace=None)],
        operators=[],
        delegates=[],
        non_const_buffer_sizes=[0],
        container_meta_type=schema.ContainerMetadata("", out_spec.to_str()),
    )


def _read_program(path: Path) -> Any:
    """The deserialized ``PTEFile`` of ``path`` (program with its segments restored)."""
    [ser] = require("executorch", "executorch.exir._serialize._program",
                    what="reading ExecuTorch programs")
    try:
        with _quiet():
            return ser.deserialize_pte_binary(Path(path).read_bytes())
    except Exception as e:
        raise ExportError(f"{path}: not a readable ExecuTorch program: {type(e).__name__}: "
                          f"{first_line(e)}") from e


def _write_metadata(path: Path, text: str) -> None:
    """Replace the metadata method of the program at ``path`` with one returning ``text``."""
    from executorch.exir._serialize._program import serialize_pte_binary

    pte = _read_program(path)
    plans = [p for p in pte.program.execution_plan if p.name != METADATA_METHOD]
    pte.program.execution_plan = [*plans, _metadata_plan(text)]
    with _quiet():
        data = bytes(serialize_pte_binary(pte, extract_delegate_segments=True,
                                          segment_alignment=128))
    program = _runtime_program(data, path)
    if not {"forward", METADATA_METHOD} <= set(program.method_names):
        raise ExportError(f"{path}: the program lost a method when its metadata was written")
    tmp = path.with_name(path.name + ".meta-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- runtime ------------------------------------------------------------------------------


def _runtime_program(source: Path | bytes, path: Path) -> Any:
    """``executorch.runtime`` program of ``source`` (a file or its bytes); raises
    :class:`BenchmarkError` when it does not load."""
    require("executorch", "executorch.runtime", what="running ExecuTorch programs")
    from executorch.runtime import Runtime

    try:
        with native_stderr_silenced():  # cpuinfo probing lines
            return Runtime.get().load_program(source if isinstance(source, bytes)
                                              else str(source))
    except Exception as e:
        raise BenchmarkError(f"{path}: the ExecuTorch runtime cannot load it: "
                             f"{type(e).__name__}: {first_line(e)}") from e


def _set_threads(threads: int | None) -> None:
    """Reset XNNPACK's process-wide thread pool to ``threads`` (``None``: the
    ``LSNET_DEPLOY_THREADS`` budget, else one per core)."""
    from executorch.extension.pybindings import portable_lib

    wanted = threads or default_threads() or os.cpu_count() or 1
    if portable_lib._threadpool_get_thread_count() != wanted:
        with native_stderr_silenced():  # it prints the new size on stderr
            portable_lib._unsafe_reset_threadpool(wanted)


def _load(path: Path, threads: int | None) -> tuple[Any, Any]:
    """The one loader of validation and benchmarks: ``(method, meta)``, the loaded
    ``forward`` method and its ``MethodMeta`` (input/output ``TensorInfo``), with the thread
    pool set to ``threads``. Raises :class:`BenchmarkError` when the file does not load."""
    program = _runtime_program(Path(path), Path(path))
    try:
        _set_threads(threads)
        with native_stderr_silenced():
            method = program.load_method("forward")
        if method is None:
            raise BenchmarkError(f"{path}: the program has no 'forward' method")
        return method, program.metadata("forward")
    except BenchmarkError:
        raise
    except Exception as e:
        raise BenchmarkError(f"{path}: the ExecuTorch runtime cannot load 'forward': "
                             f"{type(e).__name__}: {first_line(e)}") from e


def _input_infos(meta: Any) -> list[tuple[list[int], Any]]:
    """``(shape, numpy dtype)`` of every input of a ``MethodMeta``."""
    infos = []
    for i in range(meta.num_inputs()):
        info = meta.input_tensor_meta(i)
        code = int(info.dtype())
        if code not in _SCALAR_TYPES:
            raise BenchmarkError(f"input {i} has ExecuTorch scalar type {code}, which the "
                                 "benchmark cannot fill")
        infos.append(([int(s) for s in info.sizes()], _SCALAR_TYPES[code]))
    return infos


class ExecutorchExporter(Exporter):
    """ExecuTorch (``.pte``), XNNPACK backend: fp32 and INT8, static batch, NCHW, optional
    uint8 image input. Runtime: ``executorch.runtime`` (XNNPACK + portable kernels)."""

    name = "executorch"
    suffixes = (".pte",)
    runtime = "executorch"
    extra = "executorch"
    tools = ("executorch",)
    capabilities = Capabilities(precisions=("fp32", "int8"), dynamic_batch=False,
                                image_input=True, layouts=("NCHW",), int8_exclude=False,
                                bench_precisions=())

    def export(self, model: torch.nn.Module, spec: IOSpec, out: Path,
               task: ExportTask) -> ExportResult:
        """Lower the fused ``model`` (input ``(batch, 3, H, W)`` of the spec's dtype) to
        ``out``; the details name the converter, the backend and what was delegated."""
        _require()
        options = task.options
        if options.precision not in self.capabilities.precisions:
            raise UnsupportedOptionError(
                f"ExecuTorch export supports {', '.join(self.capabilities.precisions)}, "
                f"not {options.precision}")
        if options.precision == "int8":
            _check_int8(task)
        # the portable form (rank <= 4, SKA's zero padding as a pad op) for fp32 and INT8;
        # INT8's quantizer (_quantizer) keeps it loadable by XNNPACK in executorch 1.4
        module = graph_model(model, spec, pad_in_conv=False).eval()
        example = example_input(spec, options.batch)
        details: dict[str, Any] = {"converter": "torch.export + executorch "
                                                "to_edge_transform_and_lower",
                                   "backend": "XNNPACK", "executorch": _version()}
        try:
            with _quiet():
                if options.precision == "int8":
                    module, details["int8"] = _quantize(module, spec, example, task)
                summary, data = _lower(module, example, options.precision == "int8")
        except (UnsupportedOptionError, ExportError, MissingDependencyError):
            raise
        except Exception as e:
            raise ExportError(f"executorch lowering failed: {type(e).__name__}: "
                              f"{first_line(e)}") from e
        out.write_bytes(data)
        details.update(summary)
        log.info("%s: %d XNNPACK subgraphs, %d ops left to portable kernels", out.name,
                 details["delegated_subgraphs"], sum(details["non_delegated_ops"].values()))
        return ExportResult(details=details)

    def embed_metadata(self, path: Path, metadata: dict[str, str]) -> None:
        """Store ``metadata`` as the constant method :data:`METADATA_METHOD`: one JSON object
        of the decoded values (``"img_size": [224, 224]``, not the native strings)."""
        require("executorch", "executorch.exir", what="writing ExecuTorch metadata")
        _write_metadata(Path(path), json.dumps(from_native(metadata), sort_keys=True))

    def read_metadata(self, path: Path) -> dict[str, str]:
        """The metadata method's JSON, read from the file (nothing runs); ``{}`` if none."""
        for plan in _read_program(Path(path)).program.execution_plan:
            if plan.name != METADATA_METHOD or len(plan.values) != 1:
                continue
            text = getattr(plan.values[0].val, "string_val", None)
            if not isinstance(text, str):
                return {}
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                return {}
            # native strings; files of before held the strings themselves, read as they are
            return to_native({str(k): v for k, v in data.items()}) if isinstance(data, dict) \
                else {}
        return {}

    def runner(self, path: Path, threads: int | None = None,
               accelerator: str | None = None) -> Runner:
        """``run(x)``: ``x`` a ``(B, 3, H, W)`` batch (float32, or uint8 pixels for image
        input) of the program's static batch -> ``(B, classes)`` float32 logits."""
        try:
            method, _ = _load(path, threads)
        except BenchmarkError as e:
            raise ExportError(str(e)) from e

        def run(x: np.ndarray) -> np.ndarray:
            [y] = method.execute([torch.from_numpy(np.ascontiguousarray(x))])
            return y.detach().numpy().astype(np.float32)

        return run

    def bench_session(self, path: Path, threads: int | None, batch: int | None,
                      accelerator: str | None = None) -> Session:
        """``forward`` on fixed random inputs of its own static shapes and dtypes; ``batch``
        must be the program's batch (ExecuTorch programs here have no dynamic batch)."""
        t0 = time.perf_counter()
        method, meta = _load(path, threads)
        load_ms = (time.perf_counter() - t0) * 1e3
        try:
            infos = _input_infos(meta)
        except BenchmarkError as e:
            raise BenchmarkError(f"{path.name}: {e}") from e
        first = infos[0][0] if infos else []
        if batch is not None and first and first[0] != batch:
            raise BenchmarkError(f"{path.name}: the program has a static batch of {first[0]}, "
                                 f"not {batch} (export with --batch {batch}, or benchmark "
                                 f"--batch {first[0]})")
        rng = np.random.default_rng(0)
        inputs = [torch.from_numpy(random_input(shape, dtype, rng)) for shape, dtype in infos]
        return Session(lambda: method.execute(inputs), first, first[0] if first else 1,
                       load_ms, close=lambda: _set_threads(None))

    def precision_of(self, path: Path) -> str:
        """From the embedded metadata; else ``int8`` when quantize/dequantize ops were left
        outside the delegates; else ``"unknown"`` (an XNNPACK blob does not tell)."""
        precision = self.read_metadata(path).get("precision")
        if precision:
            return precision
        for plan in _read_program(Path(path)).program.execution_plan:
            if any("quantize" in op.name for op in plan.operators):
                return "int8"
        return "unknown"
